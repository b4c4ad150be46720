"""Exact resume across processes: ``bongrl train`` run in one go versus killed (SIGKILL at a random moment
after a checkpoint, or SIGINT) and continued with ``--resume``. On CPU the final checkpoint (posterior, target
network, replay, every RNG, env record) is bit-identical, and so are metrics.csv (all columns but wall-clock
``wall_s``) and eval.json. Design: docs/reliability.md.
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bongrl import runs
from bongrl.checkpoint import load_checkpoint

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
STEPS = 1500
ARGS = [
    "train", "--env", "CartPole-v1", "--steps", str(STEPS), "--checkpoint-every", "200", "--eval-every", "500",
    "--eval-episodes", "2", "--seed", "3", "--device", "cpu", "--quiet",
    "--set", "hidden=[16]", "--set", "replay_every=4", "--set", "learning_starts=100", "--set", "buffer_size=300",
    "--set", "replay_batch=8",
]


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "bongrl", *args]


def _metrics(run: Path) -> list[dict[str, str]]:
    with open(run / runs.METRICS, newline="") as fh:
        return [{k: v for k, v in r.items() if k != "wall_s"} for r in csv.DictReader(fh)]


def _assert_identical(run: Path, ref: Path) -> None:
    t_run, m_run = load_checkpoint(run / runs.CHECKPOINT)
    t_ref, m_ref = load_checkpoint(ref / runs.CHECKPOINT)
    assert t_run.keys() == t_ref.keys()
    different = [k for k in t_ref if not torch.equal(t_run[k], t_ref[k])]
    assert not different, f"tensors differ after resume: {different}"
    assert m_run == m_ref
    assert m_ref["num_timesteps"] == STEPS
    assert _metrics(run) == _metrics(ref)
    assert json.loads((run / runs.EVAL).read_text()) == json.loads((ref / runs.EVAL).read_text())


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("resume") / "reference"
    res = subprocess.run(_cmd(*ARGS, "--out", str(out)), capture_output=True, text=True, env=ENV, timeout=600)
    assert res.returncode == 0, res.stderr
    return out


def _start(out: Path) -> subprocess.Popen:
    return subprocess.Popen(_cmd(*ARGS, "--out", str(out)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV)


def _wait_for_checkpoint(proc: subprocess.Popen, out: Path, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not (out / runs.CHECKPOINT).exists():
        assert proc.poll() is None, f"training ended before its first checkpoint: {proc.communicate()}"
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.02)


def test_sigkill_then_resume_is_bit_identical(reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    seed = int(os.environ.get("BONGRL_KILL_SEED", time.time_ns() % 10_000))
    delay = random.Random(seed).uniform(0.0, 1.0)
    proc = _start(out)
    _wait_for_checkpoint(proc, out)
    time.sleep(delay)  # a random moment after the first checkpoint
    assert proc.poll() is None, "the run finished before it could be killed; lower the delay"
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    _, meta = load_checkpoint(out / runs.CHECKPOINT)
    killed_at = meta["num_timesteps"]
    assert 0 < killed_at < STEPS, killed_at
    print(f"kill seed {seed}: delay {delay:.2f}s, resumed from step {killed_at}")
    res = subprocess.run(_cmd("train", "--resume", str(out), "--quiet"), capture_output=True, text=True, env=ENV,
                         timeout=600)
    assert res.returncode == 0, res.stderr
    _assert_identical(out, reference)


def test_sigint_checkpoints_and_resume_is_bit_identical(reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "interrupted"
    proc = _start(out)
    _wait_for_checkpoint(proc, out)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "--resume" in err
    _, meta = load_checkpoint(out / runs.CHECKPOINT)  # the interrupt wrote a checkpoint where it stopped
    assert 0 < meta["num_timesteps"] < STEPS and meta["loop"]["ep_length"] == [0]
    res = subprocess.run(_cmd("train", "--resume", str(out), "--quiet"), capture_output=True, text=True, env=ENV,
                         timeout=600)
    assert res.returncode == 0, res.stderr
    _assert_identical(out, reference)


def _episode_rows(run: Path, kind: str) -> list[dict[str, str]]:
    return [r for r in _metrics(run) if r["kind"] == kind]


@pytest.mark.parametrize(
    ("env", "kind", "extra"),
    [
        ("CartPole-v1", "episode", ["--set", "hidden=[8]", "--set", "replay_every=2", "--set",
                                    "learning_starts=50", "--eval-every", "0", "--eval-episodes", "1"]),
        ("bongrl/WheelBandit-v0", "round", ["--set", "hidden=[8]"]),
        # env kwargs travel in the checkpoint: the resumed run remakes (and replays) the same env
        ("bongrl/DeepSea-v0", "episode", ["--env-kwargs", "size=6", "--set", "hidden=[8]", "--eval-every", "0",
                                          "--eval-episodes", "1"]),
    ],
    ids=["bongdqn", "bandit", "bongdqn-env-kwargs"],
)
def test_resume_to_a_larger_total_is_bit_identical(
    env: str, kind: str, extra: list[str], tmp_path: Path
) -> None:
    """A finished run continued with ``--resume --steps`` equals one run to the larger total. For BongDQN the
    first run's final checkpoint falls mid-episode: the env is rebuilt by replaying the episode's actions."""
    from bongrl import cli

    common = ["train", "--env", env, "--device", "cpu", "--quiet", "--checkpoint-every", "40", *extra]
    assert cli.main([*common, "--steps", "230", "--out", str(tmp_path / "ref")]) == 0
    assert cli.main([*common, "--steps", "97", "--out", str(tmp_path / "run")]) == 0
    assert cli.main(["train", "--resume", str(tmp_path / "run"), "--steps", "230", "--quiet"]) == 0
    t_run, m_run = load_checkpoint(tmp_path / "run" / runs.CHECKPOINT)
    t_ref, m_ref = load_checkpoint(tmp_path / "ref" / runs.CHECKPOINT)
    assert [k for k in t_ref if not torch.equal(t_run[k], t_ref[k])] == [] and m_run == m_ref
    assert _episode_rows(tmp_path / "run", kind) == _episode_rows(tmp_path / "ref", kind)


def _deep_sea_agent(**kw):
    import gymnasium as gym

    from bongrl import presets
    from bongrl.agents.bong_dqn import BongDQN

    # a replay of 12 holds the transitions between two samples (rto_merge) but not the run: the merged store is
    # the only record of the older ones
    hp = {**presets.get("bongrl/DeepSea-v0")["hyperparameters"], "hidden": [32], "buffer_size": 12, **kw}
    return BongDQN(gym.make("bongrl/DeepSea-v0", size=5, mapping_seed=42), posterior="full", seed=0, device="cpu",
                   **hp)


def test_rto_merge_resume_is_bit_identical(tmp_path: Path) -> None:
    """The randomise-then-optimise sampler checkpoints what it carries between samples (the warm start and the
    merged transitions, ``rto_store.*``): a DeepSea run saved mid-episode, loaded and continued equals the run in
    one go, tensor for tensor. A checkpoint without the merged store (written before it was saved) still loads:
    the store is then rebuilt from the replay at the next sample."""
    import gymnasium as gym

    from bongrl.agents.bong_dqn import BongDQN

    total = 5 * 20
    ref = _deep_sea_agent()
    ref.learn(total)
    run = _deep_sea_agent()
    run.learn(5 * 9 + 2)
    path = run.save(tmp_path / "mid.safetensors", include_replay=True)
    saved, _ = load_checkpoint(path)
    assert {"rto_prev", "rto_store.m", "rto_store.seen", "rto_store.phi"} <= set(saved)
    resumed = BongDQN.load(path, env=gym.make("bongrl/DeepSea-v0", size=5, mapping_seed=42), device="cpu")
    assert resumed.rto.store["keys"] == run.rto.store["keys"] and resumed.rto.store["m"] == run.rto.store["m"]
    resumed.learn(total - resumed.num_timesteps)
    t_ref, _ = load_checkpoint(ref.save(tmp_path / "ref.safetensors", include_replay=True))
    t_res, _ = load_checkpoint(resumed.save(tmp_path / "res.safetensors", include_replay=True))
    assert t_res.keys() == t_ref.keys()
    assert [k for k in t_ref if not torch.equal(t_res[k], t_ref[k])] == []

    old = {k: v for k, v in saved.items() if not k.startswith("rto_store.")}
    fresh = _deep_sea_agent()
    fresh.rto.load_state_dict(old)
    assert fresh.rto.store is None and torch.equal(fresh.rto.prev, saved["rto_prev"])
