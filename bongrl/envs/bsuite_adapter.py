"""Run agents on bsuite's own Deep Sea through the gymnasium API.

:class:`BsuiteDeepSea` wraps ``bsuite.environments.deep_sea.DeepSea`` (bsuite 0.3.6, a dev/test dependency,
imported lazily) with the same spaces and ``info`` keys as :class:`bongrl.envs.deep_sea.DeepSea`, so results
can be checked against the reference implementation.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

__all__ = ["BsuiteDeepSea"]


class BsuiteDeepSea(gym.Env[np.ndarray, np.int64]):
    """gymnasium adapter around bsuite's ``DeepSea(size, mapping_seed=...)`` (bsuite 0.3.6).

    Spaces: ``Box(0, 1, (N, N), float32)`` observations and ``Discrete(2)`` actions; ``info`` carries
    ``bad_episode``, ``total_bad_episodes`` and ``denoised_return`` as in
    :class:`bongrl.envs.deep_sea.DeepSea`. bsuite's auto-reset (stepping after the last step starts a new
    episode) is not exposed: stepping a finished episode raises, as in our env. ``bad_episode`` reads bsuite's
    private ``_bad_episode`` (bsuite has no public accessor). In the stochastic variant, ``reset(seed=...)``
    re-seeds bsuite's ``RandomState``.

    Args:
        size: N.
        mapping_seed: seed of bsuite's action mapping.
        deterministic: bsuite's ``deterministic`` flag.
        seed: bsuite's seed for the stochastic variant's noise.
        **kwargs: passed on to bsuite's ``DeepSea`` (``unscaled_move_cost``, ``randomize_actions``).
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        size: int = 10,
        mapping_seed: int | None = 42,
        deterministic: bool = True,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            from bsuite.environments import deep_sea as bsuite_deep_sea
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise ImportError(
                "BsuiteDeepSea needs bsuite: pip install 'bongrl[dev]' (or bsuite>=0.3.5)"
            ) from exc
        self.size = int(size)
        self.deterministic = bool(deterministic)
        self.bsuite_env = bsuite_deep_sea.DeepSea(
            self.size, deterministic=deterministic, seed=seed, mapping_seed=mapping_seed, **kwargs
        )
        self.action_mapping: np.ndarray = np.asarray(self.bsuite_env._action_mapping)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(self.size, self.size), dtype=np.float32)
        self.action_space = spaces.Discrete(2)
        self._needs_reset = True

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """bsuite ``reset()``; returns its observation as float32 (N, N)."""
        super().reset(seed=seed)
        if seed is not None and not self.deterministic:
            self.bsuite_env._rng = np.random.RandomState(seed)
        timestep = self.bsuite_env.reset()
        self._needs_reset = False
        return np.asarray(timestep.observation, dtype=np.float32), self._info()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """bsuite ``step(action)``; ``terminated`` is bsuite's ``timestep.last()``."""
        if self._needs_reset:
            raise RuntimeError("BsuiteDeepSea.step() called before reset() or after the episode terminated")
        action = int(action)
        if action not in (0, 1):
            raise ValueError(f"DeepSea action must be 0 or 1, got {action!r}")
        timestep = self.bsuite_env.step(action)
        terminated = bool(timestep.last())
        self._needs_reset = terminated
        obs = np.asarray(timestep.observation, dtype=np.float32)
        info = self._info()
        if terminated:  # as DeepSea: the SB3 success convention on the final step
            info["is_success"] = not info["bad_episode"]
        return obs, float(timestep.reward), terminated, False, info

    def bsuite_info(self) -> dict[str, Any]:
        """bsuite's own ``bsuite_info()``."""
        return dict(self.bsuite_env.bsuite_info())

    def _info(self) -> dict[str, Any]:
        info = self.bsuite_env.bsuite_info()
        return {
            "bad_episode": bool(self.bsuite_env._bad_episode),
            "total_bad_episodes": int(info["total_bad_episodes"]),
            "denoised_return": float(info["denoised_return"]),
        }
