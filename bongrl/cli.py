"""Command-line interface: ``bongrl train | evaluate | plugins`` (also ``python -m bongrl``).

Examples::

    bongrl train --env CartPole-v1 --steps 20000 --seed 0          # preset hyperparameters for CartPole-v1
    bongrl train --env bongrl/DeepSea-v0 --set obs_std=0.05 --set hidden=[32]
    bongrl train --resume runs/CartPole-v1-bongdqn-s0 --steps 40000  # continue to 40k steps
    bongrl evaluate runs/CartPole-v1-bongdqn-s0 --episodes 20
    bongrl plugins

Exit codes: 0 success, 1 runtime failure, 2 usage error (one ``bongrl: error: ...`` line on stderr),
130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import difflib
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from bongrl import runs
from bongrl.errors import RunFailure, UsageError
from bongrl.errors import one_line as _one_line

__all__ = ["main", "build_parser", "UsageError", "RunFailure"]

AGENTS = ("bongdqn", "bandit")


# ---------------------------------------------------------------------------------------------------- parser
class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (``bongrl: error: ...``, exit 2) instead of a usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        hint = f" (see `{self.prog} --help`)"
        self.exit(2, f"bongrl: error: {_one_line(message)}{hint}\n")


def build_parser() -> argparse.ArgumentParser:
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
        "learning_curve.png and checkpoint.safetensors to a run directory.",
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
    t.add_argument("--out", help="run directory (default runs/<env>-<agent>-s<seed>)")
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
    e.add_argument("--seed", type=int, default=None, help="seed of the first episode (default 20000)")
    e.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    e.set_defaults(func=cmd_evaluate)

    pl = sub.add_parser(
        "plugins",
        help="list posterior families and exploration rules",
        description="List registered plugins with their distribution and whether they load.",
    )
    pl.set_defaults(func=cmd_plugins)
    _add_compare_parser(sub)
    _add_tune_parser(sub)
    return p


# ---------------------------------------------------------------------------------------------------- helpers
def _parse_overrides(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def _check_env(env_id: str) -> None:
    import gymnasium as gym

    import bongrl.envs

    if env_id in gym.registry:
        return
    close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    choices = ", ".join([*bongrl.envs.ENV_IDS, "CartPole-v1", "MountainCar-v0", "Acrobot-v1"])
    raise UsageError(
        f"unknown environment id {env_id!r}; {hint}choose e.g. {choices} "
        "(any registered gymnasium id with a Discrete action space)"
    )


def _config_class(agent: str) -> type:
    if agent == "bongdqn":
        from bongrl.agents.bong_dqn import BongDQNConfig

        return BongDQNConfig
    from bongrl.agents.thompson_bandit import ThompsonBanditConfig

    return ThompsonBanditConfig


def _validate_hyperparameters(agent: str, hyper: dict[str, Any]) -> dict[str, Any]:
    """Check keys and values against the agent's config dataclass before anything is built; return the full
    resolved config (defaults included) for logging."""
    cls = _config_class(agent)
    valid = sorted(f.name for f in dataclasses.fields(cls))
    unknown = sorted(set(hyper) - set(valid))
    if unknown:
        raise UsageError(f"unknown {agent} hyperparameter(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
    from bongrl.agents.base import config_from_kwargs

    try:  # typed: each value must have its field's type (e.g. gamma="high" is refused here, not deep inside)
        cfg = config_from_kwargs(cls, hyper, agent)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"bad hyperparameter value: {_one_line(exc)}") from exc
    return dataclasses.asdict(cfg)


def _check_spaces(env_id: str, agent: str) -> None:
    """Both agents need a Discrete action space (BongDQN also an observation space it can encode: Box,
    Discrete, MultiDiscrete, MultiBinary, Dict/Tuple of these; :mod:`bongrl.agents.spaces`); checked early."""
    import gymnasium as gym

    from bongrl.envs.wrappers import make_env

    try:
        env = make_env(env_id)
    except Exception as exc:  # a broken third-party env: report it as a usage problem with that env
        raise UsageError(
            f"cannot make environment {env_id!r}: {type(exc).__name__}: {_one_line(exc)}"
        ) from exc
    try:
        if not isinstance(env.action_space, gym.spaces.Discrete):
            raise UsageError(
                f"{env_id} has action space {env.action_space}; bongrl agents need a Discrete one"
            )
        if agent == "bongdqn":
            from bongrl.agents.spaces import ObsEncoder

            try:
                ObsEncoder(env.observation_space)
            except ValueError as exc:
                raise UsageError(f"{env_id}: BongDQN cannot use its observation space: {_one_line(exc)}") from exc
    finally:
        env.close()


def _say(quiet: bool, msg: str) -> None:
    if quiet:
        return
    try:
        from tqdm.auto import tqdm

        tqdm.write(msg)
    except ImportError:  # pragma: no cover
        print(msg)


class _Interrupt:
    """First Ctrl-C: stop at the next episode / round end (clean state). Second: KeyboardInterrupt at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> _Interrupt:
        try:
            self._previous = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread
            self._previous = None
        return self

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(
            "\nbongrl: interrupted; stopping at the end of this episode (Ctrl-C again to stop now)",
            file=sys.stderr,
            flush=True,
        )

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


