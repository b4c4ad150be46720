"""BongDQN's class defaults on environments, against SB3 DQN, on held-out seeds.

For each environment this runs ``bongrl compare`` with two agents: BongDQN built from its class defaults alone
(no preset, no override: what ``BongDQN(env)`` gives a new user) and SB3 DQN with the rl-baselines3-zoo preset
where the zoo has one, SB3's own defaults otherwise. Both get the same protocol: deterministic episodes on a
separate env every ``eval_every`` steps, evaluated twice — on the weights being trained (online, the headline)
and on an exponential moving average of them with the same τ for both agents (averaged). Seeds 100+ were never
used to choose any setting (the classic-control recipe behind the defaults was chosen on seeds 0-9).

The raw runs go to ``<runs>/<env>/`` (compare's output folder: ``per_run/<agent>-s<seed>/`` curves and results,
resumable; git-ignored under ``runs/``). Each env's summary is published into ``<out>/<env>/``: summary.md/json,
learning_curves.png, ``runs.csv.gz`` (the per-run tree packed by ``scripts/pack_results.py``: compare.csv's rows
with each run's settings) and ``command.txt`` (every command line that ran runs into it). ``<out>/README.md`` has
one table over the environments: final and last-three evaluations per seed, failures, rejected updates, and whether
BongDQN is at or above DQN's mean final online evaluation.

Examples::

    python scripts/generalization.py --jobs 2                          # everything, seeds 100-104
    python scripts/generalization.py --envs CartPole FrozenLake --seeds 100-104
    python scripts/generalization.py --envs LunarLander --steps LunarLander=100000 --seeds 100-102
    python scripts/generalization.py --table-only                      # rebuild README.md from the summaries
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: name -> (env id, env kwargs, env steps, eval every, eval episodes)
ENVS: dict[str, tuple[str, dict[str, Any], int, int, int]] = {
    "CartPole": ("CartPole-v1", {}, 50_000, 5_000, 10),
    "Acrobot": ("Acrobot-v1", {}, 100_000, 10_000, 5),
    "MountainCar": ("MountainCar-v0", {}, 120_000, 10_000, 5),
    "LunarLander": ("LunarLander-v3", {}, 200_000, 20_000, 5),
    "FrozenLake": ("FrozenLake-v1", {"map_name": "8x8", "is_slippery": False}, 50_000, 5_000, 10),
    "MinAtarBreakout": ("MinAtar/Breakout-v1", {}, 500_000, 20_000, 5),  # needs the minatar extra
}
AGENTS = ["bongdqn", "dqn"]


def _parse_steps(items: list[str]) -> dict[str, int]:
    out = {}
    for item in items:
        name, _, value = item.partition("=")
        if name not in ENVS or not value.isdigit():
            raise SystemExit(f"generalization.py: --steps takes NAME=N with NAME in {', '.join(ENVS)}; got {item!r}")
        out[name] = int(value)
    return out


def run(
    names: list[str], seeds: str, jobs: int, out: Path, steps: dict[str, int], quiet: bool, runs: Path,
    command: str = "",
) -> None:
    """Run compare for each env into ``runs/<env>`` and publish its summary, figure and packed runs (and
    ``command``, when given) into ``out/<env>``."""
    from bongrl import compare

    sys.path.insert(0, str(Path(__file__).resolve().parent))  # scripts/pack_results.py, beside this file
    import pack_results
    for name in names:
        env_id, kwargs, budget, every, episodes = ENVS[name]
        budget = steps.get(name, budget)
        t0 = time.perf_counter()
        print(f"== {name}: {env_id} {kwargs or ''} {budget} steps, seeds {seeds}", flush=True)
        compare.run_compare(
            env_id, budget, seeds, agents=AGENTS, out=runs / name, jobs=jobs, eval_every=every,
            eval_episodes=episodes, env_kwargs=kwargs, quiet=quiet, defaults_only=True,
        )
        pack_results.publish(runs / name, out / name, command or None)
        print(f"== {name} done in {time.perf_counter() - t0:.0f} s; summary in {out / name}", flush=True)


def _fmt(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _pm(column: dict[str, Any], metric: str = "final") -> str:
    """``mean ± std`` of one metric of one evaluation column of compare's summary."""
    return f"{_fmt(column[f'{metric}_mean'])} ± {_fmt(column[f'{metric}_std'])}"


def _per_seed(values: list[float | None], status: list[str]) -> str:
    return ", ".join("failed" if s != "complete" else _fmt(v, 0) for v, s in zip(values, status, strict=True))


