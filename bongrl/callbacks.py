"""Training callbacks with the stable-baselines3 callback protocol (docs/design.md §7).

An agent's ``learn(total, callback=...)`` drives one :class:`BaseCallback` (a list becomes a
:class:`CallbackList`) exactly as SB3's ``BaseAlgorithm.learn`` does::

    callback.init_callback(agent)                 # once, before training
    callback.on_training_start(locals_, globals_)
    for every (vectorised) env step / bandit round:
        callback.update_locals(step_locals)       # this step's data, see below
        if not callback.on_step(): stop           # False stops training after this step
    callback.on_training_end()                    # always, also after an exception or a stop

``self.model`` is the agent, ``self.num_timesteps`` its step (round) counter, ``self.training_env`` and
``self.logger`` the agent's env and SB3 logger, and ``self.locals`` the step data: ``new_obs``, ``actions``,
``rewards``, ``dones``, ``infos`` (SB3's list of per-env dicts, with ``episode`` and ``terminal_observation`` where an
episode ended) and ``episodes`` — the episodes that ended at this
step, each ``{"step", "episode", "return", "length", "wall"}`` (bandits: one per round, ``{"round", "arm",
"reward", "regret", "cumulative_regret", "wall"}``). Because the protocol is SB3's, a callback written for SB3
that reads only these works here too.

Built in: :class:`EvalCallback` (periodic deterministic evaluation with the shared protocol),
:class:`CheckpointCallback`, :class:`MetricsCallback` (``metrics.csv`` rows), :class:`HealthCallback` (posterior
health checks, :mod:`bongrl.health`), :class:`StopOnFlag` (clean Ctrl-C) and :class:`FunctionCallback` (a plain
``fn(agent, event) -> bool | None``, the older callback form, which ``learn`` still accepts).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "BaseCallback",
    "CallbackList",
    "CheckpointCallback",
    "EvalCallback",
    "FunctionCallback",
    "HealthCallback",
    "MetricsCallback",
    "StopOnFlag",
    "as_callback",
    "crossed",
]

#: An older-style callback: ``fn(agent, event) -> bool | None``; returning False stops training.
EventFn = Callable[[Any, dict[str, Any]], "bool | None"]


def crossed(step: int, previous: int, every: int) -> bool:
    """Whether a multiple of ``every`` lies in (previous, step]: the periodic trigger of every callback here (a
    vectorised step advances the counter by the number of envs, so multiples are crossed, not hit)."""
    return every > 0 and step // every > previous // every


class BaseCallback:
    """The SB3 callback protocol (``stable_baselines3.common.callbacks.BaseCallback``): subclasses override
    ``_on_step`` (return False to stop) and optionally ``_init_callback``, ``_on_training_start`` and
    ``_on_training_end``."""

    def __init__(self, verbose: int = 0) -> None:
        self.verbose = verbose
        self.model: Any = None
        self.n_calls = 0
        self.num_timesteps = 0
        self.locals: dict[str, Any] = {}
        self.globals: dict[str, Any] = {}
        self.parent: BaseCallback | None = None

    # --------------------------------------------------------------- called by learn()
    def init_callback(self, model: Any) -> None:
        self.model = model
        self._init_callback()

    def on_training_start(self, locals_: dict[str, Any], globals_: dict[str, Any]) -> None:
        self.locals = locals_
        self.globals = globals_
        self.num_timesteps = int(self.model.num_timesteps)
        self._on_training_start()

    def on_rollout_start(self) -> None:
        self._on_rollout_start()

    def on_step(self) -> bool:
        self.n_calls += 1
        self.num_timesteps = int(self.model.num_timesteps)
        return bool(self._on_step())

    def on_rollout_end(self) -> None:
        self._on_rollout_end()

    def on_training_end(self) -> None:
        self._on_training_end()

    def update_locals(self, locals_: dict[str, Any]) -> None:
        self.locals.update(locals_)
        self.update_child_locals(locals_)

    def update_child_locals(self, locals_: dict[str, Any]) -> None:
        """Pass ``locals_`` on to child callbacks (see :class:`CallbackList`)."""

    # --------------------------------------------------------------- to override
    def _init_callback(self) -> None:
        pass

    def _on_training_start(self) -> None:
        pass

    def _on_rollout_start(self) -> None:
        pass

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        pass

    def _on_training_end(self) -> None:
        pass

    # --------------------------------------------------------------- helpers for subclasses
    @property
    def training_env(self) -> Any:
        """The agent's training env (``model.get_env()``), as in SB3."""
        return self.model.get_env()

    @property
    def logger(self) -> Any:
        """The agent's SB3 logger (``self.logger.record(key, value)``), as in SB3."""
        return self.model.logger

    @property
    def episodes(self) -> list[dict[str, Any]]:
        """The episodes (bandit rounds) that ended at this step."""
        return list(self.locals.get("episodes") or [])

    def _steps_this_call(self) -> int:
        """Env steps the last ``learn`` step advanced the counter by (the number of vectorised envs)."""
        return int(self.locals.get("n_steps", 1))


