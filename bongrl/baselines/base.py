"""The bandit-agent interface shared by the baselines and the BONG bandit agent, plus input validation.

Every agent is built as ``Cls(n_arms, context_dim, seed=0, **hyperparameters)``, acts with
``act(context)`` (returns an arm) and learns with ``update(context, arm, reward)``. A context is a 1-D array
of shape ``(context_dim,)`` (``(0,)`` for a multi-armed bandit). Each agent owns its random streams (a
:class:`numpy.random.Generator`, and a :class:`torch.Generator` for the neural ones) seeded from ``seed``, so
two agents built with the same arguments and fed the same data make the same choices.

Bad input — a non-finite or wrongly shaped context, an arm that is not an integer in ``[0, n_arms)``, a
non-finite reward — raises :class:`ValueError` whose message starts with the field's name (``"context: ..."``,
``"arm: ..."``, ``"reward: ..."``). Everything is checked before anything is changed or any random number is
drawn, so a rejected call leaves the agent exactly as it was.
"""

from __future__ import annotations

import numbers
import operator
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["BanditAgent", "BaseBanditAgent"]


@runtime_checkable
class BanditAgent(Protocol):
    """One round: ``arm = act(context)``; the environment pays ``reward``; ``update(context, arm, r)``."""

    n_arms: int

    def act(self, context: np.ndarray) -> int: ...

    def update(self, context: np.ndarray, arm: int, reward: float) -> None: ...


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name}: expected an integer, got {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name}: must be >= {minimum}, got {value}")
    return value


def _check_positive(name: str, value: Any, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name}: expected a real number, got {value!r}")
    value = float(value)
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name}: must be {'>= 0' if allow_zero else '> 0'} and finite, got {value}")
    return value


class BaseBanditAgent:
    """Validation, seeding and the round counter common to all baselines.

    Subclasses implement ``_act(x)`` and ``_update(x, arm, reward)`` on already-validated input (``x`` is a
    float64 array of shape ``(context_dim,)``). ``t`` counts accepted updates.
    """

    name = "base"

    def __init__(self, n_arms: int, context_dim: int, seed: int = 0) -> None:
        self.n_arms = _check_int("n_arms", n_arms, 1)
        self.context_dim = _check_int("context_dim", context_dim, 0)
        self.seed = _check_int("seed", seed, 0)
        self.rng = np.random.default_rng(self.seed)
        self.t = 0

    # ------------------------------------------------------------------ validation
    def _check_context(self, context: Any) -> np.ndarray:
        if isinstance(context, (str, bytes)):
            raise ValueError(f"context: expected a numeric array, got {type(context).__name__}")
        try:
            x = np.asarray(context, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"context: expected a numeric array of shape ({self.context_dim},): {e}"
            ) from None
        if x.shape != (self.context_dim,):
            raise ValueError(f"context: expected shape ({self.context_dim},), got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError("context: contains NaN or infinite values")
        return x.copy()

    def _check_arm(self, arm: Any) -> int:
        if isinstance(arm, (bool, np.bool_)):
            raise ValueError(f"arm: expected an integer in [0, {self.n_arms}), got {arm!r}")
        try:
            a = operator.index(arm)
        except TypeError:
            raise ValueError(f"arm: expected an integer in [0, {self.n_arms}), got {arm!r}") from None
        if not 0 <= a < self.n_arms:
            raise ValueError(f"arm: expected an integer in [0, {self.n_arms}), got {a}")
        return int(a)

    def _check_reward(self, reward: Any) -> float:
        if isinstance(reward, (str, bytes)):
            raise ValueError(f"reward: expected a finite real number, got {reward!r}")
        try:
            arr = np.asarray(reward, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"reward: expected a finite real number, got {reward!r}") from None
        if arr.size != 1 or arr.ndim > 1:
            raise ValueError(f"reward: expected a scalar, got shape {arr.shape}")
        r = float(arr.reshape(()))
        if not np.isfinite(r):
            raise ValueError(f"reward: must be finite, got {r}")
        return r

    # ------------------------------------------------------------------ public API
    def act(self, context: np.ndarray) -> int:
        """Choose an arm for ``context`` (shape ``(context_dim,)``)."""
        x = self._check_context(context)
        return int(self._act(x))

    def update(self, context: np.ndarray, arm: int, reward: float) -> None:
        """Learn from one observed ``(context, arm, reward)``."""
        x = self._check_context(context)
        a = self._check_arm(arm)
        r = self._check_reward(reward)
        self._update(x, a, r)
        self.t += 1

    def _round_robin(self, initial_pulls: int) -> int | None:
        """The arm to play in the round-robin start (``t < n_arms * initial_pulls``), else ``None``."""
        if self.t < self.n_arms * initial_pulls:
            return self.t % self.n_arms
        return None

    # ------------------------------------------------------------------ to implement
    def _act(self, x: np.ndarray) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _update(self, x: np.ndarray, arm: int, reward: float) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n_arms={self.n_arms}, context_dim={self.context_dim}, seed={self.seed})"
        )
