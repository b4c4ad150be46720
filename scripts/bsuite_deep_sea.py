"""bsuite's deep_sea experiment for BongDQN: the sweep N = 10, 12, …, 50, its score, ablations and posterior families.

One command writes everything the README reports (``results/bsuite_deep_sea/``)::

    python scripts/bsuite_deep_sea.py --jobs 2              # sweep (seeds 101-103), ablations, families
    python scripts/bsuite_deep_sea.py --jobs 2 --parts stochastic   # the stretch goal: deep_sea_stochastic

Parts (``--parts``):

* ``sweep``: bsuite's ``deep_sea`` settings (``bsuite.experiments.deep_sea.sweep.SETTINGS``: N = 10, 12, …, 50,
  mapping_seed 42), bsuite's own env through :class:`bongrl.envs.bsuite_adapter.BsuiteDeepSea`, at most 10 000
  episodes (bsuite's ``NUM_EPISODES``), the ``bongrl/DeepSea-v0`` preset, one agent seed per sweep (``--seeds``;
  held out: nothing was chosen on them). Scored with bsuite's ``analysis.score`` (the fraction of sizes solved
  before 2^N + 100 episodes) and ``find_solution`` (episodes to solve: the first episode e with
  total_bad_episodes / e < 0.9).
* ``stochastic`` (on request): bsuite's ``deep_sea_stochastic`` sweep with the same agent, first seed only, scored
  with that experiment's analysis (fewer than 80 % bad episodes, counted from episode 100).
* ``ablations``: N = 20 and 40 without each part of the sampler (plain posterior samples θ ~ N(μ, Σ), the prior
  covariance as preconditioner, no randomised prior), at most ``--ablation-episodes`` episodes.
* ``families``: the same sampler over other posteriors at N = 20 and 40 (``dlr``, ``full``; ``kfac`` and the previous
  configuration — ``full`` on 512 fixed random ReLU features — at N = 20 only), first sweep seed only.

A run stops at the episode where bsuite's criterion is first met: later episodes cannot change the score or the
episodes to solve. Each run is one row of ``runs.csv`` (kept: rerunning the command only runs what is missing);
``summary.md``, ``scaling.png`` and ``summary.json`` are rebuilt from it. bsuite 0.3.6's analysis calls
``pandas.Series.append`` (removed in pandas 2); :func:`bsuite_analysis` supplies it as ``pandas.concat`` for the
duration of the call.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling script, also when loaded by file path
from deep_sea_scaling import features, read_typed_rows, run_jobs, total_bad  # noqa: E402  (shared with the sibling)

SIZES = list(range(10, 51, 2))  # bsuite.experiments.deep_sea.sweep.SETTINGS
NUM_EPISODES = 10_000  # bsuite.experiments.deep_sea.sweep.NUM_EPISODES
MAPPING_SEED = 42
ABLATION_SIZES = (20, 40)

#: name -> (posterior family or None for the preset's, hyperparameter overrides, what it is)
VARIANTS: dict[str, tuple[str | None, dict[str, Any], str]] = {
    "preset": (None, {}, "the bongrl/DeepSea-v0 preset: linear head on the one-hot grid, diag posterior, "
               "randomise-then-optimise samples preconditioned by the BONG covariance"),
    "plain-samples": (None, {"rto_sweeps": 0}, "plain posterior samples θ ~ N(μ, Σ) of the same posterior"),
    "identity-preconditioner": (None, {"rto_precondition": "identity"},
                                "sweeps preconditioned by the prior covariance σ₀²I instead of the BONG covariance"),
    "fixed-prior": (None, {"rto_randomize_prior": False}, "no randomised prior: samples anchored at the prior mean"),
    "dlr": ("dlr", {}, "diagonal plus rank-10 posterior"),
    "full": ("full", {}, "full-covariance posterior"),
    "kfac": ("kfac", {}, "Kronecker-factored posterior"),
    "random-features": ("full", {"hidden": "features"},
                        "the previous configuration: full covariance over fixed random ReLU features, width the "
                        "smallest power of two >= N² (at least 256)"),
}
PARTS = {"sweep": ["preset"], "stochastic": ["preset"],
         "ablations": ["plain-samples", "identity-preconditioner", "fixed-prior"],
         "families": ["dlr", "full", "kfac", "random-features"]}
DEFAULT_PARTS = ["sweep", "ablations", "families"]  # "stochastic" on request
FIELDS = ["part", "variant", "size", "seed", "max_episodes", "episodes", "solved", "episodes_to_solve",
          "total_bad_episodes", "beat_dither", "wall_s", "wall_per_episode_s", "params", "merged_transitions",
          "failure"]


def make_agent(size: int, seed: int, variant: str, stochastic: bool = False) -> tuple[Any, Any]:
    """BongDQN on bsuite's DeepSea of side ``size`` (mapping_seed 42) for ``variant`` (:data:`VARIANTS`);
    ``stochastic``: bsuite's deep_sea_stochastic env (noise seeded with the agent's seed)."""
    import bongrl  # noqa: F401  (registers the envs)
    from bongrl import presets
    from bongrl.agents.bong_dqn import BongDQN
    from bongrl.envs.bsuite_adapter import BsuiteDeepSea

    preset = presets.get("bongrl/DeepSea-v0")
    posterior, overrides, _ = VARIANTS[variant]
    hp = {**preset["hyperparameters"], **overrides}
    if hp.get("hidden") == "features":
        hp["hidden"] = [features(size)]
    env = BsuiteDeepSea(size=size, mapping_seed=MAPPING_SEED, deterministic=not stochastic,
                        seed=seed if stochastic else None)
    agent = BongDQN(env, posterior=posterior or preset["posterior"], seed=seed, device="cpu", **hp)
    return agent, env


def run(size: int, seed: int, variant: str, max_episodes: int, part: str) -> dict[str, Any]:
    """One run, stopped at bsuite's criterion or after ``max_episodes`` episodes; a crash is a failed row."""
    import torch

    torch.set_num_threads(1)
    row: dict[str, Any] = {"part": part, "variant": variant, "size": size, "seed": seed,
                           "max_episodes": max_episodes, "failure": ""}
    start = time.perf_counter()
    solved_at: list[int] = []
    agent = None
    stochastic = part == "stochastic"
    # bsuite's find_solution: deep_sea total_bad / e < 0.9; deep_sea_stochastic < 0.8 and only from episode 100
    thresh, first = (0.8, 100) if stochastic else (0.9, 1)
    try:
        agent, env = make_agent(size, seed, variant, stochastic)

        def callback(_agent: Any, event: dict[str, Any]) -> bool:
            e = event["episode"]
            if e >= first and total_bad(env) / e < thresh:
                solved_at.append(e)
                return False
            return e < max_episodes

        agent.learn(max_episodes * size, callback=callback)
    except Exception as exc:  # noqa: BLE001 - a crashed run is reported as failed, never dropped
        row["failure"] = f"{type(exc).__name__}: {exc}"[:200]
    wall = time.perf_counter() - start
    episodes = agent.num_episodes if agent is not None else 0
    solved = bool(solved_at) and not row["failure"]
    store = agent.rto.store if agent is not None else None
    row.update(
        episodes=episodes, solved=solved, episodes_to_solve=solved_at[0] if solved else "",
        total_bad_episodes=total_bad(env) if agent is not None else "",
        beat_dither=solved and solved_at[0] < 2**size + 100, wall_s=round(wall, 2),
        wall_per_episode_s=round(wall / max(1, episodes), 5),
        params=agent.est.num_params if agent is not None else "",
        merged_transitions=int(store["m"]) if store is not None else "",
    )
    return row


