"""Reliability and security: safe checkpoints, complete agent state, bad input rejected without side effects,
an env emitting NaN, numerical health of every family, broken plugins, one-line CLI errors.

Exact resume across processes (SIGKILL / SIGINT) is in ``tests/test_resume.py``. Long variants are
``@pytest.mark.slow`` (run with ``-m slow``); the defaults use tiny budgets.
"""

from __future__ import annotations

import importlib
import json
import os
import pickle
import sys
import textwrap
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from bongrl import BONG, cli, registry, runs
from bongrl.agents import BongDQN, ThompsonBandit
from bongrl.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from bongrl.health import HealthError, HealthMonitor, chain, posterior_health

FAMILIES = registry.available("posterior")  # every registered family (built-ins and kfac)


# ================================================================================================ helpers
class _Payload:
    """Unpickling this creates the file ``path`` (``builtins.open(path, "w")``): a real code-execution payload."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):  # type: ignore[override]
        return (open, (self.path, "w"))


def _snapshot(agent) -> dict[str, torch.Tensor]:
    """Everything an update could touch: posterior tensors and both generators' states."""
    est = agent.est if hasattr(agent, "est") else agent
    snap = {f"state.{k}": v.clone() for k, v in est.state.items()}
    snap["est_rng"] = est.generator.get_state().clone()
    if hasattr(agent, "generator") and agent is not est:
        snap["agent_rng"] = agent.generator.get_state().clone()
    return snap


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _dqn(**kw) -> BongDQN:
    base = dict(hidden=[8], rank=4, target_update=20, replay_every=4, learning_starts=20, buffer_size=64,
                replay_batch=8)
    base.update(kw)
    posterior = base.pop("posterior", "dlr")
    exploration = base.pop("exploration", "thompson")
    return BongDQN("CartPole-v1", posterior=posterior, exploration=exploration, seed=1, device="cpu", **base)


# ================================================================================================ checkpoints
@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[BongDQN, Path]:
    agent = _dqn().learn(150)
    path = tmp_path_factory.mktemp("ckpt") / "agent.safetensors"
    agent.save(path, include_replay=True)
    return agent, path


def test_checkpoint_holds_everything_needed_to_continue(trained: tuple[BongDQN, Path]) -> None:
    agent, path = trained
    tensors, meta = load_checkpoint(path)
    for key in ("bong.posterior.mean", "bong.posterior.ups", "bong.posterior.W", "bong.prior_mean",
                "bong.rng_state", "target_theta", "agent_rng", "rule.theta", "rule.steps", "obs",
                "replay.obs", "replay.act", "replay.rew", "replay.next_obs", "replay.term"):
        assert key in tensors, key
    assert meta["num_timesteps"] == 150 and meta["num_episodes"] == agent.num_episodes
    assert meta["config"]["hidden"] == [8] and meta["seed"] == 1 and meta["replay_pos"] == agent._replay_pos
    loop = meta["loop"]
    (env_rec,) = loop["env"]  # the env's replay record: last reset (seed or np_random state) + actions since
    assert env_rec["seed"] is not None or env_rec["rng"]["bit_generator"] == "PCG64"
    assert len(env_rec["actions"]) == loop["ep_length"][0] == int(agent._ep_length[0])
    assert torch.equal(tensors["bong.rng_state"], agent.est.generator.get_state())
    assert torch.equal(tensors["agent_rng"], agent.generator.get_state())
    re = BongDQN.load(path, device="cpu")
    assert np.array_equal(re._obs, agent._obs) and re._ep_length.tolist() == agent._ep_length.tolist()
    assert _same(_snapshot(re), _snapshot(agent)) and torch.equal(re.target_theta, agent.target_theta)
    assert all(torch.equal(re._replay[k], agent._replay[k]) for k in agent._replay)


