"""``bongrl compare``: BongDQN against stable-baselines3 baselines under one evaluation protocol.

Every (agent, seed) run trains on the same env for the same budget; every ``eval_every`` env steps (and at
step 0 and after training) it is evaluated with :func:`bongrl.envs.wrappers.evaluate`: ``eval_episodes``
deterministic episodes on a separate eval env whose episode ``i`` is reset with seed
``10_000 + 1_000 * seed + i`` — the same
for every agent, and the same as ``bongrl train``'s periodic evaluation. Wall time counts training and
evaluation; ``env_steps_per_s`` is env steps over training time only (evaluation excluded).

Agents: ``bongdqn`` (its preset, :func:`bongrl.presets.get`), ``dqn`` / ``ppo`` (stable-baselines3) and
``qrdqn`` (sb3-contrib) with rl-baselines3-zoo hyperparameters (``bongrl/data/zoo_presets.json``).

Layout of the output directory::

    DIR/per_run/<agent>-s<seed>/curve.csv    one row per evaluation of that run
    DIR/per_run/<agent>-s<seed>/result.json  written last: marks the run complete (resume skips it when its
                                           settings match) and holds its settings and summary numbers
    DIR/compare.csv                        agent, seed, step, eval_mean, eval_std, wall_s, env_steps_per_s
    DIR/summary.md / summary.json          per agent: final eval, steps to the reward threshold, AUC, steps/s
    DIR/learning_curves.png                mean eval return over seeds (± 1 std band), one line per agent

On ``bongrl/DeepSea-v0`` each run also records episodes to solve (bsuite: the first training episode where
``total_bad_episodes / episode < 0.9``).
"""

from __future__ import annotations

import copy
import csv
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bongrl.envs.wrappers import eval_seed

__all__ = ["AGENTS", "CompareError", "aggregate", "plan", "run_compare"]

AGENTS = ("bongdqn", "dqn", "qrdqn", "ppo")
COLUMNS = ["agent", "seed", "step", "eval_mean", "eval_std", "wall_s", "env_steps_per_s"]
RESULT = "result.json"
RUNS = "per_run"  # not "runs/": that name is git-ignored (bongrl train's run directories)
CURVE = "curve.csv"
DEEPSEA = "bongrl/DeepSea-v0"
SOLVE_RATIO = 0.9


class CompareError(ValueError):
    """Bad compare settings (the CLI reports it on one line and exits 2)."""


# ------------------------------------------------------------------------------------------- planning
def _check_env(env_id: str, env_kwargs: dict[str, Any]) -> Any:
    import gymnasium as gym

    import bongrl.envs  # noqa: F401
    from bongrl.envs.wrappers import make_env

    if env_id not in gym.registry:
        import difflib

        close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise CompareError(
            f"unknown environment id {env_id!r}; {hint}e.g. CartPole-v1, MountainCar-v0, Acrobot-v1, "
            f"LunarLander-v3, {DEEPSEA}"
        )
    try:
        env = make_env(env_id, **env_kwargs)
    except Exception as exc:
        raise CompareError(f"cannot make {env_id} with {env_kwargs}: {type(exc).__name__}: {exc}") from exc
    try:
        if not isinstance(env.action_space, gym.spaces.Discrete):
            raise CompareError(f"{env_id} has action space {env.action_space}; compare needs a Discrete one")
        return env.spec.reward_threshold if env.spec is not None else None
    finally:
        env.close()


def parse_agents(text: str | list[str]) -> list[str]:
    names = [a.strip().lower() for a in (text.split(",") if isinstance(text, str) else text) if a.strip()]
    bad = [a for a in names if a not in AGENTS]
    if bad or not names:
        raise CompareError(
            f"unknown agent(s) {', '.join(repr(b) for b in bad) or '(none given)'} in --agents; "
            f"choose a comma-separated subset of {','.join(AGENTS)}"
        )
    return list(dict.fromkeys(names))


