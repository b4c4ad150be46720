"""Every posterior family on CartPole with the CLI's settings: `bongrl train --posterior F` for 50k steps.

The CLI's settings for CartPole are BongDQN's class defaults (the CartPole preset adds no hyperparameter);
``full`` runs on a [32] network (P = 1 282; a dense covariance over the default [64, 64] net's 4 610 weights
costs ~190 ms per update). Each run is a run directory ``<runs>/<family>-s<seed>/`` (config, metrics.csv with both
evaluations and the rejected-update count, eval.json, learning curve, checkpoint; git-ignored under ``runs/``),
with its console output in ``<runs>/<family>-s<seed>.log``. Published into ``<out>/``:

* ``README.md``: per family and seed the final greedy evaluation on the online and the averaged weights, the
  evaluation curve (online), and the updates rejected as non-finite;
* ``summary.json``: the same numbers, with every evaluation (step, online, averaged);
* ``learning_curves.png``: the evaluation curves, one panel per family;
* ``runs.csv.gz``: every run directory packed by ``scripts/pack_results.py`` (each metrics.csv row, episodes and
  evaluations, with the run's config and eval.json);
* ``command.txt``: the command lines that ran runs.

(``dlr``, the default, has five held-out CartPole runs in ``results/generalization/CartPole`` already;
``--families diag kfac full`` skips it.) ``--table-only`` rebuilds the published files from the run directories,
or, where those are gone (a fresh clone), README.md and the figure from ``<out>/summary.json``.

Examples::

    python scripts/families.py --seeds 100 101 102            # runs what is missing, then the table
    python scripts/families.py --table-only
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

FAMILIES: dict[str, list[str]] = {"dlr": [], "diag": [], "kfac": [], "full": ["--set", "hidden=[32]"]}
ENV = "CartPole-v1"


def run(family: str, seed: int, runs: Path, steps: int) -> int:
    """One `bongrl train` run into ``runs`` (skipped when its eval.json exists); returns the exit code."""
    run_dir = runs / f"{family}-s{seed}"
    if (run_dir / "eval.json").is_file():
        return 0
    cmd = [sys.executable, "-m", "bongrl", "train", "--env", ENV, "--posterior", family, "--seed",
           str(seed), "--steps", str(steps), "--eval-every", "10000", "--quiet", "--out", str(run_dir),
           *FAMILIES[family]]
    with open(runs / f"{family}-s{seed}.log", "w") as log:
        return subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode


def _evals(run_dir: Path) -> list[list[float | None]]:
    """[step, online mean, averaged mean] of every evaluation row of a run's metrics.csv."""
    with open(run_dir / "metrics.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("kind") == "eval"]
    return [
        [float(r["step"]), float(r["eval_mean"]),
         float(r["eval_averaged_mean"]) if r.get("eval_averaged_mean") else None]
        for r in rows
    ]


def collect(runs: Path) -> list[dict[str, Any]]:
    """One record per run directory in ``runs``: family, seed, status, finals, rejected updates, evaluations
    (an unfinished run: the last line of its log as ``error``)."""
    records = []
    for family in FAMILIES:
        for run_dir in sorted(runs.glob(f"{family}-s*/")):
            record: dict[str, Any] = {"family": family, "seed": int(run_dir.name.split("-s")[-1]), "run": run_dir.name}
            ev = run_dir / "eval.json"
            if not ev.is_file():
                log = runs / f"{run_dir.name}.log"
                tail = (log.read_text().strip().splitlines() if log.is_file() else [])[-1:] or ["no eval.json"]
                records.append({**record, "status": "incomplete", "error": tail[0]})
                continue
            d = json.loads(ev.read_text())
            avg = d.get("averaged") or {}
            records.append({
                **record,
                "status": "complete",
                "online_final": d["mean"],
                "averaged_final": avg.get("mean"),
                "rejected_updates": d.get("rejected_updates", 0),
                "evaluations": _evals(run_dir) if (run_dir / "metrics.csv").is_file() else [],
            })
    return records


def table(records: list[dict[str, Any]]) -> str:
    """The README table: one row per run."""
    lines = [
        "| family | seed | status | online final | averaged final | online evals every 10k | rejected updates |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in records:
        if r["status"] != "complete":
            lines.append(f"| {r['family']} | {r['seed']} | **incomplete or failed**: {r['error'][:120]} | | | | |")
            continue
        averaged = float("nan") if r["averaged_final"] is None else r["averaged_final"]
        evals = ", ".join(f"{e[1]:.0f}" for e in r["evaluations"])
        lines.append(
            f"| {r['family']} | {r['seed']} | complete | {r['online_final']:.1f} | {averaged:.1f} | {evals} "
            f"| {r['rejected_updates']} |"
        )
    return "\n".join(lines) + "\n"


def plot(records: list[dict[str, Any]], path: Path) -> None:
    """Evaluation curves, one panel per family: online solid, averaged dashed, one colour per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = [f for f in FAMILIES if any(r["family"] == f and r.get("evaluations") for r in records)]
    if not families:
        return
    fig, axes = plt.subplots(1, len(families), figsize=(3.6 * len(families), 3.0), sharey=True, squeeze=False)
    for ax, family in zip(axes[0], families, strict=True):
        for k, r in enumerate(r for r in records if r["family"] == family and r.get("evaluations")):
            steps = [e[0] for e in r["evaluations"]]
            ax.plot(steps, [e[1] for e in r["evaluations"]], "-o", color=f"C{k}", ms=3, label=f"seed {r['seed']}")
            if all(e[2] is not None for e in r["evaluations"]):
                ax.plot(steps, [e[2] for e in r["evaluations"]], "--", color=f"C{k}", alpha=0.7)
        ax.set_title(family, fontsize=9)
        ax.set_xlabel("env steps", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    axes[0][0].set_ylabel("greedy eval return (10 episodes)", fontsize=8)
    fig.suptitle(f"{ENV}, the CLI's settings: online solid, averaged (τ = 1e-3) dashed", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def publish(records: list[dict[str, Any]], out: Path, runs: Path, command: str | None) -> str:
    """Write README.md, summary.json, learning_curves.png (and, when run directories exist, runs.csv.gz) into
    ``out``; returns the table."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # scripts/pack_results.py, beside this file
    import pack_results
    out.mkdir(parents=True, exist_ok=True)
    text = table(records)
    (out / "README.md").write_text(
        "# Every posterior family on CartPole-v1 (the CLI's settings, 50k steps, held-out seeds)\n\n"
        "Made by `python scripts/families.py` (see its docstring; the command lines are in `command.txt`). Greedy "
        "evaluation of 10 episodes; online = the posterior mean, averaged = its Polyak average (τ = 1e-3). "
        "`dlr`'s five held-out runs are in `results/generalization/CartPole`. The run directories (config, "
        f"metrics, eval, plot, checkpoint) are written under `{runs.as_posix()}/` and not committed; "
        "`runs.csv.gz` here packs each run's metrics.csv rows (episodes and evaluations) with its config and "
        "eval.json, `summary.json` has this table's numbers with every evaluation, `learning_curves.png` the "
        "evaluation curves.\n\n" + text
    )
    (out / "summary.json").write_text(json.dumps({"env": ENV, "runs": records}, indent=1) + "\n")
    png = out / "learning_curves.png"
    plot(records, png)
    if png.is_file():
        pack_results.shrink_png(png)
    if any(runs.glob("*-s*/metrics.csv")):
        pack_results.pack(runs, out / pack_results.PACKED, "train")
    if command:
        pack_results.add_command(out, command)
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    ap.add_argument("--seeds", nargs="+", type=int, default=[100, 101, 102])
    ap.add_argument("--steps", type=int, default=50_000)
    ap.add_argument("--out", default="results/families", help="README, summary, figure, packed runs (committed)")
    ap.add_argument("--runs", default="runs/families", help="the run directories and logs (git-ignored)")
    ap.add_argument("--table-only", action="store_true")
    args = ap.parse_args(argv)
    out, runs = Path(args.out), Path(args.runs)
    command = None
    if not args.table_only:
        runs.mkdir(parents=True, exist_ok=True)
        command = shlex.join(["python", "scripts/families.py", *(sys.argv[1:] if argv is None else argv)])
        for seed in args.seeds:
            for family in args.families:
                print(f"{family} seed {seed}: exit {run(family, seed, runs, args.steps)}", flush=True)
    records = collect(runs)
    if not records and (out / "summary.json").is_file():
        records = json.loads((out / "summary.json").read_text())["runs"]
    text = publish(records, out, runs, command)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
