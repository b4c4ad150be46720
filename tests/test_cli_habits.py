"""The command line's habits: outputs never overwritten, ``--env-kwargs`` everywhere, no torch for ``--help``,
plain progress lines off a terminal, exit 2 for every bad argument, failure messages naming only existing files,
and file modes that follow the umask. In-process ``cli.main`` calls with tiny budgets (subprocesses only where
the check is about a fresh interpreter)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from _helpers import register_nan_reward_env

from bongrl import checkpoint, cli, compare, runs, tune
from bongrl.compare.plan import plan_conflict
from bongrl.progress import LineProgress, progress

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
TINY_TRAIN = ["--steps", "60", "--eval-every", "0", "--eval-episodes", "1", "--set", "hidden=[8]", "--device", "cpu",
              "--quiet"]


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``folder``: its bytes and modification time."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob("*")
            if p.is_file()}


# ------------------------------------------------------------------------------------------------ 1. train
def test_train_twice_keeps_the_first_run_and_writes_the_second_to_dir_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # the default --out, as `make train` uses it
    first = Path("runs/CartPole-v1-bongdqn-s0")
    assert cli.main(["train", "--env", "CartPole-v1", *TINY_TRAIN]) == 0
    before = _snapshot(first)
    assert runs.CHECKPOINT in before and runs.CONFIG in before
    capsys.readouterr()
    assert cli.main(["train", "--env", "CartPole-v1", *TINY_TRAIN]) == 0
    out = capsys.readouterr().out
    assert _snapshot(first) == before  # byte-identical, not even rewritten
    second = Path("runs/CartPole-v1-bongdqn-s0_1")
    assert runs.holds_run(second) and json.loads((second / runs.CONFIG).read_text())["out"] == str(second)
    assert f"{first} exists; writing to {second} (use --resume {first} to continue it)" in out
    assert cli.main(["train", "--env", "CartPole-v1", *TINY_TRAIN, "--out", str(first)]) == 0  # explicit: same rule
    assert runs.holds_run("runs/CartPole-v1-bongdqn-s0_2") and _snapshot(first) == before


def test_train_into_an_empty_dir_and_a_non_run_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["train", "--env", "CartPole-v1", *TINY_TRAIN, "--out", str(empty)]) == 0
    assert runs.holds_run(empty)  # an empty directory is free
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("mine\n")
    capsys.readouterr()
    assert cli.main(["train", "--env", "CartPole-v1", *TINY_TRAIN, "--out", str(other)]) == 0
    out = capsys.readouterr().out
    assert f"{other} exists; writing to {other}_1\n" in out  # not a run: no --resume hint
    assert sorted(p.name for p in other.iterdir()) == ["todo.txt"] and runs.holds_run(f"{other}_1")


def test_free_dir_rule(tmp_path: Path) -> None:
    base = tmp_path / "r"
    assert runs.free_dir(base) == base and not base.exists()  # nothing is created
    base.mkdir()
    assert runs.free_dir(base) == base
    (base / "x").write_text("")
    (tmp_path / "r_1").mkdir()
    (tmp_path / "r_1" / "y").write_text("")
    assert runs.free_dir(base) == tmp_path / "r_2"
    assert runs.free_dir(base, reusable=lambda d: (d / "y").exists()) == tmp_path / "r_1"
    with pytest.raises(cli.UsageError, match="is a file"):
        runs.free_dir(base / "x")


# ------------------------------------------------------------------------------------------------ 2. tune
def _scripted_trial(setup: dict, hyper: dict, report: Any = None) -> dict:
    """A stand-in for tune.train_trial: no training, one eval at the budget."""
    return {"evals": [(setup["steps"], 1.0)], "pruned": False, "final": 1.0, "auc": 1.0, "steps": setup["steps"]}


def _n_trials(db: str) -> int:
    import optuna

    return len(optuna.load_study(study_name="tune-cartpole_v1", storage=f"sqlite:///{db}").trials)


TUNE = ["tune", "--env", "CartPole-v1", "--steps", "100", "--eval-every", "0", "--eval-episodes", "1", "--quiet"]


def test_tune_defaults_under_runs_resumes_its_own_dir_and_moves_on_for_another_study(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tune, "train_trial", _scripted_trial)
    base = Path("runs/tune_cartpole_v1")
    assert cli.main([*TUNE, "--trials", "2"]) == 0
    assert (base / "study.db").is_file() and (base / "trials.csv").is_file() and not Path("results").exists()
    first = _snapshot(base)
    # another study (other settings) with the same default DIR: DIR_1, the first study's files untouched
    capsys.readouterr()
    assert cli.main([*TUNE, "--trials", "2", "--objective", "auc"]) == 0
    assert f"writing to {base}_1" in capsys.readouterr().out
    assert _snapshot(base) == first
    assert _n_trials(f"{base}_1/study.db") == 2
    # the first command again, asking for one more trial: resumes in DIR (no DIR_2)
    assert cli.main([*TUNE, "--trials", "3"]) == 0
    assert _n_trials(f"{base}/study.db") == 3
    assert not Path(f"{base}_2").exists()
    # a DIR holding other files is not a study's: left alone
    stray = tmp_path / "mine"
    stray.mkdir()
    (stray / "notes.txt").write_text("x")
    assert cli.main([*TUNE, "--trials", "1", "--out", str(stray)]) == 0
    assert [p.name for p in stray.iterdir()] == ["notes.txt"] and (tmp_path / "mine_1" / "trials.csv").is_file()


def test_tune_passes_env_kwargs_to_the_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict] = []

    def capture(setup: dict, hyper: dict, report: Any = None) -> dict:
        seen.append(setup["spec"].env_kwargs)
        env = setup["spec"].make_env()
        seen.append({"size": env.unwrapped.size})
        env.close()
        return _scripted_trial(setup, hyper, report)

    monkeypatch.setattr(tune, "train_trial", capture)
    argv = ["tune", "--env", "bongrl/DeepSea-v0", "--env-kwargs", "size=4", "--steps", "40", "--eval-every", "0",
            "--trials", "1", "--quiet", "--out", str(tmp_path / "t")]
    assert cli.main(argv) == 0
    assert seen == [{"size": 4}, {"size": 4}]
    marker = json.loads((tmp_path / "t" / tune.MARKER).read_text())
    assert marker["setup"]["env_kwargs"] == {"size": 4}


# ------------------------------------------------------------------------------------------------ 2. compare
def _compare(out: Path, hidden: list[int], seeds: str = "0-0") -> dict[str, Any]:
    return compare.run_compare("CartPole-v1", 100, seeds, "bongdqn", out=out, eval_every=50, eval_episodes=1,
                               overrides={"bongdqn": {"hidden": hidden}}, quiet=True)


def test_compare_resumes_its_own_plan_and_never_replaces_another(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = tmp_path / "cmp"
    assert _compare(base, [8])["ran"] == ["bongdqn-s0"]
    first = _snapshot(base / compare.RUNS)
    res = _compare(base, [16])  # another plan: DIR_1, the first one's runs untouched
    assert res["out"] == tmp_path / "cmp_1" and res["ran"] == ["bongdqn-s0"]
    assert "bongdqn-s0 ran with other settings" in capsys.readouterr().out
    assert _snapshot(base / compare.RUNS) == first
    again = _compare(base, [8])  # the first plan again: resumed in DIR
    assert again["out"] == base and again["skipped"] == ["bongdqn-s0"] and again["ran"] == []
    tasks = compare.plan("CartPole-v1", 100, "0-1", ["bongdqn"], 50, 1, overrides={"bongdqn": {"hidden": [8]}})[0]
    assert plan_conflict(base, tasks) == ""  # more seeds of the same settings extend it
    (base / "notes.txt").write_text("x")
    assert "not a comparison's" in plan_conflict(base, tasks)


def test_compare_env_kwargs_reach_bongdqn_and_sb3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DeepSea with --env-kwargs size=4: 40 steps are 10 episodes for both agents (the default size, 10, gives 4);
    the default output directory is named after the kwargs."""
    monkeypatch.chdir(tmp_path)
    argv = ["compare", "--env", "bongrl/DeepSea-v0", "--env-kwargs", "size=4", "--steps", "40", "--seeds", "0-0",
            "--agents", "bongdqn,dqn", "--eval-every", "20", "--eval-episodes", "1", "--quiet"]
    assert cli.main(argv) == 0
    out = Path("runs/compare_DeepSea-v0-size4")
    for agent in ("bongdqn", "dqn"):
        res = json.loads((out / compare.RUNS / f"{agent}-s0" / compare.RESULT).read_text())
        assert res["task"]["env_kwargs"] == {"size": 4} and res["train_episodes"] == 10, agent


