"""Constants, the error type and small helpers shared by the compare modules (see :mod:`bongrl.compare`)."""

from __future__ import annotations

from typing import Any

AGENTS = ("bongdqn", "dqn", "qrdqn", "ppo")
#: the evaluation columns: the headline first
EVALS = ("online", "averaged")
#: per-run curve.csv; ``eval_mean`` / ``eval_std`` repeat the online (headline) column for older readers
CURVE_COLUMNS = [
    "step",
    "eval_mean",
    "eval_std",
    *(f"eval_{e}_{m}" for e in EVALS for m in ("mean", "std")),
    "wall_s",
    "env_steps_per_s",
]
COLUMNS = ["agent", "seed", "status", *CURVE_COLUMNS]
RESULT = "result.json"
RUNS = "per_run"  # not "runs/": that name is git-ignored (bongrl train's run directories)
CURVE = "curve.csv"
DEEPSEA = "bongrl/DeepSea-v0"
SOLVE_RATIO = 0.9
DEFAULT_TAU = 1e-3
COMPLETE, FAILED = "complete", "failed"
_SEEDS_FORMS = "N (seeds 0..N-1), a list like 100,101, a range like 100-109, or a mix like 0-2,100"
_MAX_SEEDS = 10_000


class CompareError(ValueError):
    """Bad compare settings (the CLI reports it on one line and exits 2)."""


def _error_text(exc: BaseException) -> str:
    """``Type: message`` on one line (how failed runs are reported and recorded)."""
    from bongrl.errors import one_line as _one_line

    return f"{type(exc).__name__}: {_one_line(exc)}"


def _key(task: dict[str, Any]) -> str:
    return f"{task['agent']}-s{task['seed']}"
