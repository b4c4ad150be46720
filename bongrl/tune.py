"""Hyperparameter tuning of BongDQN with Optuna: ``bongrl tune --env ID --trials N`` (also :func:`run_study`).

Each trial trains a fresh BongDQN from the env's preset (``--preset`` / ``--set`` change that base) with the
hyperparameters of :func:`suggest` on top, for ``steps`` env steps with one seed, and evaluates it
deterministically (greedy on the posterior mean, ``eval_episodes`` episodes with the same seeds as ``bongrl
train``) every ``eval_every`` env steps and at the end.

* Objective (maximised): ``final`` (default) = the mean deterministic eval return at the end of the budget;
  ``auc`` = the mean of all the trial's eval returns (the area under its eval curve over its length).
* Sampler: TPE seeded with ``seed + (trials already in the study)``, so a resumed study does not replay the
  random start-up draws of the first run; the first ``max(2, min(10, N // 3))`` trials are random.
* Pruning: every eval is reported (``trial.report(mean, step)``); a ``MedianPruner`` (3 start-up trials, no
  pruning before 40% of the budget) stops a trial whose eval return is below the median of earlier trials at
  that step. A trial whose training fails (e.g. a diverged posterior) is recorded as pruned with user
  attribute ``error``.
* Resume: the study lives in its storage (default ``sqlite:///DIR/study.db``) and is loaded if it exists; a
  rerun runs trials until the study holds N *finished* (complete or pruned) trials. Trials cut off by Ctrl-C
  (FAIL) or a killed process (left RUNNING) do not count, so they are redone. The study remembers its env,
  budget, protocol, posterior, exploration and fixed hyperparameters; a rerun with other ones is refused.

DIR (default ``runs/tune_<env>``) is this study's: ``study.json`` names it, so the same command resumes there and
any other study goes to ``DIR_1``, ``DIR_2``, ... instead of replacing its outputs.

Outputs in DIR: ``best_preset.json`` (the base preset with the best trial's hyperparameters, ``steps`` /
``eval_every`` / ``eval_episodes`` set to the tuning protocol; ``bongrl train --env ID --preset
DIR/best_preset.json`` reads it), ``best_trial.json`` (its value, trial number, study, storage) and
``trials.csv`` (one row per trial: state, value, AUC, eval steps, wall time and every tuned hyperparameter).

The module is long because it is the whole ``tune`` command — search space, one trial (a :class:`~bongrl.runner.
spec.RunSpec` trained with an :class:`~bongrl.callbacks.EvalCallback` that reports to the pruner), the resumable
study, its outputs and its argparse — and these share one setup dict; nothing in it is used elsewhere.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["SEARCH_SPACE", "suggest", "run_study", "cmd_tune", "OBJECTIVES"]

OBJECTIVES = ("final", "auc")

#: The search space, in one place (``suggest`` follows it; docs/tune.md and ``bongrl tune --help`` quote it).
#: ``log``: log-uniform float; ``int``: uniform int; ``float``: uniform float; ``choice``: categorical.
SEARCH_SPACE: dict[str, dict[str, Any]] = {
    "prior_std": {"type": "log", "low": 0.03, "high": 3.0, "note": "prior std of every weight"},
    "obs_std": {"type": "log", "low": 0.05, "high": 5.0, "note": "TD-target likelihood std"},
    "forget": {"type": "float", "low": 0.999, "high": 1.0, "note": "OU forgetting toward the prior"},
    "process_noise": {
        "type": "log",
        "low": 1e-8,
        "high": 1e-3,
        "note": "switched on/off by the categorical 'process_noise_on'; off = 0.0",
    },
    "target_update": {"type": "choice", "choices": [10, 20, 50, 100, 250, 500]},
    "replay_every": {"type": "choice", "choices": [0, 1, 2, 4, 8], "note": "0 = online updates only"},
    "td_clip": {"type": "choice", "choices": [0.0, 1.0, 3.0, 10.0], "note": "0 = no clipping"},
}
#: the agent-level keys, searched when the agent's config has them (families and rules add their own)
_AGENT_KEYS = list(SEARCH_SPACE)


def searched_keys(posterior: str, exploration: str, fixed: set[str] | None = None,
                  agent: str = "bongdqn") -> list[str]:
    """The hyperparameters searched for this agent / posterior / exploration combination (minus ``fixed``):
    the agent-level keys of :data:`SEARCH_SPACE` its config has, then what the family and the rule say they take
    (their ``search_space()``, added to :data:`SEARCH_SPACE` on first use)."""

    from bongrl import registry

    fields = {f.name for f in dataclasses.fields(registry.load_agent(agent).config_class)}
    plugin_keys = []
    for group, name in ((registry.POSTERIORS, posterior), (registry.EXPLORATION, exploration)):
        own = []
        for key, spec in registry.load(group, name).search_space().items():
            if key in fields:  # an option the agent cannot pass on is not searchable
                SEARCH_SPACE.setdefault(key, spec)
                own.append(key)
        plugin_keys.append(own)
    agent_keys = [k for k in _AGENT_KEYS if k in fields]
    # the family's options after the likelihood's (prior_std, obs_std), the rule's last: the order of the
    # sampler's draws, kept so that a study's trials are the same across versions
    keys = agent_keys[:2] + plugin_keys[0] + agent_keys[2:] + plugin_keys[1]
    return [k for k in dict.fromkeys(keys) if k not in (fixed or set())]


def suggest(trial: Any, keys: list[str]) -> dict[str, Any]:
    """Draw the hyperparameters ``keys`` (see :func:`searched_keys`) from :data:`SEARCH_SPACE`."""
    out: dict[str, Any] = {}
    for key in keys:
        spec = SEARCH_SPACE[key]
        if key == "process_noise":
            on = trial.suggest_categorical("process_noise_on", [False, True])
            out[key] = trial.suggest_float(key, spec["low"], spec["high"], log=True) if on else 0.0
        elif spec["type"] == "log":
            out[key] = trial.suggest_float(key, spec["low"], spec["high"], log=True)
        elif spec["type"] == "float":
            out[key] = trial.suggest_float(key, spec["low"], spec["high"])
        elif spec["type"] == "int":
            out[key] = trial.suggest_int(key, spec["low"], spec["high"])
        else:
            out[key] = trial.suggest_categorical(key, spec["choices"])
    return out


def search_space_text() -> str:
    """One line per agent-level searched hyperparameter (for ``--help`` and the docs); the family's and the
    rule's own options come from their ``search_space()``."""
    lines = []
    for key, spec in SEARCH_SPACE.items():
        if spec["type"] == "choice":
            rng = "{" + ", ".join(str(c) for c in spec["choices"]) + "}"
        else:
            rng = f"{spec['type']} [{spec['low']:g}, {spec['high']:g}]"
        note = f" ({spec['note']})" if spec.get("note") else ""
        lines.append(f"{key}: {rng}{note}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- storage
def _slug(env_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", env_id).strip("_").lower()


def default_out(env_id: str) -> Path:
    return Path("runs") / f"tune_{_slug(env_id)}"


def open_storage(url: str) -> Any:
    """An Optuna RDB storage for ``url`` (parent folder of a ``sqlite:///`` file created); bad URLs raise
    :class:`bongrl.cli.UsageError`."""
    import optuna

    from bongrl.errors import UsageError
    from bongrl.errors import one_line as _one_line

    if isinstance(url, str) and url.startswith("sqlite:") and not url.startswith("sqlite:///"):
        raise UsageError(f"--storage {url!r}: sqlite URLs take three slashes, e.g. sqlite:///runs/tune.db")
    if not isinstance(url, str) or "://" not in url:
        raise UsageError(f"--storage must be a database URL such as sqlite:///runs/tune.db, got {url!r}")
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        if not path or path.endswith("/"):
            raise UsageError(f"--storage {url!r} names no database file (e.g. sqlite:///runs/tune.db)")
        if path != ":memory:":
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UsageError(f"--storage {url!r}: cannot create its folder: {_one_line(exc)}") from exc
    try:
        return optuna.storages.RDBStorage(url)
    except Exception as exc:  # noqa: BLE001  (sqlalchemy: unknown dialect, missing driver, unreadable file, ...)
        raise UsageError(f"cannot open --storage {url!r}: {type(exc).__name__}: {_one_line(exc)}") from exc


def _finished(study: Any) -> list[Any]:
    from optuna.trial import TrialState

    return [
        t for t in study.get_trials(deepcopy=False) if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
    ]


# ---------------------------------------------------------------------------------------------------- trial
def train_trial(
    setup: dict[str, Any], hyper: dict[str, Any], report: Callable[[float, int], bool] | None = None
) -> dict[str, Any]:
    """Train one agent with ``setup``'s spec and protocol and hyperparameters ``hyper``; ``report(mean, step)``
    after each periodic eval inside the budget returns True to stop early (pruned). Returns ``{"evals": [(step,
    mean), ...], "pruned": bool, "final": mean, "auc": mean of the eval means, "steps": trained}``."""
    from bongrl.callbacks import EvalCallback
    from bongrl.runner import RunSpec

    spec: RunSpec = setup["spec"].replace(hyperparameters=dict(hyper))
    agent = spec.build_agent()
    evaluate, close = spec.evaluator(policies=("online",))  # the objective: the online weights, as `train`'s
    state = {"pruned": False}

    def after_eval(res: dict[str, Any]) -> bool:
        if report is None or res["step"] >= spec.steps:  # the final eval is the objective, never a pruning point
            return True
        state["pruned"] = bool(report(float(res["mean"]), int(res["step"])))
        return not state["pruned"]

    evals = EvalCallback(evaluate, spec.eval_every, after_eval=after_eval)
    try:
        agent.learn(spec.steps, callback=evals)
        last = evals.last
        if not state["pruned"] and (last is None or last["step"] != agent.num_timesteps):
            evals.evaluate_now()
    finally:
        close()
        agent.env.close()
    means = [float(r["mean"]) for r in evals.evaluations]
    return {
        "evals": [(int(r["step"]), float(r["mean"])) for r in evals.evaluations],
        "pruned": state["pruned"],
        "final": means[-1] if means else float("nan"),
        "auc": sum(means) / len(means) if means else float("nan"),
        "steps": agent.num_timesteps,
    }


# ---------------------------------------------------------------------------------------------------- study
def _resolve(args: Any) -> dict[str, Any]:
    """Validate the command line; return the study setup (nothing trained yet)."""
    from bongrl.errors import UsageError
    from bongrl.runner import RunSpec, parse_overrides

    for name, low in (("trials", 1), ("steps", 1), ("eval_every", 0), ("eval_episodes", 1)):
        value = getattr(args, name)
        if value is not None and (not isinstance(value, int) or value < low):
            raise UsageError(f"--{name.replace('_', '-')} must be an integer >= {low}, got {value!r}")
    if args.study is not None and not args.study.strip():
        raise UsageError("--study must be a non-empty name")
    if args.objective not in OBJECTIVES:
        raise UsageError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {args.objective!r}")
    overrides = parse_overrides(args.overrides)
    spec = RunSpec.resolve(
        args.env, preset=args.preset, posterior=args.posterior, exploration=args.exploration, overrides=overrides,
        seed=args.seed, device=args.device, steps=args.steps,
        eval_episodes=args.eval_episodes if args.eval_episodes is not None else 5,
        env_kwargs=parse_overrides(getattr(args, "env_kwargs", None) or [], "--env-kwargs"),
    )
    if spec.unit != "step":
        raise UsageError(f"tune needs an episodic agent; the preset for {args.env} uses {spec.agent!r}")
    eval_every = args.eval_every if args.eval_every is not None else max(1, spec.steps // 5)
    spec = spec.replace(eval_every=0 if eval_every >= spec.steps else eval_every)
    keys = searched_keys(spec.posterior, spec.exploration, set(overrides), spec.agent)
    if not keys:
        raise UsageError("every searched hyperparameter is fixed with --set; nothing to tune")
    setup = {
        "spec": spec,
        "env": spec.env,
        "preset": spec.preset_values,
        "posterior": spec.posterior,
        "exploration": spec.exploration,
        "fixed": spec.hyperparameters,
        "keys": keys,
        "steps": spec.steps,
        "eval_every": spec.eval_every,
        "eval_episodes": spec.eval_episodes,
        "seed": spec.seed,
        "device": spec.device,
        "objective": args.objective,
        "trials": args.trials,
        "env_kwargs": spec.env_kwargs,
        "study": args.study or f"tune-{_slug(args.env)}",
        "quiet": args.quiet,
    }
    setup["marker"] = {"study": setup["study"], "storage": args.storage,
                       "setup": json.loads(json.dumps({k: setup[k] for k in _IDENTITY}))}
    setup["out"] = _study_dir(Path(args.out) if args.out else default_out(args.env), setup["marker"])
    setup["storage"] = args.storage or f"sqlite:///{setup['out'] / 'study.db'}"
    return setup


#: DIR/MARKER names the study DIR belongs to (its name, the --storage given, its settings)
MARKER = "study.json"


def _study_dir(base: Path, marker: dict[str, Any]) -> Path:
    """DIR for this study: ``base`` when it is new, empty or this study's own (its :data:`MARKER` matches),
    else the first such ``base_1``, ``base_2``, ... (one line says so): another study's outputs are never
    replaced."""
    from bongrl import runs

    def ours(d: Path) -> bool:
        if not any(d.iterdir()):
            return True
        try:
            return runs.read_json(d / MARKER) == marker
        except (OSError, ValueError):
            return False

    out = runs.free_dir(base, ours)
    if out != base:
        print(f"tune: {base} holds another study (or other files); writing to {out}", flush=True)
    return out


#: Settings a resumed study must share with the command (else its trials are not comparable).
_IDENTITY = (
    "env",
    "posterior",
    "exploration",
    "steps",
    "eval_every",
    "eval_episodes",
    "seed",
    "objective",
    "fixed",
    "keys",
    "env_kwargs",
)


#: identity settings added after studies were saved without them, and the value those studies had
_ADDED: dict[str, Any] = {"env_kwargs": {}}


def _check_identity(study: Any, setup: dict[str, Any]) -> None:
    from bongrl.errors import UsageError

    saved = study.user_attrs.get("setup")
    mine = json.loads(json.dumps({k: setup[k] for k in _IDENTITY}))
    if saved is None:
        study.set_user_attr("setup", mine)
        return
    diff = [k for k in _IDENTITY if saved.get(k, _ADDED.get(k)) != mine.get(k)]
    if diff:
        what = "; ".join(f"{k}: study {saved.get(k)!r}, command {mine.get(k)!r}" for k in diff)
        raise UsageError(
            f"study {setup['study']!r} in {setup['storage']} was created with other settings ({what}); "
            "rerun with the same settings to resume it, or use another --study name"
        )


def _say(setup: dict[str, Any], msg: str) -> None:
    if not setup["quiet"]:
        print(msg, flush=True)


def run_study(setup: dict[str, Any]) -> dict[str, Any]:
    """Create or resume the study and run trials until it holds ``setup["trials"]`` finished ones; write
    the outputs. Returns ``{"study", "ran", "finished", "best"}``. KeyboardInterrupt propagates (after the
    outputs are written)."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # no per-trial logs or interrupt tracebacks
    storage = open_storage(setup["storage"])
    n_total = setup["trials"]
    prior_trials = 0
    try:
        prior_trials = len(optuna.load_study(study_name=setup["study"], storage=storage).trials)
    except KeyError:
        pass
    sampler = optuna.samplers.TPESampler(
        seed=setup["seed"] + prior_trials, n_startup_trials=max(2, min(10, n_total // 3))
    )
    pruner = optuna.pruners.MedianPruner(
        n_startup_trials=3, n_warmup_steps=int(0.4 * setup["steps"]), interval_steps=1
    )
    study = optuna.create_study(
        study_name=setup["study"],
        storage=storage,
        direction="maximize",
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )
    _check_identity(study, setup)
    from bongrl import runs

    runs.write_json(Path(setup["out"]) / MARKER, setup["marker"])  # DIR is this study's: a rerun resumes here
    done_before = len(_finished(study))
    todo = max(0, n_total - done_before)
    _say(
        setup,
        f"tune: study {setup['study']!r} in {setup['storage']}: {done_before} finished trial(s), "
        f"running {todo} more ({setup['env']}, {setup['steps']} steps/trial, "
        f"eval every {setup['eval_every'] or setup['steps']} "
        f"x {setup['eval_episodes']} episodes, objective {setup['objective']})",
    )
    ran: list[int] = []

    def objective(trial: Any) -> float:
        tuned = suggest(trial, setup["keys"])
        hyper = {**setup["fixed"], **tuned}
        trial.set_user_attr("hyperparameters", tuned)
        t0 = time.perf_counter()

        def report(mean: float, step: int) -> bool:
            trial.report(mean, step)
            return trial.should_prune()

        try:
            res = train_trial(setup, hyper, report if setup["eval_every"] else None)
        except (ValueError, RuntimeError, FloatingPointError) as exc:
            from bongrl.errors import one_line as _one_line

            trial.set_user_attr("error", f"{type(exc).__name__}: {_one_line(exc)}")
            trial.set_user_attr("wall_s", time.perf_counter() - t0)
            raise optuna.TrialPruned(f"training failed: {_one_line(exc)}") from exc
        trial.set_user_attr("evals", res["evals"])
        trial.set_user_attr("auc", res["auc"])
        trial.set_user_attr("final", res["final"])
        trial.set_user_attr("steps_trained", res["steps"])
        trial.set_user_attr("wall_s", time.perf_counter() - t0)
        if res["pruned"]:
            raise optuna.TrialPruned(f"pruned at step {res['steps']}")
        return float(res[setup["objective"]])

    def on_trial(study_: Any, frozen: Any) -> None:
        ran.append(frozen.number)
        n_done = len(_finished(study_))
        attrs = frozen.user_attrs
        wall = attrs.get("wall_s", float("nan"))
        if frozen.state == TrialState.COMPLETE:
            status = f"{setup['objective']} {frozen.value:.2f}"
        elif "error" in attrs:
            status = f"failed ({attrs['error']})"
        else:
            last = attrs.get("final", float("nan"))
            status = f"pruned at step {attrs.get('steps_trained', '?')} (last eval {last:.2f})"
        params = " ".join(f"{k}={_fmt(v)}" for k, v in attrs.get("hyperparameters", {}).items())
        _say(setup, f"trial {frozen.number} [{n_done}/{n_total}]: {status} in {wall:.0f} s; {params}")

    try:
        if todo:
            study.optimize(
                objective,
                n_trials=todo,
                callbacks=[
                    on_trial,
                    optuna.study.MaxTrialsCallback(n_total, states=(TrialState.COMPLETE, TrialState.PRUNED)),
                ],
                gc_after_trial=False,
            )
    finally:
        best = write_outputs(study, setup)
    return {"study": study, "ran": ran, "finished": len(_finished(study)), "best": best}


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def best_preset(study: Any, setup: dict[str, Any]) -> dict[str, Any] | None:
    """The base preset with the best complete trial's hyperparameters (``None`` before any completes)."""
    from optuna.trial import TrialState

    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if not complete:
        return None
    best = max(complete, key=lambda t: t.value)
    preset = copy.deepcopy(setup["preset"])
    preset.update(
        agent=setup["spec"].agent,
        posterior=setup["posterior"],
        exploration=setup["exploration"],
        steps=setup["steps"],
        eval_every=setup["eval_every"],
        eval_episodes=setup["eval_episodes"],
        hyperparameters={**setup["fixed"], **best.user_attrs.get("hyperparameters", {})},
    )
    return {"preset": preset, "trial": best}


def write_outputs(study: Any, setup: dict[str, Any]) -> dict[str, Any] | None:
    """Write DIR/trials.csv always, DIR/best_preset.json and DIR/best_trial.json once a trial completed."""
    out = Path(setup["out"])
    out.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    keys = list(setup["keys"])
    with open(out / "trials.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            ["number", "state", "value", "final", "auc", "steps_trained", "evals", "wall_s", *keys, "error"]
        )
        for t in trials:
            a = t.user_attrs
            hp = a.get("hyperparameters", {})
            evals = ";".join(f"{s}:{m:g}" for s, m in a.get("evals", []))
            w.writerow(
                [
                    t.number,
                    t.state.name,
                    "" if t.value is None else t.value,
                    a.get("final", ""),
                    a.get("auc", ""),
                    a.get("steps_trained", ""),
                    evals,
                    "" if "wall_s" not in a else round(a["wall_s"], 1),
                    *[hp.get(k, "") for k in keys],
                    a.get("error", ""),
                ]
            )
    found = best_preset(study, setup)
    if found is None:
        return None
    t = found["trial"]
    (out / "best_preset.json").write_text(json.dumps(found["preset"], indent=2) + "\n")
    info = {
        "study": setup["study"],
        "storage": setup["storage"],
        "trial": t.number,
        "value": t.value,
        "objective": setup["objective"],
        "evals": t.user_attrs.get("evals"),
        "finished_trials": len(_finished(study)),
        "searched": keys,
    }
    (out / "best_trial.json").write_text(json.dumps(info, indent=2) + "\n")
    return {"preset": found["preset"], "trial": t.number, "value": t.value}


# ---------------------------------------------------------------------------------------------------- CLI
def add_parser(sub: Any) -> Any:
    """The ``tune`` subcommand (registered by :func:`bongrl.cli.build_parser`, which adds ``--env-kwargs``);
    returns its parser."""
    import argparse

    p = sub.add_parser(
        "tune",
        help="tune BongDQN hyperparameters with Optuna (resumable); writes a best preset",
        description="Optuna study (seeded TPE, median pruning on periodic eval returns) over BongDQN "
        "hyperparameters. Rerunning the same command resumes the study from its storage until it holds "
        "--trials finished trials. Writes DIR/best_preset.json (use: bongrl train --env ID --preset "
        "DIR/best_preset.json), DIR/best_trial.json and DIR/trials.csv.",
        epilog="search space:\n  "
        + search_space_text().replace("\n", "\n  ")
        + "\n  plus the posterior family's and the exploration rule's own options (their search_space(); "
        "built in: dlr rank int [1, 20], thompson every {0, 1, 10, 100}, ucb beta log [0.1, 10])"
        + "\n(--set KEY=VALUE fixes a hyperparameter and removes it from the search)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--env", required=True, help="gymnasium env id (e.g. CartPole-v1)")
    p.add_argument(
        "--trials", type=int, required=True, help="finished (complete or pruned) trials wanted in total"
    )
    p.add_argument("--steps", type=int, help="env steps per trial (default: the preset's budget)")
    p.add_argument("--storage", help="Optuna database URL (default sqlite:///DIR/study.db)")
    p.add_argument("--study", help="study name (default tune-<env>)")
    p.add_argument(
        "--seed", type=int, default=None, help="training seed of every trial and sampler seed (default 0)"
    )
    p.add_argument(
        "--out", help="output directory DIR (default runs/tune_<env>); the same command resumes its study there, "
        "any other study goes to DIR_1, DIR_2, ... (never overwritten)",
    )
    p.add_argument(
        "--eval-every",
        type=int,
        help="env steps between evals reported to the pruner "
        "(default steps/5; 0: only at the end, no pruning)",
    )
    p.add_argument("--eval-episodes", type=int, help="deterministic episodes per eval (default 5)")
    p.add_argument(
        "--objective",
        choices=OBJECTIVES,
        default="final",
        help="final: mean eval return at the end (default); auc: mean over all evals",
    )
    p.add_argument(
        "--preset", help="base preset: another env id's or a JSON file (default: the env's preset)"
    )
    p.add_argument("--posterior", help="posterior family (default: the preset's)")
    p.add_argument("--exploration", help="exploration rule (default: the preset's)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fix a hyperparameter (JSON value) in every trial; repeatable",
    )
    p.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default="cpu", help="torch device (default cpu)"
    )
    p.add_argument("--quiet", action="store_true", help="no per-trial lines")
    p.set_defaults(func=cmd_tune)
    return p


def cmd_tune(args: Any) -> int:
    setup = _resolve(args)
    try:
        res = run_study(setup)
    except KeyboardInterrupt:
        import optuna

        try:
            n = len(_finished(optuna.load_study(study_name=setup["study"], storage=setup["storage"])))
        except Exception:  # noqa: BLE001
            n = "?"
        print(
            f"bongrl: interrupted; the study holds {n}/{setup['trials']} finished trials (the interrupted "
            f"one is redone); rerun the same command to continue",
            file=sys.stderr,
        )
        return 130
    best = res["best"]
    out = Path(setup["out"])
    preset_path = out / "best_preset.json"
    if best is None:
        print(
            f"tune: {res['finished']} finished trial(s), none complete (all pruned or failed); "
            f"see {out / 'trials.csv'}"
        )
        return 1
    if not setup["quiet"]:
        print(json.dumps(best["preset"], indent=2))
    print(
        f"tune: {res['finished']}/{setup['trials']} trials finished ({len(res['ran'])} run now); best "
        f"trial {best['trial']}: {setup['objective']} eval return {best['value']:.2f}; wrote {preset_path}, "
        f"{out / 'trials.csv'} (train with: bongrl train --env {setup['env']} --preset {preset_path})"
    )
    return 0
