"""``bongrl tune``: a tiny Optuna study writes a preset that ``train --preset`` accepts, and resumes from its
storage (interrupted trials are redone, finished ones are not). In-process cli.main calls, tiny budgets."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from _helpers import read_csv_rows

from bongrl import cli, presets, tune

TINY = [
    "--env",
    "CartPole-v1",
    "--steps",
    "100",
    "--eval-every",
    "50",
    "--eval-episodes",
    "1",
    "--set",
    "hidden=[16]",
    "--study",
    "t",
    "--quiet",
]


def tune_args(tmp: Path, trials: int, *extra: str) -> list[str]:
    return [
        "tune",
        *TINY,
        "--trials",
        str(trials),
        "--out",
        str(tmp / "out"),
        "--storage",
        f"sqlite:///{tmp / 'study.db'}",
        *extra,
    ]


def states(tmp: Path) -> list[str]:
    study = optuna.load_study(study_name="t", storage=f"sqlite:///{tmp / 'study.db'}")
    return [t.state.name for t in study.get_trials(deepcopy=False)]


def finished(tmp: Path) -> int:
    return sum(s in ("COMPLETE", "PRUNED") for s in states(tmp))


def test_study_writes_preset_train_accepts_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # 1. Ctrl-C during the second trial: exit 130, one finished trial kept, the interrupted one marked FAIL
    real = tune.train_trial
    calls = {"n": 0}

    def interrupted_second(*a, **k):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(tune, "train_trial", interrupted_second)
    assert cli.main(tune_args(tmp_path, 3)) == 130
    assert "rerun the same command" in capsys.readouterr().err
    assert states(tmp_path) == ["COMPLETE", "FAIL"]
    monkeypatch.setattr(tune, "train_trial", real)

    # 2. the same command resumes: runs until 3 finished trials (the interrupted one does not count)
    assert cli.main(tune_args(tmp_path, 3)) == 0
    assert finished(tmp_path) == 3 and len(states(tmp_path)) == 4
    out = tmp_path / "out"
    preset = presets.load_file(out / "best_preset.json")
    assert preset["agent"] == "bongdqn" and preset["steps"] == 100
    hp = preset["hyperparameters"]
    # fixed by --set; the CartPole preset adds nothing (its recipe is BongDQN's class defaults)
    assert hp["hidden"] == [16] and "learning_starts" not in hp
    assert preset["posterior"] == "dlr" and preset["exploration"] == "thompson"
    assert set(tune.searched_keys("dlr", "thompson")) <= set(hp)  # the list itself: test_search_space
    rows = read_csv_rows(out / "trials.csv")
    assert [r["state"] for r in rows] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    best = json.loads((out / "best_trial.json").read_text())
    assert best["value"] == max(float(r["value"]) for r in rows if r["value"])

    # 3. train --preset accepts the tuned preset
    run_dir = tmp_path / "train"
    assert (
        cli.main(
            [
                "train",
                "--env",
                "CartPole-v1",
                "--preset",
                str(out / "best_preset.json"),
                "--steps",
                "60",
                "--eval-every",
                "0",
                "--eval-episodes",
                "1",
                "--device",
                "cpu",
                "--out",
                str(run_dir),
                "--quiet",
            ]
        )
        == 0
    )
    assert json.loads((run_dir / "eval.json").read_text())["step"] == 60

    # 4. --trials 4 runs exactly one more trial; rerunning it runs none
    assert cli.main(tune_args(tmp_path, 4)) == 0
    assert finished(tmp_path) == 4 and len(states(tmp_path)) == 5
    assert cli.main(tune_args(tmp_path, 4)) == 0
    assert len(states(tmp_path)) == 5

    # 5. a trial left RUNNING by a killed process is not counted: --trials 5 runs exactly one more
    optuna.load_study(study_name="t", storage=f"sqlite:///{tmp_path / 'study.db'}").ask()
    assert cli.main(tune_args(tmp_path, 5)) == 0
    assert finished(tmp_path) == 5 and states(tmp_path).count("RUNNING") == 1 and len(states(tmp_path)) == 7

    # 6. resuming with other settings is refused (trials would not be comparable)
    capsys.readouterr()
    assert cli.main([*tune_args(tmp_path, 6), "--objective", "auc"]) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "objective" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--trials", "0"], "--trials must be an integer >= 1"),
        (["--trials", "2", "--steps", "0"], "--steps must be"),
        (["--trials", "2", "--eval-episodes", "0"], "--eval-episodes must be"),
        (["--trials", "2", "--storage", "runs/tune.db"], "database URL"),
        (["--trials", "2", "--storage", "sqlite:/x.db"], "three slashes"),
        (["--trials", "2", "--storage", "nosuchdialect://x"], "cannot open --storage"),
        (["--trials", "2", "--set", "nosuch=1"], "unknown bongdqn hyperparameter"),
        (["--trials", "2", "--posterior", "nosuch"], "nosuch"),
    ],
)
def test_bad_arguments_exit_2_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], needle: str
) -> None:
    rc = cli.main(["tune", "--env", "CartPole-v1", "--out", str(tmp_path / "o"), *extra])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_bad_env_and_bandit_preset(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["tune", "--env", "CartPol-v1", "--trials", "2"]) == 2
    assert "unknown environment id" in capsys.readouterr().err
    assert (
        cli.main(["tune", "--env", "CartPole-v1", "--trials", "2", "--preset", "bongrl/WheelBandit-v0"]) == 2
    )
    assert "needs an episodic agent" in capsys.readouterr().err


def test_search_space() -> None:
    keys = tune.searched_keys("dlr", "thompson")
    assert keys == [
        "prior_std",
        "obs_std",
        "rank",
        "forget",
        "process_noise",
        "target_update",
        "replay_every",
        "td_clip",
        "every",
    ]
    assert "rank" not in tune.searched_keys("diag", "ucb") and "beta" in tune.searched_keys("diag", "ucb")
    assert "damping" not in tune.searched_keys("kfac", "greedy")  # neither kfac nor BongDQNConfig takes it
    assert "obs_std" not in tune.searched_keys("dlr", "thompson", {"obs_std"})
    fixed = {
        "prior_std": 0.5,
        "obs_std": 1.0,
        "rank": 4,
        "forget": 1.0,
        "process_noise_on": False,
        "target_update": 20,
        "replay_every": 4,
        "td_clip": 0.0,
        "every": 0,
    }
    hp = tune.suggest(optuna.trial.FixedTrial(fixed), keys)
    assert hp["process_noise"] == 0.0 and hp["rank"] == 4
    on = tune.suggest(
        optuna.trial.FixedTrial({**fixed, "process_noise_on": True, "process_noise": 1e-5}), keys
    )
    assert on["process_noise"] == 1e-5
    assert set(tune.SEARCH_SPACE) >= set(keys) and "prior_std" in tune.search_space_text()


def test_train_trial_stops_when_the_pruner_says_so() -> None:
    """``report`` returning True stops training at that evaluation (no final eval); False trains the budget."""
    from bongrl.runner import RunSpec

    spec = RunSpec.resolve("CartPole-v1", posterior="diag", exploration="thompson", seed=0, device="cpu",
                           steps=200, eval_every=50, eval_episodes=1)
    setup = {"spec": spec}
    seen: list[int] = []
    cut = tune.train_trial(setup, {"hidden": [8]}, lambda mean, step: seen.append(step) is None)
    assert cut["pruned"] and cut["steps"] == 50 and seen == [50] and [s for s, _ in cut["evals"]] == [50]
    full = tune.train_trial(setup, {"hidden": [8]}, lambda mean, step: False)
    assert not full["pruned"] and full["steps"] == 200
    assert [s for s, _ in full["evals"]] == [50, 100, 150, 200]  # every periodic eval, then the final one


def test_median_pruner_prunes_a_poor_trial_and_failures_count_as_pruned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The study's wiring, without training: trials report scripted eval means; after 3 start-up trials at 10, a
    trial reporting 0 past the warm-up (40% of 100 steps) is pruned at its first report, and a trial whose
    training raises is recorded as pruned with the error."""
    script: list[float | None] = [10.0, 10.0, 10.0, 0.0, None]  # None: training raises

    def scripted(setup: dict, hyper: dict, report=None) -> dict:  # type: ignore[no-untyped-def]
        value = script.pop(0)
        if value is None:
            raise FloatingPointError("posterior diverged")
        evals = []
        for step in (50, 100):
            evals.append((step, value))
            if report is not None and report(value, step):
                return {"evals": evals, "pruned": True, "final": value, "auc": value, "steps": step}
        return {"evals": evals, "pruned": False, "final": value, "auc": value, "steps": 100}

    monkeypatch.setattr(tune, "train_trial", scripted)
    assert cli.main(tune_args(tmp_path, 5)) == 0
    assert states(tmp_path) == ["COMPLETE", "COMPLETE", "COMPLETE", "PRUNED", "PRUNED"] and not script
    study = optuna.load_study(study_name="t", storage=f"sqlite:///{tmp_path / 'study.db'}")
    poor, failed = study.trials[3], study.trials[4]
    assert poor.user_attrs["steps_trained"] == 50 and "error" not in poor.user_attrs
    assert failed.user_attrs["error"] == "FloatingPointError: posterior diverged"
    assert [r["state"] for r in read_csv_rows(tmp_path / "out" / "trials.csv")] == states(tmp_path)