def test_atomic_write_keeps_the_old_file_on_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"x": torch.ones(3)}, {"v": 1})

    def boom(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"x": torch.zeros(3)}, {"v": 2})
    monkeypatch.undo()
    tensors, meta = load_checkpoint(path)
    assert meta == {"v": 1} and torch.equal(tensors["x"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]  # no temporary file left behind


def _loaders(path: Path) -> list:
    return [
        lambda: load_checkpoint(path),
        lambda: BongDQN.load(path, device="cpu"),
        lambda: ThompsonBandit.load(path, device="cpu"),
    ]


def test_pickle_payload_is_refused_and_never_executed(tmp_path: Path) -> None:
    # the payload is real: plain unpickling does create its file ...
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Payload(probe)))
    assert probe.exists()
    marker = tmp_path / "pwned"
    raw = tmp_path / "evil.safetensors"
    raw.write_bytes(pickle.dumps({"weights": _Payload(marker)}))
    pt = tmp_path / "evil.pt"
    torch.save({"state": _Payload(marker)}, pt)
    pt_probe = tmp_path / "pt_probe"
    torch.save({"state": _Payload(pt_probe)}, tmp_path / "probe.pt")
    torch.load(tmp_path / "probe.pt", weights_only=False)  # ... and so does torch.load of a .pt
    assert pt_probe.exists()
    for path in (raw, pt):
        for load in _loaders(path):
            with pytest.raises(CheckpointError, match="not a valid bongrl checkpoint"):
                load()
    assert not marker.exists()


def _run_dir_with(tmp_path: Path, checkpoint_bytes: bytes) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    runs.write_json(run / runs.CONFIG, {"env": "CartPole-v1", "agent": "bongdqn", "steps": 10,
                                        "eval_every": 0, "eval_episodes": 1, "seed": 0, "device": "cpu",
                                        "posterior": "dlr", "exploration": "thompson", "hyperparameters": {}})
    (run / runs.CHECKPOINT).write_bytes(checkpoint_bytes)
    return run


