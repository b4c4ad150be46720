"""Pack an experiment's raw per-run tree into one gzipped CSV, and publish a comparison's summary into results/.

``results/`` keeps, per experiment, its summary (markdown + JSON), its figure(s), the command that made it and at
most one packed CSV of the raw per-run data (``runs.csv.gz``). The raw per-run trees themselves belong under
``runs/`` (git-ignored). This script turns such a tree into that one CSV (stdlib ``csv`` + ``gzip`` only) and
checks that the summary's numbers can be recomputed from it.

Layouts it reads (detected from SRC):

* **compare** — ``SRC/per_run/<agent>-s<seed>/curve.csv`` + ``result.json`` (``bongrl compare``; older trees have
  the run folders directly in ``SRC``). One packed row per evaluation: ``run``, ``agent``, ``seed``, ``status``,
  the curve's columns, then every field of ``result.json`` as ``result.<dotted.key>`` (settings included). These
  are compare.csv's rows at full precision plus each run's settings and result, so compare.csv is not kept.
* **train** — ``SRC/<name>/metrics.csv`` + ``config.json`` [+ ``eval.json``] (``bongrl train`` run directories,
  with an optional ``SRC/<name>.log``). One row per ``metrics.csv`` row (episodes and evaluations, column
  ``kind``): ``run``, ``agent``, ``seed``, ``env``, ``status`` (complete when ``eval.json`` exists), the metrics
  columns, then ``config.<key>``, ``eval.<key>`` and ``log``.
* **tables** — ``SRC/*.csv``, one CSV per variant (e.g. ``scripts/deep_sea_scaling.py --out SRC/<variant>``).
  One row per input row: ``table`` (the file's stem), then its columns.

Values are copied as text, so nothing is lost: CSV cells verbatim; JSON strings as they are, null as an empty
cell, anything else (numbers, booleans, lists) as JSON text. Folders ending in ``.partial`` (runs in progress)
are skipped. The gzip header carries no name or time, so packing the same tree twice gives the same bytes.

Commands::

    python scripts/pack_results.py pack SRC DEST.csv.gz [--summary]     # any layout above
    python scripts/pack_results.py publish RUN_DIR RESULTS_DIR [--command TEXT]   # a bongrl compare output
    python scripts/pack_results.py check RESULTS_DIR [RESULTS_DIR ...]   # summary.json vs its runs.csv.gz
    python scripts/pack_results.py png FILE [FILE ...]                  # palette-quantise figures in place

``publish`` copies ``summary.md`` and ``summary.json`` of a ``bongrl compare`` output folder into
``RESULTS_DIR``, writes a palette-quantised ``learning_curves.png`` (64 colours: about a quarter of the bytes, the
same picture), packs ``runs.csv.gz`` and appends ``--command`` to ``RESULTS_DIR/command.txt``. ``pack --summary``
also writes ``summary.json`` beside DEST with each run's final numbers, for trees that have no summary of
their own.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import math
import os
import shutil
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

PACKED = "runs.csv.gz"
COMMAND = "command.txt"
COMPARE_FILES = ("summary.md", "summary.json")
COLOURS = 64  # a plot's lines, bands and anti-aliasing fit in 64 palette colours without a visible change
FIGURE = "learning_curves.png"
LAYOUTS = ("compare", "train", "tables")

Row = dict[str, str]


# ----------------------------------------------------------------------------------------------- reading trees
def _text(value: Any) -> str:
    """One JSON value as a CSV cell: strings as they are, null as '', everything else as JSON text."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _flatten(prefix: str, value: Any, out: dict[str, str]) -> None:
    """Nested dicts become dotted keys (``task.hyperparameters.hidden``); any other value one cell."""
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _flatten(f"{prefix}.{key}", item, out)
    else:
        out[prefix] = _text(value)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    return data if isinstance(data, dict) else {"value": data}


def _read_rows(path: Path) -> list[Row]:
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return [dict(row) for row in csv.DictReader(fh)]


def _run_key(name: str) -> tuple[str, int, str]:
    """Sort key of a run folder: ``dqn-s10`` after ``dqn-s9``."""
    agent, sep, seed = name.rpartition("-s")
    return (agent, int(seed), "") if sep and seed.isdigit() else (name, -1, name)


def _subdirs(base: Path) -> list[Path]:
    if not base.is_dir():
        return []
    dirs = [d for d in base.iterdir() if d.is_dir() and not d.name.endswith(".partial")]
    return sorted(dirs, key=lambda d: _run_key(d.name))


