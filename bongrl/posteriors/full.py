"""Full-covariance Gaussian posterior: BONG-LIN here is exactly the extended Kalman filter.

State: ``mean`` (P,), ``cov`` (P, P). Update cost O(P²K + K³) for K whitened observation columns; memory O(P²).
"""

from __future__ import annotations

import torch
from torch import Tensor

from bongrl.posteriors.base import PosteriorFamily, State, cholesky_psd, symmetrize


class FullCovariance(PosteriorFamily):
    """Dense Σ. The update is the Kalman/Woodbury form of Λ' = Λ + AAᵀ (Jones et al. 2024, §4.2; the
    full-covariance BONG-LIN equals the EKF), evaluated in Joseph form so Σ stays symmetric PSD in float32:

        S = I + AᵀΣA,  K = ΣA S⁻¹,  Σ' = (I − KAᵀ) Σ (I − KAᵀ)ᵀ + KKᵀ,  μ' = μ + Σ' g.
    """

    name = "full"

    def init(self, mean: Tensor, prior_var: Tensor) -> State:
        return {"mean": mean.clone(), "cov": torch.diag(prior_var.to(mean))}

    def _predict(self, state: State, gamma: float, q: float, prior_mean: Tensor | None) -> State:
        cov = gamma**2 * state["cov"]
        if q > 0.0:
            cov = cov + q * torch.eye(cov.shape[0], dtype=cov.dtype, device=cov.device)
        return {"mean": self._pull_mean(state, gamma, prior_mean), "cov": cov}

    def _update(self, state: State, A: Tensor, g: Tensor) -> State:
        cov = state["cov"]
        SA = cov @ A  # (P, K)
        S = torch.eye(A.shape[1], dtype=A.dtype, device=A.device) + A.T @ SA
        L = cholesky_psd(S)
        K = torch.cholesky_solve(SA.T, L).T  # (P, K) = Σ A S⁻¹
        M = cov - K @ SA.T  # (I − KAᵀ) Σ
        new_cov = symmetrize(M - (M @ A) @ K.T + K @ K.T)
        return {"mean": state["mean"] + new_cov @ g, "cov": new_cov}

    def noise_dim(self, state: State) -> int:
        return int(state["mean"].shape[0])

    def sample_from_noise(self, state: State, z: Tensor) -> Tensor:
        L = cholesky_psd(state["cov"])
        return state["mean"] + z @ L.T

    def precondition(self, state: State, v: Tensor) -> Tensor:
        return state["cov"] @ v

    def predictive_cov(self, state: State, H: Tensor) -> Tensor:
        return symmetrize(H @ state["cov"] @ H.transpose(-1, -2))

    def marginal_variance(self, state: State) -> Tensor:
        return state["cov"].diagonal().clone()

    def covariance(self, state: State) -> Tensor:
        return state["cov"].clone()

    def health(self, state: State) -> float:
        return float(torch.linalg.eigvalsh(symmetrize(state["cov"])).min())

    def validate_state(self, state: State) -> None:
        super().validate_state(state)
        P = state["mean"].shape[0]
        if set(state) != {"mean", "cov"} or state["cov"].shape != (P, P):
            raise ValueError(f"full posterior state needs 'mean' (P,) and 'cov' (P, P); got {sorted(state)}")
