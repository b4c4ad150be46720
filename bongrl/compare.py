"""``bongrl compare``: BongDQN against stable-baselines3 baselines under one evaluation protocol.

Every (agent, seed) run trains on the same env for the same budget; every ``eval_every`` env steps (and at
step 0 and after training) it is evaluated with :func:`bongrl.envs.wrappers.evaluate`: ``eval_episodes``
deterministic episodes on a separate eval env whose episode ``i`` is reset with seed
``10_000 + 1_000 * seed + i`` — the same
for every agent, and the same as ``bongrl train``'s periodic evaluation. Wall time counts training and
evaluation; ``env_steps_per_s`` is env steps over training time only (evaluation excluded).

Two policies of every run are evaluated at every evaluation point, on the same episodes:

* ``online`` (the headline): the weights being trained — BongDQN's posterior mean, the SB3 model's current
  network;
* ``averaged``: an exponential moving average of those weights, θ̄ ← (1 − τ) θ̄ + τ θ after every vectorised
  env step, with one τ (``polyak_tau``) for every agent — BongDQN's ``polyak_eval``; for SB3 a
  :class:`bongrl.baselines.sb3.PolyakAverage` of DQN's Q-network, QR-DQN's quantile network or PPO's policy.

Agents: ``bongdqn`` (its preset, :func:`bongrl.presets.get`), ``dqn`` / ``ppo`` (stable-baselines3) and
``qrdqn`` (sb3-contrib) with rl-baselines3-zoo hyperparameters (``bongrl/data/zoo_presets.json``).

Seeds are explicit (:func:`parse_seeds`); the summary flags every agent whose run seeds overlap the seeds its
preset was tuned on (the ``tuned_seeds`` of :mod:`bongrl.presets`; the zoo presets count as tuned on none).

A run that raises (or whose weights become non-finite) is recorded as *failed*: its partial curve and the
error are kept in its folder and it is counted, never dropped, in every table. The other runs go on (with
``jobs`` > 1 each run has its own process, so even a process that dies is recorded as failed).

Layout of the output directory::

    DIR/per_run/<agent>-s<seed>/curve.csv    one row per evaluation of that run (written as it trains)
    DIR/per_run/<agent>-s<seed>/result.json  written last: status (complete / failed, with the error), its
                                           settings and summary numbers; resume skips complete runs whose
                                           settings match and retries failed ones
    DIR/compare.csv                        one row per (agent, seed, evaluation): see COLUMNS
    DIR/summary.md / summary.json          per agent and evaluation column: final eval, mean of the last three
                                           evals, AUC, steps to the reward threshold, failed runs; steps/s
    DIR/learning_curves.png                mean eval return over seeds: online solid (± 1 std band),
                                           averaged dashed, one colour per agent

On ``bongrl/DeepSea-v0`` each run also records episodes to solve (bsuite: the first training episode where
``total_bad_episodes / episode < 0.9``).
"""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bongrl.envs.wrappers import eval_seed

__all__ = [
    "AGENTS",
    "CompareError",
    "aggregate",
    "parse_seeds",
    "plan",
    "run_compare",
    "run_one",
    "seeds_text",
    "tuned_seeds",
]

AGENTS = ("bongdqn", "dqn", "qrdqn", "ppo")
#: the evaluation columns: the headline first
EVALS = ("online", "averaged")
#: per-run curve.csv; ``eval_mean`` / ``eval_std`` repeat the online (headline) column for older readers
CURVE_COLUMNS = [
    "step",
    "eval_mean",
    "eval_std",
    *(f"eval_{e}_{m}" for e in EVALS for m in ("mean", "std")),
    "wall_s",
    "env_steps_per_s",
]
COLUMNS = ["agent", "seed", "status", *CURVE_COLUMNS]
RESULT = "result.json"
RUNS = "per_run"  # not "runs/": that name is git-ignored (bongrl train's run directories)
CURVE = "curve.csv"
DEEPSEA = "bongrl/DeepSea-v0"
SOLVE_RATIO = 0.9
DEFAULT_TAU = 1e-3
COMPLETE, FAILED = "complete", "failed"
_SEEDS_FORMS = "N (seeds 0..N-1), a list like 100,101, a range like 100-109, or a mix like 0-2,100"
_MAX_SEEDS = 10_000


