"""Reporting a comparison: aggregation over seeds, summary.md / summary.json, compare.csv and the
learning-curve plot (see :mod:`bongrl.compare`)."""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bongrl.compare.common import (
    AGENTS,
    COLUMNS,
    COMPLETE,
    CURVE,
    CURVE_COLUMNS,
    EVALS,
    FAILED,
    RESULT,
    RUNS,
    _error_text,
)
from bongrl.compare.plan import seeds_text, tuned_seeds


# ------------------------------------------------------------------------------------------- aggregation
def _read_curve(path: Path) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return [
            {k: float(v) if v not in ("", "nan") else float("nan") for k, v in row.items()}
            for row in csv.DictReader(fh)
        ]


def _auc(steps: np.ndarray, values: np.ndarray) -> float:
    """Normalised area under the eval curve: the mean eval return over training (trapezoid rule)."""
    if len(steps) < 2 or steps[-1] <= steps[0]:
        return float(values[-1]) if len(values) else float("nan")
    area = float(np.sum((values[1:] + values[:-1]) * np.diff(steps)) / 2.0)
    return area / float(steps[-1] - steps[0])


def _steps_to(steps: np.ndarray, values: np.ndarray, threshold: float | None) -> int | None:
    """First evaluation step after 0 whose mean return reaches ``threshold`` (None: never, or no threshold)."""
    if threshold is None:
        return None
    hit = np.nonzero((values >= threshold) & (steps > 0))[0]
    return int(steps[hit[0]]) if len(hit) else None


def _fmt(x: Any, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}f}"


@dataclass
class _Run:
    """One (agent, seed) folder as aggregate reads it."""

    seed: int
    result: dict[str, Any]
    curve: list[dict[str, float]]

    @property
    def failed(self) -> bool:
        return self.result.get("status") != COMPLETE


def _mean_std(values: Iterable[float | None]) -> tuple[float | None, float | None]:
    """Mean and std over the values that are not missing (failed runs); (None, None) when none are left."""
    kept = [float(v) for v in values if v is not None]
    return (float(np.mean(kept)), float(np.std(kept))) if kept else (None, None)


def _column_metrics(runs_: list[_Run], column: str, threshold: float | None) -> dict[str, Any]:
    """Per-seed and over-seed metrics of one evaluation column; a failed run is None in every per-seed list."""
    per: dict[str, list[Any]] = {"final": [], "last3": [], "auc": [], "steps_to_threshold": []}
    for run in runs_:
        if run.failed or not run.curve:
            for values in per.values():
                values.append(None)
            continue
        st = np.array([c["step"] for c in run.curve])
        ev = np.array([c[f"eval_{column}_mean"] for c in run.curve])
        per["final"].append(float(ev[-1]))
        per["last3"].append(float(ev[-3:].mean()))
        per["auc"].append(_auc(st, ev))
        per["steps_to_threshold"].append(_steps_to(st, ev, threshold))
    metrics: dict[str, Any] = {}
    for name in ("final", "last3", "auc"):
        mean, std = _mean_std(per[name])
        metrics.update({f"{name}_per_seed": per[name], f"{name}_mean": mean, f"{name}_std": std})
    complete = [r for r in runs_ if not r.failed]
    reached = [t for t in per["steps_to_threshold"] if t is not None]
    metrics["steps_to_threshold_per_seed"] = per["steps_to_threshold"]
    metrics["median_steps_to_threshold"] = float(np.median(reached)) if reached else None
    metrics["never_reached"] = len(complete) - len(reached) if threshold is not None else None
    return metrics


def _settings_key(task: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in task.items() if k not in ("seed", "eval_seed")}, sort_keys=True)


def _warnings(agent: str, env_id: str | None, runs_: list[_Run], tuned: list[int]) -> list[str]:
    """The summary's flags for one agent: seeds its preset was tuned on, runs made with differing settings."""
    out = []
    overlap = sorted(set(r.seed for r in runs_) & set(tuned))
    if overlap:
        name = "BongDQN" if agent == "bongdqn" else agent
        out.append(
            f"⚠ seeds {seeds_text(overlap)} overlap the seeds the {name} preset for {env_id} was tuned on "
            f"({seeds_text(tuned)})"
        )
    if len({_settings_key(r.result["task"]) for r in runs_}) > 1:
        out.append(f"⚠ {agent}'s runs were made with different settings (see per_run/*/result.json)")
    return out


