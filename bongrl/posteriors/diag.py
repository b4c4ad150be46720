"""Diagonal Gaussian posterior stored as a precision vector.

State: ``mean`` (P,), ``prec`` (P,). Update cost O(PK); memory O(P).
"""

from __future__ import annotations

import torch
from torch import Tensor

from bongrl.posteriors.base import PosteriorFamily, State


class DiagonalPrecision(PosteriorFamily):
    """Σ = diag(1/λ). BONG keeps the diagonal of the precision increment (Jones et al. 2024, §4.3, "diag"):

        λ' = λ + rowsum(A ⊙ A) = λ + diag(Hᵀ R⁻¹ H),   μ' = μ + g / λ'

    i.e. the natural-gradient mean (BONG_NOTES §2b "NG form"), not the VD-EKF gain of the authors' code.
    Predict: 1/λ' = γ²/λ + q (exact for a diagonal Σ).
    """

    name = "diag"

    def init(self, mean: Tensor, prior_var: Tensor) -> State:
        return {"mean": mean.clone(), "prec": 1.0 / prior_var.to(mean)}

    def _predict(self, state: State, gamma: float, q: float, prior_mean: Tensor | None) -> State:
        var = gamma**2 / state["prec"] + q
        return {"mean": self._pull_mean(state, gamma, prior_mean), "prec": 1.0 / var}

    def _update(self, state: State, A: Tensor, g: Tensor) -> State:
        prec = state["prec"] + (A * A).sum(1)
        return {"mean": state["mean"] + g / prec, "prec": prec}

    def noise_dim(self, state: State) -> int:
        return int(state["mean"].shape[0])

    def sample_from_noise(self, state: State, z: Tensor) -> Tensor:
        return state["mean"] + z * state["prec"].rsqrt()

    def precondition(self, state: State, v: Tensor) -> Tensor:
        prec = state["prec"]
        return v / (prec if v.ndim == 1 else prec.unsqueeze(-1))

    def predictive_cov(self, state: State, H: Tensor) -> Tensor:
        return (H / state["prec"]) @ H.transpose(-1, -2)

    def marginal_variance(self, state: State) -> Tensor:
        return 1.0 / state["prec"]

    def covariance(self, state: State) -> Tensor:
        return torch.diag(1.0 / state["prec"])

    def health(self, state: State) -> float:
        return float(state["prec"].min())

    def validate_state(self, state: State) -> None:
        super().validate_state(state)
        P = state["mean"].shape[0]
        if set(state) != {"mean", "prec"} or state["prec"].shape != (P,):
            raise ValueError(f"diag posterior state needs 'mean' (P,) and 'prec' (P,); got {sorted(state)}")
        if bool((state["prec"] <= 0).any()):
            raise ValueError("diag posterior precision must be positive")
