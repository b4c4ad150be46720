"""BongDQN's robust defaults: warm-up scale statistics, invariance to reward and observation units, and the
divergence guard that rejects a non-finite update and carries on."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch

from bongrl.agents import BongDQN
from bongrl.agents.bong_dqn import BongDQNConfig
from bongrl.agents.normalize import WarmupScale, reward_scale
from bongrl.posteriors.base import NonFiniteError

TINY = {"hidden": [16], "learning_starts": 100, "buffer_size": 1_000}


def test_warmup_scale_matches_numpy_and_freezes() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(257, 3))
    s = WarmupScale(3)
    for chunk in np.array_split(x, 7):  # uneven batches: the Chan merge must equal the one-pass moments
        s.update(chunk)
    # float64 merge of 257 rows: agreement to round-off (1e-12 relative)
    np.testing.assert_allclose(s.mean, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(s.std(), x.std(0), rtol=1e-12)
    np.testing.assert_allclose(s.rms(), np.sqrt((x**2).mean(0)), rtol=1e-12)
    s.freeze()
    s.update(np.full((10, 3), 1e6))
    np.testing.assert_allclose(s.mean, x.mean(0), rtol=1e-12)
    t = WarmupScale(3)
    t.load_state_dict(s.state_dict())
    assert t.frozen and t.count == s.count and np.array_equal(t.mean, s.mean) and np.array_equal(t.m2, s.m2)


def test_reward_scale_is_one_without_rewards_and_rms_otherwise() -> None:
    s = WarmupScale(1)
    s.update(np.zeros((50, 1)))
    assert reward_scale(s) == 1.0
    s.update(np.full((50, 1), 4.0))
    assert reward_scale(s) == pytest.approx(np.sqrt(8.0), rel=1e-12)


class _Scaled(gym.Wrapper):
    """CartPole with rewards ×c and its unbounded dims (velocities, Box bounds ±inf) ×c."""

    def __init__(self, env: gym.Env, c: float) -> None:
        super().__init__(env)
        self.c = c

    def _obs(self, obs: np.ndarray) -> np.ndarray:
        out = np.array(obs, dtype=np.float64)
        out[[1, 3]] *= self.c
        return out.astype(np.float32)

    def reset(self, **kw):  # type: ignore[no-untyped-def]
        obs, info = self.env.reset(**kw)
        return self._obs(obs), info

    def step(self, action):  # type: ignore[no-untyped-def]
        obs, r, term, trunc, info = self.env.step(action)
        return self._obs(obs), r * self.c, term, trunc, info


def test_defaults_are_invariant_to_reward_and_unbounded_observation_units() -> None:
    """Rewards ×100 and velocities ×100 give the same agent in its own units: the warm-up scale absorbs both.

    float64 throughout; the runs differ only by round-off in the scaled inputs (the ×100 and the standardisation
    are not exact in binary), so Q-values agree to 1e-6 relative after 400 steps (each of ~500 updates amplifies
    round-off mildly), and every action is the same."""
    runs = []
    for c in (1.0, 100.0):
        agent = BongDQN(_Scaled(gym.make("CartPole-v1"), c), seed=3, device="cpu", dtype="float64", **TINY)
        actions: list[int] = []
        agent.learn(400, callback=lambda a, ev: None)
        obs = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
        probe = obs.copy()
        probe[:, [1, 3]] *= c
        runs.append((agent, agent.q_values(agent._obs_tensor(probe, (4,))), actions))
    (a1, q1, _), (a2, q2, _) = runs
    assert a2.reward_scale == pytest.approx(100 * a1.reward_scale, rel=1e-9)
    torch.testing.assert_close(q2, q1, rtol=1e-6, atol=1e-8)
    assert a1._reward_stats is not None and a1._reward_stats.frozen  # 400 > learning_starts: frozen


def test_without_normalization_the_units_matter() -> None:
    """The control for the invariance test: with raw units the two agents differ (so the test above can fail)."""
    qs = []
    for c in (1.0, 100.0):
        agent = BongDQN(_Scaled(gym.make("CartPole-v1"), c), seed=3, device="cpu", dtype="float64",
                        reward_normalize="none", obs_normalize="bounds", **TINY)
        agent.learn(400)
        probe = np.zeros((4, 4), dtype=np.float32)
        qs.append(agent.q_values(agent._obs_tensor(probe, (4,))) / (c if c > 1 else 1.0))
    assert not torch.allclose(qs[0], qs[1], rtol=1e-2)


def test_a_non_finite_update_is_rejected_and_training_continues(monkeypatch: pytest.MonkeyPatch) -> None:
    agent = BongDQN("CartPole-v1", seed=0, device="cpu", **TINY)
    agent.learn(50)
    before = {k: v.clone() for k, v in agent.est.state.items()}
    real = agent.est.increment
    calls = {"n": 0}

    def poisoned(x, y, index=None):  # type: ignore[no-untyped-def]
        A, g = real(x, y, index=index)
        calls["n"] += 1
        return A, g * float("nan")

    monkeypatch.setattr(agent.est, "increment", poisoned)
    agent.learn(3)  # every update of these steps fails: all rejected, the posterior is the one before them
    assert calls["n"] == 3 and agent.rejected_updates == 3
    for k, v in agent.est.state.items():
        assert torch.equal(v, before[k]), k
    monkeypatch.setattr(agent.est, "increment", real)
    agent.learn(20)  # and training goes on with good updates
    assert agent.num_timesteps == 73 and agent.rejected_updates == 3
    assert not torch.equal(agent.est.state["mean"], before["mean"])
    # a posterior that can no longer produce a finite update is not learning: after MAX_REJECTED_IN_A_ROW the
    # run stops with a NumericalError (the CLI: one line, exit 1), the last good posterior still in place
    from bongrl.agents.bong_dqn import MAX_REJECTED_IN_A_ROW
    from bongrl.posteriors.base import NumericalError

    monkeypatch.setattr(agent.est, "increment", poisoned)
    good = {k: v.clone() for k, v in agent.est.state.items()}
    with pytest.raises(NumericalError, match=f"last {MAX_REJECTED_IN_A_ROW} BONG updates"):
        agent.learn(10 * MAX_REJECTED_IN_A_ROW)
    assert all(torch.equal(v, good[k]) for k, v in agent.est.state.items())


def test_rejected_count_survives_save_and_load(tmp_path) -> None:  # type: ignore[no-untyped-def]
    agent = BongDQN("CartPole-v1", seed=0, device="cpu", **TINY)
    agent.learn(150)
    agent.rejected_updates = 7
    path = agent.save(tmp_path / "a.safetensors", include_replay=True)
    back = BongDQN.load(path, device="cpu")
    assert back.rejected_updates == 7 and back.reward_scale == agent.reward_scale
    obs = np.zeros((3, 4), dtype=np.float32)
    torch.testing.assert_close(back.q_values(back._obs_tensor(obs, (4,))), agent.q_values(agent._obs_tensor(obs, (4,))))


def test_bad_input_is_still_a_value_error_naming_the_problem() -> None:
    agent = BongDQN("CartPole-v1", seed=0, device="cpu", **TINY)
    with pytest.raises(ValueError, match="NaN or Inf"):
        agent.predict(np.array([0.0, np.nan, 0.0, 0.0], dtype=np.float32))
    assert issubclass(NonFiniteError, ValueError)


def test_class_defaults_are_the_recipe() -> None:
    """One source of truth: the defaults are the classic-control recipe (no preset needed)."""
    cfg = BongDQNConfig()
    assert (cfg.obs_normalize, cfg.reward_normalize, cfg.linearized_samples) == ("auto", "warmup", True)
    assert cfg.replay_every > 0 and cfg.process_noise > 0 and cfg.polyak_eval > 0


@pytest.mark.parametrize(
    "family,hyper",
    [("full", {"hidden": [16]}), ("diag", {}), ("dlr", {}), ("kfac", {})],
)
def test_every_family_trains_cartpole_with_the_defaults(family: str, hyper: dict) -> None:
    """A few thousand CartPole steps with the class defaults (``full`` on a small net): no exception, no rejected
    update, a finite posterior, and episodes longer than a random policy's (~22 steps) by the end."""
    agent = BongDQN("CartPole-v1", posterior=family, seed=0, device="cpu", **hyper)
    returns: list[float] = []
    agent.learn(3_000, callback=lambda a, ev: returns.append(ev["return"]) if ev["kind"] == "episode" else None)
    assert agent.rejected_updates == 0
    assert all(bool(torch.isfinite(v).all()) for v in agent.est.state.values())
    assert np.mean(returns[-10:]) > 40, returns[-10:]


