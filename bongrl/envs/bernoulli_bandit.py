"""Bernoulli multi-armed bandit (no context), for the Beta-Bernoulli exactness check (docs/design.md §6)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

__all__ = ["BernoulliBandit"]

DEFAULT_PROBS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5)


class BernoulliBandit(gym.Env[np.ndarray, np.int64]):
    """K-armed Bernoulli bandit; one round per episode.

    There is no context: the observation is an empty float32 vector (``Box(shape=(0,))``, which gymnasium's
    env checker accepts). ``step(arm)`` pays 1 with probability ``probs[arm]`` (drawn from ``self.np_random``,
    seeded by ``reset(seed=...)``), terminates, and reports ``info`` with ``regret`` (max(probs) −
    probs[arm]), ``optimal_arm`` and ``expected_reward`` (probs[arm]).

    Args:
        probs: success probability of each arm (default ``(0.1, 0.2, 0.3, 0.4, 0.5)``).
        n_arms: instead of ``probs``, the number of arms, with probabilities drawn uniformly in [0, 1] from
            ``np.random.default_rng(probs_seed)``.
        probs_seed: seed for those random probabilities.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        probs: Sequence[float] | None = None,
        n_arms: int | None = None,
        probs_seed: int | None = None,
    ) -> None:
        if probs is None:
            if n_arms is None:
                probs = DEFAULT_PROBS
            else:
                if isinstance(n_arms, bool) or not isinstance(n_arms, (int, np.integer)) or n_arms < 1:
                    raise ValueError(f"n_arms must be a positive int, got {n_arms!r}")
                probs = np.random.default_rng(probs_seed).uniform(0.0, 1.0, size=int(n_arms))
        p = np.asarray(probs, dtype=np.float64)
        if p.ndim != 1 or p.size < 1:
            raise ValueError(f"probs must be a non-empty 1-d sequence, got shape {p.shape}")
        if n_arms is not None and int(n_arms) != p.size:
            raise ValueError(f"n_arms={n_arms} does not match len(probs)={p.size}")
        if not np.all(np.isfinite(p)) or np.any(p < 0) or np.any(p > 1):
            raise ValueError(f"probs must lie in [0, 1], got {p.tolist()}")
        self.probs: np.ndarray = p
        self.n_arms = int(p.size)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(0,), dtype=np.float32)
        self.action_space = spaces.Discrete(self.n_arms)
        self._needs_reset = True

    @property
    def optimal_arm(self) -> int:
        """Arm with the highest success probability (the first one on ties)."""
        return int(np.argmax(self.probs))

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start a round; the observation is empty."""
        super().reset(seed=seed)
        self._needs_reset = False
        return np.zeros(0, dtype=np.float32), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Pull ``action``: reward ~ Bernoulli(probs[action]); the round terminates."""
        if self._needs_reset:
            raise RuntimeError("BernoulliBandit.step() called before reset() or after the round ended")
        arm = int(action)
        if not 0 <= arm < self.n_arms:
            raise ValueError(f"BernoulliBandit arm must be in [0, {self.n_arms}), got {action!r}")
        reward = float(self.np_random.random() < self.probs[arm])
        best = self.optimal_arm
        info = {
            "regret": float(self.probs[best] - self.probs[arm]),
            "optimal_arm": best,
            "expected_reward": float(self.probs[arm]),
        }
        self._needs_reset = True
        return np.zeros(0, dtype=np.float32), reward, True, False, info
