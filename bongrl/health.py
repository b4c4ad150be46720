"""Opt-in numerical health checks of a BONG posterior (no silent numerical decay).

:class:`HealthMonitor` is a training callback: every ``every`` env steps (or bandit rounds) it checks that the
posterior is still a proper Gaussian and logs the numbers; the first violation is kept as a :class:`Violation`
(step, family, metric, value) and, by default, stops training with :class:`HealthError`. Checked:

* ``finite``            — every tensor of the posterior state is finite;
* ``health``            — the family's own positive-definiteness number (:meth:`PosteriorFamily.health`:
  the smallest eigenvalue of Σ for ``full``, the smallest precision diagonal for ``diag`` / ``dlr``, the smallest
  precision eigenvalue in the Kronecker eigenbasis (and diagonal part) for ``kfac``) must be > ``min_health``;
* ``marginal_variance`` — the smallest diag(Σ) must be > ``min_variance``.

Example::

    from bongrl.health import HealthMonitor
    monitor = HealthMonitor(every=1000)
    agent.learn(100_000, callback=monitor, callback_every=1000)   # BongDQN
    bandit.learn(10_000, callback=monitor, env=env)               # ThompsonBandit (checks every 1000 rounds)
    monitor.log[-1], monitor.first_violation

Checks cost one ``health`` evaluation (O(P³) for ``full``) and one marginal-variance pass each time, nothing in
between; ``every`` trades detection delay for cost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["HealthError", "HealthMonitor", "Violation", "chain", "posterior_health"]


class HealthError(FloatingPointError):
    """A posterior failed a health check (see :class:`Violation`)."""

    def __init__(self, violation: Violation) -> None:
        super().__init__(str(violation))
        self.violation = violation


@dataclass(frozen=True)
class Violation:
    """The first failed check: at ``step``, ``metric`` of the ``family`` posterior had ``value``."""

    step: int
    family: str
    metric: str
    value: float
    threshold: float

    def __str__(self) -> str:
        return (
            f"posterior health check failed at step {self.step}: family {self.family!r}, metric {self.metric} = "
            f"{self.value:.6g} (must be > {self.threshold:g})"
        )


def _estimator(obj: Any) -> Any:
    return getattr(obj, "est", obj)  # an agent or a BONG estimator


def posterior_health(obj: Any) -> dict[str, float]:
    """``finite`` (1.0 / 0.0), ``health`` and ``marginal_variance`` (min) of an agent's or a BONG's posterior
    (:meth:`bongrl.bong.BONG.health_report`)."""
    return _estimator(obj).health_report()


class HealthMonitor:
    """Checks the posterior every ``every`` steps; keeps a log and the first :class:`Violation`.

    Args:
        every: check period in env steps (BongDQN: pass ``callback_every=every`` to ``learn``) or bandit rounds.
        on_violation: ``"raise"`` (default: :class:`HealthError`, which stops training), ``"stop"`` (return
            ``False`` from the callback: training stops cleanly) or ``"record"`` (keep going).
        min_health: threshold for the family's health number (strictly greater is healthy).
        min_variance: threshold for the smallest marginal variance.
    """

    def __init__(
        self, every: int = 1000, on_violation: str = "raise", min_health: float = 0.0, min_variance: float = 0.0
    ) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive int, got {every!r}")
        if on_violation not in ("raise", "stop", "record"):
            raise ValueError(f"on_violation must be 'raise', 'stop' or 'record', got {on_violation!r}")
        self.every = every
        self.on_violation = on_violation
        self.min_health = float(min_health)
        self.min_variance = float(min_variance)
        self.log: list[dict[str, Any]] = []
        self.first_violation: Violation | None = None
        self._last_checked = -1

    def check(self, obj: Any, step: int) -> Violation | None:
        """Check now (whatever the period); log the numbers; return the violation found, if any."""
        est = _estimator(obj)
        family = est.family_name
        h = posterior_health(est)
        self.log.append({"step": int(step), "family": family, **h})
        self._last_checked = int(step)
        violation = None
        if h["finite"] != 1.0:
            violation = Violation(int(step), family, "finite", 0.0, 0.0)
        elif not h["health"] > self.min_health:
            violation = Violation(int(step), family, "health", h["health"], self.min_health)
        elif not h["marginal_variance"] > self.min_variance:
            value = h["marginal_variance"]
            violation = Violation(int(step), family, "marginal_variance", value, self.min_variance)
        if violation is not None and self.first_violation is None:
            self.first_violation = violation
        return violation

    def __call__(self, agent: Any, info: dict[str, Any]) -> bool | None:
        """Training callback: BongDQN ``learn(callback=..., callback_every=every)`` or ThompsonBandit ``learn``."""
        if "round" in info:  # bandit: called every round
            step = int(info["round"])
            if step % self.every:
                return None
        elif info.get("kind") == "step":
            step = int(info["step"])
        else:  # episode-end events of BongDQN: the periodic "step" events do the checking
            return None
        if step == self._last_checked:
            return None
        violation = self.check(agent, step)
        if violation is None or self.on_violation == "record":
            return None
        if self.on_violation == "raise":
            raise HealthError(violation)
        return False


Callback = Callable[[Any, dict[str, Any]], "bool | None"]


def chain(*callbacks: Callback | None) -> Callable[[Any, dict[str, Any]], bool]:
    """One callback running several in order; it stops training when any of them returns ``False``."""
    active = [c for c in callbacks if c is not None]

    def run(agent: Any, info: dict[str, Any]) -> bool:
        keep = True
        for c in active:
            if c(agent, info) is False:
                keep = False
        return keep

    return run
