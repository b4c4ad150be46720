"""bongrl.envs.sb3_vec: a gymnasium SAME_STEP vector-env view of stable-baselines3 VecEnvs."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecNormalize

from bongrl.envs.sb3_vec import SB3VecEnv, as_vector_env, is_sb3_vec_env
from bongrl.envs.wrappers import episode_success

SAME_STEP = gym.vector.AutoresetMode.SAME_STEP
#: CartPole cut at 15 steps: pushing left ends an episode by termination (~10 steps), alternating by truncation.
make_cartpole = partial(gym.make, "CartPole-v1", max_episode_steps=15)


def _actions(t: int, num_envs: int) -> np.ndarray:
    """Env 0 always pushes left (terminates), the others alternate (survive until the time limit)."""
    return np.array([0] + [t % 2] * (num_envs - 1), dtype=np.int64)


def _dummy(n: int = 2, make: Any = make_cartpole) -> DummyVecEnv:
    return DummyVecEnv([make] * n)


def _rollout(env: gym.vector.VectorEnv, steps: int, seed: int) -> list[tuple]:
    obs, _ = env.reset(seed=seed)
    out = [(np.asarray(obs).copy(),)]
    for t in range(steps):
        obs, rew, term, trunc, info = env.step(_actions(t, env.num_envs))
        final = [info["final_obs"][i] if info.get("_final_obs", np.zeros(env.num_envs, bool))[i] else None
                 for i in range(env.num_envs)]
        out.append((np.asarray(obs).copy(), rew.copy(), term.copy(), trunc.copy(), final))
    return out


def _assert_same(a: list[tuple], b: list[tuple]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        for u, v in zip(x[:4], y[:4], strict=True):
            np.testing.assert_array_equal(u, v)
        if len(x) > 4:
            for f, g in zip(x[4], y[4], strict=True):
                assert (f is None) == (g is None)
                if f is not None:
                    np.testing.assert_array_equal(f, g)


class _Recording(gym.Wrapper):
    """Records the options of each reset and whether the env was closed."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.options: list[Any] = []
        self.closed_here = False

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        self.options.append(kwargs.get("options"))
        return self.env.reset(**kwargs)

    def close(self) -> None:
        self.closed_here = True
        super().close()


def test_spaces_and_metadata() -> None:
    venv = _dummy(3)
    env = SB3VecEnv(venv)
    assert env.venv is venv and env.num_envs == 3 and env.spec is None
    assert env.single_observation_space == venv.observation_space
    assert env.single_action_space == venv.action_space == gym.spaces.Discrete(2)
    assert env.observation_space == gym.vector.utils.batch_space(venv.observation_space, 3)
    assert env.action_space == gym.spaces.MultiDiscrete([2, 2, 2])
    assert env.metadata["autoreset_mode"] == SAME_STEP
    assert "autoreset_mode" not in venv.metadata  # the venv's own metadata is not modified
    obs, info = env.reset(seed=0)
    assert obs.shape == (3, 4) and env.observation_space.contains(obs) and info == {}
    env.close()


def test_matches_gymnasium_same_step_sync_vector_env() -> None:
    """Drop-in for gymnasium's own SAME_STEP SyncVectorEnv: same seeds per sub-env, same returns, final_obs."""
    ours = SB3VecEnv(_dummy(2))
    theirs = gym.vector.SyncVectorEnv([make_cartpole] * 2, autoreset_mode=SAME_STEP)
    a, b = _rollout(ours, 40, seed=3), _rollout(theirs, 40, seed=3)
    _assert_same(a, b)
    terms, truncs = np.array([s[2] for s in a[1:]]), np.array([s[3] for s in a[1:]])
    assert terms[:, 0].any() and truncs[:, 1].any()  # both kinds of episode end were compared
    assert not (terms & truncs).any()
    ours.close()
    theirs.close()


