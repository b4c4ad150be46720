"""DeepSea scaling of BongDQN on fixed random features (the previous DeepSea configuration; full covariance).

The current ``bongrl/DeepSea-v0`` preset (a linear head on the one-hot grid, diag posterior) and bsuite's own
deep_sea sweep are in ``scripts/bsuite_deep_sea.py``; this script keeps the random-feature variant reproducible:
the preset's settings with ``posterior="full"`` and ``hidden=[features(N)]``.

Runs it (mapping_seed 42) for each size N and seed, stops each run as soon as bsuite's
criterion is met (first episode e with total_bad_episodes / e < 0.9, ``bsuite/experiments/deep_sea/analysis.py``)
and writes

* ``<out>.csv``: size, seed, exploration, features, episodes_to_solve, solved, wall_s, wall_per_episode_s,
  replay_size (distinct merged (s, a, s') transitions the sweeps run over), transitions (env steps), max_episodes,
  beat_dither (solved before 2^N + 100 episodes: bsuite's score counts these);
* ``<out>.png``: episodes-to-solve vs N (log-log) with the references N³/3.16 (Bootstrapped DQN + prior) and
  0.112·N^2.5 (Successor Uncertainties), and wall time per episode vs N;
* ``<out>.md``: the same as tables, plus bsuite's score per exploration rule.

The random-feature width grows with N (the head posterior needs about one feature per state):
``features(N)`` = the smallest power of two ≥ N², at least 256 (N ≤ 16: 256, N = 20: 512, N = 30: 1024,
N = 40: 2048). Everything else is the preset.

Examples::

    python scripts/deep_sea_scaling.py --sizes 10 14 20 30 40 --seeds 3 --max-episodes 10000 --jobs 2
    python scripts/deep_sea_scaling.py --sizes 10 20 --seeds 2 --explorations thompson greedy epsilon \\
        --max-episodes 500 --out results/deep_sea_ablation
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

FIELDS = [
    "size",
    "seed",
    "exploration",
    "env",
    "features",
    "episodes_to_solve",
    "solved",
    "wall_s",
    "wall_per_episode_s",
    "replay_size",
    "transitions",
    "max_episodes",
    "beat_dither",
]


#: the random-feature variant's family (the preset's is "diag", for the linear head on the one-hot grid)
POSTERIOR = "full"


def features(size: int) -> int:
    """Random ReLU features of the body for DeepSea of side N: the smallest power of two ≥ N², at least 256."""
    return max(256, 1 << math.ceil(math.log2(size * size)))


def ref_bdqn(n: float) -> float:
    """Bootstrapped DQN + randomised prior: ≈ N³/3.16 episodes to solve (bsuite)."""
    return n**3 / 3.16


def ref_su(n: float) -> float:
    """Successor Uncertainties: ≈ 0.112·N^2.5 episodes to solve."""
    return 0.112 * n**2.5


def _parse_set(items: list[str]) -> dict[str, Any]:
    import json

    out: dict[str, Any] = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def make_agent(
    size: int,
    seed: int,
    exploration: str = "thompson",
    env_kind: str = "ours",
    overrides: dict[str, Any] | None = None,
):
    """(agent, base env) for the DeepSea preset at side ``size``; ``env_kind`` "bsuite" runs bsuite's own env."""
    import gymnasium as gym

    import bongrl  # noqa: F401  (registers the envs)
    from bongrl import presets
    from bongrl.agents.bong_dqn import BongDQN

    preset = presets.get("bongrl/DeepSea-v0")
    hp = {**preset["hyperparameters"], "hidden": [features(size)], **(overrides or {})}
    if env_kind == "bsuite":
        from bongrl.envs.bsuite_adapter import BsuiteDeepSea

        env: Any = BsuiteDeepSea(size=size, mapping_seed=42)
        base = env
    else:
        env = gym.make("bongrl/DeepSea-v0", size=size, mapping_seed=42)
        base = env.unwrapped
    agent = BongDQN(env, posterior=POSTERIOR, exploration=exploration, seed=seed, **hp)
    return agent, base


def total_bad(base: Any) -> int:
    if hasattr(base, "total_bad_episodes"):
        return int(base.total_bad_episodes)
    return int(base.bsuite_info()["total_bad_episodes"])


