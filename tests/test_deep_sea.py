"""DeepSea deep exploration with one BONG posterior (the ``bongrl/DeepSea-v0`` preset; docs/deep_sea.md).

Runs go through ``scripts/deep_sea_scaling.py``'s ``run_one`` (bsuite's solve criterion: first episode e with
total_bad_episodes / e < 0.9) so the tests check the script too.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import gymnasium as gym
import pytest
import torch

import bongrl  # noqa: F401  (registers the envs)
from bongrl import presets
from bongrl.agents.bong_dqn import BongDQN

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location(
        "deep_sea_scaling", ROOT / "scripts" / "deep_sea_scaling.py"
    )
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


ds = _script()
SMALL = {"hidden": [64]}  # N = 6 has 36 cells; 64 features keep the tests fast


def test_features_rule():
    assert [ds.features(n) for n in (6, 10, 14, 16, 20, 30, 40)] == [256, 256, 256, 256, 512, 1024, 2048]


def test_thompson_rto_solves_small_deep_sea_where_greedy_and_epsilon_do_not():
    budget = 60
    row = ds.run_one(6, seed=0, exploration="thompson", max_episodes=budget, overrides=SMALL)
    assert row["solved"] and row["episodes_to_solve"] <= 30, row
    assert row["replay_size"] <= 2 * 6 * 6  # merged: at most one entry per (s, a) (s' is determined)
    assert row["transitions"] == 6 * row["episodes_to_solve"]  # stopped at the criterion
    for exploration in ("greedy", "epsilon"):
        other = ds.run_one(6, seed=0, exploration=exploration, max_episodes=budget, overrides=SMALL)
        assert not other["solved"] and other["episodes_to_solve"] == budget, other


def test_bsuite_env_gives_the_same_episodes_to_solve():
    pytest.importorskip("bsuite")
    ours = ds.run_one(6, seed=1, max_episodes=60, overrides=SMALL)
    theirs = ds.run_one(6, seed=1, max_episodes=60, env_kind="bsuite", overrides=SMALL)
    assert ours["solved"]
    for k in ("episodes_to_solve", "solved", "replay_size", "transitions"):
        assert ours[k] == theirs[k], (k, ours, theirs)


def test_bsuite_env_same_trajectory_step_by_step():
    pytest.importorskip("bsuite")
    from bongrl.envs.bsuite_adapter import BsuiteDeepSea

    hp = {**presets.get("bongrl/DeepSea-v0")["hyperparameters"], **SMALL}
    returns = []
    for env in (
        gym.make("bongrl/DeepSea-v0", size=6, mapping_seed=42),
        BsuiteDeepSea(size=6, mapping_seed=42),
    ):
        agent = BongDQN(env, posterior="full", seed=3, **hp)
        rs: list[float] = []
        agent.learn(
            6 * 25,
            callback=lambda a, ev: rs.append(round(ev["return"], 6)) if ev["kind"] == "episode" else None,  # noqa: B023 (used within this iteration)
        )
        returns.append((rs, agent.est.mean.clone(), agent.rto.prev.clone()))
    assert returns[0][0] == returns[1][0]
    torch.testing.assert_close(returns[0][1], returns[1][1])
    torch.testing.assert_close(returns[0][2], returns[1][2])


def test_merged_store_is_exact_bookkeeping():
    hp = {**presets.get("bongrl/DeepSea-v0")["hyperparameters"], **SMALL}
    agent = BongDQN(gym.make("bongrl/DeepSea-v0", size=5, mapping_seed=42), posterior="full", seed=0, **hp)
    agent.learn(5 * 12)
    store = agent.rto.store
    assert float(store["count"].sum()) == 5 * 12  # every transition counted once
    assert len(store["keys"]) == store["m"] == store["obs"].shape[0]
    # rewards on DeepSea are deterministic per (s, a): the mean reward equals every copy's reward
    assert torch.all(store["rew_sum"] / store["count"] <= 1.0)
    # cached body features give the network's head output exactly
    theta = torch.randn(agent.est.num_params, generator=torch.Generator().manual_seed(0))
    W, b = theta[:-2].view(2, -1), theta[-2:]
    torch.testing.assert_close(store["phi"] @ W.T + b, agent.est.apply(theta, store["obs"]))
    torch.testing.assert_close(store["phi_next"] @ W.T + b, agent.est.apply(theta, store["next_obs"]))


def test_pcg_sweep_solves_the_fixed_target_regression():
    """With the bootstrap frozen (γ = 0), one sweep of PCG is the exact MAP of the perturbed regression."""
    hp = {
        **presets.get("bongrl/DeepSea-v0")["hyperparameters"],
        **SMALL,
        "gamma": 0.0,
        "rto_sweeps": 1,
        "rto_cg": 40,
        "dtype": "float64",
    }
    agent = BongDQN(gym.make("bongrl/DeepSea-v0", size=4, mapping_seed=42), posterior="full", seed=0, **hp)
    agent.learn(4 * 10)
    state = agent.generator.get_state()
    theta = agent.rto.sample()
    store = agent.rto.store
    # redo the draws and solve (Σ₀⁻¹ + JᵀCJ/σ²) θ = Σ₀⁻¹ ξ + JᵀC ȳ/σ² directly
    agent.generator.set_state(state)
    P, s2, p2 = agent.est.num_params, hp["obs_std"] ** 2, hp["prior_std"] ** 2
    anchor = agent.est.prior_mean + hp["prior_std"] * torch.randn(
        P, generator=agent.generator, dtype=torch.float64
    )
    c = store["count"]
    ybar = (
        store["rew_sum"] / c
        + hp["obs_std"] * torch.randn(store["m"], generator=agent.generator, dtype=torch.float64) / c.sqrt()
    )
    J = torch.zeros(store["m"], P, dtype=torch.float64)
    H = store["phi"].shape[1]
    for j in range(store["m"]):
        a = int(store["act"][j])
        J[j, a * H : (a + 1) * H] = store["phi"][j]
        J[j, 2 * H + a] = 1.0
    lam = torch.eye(P, dtype=torch.float64) / p2 + (J.T * c) @ J / s2
    exact = torch.linalg.solve(lam, anchor / p2 + J.T @ (c * ybar) / s2)
    torch.testing.assert_close(theta, exact, rtol=1e-6, atol=1e-6)


def test_default_presets_keep_rto_off():
    for env_id in ("CartPole-v1", "MountainCar-v0", "Acrobot-v1"):
        hp = presets.get(env_id)["hyperparameters"]
        assert hp.get("rto_sweeps", 0) == 0 and not hp.get("rto_merge", False)


@pytest.mark.slow
def test_deep_sea_10_solved_fast_on_three_seeds():
    for seed in range(3):
        row = ds.run_one(10, seed=seed, max_episodes=300)
        assert row["solved"] and row["episodes_to_solve"] < 10**3 / 3.16 / 2, row