def test_matches_stepping_the_venv_directly() -> None:
    direct, env = _dummy(2), SB3VecEnv(_dummy(2))
    direct.seed(3)
    np.testing.assert_array_equal(env.reset(seed=3)[0], direct.reset())
    seen_end = 0
    for t in range(40):
        actions = _actions(t, 2)
        obs, rew, term, trunc, info = env.step(actions)
        d_obs, d_rew, d_done, d_infos = direct.step(actions)
        np.testing.assert_array_equal(obs, d_obs)
        np.testing.assert_array_equal(rew, d_rew)
        assert rew.dtype == np.float64 and term.dtype == trunc.dtype == np.bool_
        np.testing.assert_array_equal(term | trunc, d_done)
        np.testing.assert_array_equal(trunc, [d_done[i] and d_infos[i]["TimeLimit.truncated"] for i in range(2)])
        for i in np.nonzero(d_done)[0]:
            assert info["_final_obs"][i]
            np.testing.assert_array_equal(info["final_obs"][i], d_infos[i]["terminal_observation"])
            seen_end += 1
        assert "TimeLimit.truncated" not in info and "terminal_observation" not in info.get("final_info", {})
    assert seen_end >= 4


def test_seeded_reset_is_reproducible() -> None:
    first, second = SB3VecEnv(_dummy(2)), SB3VecEnv(_dummy(2))
    a = _rollout(first, 30, seed=3)
    _assert_same(a, _rollout(second, 30, seed=3))
    _assert_same(a, _rollout(first, 30, seed=3))  # re-seeding the same adapter starts over
    assert not np.array_equal(a[0][0], _rollout(second, 0, seed=4)[0][0])


def test_reset_options_reach_every_sub_env_and_close_closes_them() -> None:
    venv = DummyVecEnv([lambda: _Recording(make_cartpole())] * 2)
    env = SB3VecEnv(venv)
    env.reset(seed=0, options={"flag": 1})
    assert [e.options[-1] for e in venv.envs] == [{"flag": 1}] * 2
    env.close()
    assert env.closed and all(e.closed_here for e in venv.envs)


def test_is_success_lands_where_episode_success_looks() -> None:
    """DeepSea reports is_success on the final step only: it is under final_info, masked per env."""
    make = partial(gym.make, "bongrl/DeepSea-v0", size=4)
    direct, env = _dummy(2, make), SB3VecEnv(_dummy(2, make))
    direct.seed(0)
    direct.reset()
    env.reset(seed=0)
    ends = 0
    for _ in range(8):
        actions = np.array([1, 0])  # the two envs take different paths
        _, _, term, trunc, info = env.step(actions)
        _, _, d_done, d_infos = direct.step(actions)
        for i in range(2):
            expected = d_infos[i].get("is_success") if d_done[i] else None
            assert episode_success(info, i) == expected
            ends += int(d_done[i])
        np.testing.assert_array_equal(term, d_done)
    assert ends == 4  # two 4-step episodes in each env


def test_monitor_episode_stats() -> None:
    env = SB3VecEnv(DummyVecEnv([lambda: Monitor(make_cartpole())] * 2))
    env.reset(seed=1)
    returns, lengths, ends = np.zeros(2), np.zeros(2, dtype=int), 0
    for t in range(40):
        _, rew, term, trunc, info = env.step(_actions(t, 2))
        returns += rew
        lengths += 1
        done = term | trunc
        assert ("episode" in info) == bool(done.any())
        if done.any():
            np.testing.assert_array_equal(info["_episode"], done)
            np.testing.assert_allclose(info["episode"]["r"], np.where(done, returns, 0.0))
            np.testing.assert_array_equal(info["episode"]["l"], np.where(done, lengths, 0))
            assert "episode" not in info["final_info"]
            ends += int(done.sum())
        returns[done], lengths[done] = 0.0, 0
    assert ends >= 4
    plain = SB3VecEnv(_dummy(2))
    plain.reset(seed=1)
    assert not any("episode" in plain.step(np.zeros(2, dtype=np.int64))[4] for _ in range(15))


