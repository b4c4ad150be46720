"""The posterior-family protocol and the linear algebra the families share.

A family holds a Gaussian belief N(μ, Σ) over a flat parameter vector θ ∈ R^P in its own form. States are plain
``dict[str, Tensor]`` (always with a ``"mean"`` entry) so they checkpoint with safetensors, all-reduce across ranks
and roll back trivially; families are stateless objects holding only their hyperparameters (e.g. the DLR rank).

Every BONG variant reduces to one *information-form increment* (Jones, Chang & Murphy 2024, §3, eqs. for the
Gaussian natural-gradient step)::

    Λ_t = Λ_{t|t-1} + A Aᵀ            (A ∈ R^{P×K}: −E[∇²ℓ] = A Aᵀ, PSD by construction)
    μ_t = μ_{t|t-1} + Λ_t⁻¹ g          (g = E[∇ℓ] at the predicted belief)

* LIN:      A = Hᵀ R^{-1/2} (C columns per observation),  g = Hᵀ R⁻¹ (y − ŷ)
* MC-EF:    A = [g_1 … g_M] / √M,                        g = mean_m g_m
* MC-Hess:  A = [J_mᵀ Λ_f(θ_m)^{1/2}]_m / √M  (generalised Gauss-Newton, PSD-safe), g = mean_m g_m

so a family implements :meth:`PosteriorFamily.update` once, in whatever form suits its structure, and the shared
methods :meth:`update_lin` / :meth:`update_mc` build ``(A, g)``.

Families also describe themselves to the code around them: :meth:`PosteriorFamily.reduce_increment` says how the
ranks of a data-parallel run combine their increments (docs/design.md §8), and :meth:`PosteriorFamily.search_space`
which of the family's options a tuner may search (docs/design.md §3, §10).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor

State = dict[str, Tensor]

__all__ = [
    "PosteriorFamily",
    "State",
    "Collective",
    "SearchSpace",
    "gather_increment",
    "check_finite",
    "NonFiniteError",
    "NumericalError",
    "check_all_finite",
    "symmetrize",
    "whiten_lin",
    "mc_increment",
    "cholesky_psd",
]


class NumericalError(ValueError):
    """A numerical failure: non-finite values (:class:`NonFiniteError`) or a matrix that lost positive
    definiteness. A ``ValueError``, so callers that validate input catch it as before; agents catch this class to
    reject a numerically failed update and keep the last good posterior."""


class NonFiniteError(NumericalError):
    """A tensor holds NaN or Inf."""


def check_finite(name: str, t: Tensor) -> None:
    """Raise :class:`NonFiniteError` naming ``name`` if ``t`` holds NaN or Inf."""
    if not torch.is_tensor(t):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.is_floating_point() and t.numel() > 0:
        # aminmax propagates NaN and exposes ±Inf without allocating a (numel,) bool mask (≈6x faster than
        # isfinite(t).all() at P·L ≈ 5e4, which matters on the per-update path).
        lo, hi = torch.aminmax(t.detach())
        if not (math.isfinite(lo.item()) and math.isfinite(hi.item())):
            raise NonFiniteError(f"{name} contains NaN or Inf")


def check_all_finite(named: list[tuple[str, Tensor]]) -> None:
    """:func:`check_finite` on several tensors with a single host sync when all are finite (the per-update case):
    a sum is NaN/±Inf whenever an entry is (they propagate), and a finite sum proves every entry finite. Only
    when the sum is not finite (a bad entry, or an overflow of huge finite values) is each tensor checked
    exactly, to name the offending one; an overflow alone passes."""
    sums = []
    for name, t in named:
        if not torch.is_tensor(t):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.is_floating_point() and t.numel() > 0:
            sums.append(t.detach().sum())
    if not sums or math.isfinite(float(sum(s.double() for s in sums).item())):
        return
    for name, t in named:
        check_finite(name, t)


#: ``{option: {"type": "int" | "log" | "float" | "choice", "low": .., "high": .. | "choices": [..], "note": ..}}``:
#: the constructor options a tuner may search (:meth:`PosteriorFamily.search_space`; exploration rules too)
SearchSpace = dict[str, dict[str, Any]]


class Collective(Protocol):
    """The cross-rank operations a family may use to combine increments (:meth:`PosteriorFamily.reduce_increment`).

    :mod:`bongrl.distributed` implements them with ``torch.distributed``; keeping them behind this protocol keeps
    the posterior modules free of it (and lets tests run a reduction in one process). Every rank calls the same
    operations in the same order, with tensors of the same shape and dtype."""

    def all_gather(self, t: Tensor) -> list[Tensor]:
        """Every rank's ``t``, in rank order (the same list on every rank)."""
        ...

    def all_reduce_sum(self, t: Tensor) -> None:
        """Replace ``t`` in place by its sum over the ranks (the same bytes on every rank)."""
        ...


