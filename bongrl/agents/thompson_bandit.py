"""ThompsonBandit: contextual (or multi-armed) bandit agent with a BONG posterior over a reward model.

The model maps a context x ∈ R^d to one expected reward per arm. Each round the exploration rule picks an arm
(``thompson``: argmax of a fresh posterior sample's predictions — every round is its own episode), the reward is a
Gaussian (or Bernoulli) observation of the chosen arm's output, and one BONG step conditions the posterior on it.
This is the bandit case of BongDQN with γ_d = 0 (docs/design.md §5). With ``model="linear"``, ``posterior="full"`` and a
Gaussian likelihood the update is exact Bayesian linear regression (conjugate).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from bongrl import __version__
from bongrl.agents.bandit_loop import VecBanditView, play_rounds
from bongrl.agents.base import DTYPES, ExplorationSettings, PosteriorValueAgent, config_from_kwargs, mlp
from bongrl.agents.protocol import Agent
from bongrl.agents.sb3_compat import checkpoint_file
from bongrl.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

__all__ = ["ThompsonBandit", "ThompsonBanditConfig", "ArmMeans"]


def _json_safe(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


class ArmMeans(nn.Module):
    """Context-free model: one learnable value per arm (the multi-armed case, ``context_dim=0``)."""

    def __init__(self, n_arms: int) -> None:
        super().__init__()
        self.values = nn.Parameter(torch.zeros(n_arms))

    def forward(self, x: Tensor) -> Tensor:
        return self.values.expand(x.shape[0], -1)


@dataclass
class ThompsonBanditConfig(ExplorationSettings):
    """Hyperparameters of :class:`ThompsonBandit`."""

    hidden: list[int] = field(default_factory=lambda: [50])
    """Hidden widths of the default MLP reward model (ignored for ``model="linear"`` or a given module)."""
    likelihood: str = "gaussian"
    """"gaussian" (real rewards, noise ``obs_std``) or "bernoulli" (0/1 rewards, logits per arm)."""
    obs_std: float = 1.0
    """Reward noise σ of the Gaussian likelihood. Lower it when rewards are (nearly) deterministic, which favours
    a nearly interpolating fit; raise it for noisy rewards (docs/design.md §9.5)."""
    prior_std: float = 1.0
    """Prior standard deviation σ₀ of every weight around the prior mean (``prior_mean``). Together with
    ``obs_std`` it sets how fast the posterior commits to an arm (docs/design.md §9.5)."""
    prior_mean: str = "init"
    """"init": the model's seeded initial weights; "zero": zeros (the conjugate textbook prior)."""
    rank: int = 10
    """Rank L of the low-rank part of the ``dlr`` family (ignored by the others)."""
    method: str = "lin"
    """BONG variant: "lin" (linearised), "mc-ef" or "mc-hess" (Monte Carlo with the empirical Fisher or the
    Hessian). Keep "lin": on the bandits MC-EF with ``dlr`` was no better than uniform (docs/design.md §9.1)."""
    mean_update: str = "auto"
    """Mean step of the ``diag`` family (ignored by the others): "gain" (the VD-EKF Kalman gain of the authors'
    code), "ng" (natural gradient with the diagonal precision; overshoots when many weights share one residual),
    or "auto" = "gain" for LIN and "ng" for the MC variants (:class:`~bongrl.posteriors.diag.DiagonalPrecision`)."""
    num_samples: int = 10
    """M, Monte-Carlo samples per update for the MC variants (ignored by "lin")."""
    forget: float = 1.0
    """Forgetting γ: θ drifts toward its prior (Ornstein-Uhlenbeck, Σ ← γ²Σ + (1−γ²)σ₀²I) before each update;
    1 = stationary bandit. Lower it when the arms' rewards drift over time."""
    process_noise: float = 0.0
    """Process noise q ≥ 0 added by the predict step before every update (0 = static weights). Raise it when the
    arms' rewards drift and the posterior should keep some uncertainty."""
    decay_steps: int = 1_000
    """ε-greedy: rounds of linear decay (Thompson's default ``every=0`` resamples every round: a round is an
    episode)."""
    dtype: str = "float32"
    """"float32" or "float64": the dtype of the model and the posterior."""

    def validate(self) -> None:
        if self.likelihood not in ("gaussian", "bernoulli"):
            raise ValueError(f"likelihood must be 'gaussian' or 'bernoulli', got {self.likelihood!r}")
        if self.prior_mean not in ("init", "zero"):
            raise ValueError(f"prior_mean must be 'init' or 'zero', got {self.prior_mean!r}")
        for name in ("obs_std", "prior_std"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0.0 < self.forget <= 1.0:
            raise ValueError(f"forget must be in (0, 1], got {self.forget}")
        if self.mean_update not in ("auto", "ng", "gain"):
            raise ValueError(f"mean_update must be 'auto', 'ng' or 'gain', got {self.mean_update!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")



class ThompsonBandit(PosteriorValueAgent, Agent):
    """Thompson-sampling (or UCB / greedy / ε-greedy) bandit agent over a BONG posterior.

    Args:
        n_arms: number of arms.
        context_dim: context size d (0 for a multi-armed bandit).
        model: ``None`` (MLP with ``hidden`` widths), ``"linear"`` (x ↦ Wx + b, the conjugate case) or any module
            mapping (B, d) contexts to (B, n_arms) values.
    """

    config_class = ThompsonBanditConfig
    unit = "round"

    @classmethod
    def check_env(cls, env: Any) -> None:
        """A Discrete action space (the arms) and a flat Box context (or none: a multi-armed bandit)."""
        super().check_env(env)
        shape = env.observation_space.shape
        if shape is None or len(shape) > 1:
            raise ValueError(f"needs a flat context (a 1-D Box), got {env.observation_space}")

    @classmethod
    def from_spec(cls, spec: Any) -> ThompsonBandit:
        """A fresh agent bound to a new env of a :class:`~bongrl.runner.spec.RunSpec`."""
        env = spec.make_env()
        shape = env.observation_space.shape or (0,)
        agent = cls(int(env.action_space.n), int(shape[0]) if shape else 0, posterior=spec.posterior,
                    exploration=spec.exploration, seed=spec.seed, device=spec.device,
                    exploration_options=spec.exploration_options or None,
                    posterior_options=spec.posterior_options or None, **spec.hyperparameters)
        agent.set_env(env)
        return agent

    @property
    def num_timesteps(self) -> int:
        """Rounds played (the run layer's step counter)."""
        return self.num_rounds

    def get_env(self) -> Any:
        """The env :meth:`learn` plays on by default, as it was given (None until one is set). SB3 callbacks that
        read ``training_env.num_envs`` (e.g. ``StopTrainingOnMaxEpisodes``) need a one-env ``VecEnv`` here, as
        SB3's algorithms always hold one: ``set_env(make_vec_env(env_id, n_envs=1))``."""
        return self._given_env if self._env is not None else None

    def set_env(self, env: Any) -> None:
        """Play on ``env`` from now on: a bandit env, its id, or a one-env vector env (an SB3 ``VecEnv`` such as
        ``DummyVecEnv`` / ``SubprocVecEnv`` / ``VecNormalize``, or a gymnasium vector env; :class:`VecBanditView`).
        Its arm count must match the agent's. :meth:`get_env` returns what was given."""
        if isinstance(env, str):
            import bongrl.envs  # noqa: F401

            if env not in gym.registry:
                raise ValueError(f"unknown environment id {env!r}")
            env = gym.make(env)
        from bongrl.envs.sb3_vec import is_sb3_vec_env

        self._given_env = env
        if is_sb3_vec_env(env) or isinstance(env, gym.vector.VectorEnv):
            env = VecBanditView(env)
        if env.action_space.n != self.n_arms:
            raise ValueError(f"env has {env.action_space.n} arms, the agent {self.n_arms}")
        self._env = env

    def __init__(
        self,
        n_arms: int,
        context_dim: int,
        model: nn.Module | str | None = None,
        posterior: str = "dlr",
        exploration: str = "thompson",
        seed: int = 0,
        device: str | torch.device = "auto",
        exploration_options: dict[str, Any] | None = None,
        posterior_options: dict[str, Any] | None = None,
        verbose: int = 0,
        tensorboard_log: str | Path | None = None,
        **hyperparameters: Any,
    ) -> None:
        if not isinstance(n_arms, (int, np.integer)) or n_arms < 1:
            raise ValueError(f"n_arms must be a positive int, got {n_arms!r}")
        if not isinstance(context_dim, (int, np.integer)) or context_dim < 0:
            raise ValueError(f"context_dim must be a non-negative int, got {context_dim!r}")
        self.config = config_from_kwargs(ThompsonBanditConfig, hyperparameters, "ThompsonBandit")
        cfg = self.config
        self._init_sb3(verbose, tensorboard_log)
        self.seed = int(seed)
        self.n_arms, self.context_dim = int(n_arms), int(context_dim)
        self.model_kind = model if isinstance(model, str) or model is None else "custom"
        torch.manual_seed(self.seed)
        if model is None or model == "mlp":
            net: nn.Module = ArmMeans(self.n_arms) if context_dim == 0 else mlp(context_dim, cfg.hidden, self.n_arms)
        elif model == "linear":
            net = ArmMeans(self.n_arms) if context_dim == 0 else nn.Linear(context_dim, self.n_arms)
        elif isinstance(model, nn.Module):
            net = model
        else:
            raise ValueError(f"model must be None, 'mlp', 'linear' or an nn.Module, got {model!r}")
        prior_mean = None
        if cfg.prior_mean == "zero":
            prior_mean = torch.zeros(sum(p.numel() for p in net.parameters()))
        self._build(
            net, self.n_arms, posterior, exploration, self.seed, device, DTYPES[cfg.dtype],
            exploration_shared=cfg.exploration_options(), exploration_options=exploration_options,
            posterior_shared={"mean_update": cfg.mean_update}, posterior_options=posterior_options,
            likelihood=cfg.likelihood, obs_std=cfg.obs_std, prior_std=cfg.prior_std,
            prior_mean=prior_mean, method=cfg.method, rank=cfg.rank, num_samples=cfg.num_samples,
        )
        self.obs_shape = (self.context_dim,)
        self.rule.reset(1)
        self.num_rounds = 0
        self.cumulative_regret = 0.0  # over every learn() call, saved in checkpoints
        self._env: Any = None  # the env of the last learn() call (a vector env seen as one bandit env)
        self._given_env: Any = None  # that env as the user gave it (get_env)
        self._pending_env_rng: dict[str, Any] | None = None  # its saved random stream, restored by learn()
        self._predict_rule = None

    # ------------------------------------------------------------------ bandit API
    def act(self, context: Any) -> int:
        """Choose an arm for one context (shape (d,); anything for d = 0)."""
        obs = self._context(context)
        self.rule.on_episode_start(self, [0])
        return int(self.rule.act(self, obs, self.generator)[0])

    def update(self, context: Any, arm: Any, reward: Any) -> None:
        """Condition on one round (context, arm, reward). Bad input raises ``ValueError``, posterior unchanged."""
        obs = self._context(context)
        if isinstance(arm, (bool, np.bool_)) or not isinstance(arm, (int, np.integer)) or not 0 <= arm < self.n_arms:
            raise ValueError(f"arm must be an int in [0, {self.n_arms}), got {arm!r}")
        r = self._check_finite_scalar("reward", reward)
        if self.config.likelihood == "bernoulli" and r not in (0.0, 1.0):
            raise ValueError(f"reward must be 0 or 1 for a bernoulli likelihood, got {reward!r}")
        cfg = self.config
        before = self.est.snapshot()
        try:  # all or nothing: a failure in the update also undoes the predict step
            self.est.predict_step(cfg.forget, cfg.process_noise + (1.0 - cfg.forget**2) * cfg.prior_std**2)
            self.est.update(obs, torch.tensor([r]), index=torch.tensor([int(arm)]))
        except BaseException:
            self.est.restore(before)
            raise
        self.num_rounds += 1

    def _context(self, context: Any) -> Tensor:
        if self.context_dim == 0:
            return torch.zeros((1, 0), dtype=self.dtype, device=self.device)
        obs = self._obs_tensor(context, self.obs_shape, "context")
        if obs.shape[0] != 1:  # act/update take one round's context; predict takes batches
            raise ValueError(f"context must be one context of shape {self.obs_shape}, got a batch of {obs.shape[0]}")
        return obs

    def learn(
        self,
        total_rounds: int,
        callback: Any = None,
        log_interval: int | None = 100,
        tb_log_name: str = "ThompsonBandit",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
        env: Any = None,
        seed: int | None = None,
    ) -> ThompsonBandit:
        """Play ``total_rounds`` rounds (one round per episode) on ``env`` (default: the env set by
        :meth:`set_env` / the run layer; ``env`` given here is set with :meth:`set_env`).

        SB3's ``learn`` arguments (:mod:`bongrl.agents.sb3_compat`; ``log_interval`` counts rounds). ``callback``:
        a callback with the stable-baselines3 protocol (:mod:`bongrl.callbacks`' or SB3's own), a list of them, or
        a plain ``fn(agent, event)``; the event (``locals["episodes"]`` for protocol callbacks) has ``round``,
        ``arm``, ``reward``, ``regret``, ``cumulative_regret`` and ``wall``. Returning ``False`` stops."""
        from bongrl.callbacks import as_callback

        if env is not None:
            self.set_env(env)
        env = self._env
        if env is None:
            raise ValueError("no env to play on: pass env= or call set_env() first")
        if isinstance(total_rounds, (bool, np.bool_)) or not isinstance(total_rounds, (int, np.integer)) \
                or total_rounds < 0:
            raise ValueError(f"total_rounds must be a non-negative int, got {total_rounds!r}")
        cb = as_callback(callback)
        self._setup_logging(tb_log_name, reset_num_timesteps, log_interval)
        seed_now: int | None = self.seed if seed is None else seed
        if self._pending_env_rng is not None:  # loaded from a checkpoint: continue the env's random stream
            base = getattr(env, "unwrapped", None)  # a vector env (VecBanditView) has none to restore: it is seeded
            if base is not None:
                base.np_random.bit_generator.state = self._pending_env_rng
                seed_now = None
            self._pending_env_rng = None

        def on_round(event: dict[str, Any]) -> bool:
            self.cumulative_regret = event["cumulative_regret"]  # before the callbacks: a checkpoint there is exact
            self._log_episodes([event])
            if cb is None:
                return True
            info = {"regret": event["regret"], "TimeLimit.truncated": False,
                    "episode": {"r": event["reward"], "l": 1, "t": round(event["wall"], 6)}}
            cb.update_locals({"actions": np.array([event["arm"]]), "rewards": np.array([event["reward"]]),
                              "dones": np.array([True]), "infos": [info], "episodes": [event], "n_steps": 1,
                              "wall": event["wall"]})
            return bool(cb.on_step())

        if cb is not None:
            cb.init_callback(self)
            cb.on_training_start({"total_timesteps": self.num_rounds + int(total_rounds)}, {})
            cb.on_rollout_start()
        try:
            play_rounds(self, env, int(total_rounds), seed=seed_now, rounds_done=self.num_rounds,
                        cumulative_regret=self.cumulative_regret, on_round=on_round, progress_bar=progress_bar)
        finally:
            if cb is not None:
                cb.on_rollout_end()
                cb.on_training_end()
        return self

    def _episode_info(self, event: dict[str, Any]) -> dict[str, float]:
        return {"r": float(event["reward"]), "l": 1.0}

    def _episode_count(self) -> int:
        return self.num_rounds

    def _train_scalars(self) -> dict[str, float]:
        """``rollout/cumulative_regret``, ``train/n_updates`` (rounds conditioned on), then ``posterior/*``."""
        return {"rollout/cumulative_regret": float(self.cumulative_regret), "train/n_updates": float(self.num_rounds),
                **super()._train_scalars()}

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = False) -> tuple[np.ndarray, None]:
        """SB3-style: arms for one context or a batch (deterministic: greedy on the posterior mean)."""
        if self.context_dim == 0:
            arr = np.asarray(observation)
            single = arr.ndim <= 1
            B = 1 if single else arr.shape[0]
            obs = torch.zeros((B, 0), dtype=self.dtype, device=self.device)
        else:
            single = np.asarray(observation).shape == self.obs_shape
            obs = self._obs_tensor(observation, self.obs_shape, "context")
        if deterministic:
            act = self.q_values(obs).argmax(-1)
        else:
            rule = self.make_rule()
            rule.reset(obs.shape[0])
            rule.on_episode_start(self, list(range(obs.shape[0])))
            act = rule.act(self, obs, self.generator)
        out = act.cpu().numpy()
        return (out[0] if single else out), None

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path, include_replay: bool = False) -> Path:
        """Write a safetensors checkpoint (posterior, weights, RNG, counters); a bandit keeps no replay, so
        ``include_replay`` only exists for signature parity with :meth:`BongDQN.save`."""
        if self.model_kind == "custom":
            raise ValueError("a ThompsonBandit with a custom model cannot be saved by config; save est.state_dict()")
        tensors = {f"bong.{k}": v for k, v in self.est.state_dict().items()}
        tensors.update({f"net.{k}": v for k, v in self.est.model.state_dict().items()})
        tensors["agent_rng"] = self.generator.get_state()
        meta = {"class": "ThompsonBandit", "version": __version__, "n_arms": self.n_arms,
                "context_dim": self.context_dim, "model": self.model_kind, "posterior": self.posterior_name,
                "exploration": self.exploration_name, "exploration_options": self.exploration_options,
                "posterior_options": self.posterior_options, "seed": self.seed,
                "config": dataclasses.asdict(self.config), "num_rounds": self.num_rounds,
                "cumulative_regret": self.cumulative_regret}
        spec = getattr(self._env, "spec", None)
        if spec is not None and _json_safe(spec.kwargs):  # load() recreates the env from its id and kwargs
            meta["env_id"], meta["env_kwargs"] = spec.id, dict(spec.kwargs or {})
        rng = getattr(getattr(self._env, "unwrapped", None), "_np_random", None)
        if rng is not None:  # the env's random stream after the last round (JSON: bit-generator state)
            meta["env_rng"] = rng.bit_generator.state
        elif self._pending_env_rng is not None:
            meta["env_rng"] = self._pending_env_rng
        return save_checkpoint(path, tensors, meta)

    @classmethod
    def load(cls, path: str | Path, env: Any = None, device: str | torch.device = "auto") -> ThompsonBandit:
        """Rebuild an agent from :meth:`save`'s file or a run directory (its ``checkpoint.safetensors``); ``env``
        (a bandit env or id) is set with :meth:`set_env`."""
        path = checkpoint_file(path)
        tensors, meta = load_checkpoint(path)
        if meta.get("class") != "ThompsonBandit":
            raise CheckpointError(f"{str(path)!r} holds a {meta.get('class')!r}, not a ThompsonBandit")
        try:
            agent = cls(meta["n_arms"], meta["context_dim"], model=meta["model"], posterior=meta["posterior"],
                        exploration=meta["exploration"], seed=meta["seed"], device=device,
                        exploration_options=meta.get("exploration_options") or None,
                        posterior_options=meta.get("posterior_options") or None, **meta["config"])
            net = {k[4:]: v.to(agent.device, agent.dtype) for k, v in tensors.items() if k.startswith("net.")}
            agent.est.model.load_state_dict(net)
            agent.est.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("bong.")})
            agent.generator.set_state(tensors["agent_rng"].to(torch.uint8))
            agent.num_rounds = int(meta["num_rounds"])
            agent.cumulative_regret = float(meta.get("cumulative_regret", 0.0))
            agent._pending_env_rng = meta.get("env_rng")
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            if isinstance(exc, CheckpointError):
                raise
            raise CheckpointError(f"{str(path)!r} holds an inconsistent ThompsonBandit checkpoint: {exc}") from exc
        if env is None and meta.get("env_id"):
            env = gym.make(meta["env_id"], **(meta.get("env_kwargs") or {}))
        if env is not None:
            agent.set_env(env)  # learn() continues the saved env's random stream on it
        return agent
