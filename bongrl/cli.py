"""Command-line interface: ``bongrl train | evaluate | plugins | compare | tune`` (also ``python -m bongrl``).

Examples::

    bongrl train --env CartPole-v1 --steps 20000 --seed 0          # preset hyperparameters for CartPole-v1
    bongrl train --env bongrl/DeepSea-v0 --set obs_std=0.05 --set hidden=[32]
    bongrl train --resume runs/CartPole-v1-bongdqn-s0 --steps 40000  # continue to 40k steps
    bongrl evaluate runs/CartPole-v1-bongdqn-s0 --episodes 20
    bongrl plugins

Outputs never replace earlier ones (rl-baselines3-zoo's rule): ``train`` writes a fresh run to ``--out`` (default
``runs/<env>-<agent>-s<seed>``) only if that directory does not exist or is empty, else to the first free
``DIR_1``, ``DIR_2``, ... and says so; ``--resume DIR`` continues a run in place. ``compare`` and ``tune`` resume
their own earlier output in DIR (same plan / same study) and otherwise move on to ``DIR_1``, ... the same way.

Exit codes: 0 success, 1 runtime failure, 2 usage error (one ``bongrl: error: ...`` line on stderr),
130 Ctrl-C.

The module imports no torch: ``bongrl --help`` is fast, and each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bongrl import runs
from bongrl.errors import RunFailure, UsageError
from bongrl.errors import one_line as _one_line

if TYPE_CHECKING:  # pragma: no cover
    from bongrl.runner import RunSpec

__all__ = ["main", "build_parser", "UsageError", "RunFailure"]


# ---------------------------------------------------------------------------------------------------- parser
class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (``bongrl: error: ...``, exit 2) instead of a usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        hint = f" (see `{self.prog} --help`)"
        self.exit(2, f"bongrl: error: {_one_line(message)}{hint}\n")


def _add_env_kwargs(p: argparse.ArgumentParser) -> None:
    """``--env-kwargs KEY=VALUE ...`` (rl-zoo's flag), shared by train, compare and tune."""
    p.add_argument(
        "--env-kwargs", nargs="+", action="extend", metavar="KEY=VALUE",
        help="keyword arguments of the env (rl-zoo's flag), e.g. --env-kwargs size=20 (values parsed as JSON); "
        "used for the training and the evaluation envs",
    )


def _env_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed ``--env-kwargs`` (UsageError naming a malformed item)."""
    from bongrl.runner.spec import parse_overrides

    return parse_overrides(getattr(args, "env_kwargs", None) or [], "--env-kwargs")


def build_parser() -> argparse.ArgumentParser:
    """The ``bongrl`` argument parser (subcommands train, evaluate, plugins, compare, tune)."""
    p = _Parser(
        prog="bongrl",
        description="RL and bandit agents exploring with a BONG Bayesian posterior over Q-network weights.",
    )
    p.add_argument(
        "--threads", type=int, default=1,
        help="torch intra-op threads (default 1: fastest for these small networks, and robust on busy machines)",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    t = sub.add_parser(
        "train",
        help="train an agent; writes a run directory",
        description="Train an agent and write config.json, metrics.csv, eval.json, "
        "learning_curve.png and checkpoint.safetensors to a run directory. An existing run is never "
        "overwritten: if --out (or the default) already holds files, the run goes to DIR_1, DIR_2, ... "
        "(the first free one) and a line says so; continue a run with --resume DIR.",
    )
    t.add_argument(
        "--env", help="gymnasium env id (e.g. CartPole-v1, bongrl/DeepSea-v0, bongrl/WheelBandit-v0)"
    )
    t.add_argument("--posterior", help="posterior family (see `bongrl plugins`; preset default, usually dlr)")
    t.add_argument("--exploration", help="exploration rule (see `bongrl plugins`; preset default: thompson)")
    t.add_argument("--steps", type=int, help="total env steps (rounds for bandits); preset default")
    t.add_argument("--seed", type=int, default=None, help="seed (default 0)")
    t.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default=None, help="torch device (default auto)"
    )
    t.add_argument(
        "--out", help="run directory (default runs/<env>-<agent>-s<seed>); if it holds files, DIR_1, DIR_2, ... "
        "(never overwritten)",
    )
    t.add_argument(
        "--preset", help="another env id's preset, or a JSON preset file (default: the env's preset)"
    )
    t.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one hyperparameter (value parsed as JSON, else a string); repeatable",
    )
    t.add_argument("--resume", metavar="DIR", help="continue the run in DIR up to its (or --steps) total")
    t.add_argument(
        "--eval-every", type=int, help="env steps between deterministic evaluations (0: only at the end)"
    )
    t.add_argument("--eval-episodes", type=int, help="episodes per evaluation")
    t.add_argument(
        "--checkpoint-every", type=int, help="env steps between checkpoints (default: at every evaluation)"
    )
    _add_env_kwargs(t)
    t.add_argument(
        "--health", type=int, metavar="STEPS",
        help="check the posterior's health (finite, positive definite) every STEPS steps; stop on a failure",
    )
    t.add_argument("--quiet", action="store_true", help="no progress bar or hyperparameter listing")
    t.add_argument(
        "--distributed", action="store_true",
        help="data-parallel over torchrun ranks with an identical posterior on every rank "
        "(torchrun --nproc_per_node=R -m bongrl train --env ID --distributed); --steps counts per rank",
    )
    t.set_defaults(func=cmd_train)

    e = sub.add_parser(
        "evaluate",
        help="evaluate a run's checkpoint deterministically",
        description="Load DIR/checkpoint.safetensors and evaluate it greedily on a fresh env; "
        "writes DIR/eval_cli.json.",
    )
    e.add_argument("run_dir", metavar="DIR", help="run directory written by `bongrl train`")
    e.add_argument("--episodes", type=int, default=10, help="evaluation episodes (default 10)")
    e.add_argument("--seed", type=int, default=None, help="seed of the first episode (default 20000; >= 0)")
    e.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    e.set_defaults(func=cmd_evaluate)

    pl = sub.add_parser(
        "plugins",
        help="list posterior families and exploration rules",
        description="List registered plugins with their distribution and whether they load.",
    )
    pl.set_defaults(func=cmd_plugins)
    _add_env_kwargs(_add_compare_parser(sub))
    _add_env_kwargs(_add_tune_parser(sub))
    return p


# ---------------------------------------------------------------------------------------------------- helpers
def _say(msg: str) -> None:
    """A progress line that does not break the progress bar."""
    from tqdm.auto import tqdm

    tqdm.write(msg)


def _resolve_train(args: argparse.Namespace) -> tuple[RunSpec, Path, dict[str, Any] | None]:
    """The run's spec, its directory and (on ``--resume``) the saved config; validated, nothing built."""
    from bongrl.runner import RunSpec, parse_overrides

    if args.steps is not None and args.steps < 1:
        raise UsageError(f"--steps must be a positive integer, got {args.steps}")
    if args.health is not None and args.health < 1:
        raise UsageError(f"--health must be a positive integer (steps between checks), got {args.health}")
    if args.resume:
        return _resolve_resume(args)
    if not args.env:
        raise UsageError("the following argument is required: --env (or --resume DIR)")
    spec = RunSpec.resolve(
        args.env, preset=args.preset, posterior=args.posterior, exploration=args.exploration,
        overrides=parse_overrides(args.overrides), seed=args.seed, device=args.device, steps=args.steps,
        eval_every=args.eval_every, eval_episodes=args.eval_episodes, checkpoint_every=args.checkpoint_every,
        env_kwargs=_env_kwargs(args),
    )
    base = Path(args.out) if args.out else runs.default_run_dir(spec.env, spec.agent, spec.seed)
    return spec, _fresh_run_dir(base), None


def _resolve_resume(args: argparse.Namespace) -> tuple[RunSpec, Path, dict[str, Any]]:
    """``--resume DIR``: its spec (with the changes allowed on a resume), DIR and its saved config; UsageError
    (or CheckpointError) before anything is written when DIR is not a resumable run."""
    from bongrl.checkpoint import read_meta
    from bongrl.runner import RunSpec, check_env_id

    run_dir = Path(args.resume)
    if not run_dir.is_dir():
        what = "is not a directory" if run_dir.exists() else "does not exist"
        raise UsageError(f"--resume: run directory {str(run_dir)!r} {what}")
    for name in (runs.CONFIG, runs.CHECKPOINT):
        if not (run_dir / name).is_file():
            raise UsageError(f"--resume: {str(run_dir / name)!r} is missing; not a resumable run directory")
    given = [f for f in ("env", "posterior", "exploration", "preset", "seed", "out") if getattr(args, f) is not None]
    given += ["set"] if args.overrides else []
    given += ["env-kwargs"] if args.env_kwargs else []
    if given:
        raise UsageError(
            "--resume continues a run with its saved settings; only --steps, --device, --eval-every, "
            f"--eval-episodes, --checkpoint-every and --quiet may be given (got {', '.join('--' + f for f in given)})"
        )
    read_meta(run_dir / runs.CHECKPOINT)  # CheckpointError (exit 2) before config.json is touched
    saved = _read_run_config(run_dir, "--resume: ")
    changes = {k: getattr(args, k) for k in ("steps", "eval_every", "eval_episodes", "checkpoint_every", "device")
               if getattr(args, k) is not None}
    spec = RunSpec.from_config(saved).replace(**changes)
    check_env_id(spec.env)  # registered (making it waits for training): a broken config fails before any write
    spec.validate(check_env=False)
    return spec, run_dir, saved


def _read_run_config(run_dir: Path, prefix: str = "") -> dict[str, Any]:
    """A run directory's ``config.json`` as a dict (UsageError, starting with ``prefix``, if it is unreadable)."""
    path = run_dir / runs.CONFIG
    try:
        config = runs.read_json(path)
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"{prefix}cannot read {str(path)!r}: {_one_line(exc)}") from exc
    if not isinstance(config, dict):
        raise UsageError(f"{prefix}{str(path)!r} is not a bongrl run config")
    return config