# ---------------------------------------------------------------------------------------------------- train
def _resolve_train(args: argparse.Namespace) -> dict[str, Any]:
    """What a run needs, from the preset (or resumed config) plus CLI flags; validated, nothing built."""
    from bongrl import presets, registry

    if args.resume:
        run_dir = Path(args.resume)
        if not run_dir.is_dir():
            raise UsageError(f"--resume: run directory {str(run_dir)!r} does not exist")
        for name in (runs.CONFIG, runs.CHECKPOINT):
            if not (run_dir / name).is_file():
                raise UsageError(
                    f"--resume: {str(run_dir / name)!r} is missing; not a resumable run directory"
                )
        ignored = [
            f for f in ("env", "posterior", "exploration", "preset", "seed", "out") if getattr(args, f)
        ]
        if ignored or args.overrides:
            raise UsageError(
                "--resume continues a run with its saved settings; only --steps, --device, "
                "--eval-every, --eval-episodes, --checkpoint-every and --quiet may be given "
                f"(got {', '.join('--' + f for f in ignored + (['set'] if args.overrides else []))})"
            )
        try:
            run = runs.read_json(run_dir / runs.CONFIG)
        except (OSError, json.JSONDecodeError) as exc:
            raise UsageError(
                f"--resume: cannot read {str(run_dir / runs.CONFIG)!r}: {_one_line(exc)}"
            ) from exc
        run["resumed_from"] = run.get("steps")
        for key in ("steps", "eval_every", "eval_episodes", "checkpoint_every", "device"):
            value = getattr(args, key)
            if value is not None:
                run[key] = value
        run["out"] = str(run_dir)
        run["resume"] = True
    else:
        if not args.env:
            raise UsageError("the following argument is required: --env (or --resume DIR)")
        _check_env(args.env)
        if args.preset:
            if args.preset in presets.PRESETS:
                preset = presets.get(args.preset)
            elif Path(args.preset).is_file() or args.preset.endswith(".json"):
                preset = presets.load_file(args.preset)
            else:
                raise UsageError(
                    f"unknown preset {args.preset!r}; use a JSON file or one of "
                    f"{', '.join(presets.available())}"
                )
        else:
            preset = presets.get(args.env)
        preset_name = args.preset or (args.env if args.env in presets.PRESETS else None)
        agent = preset.get("agent", "bongdqn")
        if agent not in AGENTS:
            raise UsageError(f"preset agent must be one of {', '.join(AGENTS)}, got {agent!r}")
        hyper = dict(preset.get("hyperparameters") or {})
        hyper.update(_parse_overrides(args.overrides))
        seed = 0 if args.seed is None else args.seed
        run = {
            "command": " ".join(["bongrl", *sys.argv[1:]]) if sys.argv else "bongrl",
            "env": args.env,
            "agent": agent,
            "preset": preset_name,
            "preset_values": preset,
            "posterior": args.posterior or preset.get("posterior", "dlr"),
            "exploration": args.exploration or preset.get("exploration", "thompson"),
            "steps": args.steps if args.steps is not None else int(preset.get("steps", 50_000)),
            "eval_every": args.eval_every
            if args.eval_every is not None
            else int(preset.get("eval_every", 0)),
            "eval_episodes": (
                args.eval_episodes if args.eval_episodes is not None else int(preset.get("eval_episodes", 10))
            ),
            "checkpoint_every": args.checkpoint_every,
            "seed": seed,
            "device": args.device or "auto",
            "hyperparameters": hyper,
            "out": args.out or str(runs.default_run_dir(args.env, agent, seed)),
            "resume": False,
        }
        run["agent_config"] = _validate_hyperparameters(agent, hyper)
        _check_spaces(args.env, agent)
    for key in ("steps", "eval_every", "eval_episodes"):
        if not isinstance(run.get(key), int) or run[key] < 0:
            raise UsageError(
                f"--{key.replace('_', '-')} must be a non-negative integer, got {run.get(key)!r}"
            )
    if run["eval_episodes"] < 1:
        raise UsageError(f"--eval-episodes must be >= 1, got {run['eval_episodes']}")
    ce = run.get("checkpoint_every")
    if ce is not None and (not isinstance(ce, int) or ce < 1):
        raise UsageError(f"--checkpoint-every must be a positive integer, got {ce!r}")
    registry.load("posterior", run["posterior"])  # UnknownPluginError lists the known names
    registry.load("exploration", run["exploration"])
    from bongrl.device import resolve_device

    resolve_device(run["device"])  # "cuda" without CUDA -> ValueError (usage)
    return run