def _summaries(out: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(env name, compare's summary.json) for every env of :data:`ENVS` with finished runs under ``out``."""
    for name in ENVS:
        path = out / name / "summary.json"
        if path.is_file():
            yield name, json.loads(path.read_text())


def table(out: Path) -> str:
    """The README table over every environment with a summary.json under ``out``."""
    rows = [
        "| env | budget | seeds | agent | online final (mean ± std) | online final per seed | online last-3 mean "
        "| averaged final | failed runs | rejected updates | BongDQN vs DQN (online final means) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    above = ties = below = close = 0
    for name, s in _summaries(out):
        ag = s["agents"]
        verdict = ""
        if all(a in ag for a in AGENTS):
            b, d = ag["bongdqn"]["online"]["final_mean"], ag["dqn"]["online"]["final_mean"]
            spread = max(ag["bongdqn"]["online"]["final_std"] or 0.0, ag["dqn"]["online"]["final_std"] or 0.0)
            if b is not None and d is not None:
                close += b != d and abs(b - d) < spread
                if b > d:
                    above += 1
                    verdict = f"above ({_fmt(b)} vs {_fmt(d)}{', within one seed std' if b - d < spread else ''})"
                elif b == d:
                    ties += 1
                    verdict = f"tie ({_fmt(b)} vs {_fmt(d)})"
                else:
                    below += 1
                    verdict = f"**below** ({_fmt(b)} vs {_fmt(d)}{', within one seed std' if d - b < spread else ''})"
        for agent in AGENTS:
            if agent not in ag:
                continue
            a = ag[agent]
            on, av = a["online"], a["averaged"]
            rejected = a.get("rejected_updates_per_seed")
            rows.append(
                f"| {name} | {s['steps']} | {','.join(map(str, a['seeds']))} | {agent} "
                f"| {_pm(on)} | {_per_seed(on['final_per_seed'], a['status_per_seed'])} "
                f"| {_fmt(on['last3_mean'])} | {_pm(av)} "
                f"| {a['failed']}/{len(a['seeds'])} "
                f"| {'–' if not rejected or all(r is None for r in rejected) else sum(r or 0 for r in rejected)} "
                f"| {verdict if agent == 'bongdqn' else ''} |"
            )
    rows.append("")
    rows.append(
        f"BongDQN's mean final online evaluation is above SB3 DQN's on {above} environment(s), equal on {ties} "
        f"and below on {below}; {close} of the differences are within one seed standard deviation."
    )
    return "\n".join(rows) + "\n"


def agents_table(out: Path) -> str:
    """Per env whose directory also holds other agents (QR-DQN, PPO: issue-14 reruns), one row per agent:
    online final / last-3 / AUC / median steps to threshold, averaged final, failed runs."""
    blocks = []
    for name, s in _summaries(out):
        ag = s["agents"]
        if set(ag) <= set(AGENTS):
            continue
        rows = [
            f"**{name}** ({s['steps']} steps; threshold {s.get('reward_threshold')}):",
            "",
            "| agent | seeds | online final | online last-3 | online AUC | median steps to threshold (online) "
            "| averaged final | failed |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for agent, a in ag.items():
            on, av = a["online"], a["averaged"]
            steps = on.get("median_steps_to_threshold")
            rows.append(
                f"| {agent} | {','.join(map(str, a['seeds']))} | {_pm(on)} "
                f"| {_fmt(on['last3_mean'])} | {_fmt(on['auc_mean'])} | {'–' if steps is None else f'{steps:.0f}'} "
                f"| {_pm(av)} | {a['failed']}/{len(a['seeds'])} |"
            )
        blocks.append("\n".join(rows))
    return "\n\n".join(blocks) + ("\n" if blocks else "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--envs", nargs="+", default=[n for n in ENVS if n != "MinAtarBreakout"], choices=list(ENVS))
    ap.add_argument("--seeds", default="100-104", help="held-out seeds (never used to choose settings)")
    ap.add_argument("--steps", nargs="*", default=[], metavar="NAME=N", help="budget overrides per env")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default="results/generalization", help="summaries, figures, packed runs (committed)")
    ap.add_argument("--runs", default="runs/generalization", help="the raw per-run trees (git-ignored)")
    ap.add_argument("--table-only", action="store_true", help="only rebuild README.md from <out>/<env>/summary.json")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if not args.table_only:
        command = shlex.join(["python", "scripts/generalization.py", *(sys.argv[1:] if argv is None else argv)])
        run(args.envs, args.seeds, args.jobs, out, _parse_steps(args.steps), args.quiet, Path(args.runs), command)
    out.mkdir(parents=True, exist_ok=True)
    text = table(out)
    (out / "README.md").write_text(
        "# BongDQN class defaults vs SB3 DQN on held-out seeds\n\n"
        "Made by `python scripts/generalization.py` (see its docstring for the protocol). BongDQN: class "
        "defaults, no preset. SB3 DQN: rl-zoo preset where one exists, SB3 defaults otherwise. Online = the "
        "weights being trained (headline); averaged = their EMA with the same τ for both agents. Per env, "
        "`<env>/` has summary.md / summary.json (every metric per seed), learning_curves.png, runs.csv.gz (every "
        "evaluation of every run, with the run's settings) and command.txt.\n\n" + text
        + ("\n## Every agent run on these seeds\n\n" + extra if (extra := agents_table(out)) else "")
    )
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
