"""Observation spaces for BongDQN: encoders (bongrl.agents.spaces), Q-network choice (bongrl.agents.networks),
and the agent on Discrete, Dict and image observations (tiny budgets; the CPUs are shared)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.preprocessing import preprocess_obs

from bongrl.agents import BongDQN
from bongrl.agents.networks import ImagePreprocess, build_q_network
from bongrl.agents.spaces import ObsEncoder

SMALL = {"hidden": [16], "target_update": 10, "learning_starts": 20, "replay_every": 2, "replay_batch": 8,
         "buffer_size": 300}


# ---------------------------------------------------------------------------------------------- test envs
class TinyImageEnv(gym.Env):
    """A lit pixel on a size×size uint8 frame (all channels); reward 1 when the action names the pixel's column
    third. Channels last by default, as MinAtar's frames are."""

    def __init__(self, size: int = 10, channels: int = 4, channels_last: bool = True, horizon: int = 15) -> None:
        shape = (size, size, channels) if channels_last else (channels, size, size)
        self.observation_space = spaces.Box(0, 255, shape, np.uint8)
        self.action_space = spaces.Discrete(3)
        self.size, self.channels_last, self.horizon = size, channels_last, horizon

    def _obs(self) -> np.ndarray:
        img = np.zeros(self.observation_space.shape, np.uint8)
        r, c = divmod(self.pos, self.size)
        if self.channels_last:
            img[r, c, :] = 255
        else:
            img[:, r, c] = 255
        return img

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t, self.pos = 0, int(self.np_random.integers(self.size * self.size))
        return self._obs(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        reward = float(int(action) == (self.pos % self.size) * 3 // self.size)
        self.t += 1
        self.pos = int(self.np_random.integers(self.size * self.size))
        return self._obs(), reward, False, self.t >= self.horizon, {}


def _dict_obs(p: int) -> dict[str, object]:
    return {"pos": p, "vel": np.array([p / 4, -p / 4], np.float32), "flags": np.array([p % 2, 1, 0], np.int8)}


class DictEnv(gym.Env):
    """A 5-cell corridor observed as a Dict (Discrete position, Box velocity, MultiBinary flags); reward at the
    right end."""

    observation_space = spaces.Dict({
        "pos": spaces.Discrete(5),
        "vel": spaces.Box(-1.0, 1.0, (2,), np.float32),
        "flags": spaces.MultiBinary(3),
    })
    action_space = spaces.Discrete(2)

    def _obs(self) -> dict[str, object]:
        return _dict_obs(self.p)

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        self.t, self.p = 0, int(self.np_random.integers(3))
        return self._obs(), {}

    def step(self, action: int) -> tuple[dict, float, bool, bool, dict]:
        self.p = int(np.clip(self.p + (1 if action else -1), 0, 4))
        self.t += 1
        return self._obs(), float(self.p == 4), self.p == 4, self.t >= 10, {}


def _one_line_error(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert msg and "\n" not in msg
    return msg


# ---------------------------------------------------------------------------------------------- encoders
def test_discrete_one_hot_matches_sb3_and_honours_start() -> None:
    space = spaces.Discrete(5)
    enc = ObsEncoder(space)
    x = np.array([0, 3, 4])
    assert enc.shape == (5,) and enc.raw_shape == ()
    torch.testing.assert_close(enc.encode(x), preprocess_obs(torch.as_tensor(x), space))
    assert enc.encode(2).shape == (1, 5) and enc.is_single(2) and not enc.is_single(x)
    shifted = ObsEncoder(spaces.Discrete(3, start=-1))
    torch.testing.assert_close(shifted.encode([-1, 1]), torch.tensor([[1.0, 0, 0], [0, 0, 1]]))
    for bad in (5, -1, 1.5, [[1, 2]]):
        with pytest.raises(ValueError) as exc:
            enc.encode(bad)
        _one_line_error(exc)


def test_multidiscrete_and_multibinary_match_sb3() -> None:
    md = spaces.MultiDiscrete([3, 2, 4])
    x = np.array([[0, 1, 3], [2, 0, 0]])
    torch.testing.assert_close(ObsEncoder(md).encode(x), preprocess_obs(torch.as_tensor(x), md))
    assert ObsEncoder(md).shape == (9,)
    with pytest.raises(ValueError, match="outside"):
        ObsEncoder(md).encode([0, 2, 0])
    mb = spaces.MultiBinary(4)
    b = np.array([[1, 0, 1, 1]], np.int8)
    torch.testing.assert_close(ObsEncoder(mb).encode(b), preprocess_obs(torch.as_tensor(b), mb))
    with pytest.raises(ValueError, match="0s and 1s"):
        ObsEncoder(mb).encode([0, 2, 0, 1])


def test_box_passes_through_and_dict_tuple_concatenate_in_key_order() -> None:
    box = ObsEncoder(spaces.Box(-np.inf, np.inf, (3,), np.float32))
    v = np.array([[0.5, -2.0, 7.0]], np.float32)
    assert box.kind == "box" and torch.equal(box.encode(v), torch.as_tensor(v))
    space = spaces.Dict({"z": spaces.Discrete(3), "a": spaces.Box(-1, 1, (2,), np.float32)})  # sorted: a, z
    enc = ObsEncoder(space)
    assert [k for k, _ in enc.children] == ["a", "z"] and enc.shape == (5,)
    one = {"z": 2, "a": np.array([0.1, -0.2], np.float32)}
    want = torch.tensor([[0.1, -0.2, 0.0, 0.0, 1.0]])
    torch.testing.assert_close(enc.encode(one), want)
    assert enc.is_single(one)
    batched = {"z": np.array([2, 0]), "a": np.array([[0.1, -0.2], [0.3, 0.4]], np.float32)}
    assert enc.encode(batched).shape == (2, 5) and not enc.is_single(batched)
    torch.testing.assert_close(enc.encode([one, one]), want.repeat(2, 1))
    for bad, match in (({"z": 1}, "missing"), ({**one, "q": 0}, "unknown"),
                       ({"z": np.array([1, 2]), "a": np.zeros(2, np.float32)}, "disagree"),
                       ({"z": 3, "a": np.zeros(2, np.float32)}, r"observation\['z'\]")):
        with pytest.raises(ValueError, match=match) as exc:
            enc.encode(bad)
        _one_line_error(exc)
    tup = ObsEncoder(spaces.Tuple((spaces.Discrete(2), spaces.MultiBinary(2))))
    torch.testing.assert_close(tup.encode((1, np.array([0, 1]))), torch.tensor([[0.0, 1, 0, 1]]))
    with pytest.raises(ValueError, match="tuple of 2"):
        tup.encode((1,))
    with pytest.raises(ValueError, match="unsupported observation space"):
        ObsEncoder(spaces.Text(5))


def test_image_channel_order_and_scaling() -> None:
    rng = np.random.default_rng(0)
    hwc = rng.integers(0, 256, size=(2, 10, 10, 4), dtype=np.uint8)
    last = ObsEncoder(spaces.Box(0, 255, (10, 10, 4), np.uint8))
    first = ObsEncoder(spaces.Box(0, 255, (4, 10, 10), np.uint8))
    assert last.is_image and last.channels_last and first.is_image and not first.channels_last
    assert last.shape == first.shape == (4, 10, 10)
    want = torch.as_tensor(hwc.transpose(0, 3, 1, 2).astype(np.float32) / 255.0)
    torch.testing.assert_close(last.encode(hwc), want)
    torch.testing.assert_close(first.encode(hwc.transpose(0, 3, 1, 2)), want)
    # the network's preprocessing does the same on the raw uint8 input (what replay stores)
    raw = last.network_input(hwc)
    assert raw.dtype == torch.uint8 and raw.shape == (2, 10, 10, 4)
    torch.testing.assert_close(ImagePreprocess(channels_last=True)(raw), want)
    # MinAtar's binary frames (a 3-D bool Box) are images with scale 1
    binary = ObsEncoder(spaces.Box(0, 1, (10, 10, 4), bool))
    bits = rng.integers(0, 2, size=(2, 10, 10, 4)).astype(bool)
    assert binary.is_image and binary.channels_last and binary.pixel_max == 1
    torch.testing.assert_close(binary.encode(bits), torch.as_tensor(bits.transpose(0, 3, 1, 2).astype(np.float32)))
    assert binary.network_input(bits).dtype == torch.uint8
    torch.testing.assert_close(ImagePreprocess(True, 1)(binary.network_input(bits)), binary.encode(bits))
    # a float Box of the same shape is not an image (SB3's is_image_space): passed through
    assert ObsEncoder(spaces.Box(0, 1, (10, 10, 4), np.float32)).kind == "box"
    for bad, match in ((np.full((10, 10, 4), 300), r"\[0, 255\]"), (np.zeros((9, 10, 4), np.uint8), "shape")):
        with pytest.raises(ValueError, match=match) as exc:
            last.encode(bad)
        _one_line_error(exc)


def test_build_q_network_picks_mlp_minatar_or_nature_cnn() -> None:
    mlp = build_q_network(ObsEncoder(spaces.Discrete(7)), [16], 3)
    assert [n for n, _ in mlp.named_children()] == ["fc0", "act0", "head"] and mlp.head.in_features == 16
    small = build_q_network(ObsEncoder(spaces.Box(0, 255, (10, 10, 4), np.uint8)), [64], 5)
    assert small.conv0.kernel_size == (3, 3) and small.conv0.out_channels == 16 and small.conv0.stride == (1, 1)
    assert small.fc.out_features == 128 and not hasattr(small, "conv1") and small.head.out_features == 5
    nature = build_q_network(ObsEncoder(spaces.Box(0, 255, (84, 84, 4), np.uint8)), [64], 6)
    assert [c.kernel_size for c in (nature.conv0, nature.conv1, nature.conv2)] == [(8, 8), (4, 4), (3, 3)]
    assert [c.stride for c in (nature.conv0, nature.conv1, nature.conv2)] == [(4, 4), (2, 2), (1, 1)]
    assert nature.fc.in_features == 64 * 7 * 7 and nature.fc.out_features == 512
    x = torch.zeros(2, 84, 84, 4, dtype=torch.uint8)
    assert nature(x).shape == (2, 6) and list(nature.named_children())[-1][0] == "head"
    assert isinstance(build_q_network(ObsEncoder(spaces.Box(0, 255, (36, 40, 3), np.uint8)), [8], 2).conv2,
                      torch.nn.Conv2d)


# ---------------------------------------------------------------------------------------------- the agent
def test_bongdqn_learns_on_frozenlake_discrete_observations() -> None:
    env = gym.make("FrozenLake-v1", map_name="8x8", is_slippery=False)
    agent = BongDQN(env, posterior="diag", seed=0, device="cpu", **SMALL)
    assert agent.obs_shape == () and agent.est._fast is not None  # one-hot MLP: the compiled fast path
    assert agent.est.num_params == 64 * 16 + 16 + 16 * 4 + 4 and not agent.train_body
    before = agent.est.mean.clone()
    agent.learn(300)
    assert not torch.equal(before, agent.est.mean)
    assert agent._replay["obs"].shape == (300, 64) and agent._replay["obs"].dtype == torch.float32
    stored = agent._replay["obs"][: agent._replay_size()]
    assert torch.equal(stored.sum(1), torch.ones(len(stored)))  # one-hots
    action, _ = agent.predict(0, deterministic=True)
    assert np.ndim(action) == 0 and 0 <= int(action) < 4
    assert agent.predict(np.array([0, 5, 63]), deterministic=True)[0].shape == (3,)
    with pytest.raises(ValueError) as exc:
        agent.predict(64)
    assert "[0, 64)" in _one_line_error(exc)


def test_bongdqn_dict_observations_learn_save_load(tmp_path) -> None:
    agent = BongDQN(DictEnv(), posterior="diag", seed=1, device="cpu", **SMALL)
    assert agent.obs_shape == (10,)
    agent.learn(200)
    assert agent.num_episodes > 0 and agent._replay["obs"].shape == (300, 10)
    path = agent.save(tmp_path / "dict.safetensors", include_replay=True)
    loaded = BongDQN.load(path, env=DictEnv(), device="cpu")
    obs = [_dict_obs(p) for p in range(5)]  # one observation per cell, as a list of dicts
    q1 = agent.q_values(agent._obs_tensor(obs, agent.obs_shape))
    assert torch.equal(q1, loaded.q_values(loaded._obs_tensor(obs, loaded.obs_shape)))
    assert torch.equal(agent._replay["obs"], loaded._replay["obs"])
    assert np.array_equal(agent._obs, loaded._obs)  # exact resume: the env replayed to the same observation
    acts, _ = loaded.predict(obs, deterministic=True)
    assert acts.shape == (5,)
    loaded.learn(20)
    with pytest.raises(ValueError, match="missing") as exc:
        agent.predict({"pos": 1})
    _one_line_error(exc)


def test_bongdqn_image_observations_train_the_body_and_round_trip(tmp_path) -> None:
    agent = BongDQN(TinyImageEnv(), posterior="diag", seed=0, device="cpu", **SMALL)
    assert agent.est.flat.names == ["head.weight", "head.bias"] and agent.train_body  # posterior_params="auto"
    body = {n: p.detach().clone() for n, p in agent.est.model.named_parameters() if not n.startswith("head.")}
    head0 = agent.est.mean.clone()
    agent.learn(120)
    assert agent._replay["obs"].dtype == torch.uint8 and agent._replay["obs"].shape == (300, 10, 10, 4)
    params = dict(agent.est.model.named_parameters())
    assert all(not torch.equal(params[n], v) for n, v in body.items())  # every body tensor was trained
    assert not torch.equal(head0, agent.est.mean)  # and the head posterior conditioned
    # est._call reads the live body: Q at the mean equals the module with the mean head written in
    frames = np.stack([TinyImageEnv().reset(seed=s)[0] for s in range(6)])
    x = agent._obs_tensor(frames, agent.obs_shape)
    module = BongDQN(TinyImageEnv(), posterior="diag", seed=0, device="cpu", **SMALL).est.model
    module.load_state_dict(agent.est.model.state_dict())
    agent.est.flat.write(module, agent.est.mean)
    with torch.no_grad():
        torch.testing.assert_close(agent.q_values(x), module(x))
    path = agent.save(tmp_path / "img.safetensors", include_replay=True)
    loaded = BongDQN.load(path, env=TinyImageEnv(), device="cpu")
    assert torch.equal(agent.q_values(x), loaded.q_values(x))
    assert loaded._replay["obs"].dtype == torch.uint8 and torch.equal(agent._replay["obs"], loaded._replay["obs"])
    for a, b in zip(agent._body_opt.state_dict()["state"].values(), loaded._body_opt.state_dict()["state"].values()):
        assert all(torch.equal(a[k], b[k]) for k in a)
    # both continue identically (body Adam state, replay and RNGs restored)
    agent.learn(10)
    loaded.learn(10)
    assert torch.equal(agent.q_values(x), loaded.q_values(x))
    with pytest.raises(ValueError, match="shape") as exc:
        agent.predict(np.zeros((10, 10, 3), np.uint8))
    _one_line_error(exc)


def test_bongdqn_nature_cnn_on_84x84_frames() -> None:
    env = TinyImageEnv(size=84, channels=4, horizon=5)
    agent = BongDQN(env, posterior="diag", seed=0, device="cpu", **{**SMALL, "learning_starts": 4,
                                                                   "replay_every": 2, "replay_batch": 4,
                                                                   "buffer_size": 16})
    assert agent.est.model.fc.out_features == 512 and agent.est.num_params == 512 * 3 + 3
    conv = agent.est.model.conv0.weight.detach().clone()
    agent.learn(8)
    assert not torch.equal(conv, agent.est.model.conv0.weight) and agent._replay["obs"].dtype == torch.uint8


def test_posterior_params_and_train_body_config() -> None:
    cart = BongDQN("CartPole-v1", posterior="diag", device="cpu", hidden=[8])
    assert cart.est.flat.names == ["fc0.weight", "fc0.bias", "head.weight", "head.bias"] and not cart.train_body
    head = BongDQN("CartPole-v1", posterior="diag", device="cpu", hidden=[8], posterior_params="head")
    assert not head.train_body and head._body_opt is None  # vector obs: a random-feature body, as before
    trained = BongDQN("CartPole-v1", posterior="diag", device="cpu", hidden=[8], posterior_params="head",
                      train_body="on", replay_every=1)
    assert trained.train_body and len(trained._body_params) == 2
    for kwargs, match in (({"train_body": "on"}, "posterior on the head only"),
                          ({"train_body": "yes"}, "train_body must be"),
                          ({"posterior_params": "body"}, "posterior_params must be"),
                          ({"body_lr": 0.0}, "body_lr"),
                          ({"posterior_params": "head", "train_body": "on", "replay_every": 0}, "replay_every")):
        with pytest.raises(ValueError, match=match) as exc:
            BongDQN("CartPole-v1", device="cpu", hidden=[8], **kwargs)
        _one_line_error(exc)


def test_run_spec_space_check_accepts_encodable_spaces() -> None:
    from bongrl.runner import RunSpec

    RunSpec.resolve("FrozenLake-v1")  # Discrete observations: accepted now (the spec checks the env's spaces)
    RunSpec.resolve("CartPole-v1")
