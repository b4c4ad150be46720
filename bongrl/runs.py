"""Run directories: what ``bongrl train`` writes for one run (docs/design.md §7).

A run directory holds

* ``config.json``   — everything needed to reproduce or resume the run (command, env, preset, hyperparameters,
  seed, device, package versions, start time);
* ``metrics.csv``   — one row per episode (``kind=episode``) or bandit round (``kind=round``) and one per
  periodic evaluation (``kind=eval``), flushed as it is written so a killed run keeps its history;
* ``eval.json``     — the final deterministic evaluation;
* ``learning_curve.png`` — episode returns, a rolling mean and the evaluation points (cumulative regret for
  bandits);
* ``checkpoint.safetensors`` — the agent (written by the agent's own ``save``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "CONFIG",
    "METRICS",
    "EVAL",
    "PLOT",
    "CHECKPOINT",
    "EPISODE_COLUMNS",
    "BANDIT_COLUMNS",
    "default_run_dir",
    "free_dir",
    "holds_run",
    "check_directory_path",
    "file_mode",
    "atomic_write",
    "versions",
    "write_json",
    "read_json",
    "MetricsWriter",
    "read_metrics",
    "truncate_metrics",
    "plot_learning_curve",
]

CONFIG = "config.json"
METRICS = "metrics.csv"
EVAL = "eval.json"
PLOT = "learning_curve.png"
CHECKPOINT = "checkpoint.safetensors"

#: metrics.csv columns for value-based agents (episode rows and eval rows share them).
#: eval_mean/eval_std: greedy on the online weights (the headline); eval_averaged_*: greedy on their Polyak average
#: (BongDQN's ``polyak_eval``); rejected_updates: non-finite updates rejected so far (the posterior kept).
EPISODE_COLUMNS = ["kind", "step", "episode", "return", "length", "wall_s", "eval_mean", "eval_std",
                   "eval_averaged_mean", "eval_averaged_std", "rejected_updates"]
#: metrics.csv columns for bandit agents (round rows).
BANDIT_COLUMNS = ["kind", "round", "arm", "reward", "regret", "cumulative_regret", "wall_s"]


def default_run_dir(env_id: str, agent: str, seed: int, root: str | Path = "runs") -> Path:
    """``runs/<env id with / replaced by _>-<agent>-s<seed>``."""
    return Path(root) / f"{env_id.replace('/', '_')}-{agent}-s{seed}"


def holds_run(path: str | Path) -> bool:
    """True when ``path`` is a resumable run directory (``config.json`` and ``checkpoint.safetensors``)."""
    path = Path(path)
    return (path / CONFIG).is_file() and (path / CHECKPOINT).is_file()


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def check_directory_path(path: str | Path, flag: str = "--out") -> None:
    """UsageError unless ``path`` is, or could be created as, a directory (it or an ancestor is a file)."""
    from bongrl.errors import UsageError

    path = Path(path)
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                what = "is a file" if p == path else f"cannot be made: {str(p)!r} is a file"
                raise UsageError(f"{flag} {str(path)!r} {what}; give a directory")
            return


def free_dir(base: str | Path, reusable: Callable[[Path], bool] = _is_empty_dir, flag: str = "--out",
             limit: int = 10_000) -> Path:
    """The directory to write to, never one holding something else: ``base`` if it does not exist or
    ``reusable(base)`` (default: it is an empty directory), else the first of ``base_1``, ``base_2``, ... that is
    (rl-baselines3-zoo's rule). UsageError when ``base`` (or an ancestor) is a file. Nothing is created."""
    from bongrl.errors import UsageError

    base = Path(base)
    check_directory_path(base, flag)
    for i in range(limit):
        cand = base if i == 0 else base.with_name(f"{base.name}_{i}")
        if not cand.exists() or (cand.is_dir() and reusable(cand)):
            return cand
    raise UsageError(f"{flag}: {str(base)!r} and {limit - 1} numbered siblings are taken; give another {flag}")


def file_mode() -> int:
    """``0o666`` less the process umask: the mode ``open()`` gives a new file (``mkstemp`` gives 0o600)."""
    try:  # Linux: read the umask without changing it (os.umask would, briefly, for every thread)
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: str | Path, data: bytes | str, fsync: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (a temporary file in the same folder, then ``os.replace``), with the
    mode a plain ``open()`` would give (the umask's); the folder is created. ``fsync``: flush to disk first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
            os.fchmod(fh.fileno(), file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def versions() -> dict[str, str]:
    """Versions of bongrl and the libraries a run's numbers depend on, plus the Python / OS."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("bongrl", "torch", "gymnasium", "numpy"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    out["python"] = platform.python_version()
    out["platform"] = platform.platform()
    return out


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return _jsonable(obj.item())
    return obj


def write_json(path: str | Path, obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON (non-finite floats become ``null``); mode as :func:`atomic_write`."""
    return atomic_write(path, json.dumps(_jsonable(obj), indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


class MetricsWriter:
    """Append rows to ``metrics.csv`` with a fixed column set, flushing after every row.

    An existing file is appended to (``--resume``); its header is kept.
    """

    def __init__(self, path: str | Path, columns: list[str]) -> None:
        self.path = Path(path)
        self.columns = list(columns)
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._fh = open(self.path, "a", newline="")  # noqa: SIM115 - closed in close()
        self._writer = csv.DictWriter(self._fh, fieldnames=self.columns, extrasaction="ignore")
        if new:
            self._writer.writeheader()
            self._fh.flush()

    def write(self, **row: Any) -> None:
        self._writer.writerow({k: _fmt(v) for k, v in row.items()})
        self._fh.flush()

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> MetricsWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


def read_metrics(path: str | Path) -> list[dict[str, str]]:
    """Rows of a metrics.csv (empty list if the file does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def truncate_metrics(path: str | Path, key: str, upto: int) -> int:
    """Drop rows whose ``key`` column exceeds ``upto`` (logged after the checkpoint a resume starts from).

    A row cut short by a killed process (missing fields, or no final newline) is dropped too.
    Returns the number of rows dropped.
    """
    path = Path(path)
    if not path.exists():
        return 0
    with open(path, newline="") as fh:
        text = fh.read()
    reader = csv.DictReader(text.splitlines(keepends=True) if text.endswith("\n") else text.splitlines()[:-1])
    columns = list(reader.fieldnames or [])
    rows = list(reader)
    n_rows = len(rows) + (0 if text.endswith("\n") or not text else 1)

    def keep_row(r: dict[str, Any]) -> bool:
        if None in r or any(v is None for v in r.values()):  # too many / too few fields: a torn write
            return False
        try:
            return not r.get(key) or float(r[key]) <= upto
        except ValueError:
            return False

    if not columns:  # even the header was torn: start the file afresh
        path.unlink()
        return n_rows
    keep = [r for r in rows if keep_row(r)]
    if len(keep) == n_rows:
        return 0
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    writer.writerows(keep)
    atomic_write(path, buf.getvalue())
    return n_rows - len(keep)


def _floats(rows: list[dict[str, str]], key: str) -> list[float]:
    return [float(r[key]) if r.get(key) not in (None, "") else math.nan for r in rows]


def plot_learning_curve(run_dir: str | Path, title: str | None = None, window: int = 20) -> Path | None:
    """Draw ``learning_curve.png`` from ``metrics.csv`` (matplotlib, Agg backend). Returns the path, or
    ``None`` when there is nothing to plot yet."""
    run_dir = Path(run_dir)
    rows = read_metrics(run_dir / METRICS)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    if title is None and (run_dir / CONFIG).is_file():
        try:
            c = read_json(run_dir / CONFIG)
            title = (
                f"{c['env']}: {c['agent']} ({c['posterior']} posterior, {c['exploration']}), seed {c['seed']}"
            )
        except (OSError, ValueError, KeyError, TypeError):
            title = None
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    try:
        if "round" in rows[0]:  # bandit
            rr = [r for r in rows if r.get("kind") == "round"]
            ax.plot(_floats(rr, "round"), _floats(rr, "cumulative_regret"), color="C0", lw=1.5)
            ax.set_xlabel("round")
            ax.set_ylabel("cumulative regret")
        else:
            ep = [r for r in rows if r.get("kind") == "episode"]
            ev = [r for r in rows if r.get("kind") == "eval"]
            if ep:
                x, y = np.asarray(_floats(ep, "step")), np.asarray(_floats(ep, "return"))
                ax.plot(x, y, color="C0", alpha=0.3, lw=0.8, label="episode return")
                w = max(1, min(window, len(y)))
                rolling = np.convolve(y, np.ones(w) / w, mode="valid")
                ax.plot(x[w - 1 :], rolling, color="C0", lw=1.8, label=f"rolling mean ({w})")
            if ev:
                ax.errorbar(
                    _floats(ev, "step"),
                    _floats(ev, "eval_mean"),
                    yerr=_floats(ev, "eval_std"),
                    fmt="o-",
                    color="C3",
                    capsize=3,
                    ms=4,
                    label="greedy eval (online weights)",
                )
                avg = [r for r in ev if r.get("eval_averaged_mean") not in (None, "")]
                if avg:
                    ax.plot(_floats(avg, "step"), _floats(avg, "eval_averaged_mean"), "s--", color="C2", ms=3,
                            label="greedy eval (averaged weights)")
            ax.set_xlabel("env steps")
            ax.set_ylabel("return")
            ax.legend(loc="best", fontsize=8)
        ax.grid(alpha=0.3)
        ax.set_title(title or run_dir.name, fontsize=10)
        fig.tight_layout()
        out = run_dir / PLOT
        fig.savefig(out)
    finally:
        plt.close(fig)
    return out
