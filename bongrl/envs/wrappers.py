"""Making and evaluating bongrl environments, built on gymnasium's own wrappers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.wrappers import RecordEpisodeStatistics

__all__ = ["PolicyFn", "Predictor", "episode_success", "evaluate", "make_env", "eval_seed", "ProtocolEval"]

#: A policy function: ``policy(obs_batch, deterministic) -> actions`` with a leading batch axis on both.
PolicyFn = Callable[[np.ndarray, bool], np.ndarray]


@runtime_checkable
class Predictor(Protocol):
    """Anything with a stable-baselines3-style ``predict(obs, deterministic=...) -> (actions, state)``."""

    def predict(self, observation: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]: ...


def make_env(env_id: str, seed: int | None = None, **kwargs: Any) -> gym.Env:
    """``gymnasium.make(env_id, **kwargs)`` wrapped in :class:`gymnasium.wrappers.RecordEpisodeStatistics`.

    Imports :mod:`bongrl.envs` first so that the ``bongrl/...`` ids are registered. With ``seed`` the env is
    reset once with it and its action and observation spaces are seeded, so later ``reset()`` calls continue
    that stream. The returned env then reports ``info["episode"] = {"r", "l", "t"}`` when an episode ends.

    Example: ``make_env("bongrl/DeepSea-v0", seed=0, size=20)``.
    """
    import bongrl.envs  # noqa: F401  (registers the ids)

    env = RecordEpisodeStatistics(gym.make(env_id, **kwargs))
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
        env.observation_space.seed(seed)
    return env


def _act(policy: PolicyFn | Predictor, obs: Any, deterministic: bool, action_space: spaces.Space) -> Any:
    if hasattr(policy, "predict"):
        action, _state = policy.predict(obs, deterministic=deterministic)
        action = np.asarray(action)
    elif callable(policy):
        action = np.asarray(policy(np.asarray(obs)[None], deterministic))
    else:
        raise TypeError(f"policy must be callable or have .predict(), got {type(policy).__name__}")
    if isinstance(action_space, spaces.Discrete):
        if action.size != 1:
            raise ValueError(f"expected one discrete action, got an array of shape {action.shape}")
        return int(action.reshape(-1)[0])
    shape = action_space.shape
    if shape is not None and action.shape == (1, *shape):
        action = action[0]
    return action


def evaluate(
    policy: PolicyFn | Predictor,
    env: gym.Env,
    n_episodes: int = 10,
    deterministic: bool = True,
    seed: int | None = None,
    max_episode_steps: int | None = None,
) -> dict[str, Any]:
    """Run ``policy`` for ``n_episodes`` episodes on a single (non-vector) ``env``.

    ``policy`` is either a callable ``policy(obs_batch, deterministic) -> actions`` (called with a batch of
    one observation, its first action is used) or an object with an SB3-style ``predict(obs,
    deterministic=...)`` returning ``(actions, state)`` (called with the unbatched observation). Episode ``i``
    is reset with seed ``seed + i`` (or unseeded when ``seed`` is None), so a seeded evaluation is
    reproducible. ``max_episode_steps`` optionally truncates episodes of envs without a time limit.

    Returns:
        ``dict(mean=..., std=..., returns=[...], lengths=[...])`` with ``mean``/``std`` over episode returns.
    """
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
    if isinstance(env, gym.vector.VectorEnv):
        raise TypeError("evaluate() takes a single environment, not a VectorEnv")
    returns: list[float] = []
    lengths: list[int] = []
    for episode in range(n_episodes):
        obs, _info = env.reset(seed=None if seed is None else seed + episode)
        total, length, done = 0.0, 0, False
        while not done:
            action = _act(policy, obs, deterministic, env.action_space)
            obs, reward, terminated, truncated, _info = env.step(action)
            total += float(reward)
            length += 1
            done = terminated or truncated or (max_episode_steps is not None and length >= max_episode_steps)
        returns.append(total)
        lengths.append(length)
    arr = np.asarray(returns)
    return {"mean": float(arr.mean()), "std": float(arr.std()), "returns": returns, "lengths": lengths}


def eval_seed(seed: int) -> int:
    """First episode seed of the periodic evaluations of a run seeded ``seed``: episode i uses eval_seed + i.

    One protocol for ``bongrl train``, ``compare`` and ``tune``, so their evaluation numbers are comparable."""
    return 10_000 + 1_000 * int(seed)


class ProtocolEval:
    """The periodic evaluation protocol of ``bongrl train``, ``compare`` and ``tune``: ``episodes`` deterministic
    episodes of a policy on its own env (not the training env), episode i reset with seed ``first_seed + i``
    (:func:`eval_seed` of the run's seed). Calling it returns :func:`evaluate`'s dict."""

    def __init__(self, env_id: str, episodes: int, first_seed: int, **env_kwargs: Any) -> None:
        self.env = make_env(env_id, **env_kwargs)
        self.episodes = int(episodes)
        self.first_seed = int(first_seed)

    def __call__(self, policy: PolicyFn | Predictor) -> dict[str, Any]:
        return evaluate(policy, self.env, self.episodes, deterministic=True, seed=self.first_seed)

    def close(self) -> None:
        self.env.close()


def episode_success(infos: Any, i: int) -> bool | None:
    """``info["is_success"]`` of vector env ``i``'s episode that ended at this step, or None if the env does not
    report one. ``infos`` is a gymnasium vector env's info dict (same-step autoreset: the final step's info is
    under ``final_info``, with ``_is_success`` masks) or an SB3 VecEnv's list of per-env dicts."""
    if isinstance(infos, (list, tuple)):
        value = infos[i].get("is_success") if i < len(infos) and isinstance(infos[i], dict) else None
        return None if value is None else bool(value)
    if not isinstance(infos, dict):
        return None
    for source in (infos.get("final_info"), infos):
        if isinstance(source, dict) and "is_success" in source:
            mask = source.get("_is_success")
            if mask is not None and not bool(np.asarray(mask)[i]):
                continue
            return bool(np.asarray(source["is_success"])[i])
    return None
