"""Deep Sea: bsuite's deep-exploration benchmark as a gymnasium environment.

A faithful port of ``bsuite/environments/deep_sea.py`` (bsuite 0.3.6; Osband et al., "Behaviour Suite for
Reinforcement Learning", 2020; "Randomized Prior Functions for Deep RL", 2018), checked step for step against
bsuite's own implementation in ``tests/test_envs.py``.

The agent starts in the top-left cell of an N×N grid and falls one row per step, so every episode lasts
exactly N steps. In each cell one of the two actions means "right" (column + 1, clipped, reward
``-unscaled_move_cost / N``) and the other "left" (column − 1, clipped); which one is fixed per cell by
``np.random.RandomState(mapping_seed).binomial(1, 0.5, [N, N])`` (an action is "right" when it equals the
mapping of the current cell). Moving right from the last column pays +1, so the optimal return is ``1 -
unscaled_move_cost`` (0.99). Going left from a diagonal cell (row == column) makes the episode "bad": the
treasure can no longer be reached.
"""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

__all__ = ["DeepSea"]


class DeepSea(gym.Env[np.ndarray, np.int64]):
    """bsuite's Deep Sea (bsuite 0.3.6) with the gymnasium API.

    Observation: ``Box(0, 1, (N, N), float32)``, one-hot at (row, column) — bsuite's own (N, N) shape, not
    flattened. After the final step the observation is all zeros, as in bsuite. Actions: ``Discrete(2)``;
    their meaning (left/right) depends on the cell through :attr:`action_mapping`. Episodes terminate after
    exactly N steps (never truncated).

    ``info`` (on reset and on every step):

    * ``bad_episode`` (bool): the agent has gone left from a diagonal cell in this episode (bsuite's
      ``_bad_episode``; final at termination).
    * ``total_bad_episodes`` (int): number of finished bad episodes over the lifetime of this env object
      (bsuite's ``_total_bad_episodes``; ``reset(seed=...)`` does not clear it).
    * ``denoised_return`` (float): lifetime sum of the +1 treasure rewards, without move costs or noise
      (bsuite's ``_denoised_return``).
    * ``is_success`` (bool, final step only): the episode was not bad — the stable-baselines3 convention that
      ``bongrl compare`` reads to score episodes to solve, whatever the env (docs/design.md §6).

    Args:
        size: N, the side of the grid and the episode length.
        mapping_seed: seed of the per-cell action mapping (bsuite's sweep uses 42).
        deterministic: if False, "right" only succeeds with probability 1 − 1/N and the two bottom corners add
            N(0, 1) reward noise (bsuite's stochastic variant); randomness then comes from ``self.np_random``,
            seeded by ``reset(seed=...)`` (so it does not reproduce bsuite's own random stream).
        unscaled_move_cost: cost of moving right multiplied by N (bsuite default 0.01).
        randomize_actions: if False, action 1 is "right" in every cell (bsuite's debug mode; warns).
        render_mode: ``None`` or ``"ansi"``.
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(
        self,
        size: int = 10,
        mapping_seed: int | None = 42,
        deterministic: bool = True,
        unscaled_move_cost: float = 0.01,
        randomize_actions: bool = True,
        render_mode: str | None = None,
    ) -> None:
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"DeepSea size must be a positive int, got {size!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}"
            )
        self.size = int(size)
        self.mapping_seed = mapping_seed
        self.deterministic = bool(deterministic)
        self.unscaled_move_cost = float(unscaled_move_cost)
        self.randomize_actions = bool(randomize_actions)
        self.render_mode = render_mode

        if self.randomize_actions:
            mapping_rng = np.random.RandomState(mapping_seed)
            self.action_mapping: np.ndarray = mapping_rng.binomial(1, 0.5, [self.size, self.size])
        else:
            warnings.warn(
                "DeepSea is in debug mode (randomize_actions=False): action 1 is 'right' in every cell.",
                stacklevel=2,
            )
            self.action_mapping = np.ones([self.size, self.size], dtype=np.int64)

        optimal_no_cost = 1.0 if self.deterministic else (1 - 1 / self.size) ** (self.size - 1)
        #: Expected return of the optimal policy (0.99 for the default deterministic env).
        self.optimal_return: float = optimal_no_cost - self.unscaled_move_cost

        self.observation_space = spaces.Box(0.0, 1.0, shape=(self.size, self.size), dtype=np.float32)
        self.action_space = spaces.Discrete(2)

        self._row = 0
        self._column = 0
        self._bad_episode = False
        self._total_bad_episodes = 0
        self._denoised_return = 0.0
        self._needs_reset = True

    # ------------------------------------------------------------------ gymnasium API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start a new episode at row 0, column 0. ``seed`` only matters for the stochastic variant."""
        super().reset(seed=seed)
        self._row = 0
        self._column = 0
        self._bad_episode = False
        self._needs_reset = False
        return self._observation(), self._info()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Move one row down, left or right according to :attr:`action_mapping` (bsuite's ``_step``)."""
        if self._needs_reset:
            raise RuntimeError("DeepSea.step() called before reset() or after the episode terminated")
        action = int(action)
        if action not in (0, 1):
            raise ValueError(f"DeepSea action must be 0 or 1, got {action!r}")
        n = self.size
        reward = 0.0
        action_right = action == self.action_mapping[self._row, self._column]

        if self._column == n - 1 and action_right:
            reward += 1.0
            self._denoised_return += 1.0
        if not self.deterministic and self._row == n - 1 and self._column in (0, n - 1):
            reward += float(self.np_random.standard_normal())

        if action_right:
            if self.deterministic or self.np_random.random() > 1 / n:
                self._column = min(self._column + 1, n - 1)
            reward -= self.unscaled_move_cost / n
        else:
            if self._row == self._column:  # was on the optimal path and went wrong
                self._bad_episode = True
            self._column = max(self._column - 1, 0)
        self._row += 1

        terminated = self._row == n
        info = self._info()
        if terminated:
            self._needs_reset = True
            if self._bad_episode:
                self._total_bad_episodes += 1
            info = self._info()
            info["is_success"] = not self._bad_episode  # the SB3 convention: success on the final step
        return self._observation(), float(reward), terminated, False, info

    def render(self) -> str | None:
        """Text picture of the grid (``render_mode="ansi"``): ``X`` agent, ``$`` treasure cell."""
        if self.render_mode != "ansi":
            return None
        rows = []
        for r in range(self.size):
            cells = ["X" if (r, c) == (self._row, self._column) else "." for c in range(self.size)]
            if r == self.size - 1 and cells[-1] == ".":
                cells[-1] = "$"
            rows.append("".join(cells))
        return "\n".join(rows)

    # ------------------------------------------------------------------ bsuite-style accessors
    @property
    def total_bad_episodes(self) -> int:
        """Finished bad episodes over this env's lifetime (bsuite's ``total_bad_episodes``)."""
        return self._total_bad_episodes

    @property
    def denoised_return(self) -> float:
        """Lifetime sum of treasure rewards (bsuite's ``bsuite_info()['denoised_return']``)."""
        return self._denoised_return

    def bsuite_info(self) -> dict[str, Any]:
        """Same keys as bsuite's ``DeepSea.bsuite_info()``."""
        return {"total_bad_episodes": self._total_bad_episodes, "denoised_return": self._denoised_return}

    # ------------------------------------------------------------------ helpers
    def _observation(self) -> np.ndarray:
        obs = np.zeros((self.size, self.size), dtype=np.float32)
        if self._row < self.size:  # all zeros after the last step, as in bsuite
            obs[self._row, self._column] = 1.0
        return obs

    def _info(self) -> dict[str, Any]:
        return {
            "bad_episode": self._bad_episode,
            "total_bad_episodes": self._total_bad_episodes,
            "denoised_return": self._denoised_return,
        }