class CompareError(ValueError):
    """Bad compare settings (the CLI reports it on one line and exits 2)."""


def _error_text(exc: BaseException) -> str:
    """``Type: message`` on one line (how failed runs are reported and recorded)."""
    from bongrl.errors import one_line as _one_line

    return f"{type(exc).__name__}: {_one_line(exc)}"


def _key(task: dict[str, Any]) -> str:
    return f"{task['agent']}-s{task['seed']}"


# ------------------------------------------------------------------------------------------- seeds
def parse_seeds(value: int | str | Sequence[int]) -> list[int]:
    """The sorted, distinct seeds of ``--seeds``: an int N (seeds 0..N-1, also as the text ``"N"``), or text
    of comma-separated seeds and inclusive ranges (``"100,101"``, ``"100-109"``, ``"0-2,100"``), or a list of
    seeds. :class:`CompareError` (one line) for anything else."""
    if isinstance(value, bool):
        raise CompareError(f"--seeds must be {_SEEDS_FORMS}; got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise CompareError(
                f"--seeds {value}: a bare number N means seeds 0..N-1 and must be >= 1 (seed 0 alone: 0-0)"
            )
        return list(range(_check_count(value)))
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return parse_seeds(int(text))
        return _sorted_seeds(s for part in text.split(",") for s in _seed_part(part, value))
    seeds = list(value)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0 for s in seeds):
        raise CompareError(f"--seeds must be a non-empty list of non-negative integers, got {value!r}")
    return _sorted_seeds(int(s) for s in seeds)


def _check_count(n: int) -> int:
    if n > _MAX_SEEDS:
        raise CompareError(f"--seeds asks for {n} seeds; at most {_MAX_SEEDS}")
    return n


def _seed_part(part: str, whole: str) -> range:
    m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
    if m is None:
        raise CompareError(f"--seeds: cannot read {part.strip()!r} in {whole!r}; use {_SEEDS_FORMS}")
    lo = int(m[1])
    hi = int(m[2]) if m[2] is not None else lo
    if hi < lo:
        raise CompareError(f"--seeds: the range {part.strip()!r} runs backwards; write it as {hi}-{lo}")
    _check_count(hi - lo + 1)
    return range(lo, hi + 1)


def _sorted_seeds(seeds: Iterable[int]) -> list[int]:
    out = sorted(set(seeds))
    return out[: _check_count(len(out))]


def seeds_text(seeds: Iterable[int]) -> str:
    """Seeds for display, runs of consecutive seeds as ranges (``[0, 1, 2, 7]`` -> ``0-2,7``)."""
    parts: list[str] = []
    ordered = sorted(set(int(s) for s in seeds))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def tuned_seeds(agent: str, env_id: str, defaults_only: bool = False) -> list[int]:
    """Seeds ``agent``'s preset for ``env_id`` was tuned on: the bongrl preset's ``tuned_seeds`` (with
    ``defaults_only``, those the class defaults were chosen on); none for the rl-zoo presets of the SB3 baselines
    (tuned by the zoo on its own seeds, not on ours)."""
    if agent != "bongdqn":
        return []
    from bongrl import presets

    preset = presets.generic() if defaults_only else presets.get(env_id)
    return [int(s) for s in preset.get("tuned_seeds", [])]


def _check_tau(tau: Any) -> float:
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not 0.0 < float(tau) < 1.0:
        raise CompareError(f"--polyak-tau must be a number in (0, 1), got {tau!r}")
    return float(tau)


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


