"""Randomise-then-optimise (RTO) Thompson samples for :class:`~bongrl.agents.bong_dqn.BongDQN` (DESIGN.md §3).

A sample perturbs the prior mean (ξ ~ prior) and every stored TD target (ε_i ~ N(0, σ²)), then is fitted by
natural-gradient sweeps over the replay, preconditioned by the BONG covariance, with bootstrap targets from the
sample itself — so it is consistent under its own Bellman backups (deep exploration). These functions are bound as
``BongDQN`` methods (``self`` is the agent); they live here to keep the agent module to its loop.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["_rto_sample", "_rto_merge_new", "_rto_sample_merged"]


def _rto_sample(self) -> Tensor:
    """θ̃ ≈ argmax_θ log N(θ; μ₀ + ξ, Σ₀) + Σ_i log N(r_i + ε_i + γ_d max_a' Q_θ(s'_i, a'); Q_θ(s_i, a_i), σ²).

    Each sweep fixes the bootstrap targets at the current θ̃ and takes a step θ̃ ← θ̃ + η Σ ∇ of that
    objective, Σ the BONG posterior covariance (whose precision is Σ₀⁻¹ + Σ_i J_iᵀJ_i/σ² for a model linear in
    θ, making the step an exact Newton step there). Warm-started from the previous sample.
    """
    if self.config.rto_merge:
        return self._rto_sample_merged()
    cfg, est = self.config, self.est
    n = self._replay_size()
    P = est.num_params
    g = self.generator
    prior_std = cfg.prior_std
    anchor = est.prior_mean + prior_std * torch.randn(P, generator=g, dtype=self.dtype).to(self.device)
    noise = cfg.obs_std * torch.randn(n, generator=g, dtype=self.dtype).to(self.device)
    theta = self._rto_prev if getattr(self, "_rto_prev", None) is not None else est.mean.clone()
    obs, act, rew, nxt, term = self._replay_rows()
    for _ in range(cfg.rto_sweeps):
        with torch.no_grad():
            y = rew + noise + cfg.gamma * (1.0 - term) * est._call(theta, nxt).max(-1).values
        grad_lik = _loglik_grad(est, theta, obs, act, y, None, cfg.obs_std**2)
        grad = grad_lik + (anchor - theta) / prior_std**2
        theta = theta + cfg.rto_step * _precondition(self, grad)
    return _keep(self, theta)


def _precondition(self: Any, v: Tensor) -> Tensor:
    """The sweeps' preconditioner applied to v: the BONG posterior covariance Σ v (``rto_precondition=
    "posterior"``), or the prior covariance σ₀² v (``"identity"``: the ablation without BONG's curvature)."""
    if self.config.rto_precondition == "identity":
        return v * self.config.prior_std**2
    return self.est.family.precondition(self.est.state, v)


def _loglik_grad(est: Any, theta: Tensor, obs: Tensor, act: Tensor, y: Tensor, count: Tensor | None,
                 s2: float) -> Tensor:
    """∇_θ of −½ Σ_j c_j (y_j − Q_θ(s_j, a_j))² / σ² (c_j = 1 without counts), by autograd."""
    th = theta.detach().requires_grad_(True)
    with torch.enable_grad():
        q = est._call(th, obs).gather(1, act.unsqueeze(1)).squeeze(1)
        sq = (y - q) ** 2 if count is None else count * (y - q) ** 2
        (grad_lik,) = torch.autograd.grad(-0.5 * sq.sum() / s2, th)
    return grad_lik


def _keep(self: Any, theta: Tensor) -> Tensor:
    """Reject a diverged sample; otherwise keep it as the next sample's warm start."""
    if not bool(torch.isfinite(theta).all()):
        raise FloatingPointError("randomise-then-optimise sample diverged (non-finite); lower rto_step")
    self._rto_prev = theta.detach().clone()
    return self._rto_prev

def _rto_merge_new(self) -> dict[str, Any]:
    """Fold the transitions added to the replay since the last call into the merged store (``rto_merge``)."""
    cfg = self.config
    store = getattr(self, "_rto_store", None)
    if store is None:
        store = {"keys": {}, "m": 0, "seen": self.num_timesteps - self._replay_size(), "features": None}
        names = self.est.flat.names
        body = [m for name, m in self.est.model.named_children() if name != "head"]
        if names == ["head.weight", "head.bias"] and len(body) == len(self.est.model) - 1:
            store["features"] = torch.nn.Sequential(*body)  # θ = [W (A×H) row-major, b (A)]: Q = φWᵀ + b
        self._rto_store = store
    n_new = self.num_timesteps - store["seen"]
    if n_new > self._replay_size():
        raise RuntimeError(
            f"{n_new} transitions arrived since the last sample but the replay holds {self._replay_size()}: "
            "raise buffer_size (rto_merge needs it to hold the transitions between two samples)"
        )
    if n_new <= 0:
        return store
    cap = cfg.buffer_size
    idx = (self._replay_pos - n_new + torch.arange(n_new)) % cap
    obs, act, rew, nxt, term = self._replay_rows(idx.to(self.device))
    o_np, n_np = obs.reshape(n_new, -1).cpu().numpy(), nxt.reshape(n_new, -1).cpu().numpy()
    a_np, t_np = act.cpu().numpy(), term.cpu().numpy()
    rows, fresh = [], []
    for i in range(n_new):
        key = (o_np[i].tobytes(), int(a_np[i]), n_np[i].tobytes(), float(t_np[i]))
        j = store["keys"].get(key)
        if j is None:
            j = store["m"] + len(fresh)
            store["keys"][key] = j
            fresh.append(i)
        rows.append(j)
    if fresh:
        f = torch.as_tensor(fresh, device=self.device)
        add = {"obs": obs[f], "act": act[f], "next_obs": nxt[f], "term": term[f],
               "rew_sum": torch.zeros(len(fresh), dtype=self.dtype, device=self.device),
               "count": torch.zeros(len(fresh), dtype=self.dtype, device=self.device)}
        if store["features"] is not None:
            with torch.no_grad():
                add["phi"] = store["features"](obs[f])
                add["phi_next"] = store["features"](nxt[f])
        for k, v in add.items():
            store[k] = v if k not in store else torch.cat([store[k], v])
        store["m"] += len(fresh)
    rows_t = torch.as_tensor(rows, device=self.device)
    store["rew_sum"].index_add_(0, rows_t, rew)
    store["count"].index_add_(0, rows_t, torch.ones_like(rew))
    store["seen"] = self.num_timesteps
    return store

def _rto_sample_merged(self) -> Tensor:
    """:meth:`_rto_sample` over the merged transitions (``rto_merge``): same objective, weighted by counts."""
    cfg, est = self.config, self.est
    store = self._rto_merge_new()
    g = self.generator
    P = est.num_params
    prior_std, s2 = cfg.prior_std, cfg.obs_std**2
    anchor = est.prior_mean + prior_std * torch.randn(P, generator=g, dtype=self.dtype).to(self.device)
    count = store["count"]
    noise = cfg.obs_std * torch.randn(store["m"], generator=g, dtype=self.dtype).to(self.device) / count.sqrt()
    rbar = store["rew_sum"] / count + noise
    cont = cfg.gamma * (1.0 - store["term"])
    act, obs, nxt = store["act"], store["obs"], store["next_obs"]
    theta = self._rto_prev if getattr(self, "_rto_prev", None) is not None else est.mean.clone()
    A = self.num_actions
    c = cfg.rto_clip

    def clip(v: Tensor) -> Tensor:
        return v.clamp(-c, c) if c > 0 else v

    def jv(v: Tensor) -> Tensor:  # J v: the head's Q(s_j, a_j) at parameters v
        return torch.addmm(v[P - A :], store["phi"], v[: P - A].view(A, -1).T).gather(1, act.unsqueeze(1))[:, 0]

    def jt(w: Tensor) -> Tensor:  # Jᵀ w
        gW = torch.zeros(A, P // A - 1, dtype=w.dtype, device=w.device).index_add_(
            0, act, w.unsqueeze(1) * store["phi"])
        return torch.cat([gW.reshape(-1), torch.zeros(A, dtype=w.dtype, device=w.device).index_add_(0, act, w)])

    def pcg(theta: Tensor, r: Tensor) -> Tensor:
        z = _precondition(self, r)
        d, rz = z, r @ z
        for _ in range(cfg.rto_cg):
            Ad = d / prior_std**2 + jt(count * jv(d)) / s2
            dAd = d @ Ad
            if not bool(dAd > 0):
                break
            alpha = rz / dAd
            theta, r = theta + alpha * d, r - alpha * Ad
            z = _precondition(self, r)
            rz_new = r @ z
            d, rz = z + (rz_new / rz) * d, rz_new
        return theta

    for _ in range(cfg.rto_sweeps):
        if store["features"] is not None:  # linear head on cached features: closed-form gradient
            phi, phin = store["phi"], store["phi_next"]
            W, b = theta[: P - A].view(A, -1), theta[P - A :]
            y = rbar + cont * clip(torch.addmm(b, phin, W.T).max(-1).values)
            q = torch.addmm(b, phi, W.T).gather(1, act.unsqueeze(1)).squeeze(1)
            grad_lik = jt(count * (y - q) / s2)
            if cfg.rto_cg > 0:  # PCG on Λθ = Σ₀⁻¹ anchor + Jᵀ(c·y)/σ², Λ = Σ₀⁻¹ + JᵀCJ/σ², from θ
                theta = pcg(theta, grad_lik + (anchor - theta) / prior_std**2)
                continue
        else:
            with torch.no_grad():
                y = rbar + cont * clip(est._call(theta, nxt).max(-1).values)
            grad_lik = _loglik_grad(est, theta, obs, act, y, count, s2)
        grad = grad_lik + (anchor - theta) / prior_std**2
        theta = theta + cfg.rto_step * _precondition(self, grad)
    return _keep(self, theta)
