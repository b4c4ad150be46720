"""Every posterior family on CartPole with the CLI's settings: `bongrl train --posterior F` for 50k steps.

The CLI's settings for CartPole are BongDQN's class defaults (the CartPole preset adds no hyperparameter);
``full`` runs on a [32] network (P = 1 282; a dense covariance over the default [64, 64] net's 4 610 weights
costs ~190 ms per update). Each run is a run directory ``<out>/<family>-s<seed>/`` (config, metrics.csv with both
evaluations and the rejected-update count, eval.json, learning curve, checkpoint). Writes ``<out>/README.md``:
per family and seed the final greedy evaluation on the online and the averaged weights, the evaluation curve
(online), and the updates rejected as non-finite. (``dlr``, the default, has five held-out CartPole runs in
``results/generalization/CartPole`` already; ``--families diag kfac full`` skips it.)

Examples::

    python scripts/families.py --seeds 100 101 102            # runs what is missing, then the table
    python scripts/families.py --table-only
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

FAMILIES: dict[str, list[str]] = {"dlr": [], "diag": [], "kfac": [], "full": ["--set", "hidden=[32]"]}


def run(family: str, seed: int, out: Path, steps: int) -> int:
    """One `bongrl train` run (skipped when its eval.json exists); returns the exit code."""
    run_dir = out / f"{family}-s{seed}"
    if (run_dir / "eval.json").is_file():
        return 0
    cmd = [sys.executable, "-m", "bongrl", "train", "--env", "CartPole-v1", "--posterior", family, "--seed",
           str(seed), "--steps", str(steps), "--eval-every", "10000", "--quiet", "--out", str(run_dir),
           *FAMILIES[family]]
    with open(out / f"{family}-s{seed}.log", "w") as log:
        return subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode


def _evals(run_dir: Path) -> list[str]:
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    out = []
    for line in rows[1:]:
        row = dict(zip(header, line.split(","), strict=False))
        if row.get("kind") == "eval":
            out.append(f"{float(row['eval_mean']):.0f}")
    return out


def table(out: Path) -> str:
    lines = [
        "| family | seed | status | online final | averaged final | online evals every 10k | rejected updates |",
        "|---|---|---|---|---|---|---|",
    ]
    for family in FAMILIES:
        for run_dir in sorted(out.glob(f"{family}-s*/")):
            ev = run_dir / "eval.json"
            if not ev.is_file():
                log = out / f"{run_dir.name}.log"
                tail = (log.read_text().strip().splitlines() if log.is_file() else [])[-1:] or ["no eval.json"]
                lines.append(f"| {family} | {run_dir.name.split('-s')[-1]} | **incomplete or failed**: "
                             f"{tail[0][:120]} | | | | |")
                continue
            d = json.loads(ev.read_text())
            avg = d.get("averaged") or {}
            lines.append(
                f"| {family} | {run_dir.name.split('-s')[-1]} | complete "
                f"| {d['mean']:.1f} | {avg.get('mean', float('nan')):.1f} | {', '.join(_evals(run_dir))} "
                f"| {d.get('rejected_updates', 0)} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    ap.add_argument("--seeds", nargs="+", type=int, default=[100, 101, 102])
    ap.add_argument("--steps", type=int, default=50_000)
    ap.add_argument("--out", default="results/families")
    ap.add_argument("--table-only", action="store_true")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.table_only:
        for seed in args.seeds:
            for family in args.families:
                print(f"{family} seed {seed}: exit {run(family, seed, out, args.steps)}", flush=True)
    text = table(out)
    (out / "README.md").write_text(
        "# Every posterior family on CartPole-v1 (the CLI's settings, 50k steps, held-out seeds)\n\n"
        "Made by `python scripts/families.py` (see its docstring). Greedy evaluation of 10 episodes; online = "
        "the posterior mean, averaged = its Polyak average (τ = 1e-3). `dlr`'s five held-out runs are in "
        "`results/generalization/CartPole`. The run directories here keep config, metrics, eval and plot; their "
        "checkpoints were not committed.\n\n" + text
    )
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
