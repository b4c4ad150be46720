"""SB3 habits work on bongrl agents: SB3's own callbacks, VecEnvs, get_env/set_env, verbose, tensorboard_log,
save before learn, load from a run dir, and plugin options (issue: fit the habits of SB3 and rl-zoo users)."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.callbacks import (
    BaseCallback,
    CallbackList,
    CheckpointCallback,
    EvalCallback,
    StopTrainingOnMaxEpisodes,
    StopTrainingOnRewardThreshold,
)
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecNormalize

import bongrl.envs  # noqa: F401  (registers bongrl/* ids)
from bongrl import registry
from bongrl.agents.bong_dqn import BongDQN
from bongrl.agents.thompson_bandit import ThompsonBandit
from bongrl.checkpoint import load_checkpoint
from bongrl.errors import UsageError
from bongrl.runner import RunSpec

SMALL = {"hidden": [16], "learning_starts": 50, "buffer_size": 500}


def _dqn(env="CartPole-v1", **kw) -> BongDQN:
    return BongDQN(env, device="cpu", **{"seed": 0, **SMALL, **kw})


def _bandit(**kw) -> ThompsonBandit:
    return ThompsonBandit(5, 2, device="cpu", seed=0, hidden=[8], **kw)


class Recorder(BaseCallback):
    """An SB3 callback that records what SB3's protocol promises it."""

    def __init__(self, done_keys: tuple[str, ...] = ("episode", "terminal_observation", "TimeLimit.truncated")) -> None:
        super().__init__()
        self.done_keys = set(done_keys)
        self.calls: list[tuple[int, int]] = []
        self.seen_infos: list[list[dict]] = []
        self.started = self.ended = False

    def _on_training_start(self) -> None:
        self.started = True
        self.total = self.locals["total_timesteps"]

    def _on_step(self) -> bool:
        assert self.model.num_timesteps == self.num_timesteps
        self.calls.append((self.n_calls, self.num_timesteps))
        infos, dones = self.locals["infos"], np.asarray(self.locals["dones"])
        assert isinstance(infos, list) and len(infos) == len(dones)
        for info, done in zip(infos, dones):
            if done:
                assert self.done_keys <= set(info)
        self.seen_infos.append(infos)
        self.logger.record("custom/value", 1.0)  # SB3 callbacks log through the model's logger
        assert self.training_env is self.model.get_env()
        return True

    def _on_training_end(self) -> None:
        self.ended = True


# ----------------------------------------------------------------------------------------------- SB3 callbacks
def test_sb3_callbacks_drive_bongdqn(tmp_path: Path) -> None:
    agent = _dqn(num_envs=2, env=make_vec_env("CartPole-v1", n_envs=2, seed=0))
    rec = Recorder()
    eval_env = make_vec_env("CartPole-v1", n_envs=1, seed=100)
    evaluate = EvalCallback(eval_env, eval_freq=150, n_eval_episodes=2, log_path=str(tmp_path / "eval"), verbose=0)
    ckpt = CheckpointCallback(save_freq=200, save_path=str(tmp_path / "ckpt"), name_prefix="bong")
    agent.learn(800, callback=CallbackList([rec, evaluate, ckpt]))
    assert rec.started and rec.ended and rec.total == 800
    assert [n for n, _ in rec.calls] == list(range(1, 401))  # one on_step per vectorised step, 2 envs
    assert rec.calls[-1][1] == 800
    assert any(any("episode" in i for i in infos) for infos in rec.seen_infos)
    # EvalCallback evaluated every 150 calls, with the same numbers in its npz file
    assert list(evaluate.evaluations_timesteps) == [300, 600]
    data = np.load(tmp_path / "eval" / "evaluations.npz")
    assert data["results"].shape == (2, 2) and evaluate.best_mean_reward > 0
    # CheckpointCallback saved with SB3's names, and the files load as agents at those steps
    saved = sorted((tmp_path / "ckpt").glob("bong_*_steps.zip"))
    assert [p.name for p in saved] == ["bong_400_steps.zip", "bong_800_steps.zip"]
    loaded = BongDQN.load(saved[0], env=make_vec_env("CartPole-v1", n_envs=2, seed=0), device="cpu")
    assert loaded.num_timesteps == 400