class CallbackList(BaseCallback):
    """Several callbacks in order; training stops if any one returns False (all of them still run)."""

    def __init__(self, callbacks: Sequence[Any]) -> None:
        super().__init__()
        self.callbacks = list(callbacks)

    def _init_callback(self) -> None:
        for cb in self.callbacks:
            cb.init_callback(self.model)
            cb.parent = self

    def _on_training_start(self) -> None:
        for cb in self.callbacks:
            cb.on_training_start(self.locals, self.globals)

    def _on_rollout_start(self) -> None:
        for cb in self.callbacks:
            cb.on_rollout_start()

    def _on_step(self) -> bool:
        go_on = True
        for cb in self.callbacks:
            go_on = bool(cb.on_step()) and go_on
        return go_on

    def _on_rollout_end(self) -> None:
        for cb in self.callbacks:
            cb.on_rollout_end()

    def _on_training_end(self) -> None:
        for cb in self.callbacks:
            cb.on_training_end()

    def update_child_locals(self, locals_: dict[str, Any]) -> None:
        for cb in self.callbacks:
            cb.update_locals(locals_)


class FunctionCallback(BaseCallback):
    """A plain ``fn(agent, event)`` as a callback: called with each finished episode's event and, when ``every``
    > 0, with ``{"kind": "step", "step", "wall"}`` each time the step counter crosses a multiple of ``every``
    (after that step's episodes). Returning False stops training."""

    def __init__(self, fn: EventFn, every: int = 0) -> None:
        super().__init__()
        if not callable(fn):
            raise TypeError(f"callback must be a BaseCallback, a list of them or a callable, got {fn!r}")
        self.fn = fn
        self.every = int(every)

    def _on_step(self) -> bool:
        go_on = True
        for event in self.episodes:
            if self.fn(self.model, event) is False:
                go_on = False
        previous = self.num_timesteps - self._steps_this_call()
        if crossed(self.num_timesteps, previous, self.every):
            event = {"kind": "step", "step": self.num_timesteps, "wall": self.locals.get("wall", 0.0)}
            if self.fn(self.model, event) is False:
                go_on = False
        return go_on


def as_callback(callback: Any, every: int = 0) -> BaseCallback | None:
    """What ``learn`` accepts, as one callback: None, a callback object (ours or SB3's: anything with
    ``init_callback`` and ``on_step``), a list of them, or a plain function (see :class:`FunctionCallback`)."""
    if callback is None:
        return None
    if isinstance(callback, (list, tuple)):
        return CallbackList([as_callback(c, every) for c in callback])
    if hasattr(callback, "on_step") and hasattr(callback, "init_callback"):
        return callback
    return FunctionCallback(callback, every)


class EvalCallback(BaseCallback):
    """Evaluate the agent every ``eval_every`` env steps (when the counter crosses a multiple).

    ``evaluate(agent) -> dict`` is the evaluation (e.g. :func:`protocol_evaluator`); each result (with ``step``
    added) is appended to :attr:`evaluations`, and ``after_eval(result)`` — returning False stops training, as
    a pruner does — runs after it. :meth:`evaluate_now` evaluates at once (e.g. at the end of training)."""

    def __init__(
        self,
        evaluate: Callable[[Any], dict[str, Any]],
        eval_every: int,
        after_eval: Callable[[dict[str, Any]], bool | None] | None = None,
    ) -> None:
        super().__init__()
        if eval_every < 0:
            raise ValueError(f"eval_every must be >= 0, got {eval_every}")
        self.evaluate = evaluate
        self.eval_every = int(eval_every)
        self.after_eval = after_eval
        self.evaluations: list[dict[str, Any]] = []
        self._stop = False

    @property
    def last(self) -> dict[str, Any] | None:
        """The latest evaluation, or None."""
        return self.evaluations[-1] if self.evaluations else None

    def evaluate_now(self) -> dict[str, Any]:
        result = dict(self.evaluate(self.model))
        result["step"] = int(self.model.num_timesteps)
        self.evaluations.append(result)
        if self.after_eval is not None and self.after_eval(result) is False:
            self._stop = True
        return result

    def _on_step(self) -> bool:
        if crossed(self.num_timesteps, self.num_timesteps - self._steps_this_call(), self.eval_every):
            self.evaluate_now()
        return not self._stop