def _compare_dirs(src: Path) -> list[Path]:
    base = src / "per_run" if (src / "per_run").is_dir() else src
    return [d for d in _subdirs(base) if (d / "curve.csv").is_file() or (d / "result.json").is_file()]


def _train_dirs(src: Path) -> list[Path]:
    return [d for d in _subdirs(src) if (d / "metrics.csv").is_file()]


def detect_layout(src: str | Path) -> str:
    """Which of :data:`LAYOUTS` the tree at ``src`` is (ValueError when none)."""
    src = Path(src)
    if _compare_dirs(src):
        return "compare"
    if _train_dirs(src):
        return "train"
    if src.is_dir() and any(src.glob("*.csv")):
        return "tables"
    raise ValueError(f"{src}: no per-run tree here (compare, train or tables layout; see --help)")


def _compare_rows(src: Path) -> Iterator[Row]:
    for run_dir in _compare_dirs(src):
        result = _read_json(run_dir / "result.json")
        task = result.get("task") or {}
        name_agent, name_seed, _ = _run_key(run_dir.name)
        status = result.get("status") or ("failed" if "error" in result else "complete" if result else "incomplete")
        head = {
            "run": run_dir.name,
            "agent": _text(task.get("agent", name_agent)),
            "seed": _text(task.get("seed", name_seed)),
            "status": _text(status),
        }
        tail: dict[str, str] = {}
        for key, value in result.items():
            _flatten(f"result.{key}", value, tail)
        for curve_row in _read_rows(run_dir / "curve.csv") or [{}]:  # a run with no evaluation keeps one row
            yield {**head, **curve_row, **tail}


def _train_rows(src: Path) -> Iterator[Row]:
    for run_dir in _train_dirs(src):
        config = _read_json(run_dir / "config.json")
        evaluation = _read_json(run_dir / "eval.json")
        log = src / f"{run_dir.name}.log"
        head = {
            "run": run_dir.name,
            "agent": _text(config.get("agent")),
            "seed": _text(config.get("seed")),
            "env": _text(config.get("env")),
            "status": "complete" if evaluation else "incomplete",
        }
        tail: dict[str, str] = {}
        for key, value in config.items():
            _flatten(f"config.{key}", value, tail)
        for key, value in evaluation.items():
            _flatten(f"eval.{key}", value, tail)
        if log.is_file():
            tail["log"] = log.read_text().strip()
        for metrics_row in _read_rows(run_dir / "metrics.csv"):
            yield {**head, **metrics_row, **tail}


def _table_rows(src: Path) -> Iterator[Row]:
    for path in sorted(src.glob("*.csv")):
        for row in _read_rows(path):
            yield {"table": path.stem, **row}


def rows(src: str | Path, layout: str | None = None) -> list[Row]:
    """Every packed row of the tree at ``src`` (``layout`` None: :func:`detect_layout`)."""
    src = Path(src)
    layout = layout or detect_layout(src)
    readers = {"compare": _compare_rows, "train": _train_rows, "tables": _table_rows}
    if layout not in readers:
        raise ValueError(f"unknown layout {layout!r}; one of {', '.join(LAYOUTS)}")
    return list(readers[layout](src))


# ----------------------------------------------------------------------------------------------- packed CSV
def _columns(table: Iterable[Row]) -> list[str]:
    """The union of the rows' keys, in first-seen order."""
    seen: dict[str, None] = {}
    for row in table:
        seen.update(dict.fromkeys(row))
    return list(seen)


