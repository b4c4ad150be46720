"""BongDQN: a DQN whose Q-network weights carry a BONG posterior, updated online after every transition.

Per transition (s, a, r, s', done) the TD target y = r + γ_d (1 − terminated) Q_target(s', a*) (a* = argmax of the
online mean network when ``double_q``, else of the target network) is a Gaussian observation of h(θ) = Q_θ(s, a)
with noise ``obs_std`` (docs/design.md §5), and one BONG step (Jones et al. 2024) conditions the posterior on it. A
batch of K vectorised environments gives K transitions, conditioned on jointly in one batched update. Before every
update a predict step applies forgetting / process noise, so the posterior tracks the non-stationary TD targets.
Optionally, ``replay_every`` > 0 adds BONG steps on minibatches from a replay buffer. The bootstrap uses a lagged copy
of the posterior mean (the target network), refreshed every ``target_update`` env steps.

Exploration is a plugin (``thompson`` by default: act greedily on a posterior sample drawn once per episode).

The module is long because the agent's env loop, replay buffer, warm-up normalisation, body training and its
exact-resume checkpoint share the agent's private state; the parts that stand alone live beside it (``spaces.py``,
``networks.py``, ``normalize.py``, ``rto.py``), and ``BongDQNConfig`` documents every hyperparameter in place.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from bongrl import __version__
from bongrl.agents.base import DTYPES, ExplorationSettings, PosteriorValueAgent, config_from_kwargs
from bongrl.agents.networks import build_q_network
from bongrl.agents.normalize import WarmupScale, reward_scale
from bongrl.agents.protocol import Agent
from bongrl.agents.rto import RTOSampler, Transitions
from bongrl.agents.sb3_compat import checkpoint_file, sb3_infos
from bongrl.agents.spaces import EncodedObservations, ObsEncoder
from bongrl.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from bongrl.envs.recorder import EpisodeRecorder
from bongrl.envs.sb3_vec import as_vector_env, is_sb3_vec_env
from bongrl.envs.wrappers import episode_success
from bongrl.posteriors.base import NumericalError

__all__ = ["BongDQN", "BongDQNConfig"]

_log = logging.getLogger("bongrl")


#: Consecutive rejected (non-finite) updates after which training stops with a :class:`NumericalError`: isolated
#: failures are skipped, but a posterior that can no longer produce a finite update is not learning.
MAX_REJECTED_IN_A_ROW = 100


@dataclass
class BongDQNConfig(ExplorationSettings):
    """Hyperparameters of :class:`BongDQN` (each can be set as a keyword or with ``--set key=value``)."""

    hidden: list[int] = field(default_factory=lambda: [64, 64])
    """Hidden layer widths of the Q-network MLP (ReLU; image observations get a fixed CNN instead); ``[]`` is a
    linear Q on the encoded observation (tabular for one-hot observations such as DeepSea's). Wider networks cost
    more per update for no measured gain on classic control (docs/design.md §9.3)."""
    gamma: float = 0.99
    """Discount factor γ_d of the TD target. Lower it when the task's horizon is short or the bootstrap targets
    drift; raise it (up to 1) for sparse rewards far in the future."""
    obs_std: float = 3.0
    """σ: standard deviation of the Gaussian TD-target likelihood, in units of the reward scale (see
    ``reward_normalize``): the main exploration knob. Raise it when updates diverge; lower it when rewards are
    deterministic and exploration must be deep (docs/design.md §9.3, §9.4)."""
    prior_std: float = 1.0
    """Prior standard deviation σ₀ of every weight around its (seeded) initial value; it also sets the size of
    BONG's steps, so lowering it slows learning, not only exploration (docs/design.md §9.3)."""
    rank: int = 10
    """Rank L of the low-rank part of the ``dlr`` family (ignored by the others). Raise it when the posterior
    needs more directions of correlation; the update cost grows as (L + batch)² per parameter (docs/design.md §3)."""
    method: str = "lin"
    """BONG variant: "lin" (linearised), "mc-ef" or "mc-hess" (Monte Carlo with the empirical Fisher or the
    Hessian). Keep "lin": with a Gaussian likelihood MC-EF's precision explodes on surprising rewards and the
    posterior stops exploring (docs/design.md §9.1)."""
    mean_update: str = "auto"
    """Mean step of the ``diag`` family (ignored by the others): "gain" (the VD-EKF Kalman gain of the authors'
    code), "ng" (natural gradient with the diagonal precision; overshoots when many weights share one residual),
    or "auto" = "gain" for LIN and "ng" for the MC variants (:class:`~bongrl.posteriors.diag.DiagonalPrecision`)."""
    num_samples: int = 10
    """M, Monte-Carlo samples per update for the MC variants (ignored by "lin")."""
    forget: float = 1.0
    """Forgetting γ ∈ (0, 1]: before every update θ drifts toward its prior as an Ornstein-Uhlenbeck process,
    μ ← γμ + (1−γ)μ₀, Σ ← γ²Σ + (1−γ²)σ₀²I (the prior is stationary; 1 = static parameters). Lower it when the
    environment changes over time and old data should lose weight."""
    process_noise: float = 1e-5
    """Process noise q ≥ 0 added by the predict step before every update. Without it the precision of a static
    parameter grows without bound, the steps vanish, and the posterior keeps weighing stale bootstrap targets
    (docs/design.md §9.3). Raise it when a policy that once learned decays in long runs."""
    target_update: int = 20
    """Env steps between refreshes of the target network (a copy of the posterior mean)."""
    double_q: bool = True
    """Double-DQN bootstrap: action from the mean network, value from the target network."""
    td_clip: float = 0.0
    """Clip the TD residual y − Q_μ(s, a) to ±td_clip before the update (0 = off): the BONG step then follows the
    Huber loss, as DQN does. Set it when rare huge TD errors throw the mean far."""
    obs_normalize: str = "auto"
    """"auto": map every Box dimension with finite bounds affinely onto [−1, 1] and standardise the others by
    their mean and std over the first ``learning_starts`` steps (then frozen; :mod:`bongrl.agents.normalize`);
    "bounds": the finite ones only; "none". A prior N(μ₀, σ₀²I) treats all inputs alike, so without it inputs on
    a small scale are ignored (docs/design.md §9.3)."""
    reward_normalize: str = "warmup"
    """"warmup": rewards are divided by their root mean square over the first ``learning_starts`` steps (then
    frozen), so ``obs_std`` and the weight prior mean the same on every env; "none": raw rewards. Change it to
    "none" when the rewards' scale is part of the tuning, as in the DeepSea preset (docs/design.md §9.3)."""
    buffer_size: int = 50_000
    """Replay capacity (used when ``replay_every`` > 0)."""
    learning_starts: int = 1_000
    """Env steps before replay updates begin; also the warm-up over which the reward and observation scales are
    measured (``reward_normalize``, ``obs_normalize``)."""
    replay_every: int = 4
    """Env steps between replay updates (0: online updates only). Replay re-conditions on stored transitions,
    so the posterior counts each transition about ``replay_batch × replay_steps / replay_every`` + 1 times: it
    is a tempered posterior (likelihood to a power ≈ 9 by default), not the exact Bayes posterior of the data
    (docs/design.md §9.3)."""
    replay_batch: int = 32
    """Transitions conditioned on jointly in one replay update."""
    replay_steps: int = 1
    """Replay updates each time they run."""
    rto_sweeps: int = 0
    """Randomise-then-optimise Thompson samples (docs/design.md §4): each sample perturbs the prior mean and every
    stored TD target, then takes this many sweeps over the replay preconditioned by the BONG covariance, with
    bootstrap targets from the sample itself (deep exploration). 0 = plain samples θ ~ N(μ, Σ). Raise it when
    rewards are sparse and need deep exploration, as on DeepSea (docs/design.md §9.4)."""
    rto_step: float = 1.0
    """Step size of each randomise-then-optimise sweep (1 = full Gauss-Newton step)."""
    rto_merge: bool = False
    """Randomise-then-optimise over *merged* transitions: duplicates of (s, a, s', done) are stored once with a
    count c and their mean reward, perturbed by ε̄ ~ N(0, σ²/c) (exact in distribution). Sweeps then cost
    O(distinct transitions) instead of O(replay size). Turn it on when an environment revisits few distinct
    transitions, as DeepSea does (docs/design.md §4, §9.4)."""
    rto_clip: float = 0.0
    """With ``rto_merge``: clip the sample's own bootstrap max_a' Q_θ̃(s', a') to [−rto_clip, rto_clip] in the
    sweeps (0 = no clip): a bound on the value scale, not a cure for diverging sweeps (use ``rto_cg``;
    docs/design.md §9.4)."""
    rto_cg: int = 0
    """With ``rto_merge`` and ``posterior_params="head"``: each sweep solves its quadratic with this many
    conjugate-gradient iterations preconditioned by the BONG covariance instead of one preconditioned step (0).
    Raise it when RTO samples diverge: the single step is exact only if the float32 covariance is the exact
    inverse of the precision (docs/design.md §9.4)."""
    rto_precondition: str = "posterior"
    """Preconditioner of the randomise-then-optimise sweeps: "posterior" (the BONG covariance: Newton steps for a
    linear head) or "identity" (the prior covariance σ₀²I, an ablation that shows what BONG's curvature adds)."""
    rto_randomize_prior: bool = True
    """Anchor each randomise-then-optimise sample at a prior draw μ₀ + ξ, ξ ~ N(0, σ₀²I) (True), or at the prior
    mean μ₀ with only the TD targets perturbed (False: the ablation without a randomised prior)."""
    polyak_eval: float = 1e-3
    """τ ∈ [0, 1): Polyak average θ̄ ← (1−τ)θ̄ + τμ of the posterior mean after every vector env step (0 = off),
    for the "averaged" evaluation (:meth:`BongDQN.greedy_predictor`); ``predict(deterministic=True)`` uses μ, which
    moves a lot between steps. θ̄ averages over ~1/τ steps; exploration and TD targets never use it. Lower it when
    evaluations lag training too long (docs/design.md §9.3)."""
    linearized_samples: bool = True
    """Thompson samples in BONG-LIN's own linearised model (as NeuralTS does): a deviation ε ~ N(0, Σ), drawn when
    the rule resamples, acts through Q_μ(s) + J_μ(s) ε at the current mean μ instead of as the network at μ + ε.
    Under a broad weight prior, weight-space draws are near-random policies (docs/design.md §9.3). Must be false
    with ``rto_sweeps``."""
    posterior_params: str = "auto"
    """Which weights carry the posterior: "all", "head" (the last Linear layer), or "auto" = "head" for image
    observations (a CNN body, see :mod:`bongrl.agents.networks`) and "all" otherwise. The body outside the
    posterior stays at its random initialisation unless ``train_body`` trains it."""
    num_envs: int = 1
    """Vectorised environments (each step gives ``num_envs`` transitions in one batched update). Raise it to
    condition on more transitions per update; it does not raise env steps per CPU-second (docs/design.md §9.6)."""
    dtype: str = "float32"
    """"float32" or "float64": the dtype of the network and the posterior. "float64" is exact where float32
    loses precision, at a much higher cost (docs/design.md §9.4)."""
    train_body: str = "auto"
    """Train the body outside a head-only posterior, as Bayesian DQN and NeuralLinear do: every replay minibatch
    also takes an Adam step on the body for the Huber TD loss of the posterior-mean network, while the head stays
    the BONG posterior (docs/design.md §5). "auto": on for image observations, off otherwise (a random-feature
    body); "on"; "off"."""
    body_lr: float = 1e-4
    """Adam learning rate of the body (``train_body``); SB3 DQN's default."""
    body_grad_clip: float = 10.0
    """Clip the body's gradient to this global norm before each Adam step (0 = off); SB3 DQN's max_grad_norm."""

    def validate(self) -> None:
        if not isinstance(self.hidden, list) or any((not isinstance(h, int)) or h < 1 for h in self.hidden):
            raise ValueError(f"hidden must be a list of positive ints, got {self.hidden!r}")
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
        if self.obs_normalize not in ("none", "bounds", "auto"):
            raise ValueError(f"obs_normalize must be 'none', 'bounds' or 'auto', got {self.obs_normalize!r}")
        if self.reward_normalize not in ("none", "warmup"):
            raise ValueError(f"reward_normalize must be 'none' or 'warmup', got {self.reward_normalize!r}")
        if not 0.0 <= self.polyak_eval < 1.0:
            raise ValueError(f"polyak_eval must be in [0, 1), got {self.polyak_eval}")
        if self.linearized_samples and self.rto_sweeps > 0:
            raise ValueError(
                "rto_sweeps > 0 needs linearized_samples=false (randomise-then-optimise samples are weights)"
            )
        if self.rto_precondition not in ("posterior", "identity"):
            raise ValueError(f"rto_precondition must be 'posterior' or 'identity', got {self.rto_precondition!r}")
        if self.posterior_params not in ("auto", "all", "head"):
            raise ValueError(f"posterior_params must be 'auto', 'all' or 'head', got {self.posterior_params!r}")
        if self.train_body not in ("auto", "on", "off"):
            raise ValueError(f"train_body must be 'auto', 'on' or 'off', got {self.train_body!r}")
        if not self.body_lr > 0:
            raise ValueError(f"body_lr must be > 0, got {self.body_lr}")
        if not self.body_grad_clip >= 0:
            raise ValueError(f"body_grad_clip must be >= 0, got {self.body_grad_clip}")
        if self.mean_update not in ("auto", "ng", "gain"):
            raise ValueError(f"mean_update must be 'auto', 'ng' or 'gain', got {self.mean_update!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")



def _make_vec_env(
    env: Any, num_envs: int, seed: int, env_kwargs: dict[str, Any] | None = None
) -> tuple[gym.vector.VectorEnv, str | None]:
    """A same-step-autoreset vector env from an id (made with ``env_kwargs``), a single env, a gymnasium vector env
    or a stable-baselines3 ``VecEnv`` (:mod:`bongrl.envs.sb3_vec`)."""
    import bongrl.envs  # noqa: F401  (registers bongrl/* ids)

    same_step = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}
    if env_kwargs and not isinstance(env, str):
        raise ValueError("env_kwargs only apply to an env given by id")
    if isinstance(env, str):
        if env not in gym.registry:
            raise ValueError(f"unknown environment id {env!r}")
        vec = gym.make_vec(env, num_envs=num_envs, vectorization_mode="sync", vector_kwargs=same_step,
                           wrappers=[EpisodeRecorder], **(env_kwargs or {}))
        return vec, env
    if is_sb3_vec_env(env):
        ids = [getattr(spec, "id", None) for spec in env.get_attr("spec", [0])] if env.num_envs else [None]
        return as_vector_env(env), ids[0]
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
    raise ValueError(f"env must be a gymnasium env id, Env or VectorEnv, or a stable-baselines3 VecEnv, got "
                     f"{type(env).__name__}")