def run_one(
    size: int,
    seed: int,
    exploration: str = "thompson",
    max_episodes: int = 10_000,
    env_kind: str = "ours",
    overrides: dict[str, Any] | None = None,
    stop: bool = True,
) -> dict[str, Any]:
    """One run; stops at bsuite's solve criterion (unless ``stop`` is False) or after ``max_episodes``."""
    import torch

    torch.set_num_threads(1)
    agent, base = make_agent(size, seed, exploration, env_kind, overrides)
    solved_at: list[int] = []
    start = time.perf_counter()

    def callback(_agent: Any, event: dict[str, Any]) -> bool | None:
        if event["kind"] != "episode":
            return None
        e = event["episode"]
        if not solved_at and total_bad(base) / e < 0.9:
            solved_at.append(e)
            if stop:
                return False
        return None

    agent.learn(max_episodes * size, callback=callback)
    wall = time.perf_counter() - start
    episodes = agent.num_episodes
    store = agent.rto.store
    solved = bool(solved_at)
    ep = solved_at[0] if solved else episodes
    return {
        "size": size,
        "seed": seed,
        "exploration": exploration,
        "env": env_kind,
        "features": agent.config.hidden[-1],
        "episodes_to_solve": ep,
        "solved": solved,
        "wall_s": round(wall, 2),
        "wall_per_episode_s": round(wall / max(1, episodes), 4),
        "replay_size": int(store["m"]) if store is not None else agent._replay_size(),
        "transitions": agent.num_timesteps,
        "max_episodes": max_episodes,
        "beat_dither": solved and ep < 2**size + 100,
    }


def bench_rto(size: int, replay_sizes: list[int], repeats: int = 3) -> list[dict[str, Any]]:
    """Seconds per randomise-then-optimise sample, merged vs the plain replay, as the replay grows.

    The replay is filled with uniformly random episodes (the distinct transitions saturate at ≤ 2N²), then one
    sample is timed with ``rto_merge`` on (sweeps over distinct transitions on cached features) and off (sweeps
    over every stored transition through the network)."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    out = []
    for merge in (True, False):
        agent, base = make_agent(size, 0, overrides={"rto_merge": merge, "buffer_size": max(replay_sizes)})
        rng = np.random.default_rng(0)
        filled = 0
        for target in sorted(replay_sizes):
            while (
                filled < target
            ):  # random episodes straight into the replay (no posterior updates: timing only)
                obs, _ = base.reset()
                done = False
                while not done:
                    a = int(rng.integers(2))
                    nxt, r, done, _, _ = base.step(a)
                    t = lambda x: torch.as_tensor(np.asarray(x), dtype=agent.dtype).unsqueeze(0)  # noqa: E731, B023
                    agent._replay_add(t(obs), torch.tensor([a]), t(r), t(nxt), t(float(done)))
                    agent.num_timesteps += 1
                    filled += 1
                    obs = nxt
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                try:
                    agent.rto.sample()
                except FloatingPointError:  # the replay bypassed the posterior updates: the numbers are
                    agent.rto.prev = None  # meaningless, the operation count (what is timed) is the same
                times.append(time.perf_counter() - t0)
            store = agent.rto.store
            row = {
                "size": size,
                "features": agent.config.hidden[-1],
                "merge": merge,
                "replay": filled,
                "distinct": int(store["m"]) if store is not None else filled,
                "s_per_sample": round(float(np.median(times)), 4),
            }
            print(row, flush=True)
            out.append(row)
    return out


def run_jobs(job: Callable[[tuple], dict[str, Any]], jobs: list[tuple], processes: int,
             on_row: Callable[[dict[str, Any]], None]) -> None:
    """``job(args)`` for every ``args`` in ``jobs``, in ``processes`` forked workers (a fresh one per run), calling
    ``on_row`` with each result as it arrives (in order when ``processes`` is 1)."""
    if processes > 1 and len(jobs) > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(processes, maxtasksperchild=1) as pool:
            for row in pool.imap_unordered(job, jobs):
                on_row(row)
    else:
        for args in jobs:
            on_row(job(args))


def _job(args: tuple) -> dict[str, Any]:
    size, seed, exploration, max_episodes, env_kind, overrides, stop = args
    row = run_one(size, seed, exploration, max_episodes, env_kind, overrides, stop)
    print(" ".join(f"{k}={row[k]}" for k in FIELDS), flush=True)
    return row


def read_typed_rows(path: Path, ints: tuple[str, ...], floats: tuple[str, ...] = (),
                    bools: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The rows of a results CSV (none if it does not exist) with the named columns parsed; an empty int cell
    stays ""."""
    if not path.exists():
        return []
    rows = []
    with path.open() as f:
        for r in csv.DictReader(f):
            r.update({k: int(r[k]) if r[k] != "" else "" for k in ints})
            r.update({k: float(r[k]) for k in floats})
            r.update({k: r[k] == "True" for k in bools})
            rows.append(r)
    return rows


