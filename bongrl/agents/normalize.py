"""Scale statistics that make BongDQN's defaults independent of the units of an environment's rewards and
unbounded observations.

A Gaussian TD likelihood with a fixed noise σ and a weight prior N(μ₀, σ₀²I) are both statements about scale: σ = 3
is a small noise for CartPole's returns of ~100 in reward units of 1, and LunarLander's −100 crash penalties are 33σ
residuals that throw a linearised step far outside the region where the linearisation holds (measured: the
posterior mean reached 1e13 and NaN within 3k steps). :class:`WarmupScale` estimates a scale from the first
``learning_starts`` env steps and then freezes it, so the learned Q-function is not chasing a moving unit (the
frozen scale is part of the checkpoint; resumed runs continue with it exactly).

- Rewards are divided by their root mean square over the warm-up (1 when every warm-up reward is 0, e.g. a sparse
  goal never reached): CartPole, MountainCar and Acrobot pay ±1 a step, so their scale is 1 (Acrobot: ≈1) and the
  classic-control settings are unchanged; LunarLander's is ≈10.
- Observation dimensions whose Box bounds are infinite (or effectively so) are standardised by their warm-up mean
  and standard deviation, as SB3's ``VecNormalize`` does (there continuously; here frozen, for the same reason).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["WarmupScale", "reward_scale"]


class WarmupScale:
    """Running first and second moments (Chan/Welford merge, float64) of a stream of (B, D) rows, updated until
    :meth:`freeze`. ``D`` columns, all on the host (the statistics are a few numbers)."""

    def __init__(self, dim: int) -> None:
        self.count = 0
        self.mean = np.zeros(dim)
        self.m2 = np.zeros(dim)
        self.frozen = False

    def update(self, rows: np.ndarray) -> None:
        """Merge a batch of rows (no-op once frozen)."""
        if self.frozen:
            return
        x = np.asarray(rows, dtype=np.float64).reshape(-1, self.mean.shape[0])
        n = x.shape[0]
        if n == 0:
            return
        mean_b = x.mean(0)
        m2_b = ((x - mean_b) ** 2).sum(0)
        total = self.count + n
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2_b + delta**2 * (self.count * n / total)
        self.count = total

    def freeze(self) -> None:
        self.frozen = True

    def std(self) -> np.ndarray:
        """Population standard deviation (0 before any row)."""
        return np.sqrt(self.m2 / max(self.count, 1))

    def rms(self) -> np.ndarray:
        """Root mean square E[x²]^{1/2} (0 before any row)."""
        return np.sqrt(self.mean**2 + self.m2 / max(self.count, 1)) if self.count else np.zeros_like(self.mean)

    def state_dict(self) -> dict[str, Tensor]:
        return {
            "count": torch.tensor(self.count, dtype=torch.int64),
            "mean": torch.as_tensor(self.mean.copy()),
            "m2": torch.as_tensor(self.m2.copy()),
            "frozen": torch.tensor(int(self.frozen), dtype=torch.int64),
        }

    def load_state_dict(self, sd: dict[str, Tensor]) -> None:
        mean = sd["mean"].double().numpy()
        if mean.shape != self.mean.shape:
            raise ValueError(f"scale statistics have {mean.shape[0]} columns, expected {self.mean.shape[0]}")
        self.count = int(sd["count"])
        self.mean = mean.copy()
        self.m2 = sd["m2"].double().numpy().copy()
        self.frozen = bool(int(sd["frozen"]))


def reward_scale(stats: WarmupScale) -> float:
    """The reward unit: the warm-up root mean square reward, or 1 when it is 0 (no reward seen yet)."""
    s = float(stats.rms()[0])
    return s if s > 1e-8 else 1.0