# ------------------------------------------------------------------------------------------------ 4. imports
def test_help_and_import_bongrl_do_not_import_torch() -> None:
    code = (
        "import sys, contextlib, io\n"
        "import bongrl\n"
        "assert 'torch' not in sys.modules, 'import bongrl'\n"
        "import gymnasium as gym\n"
        "assert 'bongrl/DeepSea-v0' in gym.registry\n"
        "from bongrl import cli\n"
        "for argv in (['--help'], ['train', '--help'], ['compare', '--help'], ['tune', '--help']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        try:\n"
        "            cli.main(argv)\n"
        "        except SystemExit as exc:\n"
        "            assert exc.code == 0, argv\n"
        "    assert 'torch' not in sys.modules, argv\n"
        "assert bongrl.presets.get('CartPole-v1')['steps'] > 0\n"
        "assert 'torch' not in sys.modules, 'bongrl.presets'\n"
        "assert bongrl.BONG.__name__ == 'BONG' and 'torch' in sys.modules\n"
        "print('ok')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr


def test_unknown_attribute_of_bongrl_is_an_attribute_error() -> None:
    import bongrl

    with pytest.raises(AttributeError, match="nosuch"):
        bongrl.nosuch  # noqa: B018
    assert "presets" in dir(bongrl) and "BONG" in dir(bongrl)


# ------------------------------------------------------------------------------------------------ 5. progress
def test_line_progress_off_a_terminal_is_a_few_lines() -> None:
    buf = io.StringIO()
    with progress(100_000, "step", file=buf) as bar:
        assert isinstance(bar, LineProgress)
        for i in range(100_000):
            bar.update(1)
            if i % 1000 == 0:
                bar.set_postfix(ret=23.125, ep=i // 1000)
    lines = buf.getvalue().splitlines()
    assert 10 <= len(lines) <= 12, lines
    assert lines[0].startswith("step 10000/100000 (10%) ") and " step/s " in lines[0]
    assert lines[-1].startswith("step 100000/100000 (100%)") and lines[-1].endswith("ret=23.12 ep=99")
    assert all(re.fullmatch(r"step \d+/100000 \(\d+%\)( \d+ step/s)?( ret=\S+ ep=\d+)?", ln) for ln in lines)


def test_line_progress_writes_every_30_seconds_and_a_final_line() -> None:
    now = [0.0]
    buf = io.StringIO()
    bar = LineProgress(1000, "round", file=buf, clock=lambda: now[0])
    for _ in range(5):  # 5 units in 5 x 31 s: far below 10 %, one line per 30 s
        now[0] += 31.0
        bar.update(1)
    bar.close()
    bar.close()  # idempotent
    lines = buf.getvalue().splitlines()
    assert lines == [f"round {n}/1000 (0%) 0 round/s" for n in range(1, 6)], lines  # the last already shows 5


def test_progress_disabled_writes_nothing_and_a_terminal_gets_tqdm() -> None:
    buf = io.StringIO()
    with progress(10, "step", enabled=False, file=buf) as bar:
        bar.update(10)
    assert buf.getvalue() == ""

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    from tqdm.auto import tqdm

    bar = progress(10, "step", file=Tty())
    assert isinstance(bar, tqdm)
    bar.close()


# ------------------------------------------------------------------------------------------------ 6. exit 2
@pytest.fixture(scope="module")
def not_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file, a folder without a run, and folders with a bad config or a bad checkpoint."""
    root = tmp_path_factory.mktemp("bad")
    (root / "afile").write_text("x\n")
    (root / "empty").mkdir()
    for name, config in (("listconfig", "[1]"), ("junkckpt", '{"env": "CartPole-v1"}'),
                         ("badagent", '{"env": "CartPole-v1", "agent": "nope"}')):
        (root / name).mkdir()
        (root / name / runs.CONFIG).write_text(config)
        (root / name / runs.CHECKPOINT).write_bytes(b"\x80\x04junk")
    return root


T = ["train", "--env", "CartPole-v1"]
C = ["compare", "--env", "CartPole-v1", "--steps", "100"]
U = ["tune", "--env", "CartPole-v1", "--trials", "1"]
BAD: list[tuple[list[str], str]] = [
    (T + ["--seed", "-1"], "--seed"), (T + ["--seed", "x"], "--seed"), (T + ["--steps", "0"], "--steps"),
    (T + ["--steps", "1e3"], "--steps"), (T + ["--eval-episodes", "0"], "--eval-episodes"),
    (T + ["--eval-every", "-1"], "--eval-every"), (T + ["--checkpoint-every", "0"], "--checkpoint-every"),
    (T + ["--health", "0"], "--health"), (T + ["--device", "tpu"], "--device"), (T + ["--set", "=1"], "KEY=VALUE"),
    (T + ["--set", "gamma=high"], "gamma"), (T + ["--env-kwargs", "size"], "--env-kwargs"),
    (T + ["--env-kwargs", "nosuch=1"], "nosuch"), (T + ["--out", "{root}/afile"], "is a file"),
    (T + ["--out", "{root}/afile/sub"], "is a file"), (T + ["--preset", "{root}/afile"], "preset"),
    (["train", "--resume", "{root}/afile"], "not a directory"), (["train", "--resume", "{root}/empty"], "missing"),
    (["train", "--resume", "{root}/listconfig"], "not a valid bongrl checkpoint"),
    (["train", "--resume", "{root}/junkckpt"], "not a valid bongrl checkpoint"),
    (["--threads", "0", "train"], "--threads"), (["nosuch"], "invalid choice"),
    (["evaluate", "{root}/afile"], "not a directory"), (["evaluate", "{root}/empty"], "not a run directory"),
    (["evaluate", "{root}/listconfig"], "not a bongrl run config"), (["evaluate", "{root}/badagent"], "nope"),
    (["evaluate", "{root}/junkckpt"], "not a valid bongrl checkpoint"),
    (["evaluate", "{root}/junkckpt", "--episodes", "0"], "--episodes"),
    (["evaluate", "{root}/junkckpt", "--seed", "-1"], "--seed"), (["plugins", "extra"], "unrecognized"),
    (C + ["--steps", "0"], "--steps"), (C + ["--seeds", "0"], "--seeds"), (C + ["--seeds", "-1"], "--seeds"),
    (C + ["--eval-every", "0"], "--eval-every"), (C + ["--eval-episodes", "0"], "--eval-episodes"),
    (C + ["--polyak-tau", "x"], "--polyak-tau"), (C + ["--env-kwargs", "x"], "--env-kwargs"),
    (C + ["--env-kwargs", "nosuch=1"], "nosuch"), (C + ["--set", "bongdqn.x"], "AGENT.KEY=VALUE"),
    (C + ["--out", "{root}/afile"], "is a file"), (["compare", "--env", "Nope-v0"], "unknown environment"),
    (["compare", "--env", "bongrl/DeepSea-v0", "--size", "4", "--env-kwargs", "size=5"], "--size"),
    (["compare", "--env", "bongrl/DeepSea-v0", "--size", "0"], "size"),
    (U + ["--trials", "0"], "--trials"), (U + ["--seed", "-1"], "--seed"), (U + ["--steps", "-1"], "--steps"),
    (U + ["--study", " "], "--study"), (U + ["--env-kwargs", "x"], "--env-kwargs"),
    (U + ["--env-kwargs", "nosuch=1"], "nosuch"), (U + ["--out", "{root}/afile"], "is a file"),
    (U + ["--objective", "x"], "--objective"), (["tune", "--env", "Nope-v0", "--trials", "1"], "unknown environment"),
]


@pytest.mark.parametrize(("argv", "needle"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_arguments_exit_2_with_one_line(
    argv: list[str], needle: str, not_runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)  # nothing may be written on a usage error
    before = _snapshot(not_runs)
    try:
        rc = cli.main([a.replace("{root}", str(not_runs)) for a in argv])
    except SystemExit as exc:  # argparse's own errors
        rc = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("bongrl: error: ") and needle in err[0], err
    assert not any(tmp_path.iterdir()) and _snapshot(not_runs) == before


# ------------------------------------------------------------------------------------------------ 7. messages
@pytest.mark.filterwarnings("ignore:.*NaN value")
def test_a_failure_before_any_checkpoint_names_only_files_that_exist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    register_nan_reward_env("test/NaNRewardHabits-v0")
    out = tmp_path / "diag0"
    argv = ["train", "--env", "test/NaNRewardHabits-v0", "--steps", "10", "--set", "hidden=[4]", "--out", str(out),
            "--quiet", "--device", "cpu", "--posterior", "diag"]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "non-finite" in err[0], err
    assert not (out / runs.CHECKPOINT).exists() and "checkpoint" not in err[0]
    for name in re.findall(r"[\w.]+\.(?:csv|png|json|safetensors)", err[0]):
        assert (out / name).is_file(), name


def test_kept_outputs_and_the_compare_failure_line(tmp_path: Path) -> None:
    from bongrl.compare.execute import _done_line
    from bongrl.runner.train import kept_outputs

    assert kept_outputs(tmp_path) == ""
    (tmp_path / runs.METRICS).write_text("kind,step\n")  # a header only: nothing kept
    assert kept_outputs(tmp_path) == ""
    (tmp_path / runs.METRICS).write_text("kind,step\nepisode,5\n")
    (tmp_path / runs.CHECKPOINT).write_bytes(b"")
    assert kept_outputs(tmp_path) == f"{runs.METRICS}, {runs.CHECKPOINT} in {tmp_path}"
    none = {"status": "failed", "error": "ValueError: x", "evaluations": 0}
    assert "before its first evaluation" in _done_line("dqn-s0", none) and "curve" not in _done_line("dqn-s0", none)
    assert "partial curve kept" in _done_line("dqn-s0", {**none, "evaluations": 2})


# ------------------------------------------------------------------------------------------------ 8. modes
@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_follow_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    old = os.umask(umask)
    try:
        assert runs.file_mode() == mode
        json_path = runs.write_json(tmp_path / "a.json", {"x": 1})
        ckpt = checkpoint.save_checkpoint(tmp_path / "c.safetensors", {"w": torch.zeros(2)}, {"k": 1})
        metrics = tmp_path / "m.csv"
        metrics.write_text("kind,step\nepisode,1\nepisode,9\n")
        os.chmod(metrics, 0o600 if mode != 0o600 else 0o644)  # so that the rewrite has to set it
        assert runs.truncate_metrics(metrics, "step", 5) == 1
        for path in (json_path, ckpt, metrics):
            assert path.stat().st_mode & 0o777 == mode, path
        assert checkpoint.read_meta(ckpt) == {"k": 1}
    finally:
        os.umask(old)
