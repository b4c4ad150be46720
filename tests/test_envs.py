"""Tests for bongrl.envs: gymnasium checker, Deep Sea vs bsuite, bandit oracles, make_env/evaluate."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import bongrl.envs
from bongrl.envs import ENV_IDS
from bongrl.envs.bernoulli_bandit import BernoulliBandit
from bongrl.envs.classification_bandit import ClassificationBandit
from bongrl.envs.deep_sea import DeepSea
from bongrl.envs.wheel_bandit import WheelBandit, quadrant_arm
from bongrl.envs.wrappers import evaluate, make_env

ENV_FACTORIES = {
    "deep_sea": lambda: DeepSea(size=6),
    "deep_sea_stochastic": lambda: DeepSea(size=6, deterministic=False),
    "wheel": lambda: WheelBandit(),
    "classification": lambda: ClassificationBandit("wine"),
    "classification_arrays": lambda: ClassificationBandit(X=np.eye(4), y=np.array(["a", "b", "a", "c"])),
    "bernoulli": lambda: BernoulliBandit(),
}


# ---------------------------------------------------------------- registration and checker
@pytest.mark.parametrize("name", list(ENV_FACTORIES))
def test_check_env(name: str) -> None:
    check_env(ENV_FACTORIES[name](), skip_render_check=True)


@pytest.mark.parametrize("env_id", list(ENV_IDS))
def test_registered_and_gym_make(env_id: str) -> None:
    assert env_id in gym.registry
    kwargs = {"dataset": "wine"} if "Classification" in env_id else {}
    env = gym.make(env_id, **kwargs)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    _, _, terminated, truncated, _ = env.step(env.action_space.sample())
    assert isinstance(terminated, bool) and truncated is False
    check_env(env.unwrapped, skip_render_check=True)


def test_reimport_does_not_reregister() -> None:
    import importlib

    spec = gym.registry["bongrl/DeepSea-v0"]
    importlib.reload(bongrl.envs)
    bongrl.envs.register_envs()
    assert gym.registry["bongrl/DeepSea-v0"] is spec
    assert gym.registry["bongrl/DeepSea-v0"].entry_point == "bongrl.envs.deep_sea:DeepSea"


def test_import_is_cheap_and_module_prefix_make() -> None:
    code = (
        "import sys, gymnasium as gym\n"
        "import bongrl.envs\n"
        "assert 'sklearn' not in sys.modules and 'bsuite' not in sys.modules\n"
        "assert 'bongrl.envs.deep_sea' not in sys.modules\n"
        "env = gym.make('bongrl/DeepSea-v0', size=4)\n"
        "assert env.unwrapped.size == 4\n"
        "assert 'sklearn' not in sys.modules\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    env = gym.make("bongrl.envs:bongrl/DeepSea-v0", size=3)
    assert env.observation_space.shape == (3, 3)


def test_lazy_attributes() -> None:
    assert bongrl.envs.DeepSea is DeepSea
    assert bongrl.envs.make_env is make_env
    with pytest.raises(AttributeError):
        bongrl.envs.NotAThing  # noqa: B018


# ---------------------------------------------------------------- Deep Sea vs bsuite
def _policy_action(rng: np.random.Generator, mapping: np.ndarray, row: int, col: int, p_right: float) -> int:
    right = int(mapping[row, col])
    return right if rng.random() < p_right else 1 - right


@pytest.mark.parametrize("size,mapping_seed", [(10, 42), (5, 0), (1, 42)])
def test_deep_sea_matches_bsuite(size: int, mapping_seed: int) -> None:
    from bsuite.environments.deep_sea import DeepSea as BsDeepSea

    ours = DeepSea(size=size, mapping_seed=mapping_seed)
    ref = BsDeepSea(size, mapping_seed=mapping_seed)
    np.testing.assert_array_equal(ours.action_mapping, ref._action_mapping)
    rng = np.random.default_rng(123)
    n_good = 0
    for episode in range(300):
        p_right = [0.5, 0.9, 1.0][episode % 3]  # mix random and near-optimal behaviour
        obs, info = ours.reset(seed=episode)
        ts = ref.reset()
        np.testing.assert_array_equal(obs, ts.observation)
        assert obs.dtype == np.float32 and obs.shape == (size, size)
        row = col = 0
        for t in range(size):
            action = _policy_action(rng, ours.action_mapping, row, col, p_right)
            obs, reward, terminated, truncated, info = ours.step(action)
            ts = ref.step(action)
            np.testing.assert_array_equal(obs, ts.observation)
            assert reward == pytest.approx(ts.reward, abs=1e-12)
            assert terminated == ts.last() == (t == size - 1)
            assert truncated is False
            assert info["bad_episode"] == ref._bad_episode
            assert info["total_bad_episodes"] == ref.bsuite_info()["total_bad_episodes"]
            assert info["denoised_return"] == ref.bsuite_info()["denoised_return"]
            if not terminated:
                row, col = map(int, np.argwhere(obs == 1)[0])
        n_good += not info["bad_episode"]
    assert ours.bsuite_info() == ref.bsuite_info()
    assert 0 < n_good < 300


def test_bsuite_adapter_matches_ours() -> None:
    from bongrl.envs.bsuite_adapter import BsuiteDeepSea

    ours, theirs = DeepSea(size=8, mapping_seed=42), BsuiteDeepSea(size=8, mapping_seed=42)
    assert ours.observation_space == theirs.observation_space and ours.action_space == theirs.action_space
    check_env(BsuiteDeepSea(size=4), skip_render_check=True)
    rng = np.random.default_rng(0)
    for episode in range(60):
        o1, i1 = ours.reset(seed=episode)
        o2, i2 = theirs.reset(seed=episode)
        np.testing.assert_array_equal(o1, o2)
        assert i1 == i2
        done = False
        while not done:
            cell = np.unravel_index(o1.argmax(), o1.shape)
            a = int(rng.integers(2)) if episode % 2 else int(ours.action_mapping[cell])
            o1, r1, t1, tr1, i1 = ours.step(a)
            o2, r2, t2, tr2, i2 = theirs.step(a)
            np.testing.assert_array_equal(o1, o2)
            assert r1 == pytest.approx(r2, abs=1e-12) and (t1, tr1, i1) == (t2, tr2, i2)
            done = t1
    with pytest.raises(RuntimeError):
        theirs.step(0)


def test_deep_sea_bad_episode_semantics() -> None:
    env = DeepSea(size=4, mapping_seed=42)
    right = lambda r, c: int(env.action_mapping[r, c])  # noqa: E731

    # Optimal path: all rights, never bad; treasure +1 minus N move costs = 0.99.
    env.reset()
    total = 0.0
    for r in range(4):
        obs, reward, terminated, _, info = env.step(right(r, r))
        total += reward
        assert info["bad_episode"] is False
    assert terminated and total == pytest.approx(env.optimal_return) == pytest.approx(0.99)
    assert info["total_bad_episodes"] == 0 and info["denoised_return"] == 1.0 and info["is_success"] is True
    assert not obs.any()  # terminal observation is all zeros, as in bsuite

    # Left at the start (row 0 == column 0) makes the episode bad immediately; counted only when it ends.
    env.reset()
    _, reward, _, _, info = env.step(1 - right(0, 0))
    assert reward == 0.0 and info["bad_episode"] is True and info["total_bad_episodes"] == 0
    for _ in range(1, 4):
        _, _, terminated, _, info = env.step(0)
    assert terminated and info["bad_episode"] is True and info["total_bad_episodes"] == 1
    assert info["is_success"] is False  # reported on the final step only (the SB3 convention)

    # Going left off the diagonal (after a left) does not add anything new; the flag resets with reset().
    _, info = env.reset(seed=123)
    assert info == {"bad_episode": False, "total_bad_episodes": 1, "denoised_return": 1.0}
    env.step(right(0, 0))  # now at (1, 1): on the diagonal
    env.step(right(1, 1))  # (2, 2)
    _, _, _, _, info = env.step(1 - right(2, 2))  # left from the diagonal: bad
    assert info["bad_episode"] is True
    env.step(0)
    assert env.total_bad_episodes == 2
    with pytest.raises(RuntimeError):
        env.step(0)
    with pytest.raises(ValueError):
        env.reset()
        env.step(2)


# ---------------------------------------------------------------- wheel bandit
def test_wheel_quadrants_and_regret() -> None:
    env = WheelBandit(delta=0.5)
    cases = {
        (0.6, 0.6): 0,
        (0.6, -0.6): 1,
        (0.6, 0.0): 1,
        (-0.6, 0.6): 2,
        (0.0, 0.6): 2,
        (-0.6, -0.6): 3,
        (0.0, -0.7): 3,
    }
    for ctx, arm in cases.items():
        x = np.array(ctx, dtype=np.float32)
        assert quadrant_arm(x) == arm
        assert env.optimal_arm(x) == arm
        means = env.expected_rewards(x)
        assert means[arm] == 50.0 and np.delete(means, arm).tolist() == [1.0, 1.0, 1.0, 1.2]
    inner = np.array([0.1, -0.2], dtype=np.float32)
    assert env.optimal_arm(inner) == 4 and env.expected_rewards(inner).tolist() == [1.0, 1.0, 1.0, 1.0, 1.2]

    env = WheelBandit()  # delta = 0.95
    outer_seen = 0
    for seed in range(300):
        x, _ = env.reset(seed=seed)
        assert x.shape == (2,) and x.dtype == np.float32 and np.linalg.norm(x) <= 1.0
        arm = seed % 5
        obs, reward, terminated, truncated, info = env.step(arm)
        np.testing.assert_array_equal(obs, x)
        assert terminated is True and truncated is False
        outer = np.linalg.norm(x.astype(np.float64)) >= 0.95
        outer_seen += outer
        best = quadrant_arm(x) if outer else 4
        assert info["optimal_arm"] == best
        means = info["expected_rewards"]
        assert info["regret"] == pytest.approx(means[best] - means[arm]) and info["regret"] >= 0
        assert info["expected_reward"] == means[arm]
        assert abs(reward - means[arm]) < 0.3  # std 0.05 (or 0.01): far beyond 5 sigma
        if arm == best:
            assert info["regret"] == 0.0
        # The optimal arm has zero regret.
        env.reset(seed=seed)
        assert env.step(best)[4]["regret"] == 0.0
    assert 5 < outer_seen < 60  # P(‖x‖ ≥ 0.95) = 1 − 0.95² ≈ 0.0975


def test_wheel_context_uniform_in_disk_and_seeded() -> None:
    env = WheelBandit()
    xs = np.array([env.reset(seed=0 if i == 0 else None)[0] for i in range(4000)])
    r2 = (xs.astype(np.float64) ** 2).sum(axis=1)
    assert r2.max() <= 1.0
    assert r2.mean() == pytest.approx(0.5, abs=0.03)  # E‖x‖² = 1/2 for the uniform disk
    assert np.abs(xs.mean(axis=0)).max() < 0.05
    a = [WheelBandit().reset(seed=7)[0] for _ in range(2)]
    np.testing.assert_array_equal(a[0], a[1])
    with pytest.raises(ValueError):
        WheelBandit(delta=1.5)


# ---------------------------------------------------------------- classification bandit
@pytest.mark.parametrize(
    "name,n_classes,n_features", [("digits", 10, 64), ("wine", 3, 13), ("breast_cancer", 2, 30)]
)
def test_classification_datasets(name: str, n_classes: int, n_features: int) -> None:
    env = ClassificationBandit(name)
    assert env.action_space.n == n_classes and env.observation_space.shape == (n_features,)
    feats = env.features.astype(np.float64)
    np.testing.assert_allclose(feats.mean(axis=0), 0.0, atol=1e-5)
    std = feats.std(axis=0)
    assert np.all((np.abs(std - 1) < 1e-4) | (std == 0))  # digits has constant (all-zero) pixels
    if name == "digits":
        assert np.any(std == 0) and np.all(feats[:, std == 0] == 0)
    for seed in range(50):
        obs, _ = env.reset(seed=seed)
        arm = seed % n_classes
        obs2, reward, terminated, _, info = env.step(arm)
        np.testing.assert_array_equal(obs, obs2)
        rows = np.flatnonzero((env.features == obs).all(axis=1))
        assert info["label"] in env.labels[rows]
        assert reward == float(arm == info["label"]) == info["expected_reward"]
        assert info["optimal_arm"] == info["label"] and info["regret"] == 1.0 - reward
        assert terminated is True


def test_classification_arrays_and_errors() -> None:
    X = np.array([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0], [4.0, 5.0]])
    y = np.array([20, 10, 20, 30])
    env = ClassificationBandit(X=X, y=y)
    assert env.classes.tolist() == [10, 20, 30] and env.labels.tolist() == [1, 0, 1, 2]
    assert np.all(env.features[:, 1] == 0)  # constant column left at 0
    obs, _ = env.reset(seed=0)
    row = int(np.flatnonzero((env.features == obs).all(axis=1))[0])
    assert env.step(env.labels[row])[1] == 1.0

    with pytest.raises(ValueError, match="breast_cancer, digits, wine"):
        ClassificationBandit("mnist")
    with pytest.raises(ValueError, match="not both"):
        ClassificationBandit("wine", X=X, y=y)
    with pytest.raises(ValueError, match="together"):
        ClassificationBandit(X=X)
    with pytest.raises(ValueError, match="2-d"):
        ClassificationBandit(X=np.ones(4), y=y)
    with pytest.raises(ValueError, match="one label per row"):
        ClassificationBandit(X=X, y=y[:3])
    with pytest.raises(ValueError, match="at least 2 classes"):
        ClassificationBandit(X=X, y=np.zeros(4))
    with pytest.raises(ValueError, match="NaN"):
        ClassificationBandit(X=np.full((4, 2), np.nan), y=y)


# ---------------------------------------------------------------- Bernoulli bandit
def test_bernoulli_regret_and_rewards() -> None:
    env = BernoulliBandit(probs=[0.2, 0.8, 0.5])
    assert env.observation_space.shape == (0,)
    counts = np.zeros(3)
    env.reset(seed=0)
    for t in range(3000):
        arm = t % 3
        obs, reward, terminated, _, info = env.step(arm)
        assert obs.shape == (0,) and terminated is True and reward in (0.0, 1.0)
        assert info["optimal_arm"] == 1
        assert info["regret"] == pytest.approx([0.6, 0.0, 0.3][arm])
        assert info["expected_reward"] == [0.2, 0.8, 0.5][arm]
        counts[arm] += reward
        env.reset()
    np.testing.assert_allclose(counts / 1000, [0.2, 0.8, 0.5], atol=0.05)

    default = BernoulliBandit()
    assert default.probs.tolist() == [0.1, 0.2, 0.3, 0.4, 0.5] and default.optimal_arm == 4
    r1, r2 = BernoulliBandit(n_arms=7, probs_seed=3), BernoulliBandit(n_arms=7, probs_seed=3)
    assert r1.n_arms == 7 and np.array_equal(r1.probs, r2.probs)
    for bad in ({"probs": [0.5, 1.5]}, {"probs": []}, {"n_arms": 0}, {"probs": [0.1, 0.2], "n_arms": 3}):
        with pytest.raises(ValueError):
            BernoulliBandit(**bad)


# ---------------------------------------------------------------- make_env / evaluate
def test_make_env_deep_sea() -> None:
    env = make_env("bongrl/DeepSea-v0", seed=0, size=5)
    assert env.observation_space.shape == (5, 5) and env.unwrapped.size == 5
    obs, _ = env.reset()
    for _ in range(5):
        obs, _, terminated, truncated, info = env.step(0)
    assert terminated and "episode" in info and int(info["episode"]["l"]) == 5


class _Predictor:
    def __init__(self, n: int) -> None:
        self.rng = np.random.default_rng(0)
        self.n = n

    def predict(self, obs, deterministic=True):
        return (np.int64(0) if deterministic else self.rng.integers(self.n)), None


def test_evaluate_reproducible_and_policy_kinds() -> None:
    env = make_env("bongrl/WheelBandit-v0")

    def greedy_ring(obs_batch: np.ndarray, deterministic: bool) -> np.ndarray:
        return np.array([quadrant_arm(x) if np.linalg.norm(x) >= 0.95 else 4 for x in obs_batch])

    r1 = evaluate(greedy_ring, env, n_episodes=20, seed=5)
    r2 = evaluate(greedy_ring, env, n_episodes=20, seed=5)
    assert r1 == r2 and set(r1) == {"mean", "std", "returns", "lengths"}
    assert len(r1["returns"]) == 20 and r1["lengths"] == [1] * 20
    assert r1["mean"] == pytest.approx(np.mean(r1["returns"])) and r1["std"] == pytest.approx(
        np.std(r1["returns"])
    )
    assert evaluate(greedy_ring, env, n_episodes=20, seed=6) != r1

    ds = DeepSea(size=6)
    res = evaluate(_Predictor(2), ds, n_episodes=3, seed=0)
    assert res["lengths"] == [6, 6, 6]

    def optimal(obs_batch: np.ndarray, deterministic: bool) -> np.ndarray:
        cell = np.unravel_index(obs_batch[0].argmax(), obs_batch[0].shape)
        return np.array([ds.action_mapping[cell]])

    res = evaluate(optimal, ds, n_episodes=2, seed=0)
    assert res["returns"] == pytest.approx([0.99, 0.99])
    with pytest.raises(TypeError):
        evaluate(42, ds, n_episodes=1)  # type: ignore[arg-type]
