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
            plan.append(("act", type(child)))
        else:
            return None
    if not any(kind == "linear" for kind, _ in plan):
        return None
    covered = {n for kind, arg in plan if kind == "linear" for n in arg if n is not None}  # type: ignore[union-attr]
    if set(names) - covered or set(params) - covered:
        return None

    return CompiledMLP(plan, offsets, params, list(names))


_DERIVATIVE_FROM_OUTPUT: dict[type[nn.Module], Callable[[Tensor], Tensor | None]] = {
    # d act(z)/dz written with the activation's output h, so the backward pass needs no pre-activations
    nn.ReLU: lambda h: (h > 0).to(h.dtype),
    nn.Tanh: lambda h: 1.0 - h * h,
    nn.Sigmoid: lambda h: h * (1.0 - h),
    nn.Identity: lambda h: None,
}


class CompiledMLP:
    """f(θ, x) for a plain MLP, plus per-row Jacobians by one hand-written backward pass (no autograd graph,
    no vmap/jacrev) when every activation is ReLU/Tanh/Sigmoid/Identity, by one batched autograd pass otherwise."""

    def __init__(self, plan: list, offsets: dict, params: dict[str, Tensor], names: list[str]) -> None:
        self.offsets, self.params, self.names = offsets, params, names
        self.linear_names = [arg for kind, arg in plan if kind == "linear"]
        # Per linear layer, where its weight and bias come from: ("chunk", i, shape) for the i-th block of θ in
        # flat order, or the frozen parameter itself. Resolved once, so a forward pass is one split of θ,
        # views and F.linear.
        self._numels = [offsets[n][1] - offsets[n][0] for n in names]
        index = {n: i for i, n in enumerate(names)}
        self._sources = [
            tuple(None if n is None else ("chunk", index[n], offsets[n][2]) if n in offsets else params[n] for n in arg)
            for arg in self.linear_names
        ]
        last = self._sources[-1][0]
        self.out_dim = int(last[2][0] if isinstance(last, tuple) else last.shape[0])
        """Outputs per row (the last Linear's out_features)."""
        # activation steps resolved to (function, derivative-from-output or None) in plan order; ``manual``: the
        # Jacobian can be written by hand (no Flatten after the first Linear, every activation has a rule)
        self._plan = [(kind, (_ELEMENTWISE[arg], _DERIVATIVE_FROM_OUTPUT.get(arg)) if kind == "act" else arg)
                      for kind, arg in plan]
        first_linear = next(i for i, (kind, _) in enumerate(plan) if kind == "linear")
        self.manual = all(kind != "flatten" for kind, _ in plan[first_linear:]) and all(
            arg in _DERIVATIVE_FROM_OUTPUT for kind, arg in plan if kind == "act"
        )

    def _layers(self, theta: Tensor, frozen: bool = True) -> list[tuple[Tensor, Tensor | None]]:
        """(weight, bias) of every linear layer at θ of shape (P,) or (B, P) (then weights are (B, out, in)).
        ``frozen=False`` gives None for parameters outside θ (θ is then a tangent: theirs is zero)."""
        chunks = theta.split(self._numels, dim=-1) if self._numels else ()
        lead = theta.shape[:-1]

        def take(src: tuple | Tensor | None) -> Tensor | None:
            if isinstance(src, tuple):
                return chunks[src[1]].view(*lead, *src[2])
            return src if frozen else None

        return [(take(w), take(b)) for w, b in self._sources]  # type: ignore[misc]

    def __call__(self, theta: Tensor, x: Tensor) -> Tensor:
        layers = iter(self._layers(theta))
        for kind, arg in self._plan:
            if kind == "linear":
                x = F.linear(x, *next(layers))
            elif kind == "flatten":
                x = x.flatten(1)
            else:
                x = arg[0](x)
        return x

    def rows(self, thetas: Tensor, x: Tensor) -> Tensor:
        """Row b of x through the network at θ_b: thetas (B, P), x (B, ...) → (B, C). One batched matmul per
        layer (θ_b's weights as a (B, out, in) stack) instead of vmap's per-call dispatch."""
        if thetas.shape[0] == 1:
            return self(thetas[0], x)
        layers = iter(self._layers(thetas))
        h = x
        for kind, arg in self._plan:
            if kind == "linear":
                w, b = next(layers)
                if w.ndim == 2:  # a frozen weight shared by every row
                    h = F.linear(h, w)
                else:
                    h = torch.bmm(w, h.unsqueeze(2)).squeeze(2)
                if b is not None:
                    h = h + b
            elif kind == "flatten":
                h = h.flatten(1)
            else:
                h = arg[0](h)
        return h

    def jvp(self, theta: Tensor, tangent: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """f(θ, x) and the directional derivative J(x) v, by forward-mode propagation of the tangent v (needs
        :attr:`manual`). ``tangent`` (P,) is one v for every row; (B, P) gives row b its own v_b."""
        per_row = tangent.ndim == 2
        layers, tangents = iter(self._layers(theta)), iter(self._layers(tangent, frozen=False))
        h, dh = x, None
        for kind, arg in self._plan:
            if kind == "linear":
                (w, b), (dw, db) = next(layers), next(tangents)
                dz = None if dh is None else F.linear(dh, w)
                if dw is not None:
                    term = torch.bmm(dw, h.unsqueeze(2)).squeeze(2) if per_row else F.linear(h, dw)
                    dz = term if dz is None else dz + term
                if db is not None:
                    dz = db if dz is None else dz + db
                h, dh = F.linear(h, w, b), dz
            elif kind == "flatten":
                h = h.flatten(1)
            else:
                fn, slope = arg
                h = fn(h)
                d = slope(h) if dh is not None else None
                if d is not None:
                    dh = dh * d
        return h, (torch.zeros_like(h) if dh is None else dh.expand_as(h))

    def jacobian(self, theta: Tensor, x: Tensor, index: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Outputs f (B, C) and per-row Jacobians ∂f_b/∂θ (B, C, P) (C = 1 with ``index``).

        Rows are independent, so backpropagating a one-hot output seed through the whole batch gives every row's
        sensitivity δ_b to each layer's pre-activation at once (δ_l = (δ_{l+1} W_{l+1}) ⊙ act'(z_l)); the weight
        block of row b's Jacobian is δ_b a_bᵀ (a_b the layer input), the bias block δ_b.
        """
        theta = theta.detach()
        if not self.manual:
            return self._autograd_jacobian(theta, x, index)
        layers = self._layers(theta)
        inputs: list[Tensor] = []
        slopes: list[list[Tensor]] = []  # per linear layer: act'(·) of the activations that follow it
        h = x
        it = iter(layers)
        with torch.no_grad():
            for kind, arg in self._plan:
                if kind == "linear":
                    inputs.append(h)
                    h = F.linear(h, *next(it))
                    slopes.append([])
                elif kind == "flatten":
                    h = h.flatten(1)
                else:
                    fn, slope = arg
                    h = fn(h)
                    d = slope(h) if slopes else None
                    if d is not None:
                        slopes[-1].append(d)
            out = h.reshape(h.shape[0], -1)
            B, C = out.shape
            if index is not None:
                seeds = [F.one_hot(index.reshape(-1), C).to(out.dtype)]
                out = out.gather(1, index.reshape(-1, 1))
            else:
                eye = torch.eye(C, dtype=out.dtype, device=out.device)
                seeds = [eye[c].expand(B, C) for c in range(C)]
            rows = []
            for seed in seeds:
                deltas: list[Tensor] = [seed] * len(layers)
                d = seed
                for i in range(len(layers) - 1, -1, -1):
                    for slope in slopes[i]:
                        d = d * slope
                    deltas[i] = d
                    if i > 0:
                        d = d @ layers[i][0]
                rows.append(self._assemble(deltas, inputs))
        return out, torch.stack(rows, dim=1)

    def _autograd_jacobian(self, theta: Tensor, x: Tensor, index: Tensor | None) -> tuple[Tensor, Tensor]:
        """:meth:`jacobian` for activations without a derivative-from-output rule: zero probes added to each
        pre-activation, one autograd pass per output."""
        inputs: list[Tensor] = []
        probes: list[Tensor] = []
        h = x
        layers = iter(self._layers(theta))
        with torch.enable_grad():
            for kind, arg in self._plan:
                if kind == "linear":
                    inputs.append(h.detach())
                    z = F.linear(h, *next(layers))
                    e = torch.zeros_like(z, requires_grad=True)
                    probes.append(e)
                    h = z + e
                elif kind == "flatten":
                    h = h.flatten(1)
                else:
                    h = arg[0](h)
            out = h.reshape(h.shape[0], -1)
            if index is not None:
                out = out.gather(1, index.reshape(-1, 1))
            C = out.shape[1]
            rows = []
            for c in range(C):
                deltas = torch.autograd.grad(out[:, c].sum(), probes, retain_graph=c < C - 1)
                rows.append(self._assemble(deltas, inputs))
        return out.detach(), torch.stack(rows, dim=1)

    def _assemble(self, deltas: tuple[Tensor, ...] | list[Tensor], inputs: list[Tensor]) -> Tensor:
        pieces: dict[str, Tensor] = {}
        for (w, b), d, a in zip(self.linear_names, deltas, inputs):
            if w in self.offsets:
                pieces[w] = (d.unsqueeze(2) * a.unsqueeze(1)).flatten(1)
            if b is not None and b in self.offsets:
                pieces[b] = d
        return torch.cat([pieces[n] for n in self.names], dim=1)