def test_sb3_stop_callbacks_stop_bongdqn() -> None:
    agent = _dqn()
    stop = StopTrainingOnRewardThreshold(reward_threshold=-1.0)  # any mean reward beats it: stop at once
    evaluate = EvalCallback(make_vec_env("CartPole-v1", n_envs=1), eval_freq=100, n_eval_episodes=1,
                            callback_on_new_best=stop)
    agent.learn(2_000, callback=evaluate)
    assert agent.num_timesteps == 100
    agent2 = _dqn()
    agent2.learn(5_000, callback=StopTrainingOnMaxEpisodes(max_episodes=3))
    assert agent2.num_episodes == 3 and agent2.num_timesteps < 5_000


def test_sb3_callbacks_drive_thompson_bandit(tmp_path: Path) -> None:
    agent = _bandit()
    rec = Recorder(done_keys=("episode", "TimeLimit.truncated", "regret"))
    ckpt = CheckpointCallback(save_freq=50, save_path=str(tmp_path), name_prefix="bandit")
    evaluate = EvalCallback(gym.make("bongrl/WheelBandit-v0"), eval_freq=60, n_eval_episodes=5,
                            log_path=str(tmp_path / "eval"))
    agent.learn(120, env="bongrl/WheelBandit-v0", callback=[rec, ckpt, evaluate])
    assert rec.started and rec.ended and len(rec.calls) == 120 and rec.calls[-1] == (120, 120)
    assert sorted(p.name for p in tmp_path.glob("*.zip")) == ["bandit_100_steps.zip", "bandit_50_steps.zip"]
    assert ThompsonBandit.load(tmp_path / "bandit_100_steps.zip").num_rounds == 100
    assert list(evaluate.evaluations_timesteps) == [60, 120]
    # a callback that reads training_env.num_envs needs the bandit to play a (one-env) VecEnv, as SB3 algorithms do
    venv = make_vec_env("bongrl/WheelBandit-v0", n_envs=1, seed=0)
    stopped = _bandit().learn(500, env=venv, callback=StopTrainingOnMaxEpisodes(7))
    assert stopped.num_rounds == 7


def test_own_callback_type_still_works() -> None:
    from bongrl.callbacks import BaseCallback as OwnBase

    class Count(OwnBase):
        def _on_step(self) -> bool:
            assert self.training_env is self.model.get_env() and self.logger is self.model.logger
            return self.num_timesteps < 60

    events: list[dict] = []
    _dqn().learn(100, callback=[Count(), lambda agent, ev: events.append(ev)])
    assert events and all(ev["kind"] == "episode" for ev in events)
    agent = _dqn()
    agent.learn(100, callback=Count())
    assert agent.num_timesteps == 60


# ----------------------------------------------------------------------------------------------- SB3 VecEnvs
@pytest.mark.parametrize("kind", ["dummy", "subproc", "vecnormalize"])
def test_bongdqn_learns_on_sb3_vec_envs(kind: str) -> None:
    if kind == "subproc":
        venv = SubprocVecEnv([lambda: gym.make("CartPole-v1")] * 2, start_method="fork")
    else:
        venv = DummyVecEnv([lambda: gym.make("CartPole-v1")] * 2)
        if kind == "vecnormalize":
            venv = VecNormalize(venv)
    agent = _dqn(env=venv, num_envs=2)
    try:
        episodes: list[dict] = []
        agent.learn(300, callback=lambda a, ev: episodes.append(ev))
        assert agent.num_timesteps == 300 and agent.get_env() is venv
        assert episodes and all(ev["length"] >= 1 for ev in episodes)
        assert bool(torch.isfinite(agent.est.mean).all())
        assert (agent.get_vec_normalize_env() is venv) == (kind == "vecnormalize")
        if kind == "vecnormalize":  # VecNormalize learned running statistics from the agent's steps
            assert venv.obs_rms.count > 300
    finally:
        venv.close()


def test_sb3_vec_env_runs_are_reproducible() -> None:
    def run() -> torch.Tensor:
        agent = _dqn(env=make_vec_env("CartPole-v1", n_envs=2), num_envs=2, seed=3)
        agent.learn(200)
        return agent.est.mean.clone()

    assert torch.equal(run(), run())