def _bongdqn_settings(env_id: str, overrides: dict[str, Any]) -> dict[str, Any]:
    import dataclasses

    from bongrl import presets
    from bongrl.agents.bong_dqn import BongDQNConfig

    preset = presets.get(env_id)
    if preset.get("agent", "bongdqn") != "bongdqn":
        raise CompareError(f"{env_id}'s bongrl preset is for the {preset.get('agent')!r} agent, not bongdqn")
    over = dict(overrides)
    posterior = over.pop("posterior", preset.get("posterior", "dlr"))
    exploration = over.pop("exploration", preset.get("exploration", "thompson"))
    hyper = {**preset.get("hyperparameters", {}), **over}
    valid = {f.name for f in dataclasses.fields(BongDQNConfig)}
    unknown = sorted(set(hyper) - valid)
    if unknown:
        raise CompareError(
            f"unknown bongdqn hyperparameter(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}, "
            "posterior, exploration"
        )
    from bongrl.agents.base import config_from_kwargs

    try:
        config_from_kwargs(BongDQNConfig, hyper, "bongdqn")
    except (TypeError, ValueError) as exc:
        raise CompareError(f"bad bongdqn hyperparameter value: {exc}") from exc
    from bongrl import registry

    registry.load("posterior", posterior)  # an unknown name: a one-line PluginError listing the known ones
    registry.load("exploration", exploration)
    return {"posterior": posterior, "exploration": exploration, "hyperparameters": hyper}


def _agent_settings(agent: str, env_id: str, overrides: dict[str, Any]) -> dict[str, Any]:
    if agent == "bongdqn":
        return _bongdqn_settings(env_id, overrides)
    from bongrl.baselines import sb3

    try:
        sb3.check_overrides(agent, overrides)
        return {"hyperparameters": sb3.resolved(agent, env_id, overrides)}
    except ValueError as exc:
        raise CompareError(str(exc)) from exc