def _bongdqn_settings(
    env_id: str, overrides: dict[str, Any], tau: float, defaults_only: bool = False
) -> dict[str, Any]:
    """BongDQN's preset (the class defaults with ``defaults_only``) with ``overrides``, validated; ``polyak_eval``
    is compare's one averaging rate ``tau``."""
    import dataclasses

    from bongrl import presets
    from bongrl.agents.bong_dqn import BongDQNConfig

    preset = presets.generic() if defaults_only else presets.get(env_id)
    if preset.get("agent", "bongdqn") != "bongdqn":
        raise CompareError(f"{env_id}'s bongrl preset is for the {preset.get('agent')!r} agent, not bongdqn")
    over = dict(overrides)
    posterior = over.pop("posterior", preset.get("posterior", "dlr"))
    exploration = over.pop("exploration", preset.get("exploration", "thompson"))
    if "polyak_eval" in over and over["polyak_eval"] != tau:
        raise CompareError(
            f"bongdqn.polyak_eval={over['polyak_eval']!r} differs from --polyak-tau {tau:g}: the averaged "
            "evaluation uses one rate for every agent; set it with --polyak-tau"
        )
    hyper = {**preset.get("hyperparameters", {}), **over, "polyak_eval": tau}
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
    return {"posterior": posterior, "exploration": exploration, "hyperparameters": hyper,
            "defaults_only": defaults_only}


def _agent_settings(
    agent: str, env_id: str, overrides: dict[str, Any], tau: float, defaults_only: bool = False
) -> dict[str, Any]:
    if agent == "bongdqn":
        return _bongdqn_settings(env_id, overrides, tau, defaults_only)
    from bongrl.baselines import sb3

    try:
        sb3.check_overrides(agent, overrides)
        return {"hyperparameters": sb3.resolved(agent, env_id, overrides, sb3_defaults=defaults_only)}
    except ValueError as exc:
        raise CompareError(str(exc)) from exc


def plan(
    env_id: str,
    steps: int,
    seeds: int | str | Sequence[int],
    agents: str | list[str],
    eval_every: int,
    eval_episodes: int,
    env_kwargs: dict[str, Any] | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
    polyak_tau: float = DEFAULT_TAU,
    defaults_only: bool = False,
) -> tuple[list[dict[str, Any]], float | None]:
    """One task dict per (agent, seed), fully resolved (these dicts are the runs' resume signatures).

    ``defaults_only``: BongDQN from its class defaults (no bongrl preset), and the SB3 agents from the rl-zoo
    preset where one exists, SB3's own defaults otherwise (scripts/generalization.py)."""
    env_kwargs = dict(env_kwargs or {})
    for name, value in (("steps", steps), ("eval-every", eval_every), ("eval-episodes", eval_episodes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise CompareError(f"--{name} must be a positive integer, got {value!r}")
    seed_list = parse_seeds(seeds)
    tau = _check_tau(polyak_tau)
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
        settings = _agent_settings(agent, env_id, overrides.get(agent, {}), tau, defaults_only)
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
                    "polyak_tau": tau,
                    **settings,
                }
            )
    return tasks, threshold


def run_dir(out: Path, agent: str, seed: int) -> Path:
    return Path(out) / RUNS / f"{agent}-s{seed}"


def _signature(task: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(task))  # normalised (tuples -> lists) for comparison with the JSON on disk


def _read_result(out: Path, task: dict[str, Any]) -> dict[str, Any] | None:
    """The result.json of ``task``'s (agent, seed) folder in ``out`` (None when absent or unreadable)."""
    from bongrl import runs

    path = run_dir(out, task["agent"], task["seed"]) / RESULT
    try:
        res = runs.read_json(path)
    except (OSError, ValueError):
        return None
    return res if isinstance(res, dict) else None


def is_complete(out: Path, task: dict[str, Any]) -> bool:
    """True when ``out`` holds a complete (not failed) run with exactly ``task``'s settings."""
    res = _read_result(out, task)
    return (
        res is not None
        and res.get("status") == COMPLETE
        and (run_dir(out, task["agent"], task["seed"]) / CURVE).is_file()
        and res.get("task") == _signature(task)
    )


