"""Randomise-then-optimise (RTO) Thompson samples for :class:`~bongrl.agents.bong_dqn.BongDQN` (docs/design.md §4).

A sample perturbs the prior mean (ξ ~ prior) and every stored TD target (ε_i ~ N(0, σ²)), then is fitted by
natural-gradient sweeps over the replay, preconditioned by the BONG covariance, with bootstrap targets from the
sample itself — so it is consistent under its own Bellman backups (deep exploration).

:class:`RTOSampler` owns what the samples carry from one to the next (the warm start, the merged statistics of
``rto_merge``) and reads the agent only through two narrow views: the estimator's public API
(:class:`~bongrl.bong.BONG`) and a :class:`TransitionSource` over the agent's replay.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import Tensor

from bongrl.bong import BONG

__all__ = ["RTOSampler", "RTOSettings", "TransitionSource", "Transitions"]

#: (obs, act, rew, next_obs, term) as the network and the likelihood see them (observations normalised, rewards in
#: units of the agent's reward scale)
Transitions = tuple[Tensor, Tensor, Tensor, Tensor, Tensor]

#: the merged store's tensors, in checkpoint order (``rto_store.<name>``); ``phi``/``phi_next`` only with cached
#: head features
_STORE_TENSORS = ("obs", "act", "next_obs", "term", "rew_sum", "count", "phi", "phi_next")


#: cached features with at most this fraction of non-zeros are kept as (row, column, value) triplets: a one-hot
#: encoding (DeepSea's grid, a tabular Q) then costs O(rows) per sweep instead of O(rows × features)
SPARSE_DENSITY = 0.05


class _Features:
    """The cached body features φ (M × D) of the merged transitions as the linear head's operator: values
    φWᵀ + b, the chosen action's value, and the transpose product. Dense, or sparse triplets when at most
    :data:`SPARSE_DENSITY` of φ is non-zero (same numbers up to the order of summation)."""

    def __init__(self, phi: Tensor) -> None:
        self.m, self.d = phi.shape
        nonzero = phi != 0
        self.sparse = int(nonzero.sum()) <= SPARSE_DENSITY * phi.numel()
        self.phi = phi
        if self.sparse:
            self.rows, self.cols = nonzero.nonzero(as_tuple=True)
            self.vals = phi[self.rows, self.cols]

    def values(self, W: Tensor, b: Tensor) -> Tensor:
        """Q(s_j, ·) = φ_j Wᵀ + b for every row, (M, A)."""
        if not self.sparse:
            return torch.addmm(b, self.phi, W.T)
        out = b.expand(self.m, -1).clone()
        return out.index_add_(0, self.rows, W[:, self.cols].T * self.vals.unsqueeze(1))

    def chosen(self, W: Tensor, b: Tensor, act: Tensor) -> Tensor:
        """Q(s_j, a_j), (M,)."""
        if not self.sparse:
            return self.values(W, b).gather(1, act.unsqueeze(1))[:, 0]
        return b[act].index_add(0, self.rows, W[act[self.rows], self.cols] * self.vals)

    def transpose(self, w: Tensor, act: Tensor, num_actions: int) -> Tensor:
        """Jᵀw, J the Jacobian of the chosen values in θ = [W row-major, b]: [Σ_j w_j e_{a_j} φ_jᵀ, Σ_j w_j e_{a_j}]."""
        A, D = num_actions, self.d
        if self.sparse:
            gW = torch.zeros(A * D, dtype=w.dtype, device=w.device).index_add_(
                0, act[self.rows] * D + self.cols, w[self.rows] * self.vals)
        else:
            gW = torch.zeros(A, D, dtype=w.dtype, device=w.device).index_add_(0, act, w.unsqueeze(1) * self.phi)
        gb = torch.zeros(A, dtype=w.dtype, device=w.device).index_add_(0, act, w)
        return torch.cat([gW.reshape(-1), gb])


class RTOSettings(Protocol):
    """The hyperparameters a sampler reads, live, on every sample (:class:`~bongrl.agents.bong_dqn.BongDQNConfig`
    has them all; see its field docs)."""

    gamma: float
    obs_std: float
    prior_std: float
    rto_sweeps: int
    rto_step: float
    rto_merge: bool
    rto_clip: float
    rto_cg: int
    rto_precondition: str
    rto_randomize_prior: bool


class TransitionSource(Protocol):
    """What a sampler reads of an agent's replay."""

    def size(self) -> int:
        """Rows stored now."""
        ...

    def added(self) -> int:
        """Transitions added since the start of training (stored or since overwritten)."""
        ...

    def rows(self, idx: Tensor | None = None) -> Transitions:
        """The stored rows ``idx`` (every stored row when ``None``)."""
        ...

    def newest(self, n: int) -> Transitions:
        """The ``n`` rows added last, oldest first (n ≤ :meth:`size`)."""
        ...


