"""Classification bandits: a labelled data set as a contextual bandit (docs/design.md §6).

One arm per class; each round shows the features of a row drawn uniformly at random and pays 1 when the pulled
arm is the row's label, else 0. This is the setting of the neural-bandit benchmarks of Riquelme, Tucker &
Snoek (2018) and of subspace-EKF neural bandits (Duran-Martin, Kara & Murphy 2022). Only data shipped inside
scikit-learn is used (nothing is downloaded); scikit-learn is imported when such a data set is requested, not
when this module is.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

__all__ = ["DATASETS", "ClassificationBandit", "load_dataset"]

#: Data-set name -> scikit-learn loader (all bundled with scikit-learn, no download).
DATASETS: dict[str, str] = {
    "digits": "load_digits",
    "wine": "load_wine",
    "breast_cancer": "load_breast_cancer",
}


def load_dataset(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of a bundled scikit-learn data set (``digits``, ``wine`` or ``breast_cancer``)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid choices are: {', '.join(sorted(DATASETS))}")
    import sklearn.datasets  # lazy: keep `import bongrl.envs` cheap

    X, y = getattr(sklearn.datasets, DATASETS[name])(return_X_y=True)
    return np.asarray(X), np.asarray(y)


def _standardize(X: np.ndarray) -> np.ndarray:
    """Zero mean, unit standard deviation per column; constant columns become 0."""
    mean = X.mean(axis=0)
    std = X.std(axis=0)
    centred = X - mean
    safe = np.where(std > 0, std, 1.0)
    return np.where(std > 0, centred / safe, 0.0)


class ClassificationBandit(gym.Env[np.ndarray, np.int64]):
    """A classification data set as a contextual bandit, one round per episode.

    ``reset()`` draws a row uniformly with ``self.np_random`` and returns its (standardised) features;
    ``step(arm)`` returns the same features, reward ``1.0`` if ``arm`` is the row's class index else ``0.0``,
    ``terminated=True``, and ``info`` with ``label`` (class index), ``optimal_arm`` (= label),
    ``expected_reward`` (= reward: rewards are deterministic given the row) and ``regret`` (= 1 − reward).

    Classes are mapped to arms ``0..K-1`` in sorted order of the original labels (kept in :attr:`classes`).
    The observation space is a float32 ``Box`` bounded by the column minima and maxima of the (standardised)
    data.

    Args:
        dataset: ``"digits"`` (default when no arrays are given), ``"wine"`` or ``"breast_cancer"``.
        X: feature matrix (n_rows, n_features), instead of ``dataset``.
        y: labels (n_rows,) of any sortable type, with ``X``.
        standardize: standardise the features (zero mean, unit std per column; constant columns left at 0).
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        dataset: str | None = None,
        X: np.ndarray | None = None,
        y: np.ndarray | None = None,
        standardize: bool = True,
    ) -> None:
        if X is None and y is None:
            name = "digits" if dataset is None else dataset
            if not isinstance(name, str):
                raise ValueError(
                    f"dataset must be a string; valid choices are: {', '.join(sorted(DATASETS))}"
                )
            X, y = load_dataset(name)
            self.dataset: str | None = name
        else:
            if dataset is not None:
                raise ValueError("pass either dataset=... or X=..., y=..., not both")
            if X is None or y is None:
                raise ValueError("X and y must be given together")
            self.dataset = None
        X_arr = np.asarray(X)
        y_arr = np.asarray(y)
        if X_arr.ndim != 2:
            raise ValueError(f"X must be 2-d (n_rows, n_features), got shape {X_arr.shape}")
        if X_arr.shape[0] < 1 or X_arr.shape[1] < 1:
            raise ValueError(f"X must have at least one row and one column, got shape {X_arr.shape}")
        if not np.issubdtype(X_arr.dtype, np.number) or np.issubdtype(X_arr.dtype, np.complexfloating):
            raise ValueError(f"X must be real-valued, got dtype {X_arr.dtype}")
        X_arr = X_arr.astype(np.float64)
        if not np.all(np.isfinite(X_arr)):
            raise ValueError("X contains NaN or infinite values")
        if y_arr.ndim != 1 or y_arr.shape[0] != X_arr.shape[0]:
            raise ValueError(
                f"y must be 1-d with one label per row of X ({X_arr.shape[0]}), got shape {y_arr.shape}"
            )
        classes, labels = np.unique(y_arr, return_inverse=True)
        if classes.size < 2:
            raise ValueError(f"need at least 2 classes, got {classes.size}")

        features = _standardize(X_arr) if standardize else X_arr
        self.features: np.ndarray = features.astype(np.float32)
        self.labels: np.ndarray = labels.reshape(-1).astype(np.int64)
        self.classes: np.ndarray = classes
        self.n_arms = int(classes.size)
        self.n_rows, self.n_features = self.features.shape

        self.observation_space = spaces.Box(
            low=self.features.min(axis=0), high=self.features.max(axis=0), dtype=np.float32
        )
        self.action_space = spaces.Discrete(self.n_arms)
        self._row: int | None = None
        self._needs_reset = True

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Draw a row uniformly at random and return its features."""
        super().reset(seed=seed)
        self._row = int(self.np_random.integers(self.n_rows))
        self._needs_reset = False
        return self.features[self._row].copy(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Pull ``action``: reward 1 if it is the row's label; the round terminates."""
        if self._needs_reset or self._row is None:
            raise RuntimeError("ClassificationBandit.step() called before reset() or after the round ended")
        arm = int(action)
        if not 0 <= arm < self.n_arms:
            raise ValueError(f"ClassificationBandit arm must be in [0, {self.n_arms}), got {action!r}")
        label = int(self.labels[self._row])
        reward = 1.0 if arm == label else 0.0
        info = {"regret": 1.0 - reward, "optimal_arm": label, "expected_reward": reward, "label": label}
        self._needs_reset = True
        return self.features[self._row].copy(), reward, True, False, info
