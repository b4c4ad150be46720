"""The run-directory helpers (:mod:`bongrl.runs`) in isolation: JSON files, metrics.csv, resume truncation, the
learning-curve plot. End-to-end runs that write a whole run directory are in ``test_cli.py`` / ``test_resume.py``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from bongrl import runs

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _strict_json(path: Path):
    """Parse as strict JSON: NaN / Infinity tokens (which Python's json writes by default) are an error."""

    def refuse(token: str):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(path.read_text(), parse_constant=refuse)


# ----------------------------------------------------------------------------------------------- JSON files
def test_write_json_round_trip_with_non_finite_and_foreign_values(tmp_path: Path) -> None:
    obj = {
        "ok": 1.5,
        "nan": math.nan,
        "inf": math.inf,
        "nested": {"neg_inf": -math.inf, "list": [1, math.nan, 2.0], "tuple": (math.inf, "x")},
        "path": Path("a") / "b",
        "np_float": np.float64(0.25),
        "np_int": np.int64(7),
        "np_nan": np.float32("nan"),
        "torch": torch.tensor(3.5),
        3: "int key",
    }
    out = runs.write_json(tmp_path / "sub" / "dir" / "x.json", obj)  # parents are created
    assert out == tmp_path / "sub" / "dir" / "x.json"
    data = _strict_json(out)
    assert data == {
        "ok": 1.5,
        "nan": None,
        "inf": None,
        "nested": {"neg_inf": None, "list": [1, None, 2.0], "tuple": [None, "x"]},
        "path": str(Path("a") / "b"),
        "np_float": 0.25,
        "np_int": 7,
        "np_nan": None,
        "torch": 3.5,
        "3": "int key",
    }
    assert runs.read_json(out) == data
    assert out.read_text().endswith("}\n")  # indented, with a final newline


def test_write_json_is_atomic(tmp_path: Path) -> None:
    """A failed write leaves the previous file intact and no temporary file behind; a successful one replaces it
    in one step (no temporary file left either)."""
    path = tmp_path / "config.json"
    runs.write_json(path, {"v": 1})
    before = path.read_bytes()
    with pytest.raises(TypeError):
        runs.write_json(path, {"v": object()})  # not serialisable: fails half-way through json.dump
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]
    runs.write_json(path, {"v": 2})
    assert runs.read_json(path) == {"v": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_default_run_dir() -> None:
    assert runs.default_run_dir("CartPole-v1", "bongdqn", 3) == Path("runs") / "CartPole-v1-bongdqn-s3"
    assert runs.default_run_dir("bongrl/DeepSea-v0", "bandit", 0, root="/tmp/r") == Path(
        "/tmp/r/bongrl_DeepSea-v0-bandit-s0"
    )


def test_versions_name_the_libraries() -> None:
    v = runs.versions()
    assert {"bongrl", "torch", "gymnasium", "numpy", "python", "platform"} <= set(v)
    assert v["torch"] == torch.__version__.split("+")[0] or v["torch"] == torch.__version__


# ------------------------------------------------------------------------------------------------ metrics.csv
def test_metrics_writer_columns_format_and_flush(tmp_path: Path) -> None:
    path = tmp_path / runs.METRICS
    with runs.MetricsWriter(path, runs.EPISODE_COLUMNS) as w:
        w.write(kind="episode", step=10, episode=1, **{"return": 1 / 3}, length=10, wall_s=0.123456789)
        # flushed row by row: readable while the writer is still open (a killed run keeps its history)
        rows = runs.read_metrics(path)
        assert len(rows) == 1 and list(rows[0]) == runs.EPISODE_COLUMNS
        w.write(kind="eval", step=20, eval_mean=500.0, eval_std=0.0, unknown_column="dropped")
    rows = runs.read_metrics(path)
    assert rows[0]["return"] == "0.333333" and rows[0]["wall_s"] == "0.123457"  # floats: 6 significant digits
    assert rows[0]["eval_mean"] == ""  # a column not written is empty
    assert rows[1]["kind"] == "eval" and rows[1]["eval_mean"] == "500" and "unknown_column" not in rows[1]
    w.close()  # closing twice is harmless


def test_metrics_writer_appends_on_resume(tmp_path: Path) -> None:
    """An existing file is appended to with its header kept (one header line); an empty file gets one."""
    path = tmp_path / runs.METRICS
    with runs.MetricsWriter(path, runs.BANDIT_COLUMNS) as w:
        w.write(kind="round", round=1, arm=0, reward=1.0, regret=0.0, cumulative_regret=0.0, wall_s=0.1)
    with runs.MetricsWriter(path, runs.BANDIT_COLUMNS) as w:
        w.write(kind="round", round=2, arm=1, reward=0.0, regret=1.0, cumulative_regret=1.0, wall_s=0.2)
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(runs.BANDIT_COLUMNS) and lines.count(lines[0]) == 1
    assert [r["round"] for r in runs.read_metrics(path)] == ["1", "2"]
    empty = tmp_path / "empty.csv"
    empty.touch()
    with runs.MetricsWriter(empty, ["a", "b"]) as w:
        w.write(a=1, b=2)
    assert runs.read_metrics(empty) == [{"a": "1", "b": "2"}]


def test_read_metrics_of_a_missing_file_is_empty(tmp_path: Path) -> None:
    assert runs.read_metrics(tmp_path / "nope.csv") == []


def _metrics_file(path: Path, steps: list[int | str]) -> None:
    with runs.MetricsWriter(path, ["kind", "step", "value"]) as w:
        for s in steps:
            w.write(kind="episode" if s != "" else "eval", step=s, value=1.0)


def test_truncate_metrics_drops_rows_after_the_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / runs.METRICS
    _metrics_file(path, [10, 20, "", 30, 40])
    assert runs.truncate_metrics(path, "step", 20) == 2
    rows = runs.read_metrics(path)
    assert [r["step"] for r in rows] == ["10", "20", ""]  # a row without the key is kept
    assert path.read_text().splitlines()[0] == "kind,step,value"
    assert sorted(p.name for p in tmp_path.iterdir()) == [runs.METRICS]  # replaced atomically, no temp file


def test_truncate_metrics_leaves_a_clean_file_untouched(tmp_path: Path) -> None:
    path = tmp_path / runs.METRICS
    _metrics_file(path, [10, 20])
    before, mtime = path.read_bytes(), path.stat().st_mtime_ns
    assert runs.truncate_metrics(path, "step", 20) == 0
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime
    assert runs.truncate_metrics(tmp_path / "missing.csv", "step", 0) == 0


def test_truncate_metrics_drops_torn_rows(tmp_path: Path) -> None:
    """A row cut short by a killed process (no final newline), a row with too few or too many fields and a row
    whose key does not parse are all dropped; the complete rows before them are kept."""
    path = tmp_path / runs.METRICS
    path.write_text("kind,step,value\nepisode,10,1\nepisode,11\nepisode,12,1,extra\nepisode,abc,1\nepisode,13,1\n"
                    "episode,1")
    assert runs.truncate_metrics(path, "step", 100) == 4
    assert [r["step"] for r in runs.read_metrics(path)] == ["10", "13"]


def test_truncate_metrics_removes_a_file_with_a_torn_header(tmp_path: Path) -> None:
    path = tmp_path / runs.METRICS
    path.write_text("kind,st")
    assert runs.truncate_metrics(path, "step", 100) == 1
    assert not path.exists()  # the writer starts it afresh, header included


# ------------------------------------------------------------------------------------------- learning curve
def _episode_run(run: Path, *, averaged: bool) -> None:
    run.mkdir()
    with runs.MetricsWriter(run / runs.METRICS, runs.EPISODE_COLUMNS) as w:
        for i in range(30):
            w.write(kind="episode", step=10 * (i + 1), episode=i + 1, **{"return": float(i)}, length=10, wall_s=0.0)
        for s in (100, 200, 300):
            extra = {"eval_averaged_mean": 3.0, "eval_averaged_std": 0.5} if averaged else {}
            w.write(kind="eval", step=s, eval_mean=float(s) / 10, eval_std=1.0, **extra)


@pytest.mark.parametrize("averaged", [False, True])
def test_plot_learning_curve_writes_a_png(tmp_path: Path, averaged: bool) -> None:
    run = tmp_path / "run"
    _episode_run(run, averaged=averaged)
    runs.write_json(run / runs.CONFIG, {"env": "CartPole-v1", "agent": "bongdqn", "posterior": "dlr",
                                        "exploration": "thompson", "seed": 0})
    out = runs.plot_learning_curve(run)
    assert out == run / runs.PLOT
    assert out.read_bytes()[:8] == PNG_MAGIC and out.stat().st_size > 1000


def test_plot_learning_curve_bandit_and_a_config_without_the_title_fields(tmp_path: Path) -> None:
    run = tmp_path / "bandit"
    run.mkdir()
    with runs.MetricsWriter(run / runs.METRICS, runs.BANDIT_COLUMNS) as w:
        for t in range(1, 21):
            w.write(kind="round", round=t, arm=t % 3, reward=1.0, regret=0.1, cumulative_regret=0.1 * t, wall_s=0.0)
    runs.write_json(run / runs.CONFIG, {"env": "bongrl/WheelBandit-v0"})  # no agent/seed: the folder name is used
    out = runs.plot_learning_curve(run, window=5)
    assert out is not None and out.read_bytes()[:8] == PNG_MAGIC


def test_plot_learning_curve_with_nothing_to_plot(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    assert runs.plot_learning_curve(run) is None  # no metrics.csv yet
    (run / runs.METRICS).write_text(",".join(runs.EPISODE_COLUMNS) + "\n")
    assert runs.plot_learning_curve(run) is None  # header only
    assert not (run / runs.PLOT).exists()
    assert os.listdir(run) == [runs.METRICS]
