"""``bongrl compare``: tiny budgets, small nets (CartPole and a 4×4 DeepSea)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _helpers import read_csv_rows

from bongrl import compare, runs
from bongrl.baselines import sb3
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
        "0-1",
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
    evals = ["eval_online_mean", "eval_online_std", "eval_averaged_mean", "eval_averaged_std"]
    assert list(rows[0]) == ["agent", "seed", "status", "step", "eval_mean", "eval_std", *evals, "wall_s",
                             "env_steps_per_s"]
    assert list(read_csv_rows(out / "per_run" / "dqn-s1" / "curve.csv")[0]) == list(rows[0])[3:]
    assert all(r["eval_mean"] == r["eval_online_mean"] and r["status"] == "complete" for r in rows)
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
        "### online (headline): the weights being trained",
        "### averaged: EMA of the weights, τ=0.001, same for every agent",
        "| bongdqn | 0-1 | 0/2 |",
        "| dqn | 0-1 | 0/2 |",
        "| bongdqn | final eval |",
        "| dqn | mean of last 3 evals |",
        "| dqn | AUC |",
        "| bongdqn | steps to threshold |",
        "| seed 0 | seed 1 |",
        "env steps/s",
        "475",
        "⚠ seeds 0-1 overlap the seeds the BongDQN preset for CartPole-v1 was tuned on (0-4)",
    ):
        assert needle in summary, needle
    assert summary.count("| bongdqn | final eval |") == 2  # one row in each column's table
    assert (out / "learning_curves.png").stat().st_size > 5_000
    data = json.loads((out / "summary.json").read_text())
    assert data["polyak_tau"] == 1e-3 and data["headline"] == "online" and len(data["warnings"]) == 1
    for agent in ("bongdqn", "dqn"):  # the table's numbers are the curves' last evaluations, per column
        for column in compare.EVALS:
            last = [[r for r in rows if r["agent"] == agent and r["seed"] == s][-1] for s in ("0", "1")]
            want = [float(r[f"eval_{column}_mean"]) for r in last]
            assert data["agents"][agent][column]["final_per_seed"] == pytest.approx(want)
            assert data["agents"][agent][column]["final_mean"] == pytest.approx(np.mean(want))

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
        (["--env", "CartPole-v1", "--seeds", "3-1"], "--seeds"),
        (["--env", "CartPole-v1", "--seeds", "0,x"], "--seeds"),
        (["--env", "CartPole-v1", "--polyak-tau", "0"], "--polyak-tau"),
        (["--env", "CartPole-v1", "--set", "bongdqn.polyak_eval=0.01", "--agents", "bongdqn"], "--polyak-tau"),
    ],
)
def test_usage_errors(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rc = main(["compare", "--steps", "100", "--out", str(tmp_path / "x"), *argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and needle in err, err


def test_deepsea_episodes_to_solve(tmp_path: Path) -> None:
    """bsuite's criterion on a 4×4 DeepSea; DQN's bsuite preset and BongDQN run in process. BongDQN's deep
    exploration solves it (seed 0: episode 13 of 50) and its greedy online policy takes the optimal path."""
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
    solved = s["bongdqn"]["episodes_to_solve_per_seed"][0]
    assert isinstance(solved, int) and 1 <= solved <= 40, solved
    assert s["bongdqn"]["online"]["final_per_seed"] == [pytest.approx(0.99)]  # 4 rights: 1 − 4 · 0.01 / 4
    text = (tmp_path / "ds" / "summary.md").read_text()
    assert "Episodes to solve" in text and f"| bongdqn | {solved} | {solved} | 0/1 | 0/1 | 50 |" in text


def test_solve_criterion_and_auc() -> None:
    import numpy as np

    rec = compare._Recorder.__new__(compare._Recorder)
    rec.episodes, rec.solved_at, rec.failures, rec.success_reported = 0, None, 0, False
    for success in (False, False, False, False, True, False):  # episode 5: 4/5 = 0.8 < 0.9 -> solved
        rec.on_episode(success)
    assert rec.solved_at == 5 and rec.success_reported
    rec.on_episode(None)  # an env that reports no success changes nothing but the episode count
    assert rec.solved_at == 5 and rec.episodes == 7
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


# ------------------------------------------------------------------------------------------- seeds
@pytest.mark.parametrize(
    "value, seeds",
    [
        (3, [0, 1, 2]),
        ("3", [0, 1, 2]),  # a bare N: seeds 0..N-1, as before
        ("100,101", [100, 101]),
        ("100-103", [100, 101, 102, 103]),
        ("0-2,100", [0, 1, 2, 100]),
        (" 5-5 ", [5]),
        ("2, 0-1,1", [0, 1, 2]),  # sorted, duplicates once
        ([7, 3], [3, 7]),
    ],
)
def test_parse_seeds(value: Any, seeds: list[int]) -> None:
    assert compare.parse_seeds(value) == seeds


@pytest.mark.parametrize("value", ["0", 0, -2, "", "a", "1,,2", "3-1", "-1", "1.5", "0-99999", True, [], [1, -1]])
def test_parse_seeds_rejects(value: Any) -> None:
    with pytest.raises(compare.CompareError, match="--seeds") as info:
        compare.parse_seeds(value)
    assert "\n" not in str(info.value)


def test_seeds_text() -> None:
    assert compare.seeds_text([7, 0, 1, 2, 9, 10]) == "0-2,7,9-10"
    assert compare.seeds_text([]) == ""


# ------------------------------------------------------------------------------------------- aggregation
def _fake_run(out: Path, task: dict[str, Any], online: list[float], averaged: list[float], error: str = "") -> None:
    """A finished run on disk without training: its curve (one eval per 300 steps) and result.json."""
    folder = compare.run_dir(out, task["agent"], task["seed"])
    folder.mkdir(parents=True)
    rows = [
        {"step": 300 * i, "eval_mean": o, "eval_std": 0.0, "eval_online_mean": o, "eval_online_std": 0.0,
         "eval_averaged_mean": a, "eval_averaged_std": 0.0, "wall_s": float(i), "env_steps_per_s": 100.0}
        for i, (o, a) in enumerate(zip(online, averaged, strict=True))
    ]
    for row in rows:
        compare._append_row(folder / compare.CURVE, row)
    if error:
        result = compare._failed_result(task, rows, error)
    else:
        result = compare._result(task, compare.COMPLETE, wall_s=3.0, env_steps_per_s=100.0)
    runs.write_json(folder / compare.RESULT, result)


def test_aggregate_metrics_failed_runs_and_tuning_overlap(tmp_path: Path) -> None:
    """Hand-computed metrics for both columns; a failed seed shows 'failed' and is left out of mean ± std;
    seeds 3-4 of CartPole overlap the BongDQN preset's tuning seeds (0-4), 5 does not; the zoo's never do."""
    tasks, _ = compare.plan("CartPole-v1", 900, "3-5", ["bongdqn", "dqn"], 300, 1)
    by = {(t["agent"], t["seed"]): t for t in tasks}
    good = ([10.0, 480.0, 200.0, 500.0], [10.0, 20.0, 30.0, 40.0])
    for seed in (3, 4, 5):
        _fake_run(tmp_path, by[("bongdqn", seed)], *good)
        if seed != 4:
            _fake_run(tmp_path, by[("dqn", seed)], [9.0, 9.0, 9.0, 9.0], [9.0, 9.0, 9.0, 9.0])
    _fake_run(tmp_path, by[("dqn", 4)], [9.0, 12.0], [9.0, 9.0], error="FloatingPointError: non-finite weights")
    s = compare.aggregate(tmp_path, env_id="CartPole-v1", steps=900, eval_every=300, eval_episodes=1,
                          env_kwargs={}, polyak_tau=1e-3)
    bong, dqn = s["agents"]["bongdqn"], s["agents"]["dqn"]
    online, averaged = bong["online"], bong["averaged"]
    assert online["final_per_seed"] == [500.0] * 3 and online["final_std"] == 0.0
    assert online["last3_mean"] == pytest.approx((480 + 200 + 500) / 3)
    assert online["auc_mean"] == pytest.approx((245 + 340 + 350) * 300 / 900)  # trapezoids over 900 steps
    assert online["steps_to_threshold_per_seed"] == [300] * 3 and online["never_reached"] == 0
    assert averaged["final_mean"] == 40.0 and averaged["last3_mean"] == 30.0 and averaged["auc_mean"] == 25.0
    assert averaged["steps_to_threshold_per_seed"] == [None] * 3 and averaged["never_reached"] == 3
    assert dqn["failed"] == 1 and dqn["status_per_seed"] == ["complete", "failed", "complete"]
    for column in compare.EVALS:
        assert dqn[column]["final_per_seed"] == [9.0, None, 9.0] and dqn[column]["final_mean"] == 9.0
    assert dqn["errors"] == {"4": "FloatingPointError: non-finite weights"}
    assert bong["seeds_overlapping_tuning"] == [3, 4] and dqn["seeds_overlapping_tuning"] == []
    flag = "⚠ seeds 3-4 overlap the seeds the BongDQN preset for CartPole-v1 was tuned on (0-4)"
    assert s["warnings"] == [flag]
    md = (tmp_path / "summary.md").read_text()
    assert flag in md and "dqn seed 4: FloatingPointError: non-finite weights" in md
    assert md.count("| dqn | final eval | 9.0 ± 0.0 (n=2) | 1/3 | 9.0 | failed | 9.0 |") == 2  # both columns
    assert "| bongdqn | steps to threshold | median 300; never reached 0/3 | 0/3 | 300 | 300 | 300 |" in md
    assert "| dqn | 3-5 | 1/3 |" in md
    csv_rows = read_csv_rows(tmp_path / "compare.csv")
    assert [r["status"] for r in csv_rows if r["agent"] == "dqn" and r["seed"] == "4"] == ["failed", "failed"]
    json.loads((tmp_path / "summary.json").read_text())  # valid JSON (no NaN)


# ------------------------------------------------------------------------------------------- failures
def test_a_crashing_run_is_reported_as_failed_and_the_others_finish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bongdqn seed 1 raises after 300 steps: it is recorded (partial curve, error) and counted as failed; the
    other runs complete; a rerun retries only the failed one."""
    from bongrl.agents.bong_dqn import BongDQN

    real_learn = BongDQN.learn

    def learn_then_crash(self: BongDQN, total: int, *args: Any, **kwargs: Any) -> Any:
        if self.seed == 1:
            real_learn(self, 300, *args, **kwargs)
            raise FloatingPointError("posterior diverged")
        return real_learn(self, total, *args, **kwargs)

    monkeypatch.setattr(BongDQN, "learn", learn_then_crash)
    kwargs: dict[str, Any] = {"out": tmp_path, "eval_every": 300, "eval_episodes": 1, "quiet": True,
                              "overrides": {"bongdqn": {"hidden": [8]}}}
    res = compare.run_compare("CartPole-v1", 600, "0-1", "bongdqn", **kwargs)
    assert res["failed"] == [("bongdqn-s1", "FloatingPointError: posterior diverged")]
    assert res["ran"] == ["bongdqn-s0"]
    folder = tmp_path / "per_run" / "bongdqn-s1"
    result = json.loads((folder / "result.json").read_text())
    assert result["status"] == "failed" and "posterior diverged" in result["traceback"]
    assert [r["step"] for r in read_csv_rows(folder / "curve.csv")] == ["0", "300"]  # the partial curve
    a = res["summary"]["agents"]["bongdqn"]
    assert a["failed"] == 1 and a["online"]["final_per_seed"][1] is None and a["online"]["final_per_seed"][0]
    md = (tmp_path / "summary.md").read_text()
    assert "| bongdqn | 0-1 | 1/2 |" in md and "| bongdqn | final eval |" in md and "| failed |" in md

    monkeypatch.setattr(BongDQN, "learn", real_learn)
    again = compare.run_compare("CartPole-v1", 600, "0-1", "bongdqn", **kwargs)
    assert again["ran"] == ["bongdqn-s1"] and again["skipped"] == ["bongdqn-s0"] and not again["failed"]
    assert again["summary"]["agents"]["bongdqn"]["failed"] == 0


