"""What the value-based agents share: a BONG posterior over a value network, an exploration rule from the
registry, the :class:`~bongrl.exploration.base.ValueModel` view the rule acts on, and config plumbing."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bongrl import registry
from bongrl.agents.sb3_compat import SB3Conventions
from bongrl.agents.spaces import as_real_array
from bongrl.bong import BONG
from bongrl.device import resolve_device
from bongrl.exploration.base import ExplorationRule
from bongrl.posteriors.base import NumericalError

__all__ = ["PosteriorValueAgent", "ExplorationSettings", "mlp", "config_from_kwargs", "DTYPES"]

_log = logging.getLogger("bongrl")

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def mlp(
    in_dim: int, hidden: tuple[int, ...] | list[int], out_dim: int, activation: type[nn.Module] = nn.ReLU
) -> nn.Sequential:
    """in → hidden... → out with ``activation`` between layers; the last Linear is named ``head``."""
    layers: list[tuple[str, nn.Module]] = []
    d = in_dim
    for i, h in enumerate(hidden):
        layers += [(f"fc{i}", nn.Linear(d, h)), (f"act{i}", activation())]
        d = h
    layers.append(("head", nn.Linear(d, out_dim)))
    return nn.Sequential(OrderedDict(layers))


@dataclasses.dataclass
class ExplorationSettings:
    """Hyperparameters of the built-in exploration rules, shared by every agent config (each rule takes the ones
    its constructor names; see :func:`bongrl.registry.create`)."""

    every: int = 0
    """Thompson: each environment draws a new posterior sample every k steps (0 = once per episode, 1 = every
    step). Change it when episodes are very long or never end: with 0 one sample then acts for the whole run."""
    beta: float = 1.0
    """UCB: optimism coefficient β, the weight of the linearised predictive std added to the mean Q-value. Raise it
    when UCB settles on one action too early; lower it when it keeps trying actions already known to be poor."""
    eps_start: float = 0.1
    """ε-greedy: initial probability ε of a uniform random action (otherwise greedy on the posterior mean)."""
    eps_end: float = 0.01
    """ε-greedy: final ε, reached after ``decay_steps`` calls and kept from then on."""
    decay_steps: int = 10_000
    """ε-greedy: number of steps over which ε decays linearly from ``eps_start`` to ``eps_end``. Raise it when the
    environment needs random actions for longer than the first ``decay_steps`` steps."""

    def exploration_options(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(ExplorationSettings)}


def config_from_kwargs(cls: type, kwargs: dict[str, Any], owner: str) -> Any:
    """Build the dataclass ``cls`` from keyword overrides; unknown keys or wrong types raise a one-line error."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(kwargs) - set(fields))
    if unknown:
        raise ValueError(f"unknown {owner} hyperparameter(s) {unknown}; valid: {sorted(fields)}")
    defaults = cls()
    for name, value in kwargs.items():
        _check_type(owner, name, value, getattr(defaults, name))
    cfg = cls(**kwargs)
    if hasattr(cfg, "validate"):
        cfg.validate()
    return cfg


def _check_type(owner: str, name: str, value: Any, default: Any) -> None:
    """Hyperparameter types follow the defaults: bool, int (no floats/bools), float (ints allowed), str, int lists."""
    def bad(kind: str) -> ValueError:
        return ValueError(f"{owner} hyperparameter {name} must be {kind}, got {value!r}")

    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad("true or false")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise bad("an integer")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise bad("a number")
        if not math.isfinite(float(value)):
            raise bad("finite")
    elif isinstance(default, str):
        if not isinstance(value, str):
            raise bad("a string")
    elif isinstance(default, list):
        if not isinstance(value, (list, tuple)) or any(isinstance(v, bool) or not isinstance(v, int) for v in value):
            raise bad("a list of integers")