def test_cli_refuses_a_pickle_checkpoint_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "pwned"
    run = _run_dir_with(tmp_path, pickle.dumps(_Payload(marker)))
    for argv in (["evaluate", str(run), "--device", "cpu"], ["train", "--resume", str(run), "--quiet"]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("bongrl: error: ") and "safetensors" in err[0], err
    assert not marker.exists()


def test_truncated_and_tampered_checkpoints_are_refused(trained: tuple[BongDQN, Path], tmp_path: Path) -> None:
    _, path = trained
    blob = path.read_bytes()
    header_len = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + header_len])
    cases: dict[str, bytes] = {
        "truncated-half": blob[: len(blob) // 2],
        "truncated-data": blob[:-7],
        "truncated-header": blob[:20],
        "empty": b"",
        "bad-length": (len(blob) * 2).to_bytes(8, "little") + blob[8:],
    }
    # a flipped byte in the tensor data: caught by the SHA-256 in the header
    data = bytearray(blob)
    data[8 + header_len + 5] ^= 0xFF
    cases["flipped-data-byte"] = bytes(data)
    # header edits that keep the file parseable
    for name, edit in {
        "format": lambda h: h["__metadata__"].update(format="something-else"),
        "meta-json": lambda h: h["__metadata__"].update(meta="{not json"),
        "meta-type": lambda h: h["__metadata__"].update(meta=json.dumps({**json.loads(h["__metadata__"]["meta"]),
                                                                           "num_timesteps": "lots"})),
        "digest": lambda h: h["__metadata__"].update(sha256="0" * 64),
        "shape": lambda h: h["target_theta"].update(shape=[1, *h["target_theta"]["shape"]]),
        "dtype": lambda h: h["target_theta"].update(dtype="F64"),
    }.items():
        h = json.loads(json.dumps(header))
        edit(h)
        raw = json.dumps(h).encode()
        raw += b" " * (-len(raw) % 8)
        cases[f"header-{name}"] = len(raw).to_bytes(8, "little") + raw + blob[8 + header_len :]
    for name, content in cases.items():
        bad = tmp_path / f"{name}.safetensors"
        bad.write_bytes(content)
        with pytest.raises(CheckpointError):
            BongDQN.load(bad, device="cpu")
    assert BongDQN.load(path, device="cpu").num_timesteps == 150  # the original is fine


# ================================================================================================ exact resume
@pytest.mark.parametrize(
    "kw",
    [dict(posterior="dlr", exploration="thompson"), dict(posterior="diag", exploration="epsilon", num_envs=2)],
    ids=["dlr-thompson", "diag-epsilon-2envs"],
)
def test_save_load_mid_episode_continues_bit_identically(kw: dict, tmp_path: Path) -> None:
    total, cut = 240, 97  # the cut falls mid-episode: the env is rebuilt by replaying the episode's actions
    ref = _dqn(**kw).learn(total)
    part = _dqn(**kw).learn(cut)
    while part._ep_length.min() == 0:  # move the cut past an episode boundary (learn(a) + learn(b) = learn(a+b))
        part.learn(part.num_envs)
    assert part._ep_length.min() > 0 and part.num_timesteps < total
    part.save(tmp_path / "c.safetensors", include_replay=True)
    resumed = BongDQN.load(tmp_path / "c.safetensors", device="cpu").learn(total - part.num_timesteps)
    assert _same(_snapshot(resumed), _snapshot(ref))
    assert torch.equal(resumed.target_theta, ref.target_theta) and resumed.num_episodes == ref.num_episodes
    assert np.array_equal(resumed._obs, ref._obs) and np.array_equal(resumed._ep_return, ref._ep_return)


# ================================================================================================ bad input
def _bad_arrays(rng: np.random.Generator, shape: tuple[int, ...]) -> list[tuple[str, object]]:
    """(kind, value) pairs that are not a valid real array of ``shape``."""
    good = rng.standard_normal(shape).astype(np.float32)
    out: list[tuple[str, object]] = []
    for v in (np.nan, np.inf, -np.inf):
        a = good.copy()
        a.reshape(-1)[rng.integers(a.size)] = v
        out.append(("nonfinite", a))
    extra = tuple(int(d) for d in rng.integers(1, 4, size=rng.integers(1, 3)))
    if extra[-len(shape):] == shape:  # (1, *shape) would be a valid batch of one
        extra = (*extra, 2)
    out += [
        ("shape", rng.standard_normal((*shape[:-1], shape[-1] + int(rng.integers(1, 3)))).astype(np.float32)),
        ("shape", rng.standard_normal((2, 3, *shape)).astype(np.float32)),
        ("shape", rng.standard_normal(extra).astype(np.float32)),
        ("dtype", good.astype(np.complex64) + 1j),
        ("dtype", np.full(shape, "a")),
        ("dtype", np.full(shape, None, dtype=object)),
        ("dtype", "a string"),
        ("dtype", {"obs": good}),
        ("dtype", None),
        ("shape", [[1.0, 2.0], [3.0]]),  # ragged
    ]
    return out


def _bad_scalars(rng: np.random.Generator) -> list[object]:
    return [np.nan, np.inf, -np.inf, "1.0", b"1", None, 1 + 2j, [1.0, 2.0], np.array([np.nan]), {"r": 1.0},
            float(rng.choice([np.nan, np.inf]))]


def _bad_arms(n_arms: int) -> list[object]:
    return [-1, n_arms, n_arms + 7, 1.0, 0.5, True, "0", None, [0], np.array([0, 1]), np.nan, 2**70]


@pytest.fixture(scope="module")
def fuzz_counts() -> dict[str, int]:
    return {"inputs": 0, "corrupted": 0}


def _expect_rejected(fn, snap_of, names: tuple[str, ...], counts: dict[str, int], label: str) -> None:
    before = snap_of()
    with pytest.raises(ValueError) as info:
        fn()
    counts["inputs"] += 1
    msg = str(info.value)
    assert any(n in msg for n in names), f"{label}: {msg!r} names none of {names}"
    if not _same(before, snap_of()):
        counts["corrupted"] += 1


@pytest.mark.parametrize("family", ["full", "diag", "dlr"])
def test_fuzz_bandit_update_and_act(family: str, fuzz_counts: dict[str, int]) -> None:
    rng = np.random.default_rng(hash(family) % 2**32)
    d, k = 3, 4
    agent = ThompsonBandit(k, d, posterior=family, seed=0, device="cpu", hidden=[5], rank=2)
    for _ in range(5):  # a non-trivial posterior
        agent.update(rng.standard_normal(d), int(rng.integers(k)), float(rng.standard_normal()))
    snap = lambda: _snapshot(agent)  # noqa: E731
    for _ in range(12):
        ctx = rng.standard_normal(d).astype(np.float32)
        for kind, bad in _bad_arrays(rng, (d,)):
            _expect_rejected(lambda b=bad: agent.update(b, 0, 1.0), snap, ("context",), fuzz_counts, kind)
            _expect_rejected(lambda b=bad: agent.act(b), snap, ("context",), fuzz_counts, kind)
        for bad in _bad_scalars(rng):
            _expect_rejected(lambda b=bad, c=ctx: agent.update(c, 1, b), snap, ("reward",), fuzz_counts, repr(bad))
        for bad in _bad_arms(k):
            _expect_rejected(lambda b=bad, c=ctx: agent.update(c, b, 0.5), snap, ("arm",), fuzz_counts, repr(bad))
        agent.update(ctx, int(rng.integers(k)), float(rng.standard_normal()))  # good input still works


def test_fuzz_bong_update(fuzz_counts: dict[str, int]) -> None:
    rng = np.random.default_rng(7)
    torch.manual_seed(0)
    est = BONG(nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 2)), family="dlr", rank=3, device="cpu")
    est.update(torch.randn(4, 3), torch.randn(4, 2))
    snap = lambda: _snapshot(est)  # noqa: E731
    for _ in range(12):
        x, y = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((4, 2)).astype(np.float32)
        for kind, bad in _bad_arrays(rng, (4, 3)):
            _expect_rejected(lambda b=bad, y=y: est.update(b, y), snap, ("x",), fuzz_counts, kind)
        for kind, bad in _bad_arrays(rng, (4, 2)):
            _expect_rejected(lambda b=bad, x=x: est.update(x, b), snap, ("y",), fuzz_counts, kind)
        for bad in ([0, 1, 2], [0, 1, 2, 5], [0, -1, 0, 1], [0.0, 1.0, 0.0, 1.0], [True] * 4, "abcd"):
            _expect_rejected(lambda b=bad, x=x, y=y: est.update(x, y[:, 0], index=b), snap, ("index",), fuzz_counts,
                             repr(bad))
        est.update(x, y)


