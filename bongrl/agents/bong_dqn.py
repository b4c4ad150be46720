"""BongDQN: a DQN whose Q-network weights carry a BONG posterior, updated online after every transition.

Per transition (s, a, r, s', done) the TD target y = r + γ_d (1 − terminated) Q_target(s', a*) (a* = argmax of the
online mean network when ``double_q``, else of the target network) is a Gaussian observation of h(θ) = Q_θ(s, a)
with noise ``obs_std`` (DESIGN.md §3), and one BONG step (Jones et al. 2024) conditions the posterior on it. A batch
of K vectorised environments gives K transitions, conditioned on jointly in one batched update. Before every update a
predict step applies forgetting / process noise, so the posterior tracks the non-stationary TD targets. Optionally,
``replay_every`` > 0 adds BONG steps on minibatches from a replay buffer. The bootstrap uses a lagged copy of the
posterior mean (the target network), refreshed every ``target_update`` env steps.

Exploration is a plugin (``thompson`` by default: act greedily on a posterior sample drawn once per episode).
"""

from __future__ import annotations

import dataclasses
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from bongrl import __version__
from bongrl.agents import rto as _rto
from bongrl.agents.base import DTYPES, ExplorationSettings, PosteriorValueAgent, config_from_kwargs, mlp
from bongrl.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from bongrl.envs.recorder import EpisodeRecorder

__all__ = ["BongDQN", "BongDQNConfig"]

Callback = Callable[["BongDQN", dict[str, Any]], "bool | None"]