def read_rows(path: Path) -> list[dict[str, Any]]:
    return read_typed_rows(
        path, ("size", "seed", "features", "episodes_to_solve", "replay_size", "transitions", "max_episodes"),
        ("wall_s", "wall_per_episode_s"), ("solved", "beat_dither"))


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    rows = sorted(rows, key=lambda r: (r["exploration"], r["env"], r["size"], r["max_episodes"], r["seed"]))
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: r[k] for k in FIELDS})


def summary_md(rows: list[dict[str, Any]], title: str) -> str:
    import numpy as np

    lines = [
        f"# {title}",
        "",
        "Generated by `scripts/deep_sea_scaling.py` (see `docs/deep_sea.md`). Episodes to solve by "
        "bsuite's criterion (first episode with total_bad_episodes/episode < 0.9); '>B' = not solved within the "
        "budget B episodes. Wall times on a shared 2-core CPU (torch 1 thread, ~5 other jobs running).",
        "",
    ]
    lines += [
        "| exploration | N | features | episodes to solve (per seed) | median | N³/3.16 | 0.112·N^2.5 | "
        "all < N³/3.16 | wall per episode (s) | wall per run (s) | replay entries (distinct, for RTO) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["exploration"], r["env"], r["size"], r["max_episodes"]), []).append(r)
    for (expl, env, n, budget), rs in sorted(groups.items()):
        rs = sorted(rs, key=lambda r: r["seed"])
        eps = [str(r["episodes_to_solve"]) if r["solved"] else f">{r['episodes_to_solve']}" for r in rs]
        med = float(np.median([r["episodes_to_solve"] for r in rs]))
        med_s = f"{med:.0f}" if all(r["solved"] for r in rs) else f"≥{med:.0f}"
        if budget < 100 and not any(r["solved"] for r in rs):
            eps = [f"cost run: {r['episodes_to_solve']} episodes" for r in rs]
            med_s = "–"
        ok = all(r["solved"] and r["episodes_to_solve"] < ref_bdqn(n) for r in rs)
        name = expl if env == "ours" else f"{expl} ({env})"
        walls = ", ".join(f"{r['wall_s']:.0f}" for r in rs)
        lines.append(
            f"| {name} | {n} | {rs[0]['features']} | {', '.join(eps)} | {med_s} | {ref_bdqn(n):.0f} | "
            f"{ref_su(n):.0f} | {'yes' if ok else 'no'} | "
            f"{np.mean([r['wall_per_episode_s'] for r in rs]):.3f} | "
            f"{walls} | {', '.join(str(r['replay_size']) for r in rs)} |"
        )
    lines += [
        "",
        "bsuite score (fraction of (size, seed) runs solved before 2^N + 100 episodes; bsuite's own score "
        "uses one seed per size N = 10, 12, …, 50; short cost-only runs left out; a run stopped at a "
        "budget below 2^N + 100 counts as not solved):",
        "",
    ]
    for expl in sorted({r["exploration"] for r in rows}):
        rs = [r for r in rows if r["exploration"] == expl and (r["solved"] or r["max_episodes"] >= 100)]
        if not rs:
            continue
        lines.append(
            f"- {expl}: {np.mean([r['beat_dither'] for r in rs]):.2f} over {len(rs)} runs "
            f"(sizes {sorted({r['size'] for r in rs})})"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    all_rows = [r for r in rows if r["exploration"] == "thompson" and r["env"] == "ours"]
    rows = [r for r in all_rows if r["solved"] or r["max_episodes"] >= 100]  # not the short cost runs
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.5))
    sizes = sorted({r["size"] for r in rows})
    ns = np.linspace(min(sizes + [10]), max(sizes + [50]), 100)
    ax.plot(ns, ref_bdqn(ns), "k--", label="Bootstrapped DQN + prior: N³/3.16")
    ax.plot(ns, ref_su(ns), "k:", label="Successor Uncertainties: 0.112·N^2.5")
    ax.plot(ns, 2.0**ns + 100, color="0.7", lw=1, label="dithering: 2^N + 100")
    solved = [r for r in rows if r["solved"]]
    unsolved = [r for r in rows if not r["solved"]]
    ax.scatter(
        [r["size"] for r in solved],
        [r["episodes_to_solve"] for r in solved],
        c="C0",
        zorder=3,
        label="BongDQN (RTO head posterior), solved",
    )
    if unsolved:
        ax.scatter(
            [r["size"] for r in unsolved],
            [r["episodes_to_solve"] for r in unsolved],
            marker="^",
            c="C3",
            zorder=3,
            label="not solved (budget reached)",
        )
    med = [np.median([r["episodes_to_solve"] for r in rows if r["size"] == n]) for n in sizes]
    ax.plot(sizes, med, "C0-", alpha=0.6)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(10, 1e5)
    ax.set_xlabel("DeepSea size N")
    ax.set_ylabel("episodes to solve (bsuite criterion)")
    ax.set_xticks(sizes)
    ax.set_xticklabels([str(n) for n in sizes])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.legend(fontsize=7)
    ax.set_title("DeepSea (mapping_seed 42): episodes to solve")
    sizes = sorted({r["size"] for r in all_rows})
    wall = [np.mean([r["wall_per_episode_s"] for r in all_rows if r["size"] == n]) for n in sizes]
    bx.plot(sizes, wall, "o-")
    for n, w in zip(sizes, wall):
        feats = next(r["features"] for r in all_rows if r["size"] == n)
        bx.annotate(f"{feats} feat.", (n, w), fontsize=7, xytext=(3, -10), textcoords="offset points")
    bx.set_xscale("log")
    bx.set_yscale("log")
    bx.set_xticks(sizes)
    bx.set_xticklabels([str(n) for n in sizes])
    bx.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    bx.set_xlabel("DeepSea size N")
    bx.set_ylabel("wall time per episode (s, CPU, 1 thread)")
    bx.set_title("cost")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10, 14, 20, 30, 40])
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..S-1")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--max-episodes", type=int, default=10_000)
    p.add_argument("--explorations", nargs="+", default=["thompson"])
    p.add_argument("--env", choices=["ours", "bsuite"], default="ours")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--no-stop", action="store_true", help="run all max-episodes (cost measurements)")
    p.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="override preset hyperparameters"
    )
    p.add_argument("--out", default="results/deep_sea_scaling", help="output stem (.csv/.md/.png)")
    p.add_argument("--append", action="store_true", help="keep the rows already in <out>.csv (other runs)")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--report-only", action="store_true", help="rewrite <out>.md/.png from <out>.csv, no runs")
    p.add_argument(
        "--bench-rto",
        type=int,
        nargs="*",
        metavar="REPLAY",
        help="only time one RTO sample (merged vs plain) at these replay sizes, for each --sizes",
    )
    args = p.parse_args(argv)
    if args.bench_rto:
        for n in args.sizes:
            bench_rto(n, args.bench_rto)
        return 0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    csv_path = out.with_suffix(".csv")
    overrides = _parse_set(args.set)
    done = read_rows(csv_path) if (args.append or args.report_only) else []
    if args.report_only:
        args.sizes = []
    key = lambda r: (r["size"], r["seed"], r["exploration"], r["env"], r["max_episodes"])  # noqa: E731
    have = {key(r) for r in done}
    jobs = [
        (n, s, e, args.max_episodes, args.env, overrides, not args.no_stop)
        for n in sorted(args.sizes, reverse=True)
        for e in args.explorations
        for s in range(args.first_seed, args.first_seed + args.seeds)
        if (n, s, e, args.env, args.max_episodes) not in have
    ]
    rows = list(done)
    t0 = time.perf_counter()
    def keep(row: dict[str, Any]) -> None:
        rows.append(row)
        write_rows(csv_path, rows)

    run_jobs(_job, jobs, args.jobs, keep)
    write_rows(csv_path, rows)
    title = (
        "DeepSea ablation: exploration rules"
        if len({r["exploration"] for r in rows}) > 1
        else ("DeepSea scaling: BongDQN with one BONG posterior")
    )
    out.with_suffix(".md").write_text(summary_md(rows, title))
    if not args.no_plot and any(r["exploration"] == "thompson" for r in rows):
        plot(rows, out.with_suffix(".png"))
    print(f"wrote {csv_path} ({len(rows)} rows) in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    raise SystemExit(main())