def test_fuzz_dqn_predict(fuzz_counts: dict[str, int]) -> None:
    rng = np.random.default_rng(3)
    agent = _dqn(replay_every=0).learn(30)
    snap = lambda: _snapshot(agent)  # noqa: E731
    for _ in range(12):
        for kind, bad in _bad_arrays(rng, (4,)):
            for det in (True, False):
                _expect_rejected(lambda b=bad, d=det: agent.predict(b, deterministic=d), snap, ("observation",),
                                 fuzz_counts, kind)


def test_fuzz_totals(fuzz_counts: dict[str, int]) -> None:
    """Runs after the fuzz tests above (file order): at least 1000 bad inputs, none corrupted any state."""
    print(f"fuzz: {fuzz_counts['inputs']} bad inputs rejected, {fuzz_counts['corrupted']} corrupted states")
    assert fuzz_counts["inputs"] >= 1000, fuzz_counts
    assert fuzz_counts["corrupted"] == 0, fuzz_counts


def test_failed_bandit_update_also_undoes_the_predict_step(monkeypatch: pytest.MonkeyPatch) -> None:
    agent = ThompsonBandit(2, 2, posterior="dlr", seed=0, device="cpu", forget=0.9, rank=2)
    agent.update(np.ones(2), 0, 1.0)
    before = _snapshot(agent)

    def fail(*a, **k):
        raise ValueError("y contains NaN or Inf")

    monkeypatch.setattr(agent.est, "update", fail)
    with pytest.raises(ValueError):
        agent.update(np.ones(2), 1, 0.5)
    assert _same(before, _snapshot(agent)) and agent.num_rounds == 1


