"""Helpers shared by several test modules (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

import csv
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    """Every row of a CSV file with a header, as dicts of strings."""
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def clone_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in state.items()}


def assert_state_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """Bit-identical: same keys and torch.equal on every tensor."""
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), f"state entry {k!r} changed"


def assert_sigma_products(fam, state: dict[str, torch.Tensor], cov: torch.Tensor, gen: torch.Generator,
                          tol: dict[str, float]) -> torch.Tensor:
    """A family's Σ-products agree with its dense covariance ``cov``: precondition (Σv for one vector and for a
    matrix), predictive_cov (HΣHᵀ for one H and a batch) and marginal_variance (diag Σ). Draws v, V, H, HB from
    ``gen`` in that order and returns H (2, P) for the caller's further checks."""
    P, dt = cov.shape[0], cov.dtype
    v = torch.randn(P, generator=gen, dtype=dt)
    V = torch.randn(P, 3, generator=gen, dtype=dt)
    torch.testing.assert_close(fam.precondition(state, v), cov @ v, **tol)
    torch.testing.assert_close(fam.precondition(state, V), cov @ V, **tol)
    H = torch.randn(2, P, generator=gen, dtype=dt)
    HB = torch.randn(4, 2, P, generator=gen, dtype=dt)
    torch.testing.assert_close(fam.predictive_cov(state, H), H @ cov @ H.T, **tol)
    torch.testing.assert_close(fam.predictive_cov(state, HB), HB @ cov @ HB.transpose(-1, -2), **tol)
    torch.testing.assert_close(fam.marginal_variance(state), cov.diagonal(), **tol)
    return H


def assert_validate_state_rejects_damage(fam, state: dict[str, torch.Tensor]) -> None:
    """``fam.validate_state`` raises ValueError for every entry grown by one row, given an extra leading axis or
    holding a NaN, and for every entry but the mean left out."""
    for key, val in state.items():
        for bad in (torch.cat([val, val[:1]], 0), val.unsqueeze(0)):
            with pytest.raises(ValueError):
                fam.validate_state({**state, key: bad})
        nan = val.clone()
        nan[(0,) * nan.ndim] = float("nan")
        with pytest.raises(ValueError):
            fam.validate_state({**state, key: nan})
        if key != "mean":
            with pytest.raises(ValueError):
                fam.validate_state({k: x for k, x in state.items() if k != key})


class NaNRewardEnv(gym.Env):
    """An env whose every reward is NaN: training fails at its first step (for failure-path tests)."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict | None = None):  # type: ignore[override]
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):  # type: ignore[override]
        return np.zeros(2, np.float32), float("nan"), False, False, {}


def register_nan_reward_env(env_id: str) -> str:
    """Register :class:`NaNRewardEnv` as ``env_id`` (5-step episodes) once; returns the id."""
    if env_id not in gym.registry:
        gym.register(env_id, entry_point=NaNRewardEnv, max_episode_steps=5)
    return env_id