def gather_increment(A: Tensor, g: Tensor, collective: Collective) -> tuple[Tensor, Tensor]:
    """The generic cross-rank combination of increments (docs/design.md §8): every rank's columns, concatenated in
    rank order, and the sum of the g's in rank order, so A_all A_allᵀ = Σ_r A_r A_rᵀ and every rank holds the same
    bytes.

    ``A`` (P, K_r) with g's dtype (K_r may differ across ranks, and may be 0), ``g`` (P,). The sizes are gathered
    first, then one (K_max + 1, P) block per rank (the columns transposed, zero padding, then g)."""
    P = g.shape[0]
    K = A.shape[1]
    sizes = torch.tensor([K], dtype=torch.int64, device=g.device)
    ks = [int(s.item()) for s in collective.all_gather(sizes)]
    kmax = max(ks)
    # rows of one contiguous (kmax + 1, P) block: the K columns of A (transposed), zero padding, then g.
    block = torch.zeros(kmax + 1, P, dtype=g.dtype, device=g.device)
    block[:K] = A.T
    block[kmax] = g
    blocks = collective.all_gather(block)
    g_sum = blocks[0][kmax].clone()
    for b in blocks[1:]:  # fixed rank order: the same bytes on every rank
        g_sum += b[kmax]
    # (P, ΣK) as a transposed view of a row-major block, the layout whiten_lin gives a single process
    A_all = torch.cat([b[:k] for b, k in zip(blocks, ks, strict=True)], dim=0).T
    return A_all, g_sum


def symmetrize(m: Tensor) -> Tensor:
    """(M + Mᵀ)/2: removes the antisymmetric round-off that accumulates in covariance updates."""
    return 0.5 * (m + m.transpose(-1, -2))


def eigvecs_sym(m: Tensor) -> Tensor:
    """Orthonormal eigenvectors (ascending eigenvalues, as columns) of the symmetric part of ``m``, computed in
    float64 and returned in ``m``'s dtype. float32 LAPACK ``eigh`` fails or returns NaN on matrices with many
    repeated eigenvalues (the input factor of one-hot features) or columns of very different scale; the matrices
    decomposed here are small (a Gram matrix, a Kronecker factor)."""
    return torch.linalg.eigh(symmetrize(m).double())[1].to(m.dtype)


def cholesky_psd(m: Tensor, jitter: float = 0.0) -> Tensor:
    """Lower Cholesky factor of a symmetric PSD matrix.

    ``jitter`` (relative to the mean diagonal) is added only when asked for: callers document why.
    """
    m = symmetrize(m)
    if jitter > 0.0:
        scale = m.diagonal(dim1=-2, dim2=-1).abs().mean(-1, keepdim=True).clamp_min(1.0)
        m = m + jitter * scale.unsqueeze(-1) * torch.eye(m.shape[-1], dtype=m.dtype, device=m.device)
    chol, info = torch.linalg.cholesky_ex(m)
    if bool((info != 0).any()):
        raise NumericalError("matrix is not positive definite (Cholesky failed)")
    return chol


