"""``bongrl compare``: tiny budgets, small nets (CartPole and a 4×4 DeepSea)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from _helpers import read_csv_rows

from bongrl import compare
from bongrl.cli import main

TINY = [
    "--set",
    "bongdqn.hidden=[8]",
    "--set",
    'dqn.policy_kwargs={"net_arch": [8]}',
    "--set",
    "dqn.learning_starts=100",
    "--set",
    "dqn.train_freq=16",
    "--set",
    "dqn.gradient_steps=4",
]


def test_compare_outputs_and_resume(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    args = [
        sys.executable,
        "-m",
        "bongrl",
        "compare",
        "--env",
        "CartPole-v1",
        "--steps",
        "600",
        "--seeds",
        "2",
        "--agents",
        "bongdqn,dqn",
        "--eval-every",
        "300",
        "--eval-episodes",
        "1",
        "--jobs",
        "2",
        "--quiet",
        "--out",
        str(out),
        *TINY,
    ]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "4 run(s) done, 0 skipped" in proc.stdout

    rows = read_csv_rows(out / "compare.csv")
    assert list(rows[0]) == ["agent", "seed", "step", "eval_mean", "eval_std", "wall_s", "env_steps_per_s"]
    assert {(r["agent"], r["seed"]) for r in rows} == {
        ("bongdqn", "0"),
        ("bongdqn", "1"),
        ("dqn", "0"),
        ("dqn", "1"),
    }
    bong0 = [int(r["step"]) for r in rows if r["agent"] == "bongdqn" and r["seed"] == "0"]
    assert bong0 == [0, 300, 600]  # step 0, every 300, and after training
    assert all(float(r["env_steps_per_s"]) > 0 for r in rows if int(r["step"]) > 0)
    summary = (out / "summary.md").read_text()
    for needle in (
        "| bongdqn | 2 |",
        "| dqn | 2 |",
        "median steps to threshold",
        "never reached",
        "AUC",
        "env steps/s",
        "475",
    ):
        assert needle in summary
    assert (out / "learning_curves.png").stat().st_size > 5_000
    data = json.loads((out / "summary.json").read_text())
    assert data["agents"]["bongdqn"]["never_reached"] in (0, 1, 2)

    # the same command again: every run is complete, nothing is retrained (results untouched)
    markers = {p: p.stat().st_mtime_ns for p in out.glob("per_run/*/result.json")}
    assert len(markers) == 4
    again = compare.run_compare(
        "CartPole-v1",
        600,
        2,
        "bongdqn,dqn",
        out=out,
        eval_every=300,
        eval_episodes=1,
        quiet=True,
        overrides={
            "bongdqn": {"hidden": [8]},
            "dqn": {
                "policy_kwargs": {"net_arch": [8]},
                "learning_starts": 100,
                "train_freq": 16,
                "gradient_steps": 4,
            },
        },
    )
    assert again["ran"] == [] and len(again["skipped"]) == 4
    assert {p: p.stat().st_mtime_ns for p in out.glob("per_run/*/result.json")} == markers

    # a half-finished comparison: remove one run's completion marker; only that run is redone
    (out / "per_run" / "dqn-s1" / "result.json").unlink()
    part = compare.run_compare(
        "CartPole-v1",
        600,
        2,
        "bongdqn,dqn",
        out=out,
        eval_every=300,
        eval_episodes=1,
        quiet=True,
        overrides={
            "bongdqn": {"hidden": [8]},
            "dqn": {
                "policy_kwargs": {"net_arch": [8]},
                "learning_starts": 100,
                "train_freq": 16,
                "gradient_steps": 4,
            },
        },
    )
    assert part["ran"] == ["dqn-s1"] and len(part["skipped"]) == 3
    assert len(read_csv_rows(out / "compare.csv")) == len(rows)
    assert not list(out.glob("per_run/*.partial"))

    # changed settings: that run is redone; its finished predecessor is kept until the new one completes
    assert "hyperparameters.hidden" in compare._changed_settings(
        out, {**compare.plan("CartPole-v1", 600, 2, ["bongdqn"], 300, 1)[0][0]}
    )


def test_bad_agent_name_is_one_line_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc = main(
        [
            "compare",
            "--env",
            "CartPole-v1",
            "--steps",
            "100",
            "--agents",
            "bongdqn,dqnn",
            "--out",
            str(tmp_path / "x"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1
    assert "dqnn" in err and "bongdqn,dqn,qrdqn,ppo" in err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--env", "CartPole-v9"], "unknown environment id"),
        (["--env", "bongrl/DeepSea-v0", "--size", "4", "--agents", "ppo"], "no preset for ppo"),
        (["--env", "CartPole-v1", "--set", "dqn.bogus=1", "--agents", "dqn"], "bogus"),
        (["--env", "CartPole-v1", "--jobs", "0"], "--jobs"),
    ],
)
def test_usage_errors(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rc = main(["compare", "--steps", "100", "--out", str(tmp_path / "x"), *argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and needle in err, err


def test_deepsea_episodes_to_solve(tmp_path: Path) -> None:
    """bsuite's criterion on a 4×4 DeepSea; DQN's bsuite preset and BongDQN run in process."""
    res = compare.run_compare(
        "bongrl/DeepSea-v0",
        200,
        1,
        "bongdqn,dqn",
        out=tmp_path / "ds",
        eval_every=100,
        eval_episodes=1,
        env_kwargs={"size": 4},
        quiet=True,
    )
    assert not res["failed"]
    s = res["summary"]["agents"]
    for agent in ("bongdqn", "dqn"):
        assert s[agent]["train_episodes"] == [50]  # 200 steps / N = 4
        e = s[agent]["episodes_to_solve_per_seed"][0]
        assert e is None or 1 <= e <= 50
    assert "Episodes to solve" in (tmp_path / "ds" / "summary.md").read_text()


def test_solve_criterion_and_auc() -> None:
    import numpy as np

    rec = compare._Recorder.__new__(compare._Recorder)
    rec.episodes, rec.solved_at = 0, None
    for bad in (1, 2, 3, 4, 4, 5):  # episode 5: 4/5 = 0.8 < 0.9 -> solved
        rec.on_episode(bad)
    assert rec.solved_at == 5
    assert compare._auc(np.array([0, 10, 20]), np.array([0.0, 10.0, 10.0])) == pytest.approx(7.5)


def test_sb3_models_do_not_mutate_the_preset() -> None:
    """QR-DQN writes into policy_kwargs; the recorded settings (the resume signature) must stay JSON."""
    from bongrl.baselines import sb3

    hp = sb3.resolved("qrdqn", "CartPole-v1", {"policy_kwargs": {"net_arch": [8], "n_quantiles": 5}})
    before = json.dumps(hp, sort_keys=True)
    model = sb3.make_model("qrdqn", "CartPole-v1", 0, hp)
    assert json.dumps(hp, sort_keys=True) == before
    assert model.policy_kwargs["n_quantiles"] == 5
    ppo = sb3.make_model("ppo", "CartPole-v1", 0, sb3.resolved("ppo", "CartPole-v1"))
    assert callable(ppo.learning_rate)  # the zoo's lin_0.001 schedule