@pytest.mark.slow
def test_defaults_learn_cartpole_on_a_fixed_seed() -> None:
    """The README quick start: class defaults, seed 0, 30k steps; 10 greedy evaluation episodes (online weights)
    must average ≥ 200 (a random policy scores ~22; the defaults reached 500 at 10k-25k on seeds 5 and 100-104)."""
    from bongrl.envs.wrappers import ProtocolEval

    agent = BongDQN("CartPole-v1", seed=0, device="cpu")
    best = 0.0
    evaluate = ProtocolEval("CartPole-v1", 10, 10_000)

    def callback(a: BongDQN, ev: dict) -> None:
        nonlocal best
        if ev["kind"] == "step":
            best = max(best, evaluate(a.greedy_predictor("online"))["mean"])

    agent.learn(30_000, callback=callback, callback_every=5_000)
    assert best >= 200, best


def test_cli_uses_the_class_defaults_for_an_env_without_a_preset(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """One source of truth: FrozenLake has no preset, so `train` runs the class defaults and says so; the run
    records no preset and no hyperparameter of its own, and its eval.json has both evaluations."""
    import json

    from bongrl import cli

    out = tmp_path / "fl"
    assert cli.main(["train", "--env", "FrozenLake-v1", "--steps", "200", "--eval-every", "0", "--eval-episodes", "1",
                     "--device", "cpu", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "no preset for FrozenLake-v1: the class defaults above" in printed
    config = json.loads((out / "config.json").read_text())
    assert config["preset"] is None and config["hyperparameters"] == {}
    assert config["agent_config"] == dataclasses.asdict(BongDQNConfig())
    result = json.loads((out / "eval.json").read_text())
    assert result["weights"] == "online" and set(result["averaged"]) >= {"mean", "std"}


def test_a_failed_posterior_sample_acts_on_the_mean(monkeypatch: pytest.MonkeyPatch) -> None:
    """A posterior too ill-conditioned to factor (a NumericalError while sampling) does not end the run: the
    Thompson rule acts on the mean (a zero deviation in the linearised model) until its next draw."""
    from bongrl.posteriors.base import NumericalError

    agent = BongDQN("CartPole-v1", seed=0, device="cpu", **TINY)

    def broken(n: int) -> torch.Tensor:
        raise NumericalError("matrix is not positive definite (Cholesky failed)")

    monkeypatch.setattr(agent.est, "sample", broken)
    eps = agent.sample_params(3)
    assert eps.shape == (3, agent.est.num_params) and not bool(eps.any()) and agent.failed_samples == 1
    agent.learn(60)  # several episodes, each starting with a failed draw
    assert agent.num_timesteps == 60 and agent.failed_samples > 1