def _agent_summary(agent: str, env_id: str | None, runs_: list[_Run], threshold: float | None) -> dict[str, Any]:
    defaults_only = bool(runs_[0].result["task"].get("defaults_only")) if runs_ else False
    tuned = tuned_seeds(agent, env_id, defaults_only) if env_id is not None else []
    sps = [r.result["env_steps_per_s"] for r in runs_ if not r.failed and r.result.get("env_steps_per_s")]
    walls = [r.result["wall_s"] for r in runs_ if not r.failed]
    summary: dict[str, Any] = {
        "seeds": [r.seed for r in runs_],
        "status_per_seed": [r.result.get("status", FAILED) for r in runs_],
        "failed": sum(r.failed for r in runs_),
        "errors": {str(r.seed): r.result.get("error", "") for r in runs_ if r.failed},
        **{column: _column_metrics(runs_, column, threshold) for column in EVALS},
        "env_steps_per_s": float(np.mean(sps)) if sps else None,
        "wall_s_per_run": float(np.mean(walls)) if walls else None,
        "hyperparameters": runs_[0].result["task"].get("hyperparameters"),
        "tuned_seeds": tuned,
        "rejected_updates_per_seed": [r.result.get("rejected_updates") for r in runs_],
        "seeds_overlapping_tuning": sorted(set(r.seed for r in runs_) & set(tuned)),
        "warnings": _warnings(agent, env_id, runs_, tuned),
    }
    if any(r.result.get("success_reported") for r in runs_):  # the env reports info["is_success"]
        solve = [None if r.failed else r.result.get("episodes_to_solve") for r in runs_]
        solved = [e for e in solve if e is not None]
        summary.update(
            episodes_to_solve_per_seed=solve,
            median_episodes_to_solve=float(np.median(solved)) if solved else None,
            unsolved=sum(e is None for e, r in zip(solve, runs_, strict=True) if not r.failed),
            train_episodes=[None if r.failed else r.result.get("train_episodes") for r in runs_],
        )
    return summary