@dataclass
class BongDQNConfig(ExplorationSettings):
    """Hyperparameters of :class:`BongDQN` (each can be set as a keyword or with ``--set key=value``)."""

    hidden: list[int] = field(default_factory=lambda: [64, 64])
    """Hidden layer widths of the Q-network MLP (ReLU)."""
    gamma: float = 0.99
    """Discount factor γ_d of the TD target."""
    obs_std: float = 1.0
    """σ: standard deviation of the Gaussian TD-target likelihood (the main exploration knob)."""
    prior_std: float = 0.1
    """Prior standard deviation of every weight around its (seeded) initial value."""
    rank: int = 10
    """Rank L of the ``dlr`` family (ignored by the others)."""
    method: str = "lin"
    """BONG variant: "lin", "mc-ef" or "mc-hess"."""
    num_samples: int = 10
    """M, samples for the MC variants."""
    forget: float = 1.0
    """Forgetting γ ∈ (0, 1]: before every update θ drifts toward its prior as an Ornstein-Uhlenbeck process,
    μ ← γμ + (1−γ)μ₀, Σ ← γ²Σ + (1−γ²)σ₀²I (the prior is stationary; 1 = static parameters)."""
    process_noise: float = 0.0
    """Process noise q ≥ 0 added by the predict step before every update."""
    target_update: int = 500
    """Env steps between refreshes of the target network (a copy of the posterior mean)."""
    double_q: bool = True
    """Double-DQN bootstrap: action from the mean network, value from the target network."""
    td_clip: float = 0.0
    """Clip the TD residual y − Q_μ(s, a) to ±td_clip before the update (0 = off): the BONG step then follows the
    Huber loss, as DQN does, which keeps rare huge TD errors from throwing the mean far."""
    obs_normalize: str = "none"
    """"none", or "bounds": map every observation dimension whose Box bounds are finite affinely onto [−1, 1]
    (others pass through). A weight prior N(μ₀, σ₀²I) treats all inputs alike, so inputs on very different scales
    (MountainCar's velocity spans ±0.07, its position 1.8) give a prior that ignores the small ones."""
    buffer_size: int = 50_000
    """Replay capacity (used when ``replay_every`` > 0)."""
    learning_starts: int = 1_000
    """Env steps before replay updates begin."""
    replay_every: int = 0
    """Env steps between replay updates (0: online updates only)."""
    replay_batch: int = 32
    """Transitions conditioned on jointly in one replay update."""
    replay_steps: int = 1
    """Replay updates each time they run."""
    rto_sweeps: int = 0
    """Randomise-then-optimise Thompson samples (DESIGN.md §3): each posterior sample perturbs the prior mean
    (ξ ~ prior) and every stored TD target (ε_i ~ N(0, σ²)), then takes this many natural-gradient sweeps over the
    whole replay, preconditioned by the BONG covariance, with bootstrap targets from the sample itself (so the
    sample is consistent under its own Bellman backups: deep exploration). 0 = plain samples θ ~ N(μ, Σ). Exact
    Newton steps for a linear head (``posterior_params="head"`` with the ``full`` family)."""
    rto_step: float = 1.0
    """Step size of each randomise-then-optimise sweep (1 = full Gauss-Newton step)."""
    rto_merge: bool = False
    """Randomise-then-optimise over *merged* transitions: duplicate (s, a, s', done) transitions are stored once
    with a count c and their mean reward r̄, and perturbed with ε̄ ~ N(0, σ²/c). Exact in distribution, for any
    network: Σ_i (r_i + ε_i − q)² = c (r̄ + ε̄ − q)² + const. The sweeps then cost O(distinct transitions) — at
    most 2N² on DeepSea — instead of O(replay size), and the ring replay only has to hold the transitions since
    the previous sample (a smaller ``buffer_size`` suffices). With ``posterior_params="head"`` the body's
    features of the merged transitions are computed once and cached (the body is fixed)."""
    rto_clip: float = 0.0
    """With ``rto_merge``: clip the sample's own bootstrap max_a' Q_θ̃(s', a') to [−rto_clip, rto_clip] in the
    sweeps (0 = no clip): a guard on the value scale. It did not cure the divergence seen on DeepSea with 1024
    features (``rto_cg`` did); the DeepSea preset keeps it at 10 as a bound."""
    rto_cg: int = 0
    """With ``rto_merge`` and ``posterior_params="head"``: each sweep (targets fixed at the current sample) solves
    its quadratic with this many conjugate-gradient iterations preconditioned by the BONG covariance, instead of
    one full preconditioned step (0). The step alone is exact only when the covariance is the exact inverse
    precision; in float32 with ~10⁵ spread between prior and data precisions it is not (seen on DeepSea with 1024
    features: the step diverged), while PCG with any SPD preconditioner decreases the sweep's objective."""
    polyak_eval: float = 0.0
    """τ ∈ [0, 1): deterministic predictions (evaluation, ``predict(deterministic=True)``) act greedily on a
    Polyak average θ̄ ← (1−τ)θ̄ + τμ of the posterior mean, updated after every (vector) env step, instead of on μ
    itself (0 = off). The online mean of a value network moves a lot from step to step (CartPole: greedy evals
    jump 500 → 101 within 5k steps); θ̄ averages over ~1/τ steps. Exploration and TD targets are unchanged."""
    linearized_samples: bool = False
    """Thompson samples in BONG-LIN's own linearised model (as NeuralTS does): a sample is a deviation ε ~ N(0, Σ),
    drawn when the rule resamples, that acts through Q_μ(s) + J_μ(s) ε at the current mean μ — instead of the
    network at weights μ + ε. With a broad weight prior (prior_std far above the init scale) weight-space draws
    are networks whose values differ from the mean far beyond the linearised predictive std (MountainCar at 60k
    steps: spread 30 vs 0.8), so every per-episode policy is close to random. Not with ``rto_sweeps``."""
    posterior_params: str = "all"
    """"all" weights, or "head" (the last Linear layer; the body stays at its random initialisation)."""
    num_envs: int = 1
    """Vectorised environments (each step gives ``num_envs`` transitions in one batched update)."""
    dtype: str = "float32"
    """"float32" or "float64"."""

    def validate(self) -> None:
        if not self.hidden or any((not isinstance(h, int)) or h < 1 for h in self.hidden):
            raise ValueError(f"hidden must be a non-empty list of positive ints, got {self.hidden!r}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {self.gamma}")
        for name in ("obs_std", "prior_std"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0.0 < self.forget <= 1.0:
            raise ValueError(f"forget must be in (0, 1], got {self.forget}")
        if not self.td_clip >= 0:
            raise ValueError(f"td_clip must be >= 0, got {self.td_clip}")
        if self.process_noise < 0:
            raise ValueError(f"process_noise must be >= 0, got {self.process_noise}")
        for name in ("target_update", "buffer_size", "replay_batch", "replay_steps", "num_envs", "rank"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.rto_step <= 1.0:
            raise ValueError(f"rto_step must be in (0, 1], got {self.rto_step}")
        if self.rto_cg < 0:
            raise ValueError(f"rto_cg must be >= 0, got {self.rto_cg}")
        if not self.rto_clip >= 0.0:
            raise ValueError(f"rto_clip must be >= 0, got {self.rto_clip}")
        for name in ("learning_starts", "replay_every", "every", "decay_steps", "rto_sweeps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.obs_normalize not in ("none", "bounds"):
            raise ValueError(f"obs_normalize must be 'none' or 'bounds', got {self.obs_normalize!r}")
        if not 0.0 <= self.polyak_eval < 1.0:
            raise ValueError(f"polyak_eval must be in [0, 1), got {self.polyak_eval}")
        if self.linearized_samples and self.rto_sweeps > 0:
            raise ValueError("linearized_samples and rto_sweeps > 0 cannot be combined (RTO samples are weights)")
        if self.posterior_params not in ("all", "head"):
            raise ValueError(f"posterior_params must be 'all' or 'head', got {self.posterior_params!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")



def _make_vec_env(env: Any, num_envs: int, seed: int) -> tuple[gym.vector.VectorEnv, str | None]:
    """A same-step-autoreset vector env from an id, a single env or a vector env."""
    import bongrl.envs  # noqa: F401  (registers bongrl/* ids)

    same_step = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}
    if isinstance(env, str):
        if env not in gym.registry:
            raise ValueError(f"unknown environment id {env!r}")
        vec = gym.make_vec(
            env, num_envs=num_envs, vectorization_mode="sync", vector_kwargs=same_step, wrappers=[EpisodeRecorder]
        )
        return vec, env
    if isinstance(env, gym.vector.VectorEnv):
        mode = env.metadata.get("autoreset_mode")
        if mode is not None and mode != gym.vector.AutoresetMode.SAME_STEP:
            raise ValueError("vector envs must use autoreset_mode=AutoresetMode.SAME_STEP")
        spec = getattr(env, "spec", None)
        return env, (spec.id if spec is not None else None)
    if isinstance(env, gym.Env):
        if num_envs != 1:
            raise ValueError("pass an env id or a vector env to use num_envs > 1")
        spec = env.spec
        vec = gym.vector.SyncVectorEnv([lambda: EpisodeRecorder(env)], **same_step)
        return vec, (spec.id if spec is not None else None)
    raise ValueError(f"env must be a gymnasium env id, Env or VectorEnv, got {type(env).__name__}")


def _bounds_affine(space: gym.spaces.Box) -> tuple[Tensor, Tensor]:
    """(center, half-width) per dimension mapping finite Box bounds onto [−1, 1]; (0, 1) where a bound is infinite
    or the range is degenerate or huge (≥ 1e6, i.e. effectively unbounded)."""
    low, high = np.asarray(space.low, dtype=np.float64), np.asarray(space.high, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        ok = np.isfinite(low) & np.isfinite(high) & (high - low > 0) & (high - low < 1e6)
    low, high = np.where(ok, low, -1.0), np.where(ok, high, 1.0)
    center, half = (high + low) / 2, (high - low) / 2
    return torch.as_tensor(center), torch.as_tensor(half)


class BongDQN(PosteriorValueAgent):
    """Value-based RL with a BONG posterior over the Q-network (SB3-shaped API).

    Example:
        >>> agent = BongDQN("CartPole-v1", posterior="dlr", exploration="thompson", seed=0)
        >>> agent.learn(20_000)
        >>> actions, _ = agent.predict(obs, deterministic=True)
    """

    def __init__(
        self,
        env: Any,
        posterior: str = "dlr",
        exploration: str = "thompson",
        seed: int = 0,
        device: str | torch.device = "auto",
        exploration_options: dict[str, Any] | None = None,
        **hyperparameters: Any,
    ) -> None:
        self.config = config_from_kwargs(BongDQNConfig, hyperparameters, "BongDQN")
        cfg = self.config
        self.seed = int(seed)
        self.env, self.env_id = _make_vec_env(env, cfg.num_envs, self.seed)
        self.num_envs = self.env.num_envs
        obs_space, act_space = self.env.single_observation_space, self.env.single_action_space
        if not isinstance(act_space, gym.spaces.Discrete):
            raise ValueError(f"BongDQN needs a Discrete action space, got {act_space}")
        if not isinstance(obs_space, gym.spaces.Box):
            raise ValueError(f"BongDQN needs a Box observation space, got {obs_space}")
        self.obs_shape = tuple(obs_space.shape)
        torch.manual_seed(self.seed)
        net = self._make_net(int(np.prod(self.obs_shape)), cfg.hidden, int(act_space.n), len(self.obs_shape) > 1)
        options = {**cfg.exploration_options(), **(exploration_options or {})}
        self._exploration_options = dict(exploration_options or {})
        self._build(
            net, int(act_space.n), posterior, exploration, options, self.seed, device, DTYPES[cfg.dtype],
            likelihood="gaussian", obs_std=cfg.obs_std, prior_std=cfg.prior_std, method=cfg.method,
            rank=cfg.rank, num_samples=cfg.num_samples,
            params=["head.weight", "head.bias"] if cfg.posterior_params == "head" else None,
        )
        self._obs_affine = (
            tuple(t.to(self.device, self.dtype) for t in _bounds_affine(obs_space))
            if cfg.obs_normalize == "bounds" else None
        )
        self.linearized_samples = cfg.linearized_samples
        self.target_theta = self.est.mean.clone()
        #: Polyak average of the posterior mean for deterministic predictions (``polyak_eval`` > 0), else None
        self.avg_theta: Tensor | None = self.est.mean.clone() if cfg.polyak_eval > 0 else None
        self.num_timesteps = 0
        self.num_episodes = 0
        self._obs: np.ndarray | None = None
        self._ep_return = np.zeros(self.num_envs)
        self._ep_length = np.zeros(self.num_envs, dtype=np.int64)
        self._replay: dict[str, Tensor] | None = None
        self._replay_pos = 0
        self._replay_full = False
        self._predict_rule = None
        #: Optional (A, g) -> (A, g) applied between computing and applying each BONG increment, e.g.
        #: :func:`bongrl.distributed.reduce_increment` so that every rank holds the same posterior.
        self.increment_reducer: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] | None = None

    def _obs_tensor(self, obs: Any, obs_shape: tuple[int, ...], name: str = "observation") -> Tensor:
        """Validated observations as the network sees them (rescaled when ``obs_normalize="bounds"``)."""
        t = super()._obs_tensor(obs, obs_shape, name)
        if self._obs_affine is None:
            return t
        center, half = self._obs_affine
        return (t - center) / half

    @staticmethod
    def _make_net(in_dim: int, hidden: list[int], n_actions: int, flatten: bool) -> torch.nn.Module:
        net = mlp(in_dim, list(hidden), n_actions)
        if flatten:  # e.g. DeepSea's (N, N) one-hot grid; the head keeps its name for posterior_params="head"
            net = torch.nn.Sequential(OrderedDict([("flatten", torch.nn.Flatten()), *net.named_children()]))
        return net

    # ------------------------------------------------------------------ replay
    def _replay_add(self, obs: Tensor, act: Tensor, rew: Tensor, nxt: Tensor, term: Tensor) -> None:
        cap = self.config.buffer_size
        if self._replay is None:
            self._replay = {
                "obs": torch.zeros((cap, *self.obs_shape), dtype=self.dtype, device=self.device),
                "act": torch.zeros(cap, dtype=torch.int64, device=self.device),
                "rew": torch.zeros(cap, dtype=self.dtype, device=self.device),
                "next_obs": torch.zeros((cap, *self.obs_shape), dtype=self.dtype, device=self.device),
                "term": torch.zeros(cap, dtype=self.dtype, device=self.device),
            }
        for i in range(obs.shape[0]):
            p = self._replay_pos
            for k, v in (("obs", obs), ("act", act), ("rew", rew), ("next_obs", nxt), ("term", term)):
                self._replay[k][p] = v[i]
            self._replay_pos = (p + 1) % cap
            self._replay_full = self._replay_full or self._replay_pos == 0

    def _replay_size(self) -> int:
        return self.config.buffer_size if self._replay_full else self._replay_pos

    # ------------------------------------------------------------------ TD update
    def _td_targets(self, rew: Tensor, nxt: Tensor, term: Tensor) -> Tensor:
        cfg = self.config
        with torch.no_grad():
            q_next_t = self.est._call(self.target_theta, nxt)
            if cfg.double_q:
                a_star = self.q_values(nxt).argmax(-1, keepdim=True)
            else:
                a_star = q_next_t.argmax(-1, keepdim=True)
            boot = q_next_t.gather(1, a_star).squeeze(1)
        return rew + cfg.gamma * (1.0 - term) * boot

    def _bong_step(self, obs: Tensor, act: Tensor, y: Tensor) -> None:
        cfg = self.config
        if cfg.td_clip > 0:
            q_sa = self.q_values(obs).gather(1, act.reshape(-1, 1)).squeeze(1)
            y = q_sa + (y - q_sa).clamp(-cfg.td_clip, cfg.td_clip)
        self.est.predict_step(cfg.forget, cfg.process_noise + (1.0 - cfg.forget**2) * cfg.prior_std**2)
        A, g = self.est.increment(obs, y, index=act)
        if self.increment_reducer is not None:  # e.g. bongrl.distributed: combine the ranks' increments
            A, g = self.increment_reducer(A, g)
        self.est.apply_increment(A, g)

    # ------------------------------------------------------------------ learning
    def learn(
        self,
        total_timesteps: int,
        callback: Callback | None = None,
        progress_bar: bool = False,
        callback_every: int = 0,
    ) -> BongDQN:
        """Interact for ``total_timesteps`` env steps (summed over vectorised envs), updating after each step.

        ``callback(agent, info)`` runs after every finished episode with info keys ``kind="episode"``, ``step``,
        ``episode``, ``return``, ``length``, ``wall``, and — when ``callback_every`` > 0 — every that many env
        steps with ``kind="step"``, ``step``, ``wall``. Returning ``False`` stops training.
        """
        if not isinstance(total_timesteps, (int, np.integer)) or total_timesteps < 0:
            raise ValueError(f"total_timesteps must be a non-negative int, got {total_timesteps!r}")
        cfg = self.config
        if self._obs is None:
            # a fresh agent seeds the envs; a loaded one continues with new, still reproducible seeds
            obs, _ = self.env.reset(seed=self.seed if self.num_timesteps == 0 else self.seed + self.num_episodes)
            self._obs = np.asarray(obs)
            self.rule.reset(self.num_envs)
            self.rule.on_episode_start(self, list(range(self.num_envs)))
        bar = None
        if progress_bar:
            from tqdm.auto import tqdm

            bar = tqdm(total=int(total_timesteps), unit="step", dynamic_ncols=True)
        start_wall, start_step = time.perf_counter(), self.num_timesteps
        target = self.num_timesteps + int(total_timesteps)
        recent: list[float] = []
        stop = False
        carried: Tensor | None = None  # last step's next-observation tensor, when no episode ended (= this obs)
        try:
            while self.num_timesteps < target and not stop:
                obs_t = carried if carried is not None else self._obs_tensor(self._obs, self.obs_shape)
                act_t = self.rule.act(self, obs_t, self.generator)
                actions = act_t.cpu().numpy()
                nxt, rew, term, trunc, info = self.env.step(actions)
                nxt = np.asarray(nxt)
                real_next = nxt.copy()
                done = np.logical_or(term, trunc)
                if done.any() and "final_obs" in info:
                    for i in np.nonzero(done)[0]:
                        real_next[i] = info["final_obs"][i]
                rew64 = np.asarray(rew, dtype=np.float64)
                if not np.isfinite(rew64).all():
                    raise ValueError(f"environment returned a non-finite reward at step {self.num_timesteps}")
                rew_t = torch.as_tensor(rew64, device=self.device).to(self.dtype)
                next_t = self._obs_tensor(real_next, self.obs_shape, "environment observation")
                carried = None if done.any() else next_t
                term_t = torch.as_tensor(np.asarray(term, dtype=np.float64), device=self.device).to(self.dtype)
                y = self._td_targets(rew_t, next_t, term_t)
                self._bong_step(obs_t, act_t, y)
                if cfg.replay_every > 0 or cfg.rto_sweeps > 0:
                    self._replay_add(obs_t, act_t, rew_t, next_t, term_t)
                self.num_timesteps += self.num_envs
                if (
                    cfg.replay_every > 0
                    and self.num_timesteps >= cfg.learning_starts
                    and (self.num_timesteps // self.num_envs) % cfg.replay_every == 0
                ):
                    self._replay_updates()
                if self.avg_theta is not None:
                    self.avg_theta.lerp_(self.est.mean, cfg.polyak_eval)
                if (self.num_timesteps // self.num_envs) % max(1, cfg.target_update // self.num_envs) == 0:
                    self.target_theta = self.est.mean.clone()
                self._ep_return += np.asarray(rew, dtype=np.float64)
                self._ep_length += 1
                ended = np.nonzero(done)[0]
                self._obs = nxt  # before the callbacks: a checkpoint written there holds the state to continue from
                if len(ended):
                    self.rule.on_episode_start(self, [int(i) for i in ended])
                events = []  # every counter is updated before any callback sees (or checkpoints) the agent
                for i in ended:
                    self.num_episodes += 1
                    recent = (recent + [float(self._ep_return[i])])[-20:]
                    events.append({
                        "kind": "episode",
                        "step": self.num_timesteps,
                        "episode": self.num_episodes,
                        "return": float(self._ep_return[i]),
                        "length": int(self._ep_length[i]),
                        "wall": time.perf_counter() - start_wall,
                    })
                    self._ep_return[i] = 0.0
                    self._ep_length[i] = 0
                for event in events:
                    if callback is not None and callback(self, event) is False:
                        stop = True
                if (
                    callback is not None
                    and callback_every > 0
                    and self.num_timesteps // callback_every > (self.num_timesteps - self.num_envs) // callback_every
                ):
                    event = {"kind": "step", "step": self.num_timesteps, "wall": time.perf_counter() - start_wall}
                    if callback(self, event) is False:
                        stop = True
                if bar is not None:
                    bar.update(self.num_envs)
                    if len(ended):
                        sps = (self.num_timesteps - start_step) / max(1e-9, time.perf_counter() - start_wall)
                        bar.set_postfix(ep=self.num_episodes, ret=f"{np.mean(recent):.1f}", sps=f"{sps:.0f}")
        finally:
            if bar is not None:
                bar.close()
        return self

    def _replay_updates(self) -> None:
        cfg = self.config
        n = self._replay_size()
        if n == 0:
            return
        for _ in range(cfg.replay_steps):
            idx = torch.randint(n, (min(cfg.replay_batch, n),), generator=self.generator).to(self.device)
            r = self._replay
            y = self._td_targets(r["rew"][idx], r["next_obs"][idx], r["term"][idx])
            self._bong_step(r["obs"][idx], r["act"][idx], y)

    # ------------------------------------------------------------------ randomise-then-optimise samples
    def sample_params(self, n: int) -> Tensor:
        """Posterior samples for the exploration rule: N(μ, Σ) draws (deviations from μ with
        ``linearized_samples``), or randomise-then-optimise samples fitted to the replay when ``rto_sweeps`` > 0
        (see :class:`BongDQNConfig`)."""
        if self.config.rto_sweeps == 0 or self._replay_size() == 0:
            return super().sample_params(n)
        return torch.stack([self._rto_sample() for _ in range(n)])

    # the sample construction lives in bongrl/agents/rto.py (bound here as methods)
    _rto_sample = _rto._rto_sample
    _rto_merge_new = _rto._rto_merge_new
    _rto_sample_merged = _rto._rto_sample_merged

    # ------------------------------------------------------------------ acting
    def predict(
        self,
        observation: Any,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, None]:
        """SB3-style: actions for a single observation or a batch. ``deterministic`` acts greedily on the mean;
        otherwise the exploration rule acts (per-row Thompson samples, redrawn where ``episode_start``)."""
        obs = self._obs_tensor(observation, self.obs_shape)  # validates first (ragged lists, NaN, dtype)
        single = np.asarray(observation).shape == self.obs_shape
        if deterministic:
            if self.avg_theta is not None:
                with torch.no_grad():
                    act = self.est._call(self.avg_theta, obs).argmax(-1)
            else:
                act = self.q_values(obs).argmax(-1)
        else:
            act = self._stochastic_predict(obs, episode_start)
        out = act.cpu().numpy()
        return (out[0] if single else out), None

    def _stochastic_predict(self, obs: Tensor, episode_start: Any) -> Tensor:
        from bongrl import registry

        B = obs.shape[0]
        rule = self._predict_rule
        if rule is None or getattr(rule, "num_envs", None) != B:
            options = {**self.config.exploration_options(), **self._exploration_options}
            rule = registry.create_exploration(self.exploration_name, **options)
            rule.reset(B)
            rule.on_episode_start(self, list(range(B)))
            self._predict_rule = rule
        elif episode_start is not None:
            starts = np.nonzero(np.asarray(episode_start).reshape(-1))[0]
            if len(starts):
                rule.on_episode_start(self, [int(i) for i in starts])
        return rule.act(self, obs, self.generator)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path, include_replay: bool = False) -> Path:
        """Write a safetensors checkpoint (posterior, target network, network weights, exploration state, RNG)."""
        tensors: dict[str, Tensor] = {f"bong.{k}": v for k, v in self.est.state_dict().items()}
        tensors["target_theta"] = self.target_theta
        tensors.update({f"net.{k}": v for k, v in self.est.model.state_dict().items()})
        tensors.update({f"rule.{k}": v for k, v in self.rule.state_dict().items()})
        tensors["agent_rng"] = self.generator.get_state()
        if include_replay and self._replay is not None:
            tensors.update({f"replay.{k}": v for k, v in self._replay.items()})
        if getattr(self, "_rto_prev", None) is not None:
            tensors["rto_prev"] = self._rto_prev
        if self.avg_theta is not None:
            tensors["avg_theta"] = self.avg_theta
        loop = self._loop_state()
        if loop is not None:
            tensors["obs"] = torch.as_tensor(np.ascontiguousarray(self._obs))
        meta = {
            "class": "BongDQN",
            "version": __version__,
            "env_id": self.env_id,
            "posterior": self.posterior_name,
            "exploration": self.exploration_name,
            "exploration_options": self._exploration_options,
            "seed": self.seed,
            "config": dataclasses.asdict(self.config),
            "num_timesteps": self.num_timesteps,
            "num_episodes": self.num_episodes,
            "obs_shape": list(self.obs_shape),
            "num_actions": self.num_actions,
            "replay_pos": self._replay_pos,
            "replay_full": self._replay_full,
            "loop": loop,
        }
        return save_checkpoint(path, tensors, meta)

    def _loop_state(self) -> dict[str, Any] | None:
        """What ``learn`` needs to continue exactly where it is (bongrl.envs.recorder): per-env replay records,
        episode returns/lengths. ``None`` before the first step or for envs that cannot be replayed."""
        if self._obs is None:
            return None
        envs = getattr(self.env, "envs", None)
        if envs is None or len(envs) != self.num_envs or not all(isinstance(e, EpisodeRecorder) for e in envs):
            return None
        snaps = [e.snapshot() for e in envs]
        if any(s is None for s in snaps):
            return None
        return {"env": snaps, "ep_return": [float(r) for r in self._ep_return],
                "ep_length": [int(n) for n in self._ep_length]}

    def _restore_loop(self, tensors: dict[str, Tensor], loop: dict[str, Any]) -> None:
        """Rebuild the envs' state by replaying their records; continue from the saved observations."""
        envs = getattr(self.env, "envs", None)
        if envs is None or len(envs) != len(loop["env"]) or not all(isinstance(e, EpisodeRecorder) for e in envs):
            return  # e.g. a user-supplied vector env: learn() reseeds it instead
        import warnings

        obs = np.stack([np.asarray(e.restore(snap)) for e, snap in zip(envs, loop["env"])])
        saved = tensors["obs"].numpy()
        if obs.shape != saved.shape or not np.array_equal(obs.astype(saved.dtype), saved):
            warnings.warn("the env did not replay to the checkpointed observation: resume is not exact", stacklevel=3)
        self._obs = obs
        self._ep_return = np.asarray(loop["ep_return"], dtype=np.float64)
        self._ep_length = np.asarray(loop["ep_length"], dtype=np.int64)

    @classmethod
    def load(cls, path: str | Path, env: Any = None, device: str | torch.device = "auto") -> BongDQN:
        """Rebuild an agent from :meth:`save`'s file. ``env`` defaults to a fresh env of the saved id."""
        tensors, meta = load_checkpoint(path)
        if meta.get("class") != "BongDQN":
            raise CheckpointError(f"{str(path)!r} holds a {meta.get('class')!r}, not a BongDQN")
        if env is None:
            if not meta.get("env_id"):
                raise ValueError("the checkpoint has no env id: pass env=")
            env = meta["env_id"]
        agent = cls(
            env, posterior=meta["posterior"], exploration=meta["exploration"], seed=meta["seed"], device=device,
            exploration_options=meta.get("exploration_options") or None, **meta["config"],
        )
        if list(agent.obs_shape) != meta["obs_shape"] or agent.num_actions != meta["num_actions"]:
            raise ValueError("the env's spaces do not match the checkpoint's")
        try:
            agent._restore(tensors, meta)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            if isinstance(exc, CheckpointError):
                raise
            raise CheckpointError(f"{str(path)!r} holds an inconsistent BongDQN checkpoint: {exc}") from exc
        return agent

    def _restore(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        def sub(prefix: str) -> dict[str, Tensor]:
            return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}

        self.est.model.load_state_dict({k: v.to(self.device, self.dtype) for k, v in sub("net.").items()})
        self.est.load_state_dict(sub("bong."))
        self.target_theta = tensors["target_theta"].to(self.device, self.dtype)
        rule_sd = sub("rule.")
        self.rule.reset(self.num_envs)
        if rule_sd:
            self.rule.load_state_dict({k: v.to(self.device) if k == "theta" else v for k, v in rule_sd.items()})
        self.generator.set_state(tensors["agent_rng"].to(torch.uint8))
        replay = sub("replay.")
        if replay:
            self._replay = {k: v.to(self.device) for k, v in replay.items()}
            self._replay_pos = int(meta["replay_pos"])
            self._replay_full = bool(meta["replay_full"])
        self.num_timesteps = int(meta["num_timesteps"])
        self.num_episodes = int(meta["num_episodes"])
        if "rto_prev" in tensors:
            self._rto_prev = tensors["rto_prev"].to(self.device, self.dtype)
        if self.avg_theta is not None:
            if "avg_theta" not in tensors:
                raise ValueError("polyak_eval > 0 but the checkpoint has no 'avg_theta'")
            if tensors["avg_theta"].shape != self.avg_theta.shape:
                raise ValueError("'avg_theta' has the wrong number of parameters")
            self.avg_theta = tensors["avg_theta"].to(self.device, self.dtype)
        if meta.get("loop") and "obs" in tensors:
            self._restore_loop(tensors, meta["loop"])