def _fresh_run_dir(base: Path) -> Path:
    """Where a fresh run goes: ``base`` unless it holds files, else the first free ``base_1``, ``base_2``, ...
    (one line says so). UsageError when ``base`` is a file. Nothing is created."""
    out = runs.free_dir(base)
    if out != base and os.environ.get("RANK", "0") == "0":  # torchrun: rank 0 speaks for all
        hint = f" (use --resume {base} to continue it)" if runs.holds_run(base) else ""
        print(f"bongrl train: {base} exists; writing to {out}{hint}", flush=True)
    return out


def _print_header(spec: RunSpec, out: Path) -> None:
    print(f"bongrl train: {spec.env} ({spec.agent}, posterior={spec.posterior}, exploration={spec.exploration}, "
          f"seed={spec.seed}, device={spec.device}) -> {out}")
    for k, v in sorted(spec.agent_config().items()):
        mark = "*" if k in spec.hyperparameters else " "
        print(f" {mark}{k:<18} {v}")
    print("  (* set by the preset or --set)")
    if spec.preset is None:
        print(f"  no preset for {spec.env}: the class defaults above (bongrl.presets lists the presets)")
    if spec.unit == "round":
        print(f"  {'rounds':<18} {spec.steps}")
    else:
        print(f"  {'steps':<18} {spec.steps}   eval every {spec.eval_every} x {spec.eval_episodes} episodes")


