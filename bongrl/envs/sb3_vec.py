"""A gymnasium vector-env view of a stable-baselines3 ``VecEnv``.

:class:`SB3VecEnv` lets code written for gymnasium 1.x's vector API with same-step autoreset (BongDQN's loop)
run on any stable-baselines3 ``VecEnv`` — ``DummyVecEnv``, ``SubprocVecEnv``, and ``VecEnvWrapper`` stacks such
as ``VecNormalize`` or ``VecFrameStack`` — unchanged. SB3 already resets a finished env inside ``step`` and hands
back the next episode's first observation, which is exactly gymnasium's ``AutoresetMode.SAME_STEP``; the adapter
only translates the return values:

* ``dones`` → ``terminated`` / ``truncated`` through SB3's ``info["TimeLimit.truncated"]``;
* ``info["terminal_observation"]`` → ``info["final_obs"]`` (object array, ``_final_obs`` mask) and the rest of
  a finished env's last-step info → ``info["final_info"]``, built with gymnasium's own
  :meth:`~gymnasium.vector.VectorEnv._add_info`, so ``is_success`` lands where
  :func:`bongrl.envs.wrappers.episode_success` looks;
* SB3 ``Monitor``'s ``info["episode"]`` → ``info["episode"] = {"r", "l"}`` with an ``_episode`` mask, the layout of
  gymnasium's vector ``RecordEpisodeStatistics``.

With ``VecNormalize`` in the stack, observations, rewards and ``final_obs`` are the *normalised* ones (VecNormalize
normalises ``terminal_observation`` too): that is what SB3's own algorithms learn from. The unnormalised episode
returns are in ``info["episode"]`` when the sub-envs are wrapped in SB3's ``Monitor`` (``make_vec_env`` does that).

Example:
    >>> from stable_baselines3.common.env_util import make_vec_env
    >>> from stable_baselines3.common.vec_env import VecNormalize
    >>> env = as_vector_env(VecNormalize(make_vec_env("CartPole-v1", n_envs=4)))
    >>> obs, info = env.reset(seed=0)
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector.utils import batch_space

__all__ = ["SB3VecEnv", "as_vector_env", "is_sb3_vec_env"]

#: Keys of an SB3 step info that the adapter turns into gymnasium's own fields (terminated/truncated, final_obs,
#: episode) instead of copying them.
_SB3_KEYS = ("terminal_observation", "TimeLimit.truncated", "episode")

_SB3_VEC_MODULE = "stable_baselines3.common.vec_env.base_vec_env"


def is_sb3_vec_env(obj: Any) -> bool:
    """Whether ``obj`` is a stable-baselines3 ``VecEnv`` (or quacks like one: ``step_async``, ``step_wait``,
    ``reset`` and an int ``num_envs``). Does not import stable-baselines3; a gymnasium ``VectorEnv`` is not one."""
    if isinstance(obj, gym.vector.VectorEnv):
        return False
    module = sys.modules.get(_SB3_VEC_MODULE)
    if module is not None and isinstance(obj, module.VecEnv):
        return True
    methods = ("step_async", "step_wait", "reset")
    try:
        return all(callable(getattr(obj, name, None)) for name in methods) and isinstance(obj.num_envs, int)
    except AttributeError:
        return False


def as_vector_env(obj: Any) -> gym.vector.VectorEnv:
    """A gymnasium vector env for ``obj``: an :class:`SB3VecEnv` around a stable-baselines3 ``VecEnv``, a
    gymnasium ``VectorEnv`` (an :class:`SB3VecEnv` included) unchanged."""
    if isinstance(obj, gym.vector.VectorEnv):
        return obj
    if is_sb3_vec_env(obj):
        return SB3VecEnv(obj)
    raise ValueError(f"expected a gymnasium VectorEnv or a stable-baselines3 VecEnv, got {type(obj).__name__}")


def _reset_infos(venv: Any) -> Sequence[dict[str, Any]]:
    """The reset infos of the innermost SB3 VecEnv (a ``VecEnvWrapper`` keeps a stale list of its own)."""
    base = getattr(venv, "unwrapped", venv)
    infos = getattr(base, "reset_infos", None)
    return infos if infos is not None else [{} for _ in range(venv.num_envs)]


def _plain_info(info: dict[str, Any]) -> dict[str, Any]:
    """An SB3 step info without the keys the adapter translates."""
    return {key: value for key, value in info.items() if key not in _SB3_KEYS}


class SB3VecEnv(gym.vector.VectorEnv):
    """A gymnasium ``VectorEnv`` (``autoreset_mode=SAME_STEP``) running a stable-baselines3 ``VecEnv``.

    Args:
        venv: the SB3 ``VecEnv`` (any ``VecEnvWrapper`` stack); kept as :attr:`venv` and closed by :meth:`close`.

    Attributes:
        venv: the wrapped SB3 VecEnv.
        single_observation_space, single_action_space: the VecEnv's ``observation_space`` / ``action_space``.
        observation_space, action_space: those batched over ``num_envs`` (:func:`gymnasium.vector.utils.batch_space`).
    """

    def __init__(self, venv: Any) -> None:
        if not is_sb3_vec_env(venv):
            raise ValueError(f"SB3VecEnv needs a stable-baselines3 VecEnv, got {type(venv).__name__}")
        self.venv = venv
        self.num_envs = int(venv.num_envs)
        self.single_observation_space = venv.observation_space
        self.single_action_space = venv.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.metadata = {**dict(getattr(venv, "metadata", None) or {}),
                         "autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}
        self.render_mode = getattr(venv, "render_mode", None)
        self.spec = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Reset every sub-env. With ``seed``, sub-env ``i`` is reset with ``seed + i`` (SB3's ``VecEnv.seed``,
        as gymnasium's own vector envs do); ``options`` go to every sub-env (SB3's ``set_options``).

        Returns:
            ``(obs, info)``: the batched observations and the sub-envs' reset infos in the vector-info layout.
        """
        super().reset(seed=seed)
        if seed is not None:
            self.venv.seed(int(seed))
        if options is not None:
            self.venv.set_options(options)
        obs = self.venv.reset()
        infos: dict[str, Any] = {}
        for i, info in enumerate(_reset_infos(self.venv)):
            infos = self._add_info(infos, dict(info or {}), i)
        return obs, infos

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every sub-env; finished ones are already reset (their ``obs`` entry is the next episode's first).

        Returns:
            ``(obs, rewards, terminated, truncated, info)``: float64 rewards, bool ``terminated`` / ``truncated``
            (``truncated``: SB3's ``info["TimeLimit.truncated"]``), and the vector info described in the module
            docstring.
        """
        obs, rewards, dones, sb3_infos = self.venv.step(np.asarray(actions))
        dones = np.asarray(dones, dtype=bool).reshape(self.num_envs)
        truncated = np.array([bool(done and info.get("TimeLimit.truncated", False))
                              for done, info in zip(dones, sb3_infos, strict=True)], dtype=bool)
        terminated = dones & ~truncated
        infos = self._vector_info(dones, sb3_infos)
        return obs, np.asarray(rewards, dtype=np.float64).reshape(self.num_envs), terminated, truncated, infos

    def _vector_info(self, dones: np.ndarray, sb3_infos: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """gymnasium's SAME_STEP layout: a finished env's last-step info under ``final_info`` (with its
        ``final_obs``) and its reset info at the top; a running env's step info at the top."""
        infos: dict[str, Any] = {}
        reset_infos = _reset_infos(self.venv) if dones.any() else ()
        for i, info in enumerate(sb3_infos):
            if not dones[i]:
                infos = self._add_info(infos, _plain_info(info), i)
                continue
            final: dict[str, Any] = {"final_info": _plain_info(info)}
            if "terminal_observation" in info:
                final["final_obs"] = info["terminal_observation"]
            infos = self._add_info(infos, final, i)
            infos = self._add_info(infos, dict(reset_infos[i] or {}), i)
        return self._add_episode_stats(infos, sb3_infos)

    def _add_episode_stats(self, infos: dict[str, Any], sb3_infos: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """SB3 ``Monitor``'s ``info["episode"]`` as ``{"r", "l"}`` arrays (0 where no episode ended) + ``_episode``."""
        mask = np.array(["episode" in info for info in sb3_infos], dtype=bool)
        if not mask.any():
            return infos
        returns = np.zeros(self.num_envs, dtype=np.float64)
        lengths = np.zeros(self.num_envs, dtype=np.int64)
        for i in np.nonzero(mask)[0]:
            returns[i] = float(sb3_infos[i]["episode"]["r"])
            lengths[i] = int(sb3_infos[i]["episode"]["l"])
        infos["episode"] = {"r": returns, "l": lengths}
        infos["_episode"] = mask
        return infos

    def close_extras(self, **kwargs: Any) -> None:
        """Close the wrapped SB3 VecEnv."""
        self.venv.close()

    def __repr__(self) -> str:
        return f"SB3VecEnv({self.venv!r}, num_envs={self.num_envs})"