def plan(
    env_id: str,
    steps: int,
    seeds: int | list[int],
    agents: list[str],
    eval_every: int,
    eval_episodes: int,
    env_kwargs: dict[str, Any] | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> tuple[list[dict[str, Any]], float | None]:
    """One task dict per (agent, seed), fully resolved (these dicts are the runs' resume signatures)."""
    env_kwargs = dict(env_kwargs or {})
    for name, value in (("steps", steps), ("eval-every", eval_every), ("eval-episodes", eval_episodes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise CompareError(f"--{name} must be a positive integer, got {value!r}")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise CompareError("--seeds must be a positive integer")
    agents = parse_agents(agents)
    overrides = dict(overrides or {})
    stray = sorted(set(overrides) - set(agents))
    if stray:
        raise CompareError(
            f"--set names agent(s) {', '.join(stray)} that are not in --agents {','.join(agents)}"
        )
    threshold = _check_env(env_id, env_kwargs)
    tasks = []
    for agent in agents:
        settings = _agent_settings(agent, env_id, overrides.get(agent, {}))
        for seed in seed_list:
            tasks.append(
                {
                    "agent": agent,
                    "seed": seed,
                    "env": env_id,
                    "env_kwargs": env_kwargs,
                    "steps": steps,
                    "eval_every": eval_every,
                    "eval_episodes": eval_episodes,
                    "eval_seed": eval_seed(seed),
                    **settings,
                }
            )
    return tasks, threshold


def run_dir(out: Path, agent: str, seed: int) -> Path:
    return Path(out) / RUNS / f"{agent}-s{seed}"


def _signature(task: dict[str, Any]) -> dict[str, Any]:
    import json

    return json.loads(json.dumps(task))  # normalised (tuples -> lists) for comparison with the JSON on disk


def is_complete(out: Path, task: dict[str, Any]) -> bool:
    """True when ``out`` holds a finished run with exactly ``task``'s settings."""
    from bongrl import runs

    path = run_dir(out, task["agent"], task["seed"]) / RESULT
    if not path.is_file() or not (path.parent / CURVE).is_file():
        return False
    try:
        return runs.read_json(path).get("task") == _signature(task)
    except (OSError, ValueError):
        return False


def _changed_settings(out: Path, task: dict[str, Any]) -> str:
    """Which settings of a finished run in ``out`` differ from ``task`` ('' when none finished)."""
    from bongrl import runs

    path = run_dir(out, task["agent"], task["seed"]) / RESULT
    try:
        old = runs.read_json(path)["task"]
    except (OSError, ValueError, KeyError):
        return ""
    new = _signature(task)
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if "hyperparameters" in keys:
        oh, nh = old.get("hyperparameters") or {}, new.get("hyperparameters") or {}
        keys.remove("hyperparameters")
        keys += [f"hyperparameters.{k}" for k in sorted(set(oh) | set(nh)) if oh.get(k) != nh.get(k)]
    return ", ".join(keys)


# ------------------------------------------------------------------------------------------- one run
class _Recorder:
    """The shared evaluation protocol, wall clock and progress reports of one run."""

    def __init__(self, task: dict[str, Any], report: Callable[[int], None]) -> None:
        from bongrl.envs.wrappers import ProtocolEval

        self.task = task
        self.every = int(task["eval_every"])
        self.protocol_eval = ProtocolEval(task["env"], task["eval_episodes"], task["eval_seed"], **task["env_kwargs"])
        self.rows: list[dict[str, Any]] = []
        self.report = report
        self.progress_every = max(1, min(self.every, 1_000))
        self.next_eval = self.every
        self.next_report = self.progress_every
        self.eval_time = 0.0
        self.t0 = time.perf_counter()
        self.episodes = 0
        self.solved_at: int | None = None

    def evaluate(self, policy: Any, step: int) -> None:
        t = time.perf_counter()
        res = self.protocol_eval(policy)
        now = time.perf_counter()
        self.eval_time += now - t
        wall = now - self.t0
        train = wall - self.eval_time
        self.rows.append(
            {
                "step": int(step),
                "eval_mean": res["mean"],
                "eval_std": res["std"],
                "wall_s": wall,
                "env_steps_per_s": (step / train) if step > 0 and train > 0 else float("nan"),
            }
        )

    def on_step(self, policy: Any, step: int) -> None:
        """Evaluate at multiples of ``eval_every`` inside the budget (the final one follows training)."""
        if step >= self.next_eval:
            if step < self.task["steps"]:
                self.evaluate(policy, step)
            self.next_eval = (step // self.every + 1) * self.every
        if step >= self.next_report:
            self.report(step)
            self.next_report = (step // self.progress_every + 1) * self.progress_every

    def on_episode(self, total_bad: int | None) -> None:
        self.episodes += 1
        if total_bad is not None and self.solved_at is None and total_bad / self.episodes < SOLVE_RATIO:
            self.solved_at = self.episodes

    def train_seconds(self) -> float:
        return time.perf_counter() - self.t0 - self.eval_time


def _total_bad(vec_env: Any) -> int | None:
    """Summed ``total_bad_episodes`` of a (gymnasium or SB3) vector env's sub-envs; None for other envs."""
    envs = getattr(vec_env, "envs", None)
    if envs is None:
        return None
    total = 0
    for e in envs:
        value = getattr(e.unwrapped, "total_bad_episodes", None)
        if value is None:
            return None
        total += int(value)
    return total


def _train_bongdqn(task: dict[str, Any], rec: _Recorder) -> int:
    import math as _math

    import gymnasium as gym

    from bongrl.agents.bong_dqn import BongDQN

    hyper = task["hyperparameters"]
    env: Any = task["env"]
    if task["env_kwargs"]:
        env = gym.make_vec(
            task["env"],
            num_envs=int(hyper.get("num_envs", 1)),
            vectorization_mode="sync",
            vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
            **task["env_kwargs"],
        )
    agent = BongDQN(
        env,
        posterior=task["posterior"],
        exploration=task["exploration"],
        seed=task["seed"],
        device="cpu",
        **hyper,
    )
    deep = task["env"] == DEEPSEA
    rec.evaluate(agent, 0)

    def callback(a: BongDQN, ev: dict[str, Any]) -> None:
        if ev["kind"] == "episode":
            rec.on_episode(_total_bad(a.env) if deep else None)
        else:
            rec.on_step(a, ev["step"])

    agent.learn(task["steps"], callback=callback, callback_every=_math.gcd(rec.every, rec.progress_every))
    rec.evaluate(agent, agent.num_timesteps)
    return agent.num_timesteps


def _train_sb3(task: dict[str, Any], rec: _Recorder) -> int:
    from bongrl.baselines import sb3

    model = sb3.make_model(
        task["agent"], task["env"], task["seed"], task["hyperparameters"], task["env_kwargs"]
    )
    deep = task["env"] == DEEPSEA
    venv = model.get_env()
    rec.evaluate(sb3.predictor(model), 0)

    def on_step(m: Any, step: int) -> None:
        rec.on_step(sb3.predictor(m), step)

    def on_episode(m: Any, i: int) -> None:
        rec.on_episode(_total_bad(getattr(venv, "venv", venv)) if deep else None)

    model.learn(task["steps"], callback=sb3.EvalHook(on_step, on_episode))
    rec.evaluate(sb3.predictor(model), model.num_timesteps)
    return int(model.num_timesteps)


def run_one(
    task: dict[str, Any], out: str | Path, report: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """Train and evaluate one (agent, seed); write its curve.csv then result.json (the completion marker)."""
    import torch

    from bongrl import runs

    torch.set_num_threads(1)
    signature = _signature(task)  # before training: nothing the agent does to its settings can leak in
    task = copy.deepcopy(task)
    final_dir = run_dir(Path(out), task["agent"], task["seed"])
    # Work in a scratch folder and swap it in when complete: an interrupted rerun (e.g. after a preset changed)
    # leaves the earlier finished run untouched.
    folder = final_dir.with_name(final_dir.name + ".partial")
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    rec = _Recorder(task, report or (lambda step: None))
    trainer = _train_bongdqn if task["agent"] == "bongdqn" else _train_sb3
    final_steps = trainer(task, rec)
    train_s = rec.train_seconds()
    tmp = folder / (CURVE + ".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["step", "eval_mean", "eval_std", "wall_s", "env_steps_per_s"])
        w.writeheader()
        w.writerows(rec.rows)
    os.replace(tmp, folder / CURVE)
    result = {
        "task": signature,
        "final_steps": final_steps,
        "final_eval_mean": rec.rows[-1]["eval_mean"],
        "final_eval_std": rec.rows[-1]["eval_std"],
        "wall_s": rec.rows[-1]["wall_s"],
        "train_s": train_s,
        "env_steps_per_s": final_steps / train_s if train_s > 0 else None,
        "train_episodes": rec.episodes,
        "episodes_to_solve": rec.solved_at,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": runs.versions(),
    }
    runs.write_json(folder / RESULT, result)
    if final_dir.exists():
        shutil.rmtree(final_dir)
    os.replace(folder, final_dir)
    return result


# --------------------------------------------------------------------------------- parallel execution
_QUEUE: Any = None


def _init_worker(queue: Any) -> None:
    global _QUEUE
    import torch

    torch.set_num_threads(1)
    _QUEUE = queue


def _worker(task: dict[str, Any], out: str) -> dict[str, Any]:
    key = f"{task['agent']}-s{task['seed']}"
    try:
        result = run_one(task, out, lambda step: _QUEUE.put((key, step)))
        return {"key": key, "result": result}
    except Exception as exc:  # reported by the parent on one line; the other runs go on
        import traceback

        return {
            "key": key,
            "error": f"{type(exc).__name__}: {' '.join(str(exc).split())}",
            "traceback": traceback.format_exc(),
        }


def _say(quiet: bool, msg: str) -> None:
    if quiet:
        return
    from tqdm.auto import tqdm

    tqdm.write(msg)


def _done_line(key: str, res: dict[str, Any]) -> str:
    extra = ""
    if res.get("episodes_to_solve") is not None or res["task"]["env"] == DEEPSEA:
        extra = (
            f", solved at episode {res['episodes_to_solve']}" if res["episodes_to_solve"] else ", unsolved"
        )
    return (
        f"done {key}: final eval {res['final_eval_mean']:.2f} ± {res['final_eval_std']:.2f} after "
        f"{res['final_steps']} steps ({res['wall_s']:.0f} s, {res['env_steps_per_s']:.0f} env steps/s{extra})"
    )


def run_compare(
    env_id: str,
    steps: int,
    seeds: int | list[int],
    agents: str | list[str] = AGENTS,
    out: str | Path | None = None,
    jobs: int = 1,
    eval_every: int | None = None,
    eval_episodes: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Run every pending (agent, seed), ``jobs`` at a time in spawned processes, then :func:`aggregate`.

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
        env_id, steps, seeds, parse_agents(agents), eval_every, eval_episodes, env_kwargs, overrides
    )
    out = Path(out) if out is not None else default_out(env_id, env_kwargs)
    out.mkdir(parents=True, exist_ok=True)
    pending = [t for t in tasks if not is_complete(out, t)]
    skipped = [f"{t['agent']}-s{t['seed']}" for t in tasks if t not in pending]
    if skipped:
        _say(quiet, f"resume: {len(skipped)} finished run(s) in {out} skipped ({', '.join(skipped)})")
    for t in pending:
        changed = _changed_settings(out, t)
        if changed:
            _say(quiet, f"{t['agent']}-s{t['seed']}: finished earlier with other settings ({changed}); rerunning "
                 "(the earlier run is replaced only when the new one completes)")
    _say(quiet, f"compare {env_id} {steps} steps: {len(pending)} run(s) to do, {jobs} at a time -> {out}")
    failed: list[tuple[str, str]] = []
    ran: list[str] = []
    bar = None
    if not quiet and pending:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps * len(pending), unit="step", dynamic_ncols=True, desc="compare")
    seen: dict[str, int] = {}

    def progress(key: str, step: int) -> None:
        if bar is None:
            return
        step = min(step, steps)
        bar.update(step - seen.get(key, 0))
        seen[key] = step
        bar.set_postfix_str(f"runs {len(ran) + len(failed)}/{len(pending)} done")

    def finished(msg: dict[str, Any]) -> None:
        key = msg["key"]
        progress(key, steps)
        if "error" in msg:
            failed.append((key, msg["error"]))
            _say(quiet, f"FAILED {key}: {msg['error']}")
            if os.environ.get("BONGRL_DEBUG"):
                print(msg.get("traceback", ""), file=sys.stderr)
        else:
            ran.append(key)
            _say(quiet, _done_line(key, msg["result"]))
        if bar is not None:
            bar.set_postfix_str(f"runs {len(ran) + len(failed)}/{len(pending)} done")

    try:
        if jobs == 1 or len(pending) <= 1:
            for task in pending:
                key = f"{task['agent']}-s{task['seed']}"
                try:
                    res = run_one(task, out, lambda step, key=key: progress(key, step))
                    finished({"key": key, "result": res})
                except (KeyboardInterrupt, SystemExit):
                    raise
                except Exception as exc:
                    import traceback

                    finished(
                        {
                            "key": key,
                            "error": f"{type(exc).__name__}: {' '.join(str(exc).split())}",
                            "traceback": traceback.format_exc(),
                        }
                    )
        elif pending:
            _run_pool(pending, out, jobs, progress, finished)
    finally:
        if bar is not None:
            bar.close()
    summary = aggregate(
        out,
        env_id=env_id,
        steps=steps,
        eval_every=eval_every,
        eval_episodes=eval_episodes,
        env_kwargs=env_kwargs or {},
    )
    return {"out": out, "ran": ran, "skipped": skipped, "failed": failed, "summary": summary}


def _run_pool(
    pending: list[dict[str, Any]],
    out: Path,
    jobs: int,
    progress: Callable[[str, int], None],
    finished: Callable[[dict[str, Any]], None],
) -> None:
    import multiprocessing as mp
    import queue as _queue

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    pool = ctx.Pool(min(jobs, len(pending)), initializer=_init_worker, initargs=(q,))
    try:
        handles = [pool.apply_async(_worker, (task, str(out))) for task in pending]
        left = set(range(len(handles)))
        while left:
            try:
                while True:
                    key, step = q.get(timeout=0.2)
                    progress(key, step)
            except _queue.Empty:
                pass
            for i in sorted(left):
                if handles[i].ready():
                    left.discard(i)
                    finished(handles[i].get())
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()


def default_out(env_id: str, env_kwargs: dict[str, Any] | None = None) -> Path:
    name = env_id.split("/")[-1]
    for k, v in sorted((env_kwargs or {}).items()):
        name += f"-{k}{v}"
    return Path("results") / f"compare_{name}"


# ------------------------------------------------------------------------------------------- aggregation
def _read_curve(path: Path) -> list[dict[str, float]]:
    with open(path, newline="") as fh:
        return [
            {k: float(v) if v not in ("", "nan") else float("nan") for k, v in row.items()}
            for row in csv.DictReader(fh)
        ]


def _auc(steps: np.ndarray, values: np.ndarray) -> float:
    """Normalised area under the eval curve: the mean eval return over training (trapezoid rule)."""
    if len(steps) < 2 or steps[-1] <= steps[0]:
        return float(values[-1]) if len(values) else float("nan")
    area = float(np.sum((values[1:] + values[:-1]) * np.diff(steps)) / 2.0)
    return area / float(steps[-1] - steps[0])


def _fmt(x: Any, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def aggregate(
    out: str | Path,
    env_id: str | None = None,
    steps: int | None = None,
    eval_every: int | None = None,
    eval_episodes: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Collect every complete run in ``out`` with the given protocol into compare.csv, summary.md/.json and
    learning_curves.png (runs made with another env, budget or evaluation protocol are left out)."""
    from bongrl import runs

    out = Path(out)
    collected: dict[str, list[tuple[int, dict[str, Any], list[dict[str, float]]]]] = {}
    for res_path in sorted((out / RUNS).glob(f"*/{RESULT}")):
        if res_path.parent.name.endswith(".partial"):
            continue
        try:
            res = runs.read_json(res_path)
            task = res["task"]
        except (OSError, ValueError, KeyError):
            continue
        want = {
            "env": env_id,
            "steps": steps,
            "eval_every": eval_every,
            "eval_episodes": eval_episodes,
            "env_kwargs": env_kwargs,
        }
        if any(v is not None and task.get(k) != v for k, v in want.items()):
            continue
        curve = _read_curve(res_path.parent / CURVE)
        collected.setdefault(task["agent"], []).append((int(task["seed"]), res, curve))
    order = [a for a in AGENTS if a in collected] + sorted(a for a in collected if a not in AGENTS)
    if env_id is None and collected:
        env_id = next(iter(collected.values()))[0][1]["task"]["env"]
    threshold = None
    if env_id is not None:
        import gymnasium as gym

        import bongrl.envs  # noqa: F401

        try:
            threshold = gym.spec(env_id).reward_threshold
        except Exception:  # noqa: BLE001
            threshold = None

    with open(out / "compare.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for agent in order:
            for seed, _res, curve in sorted(collected[agent], key=lambda x: x[0]):
                for row in curve:
                    w.writerow(
                        [
                            agent,
                            seed,
                            int(row["step"]),
                            f"{row['eval_mean']:.6g}",
                            f"{row['eval_std']:.6g}",
                            f"{row['wall_s']:.3f}",
                            f"{row['env_steps_per_s']:.1f}",
                        ]
                    )

    summary: dict[str, Any] = {
        "env": env_id,
        "env_kwargs": env_kwargs,
        "steps": steps,
        "eval_every": eval_every,
        "eval_episodes": eval_episodes,
        "reward_threshold": threshold,
        "agents": {},
    }
    deep = env_id == DEEPSEA
    for agent in order:
        runs_ = sorted(collected[agent], key=lambda x: x[0])
        finals = [r["final_eval_mean"] for _s, r, _c in runs_]
        aucs, to_thr = [], []
        for _s, _r, curve in runs_:
            st = np.array([c["step"] for c in curve])
            ev = np.array([c["eval_mean"] for c in curve])
            aucs.append(_auc(st, ev))
            hit = (
                np.nonzero((ev >= threshold) & (st > 0))[0]
                if threshold is not None
                else np.array([], dtype=int)
            )
            to_thr.append(int(st[hit[0]]) if len(hit) else None)
        reached = [t for t in to_thr if t is not None]
        solve = [r.get("episodes_to_solve") for _s, r, _c in runs_]
        solved = [e for e in solve if e is not None]
        sps = [r["env_steps_per_s"] for _s, r, _c in runs_ if r.get("env_steps_per_s")]
        summary["agents"][agent] = {
            "seeds": [s for s, _r, _c in runs_],
            "final_eval_per_seed": finals,
            "final_eval_mean": float(np.mean(finals)),
            "final_eval_std": float(np.std(finals)),
            "steps_to_threshold_per_seed": to_thr,
            "median_steps_to_threshold": float(np.median(reached)) if reached else None,
            "never_reached": sum(t is None for t in to_thr) if threshold is not None else None,
            "auc_per_seed": aucs,
            "auc_mean": float(np.mean(aucs)),
            "auc_std": float(np.std(aucs)),
            "env_steps_per_s": float(np.mean(sps)) if sps else None,
            "wall_s_per_run": float(np.mean([r["wall_s"] for _s, r, _c in runs_])),
            "hyperparameters": runs_[0][1]["task"].get("hyperparameters"),
            **(
                {
                    "episodes_to_solve_per_seed": solve,
                    "median_episodes_to_solve": float(np.median(solved)) if solved else None,
                    "unsolved": sum(e is None for e in solve),
                    "train_episodes": [r.get("train_episodes") for _s, r, _c in runs_],
                }
                if deep
                else {}
            ),
        }
    runs.write_json(out / "summary.json", summary)
    (out / "summary.md").write_text(_summary_md(summary))
    try:
        _plot(out / "learning_curves.png", order, collected, summary)
    except Exception as exc:  # a plotting failure must not lose the numbers
        print(
            f"bongrl: warning: could not draw learning_curves.png: {' '.join(str(exc).split())}",
            file=sys.stderr,
        )
    return summary


def _summary_md(s: dict[str, Any]) -> str:
    env = s["env"] + (
        f" ({', '.join(f'{k}={v}' for k, v in s['env_kwargs'].items())})" if s.get("env_kwargs") else ""
    )
    thr = s["reward_threshold"]
    lines = [
        f"# compare: {env}",
        "",
        f"Budget {s['steps']} env steps per run; evaluation every {s['eval_every']} steps "
        f"(and at step 0 and after training): {s['eval_episodes']} deterministic episodes on a separate "
        "eval env, episode seeds 10000 + 1000·seed + i for every agent. "
        "Reward threshold (env.spec.reward_threshold): "
        f"{_fmt(thr) if thr is not None else 'none'}.",
        "",
        "| agent | seeds | final eval (mean ± std over seeds) | final eval per seed "
        "| median steps to threshold | never reached | AUC (mean eval over training) | env steps/s "
        "| wall s / run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    values = [abs(x) for a in s["agents"].values() for x in a["final_eval_per_seed"] if math.isfinite(x)]
    dg = 2 if values and max(values) < 10 else 1  # returns like DeepSea's 0.99 need two decimals
    for agent, a in s["agents"].items():
        per_seed = ", ".join(_fmt(x, dg) for x in a["final_eval_per_seed"])
        never = f"{a['never_reached']}/{len(a['seeds'])}" if a["never_reached"] is not None else "n/a"
        lines.append(
            f"| {agent} | {len(a['seeds'])} | "
            f"{_fmt(a['final_eval_mean'], dg)} ± {_fmt(a['final_eval_std'], dg)} | "
            f"{per_seed} | {_fmt(a['median_steps_to_threshold'], 0)} | {never} | {_fmt(a['auc_mean'], dg)} ± "
            f"{_fmt(a['auc_std'], dg)} | {_fmt(a['env_steps_per_s'], 0)} | {_fmt(a['wall_s_per_run'], 0)} |"
        )
    if s["env"] == DEEPSEA:
        lines += [
            "",
            "Episodes to solve (bsuite: first training episode where total_bad_episodes / episode < 0.9):",
            "",
            "| agent | episodes to solve per seed | median (solved seeds) | unsolved "
            "| training episodes per run |",
            "|---|---|---|---|---|",
        ]
        for agent, a in s["agents"].items():
            per = ", ".join("unsolved" if e is None else str(e) for e in a["episodes_to_solve_per_seed"])
            lines.append(
                f"| {agent} | {per} | {_fmt(a['median_episodes_to_solve'], 0)} | "
                f"{a['unsolved']}/{len(a['seeds'])} | {', '.join(str(e) for e in a['train_episodes'])} |"
            )
    lines += [
        "",
        "Steps to threshold: first evaluation after step 0 whose mean return ≥ the threshold "
        "(resolution: the eval interval; the untrained policy's score does not count); "
        "the median is over the seeds that reached it. AUC: trapezoid area under the eval curve divided by "
        "the steps it spans. env steps/s: training env steps over training wall time (evaluation "
        "excluded), one torch thread per run.",
        "",
    ]
    return "\n".join(lines)


def _plot(path: Path, order: list[str], collected: dict[str, Any], summary: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for agent in order:
        runs_ = collected[agent]
        grid = np.array([c["step"] for c in runs_[0][2]])
        ys = np.array(
            [
                np.interp(grid, [c["step"] for c in curve], [c["eval_mean"] for c in curve])
                for _s, _r, curve in runs_
            ]
        )
        mean, std = ys.mean(0), ys.std(0)
        (line,) = ax.plot(grid, mean, label=f"{agent} (n={len(runs_)})")
        lo, hi = np.maximum(mean - std, ys.min(0)), np.minimum(mean + std, ys.max(0))  # within the seed range
        ax.fill_between(grid, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    thr = summary.get("reward_threshold")
    if thr is not None:
        ax.axhline(thr, color="grey", linestyle="--", linewidth=1, label=f"threshold {thr:g}")
    ax.set_xlabel("env steps")
    ax.set_ylabel("deterministic eval return")
    env = summary.get("env") or ""
    ax.set_title(f"{env}: mean over seeds, band ± 1 std (clipped to the seeds' range)")
    ax.legend(loc="best", fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