def cmd_train(args: argparse.Namespace) -> int:
    """``bongrl train``: resolve the run, write its config, train it (:func:`bongrl.runner.train_run`)."""
    from bongrl.runner import train_run, write_config
    from bongrl.runner.train import kept_outputs

    spec, out, saved = _resolve_train(args)
    if getattr(args, "distributed", False):
        return _train_distributed(spec, out, saved is not None)
    quiet = bool(args.quiet)
    out.mkdir(parents=True, exist_ok=True)
    write_config(spec, out, command=" ".join(["bongrl", *sys.argv[1:]]) if sys.argv else "bongrl", resumed=saved)
    if not quiet:
        _print_header(spec, out)
    run = train_run(spec, out, resume=saved is not None, say=None if quiet else _say, progress_bar=not quiet,
                    health_every=args.health or 0)
    agent, result = run.agent, run.result
    if run.status == 130:
        unit = "round" if spec.unit == "round" else "step"
        kept = kept_outputs(out)
        again = f" (continue with: bongrl train --resume {out})" if runs.holds_run(out) else ""
        print(f"bongrl: interrupted at {unit} {agent.num_timesteps}/{spec.steps}"
              f"{'; ' + kept if kept else ''}{again}", file=sys.stderr)
        return 130
    if spec.unit == "round":
        print(f"done: {spec.env} {agent.num_timesteps} rounds, cumulative regret {result['cumulative_regret']:.2f}, "
              f"mean reward {result['mean_reward']:.3f}; outputs in {out}/")
    else:
        print(f"done: {spec.env} {agent.num_timesteps} steps, {agent.num_episodes} episodes, eval "
              f"{result['mean']:.2f} ± {result['std']:.2f} ({result['episodes']} episodes); outputs in {out}/")
    return 0


