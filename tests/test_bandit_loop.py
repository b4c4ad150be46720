"""bongrl.agents.bandit_loop.play_rounds: reset/seed semantics, events, early stop, rejected updates, and the same
rounds as ThompsonBandit.learn."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

import bongrl.envs  # noqa: F401  (registers the bandit env ids)
from bongrl.agents.bandit_loop import RoundsPlayed, play_rounds
from bongrl.agents.thompson_bandit import ThompsonBandit
from bongrl.baselines import UniformRandom

EVENT_KEYS = {"round", "arm", "reward", "regret", "cumulative_regret", "wall"}


class RecordingEnv:
    """A 3-arm bandit env that records the seed of every reset; arm a pays a and has regret 2 - a."""

    def __init__(self, n_arms: int = 3) -> None:
        self.action_space = gym.spaces.Discrete(n_arms)
        self.reset_seeds: list[int | None] = []
        self.count = 0

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict]:
        self.reset_seeds.append(seed)
        self.count += 1
        return np.array([float(self.count)]), {}

    def step(self, arm: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        return np.zeros(1), float(arm), True, False, {"regret": 2.0 - arm}


class CyclingAgent:
    """Plays arms 0, 1, 2, 0, ...; records its updates; rejects the updates of the rounds in ``reject``."""

    def __init__(self, n_arms: int = 3, reject: tuple[int, ...] = ()) -> None:
        self.n_arms = n_arms
        self.reject = reject
        self.acts = 0
        self.updates: list[tuple[float, int, float]] = []

    def act(self, context: Any) -> int:
        self.acts += 1
        return (self.acts - 1) % self.n_arms

    def update(self, context: Any, arm: int, reward: float) -> None:
        if self.acts in self.reject:
            raise ValueError("rejected")
        self.updates.append((float(context[0]), arm, reward))


def test_first_round_reseeds_with_seed_plus_rounds_done():
    env = RecordingEnv()
    play_rounds(CyclingAgent(), env, 4, seed=7)
    assert env.reset_seeds == [7, None, None, None]
    env = RecordingEnv()
    play_rounds(CyclingAgent(), env, 3, seed=7, rounds_done=10)
    assert env.reset_seeds == [17, None, None]
    env = RecordingEnv()
    play_rounds(CyclingAgent(), env, 3, seed=None, rounds_done=10)
    assert env.reset_seeds == [None, None, None]


def test_events_and_result():
    env, agent, events = RecordingEnv(), CyclingAgent(), []
    res = play_rounds(agent, env, 4, seed=0, rounds_done=5, cumulative_regret=1.5, on_round=events.append)
    assert isinstance(res, RoundsPlayed)
    assert all(set(e) == EVENT_KEYS for e in events)
    assert [e["round"] for e in events] == [6, 7, 8, 9]
    assert [e["arm"] for e in events] == [0, 1, 2, 0]
    assert [e["reward"] for e in events] == [0.0, 1.0, 2.0, 0.0]
    assert [e["regret"] for e in events] == [2.0, 1.0, 0.0, 2.0]
    assert [e["cumulative_regret"] for e in events] == [3.5, 4.5, 4.5, 6.5]
    walls = [e["wall"] for e in events]
    assert walls == sorted(walls) and walls[0] >= 0
    # each update sees the context of its own round
    assert agent.updates == [(1.0, 0, 0.0), (2.0, 1, 1.0), (3.0, 2, 2.0), (4.0, 0, 0.0)]
    assert res.rounds == 4 and res.cumulative_regret == 6.5 and res.failed_updates == 0 and not res.stopped
    assert res.act_s >= 0 and res.update_s >= 0 and res.wall_s >= walls[-1]


def test_on_round_false_stops_after_that_round():
    env, agent = RecordingEnv(), CyclingAgent()
    res = play_rounds(agent, env, 10, seed=0, on_round=lambda e: e["round"] < 3)
    assert res.stopped and res.rounds == 3 and len(agent.updates) == 3 and len(env.reset_seeds) == 3
    assert res.cumulative_regret == 3.0  # regrets 2, 1, 0
    # None (and True) keep going
    res = play_rounds(CyclingAgent(), RecordingEnv(), 5, seed=0, on_round=lambda e: None)
    assert not res.stopped and res.rounds == 5


def test_rejected_updates_propagate_or_are_counted():
    with pytest.raises(ValueError, match="rejected"):
        play_rounds(CyclingAgent(reject=(2,)), RecordingEnv(), 5, seed=0)
    agent = CyclingAgent(reject=(2, 4))
    res = play_rounds(agent, RecordingEnv(), 5, seed=0, skip_failed_updates=True)
    assert res.rounds == 5 and res.failed_updates == 2
    assert [u[0] for u in agent.updates] == [1.0, 3.0, 5.0]
    assert res.cumulative_regret == 2.0 + 1.0 + 0.0 + 2.0 + 1.0  # a rejected round's regret still counts


def test_bad_arguments():
    with pytest.raises(ValueError, match="arms"):
        play_rounds(CyclingAgent(n_arms=4), RecordingEnv(n_arms=3), 1, seed=0)
    with pytest.raises(ValueError, match="rounds"):
        play_rounds(CyclingAgent(), RecordingEnv(), -1, seed=0)
    env = RecordingEnv()
    assert play_rounds(CyclingAgent(), env, 0, seed=0).rounds == 0 and env.reset_seeds == []


def _tb() -> ThompsonBandit:
    return ThompsonBandit(5, 2, posterior="dlr", hidden=[8], rank=2, seed=3, device="cpu")


def test_same_rounds_as_thompson_bandit_learn():
    """Two learn() calls and two play_rounds calls (continuing with rounds_done / cumulative_regret) play the same
    arms, rewards and regrets and end in the same posterior."""
    learned, events_learn = _tb(), []
    env = gym.make("bongrl/WheelBandit-v0", delta=0.7)
    learned.learn(total_rounds=12, callback=lambda a, e: events_learn.append(e), env=env)
    learned.learn(total_rounds=8, callback=lambda a, e: events_learn.append(e), env=env)

    played, events_loop = _tb(), []
    env = gym.make("bongrl/WheelBandit-v0", delta=0.7)
    cum = 0.0
    for n in (12, 8):
        res = play_rounds(played, env, n, seed=played.seed, rounds_done=played.num_rounds, cumulative_regret=cum,
                          on_round=events_loop.append)
        cum = res.cumulative_regret

    def strip(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in e.items() if k != "wall"} for e in events]

    assert len(events_loop) == 20 and strip(events_loop) == strip(events_learn)
    assert cum == learned.cumulative_regret and played.num_rounds == learned.num_rounds == 20
    for k, v in learned.est.state.items():
        assert torch.equal(v, played.est.state[k]), k


def test_baseline_agent_is_reproducible():
    def run() -> tuple[list[int], float]:
        arms: list[int] = []
        env = gym.make("bongrl/BernoulliBandit-v0")
        res = play_rounds(UniformRandom(env.action_space.n, 0, seed=1), env, 30, seed=4,
                          on_round=lambda e: arms.append(e["arm"]))
        return arms, res.cumulative_regret

    first, again = run(), run()
    assert first == again and len(first[0]) == 30 and len(set(first[0])) > 1 and first[1] > 0