def _changed_settings(out: Path, task: dict[str, Any]) -> str:
    """Which settings of an earlier run in ``out`` differ from ``task`` ('' when none ran)."""
    res = _read_result(out, task)
    old = res.get("task") if res is not None else None
    if not isinstance(old, dict):
        return ""
    new = _signature(task)
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if "hyperparameters" in keys:
        oh, nh = old.get("hyperparameters") or {}, new.get("hyperparameters") or {}
        keys.remove("hyperparameters")
        keys += [f"hyperparameters.{k}" for k in sorted(set(oh) | set(nh)) if oh.get(k) != nh.get(k)]
    return ", ".join(keys)


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

    def on_episode(self, total_bad: int | None) -> None:
        self.episodes += 1
        if total_bad is not None and self.solved_at is None and total_bad / self.episodes < SOLVE_RATIO:
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
    rec.bind(
        lambda: {name: agent.greedy_predictor(name) for name in EVALS},
        lambda: (agent.est.mean, agent.avg_theta),
    )
    deep = task["env"] == DEEPSEA
    rec.evaluate(0)

    def callback(a: BongDQN, ev: dict[str, Any]) -> None:
        if ev["kind"] == "episode":
            rec.on_episode(_total_bad(a.env) if deep else None)
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
    deep = task["env"] == DEEPSEA
    venv = model.get_env()
    rec.evaluate(0)

    def on_step(m: Any, step: int) -> None:
        rec.on_step(step)

    def on_episode(m: Any, i: int) -> None:
        rec.on_episode(_total_bad(getattr(venv, "venv", venv)) if deep else None)

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
        return f"FAILED {key}: {res['error']} (after {res['evaluations']} evaluation(s); partial curve kept)"
    extra = ""
    if res.get("episodes_to_solve") is not None or res["task"]["env"] == DEEPSEA:
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
    out = Path(out) if out is not None else default_out(env_id, env_kwargs)
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

    def finished(key: str, res: dict[str, Any]) -> None:
        progress(key, steps)
        if res["status"] == COMPLETE:
            ran.append(key)
        else:
            failed.append((key, res["error"]))
            if os.environ.get("BONGRL_DEBUG"):
                print(res.get("traceback", ""), file=sys.stderr)
        _say(quiet, _done_line(key, res))
        if bar is not None:
            bar.set_postfix_str(f"runs {len(ran) + len(failed)}/{len(pending)} done")

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
        if bar is not None:
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
    """Say why a run that already has a result in ``out`` runs again (other settings, or it failed)."""
    res = _read_result(out, task)
    if res is None:
        return
    changed = _changed_settings(out, task)
    if changed:
        _say(quiet, f"{_key(task)}: ran earlier with other settings ({changed}); rerunning "
             "(the earlier run is replaced when the new one completes or fails)")
    elif res.get("status") == FAILED:
        _say(quiet, f"{_key(task)}: failed earlier ({res.get('error')}); retrying")


def default_out(env_id: str, env_kwargs: dict[str, Any] | None = None) -> Path:
    name = env_id.split("/")[-1]
    for k, v in sorted((env_kwargs or {}).items()):
        name += f"-{k}{v}"
    return Path("results") / f"compare_{name}"


# ------------------------------------------------------------------------------------------- aggregation
def _read_curve(path: Path) -> list[dict[str, float]]:
    if not path.is_file():
        return []
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


def _steps_to(steps: np.ndarray, values: np.ndarray, threshold: float | None) -> int | None:
    """First evaluation step after 0 whose mean return reaches ``threshold`` (None: never, or no threshold)."""
    if threshold is None:
        return None
    hit = np.nonzero((values >= threshold) & (steps > 0))[0]
    return int(steps[hit[0]]) if len(hit) else None


def _fmt(x: Any, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}f}"


@dataclass
class _Run:
    """One (agent, seed) folder as aggregate reads it."""

    seed: int
    result: dict[str, Any]
    curve: list[dict[str, float]]

    @property
    def failed(self) -> bool:
        return self.result.get("status") != COMPLETE


def _mean_std(values: Iterable[float | None]) -> tuple[float | None, float | None]:
    """Mean and std over the values that are not missing (failed runs); (None, None) when none are left."""
    kept = [float(v) for v in values if v is not None]
    return (float(np.mean(kept)), float(np.std(kept))) if kept else (None, None)


