"""Diagonal-plus-low-rank precision: Λ = diag(υ) + W Wᵀ, W ∈ R^{P×L} (LO-FI / BONG-DLR).

State: ``mean`` (P,), ``ups`` (P,), ``W`` (P, L). Update cost O(P(L+K)² + (L+K)³); memory O(PL).
"""

from __future__ import annotations

import torch
from torch import Tensor

from bongrl.posteriors.base import PosteriorFamily, SearchSpace, State, cholesky_psd, eigvecs_sym, symmetrize


class DiagonalPlusLowRank(PosteriorFamily):
    """BONG-DLR (Jones et al. 2024 §4.3; authors' ``update_dlrg_bong``, docs/design.md §3).

    Update with K new whitened columns A and natural gradient g:

    1. W̃ = [W, A];  mean step with the *untruncated* precision by Woodbury:
       μ' = μ + (diag υ + W̃W̃ᵀ)⁻¹ g = μ + υ⁻¹g − υ⁻¹W̃ (I + W̃ᵀυ⁻¹W̃)⁻¹ W̃ᵀυ⁻¹g.
    2. Truncate to rank L through the (L+K)×(L+K) Gram matrix: W̃ᵀW̃ = V S Vᵀ (descending),
       W' = W̃ V[:, :L], and the discarded mass goes to the diagonal, υ' = υ + rowsum((W̃ V[:, L:])²),
       so diag(Λ) is preserved exactly. V is orthogonal, so W'W'ᵀ + (discarded) = W̃W̃ᵀ holds to round-off
       even where the eigenvalues are inaccurate; no division by singular values is needed.

    Predict (LO-FI, Chang et al. 2023; authors' ``predict_bong_dlr``): υ' = 1/(γ²/υ + q),
    W' = γ diag(υ'/υ) W chol((I + q Wᵀ diag(υ'/υ) W)⁻¹). Exact for q = 0; an approximation of Σ + qI otherwise.
    With rank L ≥ P the family is exact (equals ``full``).
    """

    name = "dlr"

    def __init__(self, rank: int = 10) -> None:
        if not isinstance(rank, int) or rank < 1:
            raise ValueError(f"rank must be a positive int, got {rank!r}")
        self.rank = rank

    @classmethod
    def search_space(cls) -> SearchSpace:
        return {
            "rank": {
                "type": "int",
                "low": 1,
                "high": 20,
                "note": "rank L of the low-rank precision part: memory O(PL), update O(P(L+K)²)",
            }
        }

    def init(self, mean: Tensor, prior_var: Tensor) -> State:
        P = mean.shape[0]
        return {
            "mean": mean.clone(),
            "ups": 1.0 / prior_var.to(mean),
            "W": torch.zeros(P, self.rank, dtype=mean.dtype, device=mean.device),
        }

    def _predict(self, state: State, gamma: float, q: float, prior_mean: Tensor | None) -> State:
        ups, W = state["ups"], state["W"]
        new_ups = 1.0 / (gamma**2 / ups + q)
        ratio = new_ups / ups
        if q > 0.0:
            # in the (L, P) layout the update keeps W in (contiguous Wᵀ, no copy) and with numbers independent of
            # how W is laid out in memory (see _woodbury)
            WT = W.T.contiguous()
            WrT = WT * ratio
            C = torch.eye(WT.shape[0], dtype=W.dtype, device=W.device) + q * (WrT @ WT.T)
            Cinv = torch.cholesky_inverse(cholesky_psd(C))
            new_W = (gamma * cholesky_psd(Cinv).T @ WrT).T
        else:
            new_W = W / gamma
        return {"mean": self._pull_mean(state, gamma, prior_mean), "ups": new_ups, "W": new_W}

    def _update(self, state: State, A: Tensor, g: Tensor) -> State:
        # Work with the transposed (L+K, P) layout: BLAS is 2-4x faster on short-wide than on tall-skinny
        # operands at these shapes. The returned W is a (P, L) view of a row-major (L, P) block, so the next
        # update's W.T is contiguous; state_dict()/checkpoints make it contiguous when saving.
        ups, W = state["ups"], state["W"]
        rank = W.shape[1]
        WtT = torch.cat([W.T, A.T], dim=0)  # W̃ᵀ, (L+K, P)
        dinv = 1.0 / ups
        DWtT = WtT * dinv  # (D⁻¹W̃)ᵀ
        eye = torch.eye(WtT.shape[0], dtype=W.dtype, device=W.device)
        L = cholesky_psd(eye + DWtT @ WtT.T)
        dg = dinv * g
        delta = dg - torch.cholesky_solve((WtT @ dg).unsqueeze(1), L).squeeze(1) @ DWtT
        # The Gram matrix is only (L+K)²: decompose it in float64 (eigvecs_sym). float32 LAPACK eigh returns NaN
        # when columns of very different scale meet (e.g. ~1e-11 softmax Jacobians beside O(1) factors).
        V = eigvecs_sym(WtT @ WtT.T)
        proj = V.flip(-1).T @ WtT  # rows: W̃ projected on the eigenvectors, descending
        extra = proj[rank:]
        return {"mean": state["mean"] + delta, "ups": ups + (extra * extra).sum(0), "W": proj[:rank].T}

    # -- Woodbury pieces: Σ = D⁻¹ − D⁻¹W M⁻¹ WᵀD⁻¹ with M = I + WᵀD⁻¹W. Computed from a contiguous copy of Wᵀ
    # so the numbers do not depend on how W happens to be laid out in memory (bit-identical after a reload).
    def _woodbury(self, state: State) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        ups = state["ups"]
        WT = state["W"].T.contiguous()  # (L, P)
        dinv = 1.0 / ups
        DWT = WT * dinv  # (D⁻¹W)ᵀ, (L, P)
        M = torch.eye(WT.shape[0], dtype=WT.dtype, device=WT.device) + DWT @ WT.T
        return dinv, WT, DWT, cholesky_psd(M)

    def noise_dim(self, state: State) -> int:
        return int(state["mean"].shape[0] + state["W"].shape[1])

    def sample_from_noise(self, state: State, z: Tensor) -> Tensor:
        """L-RVGA Prop. 1 (authors' ``sample_dlr``): x ~ N(0, υ⁻¹), ε ~ N(0, I_L), B = υ⁻¹W M⁻¹,
        θ − μ = x − B Wᵀx + Bε, whose covariance is exactly (diag υ + WWᵀ)⁻¹."""
        P = state["mean"].shape[0]
        dinv, WT, DWT, Lm = self._woodbury(state)
        x = z[:, :P] * dinv.sqrt()
        eps = z[:, P:]
        Bt = torch.cholesky_solve(DWT, Lm)  # (L, P) = Bᵀ = M⁻¹ WᵀD⁻¹
        return state["mean"] + x - (x @ WT.T) @ Bt + eps @ Bt

    def precondition(self, state: State, v: Tensor) -> Tensor:
        dinv, _, DWT, Lm = self._woodbury(state)
        vec = v.ndim == 1
        V = v.unsqueeze(1) if vec else v
        out = dinv.unsqueeze(1) * V - DWT.T @ torch.cholesky_solve(DWT @ V, Lm)
        return out.squeeze(1) if vec else out

    def predictive_cov(self, state: State, H: Tensor) -> Tensor:
        dinv, _, DWT, Lm = self._woodbury(state)
        HDW = H @ DWT.T  # (..., C, L)
        X = torch.linalg.solve_triangular(Lm, HDW.transpose(-1, -2), upper=False)  # (..., L, C)
        return symmetrize((H * dinv) @ H.transpose(-1, -2) - X.transpose(-1, -2) @ X)

    def marginal_variance(self, state: State) -> Tensor:
        dinv, _, DWT, Lm = self._woodbury(state)
        X = torch.linalg.solve_triangular(Lm, DWT, upper=False)  # (L, P)
        return dinv - (X * X).sum(0)

    def health(self, state: State) -> float:
        return float(state["ups"].min())

    def validate_state(self, state: State) -> None:
        super().validate_state(state)
        P = state["mean"].shape[0]
        if set(state) != {"mean", "ups", "W"} or state["ups"].shape != (P,) or state["W"].shape != (P, self.rank):
            raise ValueError(
                f"dlr posterior state needs 'mean' (P,), 'ups' (P,) and 'W' (P, rank={self.rank}); got "
                + ", ".join(f"{k}{tuple(v.shape)}" for k, v in state.items())
            )
        if bool((state["ups"] <= 0).any()):
            raise ValueError("dlr posterior diagonal precision must be positive")