def cmd_train(args: argparse.Namespace) -> int:
    run = _resolve_train(args)
    if getattr(args, "distributed", False):
        return _train_distributed(run)
    quiet = bool(args.quiet)
    out = Path(run["out"])
    out.mkdir(parents=True, exist_ok=True)
    if not run["resume"]:
        run["start_time"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        run["versions"] = runs.versions()
    else:
        run.setdefault("resumes", []).append(
            {"time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "steps": run["steps"]}
        )
        run.pop("resume", None)
        run.pop("resumed_from", None)
    saved = {k: v for k, v in run.items() if k not in ("resume", "resumed_from")}
    runs.write_json(out / runs.CONFIG, saved)
    if not quiet:
        print(
            f"bongrl train: {run['env']} ({run['agent']}, posterior={run['posterior']}, "
            f"exploration={run['exploration']}, seed={run['seed']}, device={run['device']}) -> {out}"
        )
        resolved = run.get("agent_config") or run["hyperparameters"]
        for k, v in sorted(resolved.items()):
            mark = "*" if k in run["hyperparameters"] else " "
            print(f" {mark}{k:<18} {v}")
        print("  (* set by the preset or --set)")
        if run.get("preset") is None:
            print(f"  no preset for {run['env']}: the class defaults above (bongrl.presets lists the presets)")
        if run["agent"] == "bandit":
            print(f"  {'rounds':<18} {run['steps']}")
        else:
            every = f"eval every {run['eval_every']} x {run['eval_episodes']} episodes"
            print(f"  {'steps':<18} {run['steps']}   {every}")
    if run["agent"] == "bandit":
        return _train_bandit(run, out, quiet, resume=bool(args.resume))
    return _train_dqn(run, out, quiet, resume=bool(args.resume))


def _next_multiple(step: int, every: int | None) -> float:
    if not every:
        return float("inf")
    return float((step // every + 1) * every)


def _last_wall(out: Path) -> float:
    """Wall-clock seconds already logged in ``metrics.csv`` (so a resumed run's ``wall_s`` keeps counting)."""
    rows = runs.read_metrics(out / runs.METRICS)
    try:
        return float(rows[-1]["wall_s"]) if rows else 0.0
    except (KeyError, ValueError):
        return 0.0


def _finish(out: Path) -> None:
    try:
        runs.plot_learning_curve(out)
    except Exception as exc:  # a plotting failure must not lose the run
        print(f"bongrl: warning: could not draw the learning curve: {_one_line(exc)}", file=sys.stderr)


def _train_dqn(run: dict[str, Any], out: Path, quiet: bool, resume: bool) -> int:
    from bongrl.agents.bong_dqn import BongDQN
    from bongrl.envs.wrappers import ProtocolEval
    from bongrl.envs.wrappers import eval_seed as _eval_seed

    ckpt = out / runs.CHECKPOINT
    if resume:
        agent = BongDQN.load(ckpt, device=run["device"])
        dropped = runs.truncate_metrics(out / runs.METRICS, "step", agent.num_timesteps)
        if dropped:
            _say(quiet, f"resume: dropped {dropped} metrics rows logged after the checkpoint")
    else:
        (out / runs.METRICS).unlink(missing_ok=True)
        agent = BongDQN(
            run["env"],
            posterior=run["posterior"],
            exploration=run["exploration"],
            seed=run["seed"],
            device=run["device"],
            **run["hyperparameters"],
        )
    eval_seed = _eval_seed(run["seed"])
    protocol_eval = ProtocolEval(run["env"], run["eval_episodes"], eval_seed)
    every_eval, every_ckpt = run["eval_every"], run.get("checkpoint_every") or run["eval_every"]
    state = {
        "next_eval": _next_multiple(agent.num_timesteps, every_eval),
        "next_ckpt": _next_multiple(agent.num_timesteps, every_ckpt),
        "last_eval": None,
        "last_eval_step": -1,
    }
    remaining = max(0, run["steps"] - agent.num_timesteps)
    t0 = time.perf_counter() - _last_wall(out)

    def do_eval(a: BongDQN) -> dict[str, Any]:
        res = protocol_eval(a.greedy_predictor("online"))
        res.update(step=a.num_timesteps, episodes=run["eval_episodes"], weights="online")
        avg = protocol_eval(a.greedy_predictor("averaged")) if a.avg_theta is not None else None
        if avg is not None:
            res["averaged"] = {k: avg[k] for k in ("mean", "std", "returns", "lengths")}
        metrics.write(
            kind="eval",
            step=a.num_timesteps,
            episode=a.num_episodes,
            wall_s=time.perf_counter() - t0,
            eval_mean=res["mean"],
            eval_std=res["std"],
            eval_averaged_mean=None if avg is None else avg["mean"],
            eval_averaged_std=None if avg is None else avg["std"],
            rejected_updates=a.rejected_updates,
        )
        state["last_eval"], state["last_eval_step"] = res, a.num_timesteps
        line = f"eval @ {a.num_timesteps}: {res['mean']:.2f} ± {res['std']:.2f} (online weights)"
        if avg is not None:
            line += f", {avg['mean']:.2f} ± {avg['std']:.2f} (averaged)"
        if a.rejected_updates:
            line += f"; {a.rejected_updates} non-finite updates rejected so far"
        _say(quiet, line)
        return res

    with runs.MetricsWriter(out / runs.METRICS, runs.EPISODE_COLUMNS) as metrics, _Interrupt() as stop:

        def callback(a: BongDQN, ev: dict[str, Any]) -> bool:
            metrics.write(
                kind="episode",
                step=ev["step"],
                episode=ev["episode"],
                wall_s=time.perf_counter() - t0,
                **{"return": ev["return"], "length": ev["length"]},
            )
            if ev["step"] >= state["next_eval"]:
                do_eval(a)
                state["next_eval"] = _next_multiple(ev["step"], every_eval)
            if ev["step"] >= state["next_ckpt"]:
                a.save(ckpt, include_replay=True)
                state["next_ckpt"] = _next_multiple(ev["step"], every_ckpt)
            return not stop.requested

        interrupted = False
        try:
            agent.learn(remaining, callback=callback, progress_bar=not quiet)
        except KeyboardInterrupt:
            interrupted = True
        except (ValueError, RuntimeError, FloatingPointError) as exc:
            metrics.close()
            _finish(out)
            raise RunFailure(
                f"training failed at step {agent.num_timesteps} (posterior {run['posterior']!r}, exploration "
                f"{run['exploration']!r}): {_one_line(exc)} (last checkpoint and metrics so far in {out})"
            ) from exc
        interrupted = interrupted or stop.requested
        agent.save(ckpt, include_replay=True)
        if interrupted:
            if state["last_eval"] is not None:
                runs.write_json(out / runs.EVAL, {**state["last_eval"], "interrupted": True})
            metrics.close()
            _finish(out)
            print(
                f"bongrl: interrupted at step {agent.num_timesteps}/{run['steps']}; checkpoint, metrics in "
                f"{out} (continue with: bongrl train --resume {out})",
                file=sys.stderr,
            )
            return 130
        try:
            final = state["last_eval"] if state["last_eval_step"] == agent.num_timesteps else do_eval(agent)
        except (ValueError, RuntimeError) as exc:
            raise RunFailure(f"final evaluation failed: {_one_line(exc)}") from exc
    runs.write_json(
        out / runs.EVAL,
        {
            "mean": final["mean"],
            "std": final["std"],
            "episodes": final["episodes"],
            "returns": final["returns"],
            "lengths": final["lengths"],
            "step": agent.num_timesteps,
            "seed": eval_seed,
            "deterministic": True,
            "weights": "online",
            "averaged": final.get("averaged"),
            "rejected_updates": agent.rejected_updates,
        },
    )
    _finish(out)
    print(
        f"done: {run['env']} {agent.num_timesteps} steps, {agent.num_episodes} episodes, "
        f"eval {final['mean']:.2f} ± {final['std']:.2f} ({final['episodes']} episodes); outputs in {out}/"
    )
    return 0


def _train_bandit(run: dict[str, Any], out: Path, quiet: bool, resume: bool) -> int:
    import gymnasium as gym

    from bongrl.agents.thompson_bandit import ThompsonBandit
    from bongrl.envs.wrappers import make_env

    ckpt = out / runs.CHECKPOINT
    env = make_env(run["env"], seed=None)
    if not isinstance(env.action_space, gym.spaces.Discrete):
        raise UsageError(
            f"the bandit agent needs a Discrete action space; {run['env']} has {env.action_space}"
        )
    shape = env.observation_space.shape or (0,)
    if resume:  # the agent carries its cumulative regret and reseeds the env stream itself
        agent = ThompsonBandit.load(ckpt, device=run["device"])
        runs.truncate_metrics(out / runs.METRICS, "round", agent.num_rounds)
    else:
        (out / runs.METRICS).unlink(missing_ok=True)
        agent = ThompsonBandit(
            int(env.action_space.n),
            int(shape[0]),
            posterior=run["posterior"],
            exploration=run["exploration"],
            seed=run["seed"],
            device=run["device"],
            **run["hyperparameters"],
        )
    every_ckpt = run.get("checkpoint_every") or run["eval_every"] or max(1, run["steps"] // 10)
    next_ckpt = _next_multiple(agent.num_rounds, every_ckpt)
    remaining = max(0, run["steps"] - agent.num_rounds)
    t0 = time.perf_counter() - _last_wall(out)
    totals = {"cum": agent.cumulative_regret}

    with runs.MetricsWriter(out / runs.METRICS, runs.BANDIT_COLUMNS) as metrics, _Interrupt() as stop:

        def callback(a: ThompsonBandit, ev: dict[str, Any]) -> bool:
            nonlocal next_ckpt
            totals["cum"] = ev["cumulative_regret"]
            metrics.write(
                kind="round",
                round=ev["round"],
                arm=ev["arm"],
                reward=ev["reward"],
                regret=ev["regret"],
                cumulative_regret=totals["cum"],
                wall_s=time.perf_counter() - t0,
            )
            if ev["round"] >= next_ckpt:
                a.save(ckpt)
                next_ckpt = _next_multiple(ev["round"], every_ckpt)
            return not stop.requested

        interrupted = False
        try:
            agent.learn(env, remaining, callback=callback, progress_bar=not quiet, seed=run["seed"])
        except KeyboardInterrupt:
            interrupted = True
        except (ValueError, RuntimeError, FloatingPointError) as exc:
            metrics.close()
            _finish(out)
            raise RunFailure(f"training failed at round {agent.num_rounds}: {_one_line(exc)}") from exc
        interrupted = interrupted or stop.requested
        agent.save(ckpt)
    rewards = [float(r["reward"]) for r in runs.read_metrics(out / runs.METRICS) if r.get("kind") == "round"]
    result = {
        "rounds": agent.num_rounds,
        "cumulative_regret": totals["cum"],
        "mean_reward": sum(rewards) / max(1, len(rewards)),  # every round, resumed segments included
        "mean_regret": totals["cum"] / max(1, agent.num_rounds),
    }
    if interrupted:
        result["interrupted"] = True
    runs.write_json(out / runs.EVAL, result)
    _finish(out)
    if interrupted:
        print(
            f"bongrl: interrupted at round {agent.num_rounds}/{run['steps']}; checkpoint, metrics in {out} "
            f"(continue with: bongrl train --resume {out})",
            file=sys.stderr,
        )
        return 130
    print(
        f"done: {run['env']} {agent.num_rounds} rounds, cumulative regret {result['cumulative_regret']:.2f}, "
        f"mean reward {result['mean_reward']:.3f}; outputs in {out}/"
    )
    return 0


# ------------------------------------------------------------------------------------------------ evaluate
def cmd_evaluate(args: argparse.Namespace) -> int:
    from bongrl.envs.wrappers import evaluate, make_env

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"run directory {str(run_dir)!r} does not exist")
    if args.episodes < 1:
        raise UsageError(f"--episodes must be >= 1, got {args.episodes}")
    try:
        run = runs.read_json(run_dir / runs.CONFIG)
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read {str(run_dir / runs.CONFIG)!r}: {_one_line(exc)}") from exc
    if run.get("agent") == "bandit":
        from bongrl.agents.thompson_bandit import ThompsonBandit as Agent
    else:
        from bongrl.agents.bong_dqn import BongDQN as Agent  # type: ignore[assignment]
    agent = Agent.load(run_dir / runs.CHECKPOINT, device=args.device)
    seed = 20_000 if args.seed is None else args.seed
    try:
        res = evaluate(agent, make_env(run["env"]), args.episodes, deterministic=True, seed=seed)
    except (ValueError, RuntimeError) as exc:
        raise RunFailure(f"evaluation failed: {_one_line(exc)}") from exc
    steps = getattr(agent, "num_timesteps", getattr(agent, "num_rounds", None))
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
        f"{run['env']}: mean return {res['mean']:.2f} ± {res['std']:.2f} over {args.episodes} episodes "
        f"(checkpoint at {steps} steps); wrote {run_dir / 'eval_cli.json'}"
    )
    return 0


# ---------------------------------------------------------------------------------------------------- plugins
def cmd_plugins(args: argparse.Namespace) -> int:
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
def _add_compare_parser(sub: Any) -> None:
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
    c.add_argument("--out", help="output directory (default results/compare_<env>)")
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


def cmd_compare(args: argparse.Namespace) -> int:
    from bongrl import compare, presets

    agents = compare.parse_agents(args.agents)
    overrides: dict[str, dict[str, Any]] = {}
    for item in args.overrides:
        name, dot, rest = item.partition(".")
        if not dot or "=" not in rest:
            raise UsageError(f"--set expects AGENT.KEY=VALUE (e.g. bongdqn.obs_std=0.5), got {item!r}")
        overrides.setdefault(name.strip().lower(), {}).update(_parse_overrides([rest]))
    env_kwargs = {"size": args.size} if args.size is not None else {}
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
def _add_tune_parser(sub: Any) -> None:
    from bongrl import tune

    tune.add_parser(sub)  # flags, search space and help text live in bongrl/tune.py


def cmd_tune(args: argparse.Namespace) -> int:
    from bongrl import tune

    return tune.cmd_tune(args)


# ---------------------------------------------------------------------------------------------------- main
def _train_distributed(run: dict[str, Any]) -> int:
    """One rank of a torchrun job: own envs (seed + rank), shared posterior (bongrl.distributed)."""
    import torch.distributed as tdist

    from bongrl.distributed import run_distributed_training

    if run["agent"] != "bongdqn" or run.get("resume"):
        raise UsageError("--distributed supports fresh bongdqn runs only (no bandits, no --resume)")
    out = Path(run["out"])
    res = run_distributed_training(
        run["env"], run["steps"], out, posterior=run["posterior"], exploration=run["exploration"],
        seed=run["seed"], device=run["device"], save_path=out / runs.CHECKPOINT, **run["hyperparameters"],
    )
    if res["rank"] == 0:
        runs.write_json(out / runs.CONFIG, {**{k: v for k, v in run.items() if k != "resume"},
                        "distributed": {"world_size": res["world_size"], "posterior_sha256": res["posterior_hash"]}})
        print(f"done: {run['env']} {res['num_timesteps']} steps x {res['world_size']} ranks; posterior sha256 "
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
    from bongrl.checkpoint import CheckpointError
    from bongrl.registry import PluginError

    if args.threads < 1:
        print("bongrl: error: --threads must be >= 1", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(args.threads)
    _configure_logging(bool(getattr(args, "quiet", False)))
    try:
        return int(args.func(args))
    except (UsageError, PluginError, CheckpointError, ValueError) as exc:
        print(f"bongrl: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bongrl: interrupted", file=sys.stderr)
        return 130
    except RunFailure as exc:
        print(f"bongrl: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:  # a runtime failure: one line, no traceback (set BONGRL_DEBUG=1 for it)
        import os

        if os.environ.get("BONGRL_DEBUG"):
            raise
        print(f"bongrl: error: {type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