def test_monitor_returns_are_the_episode_returns_under_vecnormalize() -> None:
    venv = VecNormalize(make_vec_env("CartPole-v1", n_envs=1, seed=0))  # make_vec_env wraps Monitor
    episodes: list[dict] = []
    _dqn(env=venv).learn(300, callback=lambda a, ev: episodes.append(ev))
    # CartPole pays 1 a step: the raw return is the length (VecNormalize's rewards would not sum to it)
    assert episodes and all(ev["return"] == ev["length"] for ev in episodes)


def test_thompson_bandit_plays_one_env_sb3_vec_envs() -> None:
    agent = _bandit()
    venv = VecNormalize(make_vec_env("bongrl/WheelBandit-v0", n_envs=1, seed=0), norm_reward=False)
    agent.learn(50, env=venv)
    assert agent.num_rounds == 50 and agent.get_env() is venv and agent.cumulative_regret > 0
    with pytest.raises(ValueError, match="one env at a time"):
        agent.set_env(make_vec_env("bongrl/WheelBandit-v0", n_envs=2))


def test_loaded_bandit_continues_on_a_vec_env(tmp_path: Path) -> None:
    """A checkpoint's saved env stream belongs to a plain env; on a VecEnv the run is seeded instead."""
    agent = _bandit()
    agent.learn(10, env="bongrl/WheelBandit-v0")
    loaded = ThompsonBandit.load(agent.save(tmp_path / "b.safetensors"),
                                 env=make_vec_env("bongrl/WheelBandit-v0", n_envs=1, seed=0))
    loaded.learn(10)
    assert loaded.num_rounds == 20


# ----------------------------------------------------------------------------------------------- get/set_env
def test_get_env_and_set_env() -> None:
    agent = _dqn()
    assert isinstance(agent.get_env(), gym.vector.VectorEnv)
    agent.learn(100)
    other = make_vec_env("CartPole-v1", n_envs=3, seed=1)
    agent.set_env(other)
    assert agent.get_env() is other and agent.num_envs == 3
    agent.learn(99)
    assert agent.num_timesteps == 199
    with pytest.raises(ValueError, match="do not match"):
        agent.set_env("MountainCar-v0")
    bandit = _bandit()
    assert bandit.get_env() is None
    env = gym.make("bongrl/WheelBandit-v0")
    bandit.set_env(env)
    assert bandit.get_env() is env
    with pytest.raises(ValueError, match="arms"):
        bandit.set_env(gym.make("bongrl/BernoulliBandit-v0", n_arms=3))


# ----------------------------------------------------------------------------------------------- logging
def test_verbose_prints_sb3_tables(capsys: pytest.CaptureFixture[str]) -> None:
    _dqn(verbose=1).learn(400, log_interval=2)
    out = capsys.readouterr().out
    for key in ("ep_rew_mean", "ep_len_mean", "n_updates", "health", "total_timesteps"):
        assert key in out
    _dqn(verbose=0).learn(400, log_interval=2)
    assert "ep_rew_mean" not in capsys.readouterr().out
    with pytest.raises(ValueError, match="verbose"):
        _dqn(verbose=5)


def _scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_log_has_sb3_scalars_and_posterior_health(tmp_path: Path) -> None:
    agent = _dqn(tensorboard_log=tmp_path)
    agent.learn(400, log_interval=2, tb_log_name="cart")
    scalars = _scalars(tmp_path / "cart_1")
    for tag in ("rollout/ep_rew_mean", "rollout/ep_len_mean", "time/fps", "train/n_updates",
                "posterior/health", "posterior/finite", "posterior/min_marginal_variance"):
        assert tag in scalars, tag
    steps = [s for s, _ in scalars["train/n_updates"]]
    assert steps == sorted(steps) and steps[-1] <= 400
    assert all(v > 0 for _, v in scalars["posterior/health"])
    agent.learn(200, log_interval=2, tb_log_name="cart", reset_num_timesteps=False)  # continues cart_1
    assert not (tmp_path / "cart_2").exists()
    agent.learn(200, log_interval=2, tb_log_name="cart")  # SB3's default: a new run folder
    assert (tmp_path / "cart_2").is_dir()
    bandit = _bandit(tensorboard_log=tmp_path)
    bandit.learn(200, env="bongrl/WheelBandit-v0", log_interval=50)
    assert "rollout/cumulative_regret" in _scalars(tmp_path / "ThompsonBandit_1")


