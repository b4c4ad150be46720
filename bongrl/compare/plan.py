"""Planning a comparison: seeds, agents, resolved settings, one task per (agent, seed) (see
:mod:`bongrl.compare`)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bongrl.compare.common import (
    _MAX_SEEDS,
    _SEEDS_FORMS,
    AGENTS,
    COMPLETE,
    CURVE,
    DEEPSEA,
    DEFAULT_TAU,
    RESULT,
    RUNS,
    CompareError,
    _key,
)
from bongrl.envs.wrappers import eval_seed


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
    """BongDQN's preset (the class defaults with ``defaults_only``) with ``overrides``, validated by the run layer
    (:class:`~bongrl.runner.spec.RunSpec`); ``polyak_eval`` is compare's one averaging rate ``tau``."""
    from bongrl.errors import UsageError
    from bongrl.runner import RunSpec

    over = dict(overrides)
    posterior, exploration = over.pop("posterior", None), over.pop("exploration", None)
    if "polyak_eval" in over and over["polyak_eval"] != tau:
        raise CompareError(
            f"bongdqn.polyak_eval={over['polyak_eval']!r} differs from --polyak-tau {tau:g}: the averaged "
            "evaluation uses one rate for every agent; set it with --polyak-tau"
        )
    try:
        spec = RunSpec.resolve(env_id, posterior=posterior, exploration=exploration,
                               overrides={**over, "polyak_eval": tau}, defaults_only=defaults_only, check_env=False)
    except UsageError as exc:
        raise CompareError(f"bongdqn: {exc}") from exc
    if spec.agent != "bongdqn":
        raise CompareError(f"{env_id}'s bongrl preset is for the {spec.agent!r} agent, not bongdqn")
    return {"posterior": spec.posterior, "exploration": spec.exploration, "hyperparameters": spec.hyperparameters,
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
    return _read_dict(run_dir(out, task["agent"], task["seed"]) / RESULT)


def _read_dict(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path`` (None when absent, unreadable or not an object)."""
    from bongrl import runs

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


#: what a comparison's directory holds (anything else there means it is not one)
OUTPUTS = frozenset({RUNS, "compare.csv", "summary.md", "summary.json", "learning_curves.png"})
#: the task fields every run of one comparison shares, whatever its agent
PROTOCOL = ("env", "env_kwargs", "steps", "eval_every", "eval_episodes", "polyak_tau")


def _settings(task: dict[str, Any]) -> dict[str, Any]:
    """A task's settings without its seed (what the runs of one agent in one comparison share)."""
    return {k: v for k, v in _signature(task).items() if k not in ("seed", "eval_seed")}


def plan_conflict(out: Path, tasks: list[dict[str, Any]]) -> str:
    """Why ``out`` cannot take these tasks without replacing another comparison's files ('' when it can: it is
    empty, or holds only runs these tasks resume — the same (agent, seed) with the same settings, or other seeds
    of a planned agent with its settings, or other agents with the same protocol)."""
    strays = sorted(p.name for p in Path(out).iterdir() if p.name not in OUTPUTS)
    if strays:
        return f"it holds files that are not a comparison's ({', '.join(strays[:3])})"
    mine = {_key(t): _signature(t) for t in tasks}
    agents = {t["agent"]: _settings(t) for t in tasks}
    protocol = {k: _signature(tasks[0]).get(k) for k in PROTOCOL} if tasks else {}
    for path in sorted((Path(out) / RUNS).glob(f"*/{RESULT}")):
        key = path.parent.name
        if key.endswith(".partial"):  # scratch of an interrupted run: redone anyway
            continue
        res = _read_dict(path)
        old = res.get("task") if res is not None else None
        if not isinstance(old, dict):
            return f"{key} has no readable result"
        if key in mine:
            same = old == mine[key]
        elif old.get("agent") in agents:
            same = _settings(old) == agents[old["agent"]]
        else:
            same = all(old.get(k) == v for k, v in protocol.items())
        if not same:
            return f"{key} ran with other settings"
    return ""


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