# ------------------------------------------------------------------------------------------------ evaluate
def cmd_evaluate(args: argparse.Namespace) -> int:
    """``bongrl evaluate DIR``: the run's checkpoint, greedy, on a fresh env; writes DIR/eval_cli.json."""
    from bongrl.envs.wrappers import evaluate
    from bongrl.runner import RunSpec

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        what = "is not a directory" if run_dir.exists() else "does not exist"
        raise UsageError(f"run directory {str(run_dir)!r} {what}")
    if args.episodes < 1:
        raise UsageError(f"--episodes must be >= 1, got {args.episodes}")
    if args.seed is not None and args.seed < 0:
        raise UsageError(f"--seed must be a non-negative integer, got {args.seed}")
    if not runs.holds_run(run_dir):
        raise UsageError(f"{str(run_dir)!r} is not a run directory (it needs {runs.CONFIG} and {runs.CHECKPOINT})")
    spec = RunSpec.from_config(_read_run_config(run_dir))
    agent = spec.agent_class().load(run_dir / runs.CHECKPOINT, device=args.device)
    seed = 20_000 if args.seed is None else args.seed
    try:
        res = evaluate(agent, spec.make_env(), args.episodes, deterministic=True, seed=seed)
    except (ValueError, RuntimeError) as exc:
        raise RunFailure(f"evaluation failed: {_one_line(exc)}") from exc
    steps = agent.num_timesteps
    payload = {
        "mean": res["mean"],
        "std": res["std"],
        "episodes": args.episodes,
        "returns": res["returns"],
        "lengths": res["lengths"],
        "seed": seed,
        "deterministic": True,
        "checkpoint_steps": steps,
    }
    runs.write_json(run_dir / "eval_cli.json", payload)
    print(
        f"{spec.env}: mean return {res['mean']:.2f} ± {res['std']:.2f} over {args.episodes} episodes "
        f"(checkpoint at {steps} steps); wrote {run_dir / 'eval_cli.json'}"
    )
    return 0


# ---------------------------------------------------------------------------------------------------- plugins
def cmd_plugins(args: argparse.Namespace) -> int:
    """``bongrl plugins``: every registered plugin, its distribution and whether it loads."""
    from bongrl import registry

    names = {v: k for k, v in registry.GROUPS.items()}
    rows = [("GROUP", "NAME", "DISTRIBUTION", "STATUS")]
    for info in registry.list_plugins():
        dist = f"{info.distribution} ({info.version})" if info.version else info.distribution
        rows.append((names.get(info.group, info.group), info.name, dist, _one_line(info.status)))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}")
    return 0