def write_packed(table: list[Row], dest: str | Path) -> Path:
    """Write ``table`` as one gzipped CSV (missing cells empty), reproducibly and atomically."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        with io.TextIOWrapper(gz, encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=_columns(table), restval="", lineterminator="\n")
            writer.writeheader()
            writer.writerows(table)
    os.replace(tmp, dest)
    return dest


def pack(src: str | Path, dest: str | Path, layout: str | None = None) -> int:
    """Pack the per-run tree at ``src`` into the gzipped CSV ``dest``; returns the number of rows."""
    table = rows(src, layout)
    if not table:
        raise ValueError(f"{src}: the tree holds no rows to pack")
    write_packed(table, dest)
    return len(table)


def read_packed(path: str | Path) -> list[Row]:
    """The rows of a packed CSV, as dicts of strings."""
    with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
        return [dict(row) for row in csv.DictReader(fh)]


# ----------------------------------------------------------------------------------------------- recomputing
def _float(cell: str | None) -> float | None:
    if cell is None or cell == "":
        return None
    return float(cell)


def _value(cell: str | None) -> Any:
    """A packed cell back as a JSON value: '' -> None, True/False -> bool, numbers -> int/float, else the text."""
    if cell is None or cell == "":
        return None
    if cell in ("True", "true", "False", "false"):
        return cell in ("True", "true")
    for kind in (int, float):
        try:
            return kind(cell)
        except ValueError:
            pass
    return cell


def _eval_column(row: Row) -> str:
    """The online (headline) evaluation column of a compare row: older curves have only ``eval_mean``."""
    return "eval_online_mean" if row.get("eval_online_mean", "") != "" else "eval_mean"


def final_evals(table: Iterable[Row], column: str | None = None) -> dict[str, dict[int, float | None]]:
    """Per agent and seed, the last evaluation (largest ``step``) of each run of a compare-layout pack; None for a
    run that did not complete. ``column`` None: the online column (``eval_mean`` in older trees)."""
    last: dict[str, Row] = {}
    for row in table:
        if row.get("step", "") == "":
            last.setdefault(row["run"], row)
            continue
        seen = last.get(row["run"])
        if seen is None or seen.get("step", "") == "" or float(row["step"]) >= float(seen["step"]):
            last[row["run"]] = row
    out: dict[str, dict[int, float | None]] = {}
    for row in last.values():
        value = None
        if row.get("status") == "complete" and row.get("step", "") != "":
            value = _float(row.get(column or _eval_column(row)))
        out.setdefault(row["agent"], {})[int(row["seed"])] = value
    return {agent: dict(sorted(seeds.items())) for agent, seeds in out.items()}


def final_means(table: Iterable[Row], column: str | None = None) -> dict[str, float | None]:
    """Per agent, the mean final evaluation over its completed runs (as ``bongrl compare``'s summary has it)."""
    means: dict[str, float | None] = {}
    for agent, seeds in final_evals(table, column).items():
        kept = [v for v in seeds.values() if v is not None]
        means[agent] = sum(kept) / len(kept) if kept else None
    return means


def _summary_final(agent_summary: dict[str, Any]) -> tuple[float | None, list[Any]]:
    """(mean, per-seed list) of the online final evaluation in a summary.json of either format."""
    if "online" in agent_summary:
        online = agent_summary["online"]
        return online.get("final_mean"), online.get("final_per_seed") or []
    return agent_summary.get("final_eval_mean"), agent_summary.get("final_eval_per_seed") or []


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def check(results_dir: str | Path) -> list[str]:
    """Recompute every agent's final evaluations (per seed and mean) from ``runs.csv.gz`` and compare them with
    ``summary.json`` in ``results_dir``; returns the mismatches (empty: everything agrees)."""
    results_dir = Path(results_dir)
    summary = json.loads((results_dir / "summary.json").read_text())
    finals = final_evals(read_packed(results_dir / PACKED))
    problems = []
    for agent, agent_summary in summary.get("agents", {}).items():
        if agent not in finals:
            problems.append(f"{results_dir}: {agent} is in summary.json but not in {PACKED}")
            continue
        want_mean, want_seeds = _summary_final(agent_summary)
        seeds = [int(s) for s in agent_summary.get("seeds", finals[agent])]
        got_seeds = [finals[agent].get(s) for s in seeds]
        kept = [v for v in got_seeds if v is not None]
        got_mean = sum(kept) / len(kept) if kept else None
        if not _close(got_mean, want_mean):
            problems.append(f"{results_dir}: {agent} final mean {got_mean} from {PACKED}, {want_mean} in summary")
        if want_seeds and not all(_close(g, w) for g, w in zip(got_seeds, want_seeds, strict=True)):
            problems.append(f"{results_dir}: {agent} finals per seed {got_seeds} from {PACKED}, {want_seeds}")
    return problems


def run_summaries(table: Iterable[Row]) -> dict[str, Any]:
    """Each run's final numbers from packed rows (for trees without a summary of their own): agent, seed, status,
    last step and evaluation(s); for a train-layout run its evaluations; for a tables pack its rows."""
    runs: dict[str, dict[str, Any]] = {}
    tables: dict[str, list[Row]] = {}
    for row in table:
        if "table" in row and "run" not in row:
            tables.setdefault(row["table"], []).append({k: _value(v) for k, v in row.items() if k != "table"})
            continue
        run = runs.setdefault(
            row["run"],
            {"agent": row.get("agent"), "seed": _value(row.get("seed")), "status": row.get("status"),
             "evaluations": []},
        )
        if row.get("kind", "eval") != "eval" or row.get("step", "") == "":
            continue
        point = {"step": int(float(row["step"])), "eval_mean": _float(row.get(_eval_column(row)))}
        if row.get("eval_averaged_mean", "") != "":
            point["eval_averaged_mean"] = _float(row["eval_averaged_mean"])
        run["evaluations"].append(point)
    for run in runs.values():
        run["final"] = run["evaluations"][-1] if run["evaluations"] else None
    return {"runs": runs} if runs else {"tables": tables}


# ----------------------------------------------------------------------------------------------- publishing
def shrink_png(src: str | Path, dest: str | Path | None = None, colours: int = COLOURS) -> int:
    """Write ``src`` palette-quantised (``colours`` colours, no dithering: the same plot at about a quarter of the
    bytes) to ``dest`` (default: in place); keeps the original bytes when quantising does not make it smaller.
    Returns the size written."""
    from PIL import Image  # matplotlib's dependency: only needed for figures

    src, dest = Path(src), Path(dest or src)
    original = src.read_bytes()
    with Image.open(io.BytesIO(original)) as im:
        im.load()
        if im.mode in ("RGBA", "LA") and im.getchannel("A").getextrema() != (255, 255):
            small = im.convert("RGBA").quantize(colours, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
        else:
            small = im.convert("RGB").quantize(colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    buf = io.BytesIO()
    small.save(buf, "PNG", optimize=True)
    data = buf.getvalue() if len(buf.getvalue()) < len(original) else original
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(data)
    return len(data)


def add_command(results_dir: str | Path, command: str) -> Path:
    """Append ``command`` to ``results_dir/command.txt`` unless that line is there already."""
    path = Path(results_dir) / COMMAND
    lines = path.read_text().splitlines() if path.is_file() else []
    if command.strip() not in (line.strip() for line in lines):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join([*lines, command.strip()]) + "\n")
    return path


def publish(run_dir: str | Path, results_dir: str | Path, command: str | None = None) -> list[Path]:
    """Copy a ``bongrl compare`` output folder's summary into ``results_dir``: summary.md / summary.json as they
    are, learning_curves.png palette-quantised, the per-run tree packed into runs.csv.gz (which holds compare.csv's
    rows), ``command`` appended to command.txt. Returns the paths written."""
    run_dir, results_dir = Path(run_dir), Path(results_dir)
    if run_dir.resolve() == results_dir.resolve():
        raise ValueError(f"publish: {run_dir} is both the run folder and the results folder")
    results_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in COMPARE_FILES:
        if (run_dir / name).is_file():
            written.append(Path(shutil.copyfile(run_dir / name, results_dir / name)))
    if (run_dir / FIGURE).is_file():
        shrink_png(run_dir / FIGURE, results_dir / FIGURE)
        written.append(results_dir / FIGURE)
    pack(run_dir, results_dir / PACKED, "compare")
    written.append(results_dir / PACKED)
    if command:
        written.append(add_command(results_dir, command))
    return written


# ----------------------------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="pack a per-run tree into one gzipped CSV")
    p.add_argument("src")
    p.add_argument("dest")
    p.add_argument("--layout", choices=LAYOUTS, help="default: detected from SRC")
    p.add_argument("--summary", action="store_true", help="also write summary.json (each run's finals) beside DEST")
    p = sub.add_parser("publish", help="copy a bongrl compare output's summary, figure and packed runs")
    p.add_argument("run_dir")
    p.add_argument("results_dir")
    p.add_argument("--command", help="the command that made the runs (appended to command.txt)")
    p = sub.add_parser("check", help="recompute summary.json's final evaluations from runs.csv.gz")
    p.add_argument("results_dirs", nargs="+")
    p = sub.add_parser("png", help="palette-quantise figures in place")
    p.add_argument("files", nargs="+")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "pack":
            n = pack(args.src, args.dest, args.layout)
            print(f"{args.dest}: {n} rows, {Path(args.dest).stat().st_size} bytes")
            if args.summary:
                path = Path(args.dest).with_name("summary.json")
                path.write_text(json.dumps(run_summaries(read_packed(args.dest)), indent=1) + "\n")
                print(f"{path}: each run's evaluations (a tables pack: its rows)")
        elif args.cmd == "publish":
            for path in publish(args.run_dir, args.results_dir, args.command):
                print(path)
        elif args.cmd == "check":
            problems = [p for d in args.results_dirs for p in check(d)]
            for line in problems:
                print(line, file=sys.stderr)
            print(f"{len(args.results_dirs)} folder(s) checked, {len(problems)} mismatch(es)")
            return 1 if problems else 0
        else:
            for name in args.files:
                before = Path(name).stat().st_size
                print(f"{name}: {before} -> {shrink_png(name)} bytes")
    except (OSError, ValueError) as exc:
        print(f"pack_results.py: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
