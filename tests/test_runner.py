"""The run layer: RunSpec resolution and validation, the agent registry, SB3-protocol callbacks and train_run."""

from __future__ import annotations

import json

import pytest

from bongrl import callbacks, registry, runs
from bongrl.errors import UsageError
from bongrl.runner import RunSpec, train_run, write_config

TINY = {"hidden": [8]}


# ------------------------------------------------------------------------------------------------ RunSpec
def test_resolve_takes_the_preset_then_the_arguments() -> None:
    spec = RunSpec.resolve("MountainCar-v0", overrides={"obs_std": 2.0}, seed=3, steps=100)
    assert spec.preset == "MountainCar-v0" and spec.hyperparameters == {"gamma": 0.98, "obs_std": 2.0}
    assert (spec.seed, spec.steps, spec.agent, spec.unit) == (3, 100, "bongdqn", "step")
    cfg = spec.agent_config()
    assert cfg["gamma"] == 0.98 and cfg["obs_std"] == 2.0 and "prior_std" in cfg  # defaults filled in
    generic = RunSpec.resolve("FrozenLake-v1", defaults_only=True)
    assert generic.preset is None and generic.hyperparameters == {}
    bandit = RunSpec.resolve("bongrl/WheelBandit-v0")
    assert bandit.agent == "bandit" and bandit.unit == "round"


@pytest.mark.parametrize(
    ("kwargs", "mentions"),
    [
        ({"env": "CartPol-v1"}, "did you mean CartPole-v1"),
        ({"env": "CartPole-v1", "seed": -1}, "--seed must be a non-negative integer"),
        ({"env": "CartPole-v1", "steps": -5}, "--steps must be a non-negative integer"),
        ({"env": "CartPole-v1", "eval_episodes": 0}, "--eval-episodes must be an integer >= 1"),
        ({"env": "CartPole-v1", "overrides": {"gama": 0.9}}, "unknown bongdqn hyperparameter(s) gama"),
        ({"env": "CartPole-v1", "overrides": {"gamma": "high"}}, "bad hyperparameter value"),
        ({"env": "CartPole-v1", "agent": "a2c"}, "unknown agent 'a2c'; known: bandit, bongdqn"),
        ({"env": "CartPole-v1", "posterior": "nope"}, "unknown posterior family 'nope'"),
        ({"env": "CartPole-v1", "preset": "nope"}, "unknown preset 'nope'"),
        ({"env": "bongrl/DeepSea-v0", "env_kwargs": {"sise": 5}}, "cannot make environment"),
        ({"env": "Pendulum-v1"}, "needs a Discrete action space"),
    ],
)
def test_resolve_rejects_bad_input_with_one_line(kwargs: dict, mentions: str) -> None:
    env = kwargs.pop("env")
    with pytest.raises((UsageError, registry.PluginError)) as info:
        RunSpec.resolve(env, **kwargs)
    msg = str(info.value)
    assert mentions in msg and "\n" not in msg, msg


def test_config_round_trip() -> None:
    spec = RunSpec.resolve("bongrl/DeepSea-v0", env_kwargs={"size": 5}, overrides=TINY, steps=40)
    config = json.loads(json.dumps(spec.to_config()))
    assert config["agent_config"]["hidden"] == [8] and config["env_kwargs"] == {"size": 5}
    assert RunSpec.from_config({**config, "command": "bongrl train", "versions": {}}) == spec


def test_agent_registry_lists_and_loads_agents() -> None:
    from bongrl.agents import BongDQN, ThompsonBandit
    from bongrl.agents.protocol import Agent

    assert {"bongdqn", "bandit"} <= set(registry.available("agent"))
    assert registry.load_agent("bongdqn") is BongDQN and registry.load_agent("bandit") is ThompsonBandit
    assert issubclass(BongDQN, Agent) and BongDQN.config_class.__name__ == "BongDQNConfig"
    names = {(p.group, p.name) for p in registry.list_plugins()}
    assert (registry.AGENTS, "bongdqn") in names


# ------------------------------------------------------------------------------------------------ callbacks
class _Counting(callbacks.BaseCallback):
    def __init__(self, stop_at: int | None = None) -> None:
        super().__init__()
        self.events: list[str] = []
        self.steps: list[int] = []
        self.stop_at = stop_at

    def _init_callback(self) -> None:
        self.events.append("init")

    def _on_training_start(self) -> None:
        self.events.append("start")

    def _on_step(self) -> bool:
        self.steps.append(self.num_timesteps)
        return self.stop_at is None or self.num_timesteps < self.stop_at

    def _on_training_end(self) -> None:
        self.events.append("end")