def _column_metrics(runs_: list[_Run], column: str, threshold: float | None) -> dict[str, Any]:
    """Per-seed and over-seed metrics of one evaluation column; a failed run is None in every per-seed list."""
    per: dict[str, list[Any]] = {"final": [], "last3": [], "auc": [], "steps_to_threshold": []}
    for run in runs_:
        if run.failed or not run.curve:
            for values in per.values():
                values.append(None)
            continue
        st = np.array([c["step"] for c in run.curve])
        ev = np.array([c[f"eval_{column}_mean"] for c in run.curve])
        per["final"].append(float(ev[-1]))
        per["last3"].append(float(ev[-3:].mean()))
        per["auc"].append(_auc(st, ev))
        per["steps_to_threshold"].append(_steps_to(st, ev, threshold))
    metrics: dict[str, Any] = {}
    for name in ("final", "last3", "auc"):
        mean, std = _mean_std(per[name])
        metrics.update({f"{name}_per_seed": per[name], f"{name}_mean": mean, f"{name}_std": std})
    complete = [r for r in runs_ if not r.failed]
    reached = [t for t in per["steps_to_threshold"] if t is not None]
    metrics["steps_to_threshold_per_seed"] = per["steps_to_threshold"]
    metrics["median_steps_to_threshold"] = float(np.median(reached)) if reached else None
    metrics["never_reached"] = len(complete) - len(reached) if threshold is not None else None
    return metrics


def _settings_key(task: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in task.items() if k not in ("seed", "eval_seed")}, sort_keys=True)


def _warnings(agent: str, env_id: str | None, runs_: list[_Run], tuned: list[int]) -> list[str]:
    """The summary's flags for one agent: seeds its preset was tuned on, runs made with differing settings."""
    out = []
    overlap = sorted(set(r.seed for r in runs_) & set(tuned))
    if overlap:
        name = "BongDQN" if agent == "bongdqn" else agent
        out.append(
            f"⚠ seeds {seeds_text(overlap)} overlap the seeds the {name} preset for {env_id} was tuned on "
            f"({seeds_text(tuned)})"
        )
    if len({_settings_key(r.result["task"]) for r in runs_}) > 1:
        out.append(f"⚠ {agent}'s runs were made with different settings (see per_run/*/result.json)")
    return out


def _agent_summary(agent: str, env_id: str | None, runs_: list[_Run], threshold: float | None) -> dict[str, Any]:
    defaults_only = bool(runs_[0].result["task"].get("defaults_only")) if runs_ else False
    tuned = tuned_seeds(agent, env_id, defaults_only) if env_id is not None else []
    sps = [r.result["env_steps_per_s"] for r in runs_ if not r.failed and r.result.get("env_steps_per_s")]
    walls = [r.result["wall_s"] for r in runs_ if not r.failed]
    summary: dict[str, Any] = {
        "seeds": [r.seed for r in runs_],
        "status_per_seed": [r.result.get("status", FAILED) for r in runs_],
        "failed": sum(r.failed for r in runs_),
        "errors": {str(r.seed): r.result.get("error", "") for r in runs_ if r.failed},
        **{column: _column_metrics(runs_, column, threshold) for column in EVALS},
        "env_steps_per_s": float(np.mean(sps)) if sps else None,
        "wall_s_per_run": float(np.mean(walls)) if walls else None,
        "hyperparameters": runs_[0].result["task"].get("hyperparameters"),
        "tuned_seeds": tuned,
        "rejected_updates_per_seed": [r.result.get("rejected_updates") for r in runs_],
        "seeds_overlapping_tuning": sorted(set(r.seed for r in runs_) & set(tuned)),
        "warnings": _warnings(agent, env_id, runs_, tuned),
    }
    if env_id == DEEPSEA:
        solve = [None if r.failed else r.result.get("episodes_to_solve") for r in runs_]
        solved = [e for e in solve if e is not None]
        summary.update(
            episodes_to_solve_per_seed=solve,
            median_episodes_to_solve=float(np.median(solved)) if solved else None,
            unsolved=sum(e is None for e, r in zip(solve, runs_, strict=True) if not r.failed),
            train_episodes=[None if r.failed else r.result.get("train_episodes") for r in runs_],
        )
    return summary