def test_vec_normalize_gives_normalised_obs_rewards_and_final_obs() -> None:
    """VecNormalize (frozen statistics here, so the expectation is exact): everything the learner sees is
    normalised, final_obs too, while Monitor's episode return stays the raw one."""
    raw = DummyVecEnv([lambda: Monitor(make_cartpole())] * 2)
    norm = VecNormalize(DummyVecEnv([lambda: Monitor(make_cartpole())] * 2), gamma=0.9)
    norm.training = False
    norm.obs_rms.mean, norm.obs_rms.var = np.full(4, 0.5), np.full(4, 4.0)
    norm.ret_rms.var = np.array(9.0)
    env = SB3VecEnv(norm)
    raw.seed(5)
    raw_obs = raw.reset()
    np.testing.assert_allclose(env.reset(seed=5)[0], norm.normalize_obs(raw_obs), rtol=1e-6)
    assert not np.allclose(norm.normalize_obs(raw_obs), raw_obs)
    ended = False
    for t in range(20):
        obs, rew, term, trunc, info = env.step(_actions(t, 2))
        r_obs, r_rew, r_done, r_infos = raw.step(_actions(t, 2))
        np.testing.assert_allclose(obs, norm.normalize_obs(r_obs), rtol=1e-6)
        np.testing.assert_allclose(rew, r_rew / np.sqrt(9.0 + norm.epsilon), rtol=1e-6)
        for i in np.nonzero(r_done)[0]:
            expected = norm.normalize_obs(r_infos[i]["terminal_observation"])
            np.testing.assert_allclose(info["final_obs"][i], expected, rtol=1e-6)
            assert info["episode"]["r"][i] == r_infos[i]["episode"]["r"] == r_infos[i]["episode"]["l"]
            ended = True
    assert ended


def test_subproc_vec_env() -> None:
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    env = SB3VecEnv(SubprocVecEnv([make_cartpole] * 2, start_method=method))
    try:
        _assert_same(_rollout(env, 20, seed=3), _rollout(SB3VecEnv(_dummy(2)), 20, seed=3))
    finally:
        env.close()
    assert env.venv.closed


def test_is_sb3_vec_env_and_as_vector_env() -> None:
    venv = _dummy(1)
    gym_vec = gym.vector.SyncVectorEnv([make_cartpole], autoreset_mode=SAME_STEP)

    class DuckVecEnv:
        num_envs = 1

        def reset(self) -> None: ...
        def step_async(self, actions: Any) -> None: ...
        def step_wait(self) -> None: ...

    assert is_sb3_vec_env(venv) and is_sb3_vec_env(VecNormalize(venv)) and is_sb3_vec_env(DuckVecEnv())
    for other in (gym_vec, SB3VecEnv(venv), make_cartpole(), "CartPole-v1", object(), None):
        assert not is_sb3_vec_env(other)
    adapted = as_vector_env(venv)
    assert isinstance(adapted, SB3VecEnv) and adapted.venv is venv
    assert as_vector_env(gym_vec) is gym_vec and as_vector_env(adapted) is adapted
    with pytest.raises(ValueError, match="stable-baselines3 VecEnv, got str"):
        as_vector_env("CartPole-v1")
    with pytest.raises(ValueError, match="needs a stable-baselines3 VecEnv, got SyncVectorEnv"):
        SB3VecEnv(gym_vec)


def test_is_sb3_vec_env_does_not_import_stable_baselines3() -> None:
    code = (
        "import sys, gymnasium as gym\n"
        "from bongrl.envs.sb3_vec import is_sb3_vec_env\n"
        "assert not is_sb3_vec_env(gym.make('CartPole-v1'))\n"
        "assert 'stable_baselines3' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_bong_dqn_learns_on_an_sb3_vec_env() -> None:
    """BongDQN's loop runs unchanged on the adapter and reads is_success from it."""
    from bongrl.agents.bong_dqn import BongDQN

    make = partial(gym.make, "bongrl/DeepSea-v0", size=4)
    episodes: list[dict] = []
    agent = BongDQN(SB3VecEnv(_dummy(2, make)), seed=0)
    agent.learn(40, callback=lambda _agent, event: episodes.append(event) if event["kind"] == "episode" else None)
    assert agent.num_timesteps == 40 and len(episodes) == 10  # 4-step episodes in 2 envs
    assert all(e["length"] == 4 and isinstance(e["is_success"], bool) for e in episodes)
