"""The one training function: a :class:`~bongrl.runner.spec.RunSpec` into a run directory (docs/design.md §7).

:func:`train_run` builds (or, on resume, loads) the agent, wires the callbacks — :class:`~bongrl.callbacks.
MetricsCallback` (``metrics.csv``), :class:`~bongrl.callbacks.EvalCallback` (periodic evaluation, episodic agents),
:class:`~bongrl.callbacks.CheckpointCallback`, an optional :class:`~bongrl.callbacks.HealthCallback` and a clean
Ctrl-C stop — runs ``agent.learn`` once, and writes ``eval.json``, the checkpoint and ``learning_curve.png``.
``bongrl train`` is a thin layer over it; anything that trains a run (a script, a notebook) can call it.
"""

from __future__ import annotations

import datetime as _dt
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bongrl import runs
from bongrl.callbacks import (
    CheckpointCallback,
    EvalCallback,
    HealthCallback,
    MetricsCallback,
    StopOnFlag,
)
from bongrl.errors import RunFailure, one_line
from bongrl.runner.spec import RunSpec

__all__ = ["RunResult", "train_run", "write_config", "kept_outputs"]

Say = Callable[[str], None]


@dataclass
class RunResult:
    """What :func:`train_run` did: the exit status (0 done, 130 interrupted), the agent and ``eval.json``."""

    status: int
    agent: Any
    result: dict[str, Any] = field(default_factory=dict)


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
        print("\nbongrl: interrupted; stopping at the end of this episode (Ctrl-C again to stop now)",
              file=sys.stderr, flush=True)

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def write_config(spec: RunSpec, out: Path, command: str | None = None, resumed: dict[str, Any] | None = None) -> None:
    """``config.json``: the spec with its resolved agent config, the command, start time and package versions;
    a resume appends ``{"time", "steps"}`` to ``resumes`` of the saved config (``resumed``)."""
    if resumed is not None:
        config = {**resumed, **{k: v for k, v in spec.to_config().items() if k in ("steps", "eval_every",
                  "eval_episodes", "checkpoint_every", "device")}}
        config.setdefault("resumes", []).append({"time": _now(), "steps": spec.steps})
    else:
        config = {"command": command, **spec.to_config(), "out": str(out), "start_time": _now(),
                  "versions": runs.versions()}
    runs.write_json(out / runs.CONFIG, config)


def _last_wall(out: Path) -> float:
    """Wall-clock seconds already logged in ``metrics.csv`` (so a resumed run's ``wall_s`` keeps counting)."""
    rows = runs.read_metrics(out / runs.METRICS)
    try:
        return float(rows[-1]["wall_s"]) if rows else 0.0
    except (KeyError, ValueError):
        return 0.0


def kept_outputs(out: Path) -> str:
    """What a stopped run left in ``out``, naming only files that exist: ``"metrics.csv, checkpoint.safetensors
    in runs/x"`` ('' when there is nothing, or only an empty metrics file)."""
    names = [runs.METRICS, runs.PLOT, runs.CHECKPOINT]
    metrics = out / runs.METRICS
    have = [n for n in names if (out / n).is_file() and not (n == runs.METRICS and not runs.read_metrics(metrics))]
    return f"{', '.join(have)} in {out}" if have else ""


def finish(out: Path, say_warning: Say | None = None) -> None:
    """Draw ``learning_curve.png``; a plotting failure is a warning, never a lost run."""
    try:
        runs.plot_learning_curve(out)
    except Exception as exc:  # noqa: BLE001
        msg = f"bongrl: warning: could not draw the learning curve: {one_line(exc)}"
        (say_warning or (lambda m: print(m, file=sys.stderr)))(msg)


def _eval_line(res: dict[str, Any], rejected: int) -> str:
    line = f"eval @ {res['step']}: {res['mean']:.2f} ± {res['std']:.2f} ({res.get('weights', 'online')} weights)"
    if isinstance(res.get("averaged"), dict):
        line += f", {res['averaged']['mean']:.2f} ± {res['averaged']['std']:.2f} (averaged)"
    if rejected:
        line += f"; {rejected} non-finite updates rejected so far"
    return line