def _collect(out: Path, want: dict[str, Any]) -> dict[str, list[_Run]]:
    """Every finished (complete or failed) run in ``out`` whose settings match ``want`` (None: any), by agent."""
    from bongrl import runs

    collected: dict[str, list[_Run]] = {}
    for res_path in sorted((out / RUNS).glob(f"*/{RESULT}")):
        if res_path.parent.name.endswith(".partial"):
            continue
        try:
            res = runs.read_json(res_path)
            task = res["task"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if "polyak_tau" not in task:  # made before compare evaluated both columns: not comparable
            continue
        if any(v is not None and task.get(k) != v for k, v in want.items()):
            continue
        collected.setdefault(task["agent"], []).append(
            _Run(int(task["seed"]), res, _read_curve(res_path.parent / CURVE))
        )
    for runs_ in collected.values():
        runs_.sort(key=lambda r: r.seed)
    return collected


def _threshold(env_id: str | None) -> float | None:
    if env_id is None:
        return None
    import gymnasium as gym

    import bongrl.envs  # noqa: F401

    try:
        return gym.spec(env_id).reward_threshold
    except Exception:  # noqa: BLE001
        return None


def _write_csv(path: Path, order: list[str], collected: dict[str, list[_Run]]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for agent in order:
            for run in collected[agent]:
                status = FAILED if run.failed else COMPLETE
                for row in run.curve:
                    w.writerow(
                        [agent, run.seed, status, int(row["step"])]
                        + [f"{row[c]:.6g}" for c in CURVE_COLUMNS[1:-2]]
                        + [f"{row['wall_s']:.3f}", f"{row['env_steps_per_s']:.1f}"]
                    )


def aggregate(
    out: str | Path,
    env_id: str | None = None,
    steps: int | None = None,
    eval_every: int | None = None,
    eval_episodes: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
    polyak_tau: float | None = None,
) -> dict[str, Any]:
    """Collect every finished run in ``out`` with the given protocol into compare.csv, summary.md/.json and
    learning_curves.png (runs made with another env, budget, evaluation protocol or averaging rate are left
    out; failed runs are kept and counted as failed)."""
    from bongrl import runs

    out = Path(out)
    want = {
        "env": env_id,
        "steps": steps,
        "eval_every": eval_every,
        "eval_episodes": eval_episodes,
        "env_kwargs": env_kwargs,
        "polyak_tau": polyak_tau,
    }
    collected = _collect(out, want)
    order = [a for a in AGENTS if a in collected] + sorted(a for a in collected if a not in AGENTS)
    if env_id is None and collected:
        env_id = next(iter(collected.values()))[0].result["task"]["env"]
    if polyak_tau is None and collected:
        polyak_tau = next(iter(collected.values()))[0].result["task"]["polyak_tau"]
    threshold = _threshold(env_id)
    _write_csv(out / "compare.csv", order, collected)
    agents = {agent: _agent_summary(agent, env_id, collected[agent], threshold) for agent in order}
    summary: dict[str, Any] = {
        "env": env_id,
        "env_kwargs": env_kwargs,
        "steps": steps,
        "eval_every": eval_every,
        "eval_episodes": eval_episodes,
        "polyak_tau": polyak_tau,
        "headline": "online",
        "reward_threshold": threshold,
        "warnings": [w for a in agents.values() for w in a["warnings"]],
        "agents": agents,
    }
    runs.write_json(out / "summary.json", summary)
    (out / "summary.md").write_text(_summary_md(summary))
    try:
        _plot(out / "learning_curves.png", order, collected, summary)
    except Exception as exc:  # a plotting failure must not lose the numbers
        print(
            f"bongrl: warning: could not draw learning_curves.png: {_error_text(exc)}",
            file=sys.stderr,
        )
    return summary


# ------------------------------------------------------------------------------------------- summary.md
COLUMN_TITLES = {
    "online": "online (headline): the weights being trained",
    "averaged": "averaged: EMA of the weights, τ={tau}, same for every agent",
}


def _column_title(column: str, tau: Any) -> str:
    return COLUMN_TITLES[column].format(tau=f"{tau:g}" if isinstance(tau, (int, float)) else tau)


def _per_seed(
    values: list[Any], failed: dict[int, bool], seeds: list[int], fmt: Callable[[Any], str]
) -> list[str]:
    """One cell per table seed: ``values`` (in the order of ``failed``'s seeds) formatted, 'failed' for a failed
    run, '—' for a seed this agent did not run."""
    by_seed = dict(zip(failed, values, strict=True))
    return ["—" if s not in failed else "failed" if failed[s] else fmt(by_seed[s]) for s in seeds]


def _column_table(s: dict[str, Any], column: str, seeds: list[int], dg: int) -> list[str]:
    """The markdown table of one evaluation column: one row per (agent, metric), one cell per seed."""
    thr = s["reward_threshold"]
    lines = [
        f"### {_column_title(column, s['polyak_tau'])}",
        "",
        "| agent | metric | over seeds (mean ± std over completed runs) | failed | "
        + " | ".join(f"seed {x}" for x in seeds)
        + " |",
        "|---|---|---|---|" + "---|" * len(seeds),
    ]
    for agent, a in s["agents"].items():
        m = a[column]
        failed_by_seed = {seed: st != COMPLETE for seed, st in zip(a["seeds"], a["status_per_seed"], strict=True)}
        failed = f"{a['failed']}/{len(a['seeds'])}"
        n_ok = len(a["seeds"]) - a["failed"]
        rows: list[tuple[str, str, list[str]]] = []
        for key, label in (("final", "final eval"), ("last3", "mean of last 3 evals"), ("auc", "AUC")):
            over = f"{_fmt(m[f'{key}_mean'], dg)} ± {_fmt(m[f'{key}_std'], dg)} (n={n_ok})"
            cells = _per_seed(m[f"{key}_per_seed"], failed_by_seed, seeds, lambda v: _fmt(v, dg))
            rows.append((label, over, cells))
        if thr is not None:
            over = f"median {_fmt(m['median_steps_to_threshold'], 0)}; never reached {m['never_reached']}/{n_ok}"
            cells = _per_seed(
                m["steps_to_threshold_per_seed"], failed_by_seed, seeds, lambda v: "never" if v is None else str(v)
            )
            rows.append(("steps to threshold", over, cells))
        for label, over, cells in rows:
            lines.append(f"| {agent} | {label} | {over} | {failed} | " + " | ".join(cells) + " |")
    return lines


def _runs_table(s: dict[str, Any]) -> list[str]:
    lines = [
        "| agent | seeds | failed | env steps/s | wall s / run | preset tuned on seeds |",
        "|---|---|---|---|---|---|",
    ]
    for agent, a in s["agents"].items():
        tuned = seeds_text(a["tuned_seeds"]) or ("none of ours (rl-zoo preset)" if agent != "bongdqn" else "none")
        lines.append(
            f"| {agent} | {seeds_text(a['seeds'])} | {a['failed']}/{len(a['seeds'])} | "
            f"{_fmt(a['env_steps_per_s'], 0)} | {_fmt(a['wall_s_per_run'], 0)} | {tuned} |"
        )
    return lines


def _deepsea_table(s: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "Episodes to solve (bsuite: first training episode where total_bad_episodes / episode < 0.9):",
        "",
        "| agent | episodes to solve per seed | median (solved seeds) | unsolved | failed "
        "| training episodes per run |",
        "|---|---|---|---|---|---|",
    ]
    for agent, a in s["agents"].items():
        bad = [st != COMPLETE for st in a["status_per_seed"]]
        per = ", ".join(
            "failed" if f else "unsolved" if e is None else str(e)
            for e, f in zip(a["episodes_to_solve_per_seed"], bad, strict=True)
        )
        episodes = ", ".join("failed" if f else str(e) for e, f in zip(a["train_episodes"], bad, strict=True))
        lines.append(
            f"| {agent} | {per} | {_fmt(a['median_episodes_to_solve'], 0)} | "
            f"{a['unsolved']}/{len(a['seeds']) - a['failed']} | {a['failed']}/{len(a['seeds'])} | {episodes} |"
        )
    return lines


def _summary_md(s: dict[str, Any]) -> str:
    env = (s["env"] or "") + (
        f" ({', '.join(f'{k}={v}' for k, v in s['env_kwargs'].items())})" if s.get("env_kwargs") else ""
    )
    thr = s["reward_threshold"]
    tau = s["polyak_tau"]
    lines = [
        f"# compare: {env}",
        "",
        f"Budget {s['steps']} env steps per run; evaluation every {s['eval_every']} steps "
        f"(and at step 0 and after training): {s['eval_episodes']} deterministic episodes on a separate "
        "eval env, episode seeds 10000 + 1000·seed + i for every agent. "
        "Reward threshold (env.spec.reward_threshold): "
        f"{_fmt(thr) if thr is not None else 'none'}.",
        "",
        "Every run is evaluated twice at every evaluation point, on the same episodes:",
        "",
        f"- **{_column_title('online', tau)}** — BongDQN's posterior mean; the SB3 model's current network.",
        f"- **{_column_title('averaged', tau)}** — θ̄ ← (1−τ)θ̄ + τθ after every vectorised env step: "
        "BongDQN's polyak_eval; DQN's Q-network, QR-DQN's quantile network, PPO's policy.",
        "",
        *[f"{w}" for w in s["warnings"]],
        *([""] if s["warnings"] else []),
        *_runs_table(s),
    ]
    values = [
        abs(x)
        for a in s["agents"].values()
        for c in EVALS
        for x in a[c]["final_per_seed"]
        if x is not None and math.isfinite(x)
    ]
    dg = 2 if values and max(values) < 10 else 1  # returns like DeepSea's 0.99 need two decimals
    seeds = sorted({x for a in s["agents"].values() for x in a["seeds"]})
    for column in EVALS:
        lines += ["", *_column_table(s, column, seeds, dg)]
    if s["env"] == DEEPSEA:
        lines += _deepsea_table(s)
    errors = [f"- {agent} seed {seed}: {msg}" for agent, a in s["agents"].items() for seed, msg in a["errors"].items()]
    if errors:
        lines += ["", "Failed runs (partial curves kept in per_run/<agent>-s<seed>/):", "", *errors]
    lines += [
        "",
        "Final eval: the evaluation after training. Mean of last 3 evals: the last three evaluations of each "
        "run, averaged. Steps to threshold: first evaluation after step 0 whose mean return ≥ the threshold "
        "(resolution: the eval interval; the untrained policy's score does not count); "
        "the median is over the runs that reached it. AUC: trapezoid area under the eval curve divided by "
        "the steps it spans. A failed run (it raised, or its weights became non-finite) is 'failed' in every "
        "per-seed cell and left out of mean ± std. env steps/s: training env steps over training wall time "
        "(evaluation excluded), one torch thread per run.",
        "",
    ]
    return "\n".join(lines)


def _plot(path: Path, order: list[str], collected: dict[str, list[_Run]], summary: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for agent in order:
        complete = [r for r in collected[agent] if not r.failed and r.curve]
        if not complete:
            continue
        grid = np.array([c["step"] for c in complete[0].curve])
        color = None
        for column, style in zip(EVALS, ("-", "--"), strict=True):
            ys = np.array(
                [
                    np.interp(grid, [c["step"] for c in r.curve], [c[f"eval_{column}_mean"] for c in r.curve])
                    for r in complete
                ]
            )
            mean, std = ys.mean(0), ys.std(0)
            failed = len(collected[agent]) - len(complete)
            label = f"{agent} {column} (n={len(complete)}" + (f", {failed} failed)" if failed else ")")
            (line,) = ax.plot(grid, mean, linestyle=style, color=color, label=label)
            color = line.get_color()
            if column == "online":
                lo, hi = np.maximum(mean - std, ys.min(0)), np.minimum(mean + std, ys.max(0))  # in the seed range
                ax.fill_between(grid, lo, hi, color=color, alpha=0.2, linewidth=0)
    thr = summary.get("reward_threshold")
    if thr is not None:
        ax.axhline(thr, color="grey", linestyle=":", linewidth=1, label=f"threshold {thr:g}")
    ax.set_xlabel("env steps")
    ax.set_ylabel("deterministic eval return")
    env = summary.get("env") or ""
    ax.set_title(
        f"{env}: mean over seeds; online solid (band ± 1 std),\naveraged (EMA τ={summary.get('polyak_tau')}) dashed",
        fontsize="medium",
    )
    ax.legend(loc="best", fontsize="x-small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
