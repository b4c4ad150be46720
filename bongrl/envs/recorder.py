"""Exact environment state for checkpoints, without pickling the environment.

:class:`EpisodeRecorder` wraps each sub-environment of a BongDQN vector env and records what determines the
environment's state under gymnasium's contract that ``reset`` and ``step`` are deterministic functions of the
env's own ``np_random`` generator and the actions: the seed given to (or the ``np_random`` bit-generator state
just before) the last ``reset``, and the actions taken since. That record is small and JSON-serialisable (it
goes in the checkpoint's JSON header); :meth:`EpisodeRecorder.restore` rebuilds the state on a freshly made env
by redoing that reset and replaying the current episode's actions. At an episode boundary nothing is replayed.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

__all__ = ["EpisodeRecorder"]


def _jsonable_action(action: Any) -> Any:
    arr = np.asarray(action)
    if arr.ndim == 0:
        return arr.item()
    return arr.tolist()


class EpisodeRecorder(gym.Wrapper):
    """Records the last reset (seed or ``np_random`` state) and the actions since, for exact replay."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self._reset_seed: int | None = None
        self._reset_rng: dict[str, Any] | None = None
        self._reset_options: Any = None
        self._actions: list[Any] = []
        self._replayable = False  # True once a reset has been recorded

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        self._reset_seed = None if seed is None else int(seed)
        self._reset_rng = None if seed is not None else dict(self.env.unwrapped.np_random.bit_generator.state)
        self._reset_options = options
        self._actions = []
        self._replayable = options is None  # arbitrary options may not be JSON; replay only the plain case
        return self.env.reset(seed=seed, options=options)

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict]:
        self._actions.append(_jsonable_action(action))
        return self.env.step(action)

    def snapshot(self) -> dict[str, Any] | None:
        """A JSON-serialisable record of the env's state, or ``None`` when it cannot be replayed."""
        if not self._replayable:
            return None
        return {"seed": self._reset_seed, "rng": self._reset_rng, "actions": list(self._actions)}

    def restore(self, snap: dict[str, Any]) -> Any:
        """Bring this env to the recorded state; returns its current observation."""
        if snap.get("seed") is not None:
            obs, _ = self.reset(seed=int(snap["seed"]))
        else:
            self.env.unwrapped.np_random.bit_generator.state = snap["rng"]
            obs, _ = self.reset()
        for a in snap.get("actions", []):
            obs, _, term, trunc, _ = self.step(np.asarray(a) if isinstance(a, list) else a)
            if term or trunc:
                raise ValueError("replaying the recorded episode ended it early: the env is not deterministic")
        return obs