def _job(args: tuple) -> dict[str, Any]:
    row = run(*args)
    shown = row["episodes_to_solve"] if row["solved"] else f">{row['episodes']}"
    print(f"{row['part']:9s} {row['variant']:24s} N={row['size']:2d} seed={row['seed']} episodes to solve {shown} "
          f"({row['wall_per_episode_s']:.4f} s/episode){' FAILED ' + row['failure'] if row['failure'] else ''}",
          flush=True)
    return row


# ----------------------------------------------------------------------------------------------- bsuite analysis
@contextlib.contextmanager
def _series_append() -> Iterator[None]:
    """``pandas.Series.append`` (removed in pandas 2.0) as ``pandas.concat``, which bsuite 0.3.6's analysis calls;
    its warnings about pandas keywords it uses (``inplace``) are bsuite's and silenced for the call."""
    import warnings

    import pandas as pd

    had = hasattr(pd.Series, "append")
    if not had:
        pd.Series.append = lambda self, other: pd.concat([self, other])  # type: ignore[attr-defined]
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"bsuite\.")
            yield
    finally:
        if not had:
            del pd.Series.append


def bsuite_frame(rows: list[dict[str, Any]]) -> Any:
    """bsuite's deep_sea log format for finished runs: one row per run at its last logged episode (the episode the
    criterion was met, or the last one), with ``size``, ``episode`` and ``total_bad_episodes``."""
    import pandas as pd

    return pd.DataFrame({"size": [int(r["size"]) for r in rows],
                         "episode": [int(r["episodes_to_solve"]) if r["solved"] else int(r["episodes"]) for r in rows],
                         "total_bad_episodes": [int(r["total_bad_episodes"] or 0) for r in rows]})