# ---------------------------------------------------------------------------------------------------- compare
def _add_compare_parser(sub: Any) -> argparse.ArgumentParser:
    c = sub.add_parser(
        "compare",
        help="compare BongDQN with SB3 DQN / QR-DQN / PPO baselines (same env, budget, seeds, evaluation)",
        description="Run every agent on the same env, budget and seeds with one evaluation protocol, scoring "
        "two policies per run: online (headline: the weights being trained) and averaged (an EMA of them, "
        "one --polyak-tau for every agent); writes DIR/compare.csv, DIR/summary.md and "
        "DIR/learning_curves.png. A run that fails is recorded and counted as failed; the others go on. "
        "Complete (agent, seed) runs in DIR are skipped, so an interrupted comparison resumes. Baselines use "
        "rl-baselines3-zoo hyperparameters (bongrl/data/zoo_presets.json); bongdqn its bongrl preset.",
    )
    c.add_argument("--env", required=True, help="gymnasium env id (e.g. CartPole-v1, bongrl/DeepSea-v0)")
    c.add_argument("--steps", type=int, help="env steps per run (default: the bongdqn preset's budget)")
    c.add_argument(
        "--seeds", default="3", metavar="SEEDS",
        help="N (seeds 0..N-1), a list 100,101, a range 100-109, or a mix 0-2,100 (default 3: seeds 0-2); "
        "the summary flags seeds a preset was tuned on",
    )
    c.add_argument("--agents", default="bongdqn,dqn,qrdqn,ppo", help="comma-separated subset of "
                   "bongdqn,dqn,qrdqn,ppo (default: all four)")
    c.add_argument(
        "--out", help="output directory (default runs/compare_<env>; results/ is for published summaries); one "
        "that holds another comparison is left alone and DIR_1, DIR_2, ... used instead",
    )
    c.add_argument(
        "--jobs", type=int, default=1, help="runs in parallel processes, 1 torch thread each (default 1)"
    )
    c.add_argument(
        "--eval-every", type=int, help="env steps between evaluations (default: the bongdqn preset's)"
    )
    c.add_argument(
        "--eval-episodes", type=int, help="deterministic episodes per evaluation (default: preset's)"
    )
    c.add_argument(
        "--polyak-tau", type=float, default=1e-3, metavar="TAU",
        help="rate of the weight average evaluated as the 'averaged' column, the same for every agent: "
        "θ̄ ← (1−τ)θ̄ + τθ after every vectorised env step (BongDQN's polyak_eval; default 1e-3)",
    )
    c.add_argument("--size", type=int, help="env size (e.g. DeepSea's N); passed to the env as size=")
    c.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="AGENT.KEY=VALUE",
        help="override one agent's hyperparameter, e.g. bongdqn.obs_std=0.5 or dqn.policy_kwargs="
        "'{\"net_arch\": [64]}' (value parsed as JSON); repeatable",
    )
    c.add_argument("--quiet", action="store_true", help="no progress display")
    c.set_defaults(func=cmd_compare)
    return c