class RTOSampler:
    """Randomise-then-optimise posterior samples over a BongDQN replay (docs/design.md §4).

    Args:
        est: the agent's BONG estimator (prior mean, covariance preconditioner, the network at any parameters).
        settings: the agent's config, read on every sample (:class:`RTOSettings`).
        source: the agent's replay (:class:`TransitionSource`).
        generator: the agent's generator: the sampler draws its anchors and target noise from it, in the agent's
            stream (so the numbers do not depend on whether the sampler or the agent holds the code).
        num_actions: the Q-network's number of outputs (the head's rows, for the merged linear-head fast path).

    State (:meth:`state_dict`): :attr:`prev`, the last sample (each sample is warm-started from it), and with
    ``rto_merge`` :attr:`store`, the merged transitions: every distinct (s, a, s', done) once with its count c and
    reward sum, plus, when the posterior is the head of a fixed body, the body's features of s and s'.
    """

    def __init__(
        self, est: BONG, settings: RTOSettings, source: TransitionSource, generator: torch.Generator, num_actions: int
    ) -> None:
        self.est = est
        self.settings = settings
        self.source = source
        self.generator = generator
        self.num_actions = int(num_actions)
        #: the last sample (the next one's warm start); ``None`` before the first
        self.prev: Tensor | None = None
        #: merged transitions (``rto_merge``): keys ``keys`` (transition → row), ``m`` (rows), ``seen`` (transitions
        #: merged so far, as counted by :meth:`TransitionSource.added`), ``features`` (the fixed body, or None) and
        #: the tensors ``obs``, ``act``, ``next_obs``, ``term``, ``rew_sum``, ``count`` (+ ``phi``, ``phi_next``)
        self.store: dict[str, Any] | None = None

    # ------------------------------------------------------------------ sampling
    def sample(self) -> Tensor:
        """θ̃ ≈ argmax_θ log N(θ; μ₀ + ξ, Σ₀) + Σ_i log N(r_i + ε_i + γ_d max_a' Q_θ(s'_i, a'); Q_θ(s_i, a_i), σ²).

        Each sweep fixes the bootstrap targets at the current θ̃ and takes a step θ̃ ← θ̃ + η Σ ∇ of that
        objective, Σ the BONG posterior covariance (whose precision is Σ₀⁻¹ + Σ_i J_iᵀJ_i/σ² for a model linear
        in θ, making the step an exact Newton step there). Warm-started from the previous sample. Raises
        ``FloatingPointError`` (and keeps the previous warm start) if the sample is not finite.
        """
        if self.settings.rto_merge:
            return self._sample_merged()
        cfg, est = self.settings, self.est
        n = self.source.size()
        g = self.generator
        prior_std = cfg.prior_std
        anchor = self._anchor()
        noise = cfg.obs_std * torch.randn(n, generator=g, dtype=est.dtype).to(est.device)
        theta = self.prev if self.prev is not None else est.mean.clone()
        obs, act, rew, nxt, term = self.source.rows()
        for _ in range(cfg.rto_sweeps):
            with torch.no_grad():
                y = rew + noise + cfg.gamma * (1.0 - term) * est.apply(theta, nxt).max(-1).values
            grad_lik = self._loglik_grad(theta, obs, act, y, None, cfg.obs_std**2)
            grad = grad_lik + (anchor - theta) / prior_std**2
            theta = theta + cfg.rto_step * self._precondition(grad)
        return self._keep(theta)

    def _anchor(self) -> Tensor:
        """The sample's prior anchor μ₀ + ξ, ξ ~ N(0, σ₀²I) (``rto_randomize_prior``; else μ₀, drawing nothing)."""
        est = self.est
        if not self.settings.rto_randomize_prior:
            return est.prior_mean.clone()
        xi = torch.randn(est.num_params, generator=self.generator, dtype=est.dtype).to(est.device)
        return est.prior_mean + self.settings.prior_std * xi

    def _precondition(self, v: Tensor) -> Tensor:
        """The sweeps' preconditioner applied to v: the BONG posterior covariance Σ v (``rto_precondition=
        "posterior"``), or the prior covariance σ₀² v (``"identity"``: the ablation without BONG's curvature)."""
        if self.settings.rto_precondition == "identity":
            return v * self.settings.prior_std**2
        return self.est.precondition(v)

    def _loglik_grad(
        self, theta: Tensor, obs: Tensor, act: Tensor, y: Tensor, count: Tensor | None, s2: float
    ) -> Tensor:
        """∇_θ of −½ Σ_j c_j (y_j − Q_θ(s_j, a_j))² / σ² (c_j = 1 without counts), by autograd."""
        th = theta.detach().requires_grad_(True)
        with torch.enable_grad():
            q = self.est.apply(th, obs).gather(1, act.unsqueeze(1)).squeeze(1)
            sq = (y - q) ** 2 if count is None else count * (y - q) ** 2
            (grad_lik,) = torch.autograd.grad(-0.5 * sq.sum() / s2, th)
        return grad_lik

    def _keep(self, theta: Tensor) -> Tensor:
        """Reject a diverged sample; otherwise keep it as the next sample's warm start."""
        if not bool(torch.isfinite(theta).all()):
            raise FloatingPointError("randomise-then-optimise sample diverged (non-finite); lower rto_step")
        self.prev = theta.detach().clone()
        return self.prev

    # ------------------------------------------------------------------ merged transitions (rto_merge)
    def _new_store(self, seen: int) -> dict[str, Any]:
        est = self.est
        store: dict[str, Any] = {"keys": {}, "m": 0, "seen": seen, "features": None}
        body = [m for name, m in est.model.named_children() if name != "head"]
        if est.flat.names == ["head.weight", "head.bias"] and len(body) == len(est.model) - 1:
            store["features"] = torch.nn.Sequential(*body)  # θ = [W (A×H) row-major, b (A)]: Q = φWᵀ + b
        return store

    def merge_new(self) -> dict[str, Any]:
        """Fold the transitions added to the replay since the last call into the merged store (``rto_merge``);
        returns the store. Raises ``RuntimeError`` if some of them have already left the replay."""
        store = self.store
        if store is None:
            store = self.store = self._new_store(self.source.added() - self.source.size())
        n_new = self.source.added() - store["seen"]
        if n_new > self.source.size():
            raise RuntimeError(
                f"{n_new} transitions arrived since the last sample but the replay holds {self.source.size()}: "
                "raise buffer_size (rto_merge needs it to hold the transitions between two samples)"
            )
        if n_new <= 0:
            return store
        obs, act, rew, nxt, term = self.source.newest(n_new)
        rows, fresh = [], []
        for i, key in enumerate(self._keys(obs, act, nxt, term)):
            j = store["keys"].get(key)
            if j is None:
                j = store["m"] + len(fresh)
                store["keys"][key] = j
                fresh.append(i)
            rows.append(j)
        if fresh:
            device, dtype = self.est.device, self.est.dtype
            f = torch.as_tensor(fresh, device=device)
            add = {"obs": obs[f], "act": act[f], "next_obs": nxt[f], "term": term[f],
                   "rew_sum": torch.zeros(len(fresh), dtype=dtype, device=device),
                   "count": torch.zeros(len(fresh), dtype=dtype, device=device)}
            if store["features"] is not None:
                with torch.no_grad():
                    add["phi"] = store["features"](obs[f])
                    add["phi_next"] = store["features"](nxt[f])
            for k, v in add.items():
                store[k] = v if k not in store else torch.cat([store[k], v])
            store["m"] += len(fresh)
        rows_t = torch.as_tensor(rows, device=self.est.device)
        store["rew_sum"].index_add_(0, rows_t, rew)
        store["count"].index_add_(0, rows_t, torch.ones_like(rew))
        store["seen"] = self.source.added()
        return store

    @staticmethod
    def _keys(obs: Tensor, act: Tensor, nxt: Tensor, term: Tensor) -> list[tuple[bytes, int, bytes, float]]:
        """One hashable key per transition: the bytes of s and s', the action and the termination flag."""
        n = obs.shape[0]
        o_np, n_np = obs.reshape(n, -1).cpu().numpy(), nxt.reshape(n, -1).cpu().numpy()
        a_np, t_np = act.cpu().numpy(), term.cpu().numpy()
        return [(o_np[i].tobytes(), int(a_np[i]), n_np[i].tobytes(), float(t_np[i])) for i in range(n)]

    def _sample_merged(self) -> Tensor:
        """:meth:`sample` over the merged transitions (``rto_merge``): same objective, weighted by counts."""
        cfg, est = self.settings, self.est
        store = self.merge_new()
        g = self.generator
        P = est.num_params
        prior_std, s2 = cfg.prior_std, cfg.obs_std**2
        anchor = self._anchor()
        count = store["count"]
        noise = cfg.obs_std * torch.randn(store["m"], generator=g, dtype=est.dtype).to(est.device) / count.sqrt()
        rbar = store["rew_sum"] / count + noise
        cont = cfg.gamma * (1.0 - store["term"])
        act, obs, nxt = store["act"], store["obs"], store["next_obs"]
        theta = self.prev if self.prev is not None else est.mean.clone()
        A = self.num_actions
        c = cfg.rto_clip

        def clip(v: Tensor) -> Tensor:
            return v.clamp(-c, c) if c > 0 else v

        if store["features"] is not None:
            if store.get("ops_m") != store["m"]:  # operators over the cached features, rebuilt as the store grows
                store["ops"], store["ops_m"] = (_Features(store["phi"]), _Features(store["phi_next"])), store["m"]
            phi, phin = store["ops"]

        def jv(v: Tensor) -> Tensor:  # J v: the head's Q(s_j, a_j) at parameters v
            return phi.chosen(v[: P - A].view(A, -1), v[P - A :], act)

        def jt(w: Tensor) -> Tensor:  # Jᵀ w
            return phi.transpose(w, act, A)

        def pcg(theta: Tensor, r: Tensor) -> Tensor:
            z = self._precondition(r)
            d, rz = z, r @ z
            for _ in range(cfg.rto_cg):
                Ad = d / prior_std**2 + jt(count * jv(d)) / s2
                dAd = d @ Ad
                if not bool(dAd > 0):
                    break
                alpha = rz / dAd
                theta, r = theta + alpha * d, r - alpha * Ad
                z = self._precondition(r)
                rz_new = r @ z
                d, rz = z + (rz_new / rz) * d, rz_new
            return theta

        for _ in range(cfg.rto_sweeps):
            if store["features"] is not None:  # linear head on cached features: closed-form gradient
                W, b = theta[: P - A].view(A, -1), theta[P - A :]
                y = rbar + cont * clip(phin.values(W, b).max(-1).values)
                q = phi.chosen(W, b, act)
                grad_lik = jt(count * (y - q) / s2)
                if cfg.rto_cg > 0:  # PCG on Λθ = Σ₀⁻¹ anchor + Jᵀ(c·y)/σ², Λ = Σ₀⁻¹ + JᵀCJ/σ², from θ
                    theta = pcg(theta, grad_lik + (anchor - theta) / prior_std**2)
                    continue
            else:
                with torch.no_grad():
                    y = rbar + cont * clip(est.apply(theta, nxt).max(-1).values)
                grad_lik = self._loglik_grad(theta, obs, act, y, count, s2)
            grad = grad_lik + (anchor - theta) / prior_std**2
            theta = theta + cfg.rto_step * self._precondition(grad)
        return self._keep(theta)

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Tensor]:
        """Checkpoint tensors: ``rto_prev`` (the warm start, once there is one) and, with merged transitions,
        ``rto_store.<tensor>`` plus ``rto_store.m`` and ``rto_store.seen`` (the transition keys and the cached
        body are rebuilt on load)."""
        sd: dict[str, Tensor] = {}
        if self.prev is not None:
            sd["rto_prev"] = self.prev
        store = self.store
        if store is not None:
            sd["rto_store.m"] = torch.tensor(store["m"], dtype=torch.int64)
            sd["rto_store.seen"] = torch.tensor(store["seen"], dtype=torch.int64)
            sd.update({f"rto_store.{k}": store[k] for k in _STORE_TENSORS if k in store})
        return sd

    def load_state_dict(self, sd: dict[str, Tensor]) -> None:
        """Restore :meth:`state_dict` (other keys are ignored; a checkpoint from before the merged store was saved
        has no ``rto_store.*``: the store is then rebuilt from the replay at the next sample, as it was then).

        Load the agent's replay and step counter first: transitions merged-pending in the checkpoint that are no
        longer in the replay (a checkpoint saved without it) are skipped."""
        est = self.est
        # copies: tensors read from a file may sit at any byte offset, and BLAS kernels (so the bits) depend on it
        self.prev = sd["rto_prev"].to(est.device, est.dtype).clone() if "rto_prev" in sd else None
        self.store = None
        if "rto_store.m" not in sd:
            return
        store = self._new_store(int(sd["rto_store.seen"]))
        m = int(sd["rto_store.m"])
        for k in _STORE_TENSORS:
            key = f"rto_store.{k}"
            if key in sd:
                store[k] = sd[key].to(est.device).clone()  # in its saved dtype (e.g. uint8 image observations)
                if store[k].shape[0] != m:
                    raise ValueError(f"{key} has {store[k].shape[0]} rows, the merged store {m}")
            elif k in ("phi", "phi_next") and store["features"] is None:
                continue
            elif m > 0:
                raise ValueError(f"the checkpoint's merged store has no {key!r}")
        if m > 0:
            keys = self._keys(store["obs"], store["act"], store["next_obs"], store["term"])
            store["keys"] = {key: j for j, key in enumerate(keys)}
            if len(store["keys"]) != m:
                raise ValueError("the checkpoint's merged store holds the same transition twice")
        store["m"] = m
        store["seen"] = max(store["seen"], self.source.added() - self.source.size())
        self.store = store