def _collect(out: Path, want: dict[str, Any]) -> dict[str, list[_Run]]:
    """Every finished (complete or failed) run in ``out`` whose settings match ``want`` (None: any), by agent."""
    from bongrl import runs

    collected: dict[str, list[_Run]] = {}
    for res_path in sorted((out / RUNS).glob(f"*/{RESULT}")):
        if res_path.parent.name.endswith(".partial"):
            continue
        try:
            res = runs.read_json(res_path)
            task = res["task"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if "polyak_tau" not in task:  # made before compare evaluated both columns: not comparable
            continue
        if any(v is not None and task.get(k) != v for k, v in want.items()):
            continue
        collected.setdefault(task["agent"], []).append(
            _Run(int(task["seed"]), res, _read_curve(res_path.parent / CURVE))
        )
    for runs_ in collected.values():
        runs_.sort(key=lambda r: r.seed)
    return collected


def _threshold(env_id: str | None) -> float | None:
    if env_id is None:
        return None
    import gymnasium as gym

    import bongrl.envs  # noqa: F401

    try:
        return gym.spec(env_id).reward_threshold
    except Exception:  # noqa: BLE001
        return None


def _write_csv(path: Path, order: list[str], collected: dict[str, list[_Run]]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for agent in order:
            for run in collected[agent]:
                status = FAILED if run.failed else COMPLETE
                for row in run.curve:
                    w.writerow(
                        [agent, run.seed, status, int(row["step"])]
                        + [f"{row[c]:.6g}" for c in CURVE_COLUMNS[1:-2]]
                        + [f"{row['wall_s']:.3f}", f"{row['env_steps_per_s']:.1f}"]
                    )


def aggregate(
    out: str | Path,
    env_id: str | None = None,
    steps: int | None = None,
    eval_every: int | None = None,
    eval_episodes: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
    polyak_tau: float | None = None,
) -> dict[str, Any]:
    """Collect every finished run in ``out`` with the given protocol into compare.csv, summary.md/.json and
    learning_curves.png (runs made with another env, budget, evaluation protocol or averaging rate are left
    out; failed runs are kept and counted as failed)."""
    from bongrl import runs

    out = Path(out)
    want = {
        "env": env_id,
        "steps": steps,
        "eval_every": eval_every,
        "eval_episodes": eval_episodes,
        "env_kwargs": env_kwargs,
        "polyak_tau": polyak_tau,
    }
    collected = _collect(out, want)
    order = [a for a in AGENTS if a in collected] + sorted(a for a in collected if a not in AGENTS)
    if env_id is None and collected:
        env_id = next(iter(collected.values()))[0].result["task"]["env"]
    if polyak_tau is None and collected:
        polyak_tau = next(iter(collected.values()))[0].result["task"]["polyak_tau"]
    threshold = _threshold(env_id)
    _write_csv(out / "compare.csv", order, collected)
    agents = {agent: _agent_summary(agent, env_id, collected[agent], threshold) for agent in order}
    summary: dict[str, Any] = {
        "env": env_id,
        "env_kwargs": env_kwargs,
        "steps": steps,
        "eval_every": eval_every,
        "eval_episodes": eval_episodes,
        "polyak_tau": polyak_tau,
        "headline": "online",
        "reward_threshold": threshold,
        "warnings": [w for a in agents.values() for w in a["warnings"]],
        "agents": agents,
    }
    runs.write_json(out / "summary.json", summary)
    (out / "summary.md").write_text(_summary_md(summary))
    try:
        _plot(out / "learning_curves.png", order, collected, summary)
    except Exception as exc:  # a plotting failure must not lose the numbers
        print(
            f"bongrl: warning: could not draw learning_curves.png: {_error_text(exc)}",
            file=sys.stderr,
        )
    return summary


# ------------------------------------------------------------------------------------------- summary.md
COLUMN_TITLES = {
    "online": "online (headline): the weights being trained",
    "averaged": "averaged: EMA of the weights, τ={tau}, same for every agent",
}


def _column_title(column: str, tau: Any) -> str:
    return COLUMN_TITLES[column].format(tau=f"{tau:g}" if isinstance(tau, (int, float)) else tau)


def _per_seed(
    values: list[Any], failed: dict[int, bool], seeds: list[int], fmt: Callable[[Any], str]
) -> list[str]:
    """One cell per table seed: ``values`` (in the order of ``failed``'s seeds) formatted, 'failed' for a failed
    run, '—' for a seed this agent did not run."""
    by_seed = dict(zip(failed, values, strict=True))
    return ["—" if s not in failed else "failed" if failed[s] else fmt(by_seed[s]) for s in seeds]


def _column_table(s: dict[str, Any], column: str, seeds: list[int], dg: int) -> list[str]:
    """The markdown table of one evaluation column: one row per (agent, metric), one cell per seed."""
    thr = s["reward_threshold"]
    lines = [
        f"### {_column_title(column, s['polyak_tau'])}",
        "",
        "| agent | metric | over seeds (mean ± std over completed runs) | failed | "
        + " | ".join(f"seed {x}" for x in seeds)
        + " |",
        "|---|---|---|---|" + "---|" * len(seeds),
    ]
    for agent, a in s["agents"].items():
        m = a[column]
        failed_by_seed = {seed: st != COMPLETE for seed, st in zip(a["seeds"], a["status_per_seed"], strict=True)}
        failed = f"{a['failed']}/{len(a['seeds'])}"
        n_ok = len(a["seeds"]) - a["failed"]
        rows: list[tuple[str, str, list[str]]] = []
        for key, label in (("final", "final eval"), ("last3", "mean of last 3 evals"), ("auc", "AUC")):
            over = f"{_fmt(m[f'{key}_mean'], dg)} ± {_fmt(m[f'{key}_std'], dg)} (n={n_ok})"
            cells = _per_seed(m[f"{key}_per_seed"], failed_by_seed, seeds, lambda v: _fmt(v, dg))
            rows.append((label, over, cells))
        if thr is not None:
            over = f"median {_fmt(m['median_steps_to_threshold'], 0)}; never reached {m['never_reached']}/{n_ok}"
            cells = _per_seed(
                m["steps_to_threshold_per_seed"], failed_by_seed, seeds, lambda v: "never" if v is None else str(v)
            )
            rows.append(("steps to threshold", over, cells))
        for label, over, cells in rows:
            lines.append(f"| {agent} | {label} | {over} | {failed} | " + " | ".join(cells) + " |")
    return lines


def _runs_table(s: dict[str, Any]) -> list[str]:
    lines = [
        "| agent | seeds | failed | env steps/s | wall s / run | preset tuned on seeds |",
        "|---|---|---|---|---|---|",
    ]
    for agent, a in s["agents"].items():
        tuned = seeds_text(a["tuned_seeds"]) or ("none of ours (rl-zoo preset)" if agent != "bongdqn" else "none")
        lines.append(
            f"| {agent} | {seeds_text(a['seeds'])} | {a['failed']}/{len(a['seeds'])} | "
            f"{_fmt(a['env_steps_per_s'], 0)} | {_fmt(a['wall_s_per_run'], 0)} | {tuned} |"
        )
    return lines


def _deepsea_table(s: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "Episodes to solve (bsuite: first training episode where total_bad_episodes / episode < 0.9):",
        "",
        "| agent | episodes to solve per seed | median (solved seeds) | unsolved | failed "
        "| training episodes per run |",
        "|---|---|---|---|---|---|",
    ]
    for agent, a in s["agents"].items():
        bad = [st != COMPLETE for st in a["status_per_seed"]]
        per = ", ".join(
            "failed" if f else "unsolved" if e is None else str(e)
            for e, f in zip(a["episodes_to_solve_per_seed"], bad, strict=True)
        )
        episodes = ", ".join("failed" if f else str(e) for e, f in zip(a["train_episodes"], bad, strict=True))
        lines.append(
            f"| {agent} | {per} | {_fmt(a['median_episodes_to_solve'], 0)} | "
            f"{a['unsolved']}/{len(a['seeds']) - a['failed']} | {a['failed']}/{len(a['seeds'])} | {episodes} |"
        )
    return lines


def _summary_md(s: dict[str, Any]) -> str:
    env = (s["env"] or "") + (
        f" ({', '.join(f'{k}={v}' for k, v in s['env_kwargs'].items())})" if s.get("env_kwargs") else ""
    )
    thr = s["reward_threshold"]
    tau = s["polyak_tau"]
    lines = [
        f"# compare: {env}",
        "",
        f"Budget {s['steps']} env steps per run; evaluation every {s['eval_every']} steps "
        f"(and at step 0 and after training): {s['eval_episodes']} deterministic episodes on a separate "
        "eval env, episode seeds 10000 + 1000·seed + i for every agent. "
        "Reward threshold (env.spec.reward_threshold): "
        f"{_fmt(thr) if thr is not None else 'none'}.",
        "",
        "Every run is evaluated twice at every evaluation point, on the same episodes:",
        "",
        f"- **{_column_title('online', tau)}** — BongDQN's posterior mean; the SB3 model's current network.",
        f"- **{_column_title('averaged', tau)}** — θ̄ ← (1−τ)θ̄ + τθ after every vectorised env step: "
        "BongDQN's polyak_eval; DQN's Q-network, QR-DQN's quantile network, PPO's policy.",
        "",
        *[f"{w}" for w in s["warnings"]],
        *([""] if s["warnings"] else []),
        *_runs_table(s),
    ]
    values = [
        abs(x)
        for a in s["agents"].values()
        for c in EVALS
        for x in a[c]["final_per_seed"]
        if x is not None and math.isfinite(x)
    ]
    dg = 2 if values and max(values) < 10 else 1  # returns like DeepSea's 0.99 need two decimals
    seeds = sorted({x for a in s["agents"].values() for x in a["seeds"]})
    for column in EVALS:
        lines += ["", *_column_table(s, column, seeds, dg)]
    if any("episodes_to_solve_per_seed" in a for a in s["agents"].values()):
        lines += _deepsea_table(s)
    errors = [f"- {agent} seed {seed}: {msg}" for agent, a in s["agents"].items() for seed, msg in a["errors"].items()]
    if errors:
        lines += ["", "Failed runs (partial curves kept in per_run/<agent>-s<seed>/):", "", *errors]
    lines += [
        "",
        "Final eval: the evaluation after training. Mean of last 3 evals: the last three evaluations of each "
        "run, averaged. Steps to threshold: first evaluation after step 0 whose mean return ≥ the threshold "
        "(resolution: the eval interval; the untrained policy's score does not count); "
        "the median is over the runs that reached it. AUC: trapezoid area under the eval curve divided by "
        "the steps it spans. A failed run (it raised, or its weights became non-finite) is 'failed' in every "
        "per-seed cell and left out of mean ± std. env steps/s: training env steps over training wall time "
        "(evaluation excluded), one torch thread per run.",
        "",
    ]
    return "\n".join(lines)


def _plot(path: Path, order: list[str], collected: dict[str, list[_Run]], summary: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for agent in order:
        complete = [r for r in collected[agent] if not r.failed and r.curve]
        if not complete:
            continue
        grid = np.array([c["step"] for c in complete[0].curve])
        color = None
        for column, style in zip(EVALS, ("-", "--"), strict=True):
            ys = np.array(
                [
                    np.interp(grid, [c["step"] for c in r.curve], [c[f"eval_{column}_mean"] for c in r.curve])
                    for r in complete
                ]
            )
            mean, std = ys.mean(0), ys.std(0)
            failed = len(collected[agent]) - len(complete)
            label = f"{agent} {column} (n={len(complete)}" + (f", {failed} failed)" if failed else ")")
            (line,) = ax.plot(grid, mean, linestyle=style, color=color, label=label)
            color = line.get_color()
            if column == "online":
                lo, hi = np.maximum(mean - std, ys.min(0)), np.minimum(mean + std, ys.max(0))  # in the seed range
                ax.fill_between(grid, lo, hi, color=color, alpha=0.2, linewidth=0)
    thr = summary.get("reward_threshold")
    if thr is not None:
        ax.axhline(thr, color="grey", linestyle=":", linewidth=1, label=f"threshold {thr:g}")
    ax.set_xlabel("env steps")
    ax.set_ylabel("deterministic eval return")
    env = summary.get("env") or ""
    ax.set_title(
        f"{env}: mean over seeds; online solid (band ± 1 std),\naveraged (EMA τ={summary.get('polyak_tau')}) dashed",
        fontsize="medium",
    )
    ax.legend(loc="best", fontsize="x-small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