def train_run(
    spec: RunSpec,
    out: str | Path,
    *,
    resume: bool = False,
    say: Say | None = None,
    progress_bar: bool = False,
    health_every: int = 0,
    callbacks: Sequence[Any] = (),
) -> RunResult:
    """Train ``spec`` into the run directory ``out`` (``config.json`` must already be written: :func:`write_config`).

    ``resume``: continue from ``out/checkpoint.safetensors`` up to ``spec.steps``. ``say`` prints progress lines
    (None: silent). ``health_every`` > 0 checks the posterior's health that often (:class:`HealthCallback`).
    ``callbacks``: more callbacks, run after the built-in ones. Raises :class:`RunFailure` if training fails (the
    metrics so far and the plot are kept)."""
    out = Path(out)
    cls = spec.agent_class()
    episodic = spec.unit == "step"
    ckpt = out / runs.CHECKPOINT
    metrics_path = out / runs.METRICS
    if resume:
        agent = cls.load(ckpt, device=spec.device)
        if not episodic:  # a bandit checkpoint holds no env: play a new one, continuing its random stream
            agent.set_env(spec.make_env())
        dropped = runs.truncate_metrics(metrics_path, "step" if episodic else "round", agent.num_timesteps)
        if dropped and say:
            say(f"resume: dropped {dropped} metrics rows logged after the checkpoint")
    else:
        metrics_path.unlink(missing_ok=True)
        agent = spec.build_agent()
    remaining = max(0, spec.steps - agent.num_timesteps)
    t0 = time.perf_counter() - _last_wall(out)
    rejected = lambda: int(getattr(agent, "rejected_updates", 0))  # noqa: E731
    if episodic:
        ckpt_every = spec.checkpoint_every or spec.eval_every
    else:
        ckpt_every = spec.checkpoint_every or spec.eval_every or max(1, spec.steps // 10)
    columns = runs.EPISODE_COLUMNS if episodic else runs.BANDIT_COLUMNS
    close_eval: Callable[[], None] = lambda: None  # noqa: E731
    with runs.MetricsWriter(metrics_path, columns) as metrics, _Interrupt() as stop:
        eval_cb = None
        if episodic:
            evaluate, close_eval = spec.evaluator()

            def log_eval(res: dict[str, Any]) -> None:
                avg = res.get("averaged") if isinstance(res.get("averaged"), dict) else None
                metrics.write(kind="eval", step=res["step"], episode=getattr(agent, "num_episodes", None),
                              wall_s=time.perf_counter() - t0, eval_mean=res["mean"], eval_std=res["std"],
                              eval_averaged_mean=None if avg is None else avg["mean"],
                              eval_averaged_std=None if avg is None else avg["std"], rejected_updates=rejected())
                if say:
                    say(_eval_line(res, rejected()))

            eval_cb = EvalCallback(evaluate, spec.eval_every, after_eval=log_eval)
        builtin = [
            MetricsCallback(metrics.write, t0, kind="episode" if episodic else "round"),
            eval_cb,
            CheckpointCallback(ckpt, ckpt_every),
            HealthCallback(health_every) if health_every else None,
            StopOnFlag(lambda: stop.requested),
        ]
        chain = [c for c in builtin if c is not None] + list(callbacks)
        interrupted = False
        try:
            try:
                agent.learn(remaining, callback=chain, progress_bar=progress_bar)
            except KeyboardInterrupt:
                interrupted = True
            except (ValueError, RuntimeError, FloatingPointError) as exc:
                metrics.close()
                finish(out)
                kept = kept_outputs(out)
                raise RunFailure(
                    f"training failed at {spec.unit} {agent.num_timesteps} (posterior {spec.posterior!r}, "
                    f"exploration {spec.exploration!r}): {one_line(exc)}" + (f" (kept: {kept})" if kept else "")
                ) from exc
            interrupted = interrupted or stop.requested
            agent.save(ckpt, include_replay=True)
            if episodic:
                if interrupted:
                    result = {**eval_cb.last, "interrupted": True} if eval_cb.last is not None else {}
                else:
                    try:
                        last = eval_cb.last
                        final = last if last is not None and last["step"] == agent.num_timesteps \
                            else eval_cb.evaluate_now()
                    except (ValueError, RuntimeError) as exc:
                        raise RunFailure(f"final evaluation failed: {one_line(exc)}") from exc
                    result = _episodic_result(spec, agent, final)
            else:
                result = _bandit_result(agent, metrics_path)
                if interrupted:
                    result["interrupted"] = True
        finally:
            close_eval()
    if result:
        runs.write_json(out / runs.EVAL, result)
    finish(out)
    return RunResult(130 if interrupted else 0, agent, result)


def _episodic_result(spec: RunSpec, agent: Any, final: dict[str, Any]) -> dict[str, Any]:
    from bongrl.envs.wrappers import eval_seed

    return {
        "mean": final["mean"],
        "std": final["std"],
        "episodes": final["episodes"],
        "returns": final["returns"],
        "lengths": final["lengths"],
        "step": agent.num_timesteps,
        "seed": eval_seed(spec.seed),
        "deterministic": True,
        "weights": final.get("weights", "online"),
        "averaged": final.get("averaged"),
        "rejected_updates": int(getattr(agent, "rejected_updates", 0)),
    }


def _bandit_result(agent: Any, metrics_path: Path) -> dict[str, Any]:
    # the writer flushes every row: every round, resumed segments included, is read back
    rewards = [float(r["reward"]) for r in runs.read_metrics(metrics_path) if r.get("kind") == "round"]
    regret = float(agent.cumulative_regret)
    return {
        "rounds": agent.num_timesteps,
        "cumulative_regret": regret,
        "mean_reward": sum(rewards) / max(1, len(rewards)),
        "mean_regret": regret / max(1, agent.num_timesteps),
    }