def test_bongdqn_drives_the_sb3_protocol_and_stops_when_asked() -> None:
    agent = RunSpec.resolve("CartPole-v1", overrides={**TINY, "num_envs": 2}, device="cpu").build_agent()
    first, second = _Counting(), _Counting(stop_at=30)
    agent.learn(100, callback=[first, second])
    # every vectorised step (2 envs: the counter moves by 2), both callbacks, until the second says stop at 30
    assert first.steps == list(range(2, 31, 2)) and second.steps == first.steps
    assert first.events == ["init", "start", "end"] and agent.num_timesteps == 30
    assert first.model is agent and first.n_calls == 15 and "episodes" in first.locals


def test_eval_callback_fires_on_crossings() -> None:
    spec = RunSpec.resolve("CartPole-v1", overrides={**TINY, "num_envs": 3}, device="cpu", eval_every=10,
                           eval_episodes=1)
    agent = spec.build_agent()
    evaluate, close = spec.evaluator()
    seen: list[int] = []
    evals = callbacks.EvalCallback(evaluate, 10, after_eval=lambda r: seen.append(r["step"]) is None)
    try:
        agent.learn(60, callback=evals)
    finally:
        close()
    assert seen == [12, 21, 30, 42, 51, 60]  # the first step at or past each multiple of 10 (3 envs: +3 a step)
    assert {"mean", "std", "returns", "averaged", "weights"} <= set(evals.last)


def test_function_callback_keeps_the_plain_form() -> None:
    agent = RunSpec.resolve("CartPole-v1", overrides=TINY, device="cpu").build_agent()
    kinds: list[tuple[str, int]] = []
    agent.learn(50, callback=lambda a, ev: kinds.append((ev["kind"], ev["step"])) is None, callback_every=20)
    assert [s for k, s in kinds if k == "step"] == [20, 40]
    assert all(k in ("step", "episode") for k, _ in kinds)


def test_bandit_checkpoints_every_n_rounds_and_stops(tmp_path) -> None:
    spec = RunSpec.resolve("bongrl/BernoulliBandit-v0", device="cpu")
    agent = spec.build_agent()
    ckpt = callbacks.CheckpointCallback(tmp_path / "b.safetensors", 10)
    stop = _Counting(stop_at=25)
    agent.learn(100, callback=[ckpt, stop])
    assert agent.num_timesteps == 25 and ckpt.saves == 2 and stop.steps == list(range(1, 26))


# ------------------------------------------------------------------------------------------------ train_run
def test_train_run_writes_a_run_directory_and_resumes(tmp_path) -> None:
    spec = RunSpec.resolve("CartPole-v1", overrides=TINY, device="cpu", steps=120, eval_every=50, eval_episodes=1)
    out = tmp_path / "run"
    out.mkdir()
    write_config(spec, out, command="test")
    lines: list[str] = []
    res = train_run(spec, out, say=lines.append, health_every=40)
    assert res.status == 0 and res.agent.num_timesteps == 120
    assert [ln.split(":")[0] for ln in lines] == ["eval @ 50", "eval @ 100", "eval @ 120"]
    evals = [r for r in runs.read_metrics(out / runs.METRICS) if r["kind"] == "eval"]
    assert [int(r["step"]) for r in evals] == [50, 100, 120]
    saved = json.loads((out / runs.EVAL).read_text())
    assert saved["step"] == 120 and saved["episodes"] == 1 and saved["averaged"] is not None
    config = runs.read_json(out / runs.CONFIG)
    more = RunSpec.from_config(config).replace(steps=150)
    write_config(more, out, resumed=config)
    again = train_run(more, out, resume=True)
    assert again.status == 0 and again.agent.num_timesteps == 150
    assert runs.read_json(out / runs.CONFIG)["resumes"][0]["steps"] == 150


def test_train_run_bandit_scores_regret(tmp_path) -> None:
    spec = RunSpec.resolve("bongrl/BernoulliBandit-v0", device="cpu", steps=60)
    write_config(spec, tmp_path)
    res = train_run(spec, tmp_path)
    assert res.status == 0 and res.result["rounds"] == 60
    rounds = [r for r in runs.read_metrics(tmp_path / runs.METRICS) if r["kind"] == "round"]
    assert len(rounds) == 60
    assert float(rounds[-1]["cumulative_regret"]) == pytest.approx(res.result["cumulative_regret"])