def bsuite_analysis(rows: list[dict[str, Any]], stochastic: bool = False) -> tuple[float, dict[int, tuple[int, bool]]]:
    """bsuite's deep_sea (or deep_sea_stochastic) ``score`` and ``find_solution`` ({N: (episode, solved)}) for one
    sweep's runs."""
    if stochastic:
        from bsuite.experiments.deep_sea_stochastic import analysis
    else:
        from bsuite.experiments.deep_sea import analysis

    df = bsuite_frame(rows)
    with _series_append():
        score = float(analysis.score(df))
        sol = analysis.find_solution(df) if stochastic else analysis.find_solution(df, merge=False)
    return score, {int(r.size): (int(r.episode), bool(r.solved)) for r in sol.itertuples()}


def loglog_slope(x: list[float], y: list[float]) -> float:
    """Least-squares slope of log y on log x (the fitted exponent)."""
    import numpy as np

    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


# ----------------------------------------------------------------------------------------------- files
def read_rows(path: Path) -> list[dict[str, Any]]:
    return read_typed_rows(path, ("size", "seed", "max_episodes", "episodes", "episodes_to_solve"),
                           ("wall_s", "wall_per_episode_s"), ("solved", "beat_dither"))


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    rows = sorted(rows, key=lambda r: (r["part"], r["variant"], r["size"], r["seed"]))
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: r[k] for k in FIELDS})


def _cell(r: dict[str, Any]) -> str:
    if r["failure"]:
        return "crashed"
    return str(r["episodes_to_solve"]) if r["solved"] else f">{r['episodes']}"


