"""Diagonal Gaussian posterior stored as a precision vector.

State: ``mean`` (P,), ``prec`` (P,). Update cost O(PK) (``mean_update="ng"``) or O(PK² + K³) (``"gain"``);
memory O(P).
"""

from __future__ import annotations

import torch
from torch import Tensor

from bongrl.posteriors.base import Collective, PosteriorFamily, State

MEAN_UPDATES = ("auto", "ng", "gain")


class DiagonalPrecision(PosteriorFamily):
    """Σ = diag(1/λ). BONG keeps the diagonal of the precision increment (Jones et al. 2024, §4.3, "diag"):

        λ' = λ⁻ + rowsum(A ⊙ A) = λ⁻ + diag(Hᵀ R⁻¹ H)

    and the mean takes one of two steps (``mean_update``):

    * ``"ng"``: the natural-gradient step with the *projected* (diagonal) precision,
      μ' = μ + g / λ' = μ + (Hᵀ R⁻¹ (y − ŷ)) / λ' (the natural-gradient form). Each coordinate fits the residual
      as if it were alone, so with many coordinates sharing one residual the step overshoots: in the linearised
      model the whitened residual e becomes e·(1 − Σ_i a_i²/(λ⁻_i + a_i²)) for one column a = A[:, 0], a factor
      that can reach −P. (This is what diverged on CartPole with BongDQN.)
    * ``"gain"``: the VD-EKF gain of the authors' ``update_ldg_bong`` (BONG paper §4, "LDG", linearised diagonal
      Gaussian; VD-EKF of Chang, Duran-Martin, Shestopaloff, Jones & Murphy 2023),
      K = Σ⁻ Hᵀ (R + H Σ⁻ Hᵀ)⁻¹, μ' = μ + K (y − ŷ), Σ⁻ = diag(1/λ⁻). The family receives only
      A = Hᵀ R^{-1/2} and g = A e (e = R^{-1/2}(y − ŷ)), and by Woodbury
      K (y − ŷ) = Σ⁻ A (I + Aᵀ Σ⁻ A)⁻¹ e = (diag λ⁻ + A Aᵀ)⁻¹ g,
      i.e. the mean step with the *un-projected* updated precision (the ``dlr`` family's step 1 with no
      low-rank part), computed from (A, g) as Σ⁻g − Σ⁻A (I + AᵀΣ⁻A)⁻¹ AᵀΣ⁻g. The linearised residual then
      becomes (I + AᵀΣ⁻A)⁻¹ e: it shrinks and never changes sign. That identity needs g = A e, which holds
      for BONG-LIN only (MC-EF/MC-Hess have g = mean_m g_m, and the authors' LIN-EF/MC-EF diagonal code uses
      the NG form), so :meth:`check_method` rejects ``"gain"`` with the Monte-Carlo variants.

    ``"auto"`` (default) is ``"gain"`` for BONG-LIN — the measured winner: CartPole with BongDQN's defaults ran
    20k steps on 5/5 seeds where ``"ng"`` diverged on every seed by step ~1050; the wheel bandit and digits
    within noise, and digits at σ = 0.03 regret 461 vs 1803 (results/diag_gain_compare.md) — and ``"ng"`` for
    the Monte-Carlo variants (what :meth:`check_method` learns from :class:`~bongrl.bong.BONG`).

    Both forms equal the exact Kalman / conjugate update whenever every observation touches one coordinate
    (then Aᵀ Σ⁻ A is the single term a_j²/λ⁻_j). Predict: 1/λ' = γ²/λ + q (exact for a diagonal Σ).
    """

    name = "diag"

    def __init__(self, mean_update: str = "auto") -> None:
        if mean_update not in MEAN_UPDATES:
            raise ValueError(f"mean_update must be one of {list(MEAN_UPDATES)}, got {mean_update!r}")
        #: the form asked for; :attr:`mean_form` is the one used ("auto" resolved)
        self.mean_update = mean_update
        self.mean_form = "gain" if mean_update == "auto" else mean_update

    def check_method(self, method: str) -> None:
        if self.mean_update == "auto":
            self.mean_form = "gain" if method == "lin" else "ng"
        if self.mean_update == "gain" and method != "lin":
            raise ValueError(
                f"diag mean_update='gain' (the VD-EKF Kalman gain) needs method='lin'; with {method!r} the mean "
                "gradient is not A·e, so use mean_update='ng'"
            )

    def reduce_increment(self, A: Tensor, g: Tensor, collective: Collective) -> tuple[Tensor, Tensor]:
        """With the natural-gradient mean step (``mean_form == "ng"``) the update reads A only through
        rowsum(A²): all-reduce one (2, P) block [rowsum(A_r²); g_r] and return the single column
        √(Σ_r rowsum(A_r²)) with Σ_r g_r — 2P numbers per step whatever the number of ranks and columns
        (docs/design.md §8). The gain step uses A's columns themselves, and a subclass may use more of A than
        rowsum(A²): both take the generic gather of the base class."""
        if type(self) is not DiagonalPrecision or self.mean_form != "ng":
            return super().reduce_increment(A, g, collective)
        buf = torch.stack([(A * A).sum(1), g])  # (2, P)
        collective.all_reduce_sum(buf)
        return buf[0].sqrt().unsqueeze(1), buf[1]

    def init(self, mean: Tensor, prior_var: Tensor) -> State:
        return {"mean": mean.clone(), "prec": 1.0 / prior_var.to(mean)}

    def _predict(self, state: State, gamma: float, q: float, prior_mean: Tensor | None) -> State:
        var = gamma**2 / state["prec"] + q
        return {"mean": self._pull_mean(state, gamma, prior_mean), "prec": 1.0 / var}

    def _update(self, state: State, A: Tensor, g: Tensor) -> State:
        prec0 = state["prec"]
        prec = prec0 + (A * A).sum(1)
        if self.mean_form == "ng":
            return {"mean": state["mean"] + g / prec, "prec": prec}
        # gain: (diag λ⁻ + AAᵀ)⁻¹ g by Woodbury. The K×K system I + AᵀΣ⁻A is solved in float64 (it is small, and
        # its condition number is 1 + the predictive-to-noise variance ratio, which is large exactly when the NG
        # step would overshoot).
        var0 = 1.0 / prec0
        SA = A * var0.unsqueeze(1)  # Σ⁻A, (P, K)
        Sg = var0 * g
        M = torch.eye(A.shape[1], dtype=torch.float64, device=A.device) + (A.T @ SA).double()
        M = 0.5 * (M + M.T)
        u = torch.linalg.solve(M, (SA.T @ g).double().unsqueeze(1)).squeeze(1).to(A.dtype)
        return {"mean": state["mean"] + (Sg - SA @ u), "prec": prec}

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
