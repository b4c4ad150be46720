"""Kronecker-factored precision per Linear layer (K-FAC structure, eigenvalue-corrected), diagonal elsewhere.

State (for each Linear layer ``i`` of the layout; ``d_a = d_in + 1`` with a bias, ``d_in`` without):

* ``layer{i}.FG`` (d_out, d_out), ``layer{i}.FA`` (d_a, d_a): the *partial traces* of the accumulated data
  precision of the layer (running Kronecker factors, see below);
* ``layer{i}.UG`` (d_out, d_out), ``layer{i}.UA`` (d_a, d_a): orthonormal eigenvectors of FG and FA (cached);
* ``layer{i}.S`` (d_out, d_a): the precision's eigenvalues in the Kronecker eigenbasis U = UG ⊗ UA;

plus ``mean`` (P,), ``diag`` (R,) — the diagonal precision of the R parameters outside any Linear layer
(omitted when R = 0) — and ``steps`` (1,) when the eigenbases are refreshed only every ``refresh_every`` > 1
updates. The layer's precision block is Λ_layer = U diag(vec S) Uᵀ; different layers and the diagonal part are
independent.

Layer blocks. A Linear layer's weight (d_out, d_in) and bias (d_out,) are stacked into one augmented matrix
[W | b] of shape (d_out, d_a) (input augmented with a constant 1), vectorised row-major like
``torch.flatten``.
For one observation, a whitened BONG column's block is M_k = δ_k ãᵀ (output sensitivity × augmented input), so
vec(M_k) vec(M_k)ᵀ = δ_kδ_kᵀ ⊗ ããᵀ: the per-observation precision block Σ_k vec(M_k)vec(M_k)ᵀ is *exactly* a
Kronecker product (Martens & Grosse 2015, §3; the Fisher block of one example).

Scale-consistent factors. For any block Λ_b = Σ_k vec(M_k)vec(M_k)ᵀ, the partial traces are

    Tr_in Λ_b = Σ_k M_k M_kᵀ  (d_out × d_out),     Tr_out Λ_b = Σ_k M_kᵀ M_k  (d_a × d_a),

both with trace τ = tr Λ_b = Σ_k ‖M_k‖²_F, and Λ_b ≈ (Tr_in Λ_b) ⊗ (Tr_out Λ_b) / τ. This rule preserves the
trace exactly and is exact whenever Λ_b is a Kronecker product X ⊗ Y (then Tr_in = tr(Y)·X, Tr_out = tr(X)·Y);
it is one step of Van Loan & Pitsianis' nearest-Kronecker-product iteration started from the identity. The
running factors FG = Σ_t Tr_in Λ_t, FA = Σ_t Tr_out Λ_t are the partial traces of the *accumulated* data
precision — the online analogue of K-FAC's E[δδᵀ] and E[ããᵀ] (Martens & Grosse 2015) weighted by sensitivity
and input norm, and of the per-task sums of Kronecker factors in the online structured Laplace approximation
(Ritter, Botev & Barber 2018).

Eigenvalues. K-FAC would use eigenvalues λ₀ + e_G e_Aᵀ/τ of (damping + FG ⊗ FA/τ). Here the factors give only
the *basis* U = eig(FG) ⊗ eig(FA) (cached), and the eigenvalues are corrected as in EK-FAC (George et al.
2018): each BONG step sets S ← diag_U'(Λ_old) + diag_U'(Σ_k vec M_k vec M_kᵀ), i.e.
S' = (R_G∘R_G) S (R_A∘R_A)ᵀ + Σ_k (UG'ᵀ M_k UA')∘², with R = U'ᵀU the rotation from the old to the new
basis. This is the best
diagonal (Frobenius) in the new basis of the old structured precision plus the increment, keeps the trace of Λ
exactly, and adds the prior exactly (the prior precision plays the role of K-FAC's Tikhonov damping without
the factored-damping approximation; cf. Immer et al. 2021 / laplace-torch, which add the prior in the
Kronecker eigenbasis too). Exactness: for a single Linear layer with a Gaussian likelihood of isotropic noise
(any number of outputs) and an isotropic prior, Λ_t = λ₀I + I ⊗ X̃ᵀX̃/σ² is diagonal in U, so mean and
covariance equal the closed-form Bayesian linear regression posterior (tests/test_kfac.py).

Mean: the step Δ = Λ'⁻¹g with the structured Λ' (per layer UG((UGᵀ G UA) / S)UAᵀ), rescaled along its direction
by the exact line minimiser of the BONG quadratic model (``rescale_step=True``, the default; ``False`` gives the
protocol's plain μ' = μ + Λ'⁻¹g). The plain step lets every block fit the shared residual as if alone, so it
overshoots: with BONG-LIN the linearised whitened residual e becomes e − AᵀΔ, which the plain step made up to
18× larger than e on CartPole (BongDQN, seed 0) until the mean ran away to ~10¹⁰ and the next Jacobian overflowed
at step 723; the eigenvalues and eigenbases were healthy throughout (min S ≈ 0.99, orthonormal to 1e-6). The
line minimiser provably never lets ‖e − AᵀΔ‖ exceed ‖e‖ (see :meth:`KroneckerFactored._update`).
Predict: S ← 1/(γ²/S + q), diag ← 1/(γ²/diag + q) — exact (qI commutes with any orthonormal basis); FG and FA
(the data precision's partial traces) are scaled by 1/γ². Cost per update of K columns: O(K Σ(d_out² d_a +
d_out d_a²)) for the factors and the projection, plus O(Σ d_out³ + d_a³) for the eigendecompositions,
amortised over ``refresh_every`` updates (between refreshes the increment is projected on the cached basis,
EK-FAC style). Memory O(Σ d_out² + d_a²) + O(R).

The family needs the layout of θ: ``param_shapes`` = [(name, shape), ...] in flat order (``BONG`` passes it
from ``FlatParams``). Every 2-D ``<prefix>.weight`` becomes a Kronecker layer, paired with ``<prefix>.bias``
(1-D, d_out) when present; ``layers`` = [(weight_name, bias_name or None), ...] selects the layers explicitly.
Everything else (and everything when no layout is given) gets a diagonal precision.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from bongrl.posteriors.base import PosteriorFamily, State, eigvecs_sym, symmetrize

__all__ = ["KroneckerFactored", "KFACLayer"]


@dataclass(frozen=True)
class KFACLayer:
    """Where one Linear layer lives in θ: weight at [w_off, w_off + d_out·d_in), bias (if any) at
    [b_off, b_off + d_out); ``b_off`` is None without a bias."""

    name: str
    w_off: int
    d_out: int
    d_in: int
    b_off: int | None

    @property
    def d_a(self) -> int:
        return self.d_in + (1 if self.b_off is not None else 0)


def _parse_layout(
    param_shapes: Sequence[tuple[str, Sequence[int]]], layers: Sequence[tuple[str, str | None]] | None
) -> tuple[list[KFACLayer], int]:
    offsets: dict[str, tuple[int, tuple[int, ...]]] = {}
    off = 0
    for item in param_shapes:
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)):
            raise ValueError(f"param_shapes entries must be (name, shape) pairs, got {item!r}")
        name, shape = item[0], tuple(int(s) for s in item[1])
        if name in offsets:
            raise ValueError(f"parameter {name!r} appears twice in param_shapes")
        if any(s < 0 for s in shape):
            raise ValueError(f"parameter {name!r} has a negative dimension: {shape}")
        offsets[name] = (off, shape)
        n = 1
        for s in shape:
            n *= s
        off += n
    if layers is None:
        layers = []
        for name, (_, shape) in offsets.items():
            if name.endswith("weight") and len(shape) == 2:
                bias = name[: -len("weight")] + "bias"
                ok = bias in offsets and offsets[bias][1] == (shape[0],)
                layers.append((name, bias if ok else None))
    out: list[KFACLayer] = []
    used: set[str] = set()
    for item in layers:
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise ValueError(f"layers entries must be (weight_name, bias_name or None), got {item!r}")
        w, b = item
        if w not in offsets or len(offsets[w][1]) != 2:
            raise ValueError(
                f"layer weight {w!r} is not a 2-D parameter of the layout; known: {sorted(offsets)}"
            )
        d_out, d_in = offsets[w][1]
        if b is not None and (b not in offsets or offsets[b][1] != (d_out,)):
            raise ValueError(f"layer bias {b!r} must be a 1-D parameter of size {d_out} in the layout")
        for n in (w, b):
            if n is not None:
                if n in used:
                    raise ValueError(f"parameter {n!r} is assigned to two layers")
                used.add(n)
        prefix = w[: -len(".weight")] if w.endswith(".weight") else w
        out.append(KFACLayer(prefix, offsets[w][0], d_out, d_in, None if b is None else offsets[b][0]))
    return out, off


class KroneckerFactored(PosteriorFamily):
    """Per-layer Kronecker-factored (eigenvalue-corrected) precision; see the module docstring for the maths.

    Args:
        param_shapes: [(name, shape), ...] of the parameters in θ's flat order (``FlatParams`` order).
        layers: optional explicit [(weight_name, bias_name or None), ...]; default: every 2-D ``*.weight``.
        refresh_every: recompute the Kronecker eigenbases every this many updates (1 = every update).
        rescale_step: scale the mean step Δ = Λ̃'⁻¹g by α = gᵀΔ / (ΔᵀΛ̃Δ + ‖AᵀΔ‖²), the exact minimiser of the
            BONG quadratic model along Δ (Martens & Grosse 2015, §6.4). α = 1 wherever the structure is exact;
            it undoes the over-long steps a block-diagonal precision takes when several layers fit the same
            residual (each block ignores the others' share). On by default (``False``: the protocol's plain
            μ' = μ + Λ'⁻¹g, which diverged on CartPole; module docstring).
    """

    name = "kfac"

    def __init__(
        self,
        param_shapes: Sequence[tuple[str, Sequence[int]]] | None = None,
        layers: Sequence[tuple[str, str | None]] | None = None,
        refresh_every: int = 1,
        rescale_step: bool = True,
    ) -> None:
        if not isinstance(refresh_every, int) or isinstance(refresh_every, bool) or refresh_every < 1:
            raise ValueError(f"refresh_every must be a positive int, got {refresh_every!r}")
        if param_shapes is None:
            if layers is not None:
                raise ValueError("layers needs param_shapes (the flat layout of θ)")
            self.layers: list[KFACLayer] = []
            self.expected_params: int | None = None
        else:
            self.layers, self.expected_params = _parse_layout(param_shapes, layers)
        self.refresh_every = refresh_every
        self.rescale_step = bool(rescale_step)
        self._rest_cache: dict[tuple[int, torch.device], Tensor] = {}

    # ------------------------------------------------------------------ layout helpers
    def _check_P(self, P: int) -> None:
        if self.expected_params is not None and P != self.expected_params:
            raise ValueError(f"kfac layout has {self.expected_params} parameters, the belief has {P}")

    def _rest(self, P: int, device: torch.device) -> Tensor:
        """Flat indices of the parameters outside every Kronecker layer (diagonal block)."""
        key = (P, device)
        if key not in self._rest_cache:
            mask = torch.ones(P, dtype=torch.bool)
            for ly in self.layers:
                mask[ly.w_off : ly.w_off + ly.d_out * ly.d_in] = False
                if ly.b_off is not None:
                    mask[ly.b_off : ly.b_off + ly.d_out] = False
            self._rest_cache[key] = mask.nonzero().squeeze(1).to(device)
        return self._rest_cache[key]

    @staticmethod
    def _block(v: Tensor, ly: KFACLayer) -> Tensor:
        """Layer block of v (P, K) as (d_out, d_a, K)."""
        W = v[ly.w_off : ly.w_off + ly.d_out * ly.d_in].reshape(ly.d_out, ly.d_in, -1)
        if ly.b_off is None:
            return W
        return torch.cat([W, v[ly.b_off : ly.b_off + ly.d_out].reshape(ly.d_out, 1, -1)], dim=1)

    @staticmethod
    def _scatter(out: Tensor, blk: Tensor, ly: KFACLayer) -> None:
        """Write a (d_out, d_a, K) block into out (P, K) in place (out is a fresh buffer)."""
        K = blk.shape[-1]
        out[ly.w_off : ly.w_off + ly.d_out * ly.d_in] = blk[:, : ly.d_in].reshape(-1, K)
        if ly.b_off is not None:
            out[ly.b_off : ly.b_off + ly.d_out] = blk[:, ly.d_in]

    @staticmethod
    def _keys(i: int) -> tuple[str, str, str, str, str]:
        return tuple(f"layer{i}.{k}" for k in ("FG", "FA", "UG", "UA", "S"))  # type: ignore[return-value]

    def _apply_sigma_power(self, state: State, v: Tensor, power: float) -> Tensor:
        """U diag(S)^power Uᵀ v blockwise (and diag^power on the rest), v (P, K)."""
        P = v.shape[0]
        out = torch.empty_like(v)
        for i, ly in enumerate(self.layers):
            _, _, UG, UA, S = (state[k] for k in self._keys(i))
            blk = torch.einsum("ab,bck,cd->adk", UG.T, self._block(v, ly), UA)
            blk = blk * (S**power).unsqueeze(-1)
            self._scatter(out, torch.einsum("ab,bck,cd->adk", UG, blk, UA.T), ly)
        rest = self._rest(P, v.device)
        if rest.numel():
            out[rest] = v[rest] * (state["diag"] ** power).unsqueeze(-1)
        return out

    # ------------------------------------------------------------------ protocol
    def init(self, mean: Tensor, prior_var: Tensor) -> State:
        P = int(mean.shape[0])
        self._check_P(P)
        prec = 1.0 / prior_var.to(mean)
        state: State = {"mean": mean.clone()}
        opts = {"dtype": mean.dtype, "device": mean.device}
        for i, ly in enumerate(self.layers):
            kFG, kFA, kUG, kUA, kS = self._keys(i)
            state[kFG] = torch.zeros(ly.d_out, ly.d_out, **opts)
            state[kFA] = torch.zeros(ly.d_a, ly.d_a, **opts)
            state[kUG] = torch.eye(ly.d_out, **opts)
            state[kUA] = torch.eye(ly.d_a, **opts)
            state[kS] = self._block(prec.unsqueeze(1), ly).squeeze(-1).clone()
        rest = self._rest(P, mean.device)
        if rest.numel():
            state["diag"] = prec[rest].clone()
        if self.refresh_every > 1:
            state["steps"] = torch.zeros(1, **opts)
        return state

    def _predict(self, state: State, gamma: float, q: float, prior_mean: Tensor | None) -> State:
        new = dict(state)
        new["mean"] = self._pull_mean(state, gamma, prior_mean)
        for i in range(len(self.layers)):
            kFG, kFA, _, _, kS = self._keys(i)
            new[kS] = 1.0 / (gamma**2 / state[kS] + q)
            new[kFG] = state[kFG] / gamma**2
            new[kFA] = state[kFA] / gamma**2
        if "diag" in state:
            new["diag"] = 1.0 / (gamma**2 / state["diag"] + q)
        return new

    def _update(self, state: State, A: Tensor, g: Tensor) -> State:
        P = A.shape[0]
        new: State = {}
        refresh = True
        if self.refresh_every > 1:
            new["steps"] = state["steps"] + 1
            refresh = int(state["steps"].item()) % self.refresh_every == 0
        delta = torch.empty_like(g).unsqueeze(1)
        g1 = g.unsqueeze(1)
        for i, ly in enumerate(self.layers):
            kFG, kFA, kUG, kUA, kS = self._keys(i)
            M = self._block(A, ly)  # (d_out, d_a, K)
            FG = state[kFG] + torch.einsum("aik,bik->ab", M, M)
            FA = state[kFA] + torch.einsum("oak,obk->ab", M, M)
            UG, UA, S = state[kUG], state[kUA], state[kS]
            if refresh:
                UG2, UA2 = eigvecs_sym(FG), eigvecs_sym(FA)  # float64: float32 eigh fails on one-hot inputs
                RG, RA = UG2.T @ UG, UA2.T @ UA
                S = (RG * RG) @ S @ (RA * RA).T  # diag of the old precision in the new basis
                UG, UA = UG2, UA2
            Mt = torch.einsum("ab,bck,cd->adk", UG.T, M, UA)
            S = S + (Mt * Mt).sum(-1)
            gt = torch.einsum("ab,bck,cd->adk", UG.T, self._block(g1, ly), UA) / S.unsqueeze(-1)
            self._scatter(delta, torch.einsum("ab,bck,cd->adk", UG, gt, UA.T), ly)
            new.update({kFG: FG, kFA: FA, kUG: UG, kUA: UA, kS: S})
        rest = self._rest(P, A.device)
        if rest.numel():
            diag = state["diag"] + (A[rest] * A[rest]).sum(1)
            delta[rest, 0] = g[rest] / diag
            new["diag"] = diag
        delta = delta.squeeze(1)
        if self.rescale_step:
            # q(αΔ) = −α gᵀΔ + ½α² Δᵀ(Λ̃ + AAᵀ)Δ is the BONG quadratic model along Δ (Λ̃ = the old structured
            # precision); α = num/den minimises it. For LIN (g = Ae) ‖e − αAᵀΔ‖² = ‖e‖² + 2q(αΔ) − α²ΔᵀΛ̃Δ, and
            # q(α*Δ) = −num²/(2 den) ≤ 0: the linearised residual never grows (the plain α = 1 can multiply it).
            num = torch.dot(g, delta)
            den = self._quad(state, delta) + (A.T @ delta).square().sum()
            ok = (num > 0) & (den > 0)
            delta = delta * torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.ones_like(num))
        new["mean"] = state["mean"] + delta
        return new

    def _quad(self, state: State, v: Tensor) -> Tensor:
        """vᵀ Λ v for the structured precision of ``state``."""
        v1 = v.unsqueeze(1)
        total = v.new_zeros(())
        for i, ly in enumerate(self.layers):
            _, _, UG, UA, S = (state[k] for k in self._keys(i))
            vt = torch.einsum("ab,bck,cd->adk", UG.T, self._block(v1, ly), UA).squeeze(-1)
            total = total + (vt * vt * S).sum()
        if "diag" in state:
            vr = v[self._rest(v.shape[0], v.device)]
            total = total + (vr * vr * state["diag"]).sum()
        return total

    def noise_dim(self, state: State) -> int:
        return int(state["mean"].shape[0])

    def sample_from_noise(self, state: State, z: Tensor) -> Tensor:
        # θ = μ + U S^{-1/2} z, z read in θ's layout: covariance U S⁻¹ Uᵀ = Σ.
        out = torch.empty_like(z.T)
        for i, ly in enumerate(self.layers):
            _, _, UG, UA, S = (state[k] for k in self._keys(i))
            blk = self._block(z.T, ly) * S.rsqrt().unsqueeze(-1)
            self._scatter(out, torch.einsum("ab,bck,cd->adk", UG, blk, UA.T), ly)
        rest = self._rest(z.shape[1], z.device)
        if rest.numel():
            out[rest] = z.T[rest] * state["diag"].rsqrt().unsqueeze(-1)
        return state["mean"] + out.T

    def precondition(self, state: State, v: Tensor) -> Tensor:
        vec = v.ndim == 1
        out = self._apply_sigma_power(state, v.unsqueeze(1) if vec else v, -1.0)
        return out.squeeze(1) if vec else out

    def predictive_cov(self, state: State, H: Tensor) -> Tensor:
        lead, (C, P) = H.shape[:-2], H.shape[-2:]
        Ht = H.reshape(-1, P).T  # (P, N), N = B·C
        B = Ht.shape[1] // C if C else 0
        out = torch.zeros(B, C, C, dtype=H.dtype, device=H.device)
        for i, ly in enumerate(self.layers):
            _, _, UG, UA, S = (state[k] for k in self._keys(i))
            Z = torch.einsum("ab,bck,cd->adk", UG.T, self._block(Ht, ly), UA) * S.rsqrt().unsqueeze(-1)
            Z = Z.reshape(-1, B, C)
            out = out + torch.einsum("dbc,dbe->bce", Z, Z)
        rest = self._rest(P, H.device)
        if rest.numel():
            Hr = Ht[rest].reshape(-1, B, C)
            out = out + torch.einsum("rbc,r,rbe->bce", Hr, 1.0 / state["diag"], Hr)
        return symmetrize(out.reshape(*lead, C, C))

    def marginal_variance(self, state: State) -> Tensor:
        P = state["mean"].shape[0]
        out = torch.empty_like(state["mean"]).unsqueeze(1)
        for i, ly in enumerate(self.layers):
            _, _, UG, UA, S = (state[k] for k in self._keys(i))
            var = (UG * UG) @ (1.0 / S) @ (UA * UA).T
            self._scatter(out, var.unsqueeze(-1), ly)
        rest = self._rest(P, out.device)
        if rest.numel():
            out[rest, 0] = 1.0 / state["diag"]
        return out.squeeze(1)

    def health(self, state: State) -> float:
        vals = [float(state[self._keys(i)[4]].min()) for i in range(len(self.layers))]
        if "diag" in state:
            vals.append(float(state["diag"].min()))
        return min(vals)

    def expected_shapes(self, P: int) -> dict[str, tuple[int, ...]]:
        """The state's keys and shapes for P parameters."""
        self._check_P(P)
        shapes: dict[str, tuple[int, ...]] = {"mean": (P,)}
        for i, ly in enumerate(self.layers):
            kFG, kFA, kUG, kUA, kS = self._keys(i)
            shapes.update(
                {
                    kFG: (ly.d_out,) * 2,
                    kFA: (ly.d_a,) * 2,
                    kUG: (ly.d_out,) * 2,
                    kUA: (ly.d_a,) * 2,
                    kS: (ly.d_out, ly.d_a),
                }
            )
        R = int(self._rest(P, torch.device("cpu")).numel())
        if R:
            shapes["diag"] = (R,)
        if self.refresh_every > 1:
            shapes["steps"] = (1,)
        return shapes

    def validate_state(self, state: State) -> None:
        super().validate_state(state)
        P = int(state["mean"].shape[0])
        try:
            expected = self.expected_shapes(P)
        except ValueError as exc:
            raise ValueError(f"kfac posterior state: {exc}") from exc
        got = {k: tuple(v.shape) for k, v in state.items()}
        if got != expected:
            raise ValueError(f"kfac posterior state needs {expected}; got {got}")
        for i in range(len(self.layers)):
            kS = self._keys(i)[4]
            if bool((state[kS] <= 0).any()):
                raise ValueError(f"kfac posterior eigenvalues {kS!r} must be positive")
        if "diag" in state and bool((state["diag"] <= 0).any()):
            raise ValueError("kfac posterior diagonal precision must be positive")
