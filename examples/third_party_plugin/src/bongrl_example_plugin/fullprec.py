"""Full-precision (information-form) Gaussian posterior family ``fullprec``.

State: ``mean`` μ (P,), ``prec`` Λ = Σ⁻¹ (P, P). Where bongrl's built-in ``full`` family stores Σ and
applies the BONG increment in Kalman/Woodbury form, this family stores Λ and applies it literally (Jones,
Chang & Murphy 2024, §3; :mod:`bongrl.posteriors.base`)::

    Λ' = Λ + A Aᵀ,     μ' = μ + Λ'⁻¹ g          (Λ'⁻¹ g by two triangular solves with chol(Λ'))

Update cost O(P²K + P³) for K increment columns; memory O(P²). The information form suits steps with many
observations (K ≫ P), where the covariance form's K×K solve is the larger one. The Cholesky factor is
recomputed on demand, so the state stays a plain ``dict[str, Tensor]`` (checkpointable, all-reducible).
"""

from __future__ import annotations

import torch
from torch import Tensor

from bongrl.posteriors.base import PosteriorFamily, State, cholesky_psd, symmetrize

__all__ = ["FullPrecision"]


class FullPrecision(PosteriorFamily):
    """Dense precision Λ with every operation done through L = chol(Λ), Λ = L Lᵀ:

    * update:      Λ' = Λ + A Aᵀ;  μ' = μ + Λ'⁻¹ g  (``cholesky_solve``)
    * predict:     Σ = Λ⁻¹ (``cholesky_inverse``),  Σ' = γ² Σ + q I,  Λ' = (Σ')⁻¹ via chol(Σ') — exact;
                   for q = 0 this is Λ' = Λ / γ² with no inversion; μ' = γ μ + (1 − γ) μ₀
    * sample:      θ = μ + L⁻ᵀ z,  z ~ N(0, I_P)  (Cov = L⁻ᵀ L⁻¹ = (L Lᵀ)⁻¹ = Σ)
    * precondition Σ v = Λ⁻¹ v  (``cholesky_solve``)
    * predictive:  H Σ Hᵀ = Wᵀ W with W = L⁻¹ Hᵀ
    * marginal:    diag(Σ)_i = Σ_j (L⁻¹)_{ji}²  (squared column norms of L⁻¹)
    * health:      λ_min(Λ) (> 0 iff the belief is positive definite)
    """

    name = "fullprec"

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _chol(state: State) -> Tensor:
        """L = chol(Λ) (``cholesky_psd`` symmetrises first and raises ``ValueError`` if Λ is not PD)."""
        return cholesky_psd(state["prec"])

    # ------------------------------------------------------------------ PosteriorFamily
    def init(self, mean: Tensor, prior_var: Tensor) -> State:
        """Prior N(mean, diag(prior_var)):  Λ₀ = diag(1 / prior_var)."""
        return {"mean": mean.clone(), "prec": torch.diag(1.0 / prior_var.to(mean))}

    def _predict(self, state: State, gamma: float, q: float, prior_mean: Tensor | None) -> State:
        """Σ' = γ² Σ + q I exactly, in precision form (Λ' = Λ / γ² when q = 0, else Λ' = (γ² Λ⁻¹ + q I)⁻¹)."""
        mean = self._pull_mean(state, gamma, prior_mean)
        prec = state["prec"]
        if q == 0.0:
            return {"mean": mean, "prec": prec / gamma**2}
        eye = torch.eye(prec.shape[0], dtype=prec.dtype, device=prec.device)
        cov = gamma**2 * torch.cholesky_inverse(self._chol(state)) + q * eye
        new_prec = torch.cholesky_inverse(cholesky_psd(cov))
        return {"mean": mean, "prec": symmetrize(new_prec)}

    def _update(self, state: State, A: Tensor, g: Tensor) -> State:
        """Λ' = Λ + A Aᵀ;  μ' = μ + Λ'⁻¹ g  with  Λ' = L' L'ᵀ  (``cholesky_solve``)."""
        prec = symmetrize(state["prec"] + A @ A.T)
        L = cholesky_psd(prec)
        step = torch.cholesky_solve(g.unsqueeze(-1), L).squeeze(-1)
        return {"mean": state["mean"] + step, "prec": prec}

    def noise_dim(self, state: State) -> int:
        """D = P: one standard-normal coordinate per parameter."""
        return int(state["mean"].shape[0])

    def sample_from_noise(self, state: State, z: Tensor) -> Tensor:
        """θ = μ + L⁻ᵀ z for each row z of ``z`` (n, P): solves Lᵀ x = z (upper triangular)."""
        L = self._chol(state)
        x = torch.linalg.solve_triangular(L.T, z.to(L).T, upper=True)  # (P, n)
        return state["mean"] + x.T

    def precondition(self, state: State, v: Tensor) -> Tensor:
        """Σ v = Λ⁻¹ v for v of shape (P,) or (P, K)."""
        L = self._chol(state)
        if v.ndim == 1:
            return torch.cholesky_solve(v.unsqueeze(-1), L).squeeze(-1)
        return torch.cholesky_solve(v, L)

    def predictive_cov(self, state: State, H: Tensor) -> Tensor:
        """H Σ Hᵀ = Wᵀ W,  W = L⁻¹ Hᵀ  for H of shape (..., C, P)."""
        L = self._chol(state)
        W = torch.linalg.solve_triangular(L, H.transpose(-1, -2), upper=False)  # (..., P, C)
        return symmetrize(W.transpose(-1, -2) @ W)

    def marginal_variance(self, state: State) -> Tensor:
        """diag(Σ) = diag(L⁻ᵀ L⁻¹): squared column norms of L⁻¹."""
        L = self._chol(state)
        eye = torch.eye(L.shape[0], dtype=L.dtype, device=L.device)
        Linv = torch.linalg.solve_triangular(L, eye, upper=False)
        return (Linv * Linv).sum(0)

    def covariance(self, state: State) -> Tensor:
        """Dense Σ = Λ⁻¹ = (L Lᵀ)⁻¹ (``cholesky_inverse``)."""
        return symmetrize(torch.cholesky_inverse(self._chol(state)))

    def health(self, state: State) -> float:
        """λ_min(Λ): positive iff Λ (and so Σ = Λ⁻¹) is positive definite."""
        return float(torch.linalg.eigvalsh(symmetrize(state["prec"])).min())

    def validate_state(self, state: State) -> None:
        """Keys {mean, prec}, shapes (P,) and (P, P), finite, Λ symmetric positive definite."""
        super().validate_state(state)
        P = state["mean"].shape[0]
        if set(state) != {"mean", "prec"} or state["prec"].shape != (P, P):
            raise ValueError(
                f"fullprec posterior state needs 'mean' (P,) and 'prec' (P, P); got {sorted(state)}"
            )
        prec = state["prec"]
        scale = prec.abs().max().clamp_min(1.0)
        tol = 1e-5 if prec.dtype in (torch.float32, torch.float16, torch.bfloat16) else 1e-10
        if bool(((prec - prec.T).abs() > tol * scale).any()):
            raise ValueError("fullprec posterior precision must be symmetric")
        if int(torch.linalg.cholesky_ex(symmetrize(prec)).info) != 0:
            raise ValueError("fullprec posterior precision must be positive definite")