# ================================================================================================ NaN from the env
class _NaNObsEnv(gym.Env):
    """Short episodes of a 2-d random walk; the observation becomes NaN at global step ``nan_at``."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)
    nan_at = 37

    def __init__(self) -> None:
        self.t = 0
        self.k = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):  # type: ignore[override]
        super().reset(seed=seed)
        self.k = 0
        return self.np_random.standard_normal(2).astype(np.float32), {}

    def step(self, action):  # type: ignore[override]
        self.t += 1
        self.k += 1
        obs = self.np_random.standard_normal(2).astype(np.float32)
        if self.t >= self.nan_at:
            obs[0] = np.nan
        return obs, float(action), self.k >= 5, False, {}


def _register_nan_env() -> str:
    if "test/NaNObs-v0" not in gym.registry:
        gym.register("test/NaNObs-v0", entry_point=_NaNObsEnv, disable_env_checker=True)
    return "test/NaNObs-v0"


def test_env_emitting_nan_stops_the_agent_with_a_clean_posterior() -> None:
    agent = BongDQN(_register_nan_env(), posterior="dlr", seed=0, device="cpu", hidden=[4], rank=2)
    with pytest.raises(ValueError, match="environment observation contains NaN"):
        agent.learn(100)
    assert agent.num_timesteps == _NaNObsEnv.nan_at - 1
    assert posterior_health(agent)["finite"] == 1.0


def test_cli_env_emitting_nan_exits_1_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "nan"
    code = cli.main(["train", "--env", _register_nan_env(), "--steps", "100", "--checkpoint-every", "10",
                     "--eval-every", "0", "--set", "hidden=[4]", "--out", str(out), "--quiet", "--device", "cpu"])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bongrl: error: training failed at step 36"), err
    assert "NaN" in err[0] and "'dlr'" in err[0]
    agent = BongDQN.load(out / runs.CHECKPOINT, env=_register_nan_env(), device="cpu")
    assert agent.num_timesteps == 30  # the last checkpoint (every 10 steps, at episode ends) before the NaN
    assert posterior_health(agent)["finite"] == 1.0
    assert all(bool(torch.isfinite(v).all()) for v in agent.est.state.values())


# ================================================================================================ health
def _health_run(family: str, steps: int, every: int) -> HealthMonitor:
    """The CartPole preset's workload (static parameters, target net every 20 steps) on a small network."""
    agent = BongDQN("CartPole-v1", posterior=family, seed=0, device="cpu", hidden=[8], rank=4, prior_std=1.0,
                    obs_std=1.0, target_update=20)
    monitor = HealthMonitor(every=every, on_violation="raise")
    agent.learn(steps, callback=monitor, callback_every=every)
    return monitor


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_stays_positive_definite_short(family: str) -> None:
    """Default variant: 2,500 online updates per family (10⁴ over the four); the slow one runs 10⁶."""
    monitor = _health_run(family, 2_500, 500)
    assert monitor.first_violation is None
    assert len(monitor.log) == 5 and all(r["health"] > 0 and r["marginal_variance"] > 0 for r in monitor.log)
    print(family, [(r["step"], f"{r['health']:.3g}", f"{r['marginal_variance']:.3g}") for r in monitor.log])


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_stays_positive_definite_1e6(family: str) -> None:
    steps = int(os.environ.get("BONGRL_HEALTH_STEPS", 1_000_000))
    monitor = _health_run(family, steps, max(1, steps // 100))
    assert monitor.first_violation is None, monitor.first_violation
    print(family, monitor.log[-1])


def test_health_monitor_reports_the_first_violation() -> None:
    agent = _dqn(posterior="diag", replay_every=0)
    monitor = HealthMonitor(every=10, on_violation="record")
    state = {}

    def corrupt(a: BongDQN, info: dict) -> None:  # at step 30 a precision entry goes negative
        if info.get("kind") == "step" and info["step"] == 30 and not state:
            prec = a.est.state["prec"].clone().index_fill_(0, torch.tensor([3]), -1.0)
            a.est.restore({**a.est.snapshot(), "prec": prec})  # restore checks layout only, not positivity
            state["done"] = True

    agent.learn(50, callback=chain(corrupt, monitor), callback_every=10)
    v = monitor.first_violation
    assert v is not None and (v.step, v.family, v.metric) == (30, "diag", "health") and v.value == -1.0
    assert "step 30" in str(v) and "'diag'" in str(v) and [r["step"] for r in monitor.log] == [10, 20, 30, 40, 50]
    agent2 = _dqn(posterior="diag", replay_every=0)
    agent2.est.restore({**agent2.est.snapshot(), "mean": agent2.est.state["mean"] * np.nan})
    assert HealthMonitor(every=10)(agent2, {"kind": "episode", "step": 10}) is None  # only periodic events check
    with pytest.raises(HealthError, match="step 10.*'diag'.*finite"):  # default: raise (stops training)
        HealthMonitor(every=10)(agent2, {"kind": "step", "step": 10})
    assert HealthMonitor(every=10, on_violation="stop")(agent2, {"kind": "step", "step": 10}) is False


def test_health_monitor_on_a_bandit() -> None:
    agent = ThompsonBandit(5, 0, posterior="full", seed=0, device="cpu")
    monitor = HealthMonitor(every=25)
    agent.learn(100, callback=monitor, env="bongrl/BernoulliBandit-v0")
    assert [r["step"] for r in monitor.log] == [25, 50, 75, 100] and monitor.first_violation is None
    with pytest.raises(ValueError, match="every"):
        HealthMonitor(every=0)


# ================================================================================================ plugins (CLI)
@pytest.fixture
def broken_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A throwaway installed distribution with three bad posterior plugins: one raising on import, one whose
    entry point is not a class ("garbage"), one whose updates return NaN."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "bongrl_rel_boom.py").write_text("raise RuntimeError('missing native library libfoo.so')\n")
    (site / "bongrl_rel_garbage.py").write_text(textwrap.dedent("""
        Thing = 42
        from bongrl.posteriors.diag import DiagonalPrecision

        class NaNFamily(DiagonalPrecision):
            name = "nanfam"

            def _update(self, state, A, g):
                return {"mean": state["mean"] * float("nan"), "prec": state["prec"]}
    """))
    info = site / "bongrl_test_reliability-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: bongrl-test-reliability\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[bongrl.posteriors]\nboom = bongrl_rel_boom:Family\ngarbage = bongrl_rel_garbage:Thing\n"
        "nanfam = bongrl_rel_garbage:NaNFamily\n"
    )
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    yield site
    for mod in ("bongrl_rel_boom", "bongrl_rel_garbage"):
        sys.modules.pop(mod, None)
    monkeypatch.undo()
    importlib.invalidate_caches()


def test_cli_with_broken_plugins(broken_plugins: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["plugins"]) == 0
    lines = capsys.readouterr().out.splitlines()
    status = {ln.split()[1]: ln for ln in lines[1:]}
    assert "broken: RuntimeError" in status["boom"] and "libfoo.so" in status["boom"]
    assert "bongrl-test-reliability" in status["boom"]
    assert "broken" in status["garbage"] and "PosteriorFamily" in status["garbage"]
    assert status["dlr"].rstrip().endswith("ok") and status["nanfam"].rstrip().endswith("ok")
    tiny = ["--steps", "30", "--eval-every", "0", "--eval-episodes", "1", "--set", "hidden=[4]", "--device", "cpu",
            "--quiet"]
    expected = {"boom": ("boom", "bongrl-test-reliability", "libfoo.so"), "garbage": ("garbage", "42")}
    for name, words in expected.items():
        assert cli.main(["train", "--env", "CartPole-v1", "--posterior", name, "--out", str(tmp_path / name),
                         *tiny]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and all(w in err[0] for w in words), err
    train = ["train", "--env", "CartPole-v1", *tiny]
    # every update of a NaN family is rejected (the last good posterior kept); after 100 in a row the run stops
    nan_run = ["train", "--env", "CartPole-v1", *tiny, "--steps", "150"]
    assert cli.main([*nan_run, "--posterior", "nanfam", "--out", str(tmp_path / "n")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'nanfam'" in err[0] and "update rejected" in err[0] and "100" in err[0], err
    # everything else still works with the broken plugins installed
    assert cli.main([*train, "--posterior", "diag", "--out", str(tmp_path / "ok")]) == 0


# ================================================================================================ CLI usage errors
BAD_ARGS = [
    (["train", "--env", "CartPole-v1", "--steps", "abc"], "--steps"),
    (["train", "--env", "CartPole-v1", "--seed", "1.5"], "--seed"),
    (["train", "--env", "CartPole-v1", "--device", "tpu"], "--device"),
    (["train", "--env", "CartPole-v1", "--bogus", "1"], "--bogus"),
    (["train", "--env", "CartPole-v1", "--eval-episodes", "0"], "--eval-episodes"),
    (["train", "--env", "CartPole-v1", "--eval-every", "-1"], "--eval-every"),
    (["train", "--env", "CartPole-v1", "--checkpoint-every", "0"], "--checkpoint-every"),
    (["train", "--env", "CartPole-v1", "--preset", "missing.json"], "missing.json"),
    (["train", "--env", "CartPole-v1", "--set", "hidden=[0]"], "hidden"),
    (["train", "--env", "CartPole-v1", "--set", "dtype=float16"], "dtype"),
    (["train", "--env", "CartPole-v1", "--set", "gamma=\"high\""], "gamma"),
    (["train", "--env", "CartPole-v1", "--set", "=3"], "KEY=VALUE"),
    (["evaluate"], "DIR"),
    (["evaluate", ".", "--episodes", "0"], "--episodes"),
    (["fly"], "fly"),
    ([], "COMMAND"),
]


@pytest.mark.parametrize(("argv", "mentions"), BAD_ARGS, ids=[" ".join(a) or "none" for a, _ in BAD_ARGS])
def test_more_usage_errors_are_one_line_exit_2(
    argv: list[str], mentions: str, capsys: pytest.CaptureFixture[str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    if argv[:2] == ["evaluate", "."]:
        _run_dir_with(tmp_path, b"")
        argv = ["evaluate", str(tmp_path / "run"), *argv[2:]]
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2
    cap = capsys.readouterr()
    err = cap.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bongrl: error: ") and mentions in err[0], err
    assert not cap.out


def test_resume_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _run_dir_with(tmp_path, b"\x00" * 64)
    for argv, words in (
        (["train", "--resume", str(run), "--env", "CartPole-v1"], "--env"),
        (["train", "--resume", str(run), "--set", "gamma=0.5"], "--set"),
        (["train", "--resume", str(run), "--quiet"], "not a valid bongrl checkpoint"),
        (["train", "--resume", str(tmp_path)], "config.json"),
    ):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err