def _die_on_seed_1(task: dict[str, Any], out: str, queue: Any) -> None:
    """A worker whose process dies without a word for seed 1 (as on an out-of-memory kill)."""
    if task["seed"] == 1:
        os._exit(3)
    compare._worker(task, out, queue)


def test_a_dead_worker_process_is_a_failed_run(tmp_path: Path) -> None:
    tasks, _ = compare.plan("CartPole-v1", 300, "0-1", ["bongdqn"], 300, 1, overrides={"bongdqn": {"hidden": [8]}})
    done: dict[str, dict[str, Any]] = {}
    compare._run_processes(tasks, tmp_path, 2, lambda key, step: None, done.__setitem__, target=_die_on_seed_1)
    assert done["bongdqn-s0"]["status"] == "complete"
    assert done["bongdqn-s1"]["status"] == "failed"
    assert done["bongdqn-s1"]["error"] == "worker process died (exit code 3)"
    assert json.loads((tmp_path / "per_run" / "bongdqn-s1" / "result.json").read_text())["status"] == "failed"


# ------------------------------------------------------------------------------------------- SB3 averaging
def test_sb3_polyak_average_is_the_hand_computed_ema() -> None:
    """The callback's average equals lerp applied to the online weights recorded after every env step (while
    DQN trains); τ = 1 gives exactly the online network, whose averaged copy then acts like the policy."""
    hp = sb3.resolved("dqn", "CartPole-v1", {"policy_kwargs": {"net_arch": [8]}, "learning_starts": 10,
                                              "train_freq": 4, "gradient_steps": 2, "batch_size": 8})
    model = sb3.make_model("dqn", "CartPole-v1", 0, hp)
    tau = 0.1
    average = sb3.PolyakAverage.of(model, "dqn", tau)
    expected = [p.detach().clone() for p in model.q_net.parameters()]
    recorded: list[list[torch.Tensor]] = []

    def record(m: Any, step: int) -> None:
        recorded.append([p.detach().clone() for p in m.q_net.parameters()])

    model.learn(60, callback=[sb3.PolyakHook(average), sb3.EvalHook(record)])
    assert len(recorded) == 60 and not torch.equal(recorded[0][0], recorded[-1][0])  # it trained
    for params in recorded:
        expected = [torch.lerp(e, p, tau) for e, p in zip(expected, params, strict=True)]
    for got, want in zip(average.averaged.parameters(), expected, strict=True):
        torch.testing.assert_close(got, want)
    assert not torch.allclose(expected[0], recorded[-1][0])  # the average lags: not just the online net

    one = sb3.PolyakAverage.of(model, "dqn", 1.0)
    same: list[bool] = []

    def compare_nets(m: Any, step: int) -> None:
        same.append(all(torch.equal(a, o) for a, o in zip(one.averaged.parameters(), m.q_net.parameters())))

    model.learn(20, callback=[sb3.PolyakHook(one), sb3.EvalHook(compare_nets)], reset_num_timesteps=False)
    assert len(same) == 20 and all(same)
    one.update()  # after learn's last training phase (the next env step would do it)
    obs = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)
    assert np.array_equal(one.averaged.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])


def test_sb3_averaged_networks_per_algo() -> None:
    """QR-DQN averages its quantile network and PPO its whole policy; both copies act on a batch."""
    obs = np.zeros((3, 4), dtype=np.float32)
    for algo, over in (("qrdqn", {"policy_kwargs": {"net_arch": [8], "n_quantiles": 5}}),
                       ("ppo", {"policy_kwargs": {"net_arch": [8]}})):
        model = sb3.make_model(algo, "CartPole-v1", 0, sb3.resolved(algo, "CartPole-v1", over))
        average = sb3.PolyakAverage.of(model, algo, 0.5)
        assert average.online is getattr(model, sb3.AVERAGED_NET[algo])
        actions, _ = sb3.predictor(model, average.averaged).predict(obs, deterministic=True)
        assert actions.shape == (3,)
