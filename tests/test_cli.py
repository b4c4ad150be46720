"""CLI smoke tests: the real ``python -m bongrl`` in a subprocess, tiny budgets (error cases in-process)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _helpers import read_csv_rows, register_nan_reward_env

from bongrl import cli, runs

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
TINY = [
    "--steps",
    "300",
    "--eval-every",
    "200",
    "--eval-episodes",
    "2",
    "--set",
    "hidden=[16]",
    "--device",
    "cpu",
]


def bongrl(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bongrl", *args],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=cwd,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "cartpole"
    res = bongrl("train", "--env", "CartPole-v1", *TINY, "--out", str(out), "--quiet")
    assert res.returncode == 0, res.stderr
    assert str(out) in res.stdout and "Traceback" not in res.stderr
    return out


def test_train_writes_run_directory(cartpole_run: Path) -> None:
    for name in (runs.CONFIG, runs.METRICS, runs.EVAL, runs.PLOT, runs.CHECKPOINT):
        assert (cartpole_run / name).is_file(), name
    metrics = read_csv_rows(cartpole_run / runs.METRICS)
    assert list(metrics[0]) == runs.EPISODE_COLUMNS
    episodes = [r for r in metrics if r["kind"] == "episode"]
    evals = [r for r in metrics if r["kind"] == "eval"]
    assert episodes and all(r["return"] and r["length"] for r in episodes)
    assert [int(r["episode"]) for r in episodes] == list(range(1, len(episodes) + 1))
    assert len(evals) >= 2 and int(evals[-1]["step"]) == 300  # one crossing 200, one final
    ev = json.loads((cartpole_run / runs.EVAL).read_text())
    assert {"mean", "std", "episodes", "returns"} <= set(ev) and ev["episodes"] == len(ev["returns"]) == 2
    cfg = json.loads((cartpole_run / runs.CONFIG).read_text())
    assert cfg["env"] == "CartPole-v1" and cfg["agent"] == "bongdqn" and cfg["seed"] == 0
    assert cfg["hyperparameters"]["hidden"] == [16] and cfg["agent_config"]["hidden"] == [16]
    assert {"bongrl", "torch", "gymnasium"} <= set(cfg["versions"]) and cfg["start_time"]
    assert (cartpole_run / runs.PLOT).read_bytes()[:4] == b"\x89PNG"


def test_evaluate_prints_mean_std(cartpole_run: Path) -> None:
    res = bongrl("evaluate", str(cartpole_run), "--episodes", "2", "--device", "cpu")
    assert res.returncode == 0, res.stderr
    assert "±" in res.stdout
    out = json.loads((cartpole_run / "eval_cli.json").read_text())
    assert out["episodes"] == 2 and len(out["returns"]) == 2


def test_resume_continues_to_total(cartpole_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "resumed"
    shutil.copytree(cartpole_run, run)
    before = read_csv_rows(run / runs.METRICS)
    res = bongrl("train", "--resume", str(run), "--steps", "450", "--quiet")
    assert res.returncode == 0, res.stderr
    after = read_csv_rows(run / runs.METRICS)
    assert after[: len(before)] == before  # appended, not rewritten
    assert int(after[-1]["step"]) == 450 and after[-1]["kind"] == "eval"
    eps = [int(r["episode"]) for r in after if r["kind"] == "episode"]
    assert eps == list(range(1, len(eps) + 1)) and len(eps) > sum(r["kind"] == "episode" for r in before)
    from bongrl.agents import BongDQN

    assert BongDQN.load(run / runs.CHECKPOINT, device="cpu").num_timesteps == 450
    assert json.loads((run / runs.CONFIG).read_text())["steps"] == 450


def test_plugins_lists_builtins() -> None:
    res = bongrl("plugins")
    assert res.returncode == 0, res.stderr
    for name in ("full", "diag", "dlr", "thompson", "ucb", "greedy", "epsilon"):
        assert any(line.split()[1:2] == [name] for line in res.stdout.splitlines()), name
    assert "ok" in res.stdout


def test_bandit_train_and_evaluate(tmp_path: Path) -> None:
    out = tmp_path / "bandit"
    res = bongrl(
        "train",
        "--env",
        "bongrl/BernoulliBandit-v0",
        "--steps",
        "50",
        "--out",
        str(out),
        "--quiet",
        "--device",
        "cpu",
    )
    assert res.returncode == 0, res.stderr
    metrics = read_csv_rows(out / runs.METRICS)
    assert list(metrics[0]) == runs.BANDIT_COLUMNS and len(metrics) == 50
    cum = [float(r["cumulative_regret"]) for r in metrics]
    assert np.all(np.diff(cum) >= -1e-9)
    ev = json.loads((out / runs.EVAL).read_text())
    assert ev["rounds"] == 50 and {"cumulative_regret", "mean_reward"} <= set(ev)
    assert (out / runs.PLOT).is_file() and (out / runs.CHECKPOINT).is_file()
    res = bongrl("evaluate", str(out), "--episodes", "3", "--device", "cpu")
    assert res.returncode == 0 and "±" in res.stdout, res.stderr


def test_sigint_saves_and_exits_130(tmp_path: Path) -> None:
    out = tmp_path / "interrupted"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bongrl",
            "train",
            "--env",
            "CartPole-v1",
            "--steps",
            "100000",
            "--set",
            "hidden=[16]",
            "--eval-every",
            "0",
            "--out",
            str(out),
            "--quiet",
            "--device",
            "cpu",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    deadline = time.time() + 60
    while time.time() < deadline and len(runs.read_metrics(out / runs.METRICS)) < 3:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "--resume" in err
    assert (out / runs.CHECKPOINT).is_file() and (out / runs.PLOT).is_file()


BAD = [
    (["train", "--env", "NoSuchEnv-v0"], "CartPole-v1"),
    (["train", "--env", "CartPole-v1", "--posterior", "nope"], "dlr"),
    (["train", "--env", "CartPole-v1", "--exploration", "nope"], "thompson"),
    (["train", "--env", "CartPole-v1", "--set", "bogus=1"], "obs_std"),
    (["train", "--env", "CartPole-v1", "--set", "obs_std=-1"], "obs_std"),
    (["train", "--env", "CartPole-v1", "--set", "hidden=abc"], "hidden"),
    (["train", "--env", "CartPole-v1", "--set", "noequals"], "KEY=VALUE"),
    (["train", "--env", "CartPole-v1", "--steps", "-5"], "--steps"),
    (["train", "--env", "CartPole-v1", "--preset", "NoPreset"], "CartPole-v1"),
    (["train", "--resume", "/nonexistent/run"], "does not exist"),
    (["train"], "--env"),
    (["evaluate", "/nonexistent/run"], "does not exist"),
]


@pytest.mark.parametrize(("argv", "mentions"), BAD, ids=[" ".join(a[1:]) or a[0] for a, _ in BAD])
def test_usage_errors_exit_2(
    argv: list[str],
    mentions: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # nothing may be written on a usage error
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bongrl: error: ") and mentions in err[0], err
    assert not any(tmp_path.iterdir())


def test_usage_error_subprocess_no_traceback() -> None:
    res = bongrl("train", "--env", "CartPole-v1", "--set", "bogus=1")
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("bongrl: error: ")


@pytest.mark.filterwarnings("ignore:.*NaN value")
def test_runtime_failure_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    register_nan_reward_env("test/NaNReward-v0")
    code = cli.main(
        [
            "train",
            "--env",
            "test/NaNReward-v0",
            "--steps",
            "10",
            "--set",
            "hidden=[4]",
            "--out",
            str(tmp_path / "nan"),
            "--quiet",
            "--device",
            "cpu",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bongrl: error: ") and "non-finite" in err[0], err
