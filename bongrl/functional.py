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
) -> CompiledMLP | None:
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

    return CompiledMLP(plan, offsets, params, list(names))


class CompiledMLP:
    """f(θ, x) for a plain MLP, plus per-row Jacobians by one batched backward pass (no vmap/jacrev)."""

    def __init__(self, plan: list, offsets: dict, params: dict[str, Tensor], names: list[str]) -> None:
        self.plan, self.offsets, self.params, self.names = plan, offsets, params, names
        self.linear_names = [arg for kind, arg in plan if kind == "linear"]

    def _get(self, theta: Tensor, name: str | None) -> Tensor | None:
        if name is None:
            return None
        if name in self.offsets:
            a, b, shape = self.offsets[name]
            return theta[a:b].view(shape)
        return self.params[name]

    def __call__(self, theta: Tensor, x: Tensor) -> Tensor:
        for kind, arg in self.plan:
            if kind == "linear":
                w, b = arg  # type: ignore[misc]
                x = F.linear(x, self._get(theta, w), self._get(theta, b))
            elif kind == "flatten":
                x = x.flatten(1)
            else:
                x = arg(x)  # type: ignore[operator]
        return x

    def jacobian(self, theta: Tensor, x: Tensor, index: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Outputs f (B, C) and per-row Jacobians ∂f_b/∂θ (B, C, P) (C = 1 with ``index``).

        Rows are independent, so the gradient of Σ_b f_b with respect to each layer's pre-activation gives every
        row's output sensitivity δ_b at once; the weight block of row b's Jacobian is δ_b a_bᵀ (a_b the layer
        input), the bias block δ_b.
        """
        theta = theta.detach()
        inputs: list[Tensor] = []
        probes: list[Tensor] = []
        h = x
        with torch.enable_grad():
            for kind, arg in self.plan:
                if kind == "linear":
                    w, b = arg  # type: ignore[misc]
                    inputs.append(h.detach())
                    z = F.linear(h, self._get(theta, w), self._get(theta, b))
                    e = torch.zeros_like(z, requires_grad=True)
                    probes.append(e)
                    h = z + e
                elif kind == "flatten":
                    h = h.flatten(1)
                else:
                    h = arg(h)  # type: ignore[operator]
            out = h.reshape(h.shape[0], -1)
            if index is not None:
                out = out.gather(1, index.reshape(-1, 1))
            C = out.shape[1]
            rows = []
            for c in range(C):
                deltas = torch.autograd.grad(out[:, c].sum(), probes, retain_graph=c < C - 1)
                rows.append(self._assemble(deltas, inputs))
        return out.detach(), torch.stack(rows, dim=1)

    def _assemble(self, deltas: tuple[Tensor, ...], inputs: list[Tensor]) -> Tensor:
        pieces: dict[str, Tensor] = {}
        for (w, b), d, a in zip(self.linear_names, deltas, inputs):
            if w in self.offsets:
                pieces[w] = (d.unsqueeze(2) * a.unsqueeze(1)).flatten(1)
            if b is not None and b in self.offsets:
                pieces[b] = d
        return torch.cat([pieces[n] for n in self.names], dim=1)
