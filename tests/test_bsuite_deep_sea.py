"""scripts/bsuite_deep_sea.py: bsuite's deep_sea score through bsuite's own analysis, the preset on bsuite's env
(a linear head on the one-hot grid: the width comes from the env), the ablation switches, and the sparse-feature
sweeps of the randomise-then-optimise sampler."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("bsuite")

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("bsuite_deep_sea", ROOT / "scripts" / "bsuite_deep_sea.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules["bsuite_deep_sea"] = mod  # multiprocessing-free here, but dataclass-style lookups need it
    spec.loader.exec_module(mod)
    return mod


bds = _script()


def _row(n: int, solved_at: int | None, cap: int = 10_000) -> dict:
    if solved_at is None:
        return {"size": n, "solved": False, "episodes_to_solve": "", "episodes": cap, "total_bad_episodes": cap}
    return {"size": n, "solved": True, "episodes_to_solve": solved_at, "episodes": solved_at,
            "total_bad_episodes": int(0.89 * solved_at)}


def test_score_is_bsuites_own() -> None:
    import pandas as pd

    # N = 10 solved only after 2^10 + 100 episodes, N = 48 and 50 unsolved: 18 of 21 sizes beat dithering
    rows = [_row(n, None if n >= 48 else (2_000 if n == 10 else 10 * n)) for n in bds.SIZES]
    score, solution = bds.bsuite_analysis(rows)
    assert score == pytest.approx(18 / 21)
    assert solution[10] == (2_000, True) and solution[12] == (120, True) and solution[50] == (10_000, False)
    assert bds.bsuite_analysis([_row(n, 5 * n) for n in bds.SIZES])[0] == 1.0
    assert not hasattr(pd.Series, "append")  # the pandas-2 shim is gone after the call


def test_preset_solves_bsuite_deep_sea_with_the_width_of_the_env() -> None:
    row = bds.run(8, seed=0, variant="preset", max_episodes=200, part="sweep")
    assert row["solved"] and not row["failure"] and row["episodes_to_solve"] <= 60, row
    assert row["params"] == 2 * 8 * 8 + 2  # a linear Q on the one-hot 8×8 grid: one weight per (cell, action)
    assert row["merged_transitions"] <= 2 * 8 * 8  # merged: at most one entry per (s, a)
    assert row["total_bad_episodes"] / row["episodes_to_solve"] < 0.9  # bsuite's criterion, met at that episode
    assert row["beat_dither"]


def test_a_crash_is_a_failed_row(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args, **kwargs):
        raise FloatingPointError("diverged")

    monkeypatch.setattr(bds, "make_agent", boom)
    row = bds.run(8, seed=0, variant="preset", max_episodes=10, part="sweep")
    assert row["failure"] == "FloatingPointError: diverged" and not row["solved"] and row["episodes"] == 0


@pytest.mark.parametrize("variant", sorted(bds.VARIANTS))
def test_variants_set_what_they_say(variant: str) -> None:
    agent, _ = bds.make_agent(6, 0, variant)
    cfg = agent.config
    posterior, overrides, _ = bds.VARIANTS[variant]
    assert agent.posterior_name == (posterior or "diag")
    assert cfg.rto_sweeps == (0 if variant == "plain-samples" else 10)
    assert cfg.rto_precondition == ("identity" if variant == "identity-preconditioner" else "posterior")
    assert cfg.rto_randomize_prior == (variant != "fixed-prior")
    assert cfg.hidden == ([256] if variant == "random-features" else [])


def test_unrandomised_prior_anchors_at_the_prior_mean_and_draws_nothing() -> None:
    agent, _ = bds.make_agent(6, 0, "fixed-prior")
    state = agent.generator.get_state()
    assert torch.equal(agent.rto._anchor(), agent.est.prior_mean)
    assert torch.equal(agent.generator.get_state(), state)
    randomised, _ = bds.make_agent(6, 0, "preset")
    assert not torch.equal(randomised.rto._anchor(), randomised.est.prior_mean)


def test_sparse_features_give_the_dense_numbers() -> None:
    """One-hot features take the sparse path; its values, chosen values and transpose product equal the dense
    algebra (float64: the sums differ only in order)."""
    from bongrl.agents.rto import _Features

    g = torch.Generator().manual_seed(0)
    M, D, A = 50, 40, 2
    phi = torch.zeros(M, D, dtype=torch.float64)
    phi[torch.arange(M), torch.randint(D, (M,), generator=g)] = 1.0
    phi[3, 7] = 0.5  # any values, not only ones
    ops = _Features(phi)
    assert ops.sparse and not _Features(torch.randn(M, D, generator=g, dtype=torch.float64)).sparse
    W, b = torch.randn(A, D, generator=g, dtype=torch.float64), torch.randn(A, generator=g, dtype=torch.float64)
    act, w = torch.randint(A, (M,), generator=g), torch.randn(M, generator=g, dtype=torch.float64)
    torch.testing.assert_close(ops.values(W, b), phi @ W.T + b, rtol=0, atol=1e-12)
    torch.testing.assert_close(ops.chosen(W, b, act), (phi @ W.T + b).gather(1, act[:, None])[:, 0], rtol=0,
                               atol=1e-12)
    J = torch.zeros(M, A * D + A, dtype=torch.float64)  # the Jacobian of the chosen values in θ = [W, b]
    for j in range(M):
        J[j, act[j] * D : (act[j] + 1) * D] = phi[j]
        J[j, A * D + act[j]] = 1.0
    torch.testing.assert_close(ops.transpose(w, act, A), J.T @ w, rtol=0, atol=1e-12)


def test_stochastic_part_uses_bsuites_stochastic_criterion() -> None:
    row = bds.run(8, seed=0, variant="preset", max_episodes=400, part="stochastic")
    assert row["solved"] and not row["failure"], row
    e = row["episodes_to_solve"]
    assert e >= 100 and row["total_bad_episodes"] / e < 0.8  # deep_sea_stochastic: < 80 % bad, from episode 100
    score, solution = bds.bsuite_analysis([{**row, "size": n} for n in bds.SIZES], stochastic=True)
    assert solution[10] == (e, True) and score == 1.0