def protocol_evaluator(
    env_id: str,
    episodes: int,
    first_seed: int,
    env_kwargs: dict[str, Any] | None = None,
    policies: Sequence[str] | None = None,
) -> tuple[Callable[[Any], dict[str, Any]], Callable[[], None]]:
    """The shared evaluation protocol (:class:`bongrl.envs.wrappers.ProtocolEval`) of every policy an agent
    offers (``agent.evaluation_policies()``, e.g. online and Polyak-averaged weights; else the agent's own
    deterministic ``predict``): returns ``(evaluate, close)``. The result is the first policy's
    ``{mean, std, returns, lengths}`` plus ``episodes``, ``weights`` (its name) and one sub-dict per other
    policy (``result["averaged"]``). ``policies`` keeps only the policies of those names."""
    from bongrl.envs.wrappers import ProtocolEval

    protocol = ProtocolEval(env_id, episodes, first_seed, **(env_kwargs or {}))

    def evaluate(agent: Any) -> dict[str, Any]:
        offered = agent.evaluation_policies() if hasattr(agent, "evaluation_policies") else {"online": agent}
        chosen = {k: v for k, v in offered.items() if policies is None or k in policies}
        result: dict[str, Any] = {}
        for i, (name, policy) in enumerate(chosen.items()):
            res = protocol(policy)
            if i == 0:
                result.update(res, episodes=int(episodes), weights=name)
            else:
                result[name] = {k: res[k] for k in ("mean", "std", "returns", "lengths")}
        return result

    return evaluate, protocol.close


class CheckpointCallback(BaseCallback):
    """Save the agent to ``path`` when the counter has crossed a multiple of ``save_every``, at the next step where
    an episode ends (an episode boundary is a state a resumed run continues from bit-identically)."""

    def __init__(self, path: str | Path, save_every: int, include_replay: bool = True) -> None:
        super().__init__()
        if save_every < 0:
            raise ValueError(f"save_every must be >= 0, got {save_every}")
        self.path = Path(path)
        self.save_every = int(save_every)
        self.include_replay = include_replay
        self._due = False
        self.saves = 0

    def save(self) -> None:
        self.model.save(self.path, include_replay=self.include_replay)
        self.saves += 1

    def _on_step(self) -> bool:
        if crossed(self.num_timesteps, self.num_timesteps - self._steps_this_call(), self.save_every):
            self._due = True
        if self._due and self.episodes:
            self.save()
            self._due = False
        return True


class MetricsCallback(BaseCallback):
    """One ``metrics.csv`` row per finished episode (``kind="episode"``) or bandit round (``kind="round"``), through
    ``write(**row)`` (a :class:`bongrl.runs.MetricsWriter`); ``wall_s`` counts from ``t0``."""

    def __init__(self, write: Callable[..., None], t0: float, kind: str = "episode") -> None:
        super().__init__()
        self.write = write
        self.t0 = t0
        self.kind = kind

    def _on_step(self) -> bool:
        wall = time.perf_counter() - self.t0
        for ev in self.episodes:
            if self.kind == "round":
                self.write(kind="round", round=ev["round"], arm=ev["arm"], reward=ev["reward"], regret=ev["regret"],
                           cumulative_regret=ev["cumulative_regret"], wall_s=wall)
            else:
                self.write(kind="episode", step=ev["step"], episode=ev["episode"], wall_s=wall,
                           **{"return": ev["return"], "length": ev["length"]})
        return True


class HealthCallback(FunctionCallback):
    """Posterior health checks (:class:`bongrl.health.HealthMonitor`) every ``every`` steps (rounds); a failed
    check stops training with :class:`bongrl.health.HealthError` (or, with ``raise_on_violation=False``, is
    kept in :attr:`monitor`'s ``first_violation``)."""

    def __init__(self, every: int = 1000, **monitor_options: Any) -> None:
        from bongrl.health import HealthMonitor

        self.monitor = HealthMonitor(every=every, **monitor_options)
        super().__init__(self.monitor, every=every)


class StopOnFlag(BaseCallback):
    """Stop at the first episode end after ``flag()`` turns true (a clean Ctrl-C: the state then is one a resumed
    run continues from)."""

    def __init__(self, flag: Callable[[], bool]) -> None:
        super().__init__()
        self.flag = flag

    def _on_step(self) -> bool:
        return not (self.flag() and self.episodes)