def summarize(rows: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """summary.md and summary.json from the runs."""
    import numpy as np

    sweep = [r for r in rows if r["part"] == "sweep"]
    seeds = sorted({r["seed"] for r in sweep})
    out: dict[str, Any] = {"scores": {}, "episodes_to_solve": {}, "wall_per_episode_s": {}}
    lines = ["# bsuite deep_sea: BongDQN", "",
             "Generated by `python scripts/bsuite_deep_sea.py` from `runs.csv`. bsuite's env (mapping_seed 42), at "
             "most 10 000 episodes, the `bongrl/DeepSea-v0` preset; agent seeds " + ", ".join(map(str, seeds)) +
             " (held out). A run stops at the episode bsuite's criterion is met. Wall times: one torch thread on a "
             "shared 2-core CPU.", ""]
    if sweep:
        complete = {s: [r for r in sweep if r["seed"] == s] for s in seeds}
        lines += ["## Sweep: episodes to solve (bsuite's find_solution) and score", "",
                  "| N | " + " | ".join(f"seed {s}" for s in seeds) + " | 0.112·N^2.5 (Successor Uncertainties) | "
                  "2^N + 100 | wall per episode (s) |", "|---" * (len(seeds) + 4) + "|"]
        for n in sorted({r["size"] for r in sweep}):
            rs = {r["seed"]: r for r in sweep if r["size"] == n}
            cells = [_cell(rs[s]) if s in rs else "–" for s in seeds]
            wall = np.mean([r["wall_per_episode_s"] for r in rs.values()])
            lines.append(f"| {n} | " + " | ".join(cells) + f" | {0.112 * n**2.5:.0f} | {2**n + 100:.3g} | {wall:.4f} |")
        lines.append("")
        for s, rs in complete.items():
            if {r["size"] for r in rs} != set(SIZES):
                lines.append(f"- seed {s}: {len(rs)}/{len(SIZES)} sizes run (no score: the sweep is incomplete)")
                continue
            score, sol = bsuite_analysis(rs)
            out["scores"][s] = score
            out["episodes_to_solve"][s] = {n: ep for n, (ep, ok) in sol.items() if ok}
            lines.append(f"- **bsuite deep_sea score, seed {s}: {score:.2f}** ({sum(ok for _, ok in sol.values())}"
                         f"/{len(sol)} sizes solved within 10k episodes)")
        solved = [r for r in sweep if r["solved"]]
        if len({r["size"] for r in solved}) >= 3:
            e_exp = loglog_slope([r["size"] for r in solved], [r["episodes_to_solve"] for r in solved])
            w_exp = loglog_slope([r["size"] for r in sweep], [r["wall_per_episode_s"] for r in sweep])
            big = [r for r in sweep if r["size"] >= 30]
            w_big = loglog_slope([r["size"] for r in big], [r["wall_per_episode_s"] for r in big]) if big else math.nan
            out.update(episodes_exponent=e_exp, wall_exponent=w_exp, wall_exponent_n30=w_big)
            n50 = [r for r in sweep if r["size"] == 50]
            lines += ["", f"- episodes to solve grow as N^{e_exp:.2f} (log-log fit over every solved run); wall time "
                      f"per episode as N^{w_exp:.2f} over N = 10–50 (N^{w_big:.2f} over N = 30–50)",
                      "- N = 50: " + ", ".join(_cell(r) for r in sorted(n50, key=lambda r: r["seed"]))
                      + f" episodes (Successor Uncertainties' curve: {0.112 * 50**2.5:.0f})"]
        out["wall_per_episode_s"] = {n: float(np.mean([r["wall_per_episode_s"] for r in sweep if r["size"] == n]))
                                     for n in sorted({r["size"] for r in sweep})}
    stoch = [r for r in rows if r["part"] == "stochastic"]
    if stoch:
        lines += ["", "## deep_sea_stochastic (bsuite's noisy variant; criterion < 0.8 bad from episode 100)", "",
                  "| N | " + " | ".join(str(r["size"]) for r in sorted(stoch, key=lambda r: r["size"])) + " |",
                  "|---" * (len(stoch) + 1) + "|",
                  "| episodes to solve | " + " | ".join(_cell(r) for r in sorted(stoch, key=lambda r: r["size"]))
                  + " |", ""]
        for s, rs in sorted((s, [r for r in stoch if r["seed"] == s]) for s in {r["seed"] for r in stoch}):
            if {r["size"] for r in rs} == set(SIZES):
                score, _ = bsuite_analysis(rs, stochastic=True)
                out.setdefault("stochastic_scores", {})[s] = score
                lines.append(f"- **bsuite deep_sea_stochastic score, seed {s}: {score:.2f}**")
            else:
                lines.append(f"- seed {s}: {len(rs)}/{len(SIZES)} sizes run (no score: the sweep is incomplete)")
    for part, title in (("ablations", "Ablations"), ("families", "Posterior families")):
        prs = [r for r in rows if r["part"] == part]
        if not prs:
            continue
        base = [r for r in sweep if r["size"] in ABLATION_SIZES]
        lines += ["", f"## {title} (N = 20 and 40)", "",
                  "| variant | what | N | episodes to solve (per seed) | wall per episode (s) | cap |",
                  "|---|---|---|---|---|---|"]
        for variant in ["preset", *PARTS[part]]:
            vrs = base if variant == "preset" else [r for r in prs if r["variant"] == variant]
            for n in ABLATION_SIZES:
                rs = sorted((r for r in vrs if r["size"] == n), key=lambda r: r["seed"])
                if not rs:
                    continue
                lines.append(f"| {variant} | {VARIANTS[variant][2]} | {n} | {', '.join(_cell(r) for r in rs)} | "
                             f"{np.mean([r['wall_per_episode_s'] for r in rs]):.4f} | {rs[0]['max_episodes']} |")
        out[part] = [{k: r[k] for k in FIELDS} for r in prs]
    failed = [r for r in rows if r["failure"]]
    lines += ["", f"Crashed runs: {len(failed)}" + "".join(f"\n- {r['variant']} N={r['size']} seed {r['seed']}: "
                                                            f"{r['failure']}" for r in failed)]
    return "\n".join(lines) + "\n", out


def plot(rows: list[dict[str, Any]], path: Path, exponents: dict[str, Any]) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    sweep = [r for r in rows if r["part"] == "sweep"]
    if not sweep:
        return
    plt.style.use("default")  # bsuite's analysis imports plotnine, which may leave a style behind
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.5))
    ns = np.linspace(10, 50, 100)
    ax.plot(ns, ns**3 / 3.16, "k--", label="Bootstrapped DQN + prior: N³/3.16")
    ax.plot(ns, 0.112 * ns**2.5, "k:", label="Successor Uncertainties: 0.112·N^2.5")
    ax.plot(ns, np.minimum(2.0**ns + 100, 1e5), color="0.7", lw=1, label="dithering: 2^N + 100")
    for k, s in enumerate(sorted({r["seed"] for r in sweep})):
        rs = sorted((r for r in sweep if r["seed"] == s), key=lambda r: r["size"])
        ok = [r for r in rs if r["solved"]]
        ax.plot([r["size"] for r in ok], [r["episodes_to_solve"] for r in ok], "o-", ms=3, color=f"C{k}",
                label=f"BongDQN seed {s}")
        bad = [r for r in rs if not r["solved"]]
        if bad:
            ax.scatter([r["size"] for r in bad], [r["episodes"] for r in bad], marker="x", color="C3", zorder=3)
        bx.plot([r["size"] for r in rs], [r["wall_per_episode_s"] for r in rs], "o-", ms=3, color=f"C{k}")
    ax.set_yscale("log")
    ax.set_ylim(10, 1e5)
    ax.set_xlabel("DeepSea size N")
    ax.set_ylabel("episodes to solve (bsuite)")
    ax.set_title(f"bsuite deep_sea (episodes ∝ N^{exponents.get('episodes_exponent', math.nan):.2f})")
    ax.legend(fontsize=7)
    bx.set_xscale("log")
    bx.set_yscale("log")
    bx.set_xticks([10, 20, 30, 40, 50])
    bx.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    bx.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    bx.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%.2f"))
    bx.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%.2f"))
    bx.set_xlabel("DeepSea size N")
    bx.set_ylabel("wall time per episode (s, 1 CPU thread)")
    bx.set_title(f"cost per episode ∝ N^{exponents.get('wall_exponent', math.nan):.2f} "
                 f"(N ≥ 30: N^{exponents.get('wall_exponent_n30', math.nan):.2f})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plan(parts: list[str], seeds: list[int], max_episodes: int, ablation_episodes: int) -> list[tuple]:
    """The (size, seed, variant, max_episodes, part) runs of the chosen parts, largest N first."""
    jobs: list[tuple] = []
    if "sweep" in parts:
        jobs += [(n, s, "preset", max_episodes, "sweep") for s in seeds for n in SIZES]
    if "stochastic" in parts:  # the stretch goal: one seed
        jobs += [(n, seeds[0], "preset", max_episodes, "stochastic") for n in SIZES]
    if "ablations" in parts:
        jobs += [(n, s, v, ablation_episodes, "ablations") for v in PARTS["ablations"] for s in seeds
                 for n in ABLATION_SIZES]
    if "families" in parts:
        # N = 40 is left out where a run costs too much: 2048 random features (~7 s per episode), kfac's dense
        # 1600 × 1600 input factor
        jobs += [(n, seeds[0], v, ablation_episodes, "families") for v in PARTS["families"] for n in ABLATION_SIZES
                 if not (v in ("random-features", "kfac") and n > 20)]
    return sorted(jobs, key=lambda j: -j[0])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--parts", nargs="+", choices=sorted(PARTS), default=DEFAULT_PARTS)
    p.add_argument("--seeds", type=int, nargs="+", default=[101, 102, 103], help="agent seeds (one sweep each)")
    p.add_argument("--max-episodes", type=int, default=NUM_EPISODES)
    p.add_argument("--ablation-episodes", type=int, default=3_000, help="cap of the ablation and family runs")
    p.add_argument("--sizes", type=int, nargs="+", help="only these sweep sizes (default: bsuite's 10, 12, …, 50)")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--out", default="results/bsuite_deep_sea")
    p.add_argument("--report-only", action="store_true", help="rebuild the summary and plot from runs.csv")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "runs.csv"
    rows = read_rows(csv_path)
    have = {(r["part"], r["variant"], r["size"], r["seed"], r["max_episodes"]) for r in rows}
    jobs = [] if args.report_only else [
        j for j in plan(args.parts, args.seeds, args.max_episodes, args.ablation_episodes)
        if (j[4], j[2], j[0], j[1], j[3]) not in have and (args.sizes is None or j[0] in args.sizes)]
    t0 = time.perf_counter()
    def keep(row: dict[str, Any]) -> None:
        rows.append(row)
        write_rows(csv_path, rows)

    run_jobs(_job, jobs, args.jobs, keep)
    md, summary = summarize(rows)
    (out / "summary.md").write_text(md)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    plot(rows, out / "scaling.png", summary)
    print(md)
    print(f"{len(jobs)} runs in {time.perf_counter() - t0:.0f} s; wrote {out}/", file=sys.stderr)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    raise SystemExit(main())