# ----------------------------------------------------------------------------------------------- save / load
@pytest.mark.parametrize("posterior", ["full", "diag", "dlr", "kfac"])
@pytest.mark.parametrize("exploration", ["thompson", "ucb", "greedy", "epsilon"])
def test_save_before_learn_round_trips(tmp_path: Path, posterior: str, exploration: str) -> None:
    agent = _dqn(posterior=posterior, exploration=exploration, hidden=[8])
    path = agent.save(tmp_path / "fresh.safetensors")
    loaded = BongDQN.load(path, device="cpu")
    assert torch.equal(loaded.est.mean, agent.est.mean)
    agent.learn(60)
    loaded.learn(60)
    assert torch.equal(loaded.est.mean, agent.est.mean)  # an untrained save continues exactly


def test_bandit_save_before_learn(tmp_path: Path) -> None:
    agent = _bandit()
    loaded = ThompsonBandit.load(agent.save(tmp_path / "b.safetensors"), env="bongrl/WheelBandit-v0")
    assert torch.equal(loaded.est.mean, agent.est.mean) and loaded.num_rounds == 0


def test_load_accepts_a_run_dir(tmp_path: Path) -> None:
    run = tmp_path / "run"
    agent = _dqn(env_kwargs={"max_episode_steps": 30})
    agent.learn(100)
    agent.save(run / "checkpoint.safetensors")
    loaded = BongDQN.load(run, device="cpu")
    assert loaded.num_timesteps == 100 and loaded.env_kwargs == {"max_episode_steps": 30}
    assert loaded.env.envs[0].spec.max_episode_steps == 30  # the env is remade with the saved kwargs
    bandit = _bandit()
    bandit.learn(20, env="bongrl/WheelBandit-v0")
    bandit.save(tmp_path / "bandit" / "checkpoint.safetensors")
    assert ThompsonBandit.load(tmp_path / "bandit").num_rounds == 20
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="without a checkpoint.safetensors"):
        BongDQN.load(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no checkpoint file or run directory"):
        ThompsonBandit.load(tmp_path / "missing")


# ----------------------------------------------------------------------------------------------- plugin options
def test_plugin_options_through_the_api(tmp_path: Path) -> None:
    agent = _dqn(exploration="epsilon", exploration_options={"eps_start": 0.5, "decay_steps": 7},
                 posterior="dlr", posterior_options={"rank": 3})
    assert agent.rule.eps_start == 0.5 and agent.rule.decay_steps == 7 and agent.est.family.rank == 3
    meta = load_checkpoint(agent.save(tmp_path / "a.safetensors"))[1]
    assert meta["exploration_options"] == {"eps_start": 0.5, "decay_steps": 7}
    assert meta["posterior_options"] == {"rank": 3}
    loaded = BongDQN.load(tmp_path / "a.safetensors", device="cpu")
    assert loaded.rule.eps_start == 0.5 and loaded.est.family.rank == 3
    with pytest.raises(registry.PluginError, match=r"'thompson' has no option\(s\) temperature; valid: every"):
        _dqn(exploration_options={"temperature": 0.5})
    with pytest.raises(registry.PluginError, match=r"'diag' has no option\(s\) rank; valid: mean_update"):
        _dqn(posterior="diag", posterior_options={"rank": 3})
    bandit = _bandit(exploration="ucb", exploration_options={"beta": 2.5})
    assert bandit.rule.beta == 2.5


def test_plugin_options_through_set() -> None:
    spec = RunSpec.resolve("CartPole-v1", overrides={"exploration.every": 5, "posterior.rank": 4, "gamma": 0.9},
                           check_env=False)
    assert spec.exploration_options == {"every": 5} and spec.posterior_options == {"rank": 4}
    assert spec.hyperparameters["gamma"] == 0.9 and "exploration.every" not in spec.hyperparameters
    agent = spec.replace(device="cpu").build_agent()
    assert agent.rule.every == 5 and agent.est.family.rank == 4
    with pytest.raises(UsageError, match=r"no option\(s\) temperature; valid: every"):
        RunSpec.resolve("CartPole-v1", overrides={"exploration.temperature": 0.5}, check_env=False)
    with pytest.raises(UsageError, match="exploration.OPTION or posterior.OPTION"):
        RunSpec.resolve("CartPole-v1", overrides={"agent.x": 1}, check_env=False)
    assert json.dumps(spec.to_config())  # the options travel in config.json