def _bounds_affine(space: gym.spaces.Box) -> tuple[Tensor, Tensor, np.ndarray]:
    """(center, half-width) per dimension mapping finite Box bounds onto [−1, 1]; (0, 1) where a bound is infinite
    or the range is degenerate or huge (≥ 1e6, i.e. effectively unbounded); and the flat mask of those others."""
    low, high = np.asarray(space.low, dtype=np.float64), np.asarray(space.high, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        ok = np.isfinite(low) & np.isfinite(high) & (high - low > 0) & (high - low < 1e6)
    low, high = np.where(ok, low, -1.0), np.where(ok, high, 1.0)
    center, half = (high + low) / 2, (high - low) / 2
    return torch.as_tensor(center), torch.as_tensor(half), ~ok.reshape(-1)


class BongDQN(PosteriorValueAgent, Agent):
    """Value-based RL with a BONG posterior over the Q-network (SB3-shaped API).

    Example:
        >>> agent = BongDQN("CartPole-v1", posterior="dlr", exploration="thompson", seed=0)
        >>> agent.learn(20_000)
        >>> actions, _ = agent.predict(obs, deterministic=True)
    """

    config_class = BongDQNConfig
    unit = "step"

    @classmethod
    def check_env(cls, env: Any) -> None:
        """A Discrete action space and an observation space :class:`~bongrl.agents.spaces.ObsEncoder` encodes (Box,
        Discrete, MultiDiscrete, MultiBinary, Dict / Tuple of these)."""
        super().check_env(env)
        ObsEncoder(env.observation_space)

    @classmethod
    def from_spec(cls, spec: Any) -> BongDQN:
        """A fresh agent for a :class:`~bongrl.runner.spec.RunSpec` (its env made with the spec's env kwargs)."""
        return cls(spec.env, posterior=spec.posterior, exploration=spec.exploration, seed=spec.seed,
                   device=spec.device, env_kwargs=spec.env_kwargs or None,
                   exploration_options=spec.exploration_options or None,
                   posterior_options=spec.posterior_options or None, **spec.hyperparameters)

    def __init__(
        self,
        env: Any,
        posterior: str = "dlr",
        exploration: str = "thompson",
        seed: int = 0,
        device: str | torch.device = "auto",
        exploration_options: dict[str, Any] | None = None,
        posterior_options: dict[str, Any] | None = None,
        env_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        tensorboard_log: str | Path | None = None,
        **hyperparameters: Any,
    ) -> None:
        self.config = config_from_kwargs(BongDQNConfig, hyperparameters, "BongDQN")
        cfg = self.config
        self._init_sb3(verbose, tensorboard_log)
        self.seed = int(seed)
        #: keyword arguments of ``gym.make`` for an env given by id (saved in checkpoints; rl-zoo's env_kwargs)
        self.env_kwargs = dict(env_kwargs or {})
        self._user_env = env
        self.env, self.env_id = _make_vec_env(env, cfg.num_envs, self.seed, self.env_kwargs)
        self.num_envs = self.env.num_envs
        obs_space, act_space = self.env.single_observation_space, self.env.single_action_space
        if not isinstance(act_space, gym.spaces.Discrete):
            raise ValueError(f"BongDQN needs a Discrete action space, got {act_space}")
        #: validates and encodes observations of any supported space (:mod:`bongrl.agents.spaces`)
        self.obs_encoder = ObsEncoder(obs_space)
        if self.obs_encoder.structured:  # Dict / Tuple: the env emits the flat encoding, the loop sees (B, D) arrays
            self.env = EncodedObservations(self.env, self.obs_encoder)
        self.obs_shape = self.obs_encoder.shape if self.obs_encoder.structured else self.obs_encoder.raw_shape
        head_only = cfg.posterior_params == "head" or (cfg.posterior_params == "auto" and self.obs_encoder.is_image)
        #: the body outside the posterior is trained by Adam on replay minibatches (``train_body``)
        self.train_body = self._resolve_train_body(head_only)
        torch.manual_seed(self.seed)
        net = self._make_net(self.obs_encoder, cfg.hidden, int(act_space.n))
        self._build(
            net, int(act_space.n), posterior, exploration, self.seed, device, DTYPES[cfg.dtype],
            exploration_shared=cfg.exploration_options(), exploration_options=exploration_options,
            posterior_shared={"mean_update": cfg.mean_update}, posterior_options=posterior_options,
            likelihood="gaussian", obs_std=cfg.obs_std, prior_std=cfg.prior_std, method=cfg.method,
            rank=cfg.rank, num_samples=cfg.num_samples,
            params=["head.weight", "head.bias"] if head_only else None,
        )
        posterior_names = set(self.est.flat.names)
        self._body_params = [p for n, p in self.est.model.named_parameters() if n not in posterior_names]
        self._body_opt = torch.optim.Adam(self._body_params, lr=cfg.body_lr) if self.train_body else None
        self._obs_affine: tuple[Tensor, Tensor] | None = None
        #: warm-up statistics of the unbounded observation dims ("auto") and of the rewards ("warmup")
        self._obs_stats: WarmupScale | None = None
        self._unbounded: np.ndarray | None = None
        if cfg.obs_normalize != "none" and self.obs_encoder.kind == "box":  # not images / encoded spaces
            center, half, unbounded = _bounds_affine(obs_space)
            self._obs_affine = (center.to(self.device, self.dtype), half.to(self.device, self.dtype))
            if cfg.obs_normalize == "auto" and unbounded.any():
                self._unbounded = np.nonzero(unbounded)[0]
                self._obs_stats = WarmupScale(len(self._unbounded))
        self._reward_stats: WarmupScale | None = WarmupScale(1) if cfg.reward_normalize == "warmup" else None
        #: the reward unit (``reward_normalize``); TD targets are formed from reward / reward_scale
        self.reward_scale = 1.0
        #: updates rejected because they would have made the posterior non-finite (the last good one is kept)
        self.rejected_updates = 0
        self._rejected_in_a_row = 0
        #: BONG updates applied (online and replay), SB3's ``train/n_updates``
        self.n_updates = 0
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
        #: randomise-then-optimise samples over the replay (``rto_sweeps`` > 0; docs/design.md §4)
        self.rto = RTOSampler(self.est, cfg, _ReplaySource(self), self.generator, self.num_actions)

    def _obs_tensor(self, obs: Any, obs_shape: tuple[int, ...], name: str = "observation") -> Tensor:
        """Validated observations as the network sees them (rescaled by ``obs_normalize``)."""
        return self._normalize_obs(self._raw_obs_tensor(obs, obs_shape, name))

    def _raw_obs_tensor(self, obs: Any, obs_shape: tuple[int, ...], name: str = "observation") -> Tensor:
        """Validated observations before normalisation (what the replay stores): Box vectors as floats, images as
        uint8 in their own layout (the network transposes and scales them on the fly), every other space encoded
        (one-hots, bits, flattened Dict/Tuple: :class:`~bongrl.agents.spaces.ObsEncoder`)."""
        enc = self.obs_encoder
        if enc.kind == "box" or (enc.structured and not enc.is_structured_value(obs)):
            return super()._obs_tensor(obs, obs_shape, name)  # Box, or Dict/Tuple already encoded by the env
        return enc.network_input(obs, self.device, self.dtype, name)

    def _normalize_obs(self, t: Tensor) -> Tensor:
        if self._obs_affine is None:
            return t
        center, half = self._obs_affine
        return ((t.reshape(t.shape[0], -1) - center.reshape(-1)) / half.reshape(-1)).reshape(t.shape)

    def _warming_up(self) -> bool:
        """Whether some warm-up statistic is still being estimated (not yet frozen)."""
        return any(s is not None and not s.frozen for s in (self._reward_stats, self._obs_stats))

    def _update_scales(self, raw_next: np.ndarray, rew: np.ndarray) -> None:
        """Warm-up statistics (:mod:`bongrl.agents.normalize`): merged every step until ``learning_starts``
        env steps have passed, then frozen. The current estimate is used from the first step on."""
        if self._reward_stats is not None and not self._reward_stats.frozen:
            self._reward_stats.update(np.asarray(rew, dtype=np.float64).reshape(-1, 1))
            self.reward_scale = reward_scale(self._reward_stats)
        if self._obs_stats is not None and not self._obs_stats.frozen:
            self._obs_stats.update(np.asarray(raw_next, dtype=np.float64).reshape(len(rew), -1)[:, self._unbounded])
            self._apply_obs_stats()
        if self.num_timesteps >= self.config.learning_starts:
            for stats in (self._reward_stats, self._obs_stats):
                if stats is not None:
                    stats.freeze()

    def _apply_obs_stats(self) -> None:
        """Write the warm-up mean/std of the unbounded dims into the observation affine. While the std is still 0
        (one row so far, or a constant dim) the root mean square stands in, and 1 where that is 0 too: each
        choice scales with the units, so the normalised inputs do not depend on them."""
        assert self._obs_stats is not None and self._obs_affine is not None and self._unbounded is not None
        std, rms = self._obs_stats.std(), self._obs_stats.rms()
        std = np.where(std > 1e-8 * rms, std, np.where(rms > 0, rms, 1.0))
        center, half = (t.clone().reshape(-1) for t in self._obs_affine)
        idx = torch.as_tensor(self._unbounded, device=self.device)
        center[idx] = torch.as_tensor(self._obs_stats.mean, device=self.device, dtype=self.dtype)
        half[idx] = torch.as_tensor(std, device=self.device, dtype=self.dtype)
        self._obs_affine = (center.reshape(self._obs_affine[0].shape), half.reshape(self._obs_affine[1].shape))

    def _replay_rows(self, idx: Tensor | None = None) -> Transitions:
        """(obs, act, rew, next_obs, term) of the replay rows ``idx`` (all stored rows when None) as the network
        and the likelihood see them: observations normalised, rewards in units of :attr:`reward_scale`."""
        r = self._replay
        assert r is not None
        if idx is None:
            idx = torch.arange(self._replay_size(), device=self.device)
        return (self._normalize_obs(r["obs"][idx]), r["act"][idx], r["rew"][idx] / self.reward_scale,
                self._normalize_obs(r["next_obs"][idx]), r["term"][idx])

    @staticmethod
    def _make_net(encoder: ObsEncoder, hidden: list[int], n_actions: int) -> torch.nn.Module:
        """The MLP or CNN Q-network for the encoder's space (:func:`bongrl.agents.networks.build_q_network`)."""
        return build_q_network(encoder, hidden, n_actions)

    # ------------------------------------------------------------------ SB3 env API and logging
    def get_env(self) -> Any:
        """The training env: the SB3 ``VecEnv`` or gymnasium vector env it was given, else the vector env made
        from the id (SB3's ``get_env``; callbacks read it as ``self.training_env``)."""
        given = self._user_env
        return given if given is not None and not isinstance(given, (str, gym.Env)) else self.env

    def set_env(self, env: Any, force_reset: bool = True) -> None:
        """Train on ``env`` from now on (an id, a gymnasium env or vector env, or an SB3 ``VecEnv``), as SB3's
        ``set_env``: its spaces must match the agent's; the number of envs may differ. The episodes in progress are
        dropped (``force_reset`` is always true: a half-finished episode of another env cannot be continued)."""
        vec, env_id = _make_vec_env(env, getattr(env, "num_envs", 1), self.seed)
        encoder = ObsEncoder(vec.single_observation_space)
        act = vec.single_action_space
        same_obs = (encoder.raw_shape, encoder.shape) == (self.obs_encoder.raw_shape, self.obs_encoder.shape)
        if not same_obs or not isinstance(act, gym.spaces.Discrete) \
                or int(act.n) != self.num_actions:
            vec.close()
            raise ValueError(f"the env's spaces ({vec.single_observation_space}, {act}) do not match the agent's "
                             f"({self.obs_encoder.space}, Discrete({self.num_actions}))")
        if encoder.structured:
            vec = EncodedObservations(vec, encoder)
        self.env, self.env_id, self._user_env, self.env_kwargs = vec, env_id, env, {}
        self.num_envs = vec.num_envs
        self._obs, self._predict_rule = None, None
        self._ep_return, self._ep_length = np.zeros(self.num_envs), np.zeros(self.num_envs, dtype=np.int64)

    def _episode_count(self) -> int:
        return self.num_episodes

    def _train_scalars(self) -> dict[str, float]:
        """SB3's ``train/n_updates`` and the agent's own training numbers, then ``posterior/*``."""
        return {"train/n_updates": float(self.n_updates), "train/rejected_updates": float(self.rejected_updates),
                "train/reward_scale": float(self.reward_scale), **super()._train_scalars()}

    # ------------------------------------------------------------------ replay
    def _replay_add(self, obs: Tensor, act: Tensor, rew: Tensor, nxt: Tensor, term: Tensor) -> None:
        cap = self.config.buffer_size
        if self._replay is None:
            # observations as _raw_obs_tensor gives them: images stay uint8 (50k 84×84×4 frames: 1.4 GB, not 5.6),
            # encoded spaces are stored encoded (one-hots are small)
            shape, obs_dtype = tuple(obs.shape[1:]), obs.dtype
            self._replay = {
                "obs": torch.zeros((cap, *shape), dtype=obs_dtype, device=self.device),
                "act": torch.zeros(cap, dtype=torch.int64, device=self.device),
                "rew": torch.zeros(cap, dtype=self.dtype, device=self.device),
                "next_obs": torch.zeros((cap, *shape), dtype=obs_dtype, device=self.device),
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
        """y = r + γ_d (1 − terminated) Q_target(s', a*) with r in units of :attr:`reward_scale`."""
        cfg = self.config
        with torch.no_grad():
            q_next_t = self.est.apply(self.target_theta, nxt)
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
        before = self.est.snapshot()  # the divergence guard's rollback point (docs/design.md §5)
        try:
            self.est.predict_step(cfg.forget, cfg.process_noise + (1.0 - cfg.forget**2) * cfg.prior_std**2)
            # increment, the estimator's reducer if any (bongrl.distributed: every rank's increment), apply
            self.est.update(obs, y, index=act)
        except (NumericalError, torch.linalg.LinAlgError) as exc:
            # The inputs were validated before (observations, rewards): a non-finite increment or posterior, or a
            # lost Cholesky, is a numerical failure of this step. Keep the last good posterior and carry on.
            self.est.restore(before)
            self.rejected_updates += 1
            self._rejected_in_a_row += 1
            if self.rejected_updates <= 10 or self.rejected_updates % 1000 == 0:
                _log.warning("step %d: rejected a non-finite BONG update (%s); kept the last good posterior "
                             "(%d rejected so far)", self.num_timesteps, exc, self.rejected_updates)
            if self._rejected_in_a_row >= MAX_REJECTED_IN_A_ROW:
                raise NumericalError(
                    f"the last {self._rejected_in_a_row} BONG updates were all rejected as non-finite (last: {exc}); "
                    f"the posterior ({self.posterior_name}) cannot learn from here"
                ) from exc
        else:
            self._rejected_in_a_row = 0
            self.n_updates += 1

    # ------------------------------------------------------------------ learning
    def learn(
        self,
        total_timesteps: int,
        callback: Any = None,
        log_interval: int | None = 4,
        tb_log_name: str = "BongDQN",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
        callback_every: int = 0,
    ) -> BongDQN:
        """Interact for ``total_timesteps`` more env steps (summed over vectorised envs), updating after each step.

        The arguments are SB3's ``learn``'s (:mod:`bongrl.agents.sb3_compat`: ``log_interval`` episodes between log
        dumps, ``tb_log_name`` the TensorBoard run name; the step counter never restarts, ``reset_num_timesteps``
        only starts a new TensorBoard folder). ``callback``: a callback with the stable-baselines3 protocol —
        :mod:`bongrl.callbacks`' or SB3's own ``BaseCallback`` objects (``EvalCallback``, ``CheckpointCallback``,
        ...) — a list of them, or a plain ``fn(agent, event)`` called after every finished episode with
        ``kind="episode"``, ``step``, ``episode``, ``return``, ``length``, ``wall`` and — when ``callback_every`` > 0
        — every that many env steps with ``kind="step"``, ``step``, ``wall``. A callback returning ``False`` stops
        training after the current step.
        """
        from bongrl.callbacks import as_callback
        from bongrl.progress import progress

        if isinstance(total_timesteps, bool) or not isinstance(total_timesteps, (int, np.integer)) \
                or total_timesteps < 0:
            raise ValueError(f"total_timesteps must be a non-negative int, got {total_timesteps!r}")
        cb = as_callback(callback, callback_every)
        self._setup_logging(tb_log_name, reset_num_timesteps, log_interval)
        cfg = self.config
        if self._obs is None:
            # a fresh agent seeds the envs; a loaded one continues with new, still reproducible seeds
            obs, _ = self.env.reset(seed=self.seed if self.num_timesteps == 0 else self.seed + self.num_episodes)
            self._obs = np.asarray(obs)
            self.rule.reset(self.num_envs)
            self.rule.on_episode_start(self, list(range(self.num_envs)))
        bar = progress(int(total_timesteps), "step") if progress_bar else None
        start_wall = time.perf_counter()
        target = self.num_timesteps + int(total_timesteps)
        recent: list[float] = []
        stop = False
        carried: Tensor | None = None  # last step's raw next-observation tensor, when no episode ended (= this obs)
        if cb is not None:
            cb.init_callback(self)
            cb.on_training_start({"total_timesteps": target}, {})
            cb.on_rollout_start()
        try:
            while self.num_timesteps < target and not stop:
                raw_t = carried if carried is not None else self._raw_obs_tensor(self._obs, self.obs_shape)
                obs_t = self._normalize_obs(raw_t)
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
                raw_next_t = self._raw_obs_tensor(real_next, self.obs_shape, "environment observation")
                carried = None if done.any() else raw_next_t
                if self._warming_up():
                    self._update_scales(real_next, rew64)  # before the targets: this step's scale is used
                    obs_t = self._normalize_obs(raw_t)
                next_t = self._normalize_obs(raw_next_t)
                term_t = torch.as_tensor(np.asarray(term, dtype=np.float64), device=self.device).to(self.dtype)
                y = self._td_targets(rew_t / self.reward_scale, next_t, term_t)
                self._bong_step(obs_t, act_t, y)
                if cfg.replay_every > 0 or cfg.rto_sweeps > 0:
                    self._replay_add(raw_t, act_t, rew_t, raw_next_t, term_t)  # raw: normalised when sampled
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
                episodes = []  # every counter is updated before any callback sees (or checkpoints) the agent
                monitor = info.get("episode") if "_episode" in info else None  # SB3 Monitor: raw returns
                for i in ended:
                    self.num_episodes += 1
                    ret, length = float(self._ep_return[i]), int(self._ep_length[i])
                    if monitor is not None and info["_episode"][i]:
                        ret, length = float(monitor["r"][i]), int(monitor["l"][i])
                    recent = (recent + [ret])[-20:]
                    episodes.append({
                        "kind": "episode",
                        "step": self.num_timesteps,
                        "episode": self.num_episodes,
                        "return": ret,
                        "length": length,
                        "wall": time.perf_counter() - start_wall,
                        "is_success": episode_success(info, int(i)),  # None: the env reports no success
                    })
                    self._ep_return[i] = 0.0
                    self._ep_length[i] = 0
                if episodes:
                    self._log_episodes(episodes)
                if cb is not None:
                    cb.update_locals({
                        "new_obs": nxt, "actions": actions, "rewards": rew, "dones": done,
                        "infos": sb3_infos(info, self.num_envs, ended, real_next, term, trunc, episodes),
                        "episodes": episodes,
                        "n_steps": self.num_envs, "wall": time.perf_counter() - start_wall,
                    })
                    stop = not cb.on_step()
                if bar is not None:
                    bar.update(self.num_envs)
                    if len(ended):
                        bar.set_postfix(ep=self.num_episodes, ret=f"{np.mean(recent):.1f}")
        finally:
            if bar is not None:
                bar.close()
            if cb is not None:
                cb.on_rollout_end()
                cb.on_training_end()
        return self

    def _replay_updates(self) -> None:
        cfg = self.config
        n = self._replay_size()
        if n == 0:
            return
        for _ in range(cfg.replay_steps):
            idx = torch.randint(n, (min(cfg.replay_batch, n),), generator=self.generator).to(self.device)
            obs, act, rew, nxt, term = self._replay_rows(idx)
            y = self._td_targets(rew, nxt, term)
            self._bong_step(obs, act, y)
            self._body_step(obs, act, y)

    # ------------------------------------------------------------------ body training (train_body)
    def _resolve_train_body(self, head_only: bool) -> bool:
        """Whether the body outside the posterior is trained (``train_body``; see :class:`BongDQNConfig`)."""
        cfg = self.config
        if cfg.train_body == "off":
            return False
        if cfg.train_body == "on" and not head_only:
            raise ValueError("train_body='on' needs the posterior on the head only (posterior_params='head', "
                             "or 'auto' with image observations): with 'all' every weight is in the posterior")
        on = head_only and (cfg.train_body == "on" or self.obs_encoder.is_image)
        if on and cfg.rto_merge:
            raise ValueError("train_body cannot be combined with rto_merge (its cached head features assume a "
                             "fixed body): set train_body='off'")
        if on and cfg.replay_every == 0:
            if cfg.train_body == "on":
                raise ValueError("train_body='on' trains the body on replay minibatches: set replay_every > 0")
            import warnings

            warnings.warn("the CNN body of image observations is trained on replay minibatches only; with "
                          "replay_every=0 it stays at its random initialisation", stacklevel=3)
        return on

    def _body_step(self, obs: Tensor, act: Tensor, y: Tensor) -> None:
        """One Adam step of the body on a replay minibatch (``train_body``), as Bayesian DQN (Azizzadenesheli et
        al. 2018) trains its feature network: the Huber loss between Q_μ(s, a) — the network with the BONG
        posterior-mean head μ and the module's current body — and the TD targets ``y`` (bootstrapped from the
        target head). Only the body moves; the head posterior conditions online on the new features. The body
        weights are the module's own parameters, which ``est.apply`` reads live on every call."""
        if self._body_opt is None:
            return
        with torch.enable_grad():
            q = self.est.apply(self.est.mean.detach(), obs).gather(1, act.reshape(-1, 1)).squeeze(1)
            loss = torch.nn.functional.smooth_l1_loss(q, y.detach())
            self._body_opt.zero_grad(set_to_none=True)
            loss.backward()
        if self.config.body_grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self._body_params, self.config.body_grad_clip)
        self._body_opt.step()

    def _body_opt_tensors(self) -> dict[str, Tensor]:
        """The body optimiser's state as checkpoint tensors ``body_opt.<param index>.<key>``."""
        if self._body_opt is None:
            return {}
        return {f"body_opt.{i}.{k}": torch.as_tensor(v) for i, st in self._body_opt.state_dict()["state"].items()
                for k, v in st.items()}

    def _restore_body_opt(self, tensors: dict[str, Tensor]) -> None:
        """Load :meth:`_body_opt_tensors`' entries (none: a fresh optimiser, e.g. saved before any body step)."""
        if self._body_opt is None:
            return
        state: dict[int, dict[str, Tensor]] = {}
        for key, v in tensors.items():
            if key.startswith("body_opt."):
                _, i, k = key.split(".", 2)
                state.setdefault(int(i), {})[k] = v
        self._body_opt.load_state_dict({"state": state, "param_groups": self._body_opt.state_dict()["param_groups"]})

    # ------------------------------------------------------------------ randomise-then-optimise samples
    def sample_params(self, n: int) -> Tensor:
        """Posterior samples for the exploration rule: N(μ, Σ) draws (deviations from μ with
        ``linearized_samples``), or randomise-then-optimise samples fitted to the replay when ``rto_sweeps`` > 0
        (see :class:`BongDQNConfig`)."""
        if self.config.rto_sweeps == 0 or self._replay_size() == 0:
            return super().sample_params(n)
        return torch.stack([self.rto.sample() for _ in range(n)])

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
        if deterministic:
            return self._greedy_actions(observation, "online")
        return self._act_on(observation, lambda obs: self._stochastic_predict(obs, episode_start))

    def evaluation_policies(self) -> dict[str, _GreedyPredictor]:
        """The deterministic policies the evaluation protocol scores, headline first: greedy on the online
        posterior mean, and on the Polyak average when ``polyak_eval`` > 0 (docs/design.md §5)."""
        out = {"online": self.greedy_predictor("online")}
        if self.avg_theta is not None:
            out["averaged"] = self.greedy_predictor("averaged")
        return out

    def greedy_predictor(self, weights: str = "online") -> _GreedyPredictor:
        """An SB3-style predictor that acts greedily on the ``"online"`` posterior mean μ or on the ``"averaged"``
        Polyak average θ̄ (``polyak_eval`` > 0). The benchmark protocol evaluates both, for every agent."""
        if weights not in ("online", "averaged"):
            raise ValueError(f"weights must be 'online' or 'averaged', got {weights!r}")
        if weights == "averaged" and self.avg_theta is None:
            raise ValueError("weights='averaged' needs polyak_eval > 0")
        return _GreedyPredictor(self, weights)

    def _greedy_actions(self, observation: Any, weights: str) -> tuple[np.ndarray, None]:
        theta = self.avg_theta if weights == "averaged" else self.est.mean

        def greedy(obs: Tensor) -> Tensor:
            with torch.no_grad():
                return self.est.apply(theta, obs).argmax(-1)

        return self._act_on(observation, greedy)

    def _act_on(self, observation: Any, choose: Callable[[Tensor], Tensor]) -> tuple[np.ndarray, None]:
        """SB3's return shape for ``choose``'s actions on the validated observation(s): a single observation in,
        a single action out."""
        obs = self._obs_tensor(observation, self.obs_shape)  # validates first (ragged lists, NaN, dtype)
        out = choose(obs).cpu().numpy()
        return (out[0] if self.obs_encoder.is_single(observation) else out), None

    def _stochastic_predict(self, obs: Tensor, episode_start: Any) -> Tensor:

        B = obs.shape[0]
        rule = self._predict_rule
        if rule is None or getattr(rule, "num_envs", None) != B:
            rule = self.make_rule()
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
        tensors.update(self._body_opt_tensors())
        if include_replay and self._replay is not None:
            tensors.update({f"replay.{k}": v for k, v in self._replay.items()})
        tensors.update(self.rto.state_dict())  # rto_prev, rto_store.*
        if self.avg_theta is not None:
            tensors["avg_theta"] = self.avg_theta
        for name, stats in (("reward", self._reward_stats), ("obs", self._obs_stats)):
            if stats is not None:
                tensors.update({f"scale.{name}.{k}": v for k, v in stats.state_dict().items()})
        loop = self._loop_state()
        if loop is not None:
            tensors["obs"] = torch.as_tensor(np.ascontiguousarray(self._obs))
        meta = {
            "class": "BongDQN",
            "version": __version__,
            "env_id": self.env_id,
            "env_kwargs": self.env_kwargs,
            "posterior": self.posterior_name,
            "exploration": self.exploration_name,
            "exploration_options": self.exploration_options,
            "posterior_options": self.posterior_options,
            "seed": self.seed,
            "config": dataclasses.asdict(self.config),
            "num_timesteps": self.num_timesteps,
            "num_episodes": self.num_episodes,
            "obs_shape": list(self.obs_shape),
            "num_actions": self.num_actions,
            "replay_pos": self._replay_pos,
            "replay_full": self._replay_full,
            "rejected_updates": self.rejected_updates,
            "n_updates": self.n_updates,
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
        """Rebuild an agent from :meth:`save`'s file or a run directory (its ``checkpoint.safetensors``). ``env``
        defaults to a fresh env of the saved id, made with the saved ``env_kwargs``."""
        path = checkpoint_file(path)
        tensors, meta = load_checkpoint(path)
        if meta.get("class") != "BongDQN":
            raise CheckpointError(f"{str(path)!r} holds a {meta.get('class')!r}, not a BongDQN")
        env_kwargs = None
        if env is None:
            if not meta.get("env_id"):
                raise ValueError("the checkpoint has no env id: pass env=")
            env, env_kwargs = meta["env_id"], meta.get("env_kwargs") or None
        agent = cls(
            env, env_kwargs=env_kwargs, posterior=meta["posterior"], exploration=meta["exploration"],
            seed=meta["seed"], device=device,
            exploration_options=meta.get("exploration_options") or None,
            posterior_options=meta.get("posterior_options") or None, **meta["config"],
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
        self._restore_body_opt(tensors)
        replay = sub("replay.")
        if replay:
            self._replay = {k: v.to(self.device) for k, v in replay.items()}
            self._replay_pos = int(meta["replay_pos"])
            self._replay_full = bool(meta["replay_full"])
        self.num_timesteps = int(meta["num_timesteps"])
        self.num_episodes = int(meta["num_episodes"])
        self.rto.load_state_dict(tensors)  # after the replay and the step counter (see RTOSampler.load_state_dict)
        if self.avg_theta is not None:
            if "avg_theta" not in tensors:
                raise ValueError("polyak_eval > 0 but the checkpoint has no 'avg_theta'")
            if tensors["avg_theta"].shape != self.avg_theta.shape:
                raise ValueError("'avg_theta' has the wrong number of parameters")
            self.avg_theta = tensors["avg_theta"].to(self.device, self.dtype)
        for name, stats in (("reward", self._reward_stats), ("obs", self._obs_stats)):
            if stats is not None:
                stats.load_state_dict(sub(f"scale.{name}."))
        if self._reward_stats is not None:
            self.reward_scale = reward_scale(self._reward_stats)
        if self._obs_stats is not None and self._obs_stats.count:
            self._apply_obs_stats()
        self.rejected_updates = int(meta.get("rejected_updates", 0))
        self.n_updates = int(meta.get("n_updates", 0))
        if meta.get("loop") and "obs" in tensors:
            self._restore_loop(tensors, meta["loop"])


class _ReplaySource:
    """The :class:`~bongrl.agents.rto.TransitionSource` view of a BongDQN replay for its :class:`RTOSampler`."""

    def __init__(self, agent: BongDQN) -> None:
        self.agent = agent

    def size(self) -> int:
        return self.agent._replay_size()

    def added(self) -> int:
        return self.agent.num_timesteps

    def rows(self, idx: Tensor | None = None) -> Transitions:
        return self.agent._replay_rows(idx)

    def newest(self, n: int) -> Transitions:
        agent = self.agent
        idx = (agent._replay_pos - n + torch.arange(n)) % agent.config.buffer_size
        return agent._replay_rows(idx.to(agent.device))


class _GreedyPredictor:
    """``predict`` acting greedily on one set of BongDQN weights (see :meth:`BongDQN.greedy_predictor`)."""

    def __init__(self, agent: BongDQN, weights: str) -> None:
        self.agent, self.weights = agent, weights

    def predict(
        self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = True
    ) -> tuple[np.ndarray, None]:
        return self.agent._greedy_actions(observation, self.weights)
