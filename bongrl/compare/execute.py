"""Running a comparison: one (agent, seed) run with the shared evaluation protocol, and runs in parallel
processes (see :mod:`bongrl.compare`)."""

from __future__ import annotations

import copy
import csv
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from bongrl.compare.common import (
    AGENTS,
    COMPLETE,
    CURVE,
    CURVE_COLUMNS,
    DEFAULT_TAU,
    EVALS,
    FAILED,
    RESULT,
    SOLVE_RATIO,
    CompareError,
    _error_text,
    _key,
)
from bongrl.compare.plan import _read_result, _signature, is_complete, plan, plan_conflict, run_dir
from bongrl.compare.report import _read_curve, aggregate
from bongrl.envs.wrappers import episode_success


# ------------------------------------------------------------------------------------------- one run
def _check_finite(tensors: Iterable[Any], step: int) -> None:
    """``FloatingPointError`` when any weight is NaN or infinite: the run diverged (recorded as failed)."""
    import torch

    for t in tensors:
        if t is not None and not bool(torch.isfinite(t).all()):
            raise FloatingPointError(f"non-finite weights at step {step}: the run diverged")


class _Recorder:
    """The shared evaluation protocol, wall clock and progress reports of one run.

    The trainer :meth:`bind` s its two policies (``{"online": ..., "averaged": ...}``, SB3-style predictors)
    and the weights to check for divergence; each evaluation appends one row to ``rows`` and, when given,
    to ``curve_path`` (so a run that dies keeps its partial curve).
    """

    def __init__(self, task: dict[str, Any], report: Callable[[int], None], curve_path: Path | None = None) -> None:
        from bongrl.envs.wrappers import ProtocolEval

        self.task = task
        self.every = int(task["eval_every"])
        self.protocol_eval = ProtocolEval(task["env"], task["eval_episodes"], task["eval_seed"], **task["env_kwargs"])
        self.rows: list[dict[str, Any]] = []
        self.curve_path = curve_path
        self.report = report
        self.progress_every = max(1, min(self.every, 1_000))
        self.next_eval = self.every
        self.next_report = self.progress_every
        self.eval_time = 0.0
        self.t0 = time.perf_counter()
        self.episodes = 0
        self.solved_at: int | None = None
        self.failures = 0
        self.success_reported = False
        #: agent-specific counters for the result file (BongDQN: rejected_updates)
        self.extra: dict[str, Any] = {}
        self.policies: Callable[[], dict[str, Any]] = dict
        self.weights: Callable[[], Iterable[Any]] = list

    def bind(self, policies: Callable[[], dict[str, Any]], weights: Callable[[], Iterable[Any]]) -> None:
        """What to evaluate (one predictor per name in :data:`EVALS`) and which weights must stay finite."""
        self.policies, self.weights = policies, weights

    def evaluate(self, step: int) -> None:
        """Both policies on the same protocol episodes; raises ``FloatingPointError`` on non-finite weights."""
        t = time.perf_counter()
        _check_finite(self.weights(), step)
        policies = self.policies()
        row: dict[str, Any] = {"step": int(step)}
        for name in EVALS:
            res = self.protocol_eval(policies[name])
            row[f"eval_{name}_mean"], row[f"eval_{name}_std"] = res["mean"], res["std"]
        row["eval_mean"], row["eval_std"] = row["eval_online_mean"], row["eval_online_std"]
        now = time.perf_counter()
        self.eval_time += now - t
        wall = now - self.t0
        train = wall - self.eval_time
        row["wall_s"] = wall
        row["env_steps_per_s"] = (step / train) if step > 0 and train > 0 else float("nan")
        self.rows.append(row)
        if self.curve_path is not None:
            _append_row(self.curve_path, row)

    def on_step(self, step: int) -> None:
        """Evaluate at multiples of ``eval_every`` inside the budget (the final one follows training)."""
        if step >= self.next_eval:
            if step < self.task["steps"]:
                self.evaluate(step)
            self.next_eval = (step // self.every + 1) * self.every
        if step >= self.next_report:
            self.report(step)
            self.next_report = (step // self.progress_every + 1) * self.progress_every

    def on_episode(self, success: bool | None) -> None:
        """A finished training episode; ``success`` is the env's ``info["is_success"]`` (None: not reported).
        Solved (bsuite's criterion): the first episode where the failed fraction so far is < ``SOLVE_RATIO``."""
        self.episodes += 1
        if success is None:
            return
        self.success_reported = True
        self.failures += not success
        if self.solved_at is None and self.failures / self.episodes < SOLVE_RATIO:
            self.solved_at = self.episodes

    def train_seconds(self) -> float:
        return time.perf_counter() - self.t0 - self.eval_time

    def close(self) -> None:
        self.protocol_eval.close()


def _append_row(path: Path, row: dict[str, Any]) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CURVE_COLUMNS)
        if new:
            w.writeheader()
        w.writerow(row)


def _train_bongdqn(task: dict[str, Any], rec: _Recorder) -> int:
    from bongrl.runner import RunSpec

    spec = RunSpec(env=task["env"], agent="bongdqn", posterior=task["posterior"], exploration=task["exploration"],
                   hyperparameters=task["hyperparameters"], seed=task["seed"], device="cpu", steps=task["steps"],
                   env_kwargs=task["env_kwargs"])
    agent = spec.build_agent()
    rec.bind(agent.evaluation_policies, lambda: (agent.est.mean, agent.avg_theta))
    rec.evaluate(0)

    def callback(a: Any, ev: dict[str, Any]) -> None:
        if ev["kind"] == "episode":
            rec.on_episode(ev.get("is_success"))
        else:
            rec.on_step(ev["step"])

    try:
        agent.learn(task["steps"], callback=callback, callback_every=math.gcd(rec.every, rec.progress_every))
        rec.evaluate(agent.num_timesteps)
    finally:
        rec.extra["rejected_updates"] = agent.rejected_updates
        agent.env.close()
    return agent.num_timesteps


def _train_sb3(task: dict[str, Any], rec: _Recorder) -> int:
    from bongrl.baselines import sb3

    model = sb3.make_model(
        task["agent"], task["env"], task["seed"], task["hyperparameters"], task["env_kwargs"]
    )
    average = sb3.PolyakAverage.of(model, task["agent"], task["polyak_tau"])
    rec.bind(
        lambda: {"online": sb3.predictor(model), "averaged": sb3.predictor(model, average.averaged)},
        lambda: [*average.online.parameters(), *average.averaged.parameters()],
    )
    venv = model.get_env()
    rec.evaluate(0)

    def on_step(m: Any, step: int) -> None:
        rec.on_step(step)

    def on_episode(m: Any, i: int, infos: Any) -> None:
        rec.on_episode(episode_success(infos, i))

    try:
        # the average steps first: an evaluation at step t sees it updated with step t (as BongDQN's)
        model.learn(task["steps"], callback=[sb3.PolyakHook(average), sb3.EvalHook(on_step, on_episode)])
        rec.evaluate(model.num_timesteps)
    finally:
        venv.close()
    return int(model.num_timesteps)


def _result(task: dict[str, Any], status: str, **fields: Any) -> dict[str, Any]:
    from bongrl import runs

    return {
        "task": _signature(task),
        "status": status,
        **fields,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": runs.versions(),
    }


def _failed_result(task: dict[str, Any], rows: list[dict[str, Any]], error: str, tb: str = "") -> dict[str, Any]:
    """The result of a run that raised or died: the error and how far its (kept) partial curve got."""
    return _result(
        task,
        FAILED,
        error=error,
        traceback=tb,
        evaluations=len(rows),
        last_eval_step=int(rows[-1]["step"]) if rows else None,
    )


def _commit(folder: Path, final_dir: Path, result: dict[str, Any]) -> dict[str, Any]:
    """Write ``result.json`` into the scratch ``folder`` and swap it in for ``final_dir``."""
    from bongrl import runs

    runs.write_json(folder / RESULT, result)
    if final_dir.exists():
        shutil.rmtree(final_dir)
    os.replace(folder, final_dir)
    return result


def _scratch(out: Path, task: dict[str, Any]) -> tuple[Path, Path]:
    final_dir = run_dir(Path(out), task["agent"], task["seed"])
    return final_dir.with_name(final_dir.name + ".partial"), final_dir


def run_one(
    task: dict[str, Any], out: str | Path, report: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """Train and evaluate one (agent, seed); write its curve.csv (as it goes) then result.json.

    Returns the result: ``status`` "complete", or "failed" with the ``error`` when training raised (an
    exception, or non-finite weights); a failed run keeps its partial curve. ``KeyboardInterrupt`` propagates
    and leaves the earlier run in ``out`` untouched.
    """
    import traceback

    import torch

    torch.set_num_threads(1)
    task = _signature(task)  # a copy, fixed before training: nothing the agent does to it can leak in
    # Work in a scratch folder and swap it in when done: an interrupted rerun (e.g. after a preset changed)
    # leaves the earlier run untouched.
    folder, final_dir = _scratch(Path(out), task)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    rec: _Recorder | None = None
    try:
        rec = _Recorder(copy.deepcopy(task), report or (lambda step: None), folder / CURVE)
        trainer = _train_bongdqn if task["agent"] == "bongdqn" else _train_sb3
        final_steps = trainer(copy.deepcopy(task), rec)
        train_s = rec.train_seconds()
        last = rec.rows[-1]
        result = _result(
            task,
            COMPLETE,
            final_steps=final_steps,
            final={e: {"mean": last[f"eval_{e}_mean"], "std": last[f"eval_{e}_std"]} for e in EVALS},
            wall_s=last["wall_s"],
            train_s=train_s,
            env_steps_per_s=final_steps / train_s if train_s > 0 else None,
            train_episodes=rec.episodes,
            episodes_to_solve=rec.solved_at,
            success_reported=rec.success_reported,
            **rec.extra,
        )
    except Exception as exc:  # a failed run is a result: recorded, counted, never dropped
        result = _failed_result(task, rec.rows if rec else [], _error_text(exc), traceback.format_exc())
    finally:
        if rec is not None:
            rec.close()
    return _commit(folder, final_dir, result)


def _record_crash(task: dict[str, Any], out: Path, error: str) -> dict[str, Any]:
    """Record ``task`` as failed when its process died or ``run_one`` itself raised, keeping what its scratch
    folder holds (the curve written so far)."""
    folder, final_dir = _scratch(out, task)
    folder.mkdir(parents=True, exist_ok=True)
    curve = folder / CURVE
    rows = _read_curve(curve) if curve.is_file() else []
    return _commit(folder, final_dir, _failed_result(task, rows, error))


# --------------------------------------------------------------------------------- parallel execution
def _worker(task: dict[str, Any], out: str, queue: Any) -> None:
    """One run in its own spawned process; reports ("step", key, step) and, last, ("done", key, result)."""
    import signal

    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops its workers
    torch.set_num_threads(1)
    key = _key(task)
    try:
        queue.put(("done", key, run_one(task, out, lambda step: queue.put(("step", key, step)))))
    except Exception as exc:
        queue.put(("error", key, _error_text(exc)))


def _drain(queue: Any, progress: Callable[[str, int], None], outcomes: dict[str, tuple[str, Any]], wait: float) -> None:
    """Read the workers' messages for up to about ``wait`` seconds (less when the queue runs dry)."""
    import queue as _queue

    deadline = time.monotonic() + wait
    timeout = wait
    while True:
        try:
            kind, key, payload = queue.get(timeout=timeout)
        except _queue.Empty:
            return
        if kind == "step":
            progress(key, payload)
        else:
            outcomes[key] = (kind, payload)
        timeout = max(0.0, deadline - time.monotonic())
        if timeout == 0.0:
            return


def _run_processes(
    pending: list[dict[str, Any]],
    out: Path,
    jobs: int,
    progress: Callable[[str, int], None],
    finished: Callable[[str, dict[str, Any]], None],
    target: Callable[[dict[str, Any], str, Any], None] = _worker,
) -> None:
    """Run every task in its own spawned process, ``jobs`` at a time. A process that dies without a result
    (killed, out of memory, a crash in native code) is recorded as a failed run; the others go on."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    waiting = list(pending)
    running: dict[str, tuple[Any, dict[str, Any]]] = {}
    outcomes: dict[str, tuple[str, Any]] = {}
    try:
        while waiting or running:
            while waiting and len(running) < jobs:
                task = waiting.pop(0)
                proc = ctx.Process(target=target, args=(task, str(out), queue), name=f"compare-{_key(task)}")
                proc.start()
                running[_key(task)] = (proc, task)
            _drain(queue, progress, outcomes, 0.2)
            for key, (proc, task) in list(running.items()):
                if proc.is_alive():
                    continue
                proc.join()
                _drain(queue, progress, outcomes, 0.05)  # its last messages, flushed before it exited
                del running[key]
                kind, payload = outcomes.pop(key, ("died", None))
                if kind == "done":
                    finished(key, payload)
                    continue
                error = payload if kind == "error" else f"worker process died (exit code {proc.exitcode})"
                finished(key, _record_crash(task, out, error))
    finally:
        for proc, _task in running.values():
            proc.terminate()
        for proc, _task in running.values():
            proc.join()


def _say(quiet: bool, msg: str) -> None:
    if quiet:
        return
    from tqdm.auto import tqdm

    tqdm.write(msg)


def _done_line(key: str, res: dict[str, Any]) -> str:
    if res["status"] != COMPLETE:
        n = res.get("evaluations") or 0
        kept = f"after {n} evaluation(s); partial curve kept" if n else "before its first evaluation"
        return f"FAILED {key}: {res['error']} ({kept})"
    extra = ""
    if res.get("success_reported"):
        extra = (
            f", solved at episode {res['episodes_to_solve']}" if res["episodes_to_solve"] else ", unsolved"
        )
    on, avg = res["final"]["online"], res["final"]["averaged"]
    return (
        f"done {key}: final eval online {on['mean']:.2f} ± {on['std']:.2f}, averaged {avg['mean']:.2f} ± "
        f"{avg['std']:.2f} after {res['final_steps']} steps ({res['wall_s']:.0f} s, "
        f"{res['env_steps_per_s']:.0f} env steps/s{extra})"
    )


def run_compare(
    env_id: str,
    steps: int,
    seeds: int | str | Sequence[int],
    agents: str | list[str] = AGENTS,
    out: str | Path | None = None,
    jobs: int = 1,
    eval_every: int | None = None,
    eval_episodes: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
    quiet: bool = False,
    polyak_tau: float = DEFAULT_TAU,
    defaults_only: bool = False,
) -> dict[str, Any]:
    """Run every pending (agent, seed), then :func:`aggregate` (``defaults_only``: see :func:`plan`). With
    ``jobs`` > 1 each run has its own spawned
    process, ``jobs`` at a time; with 1 they run here, one after the other. A failed run does not stop the
    others.

    Returns ``{"out", "ran", "skipped", "failed", "summary"}``; ``failed`` lists ``(key, message)``.
    """
    from bongrl import presets

    preset = presets.get(env_id)
    eval_every = int(
        eval_every if eval_every is not None else preset.get("eval_every") or max(1, steps // 10)
    )
    eval_episodes = int(eval_episodes if eval_episodes is not None else preset.get("eval_episodes", 10))
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise CompareError(f"--jobs must be a positive integer, got {jobs!r}")
    tasks, _threshold = plan(
        env_id, steps, seeds, agents, eval_every, eval_episodes, env_kwargs, overrides, polyak_tau, defaults_only
    )
    out = _compare_dir(Path(out) if out is not None else default_out(env_id, env_kwargs), tasks)
    out.mkdir(parents=True, exist_ok=True)
    pending = [t for t in tasks if not is_complete(out, t)]
    skipped = [_key(t) for t in tasks if t not in pending]
    if skipped:
        _say(quiet, f"resume: {len(skipped)} finished run(s) in {out} skipped ({', '.join(skipped)})")
    for t in pending:
        _say_earlier(quiet, out, t)
    _say(quiet, f"compare {env_id} {steps} steps: {len(pending)} run(s) to do, {jobs} at a time -> {out}")
    failed: list[tuple[str, str]] = []
    ran: list[str] = []
    from bongrl.progress import progress as _progress

    bar = _progress(steps * len(pending), "step", enabled=not quiet and bool(pending))
    seen: dict[str, int] = {}

    def progress(key: str, step: int) -> None:
        step = min(step, steps)
        bar.update(step - seen.get(key, 0))
        seen[key] = step
        bar.set_postfix(runs=f"{len(ran) + len(failed)}/{len(pending)} done")

    def finished(key: str, res: dict[str, Any]) -> None:
        progress(key, steps)
        if res["status"] == COMPLETE:
            ran.append(key)
        else:
            failed.append((key, res["error"]))
            if os.environ.get("BONGRL_DEBUG"):
                print(res.get("traceback", ""), file=sys.stderr)
        _say(quiet, _done_line(key, res))
        bar.set_postfix(runs=f"{len(ran) + len(failed)}/{len(pending)} done")

    try:
        if jobs == 1 or len(pending) <= 1:
            for task in pending:
                key = _key(task)
                try:
                    res = run_one(task, out, lambda step, key=key: progress(key, step))
                except Exception as exc:  # outside training (e.g. the disk): still a recorded failure
                    res = _record_crash(task, out, _error_text(exc))
                finished(key, res)
        elif pending:
            _run_processes(pending, out, jobs, progress, finished)
    finally:
        bar.close()
    summary = aggregate(
        out,
        env_id=env_id,
        steps=steps,
        eval_every=eval_every,
        eval_episodes=eval_episodes,
        env_kwargs=env_kwargs or {},
        polyak_tau=float(polyak_tau),
    )
    return {"out": out, "ran": ran, "skipped": skipped, "failed": failed, "summary": summary}


def _say_earlier(quiet: bool, out: Path, task: dict[str, Any]) -> None:
    """Say why a run that already has a result in ``out`` runs again (it failed; :func:`_compare_dir` never picks
    a directory where it ran with other settings)."""
    res = _read_result(out, task)
    if res is not None and res.get("status") == FAILED:
        _say(quiet, f"{_key(task)}: failed earlier ({res.get('error')}); retrying")


def _compare_dir(base: Path, tasks: list[dict[str, Any]]) -> Path:
    """Where this comparison goes: ``base`` when it is new, empty or resumable by ``tasks``
    (:func:`~bongrl.compare.plan.plan_conflict`), else the first such ``base_1``, ``base_2``, ... (one line says
    why): another comparison's files are never replaced."""
    from bongrl import runs

    out = runs.free_dir(base, lambda d: not plan_conflict(d, tasks))
    if out != base:
        print(f"compare: {base} cannot take this comparison ({plan_conflict(base, tasks)}); writing to {out}",
              flush=True)
    return out


def default_out(env_id: str, env_kwargs: dict[str, Any] | None = None) -> Path:
    name = env_id.split("/")[-1]
    for k, v in sorted((env_kwargs or {}).items()):
        name += f"-{k}{v}"
    return Path("runs") / f"compare_{name}"  # results/ keeps published summaries only (scripts/pack_results.py)