def whiten_lin(H: Tensor, residual: Tensor, R: Tensor) -> tuple[Tensor, Tensor]:
    """Whitened LIN increment for a batch of linearised observations (BONG-LIN, Jones et al. 2024 §4.2).

    Args:
        H: (B, C, P) Jacobians of the mean function at μ.
        residual: (B, C) innovations y − ŷ.
        R: (B, C, C) observation covariances (positive definite).

    Returns:
        A: (P, B·C) with A Aᵀ = Σ_b H_bᵀ R_b⁻¹ H_b, and g: (P,) = Σ_b H_bᵀ R_b⁻¹ (y_b − ŷ_b).
    """
    if H.shape[1] == 1:  # scalar observations: the 1×1 Cholesky/triangular solves are a square root and a division
        sd = R[:, 0, 0].sqrt()
        A = (H[:, 0, :] / sd.unsqueeze(1)).T
        return A, A @ (residual[:, 0] / sd)
    L = torch.linalg.cholesky(R)  # (B, C, C)
    LinvH = torch.linalg.solve_triangular(L, H, upper=False)  # (B, C, P)
    Linvr = torch.linalg.solve_triangular(L, residual.unsqueeze(-1), upper=False).squeeze(-1)  # (B, C)
    A = LinvH.reshape(-1, H.shape[-1]).T
    g = A @ Linvr.reshape(-1)
    return A, g


