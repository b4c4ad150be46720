"""The wheel bandit of Riquelme, Tucker & Snoek (2018), "Deep Bayesian Bandits Showdown"
(deep_contextual_bandits).

Context x is uniform in the unit disk. Arms 0–3 pay N(1.0, 0.05²) and arm 4 pays N(1.2, 0.05²), except when
‖x‖ ≥ δ: then the arm of x's quadrant pays N(50, 0.01²) (x₀>0, x₁>0 → arm 0; x₀>0, x₁≤0 → arm 1;
x₀≤0, x₁>0 → arm 2; otherwise arm 3). The larger δ, the rarer (and harder to find) the high-reward region;
δ = 0.95 is the "hard" setting.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

__all__ = ["WheelBandit", "quadrant_arm"]


def quadrant_arm(context: np.ndarray) -> int:
    """The arm that pays ``mu_large`` in the outer ring for this context (Riquelme et al. 2018)."""
    x0, x1 = float(context[0]), float(context[1])
    if x0 > 0:
        return 0 if x1 > 0 else 1
    return 2 if x1 > 0 else 3


class WheelBandit(gym.Env[np.ndarray, np.int64]):
    """Contextual wheel bandit (Riquelme, Tucker & Snoek 2018); one round per episode.

    ``reset()`` draws a context (observation ``Box(-1, 1, (2,), float32)``); ``step(arm)`` returns the same
    context, a Gaussian reward for the arm, ``terminated=True``, ``truncated=False`` and ``info`` with

    * ``regret``: expected reward of the best arm − expected reward of the chosen arm (≥ 0, 0 when optimal),
    * ``optimal_arm``, ``expected_reward`` (of the chosen arm), ``expected_rewards`` (all arms).

    Expectations are computed from the float32 context the agent observes.

    Args:
        delta: radius of the inner disk (exploration difficulty), in [0, 1].
        mean_v: mean rewards of the 5 arms inside the disk.
        std_v: reward standard deviations of the 5 arms.
        mu_large: mean reward of the quadrant arm in the outer ring.
        std_large: its standard deviation.
    """

    metadata = {"render_modes": []}
    n_arms = 5

    def __init__(
        self,
        delta: float = 0.95,
        mean_v: Sequence[float] = (1.0, 1.0, 1.0, 1.0, 1.2),
        std_v: Sequence[float] = (0.05, 0.05, 0.05, 0.05, 0.05),
        mu_large: float = 50.0,
        std_large: float = 0.01,
    ) -> None:
        if not 0.0 <= float(delta) <= 1.0:
            raise ValueError(f"WheelBandit delta must be in [0, 1], got {delta!r}")
        self.delta = float(delta)
        self.mean_v = np.asarray(mean_v, dtype=np.float64)
        self.std_v = np.asarray(std_v, dtype=np.float64)
        if self.mean_v.shape != (self.n_arms,) or self.std_v.shape != (self.n_arms,):
            raise ValueError(f"mean_v and std_v must each have {self.n_arms} entries")
        if np.any(self.std_v < 0) or std_large < 0:
            raise ValueError("standard deviations must be non-negative")
        self.mu_large = float(mu_large)
        self.std_large = float(std_large)

        self.observation_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Discrete(self.n_arms)
        self._context: np.ndarray | None = None
        self._needs_reset = True

    def expected_rewards(self, context: np.ndarray) -> np.ndarray:
        """Mean reward of every arm for ``context`` (shape (5,))."""
        means = self.mean_v.copy()
        if np.linalg.norm(np.asarray(context, dtype=np.float64)) >= self.delta:
            means[quadrant_arm(context)] = self.mu_large
        return means

    def optimal_arm(self, context: np.ndarray) -> int:
        """The arm with the highest expected reward for ``context``."""
        return int(np.argmax(self.expected_rewards(context)))

    def _std(self, context: np.ndarray, arm: int) -> float:
        if np.linalg.norm(np.asarray(context, dtype=np.float64)) >= self.delta and arm == quadrant_arm(
            context
        ):
            return self.std_large
        return float(self.std_v[arm])

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Draw a context uniformly in the unit disk (rejection sampling, as the reference)."""
        super().reset(seed=seed)
        while True:
            x = self.np_random.uniform(-1.0, 1.0, size=2).astype(np.float32)
            if np.linalg.norm(x.astype(np.float64)) <= 1.0:
                break
        self._context = x
        self._needs_reset = False
        return x.copy(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Pull ``action``; the episode (one round) terminates."""
        if self._needs_reset or self._context is None:
            raise RuntimeError("WheelBandit.step() called before reset() or after the round ended")
        arm = int(action)
        if not 0 <= arm < self.n_arms:
            raise ValueError(f"WheelBandit arm must be in [0, {self.n_arms}), got {action!r}")
        context = self._context
        means = self.expected_rewards(context)
        reward = float(self.np_random.normal(means[arm], self._std(context, arm)))
        best = int(np.argmax(means))
        info = {
            "regret": float(means[best] - means[arm]),
            "optimal_arm": best,
            "expected_reward": float(means[arm]),
            "expected_rewards": means,
        }
        self._needs_reset = True
        return context.copy(), reward, True, False, info