class PosteriorValueAgent(SB3Conventions):
    """A BONG posterior over a value network (observation → one value per action) plus an exploration rule.

    Implements the :class:`~bongrl.exploration.base.ValueModel` protocol for the rule, and SB3's logging
    conventions (:class:`~bongrl.agents.sb3_compat.SB3Conventions`).
    """

    num_actions: int
    est: BONG
    rule: ExplorationRule
    #: Thompson samples in the linearised model (see ``BongDQNConfig.linearized_samples``): :meth:`sample_params`
    #: returns deviations ε ~ N(0, Σ) and ``q_values(obs, ε)`` = Q_μ(obs) + J_μ(obs) ε at the current mean μ.
    linearized_samples: bool = False
    #: posterior draws that failed numerically (the rule then acted on the mean until its next draw)
    failed_samples: int = 0

    def _build(
        self,
        net: nn.Module,
        num_actions: int,
        posterior: str,
        exploration: str,
        seed: int,
        device: str | torch.device,
        dtype: torch.dtype,
        *,
        exploration_shared: dict[str, Any],
        exploration_options: dict[str, Any] | None,
        posterior_shared: dict[str, Any],
        posterior_options: dict[str, Any] | None,
        **bong_kwargs: Any,
    ) -> None:
        """The estimator and the rule. ``*_shared`` are the config's settings offered to whichever plugin is
        chosen (each takes the ones it names); ``*_options`` are the caller's options for that plugin, where an
        option it does not take is an error (:func:`bongrl.registry.create`)."""
        self.device = resolve_device(device)
        self.dtype = dtype
        self.num_actions = num_actions
        self.posterior_name = posterior
        self.exploration_name = exploration
        #: the caller's plugin options (saved in checkpoints; ``exploration_options=`` / ``--set exploration.k=v``)
        self.exploration_options = dict(exploration_options or {})
        self.posterior_options = dict(posterior_options or {})
        self._exploration_shared = dict(exploration_shared)
        self.rule = self.make_rule()  # before the estimator: a bad option fails before any heavy work
        registry.check_options(registry.POSTERIORS, posterior, self.posterior_options)
        family_options = dict(self.posterior_options)
        for key in set(family_options) & set(bong_kwargs):  # e.g. rank: BONG's own offer to the family
            bong_kwargs[key] = family_options.pop(key)
        self.est = BONG(net, family=posterior, seed=seed, device=self.device, dtype=dtype,
                        shared_options=posterior_shared, **family_options, **bong_kwargs)
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(int(seed) + 1)

    def make_rule(self) -> ExplorationRule:
        """A fresh instance of the agent's exploration rule with its options (e.g. for stochastic ``predict``)."""
        return registry.create_exploration(self.exploration_name, self._exploration_shared, **self.exploration_options)

    def _train_scalars(self) -> dict[str, float]:
        """``posterior/*``: the health numbers of :meth:`bongrl.bong.BONG.health_report` (``finite``, ``health``
        > 0 iff positive definite, ``min_marginal_variance``) and the failed posterior draws."""
        report = self.est.health_report()
        return {"posterior/finite": report["finite"], "posterior/health": report["health"],
                "posterior/min_marginal_variance": report["marginal_variance"],
                "posterior/failed_samples": float(self.failed_samples)}

    # ------------------------------------------------------------------ ValueModel
    def q_values(self, obs: Tensor, theta: Tensor | None = None) -> Tensor:
        """Values (B, A) at the mean, or under a sample from :meth:`sample_params` ((P,) or one per row, (B, P)).
        With :attr:`linearized_samples` a sample is a deviation ε acting through the linearised network
        Q_μ(s) + J_μ(s) ε (:meth:`~bongrl.bong.BONG.apply_linearized`, docs/design.md §4)."""
        with torch.no_grad():
            if theta is None:
                return self.est.apply(self.est.mean, obs)
            if self.linearized_samples:
                return self.est.apply_linearized(theta, obs)
            if theta.ndim == 1:
                return self.est.apply(theta, obs)
            return self.est.apply_per_row(theta, obs)

    def q_std(self, obs: Tensor) -> Tensor:
        _, var = self.est.predict(obs)
        return var.sqrt()

    def sample_params(self, n: int) -> Tensor:
        """n posterior samples θ̃ ~ N(μ, Σ) (n, P); with ``linearized_samples`` the deviations θ̃ − μ."""
        try:
            draws = self.est.sample(n)
        except (NumericalError, torch.linalg.LinAlgError) as exc:
            # a posterior too ill-conditioned to factor in this dtype: act on the mean until the next draw
            self.failed_samples += 1
            _log.warning("posterior sampling failed (%s): acting on the mean until the next draw", exc)
            draws = self.est.mean.expand(n, -1).clone()
        return draws - self.est.mean if self.linearized_samples else draws

    # ------------------------------------------------------------------ helpers
    def _obs_tensor(self, obs: Any, obs_shape: tuple[int, ...], name: str = "observation") -> Tensor:
        arr = as_real_array(obs, name)
        if arr.shape == obs_shape:
            arr = arr[None]
        if arr.shape[1:] != obs_shape:
            raise ValueError(f"{name} must have shape {obs_shape} or (B, *{obs_shape}), got {arr.shape}")
        t = torch.as_tensor(arr, device=self.device).to(self.dtype)
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains NaN or Inf")
        return t

    def _act_tensor(self, obs: Tensor, deterministic: bool) -> Tensor:
        if deterministic or self.rule.deterministic:
            return self.q_values(obs).argmax(-1) if deterministic else self.rule.act(self, obs, self.generator)
        return self.rule.act(self, obs, self.generator)

    @staticmethod
    def _check_finite_scalar(name: str, v: Any) -> float:
        if isinstance(v, (str, bytes, complex, np.complexfloating)):
            raise ValueError(f"{name} must be a real number, got {v!r}")
        try:
            f = float(v)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be a real number, got {v!r}") from exc
        if not math.isfinite(f):
            raise ValueError(f"{name} is NaN or Inf")
        return f
