"""BONG over any ``torch.nn.Module``: flat parameters, outputs and Jacobians with ``torch.func``, and the
LIN / MC-EF / MC-Hess updates (Jones, Chang & Murphy, "Bayesian Online Natural Gradient", NeurIPS 2024).

One BONG step from the predicted belief q_{t|t-1} = N(μ, Σ) (paper §3)::

    Λ_t = Λ_{t|t-1} − E_q[∇²ℓ(θ)],    μ_t = μ_{t|t-1} + Λ_t⁻¹ E_q[∇ℓ(θ)],   ℓ(θ) = log p(y | f(θ, x))

with the expectations approximated by linearisation (LIN, §4.2: H = ∂m(f)/∂θ at μ, moment-matched R) or by M
samples θ_m ~ q_{t|t-1} (MC-EF: empirical Fisher; MC-Hess: generalised Gauss-Newton at the samples). The family
(full / diag / dlr / plugins) decides how the precision is stored (:mod:`bongrl.posteriors`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jacrev, jvp, vmap

from bongrl import registry
from bongrl.device import resolve_device
from bongrl.functional import compile_mlp
from bongrl.likelihoods import Likelihood, make_likelihood
from bongrl.posteriors.base import PosteriorFamily, State, check_finite, mc_increment, whiten_lin

__all__ = ["BONG", "FlatParams", "METHODS", "Reducer"]

METHODS = ("lin", "mc-ef", "mc-hess")

#: ``(A, g) -> (A', g')``: a hook between computing and applying an increment (e.g. the cross-rank sum of
#: :mod:`bongrl.distributed`)
Reducer = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]

#: torch's own warning when forward-mode AD (``jvp``) first loads its decompositions; see :meth:`BONG.apply_linearized`
_JIT_SCRIPT_DEPRECATED = r"`torch\.jit\.script` is deprecated"


def _real_tensor(v: Any, name: str, device: torch.device) -> Tensor:
    """``torch.as_tensor`` for user input: anything that is not a real (int/float/bool) array is a ``ValueError``
    naming ``name`` (not a TypeError from deep inside torch)."""
    try:
        t = torch.as_tensor(v, device=device)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{name} must be a real-valued array: {' '.join(str(exc).split())[:120]}") from exc
    if t.is_complex():
        raise ValueError(f"{name} must be real-valued, got dtype {t.dtype}")
    return t


def _owned(v: Any, device: torch.device, dtype: torch.dtype) -> Tensor:
    """A fresh contiguous copy of ``v`` on ``device`` in ``dtype`` (allocated, so aligned, by torch)."""
    return torch.as_tensor(v).to(device=device, dtype=dtype).clone(memory_format=torch.contiguous_format)


class FlatParams:
    """A view of (a named subset of) a module's parameters as one flat vector θ ∈ R^P.

    Parameters outside the subset stay frozen at the module's values (``requires_grad`` is not changed; they are
    simply not part of θ).
    """

    def __init__(self, model: nn.Module, names: Sequence[str] | None = None) -> None:
        all_params = dict(model.named_parameters())
        if names is None:
            names = list(all_params)
        else:
            if isinstance(names, str):
                names = [names]
            missing = [n for n in names if n not in all_params]
            if missing:
                raise ValueError(f"unknown parameter names {missing}; the model has {sorted(all_params)}")
            if len(set(names)) != len(names):
                raise ValueError(f"parameter names must be distinct, got {list(names)}")
        if not names:
            raise ValueError("the model has no parameters to put a posterior on")
        self.names: list[str] = list(names)
        self.shapes = [tuple(all_params[n].shape) for n in self.names]
        self.numels = [int(all_params[n].numel()) for n in self.names]
        self.num_params = int(sum(self.numels))

    def flatten(self, model: nn.Module) -> Tensor:
        params = dict(model.named_parameters())
        return torch.cat([params[n].detach().reshape(-1) for n in self.names])

    def unflatten(self, theta: Tensor) -> dict[str, Tensor]:
        chunks = torch.split(theta, self.numels)
        return {n: c.view(s) for n, c, s in zip(self.names, chunks, self.shapes)}

    def write(self, model: nn.Module, theta: Tensor) -> None:
        """Copy θ into the module's parameters in place (e.g. to export the posterior mean)."""
        params = dict(model.named_parameters())
        with torch.no_grad():
            for n, t in self.unflatten(theta).items():
                params[n].copy_(t)