def _compare_env_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``--env-kwargs`` with ``--size`` (a shorthand for ``--env-kwargs size=N``) merged in."""
    env_kwargs = _env_kwargs(args)
    if args.size is not None:
        if "size" in env_kwargs and env_kwargs["size"] != args.size:
            raise UsageError(f"--size {args.size} contradicts --env-kwargs size={env_kwargs['size']}; give one")
        env_kwargs["size"] = args.size
    return env_kwargs


def cmd_compare(args: argparse.Namespace) -> int:
    """``bongrl compare``: every agent on the same env, budget, seeds and evaluation (:mod:`bongrl.compare`)."""
    from bongrl import compare, presets
    from bongrl.runner import parse_overrides

    agents = compare.parse_agents(args.agents)
    overrides: dict[str, dict[str, Any]] = {}
    for item in args.overrides:
        name, dot, rest = item.partition(".")
        if not dot or "=" not in rest:
            raise UsageError(f"--set expects AGENT.KEY=VALUE (e.g. bongdqn.obs_std=0.5), got {item!r}")
        overrides.setdefault(name.strip().lower(), {}).update(parse_overrides([rest]))
    env_kwargs = _compare_env_kwargs(args)
    steps = args.steps if args.steps is not None else int(presets.get(args.env).get("steps", 50_000))
    seeds = compare.parse_seeds(args.seeds)  # CompareError: one line, exit 2
    result = compare.run_compare(
        args.env, steps, seeds, agents, out=args.out, jobs=args.jobs, eval_every=args.eval_every,
        eval_episodes=args.eval_episodes, env_kwargs=env_kwargs, overrides=overrides, quiet=args.quiet,
        polyak_tau=args.polyak_tau,
    )
    out = result["out"]
    if not args.quiet:
        print((out / "summary.md").read_text())
    print(f"compare: {len(result['ran'])} run(s) done, {len(result['skipped'])} skipped (already complete), "
          f"{len(result['failed'])} failed; outputs in {out}/ (compare.csv, summary.md, learning_curves.png)")
    if args.quiet:
        for line in result["summary"]["warnings"]:  # shown in summary.md otherwise
            print(line)
    if result["failed"]:
        raise RunFailure(
            f"{len(result['failed'])} run(s) failed (counted as failed in summary.md): "
            + "; ".join(f"{k}: {m}" for k, m in result["failed"])
            + " (rerun the same command to retry them; complete runs are kept)"
        )
    return 0


# ---------------------------------------------------------------------------------------------------- tune
def _add_tune_parser(sub: Any) -> argparse.ArgumentParser:
    from bongrl import tune  # no torch: its heavy imports are inside its functions

    return tune.add_parser(sub)  # flags, search space and help text live in bongrl/tune.py


def cmd_tune(args: argparse.Namespace) -> int:
    """``bongrl tune``: an Optuna study over BongDQN's hyperparameters (:mod:`bongrl.tune`)."""
    from bongrl import tune

    return tune.cmd_tune(args)


# ---------------------------------------------------------------------------------------------------- main
def _train_distributed(spec: RunSpec, out: Path, resume: bool) -> int:
    """One rank of a torchrun job: own envs (seed + rank), shared posterior (bongrl.distributed)."""
    import torch.distributed as tdist

    from bongrl.distributed import run_distributed_training

    if spec.agent != "bongdqn" or resume:
        raise UsageError("--distributed supports fresh bongdqn runs only (no bandits, no --resume)")
    res = run_distributed_training(
        spec.env, spec.steps, out, posterior=spec.posterior, exploration=spec.exploration,
        seed=spec.seed, device=spec.device, save_path=out / runs.CHECKPOINT, **spec.hyperparameters,
    )
    if res["rank"] == 0:
        runs.write_json(out / runs.CONFIG, {**spec.to_config(), "out": str(out), "distributed": {
            "world_size": res["world_size"], "posterior_sha256": res["posterior_hash"]}})
        print(f"done: {spec.env} {res['num_timesteps']} steps x {res['world_size']} ranks; posterior sha256 "
              f"{res['posterior_hash'][:16]} identical on all ranks; outputs in {out}/")
    tdist.destroy_process_group()
    return 0


def _configure_logging(quiet: bool) -> None:
    """The library's warnings (e.g. a rejected non-finite update) as ``bongrl: warning: ...`` lines on stderr;
    ``--quiet`` keeps errors only."""
    import logging

    log = logging.getLogger("bongrl")
    if not any(getattr(h, "_bongrl_cli", False) for h in log.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("bongrl: %(levelname)s: %(message)s"))
        handler._bongrl_cli = True  # type: ignore[attr-defined]
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(logging.ERROR if quiet else logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``bongrl`` / ``python -m bongrl``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse prints its own usage error and exits 2
    from bongrl.registry import PluginError

    if args.threads < 1:
        print(f"bongrl: error: --threads must be >= 1, got {args.threads}", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(args.threads)
    _configure_logging(bool(getattr(args, "quiet", False)))
    try:
        return int(args.func(args))
    except (UsageError, PluginError, ValueError) as exc:  # CheckpointError is a ValueError
        print(f"bongrl: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bongrl: interrupted", file=sys.stderr)
        return 130
    except RunFailure as exc:
        print(f"bongrl: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:  # a runtime failure: one line, no traceback (set BONGRL_DEBUG=1 for it)
        if os.environ.get("BONGRL_DEBUG"):
            raise
        print(f"bongrl: error: {type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