def mc_increment(grads: Tensor, factors: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Monte-Carlo BONG increment from M samples θ_m ~ q_{t|t-1} (Jones et al. 2024 §4.1).

    Args:
        grads: (M, P) gradients g_m = ∇ log p(y | x, θ_m).
        factors: optional (M, P, K) square-root factors F_m with −∇² log p(y | x, θ_m) ≈ F_m F_mᵀ (generalised
            Gauss-Newton). Without them the empirical Fisher (MC-EF) is used: −E[∇²ℓ] ≈ (1/M) Σ g_m g_mᵀ.

    Returns:
        (A, g) with A Aᵀ the precision increment and g = mean_m g_m.
    """
    m = grads.shape[0]
    g = grads.mean(0)
    if factors is None:
        A = grads.T / math.sqrt(m)
    else:
        A = factors.permute(1, 0, 2).reshape(factors.shape[1], -1) / math.sqrt(m)
    return A, g


class PosteriorFamily(ABC):
    """One Gaussian posterior family: state creation, BONG predict/update, sampling and predictive covariance.

    Subclasses implement the structure-specific operations; the public methods validate their inputs *before*
    touching any state and return a new state (the input state is never modified in place).
    """

    name: ClassVar[str] = ""

    # ------------------------------------------------------------------ structure-specific (implement these)
    @abstractmethod
    def init(self, mean: Tensor, prior_var: Tensor) -> State:
        """Prior N(mean, diag(prior_var)). ``prior_var`` is (P,) and positive."""

    @abstractmethod
    def _predict(self, state: State, gamma: float, q: float, prior_mean: Tensor | None) -> State:
        """μ ← γμ + (1−γ)μ₀; Σ ← γ²Σ + q I (exactly, or the family's documented approximation)."""

    @abstractmethod
    def _update(self, state: State, A: Tensor, g: Tensor) -> State:
        """Λ' = Λ + A Aᵀ (in the family's structure); μ' = μ + Λ'⁻¹ g."""

    @abstractmethod
    def noise_dim(self, state: State) -> int:
        """Dimension D of the standard-normal noise that :meth:`sample_from_noise` maps to samples."""

    @abstractmethod
    def sample_from_noise(self, state: State, z: Tensor) -> Tensor:
        """Map z ~ N(0, I_D), shape (n, D), to θ ~ N(μ, Σ), shape (n, P). Linear in z, so exact to test."""

    @abstractmethod
    def precondition(self, state: State, v: Tensor) -> Tensor:
        """Σ v for v of shape (P,) or (P, K)."""

    @abstractmethod
    def predictive_cov(self, state: State, H: Tensor) -> Tensor:
        """H Σ Hᵀ for H of shape (..., C, P); returns (..., C, C)."""

    @abstractmethod
    def marginal_variance(self, state: State) -> Tensor:
        """diag(Σ), shape (P,)."""

    @abstractmethod
    def health(self, state: State) -> float:
        """A positive number iff the belief is positive definite (e.g. the smallest eigenvalue or diagonal)."""

    def check_method(self, method: str) -> None:
        """Raise ``ValueError`` if this family, with its options, does not support the BONG variant ``method``
        ("lin", "mc-ef" or "mc-hess"). Called by :class:`~bongrl.bong.BONG` at construction; default: all."""
        return None

    # ------------------------------------------------------------------ self-description
    @classmethod
    def search_space(cls) -> SearchSpace:
        """The constructor options a tuner may search, as ``{name: {"type": "int" | "log" | "float" | "choice",
        "low": .., "high": .. (or "choices": [..]), "note": ..}}`` (:data:`SearchSpace`); default: none."""
        return {}

    def reduce_increment(self, A: Tensor, g: Tensor, collective: Collective) -> tuple[Tensor, Tensor]:
        """Combine the ranks' increments into the joint one (docs/design.md §8): ``(A_all, g_sum)`` such that
        :meth:`update` with them is the update on the union of the ranks' batches.

        Collective (every rank calls it with the same family). ``A`` (P, K_r) with g's dtype, ``g`` (P,). The
        default gathers every rank's columns (:func:`gather_increment`), right for any family; a family whose update
        reads less of A (e.g. only rowsum(A²)) may send less."""
        return gather_increment(A, g, collective)

    # ------------------------------------------------------------------ shared, validated entry points
    def num_params(self, state: State) -> int:
        return int(state["mean"].shape[0])

    def predict(self, state: State, gamma: float = 1.0, q: float = 0.0, prior_mean: Tensor | None = None) -> State:
        """Predict step between observations (docs/design.md §2): forgetting γ ∈ (0, 1], process noise q ≥ 0."""
        if not (isinstance(gamma, (int, float)) and math.isfinite(gamma) and 0.0 < gamma <= 1.0):
            raise ValueError(f"gamma must be in (0, 1], got {gamma!r}")
        if not (isinstance(q, (int, float)) and math.isfinite(q) and q >= 0.0):
            raise ValueError(f"process noise q must be finite and >= 0, got {q!r}")
        if prior_mean is not None:
            self._check_vector("prior_mean", prior_mean, state)
        if gamma == 1.0 and q == 0.0:
            return dict(state)
        return self._predict(state, float(gamma), float(q), prior_mean)

    def update(self, state: State, A: Tensor, g: Tensor) -> State:
        """Information-form BONG step (module docstring): validated, returns a new state."""
        P = self.num_params(state)
        check_all_finite([("A", A), ("g", g)])
        if A.ndim != 2 or A.shape[0] != P:
            raise ValueError(f"A must have shape (P={P}, K), got {tuple(A.shape)}")
        if g.shape != (P,):
            raise ValueError(f"g must have shape ({P},), got {tuple(g.shape)}")
        A = A.to(state["mean"])
        g = g.to(state["mean"])
        new = self._update(state, A, g)
        check_all_finite([(f"updated posterior {k!r} (update rejected)", v) for k, v in new.items()])
        return new

    def update_lin(self, state: State, H: Tensor, residual: Tensor, R: Tensor) -> State:
        """BONG-LIN: linearised model, moment-matched Gaussian likelihood (extended Kalman filter for ``full``).

        Shapes: H (B, C, P) or (C, P); residual (B, C) or (C,); R (B, C, C), (C, C) or a scalar variance.
        """
        H, residual, R = _batch_lin(H, residual, R, self.num_params(state))
        check_all_finite([("H", H), ("residual", residual), ("R", R)])
        if bool((R.diagonal(dim1=-2, dim2=-1) <= 0).any()):
            raise ValueError("observation covariance R must be positive definite")
        A, g = whiten_lin(H.to(state["mean"]), residual.to(state["mean"]), R.to(state["mean"]))
        return self.update(state, A, g)

    def update_mc(self, state: State, grads: Tensor, factors: Tensor | None = None) -> State:
        """BONG-MC: empirical Fisher (``factors=None``) or Gauss-Newton factors at the samples."""
        check_finite("grads", grads)
        if grads.ndim != 2 or grads.shape[1] != self.num_params(state):
            raise ValueError(f"grads must have shape (M, P={self.num_params(state)}), got {tuple(grads.shape)}")
        if factors is not None:
            check_finite("factors", factors)
            if factors.ndim != 3 or factors.shape[:2] != grads.shape:
                raise ValueError(f"factors must have shape (M, P, K), got {tuple(factors.shape)}")
        A, g = mc_increment(grads, factors)
        return self.update(state, A, g)

    def sample(self, state: State, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n samples θ ~ N(μ, Σ), shape (n, P)."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"number of samples must be a positive int, got {n!r}")
        mean = state["mean"]
        z = torch.randn(n, self.noise_dim(state), generator=generator, dtype=mean.dtype, device=mean.device)
        return self.sample_from_noise(state, z)

    def covariance(self, state: State) -> Tensor:
        """Dense Σ (P×P). Costs O(P²) memory: meant for small P, tests and diagnostics."""
        mean = state["mean"]
        eye = torch.eye(mean.shape[0], dtype=mean.dtype, device=mean.device)
        return symmetrize(self.precondition(state, eye))

    def validate_state(self, state: State) -> None:
        """Raise ``ValueError`` unless ``state`` has this family's keys, shapes and finite values."""
        if "mean" not in state:
            raise ValueError("posterior state has no 'mean'")
        if not torch.is_tensor(state["mean"]) or state["mean"].ndim != 1:
            raise ValueError("posterior state 'mean' must be a 1-D tensor")
        for k, v in state.items():
            check_finite(f"posterior state {k!r}", v)

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _check_vector(name: str, v: Tensor, state: State) -> None:
        check_finite(name, v)
        P = state["mean"].shape[0]
        if v.shape != (P,):
            raise ValueError(f"{name} must have shape ({P},), got {tuple(v.shape)}")

    @staticmethod
    def _pull_mean(state: State, gamma: float, prior_mean: Tensor | None) -> Tensor:
        """μ ← γμ + (1−γ)μ₀ (μ₀ = 0 when no prior mean is given, as in the authors' code)."""
        mu = gamma * state["mean"]
        if prior_mean is not None and gamma != 1.0:
            mu = mu + (1.0 - gamma) * prior_mean.to(mu)
        return mu


def _batch_lin(H: Tensor, residual: Tensor, R: Tensor | float, P: int) -> tuple[Tensor, Tensor, Tensor]:
    """Bring (H, residual, R) to shapes (B, C, P), (B, C), (B, C, C)."""
    if not torch.is_tensor(H) or not torch.is_tensor(residual):
        raise ValueError("H and residual must be tensors")
    if H.ndim == 2:
        H = H.unsqueeze(0)
    if H.ndim != 3 or H.shape[-1] != P:
        raise ValueError(f"H must have shape (B, C, P={P}), got {tuple(H.shape)}")
    B, C, _ = H.shape
    if residual.ndim == 1 and B == 1:
        residual = residual.unsqueeze(0)
    if residual.shape != (B, C):
        raise ValueError(f"residual must have shape ({B}, {C}), got {tuple(residual.shape)}")
    if not torch.is_tensor(R):
        R = torch.as_tensor(float(R), dtype=H.dtype, device=H.device)
    if R.ndim == 0:
        R = R * torch.eye(C, dtype=H.dtype, device=H.device).expand(B, C, C)
    elif R.ndim == 2:
        R = R.expand(B, C, C)
    if R.shape != (B, C, C):
        raise ValueError(f"R must have shape ({B}, {C}, {C}), got {tuple(R.shape)}")
    return H, residual, R
