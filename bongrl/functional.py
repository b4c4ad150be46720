"""Fast pure-function evaluation of plain MLPs at a flat parameter vector.

``torch.func.functional_call`` re-parametrises a module on every call (about 0.3 ms of Python per call on a small
MLP), which dominates a per-transition BONG update. For the networks the agents build — ``nn.Sequential`` of
``Linear``, ``Flatten`` and element-wise activations — :func:`compile_mlp` returns an equivalent pure function
f(θ, x) made of ``F.linear`` calls on views of θ; it composes with ``vmap``/``jacrev``/``grad`` like any torch code.
Any other module returns ``None`` and callers fall back to ``functional_call``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["compile_mlp"]

_ELEMENTWISE: dict[type[nn.Module], Callable[[Tensor], Tensor]] = {
    nn.ReLU: torch.relu,
    nn.Tanh: torch.tanh,
    nn.Sigmoid: torch.sigmoid,
    nn.GELU: F.gelu,
    nn.ELU: F.elu,
    nn.SiLU: F.silu,
    nn.Identity: lambda x: x,
}


def compile_mlp(
    model: nn.Module, names: Sequence[str], shapes: Sequence[tuple[int, ...]], numels: Sequence[int]
) -> Callable[[Tensor, Tensor], Tensor] | None:
    """A pure f(θ, x) equal to ``functional_call(model, unflatten(θ), (x,))``, or ``None`` if unsupported.

    ``names``/``shapes``/``numels`` describe the flat layout of θ (parameters outside it are read from the module
    at call time, so frozen parameters stay live).
    """
    if not isinstance(model, nn.Sequential):
        return None
    offsets: dict[str, tuple[int, int, tuple[int, ...]]] = {}
    o = 0
    for n, s, k in zip(names, shapes, numels):
        offsets[n] = (o, o + k, tuple(s))
        o += k
    params = dict(model.named_parameters())
    plan: list[tuple[str, object]] = []
    for child_name, child in model.named_children():
        if isinstance(child, nn.Linear):
            w, b = f"{child_name}.weight", f"{child_name}.bias"
            plan.append(("linear", (w, b if child.bias is not None else None)))
        elif isinstance(child, nn.Flatten):
            if child.start_dim != 1 or child.end_dim != -1:
                return None
            plan.append(("flatten", None))
        elif type(child) in _ELEMENTWISE and not list(child.parameters()):
            plan.append(("act", _ELEMENTWISE[type(child)]))
        else:
            return None
    if not any(kind == "linear" for kind, _ in plan):
        return None
    covered = {n for kind, arg in plan if kind == "linear" for n in arg if n is not None}  # type: ignore[union-attr]
    if set(names) - covered or set(params) - covered:
        return None

    def get(theta: Tensor, name: str | None) -> Tensor | None:
        if name is None:
            return None
        if name in offsets:
            a, b, shape = offsets[name]
            return theta[a:b].view(shape)
        return params[name]

    def f(theta: Tensor, x: Tensor) -> Tensor:
        for kind, arg in plan:
            if kind == "linear":
                w, b = arg  # type: ignore[misc]
                x = F.linear(x, get(theta, w), get(theta, b))
            elif kind == "flatten":
                x = x.flatten(1)
            else:
                x = arg(x)  # type: ignore[operator]
        return x

    return f