class BONG:
    """Online Bayesian estimator for the weights of ``model``.

    Args:
        model: any module mapping inputs (B, ...) to outputs (B,) or (B, C). Moved to ``device``/``dtype``.
        family: registered posterior family ("full", "diag", "dlr" or a plugin).
        likelihood: "gaussian" (R = obs_std²), "bernoulli" (one logit) or "categorical" (C logits).
        obs_std: Gaussian observation noise σ.
        prior_std: prior standard deviation (scalar or (P,) tensor); ignored when ``weight_decay`` is given.
        prior_mean: prior mean (P,); ``None`` takes the model's current parameters (its initialisation).
        method: "lin", "mc-ef" or "mc-hess".
        rank: DLR rank L (passed to families that take it).
        num_samples: M for the Monte-Carlo methods.
        params: names of the parameters to put the posterior on (default: all); the others stay frozen.
        seed: seeds the estimator's generator (sampling, MC).
        device: "auto" (CUDA when present), "cpu", "cuda", or a ``torch.device``.
        dtype: torch.float32 (default) or torch.float64.
        weight_decay: L2 coefficient λ, mapped to a Gaussian prior of precision λ (prior variance 1/λ).
        shared_options: settings offered to whichever family is chosen; each takes those its constructor names
            (an agent's ``mean_update`` reaches ``diag`` only). ``rank`` is offered the same way.
        family_options: constructor options for the family plugin; one it does not take is an error.

    The public surface (docs/design.md §2, §3) is what agents and :mod:`bongrl.distributed` use: the updates
    (:meth:`update`, :meth:`increment` / :meth:`apply_increment`, :meth:`predict_step`), the network at any
    parameters (:meth:`apply`, :meth:`apply_per_row`, :meth:`apply_linearized`), the posterior's linear algebra
    (:meth:`sample`, :meth:`precondition`, :meth:`predict`, :meth:`covariance`, :meth:`marginal_variance`),
    rollback (:meth:`snapshot` / :meth:`restore`), :meth:`health_report` and persistence (:meth:`state_dict` /
    :meth:`load_state_dict`). :attr:`state` is readable (e.g. to hash it) but is replaced only by those methods.
    """

    def __init__(
        self,
        model: nn.Module,
        family: str = "full",
        likelihood: str = "gaussian",
        obs_std: float = 0.5,
        prior_std: float | Tensor = 1.0,
        prior_mean: Tensor | None = None,
        method: str = "lin",
        rank: int = 10,
        num_samples: int = 10,
        params: Sequence[str] | None = None,
        seed: int = 0,
        device: str | torch.device = "auto",
        dtype: torch.dtype = torch.float32,
        weight_decay: float | None = None,
        shared_options: Mapping[str, Any] | None = None,
        **family_options: Any,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose from {list(METHODS)}")
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
        self.device = resolve_device(device)
        self.dtype = dtype
        self.method = method
        self.num_samples = num_samples
        self.likelihood: Likelihood = make_likelihood(likelihood, obs_std)
        self.model = model.to(device=self.device, dtype=dtype)
        self.flat = FlatParams(self.model, params)
        self._fast = compile_mlp(self.model, self.flat.names, self.flat.shapes, self.flat.numels)
        self.family_name = family
        # offered to every family, taken where its constructor names them: rank (dlr), param_shapes (θ's
        # layout [(name, shape), ...], for structured families such as kfac), the caller's shared_options
        shared = {"rank": rank, "param_shapes": list(zip(self.flat.names, self.flat.shapes)), **(shared_options or {})}
        self.family: PosteriorFamily = registry.create_posterior(family, shared, **family_options)
        self.family.check_method(method)  # e.g. diag's mean_update="gain" (the VD-EKF gain) is LIN-only

        P = self.flat.num_params
        mean0 = self.flat.flatten(self.model) if prior_mean is None else torch.as_tensor(prior_mean)
        mean0 = mean0.to(device=self.device, dtype=dtype).reshape(-1).clone()
        if mean0.shape != (P,):
            raise ValueError(f"prior_mean must have {P} entries, got {tuple(mean0.shape)}")
        check_finite("prior_mean", mean0)
        if weight_decay is not None:
            if not (math.isfinite(weight_decay) and weight_decay > 0):
                raise ValueError(f"weight_decay must be positive, got {weight_decay!r}")
            prior_var = torch.full((P,), 1.0 / weight_decay, dtype=dtype, device=self.device)
        else:
            std = torch.as_tensor(prior_std, dtype=dtype, device=self.device)
            if std.ndim not in (0, 1) or (std.ndim == 1 and std.shape != (P,)):
                raise ValueError(f"prior_std must be a scalar or have {P} entries, got shape {tuple(std.shape)}")
            if not bool(torch.isfinite(std).all()) or bool((std <= 0).any()):
                raise ValueError("prior_std must be positive and finite")
            prior_var = (std**2).expand(P).clone()
        self.prior_mean = mean0
        self._state: State = self.family.init(mean0, prior_var)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(int(seed))
        self._reducer: Reducer | None = None

    # ------------------------------------------------------------------ properties
    @property
    def state(self) -> State:
        """The family's posterior state (``dict[str, Tensor]``, always with ``"mean"``; docs/design.md §3).

        Read-only: the estimator replaces the whole dict on every update (tensors are never modified in place), so
        a reference taken now keeps describing this posterior. Do not modify it; roll back with :meth:`restore`."""
        return self._state

    @property
    def mean(self) -> Tensor:
        """Posterior mean μ, shape (P,)."""
        return self._state["mean"]

    @property
    def num_params(self) -> int:
        return self.flat.num_params

    # ------------------------------------------------------------------ model evaluation
    def _as_input(self, x: Any, name: str = "x") -> Tensor:
        x = _real_tensor(x, name, self.device)
        if x.is_floating_point():
            x = x.to(self.dtype)
        check_finite(name, x)
        if x.ndim == 0:
            raise ValueError(f"{name} must have a batch dimension, got a scalar")
        if x.shape[0] == 0:
            raise ValueError(f"{name} is an empty batch")
        return x

    def apply(self, theta: Tensor, x: Tensor) -> Tensor:
        """The network f(θ, x) of the BONG update (docs/design.md §2) at parameters θ (P,) on a batch x (B, ...)
        already on the estimator's device and dtype: outputs (B, C), C = 1 for a scalar output.

        No input validation and no ``no_grad``: differentiable in θ and in the module's parameters outside the
        posterior (they are read live from the module on every call), so agents can use it in their inner loops
        (TD targets, randomise-then-optimise sweeps, training the body). :meth:`forward` is the validated form."""
        if self._fast is not None:  # plain MLP: pure F.linear on views of θ (see bongrl.functional)
            out = self._fast(theta, x)
        else:
            out = functional_call(self.model, self.flat.unflatten(theta), (x,))
        return out.reshape(out.shape[0], -1)

    def apply_per_row(self, thetas: Tensor, x: Tensor) -> Tensor:
        """Row i of x at its own parameters: out[i] = f(thetas[i], x[i:i+1]), thetas (B, P), x (B, ...) → (B, C).

        E.g. a per-environment Thompson sample (docs/design.md §4). A plain MLP takes batched matmuls
        (:meth:`bongrl.functional.CompiledMLP.rows`), any other module ``vmap`` over :meth:`apply`; same numbers
        as a loop over the rows up to floating-point summation order."""
        if self._fast is not None:  # plain MLP: batched matmuls, no vmap dispatch
            return self._fast.rows(thetas, x).reshape(x.shape[0], -1)
        return vmap(lambda t, o: self.apply(t, o.unsqueeze(0))[0])(thetas, x)

    def apply_linearized(self, eps: Tensor, x: Tensor) -> Tensor:
        """BONG-LIN's linearised network at the mean μ (docs/design.md §2) moved by a parameter deviation ε:
        f(μ, x) + J_μ(x) ε, (B, C), by one forward-mode pass (no Jacobian is formed).

        ``eps`` (P,) is one deviation for every row; (B, P) gives row b its own ε_b (the linearised Thompson
        samples of docs/design.md §4). A plain MLP takes a hand-written forward-mode pass, any other module
        ``torch.func.jvp``."""
        mean, fast = self.mean, self._fast
        if fast is not None and fast.manual:  # plain MLP: hand-written forward-mode pass
            q, dq = fast.jvp(mean, eps, x)
            return (q + dq).reshape(x.shape[0], -1)

        def one(e: Tensor, o: Tensor) -> Tensor:
            # torch's forward-mode AD loads its decompositions through torch.jit.script on first use, which warns
            # "`torch.jit.script` is deprecated": torch's internal call, nothing a caller can act on, so that one
            # message is silenced here (and only here) instead of reaching users running with -W error.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=_JIT_SCRIPT_DEPRECATED, category=DeprecationWarning)
                q, dq = jvp(lambda t: self.apply(t, o), (mean,), (e,))
            return q + dq

        if eps.ndim == 1:
            return one(eps, x)
        return vmap(lambda e, o: one(e, o.unsqueeze(0))[0])(eps, x)

    def forward(self, x: Any, theta: Tensor | None = None) -> Tensor:
        """Model outputs f(θ, x), (B, C); θ defaults to μ; a (n, P) θ gives (n, B, C). Validates x; no gradients."""
        x = self._as_input(x)
        theta = self.mean if theta is None else theta
        with torch.no_grad():
            if theta.ndim == 2:
                return vmap(self.apply, in_dims=(0, None))(theta, x)
            return self.apply(theta, x)

    def _output_fn(self, index: Tensor | None):
        def f(theta: Tensor, x_row: Tensor, idx: Tensor | None) -> tuple[Tensor, Tensor]:
            out = self.apply(theta, x_row.unsqueeze(0))[0]
            if idx is not None:
                out = out.gather(0, idx.reshape(1))
            return out, out

        return f

    def jacobian(self, x: Any, theta: Tensor | None = None, index: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Outputs f (B, C) and Jacobians ∂f/∂θ (B, C, P) at θ (default μ), one row at a time via vmap(jacrev).

        ``index`` (B,) selects one output per row (e.g. Q(s, a) for the taken action): then C = 1.
        """
        x = self._as_input(x)
        theta = self.mean if theta is None else theta
        if self._fast is not None and theta.ndim == 1:  # plain MLP: one batched backward pass
            return self._fast.jacobian(theta, x, index)
        fn = self._output_fn(index)
        in_dims = (None, 0, 0 if index is not None else None)
        J, f = vmap(jacrev(fn, has_aux=True), in_dims=in_dims)(theta, x, index)
        return f.detach(), J.detach()

    def _check_index(self, index: Any, B: int, C: int) -> Tensor | None:
        if index is None:
            return None
        index = _real_tensor(index, "index", self.device)
        if index.is_floating_point() or index.dtype == torch.bool:
            raise ValueError("index must hold integers")
        index = index.reshape(-1).long()
        if index.shape != (B,):
            raise ValueError(f"index must have {B} entries, got {tuple(index.shape)}")
        if bool(((index < 0) | (index >= C)).any()):
            raise ValueError(f"index values must lie in [0, {C})")
        return index

    def _output_shape(self, x: Tensor) -> tuple[int, int]:
        try:
            f = self.forward(x[:1])
        except (RuntimeError, IndexError, TypeError) as exc:
            raise ValueError(f"x of shape {tuple(x.shape)} does not fit the model: {exc}") from exc
        return x.shape[0], f.shape[1]

    def _encode_y(self, y: Any, B: int, C: int) -> Tensor:
        y = _real_tensor(y, "y", self.device)
        if y.is_floating_point():
            y = y.to(self.dtype)
        if y.shape[:1] != (B,):
            raise ValueError(f"y must have {B} rows like x, got shape {tuple(y.shape)}")
        return self.likelihood.encode(y, (B, C)).to(device=self.device, dtype=self.dtype)

    def _lin_single(self, x: Tensor, y: Any, index: Any) -> tuple[Tensor, Tensor, Tensor]:
        """Fast path for one row (B = 1): f (1, C), J (1, C, P) and encoded y with one forward pass on a flat leaf
        θ and C reverse passes through plain autograd (no vmap/jacrev dispatch), or the plain MLP's hand-written
        backward pass. Same numbers as :meth:`jacobian`.
        """
        fast = self._fast
        if fast is not None and fast.manual:
            idx = self._check_index(index, 1, fast.out_dim)
            try:
                f, J = fast.jacobian(self.mean, x, idx)
            except (RuntimeError, IndexError, TypeError) as exc:
                raise ValueError(f"x of shape {tuple(x.shape)} does not fit the model: {exc}") from exc
            return f, J, self._encode_y(y, 1, f.shape[1])
        theta = self.mean.detach().requires_grad_(True)
        try:
            with torch.enable_grad():
                out = self.apply(theta, x)
        except (RuntimeError, IndexError, TypeError) as exc:
            raise ValueError(f"x of shape {tuple(x.shape)} does not fit the model: {exc}") from exc
        B, C = out.shape
        idx = self._check_index(index, B, C)
        if idx is not None:
            out = out.gather(1, idx.unsqueeze(1))
            C = 1
        y_enc = self._encode_y(y, B, C)
        rows = []
        for c in range(C):
            (row,) = torch.autograd.grad(out[0, c], theta, retain_graph=c < C - 1, allow_unused=True)
            rows.append(torch.zeros_like(theta) if row is None else row)
        J = (rows[0] if C == 1 else torch.stack(rows)).reshape(1, C, -1)
        return out.detach(), J.detach(), y_enc

    # ------------------------------------------------------------------ BONG
    def increment(self, x: Any, y: Any, index: Any = None) -> tuple[Tensor, Tensor]:
        """The information-form increment (A, g) of one BONG step on the batch (x, y); no state change.

        All B rows are conditioned on jointly at the current linearisation point (or the same samples).
        """
        x = self._as_input(x)
        lik = self.likelihood
        if self.method == "lin" and x.shape[0] == 1:
            f, J, y_enc = self._lin_single(x, y, index)
            H, residual, R = lik.lin_terms(f, J, y_enc)
            return whiten_lin(H, residual, R)
        B, C = self._output_shape(x)
        idx = self._check_index(index, B, C)
        if idx is not None:
            C = 1
        y_enc = self._encode_y(y, B, C)
        if self.method == "lin":
            f, J = self.jacobian(x, index=idx)
            H, residual, R = lik.lin_terms(f, J, y_enc)
            return whiten_lin(H, residual, R)
        thetas = self.family.sample(self._state, self.num_samples, self.generator)

        def loglik(theta: Tensor) -> Tensor:
            f = self.apply(theta, x)
            if idx is not None:
                f = f.gather(1, idx.unsqueeze(1))
            return lik.log_prob(f, y_enc).sum()

        grads = vmap(grad(loglik))(thetas)
        if self.method == "mc-ef":
            return mc_increment(grads)
        fn = self._output_fn(idx)
        in_dims = (None, 0, 0 if idx is not None else None)
        jac_rows = vmap(jacrev(fn, has_aux=True), in_dims=in_dims)
        J, f = vmap(jac_rows, in_dims=(0, None, None))(thetas, x, idx)  # (M, B, C, P), (M, B, C)
        S = vmap(lik.hessian_sqrt)(f)  # (M, B, C, C)
        factors = torch.einsum("mbcp,mbck->mpbk", J, S).reshape(self.num_samples, self.num_params, -1)
        return mc_increment(grads, factors)

    def update(self, x: Any, y: Any, index: Any = None) -> BONG:
        """One BONG step on the batch (x: (B, ...), y: (B,) or (B, C)); B = 1 is one online step.

        :meth:`increment`, then the increment reducer if one is set (:meth:`set_increment_reducer`), then
        :meth:`apply_increment`. Bad input (NaN/Inf, wrong shape, labels out of range) raises ``ValueError`` and
        leaves the posterior bit-identical. ``index`` (B,) conditions on one selected output per row (C = 1).
        """
        A, g = self.increment(x, y, index)
        if self._reducer is not None:  # e.g. bongrl.distributed: the sum of every rank's increment
            A, g = self._reducer(A, g)
        self.apply_increment(A, g)
        return self

    def set_increment_reducer(self, reducer: Reducer | None) -> None:
        """Route every :meth:`update` through ``reducer(A, g) -> (A', g')`` between :meth:`increment` and
        :meth:`apply_increment` (``None`` removes it). :mod:`bongrl.distributed` sets one so that each update is the
        joint step on every rank's batch (docs/design.md §8)."""
        if reducer is not None and not callable(reducer):
            raise ValueError(f"the increment reducer must be callable, got {type(reducer).__name__}")
        self._reducer = reducer

    def apply_increment(self, A: Tensor, g: Tensor) -> None:
        """Λ ← Λ + AAᵀ, μ ← μ + Λ⁻¹g (validated; the state is replaced only on success)."""
        self._state = self.family.update(self._state, A, g)

    def predict_step(self, gamma: float = 1.0, q: float = 0.0, toward_prior: bool = True) -> BONG:
        """μ ← γμ + (1−γ)μ₀, Σ ← γ²Σ + qI (μ₀ is the prior mean when ``toward_prior``, else 0)."""
        self._state = self.family.predict(self._state, gamma, q, self.prior_mean if toward_prior else None)
        return self

    # ------------------------------------------------------------------ rollback
    def snapshot(self) -> State:
        """A handle on the current posterior for :meth:`restore` (e.g. an agent's divergence guard, docs/design.md
        §5). Cheap: states are replaced, never modified in place, so the snapshot is the state itself (a shallow
        copy of its dict, O(number of keys); no tensor is copied)."""
        return dict(self._state)

    def restore(self, snapshot: State) -> None:
        """Make ``snapshot`` (from :meth:`snapshot`) the posterior again, bit for bit. Checks only that its keys,
        shapes, dtypes and devices are the current state's (no host sync, no finiteness check: it is a rollback,
        not a load; :meth:`load_state_dict` validates)."""
        cur = self._state
        if set(snapshot) != set(cur):
            raise ValueError(f"snapshot has keys {sorted(snapshot)}, the posterior {sorted(cur)}")
        for k, v in snapshot.items():
            c = cur[k]
            if not torch.is_tensor(v) or v.shape != c.shape or v.dtype != c.dtype or v.device != c.device:
                raise ValueError(f"snapshot entry {k!r} does not match the posterior's {tuple(c.shape)} {c.dtype}")
        self._state = dict(snapshot)

    # ------------------------------------------------------------------ the posterior's linear algebra
    def covariance(self) -> Tensor:
        """Dense Σ (P×P). O(P²) memory and O(P²L) (dlr) / O(P³) time: small P only."""
        return self.family.covariance(self._state)

    def precondition(self, v: Tensor) -> Tensor:
        """Σ v at the current posterior, v (P,) or (P, K): the family's ``precondition`` (docs/design.md §3), the
        natural-gradient preconditioner, e.g. of the randomise-then-optimise sweeps (§4). Exact for full, diag and
        dlr (Woodbury); the structured Σ for kfac. No dense Σ is formed."""
        return self.family.precondition(self._state, v)

    def marginal_variance(self) -> Tensor:
        """diag(Σ), shape (P,), without forming Σ."""
        return self.family.marginal_variance(self._state)

    def health_report(self) -> dict[str, float]:
        """Numerical health of the posterior (:mod:`bongrl.health`): ``finite`` (1.0 when every state tensor is
        finite, else 0.0), ``health`` (the family's positive-definiteness number, > 0 iff the belief is positive
        definite: :meth:`~bongrl.posteriors.base.PosteriorFamily.health`) and ``marginal_variance`` (the smallest
        diag(Σ)). The last two are NaN when the state is not finite or their linear algebra fails."""
        state, family = self._state, self.family
        finite = all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point())
        out = {"finite": 1.0 if finite else 0.0, "health": math.nan, "marginal_variance": math.nan}
        if finite:
            try:
                out["health"] = float(family.health(state))
            except (RuntimeError, ValueError):  # e.g. eigvalsh failing on a broken matrix
                out["health"] = math.nan
            try:
                out["marginal_variance"] = float(family.marginal_variance(state).min())
            except (RuntimeError, ValueError):
                out["marginal_variance"] = math.nan
        return out

    def predict(self, x: Any, index: Any = None) -> tuple[Tensor, Tensor]:
        """Predictive mean f(μ, x) of the model output (B, C) and its linearised variance diag(J Σ Jᵀ) (B, C).

        Outputs are the network's (logits for bernoulli/categorical), not the link's probabilities.
        """
        x = self._as_input(x)
        B, C = self._output_shape(x)
        idx = self._check_index(index, B, C)
        f, J = self.jacobian(x, index=idx)
        var = self.family.predictive_cov(self._state, J).diagonal(dim1=-2, dim2=-1).clamp_min(0.0)
        return f.detach(), var.detach()

    def sample(self, n: int) -> Tensor:
        """n parameter samples θ ~ N(μ, Σ), shape (n, P), from the estimator's seeded generator."""
        return self.family.sample(self._state, n, self.generator)

    def write_mean(self) -> None:
        """Copy μ into the model's parameters (e.g. to use the model outside bongrl)."""
        self.flat.write(self.model, self.mean)

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Tensor]:
        """Tensors only (safetensors-ready): ``posterior.<key>``, ``prior_mean`` and ``rng_state``."""
        sd = {f"posterior.{k}": v.detach().clone(memory_format=torch.contiguous_format) for k, v in self._state.items()}
        sd["prior_mean"] = self.prior_mean.clone()
        sd["rng_state"] = self.generator.get_state().clone()
        return sd

    def load_state_dict(self, sd: dict[str, Tensor]) -> None:
        """Restore from :meth:`state_dict`; validates shapes and finiteness before replacing anything.

        The tensors are copied into memory of the estimator's own: the caller's dict is never aliased, and a
        posterior read from a file (whose tensors may sit at any byte offset of a mapped buffer) runs the same
        BLAS kernels, and so gives the same bits, as the one that was saved."""
        state = {k[len("posterior.") :]: v for k, v in sd.items() if k.startswith("posterior.")}
        state = {k: _owned(v, self.device, self.dtype) for k, v in state.items()}
        self.family.validate_state(state)
        if state["mean"].shape != (self.num_params,):
            raise ValueError(f"state has {state['mean'].shape[0]} parameters, the model has {self.num_params}")
        prior_mean = self.prior_mean
        if "prior_mean" in sd:
            prior_mean = _owned(sd["prior_mean"], self.device, self.dtype)
            if prior_mean.shape != (self.num_params,):
                raise ValueError("prior_mean in the state dict has the wrong size")
        if "rng_state" in sd:
            rng = torch.as_tensor(sd["rng_state"]).to(dtype=torch.uint8, device="cpu")
            self.generator.set_state(rng)
        self._state = state
        self.prior_mean = prior_mean
