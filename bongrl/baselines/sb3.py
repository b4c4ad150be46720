"""stable-baselines3 / sb3-contrib baselines for ``bongrl compare``: rl-zoo hyperparameters, eval callback.

The presets live in ``bongrl/data/zoo_presets.json`` (copied from rl-baselines3-zoo's
``hyperparams/{dqn,qrdqn,ppo}.yml``; each entry names its source). :func:`make_model` builds the SB3 model
from one; :class:`EvalHook` is an ``EvalCallback``-like callback that hands control to the caller every env
step, so that SB3 models are evaluated
by the same :func:`bongrl.envs.wrappers.evaluate` protocol as bongrl's agents.
"""

from __future__ import annotations

import copy
import inspect
import json
from collections.abc import Callable
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

__all__ = [
    "ALGOS",
    "AVERAGED_NET",
    "EvalHook",
    "NormalizedPredictor",
    "PolyakAverage",
    "PolyakHook",
    "available",
    "make_model",
    "predictor",
    "zoo_preset",
]

#: compare's agent name -> (module, class)
ALGOS: dict[str, tuple[str, str]] = {
    "dqn": ("stable_baselines3", "DQN"),
    "qrdqn": ("sb3_contrib", "QRDQN"),
    "ppo": ("stable_baselines3", "PPO"),
}

#: compare's agent name -> the model attribute holding the network that acts greedily (its Polyak average is
#: the "averaged" evaluation: DQN's Q-network, QR-DQN's quantile network, PPO's whole actor-critic policy)
AVERAGED_NET: dict[str, str] = {"dqn": "q_net", "qrdqn": "quantile_net", "ppo": "policy"}

#: preset keys that are not constructor arguments
_META = ("source", "n_timesteps", "n_envs", "normalize", "policy")


@lru_cache(maxsize=1)
def _presets() -> dict[str, Any]:
    text = resources.files("bongrl").joinpath("data/zoo_presets.json").read_text()
    return json.loads(text)


def available(algo: str) -> list[str]:
    """Env ids with a preset for ``algo``."""
    return sorted(_presets().get(algo, {}))


def zoo_preset(algo: str, env_id: str) -> dict[str, Any]:
    """A deep copy of the preset for (``algo``, ``env_id``); ``ValueError`` (one line) when there is none."""
    if algo not in ALGOS:
        raise ValueError(f"unknown SB3 baseline {algo!r}; choose from {', '.join(ALGOS)}")
    table = _presets().get(algo, {})
    if env_id not in table:
        raise ValueError(
            f"no preset for {algo} on {env_id}; {algo} presets exist for {', '.join(available(algo))} "
            "(see bongrl/data/zoo_presets.json)"
        )
    return copy.deepcopy(table[env_id])


def algo_class(algo: str) -> type:
    import importlib

    module, name = ALGOS[algo]
    return getattr(importlib.import_module(module), name)


def check_overrides(algo: str, overrides: dict[str, Any]) -> None:
    """Reject override keys that are neither preset meta keys nor constructor arguments (one-line error)."""
    params = set(inspect.signature(algo_class(algo).__init__).parameters) - {"self", "env", "policy"}
    bad = sorted(k for k in overrides if k not in params and k not in _META)
    if bad:
        raise ValueError(
            f"unknown {algo} hyperparameter(s) {', '.join(bad)}; "
            f"valid: {', '.join(sorted(params | {'n_envs'}))}"
        )


def _schedule(value: Any) -> Any:
    """rl-zoo's ``lin_X`` string: X * progress_remaining (1 at the start, 0 at the end of ``learn``)."""
    if isinstance(value, str) and value.startswith("lin_"):
        start = float(value[4:])

        def linear(progress_remaining: float) -> float:
            return progress_remaining * start

        return linear
    return value


def resolved(
    algo: str, env_id: str, overrides: dict[str, Any] | None = None, sb3_defaults: bool = False
) -> dict[str, Any]:
    """The preset with ``overrides`` applied (JSON-able; what a run records as its hyperparameters). With
    ``sb3_defaults``, an env without a zoo preset gets SB3's own constructor defaults instead of an error."""
    if sb3_defaults and env_id not in _presets().get(algo, {}):
        preset: dict[str, Any] = {"source": f"SB3 defaults (rl-baselines3-zoo has no {algo} preset for {env_id})",
                                  "policy": "MlpPolicy"}
        preset.update(overrides or {})
        return preset
    preset = zoo_preset(algo, env_id)
    preset.update(overrides or {})
    return preset


def make_model(
    algo: str,
    env_id: str,
    seed: int,
    hyperparameters: dict[str, Any],
    env_kwargs: dict[str, Any] | None = None,
    device: str = "cpu",
) -> Any:
    """Build the SB3 / sb3-contrib model for a resolved preset (see :func:`resolved`) on a seeded vec env."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    import bongrl.envs  # noqa: F401  (registers bongrl/* ids)

    hp = copy.deepcopy(dict(hyperparameters))  # SB3 / sb3-contrib mutate policy_kwargs (QRDQN adds a class)
    n_envs = int(hp.pop("n_envs", 1))
    normalize = hp.pop("normalize", False)
    policy = hp.pop("policy", "MlpPolicy")
    for key in _META:
        hp.pop(key, None)
    for key in ("learning_rate", "clip_range"):
        if key in hp:
            hp[key] = _schedule(hp[key])
    import gymnasium as gym

    kwargs = dict(env_kwargs or {})

    def make_one() -> gym.Env:  # a factory: SB3 would otherwise add render_mode="rgb_array" to an id
        return gym.make(env_id, **kwargs)

    venv = make_vec_env(make_one, n_envs=n_envs, seed=seed)
    if normalize:
        venv = VecNormalize(venv, **(normalize if isinstance(normalize, dict) else {}))
    return algo_class(algo)(policy, venv, seed=seed, device=device, verbose=0, **hp)


class NormalizedPredictor:
    """``predict`` through the model's VecNormalize observation statistics (frozen copy at call time).

    ``policy`` (default: the model) is what acts on the normalised observation, e.g. a Polyak-averaged copy
    of the model's network (:class:`PolyakAverage`)."""

    def __init__(self, model: Any, policy: Any = None) -> None:
        self.model = model
        self.policy = model if policy is None else policy
        self.vecnorm = model.get_vec_normalize_env()

    def predict(
        self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = False
    ) -> tuple[np.ndarray, Any]:
        obs = self.vecnorm.normalize_obs(np.asarray(observation))
        return self.policy.predict(obs, state=state, episode_start=episode_start, deterministic=deterministic)


def predictor(model: Any, policy: Any = None) -> Any:
    """What :func:`bongrl.envs.wrappers.evaluate` should call: ``policy`` (default: the model itself), wrapped
    to normalise observations when the model trains on a VecNormalize env."""
    policy = model if policy is None else policy
    return NormalizedPredictor(model, policy) if model.get_vec_normalize_env() is not None else policy


class PolyakAverage:
    """An exponential moving average θ̄ ← (1 − τ) θ̄ + τ θ of one network's parameters.

    ``averaged`` is a deep copy of ``net`` (an SB3 ``BasePolicy``: DQN's ``q_net``, QR-DQN's ``quantile_net``
    or PPO's ``policy``), so ``averaged.predict(obs, deterministic=True)`` is the policy's own greedy /
    deterministic action (same preprocessing, same argmax) computed with the averaged weights. Buffers, if
    any, are copied, not averaged.
    """

    def __init__(self, net: Any, tau: float) -> None:
        if not 0.0 < tau <= 1.0:
            raise ValueError(f"the Polyak rate tau must be in (0, 1], got {tau!r}")
        self.online = net
        self.averaged = copy.deepcopy(net)
        self.averaged.requires_grad_(False)
        self.tau = float(tau)
        self._params = list(zip(self.averaged.parameters(), self.online.parameters(), strict=True))
        self._buffers = list(zip(self.averaged.buffers(), self.online.buffers(), strict=True))

    @classmethod
    def of(cls, model: Any, algo: str, tau: float) -> PolyakAverage:
        """The average of ``model``'s acting network (:data:`AVERAGED_NET`) for compare agent ``algo``."""
        return cls(getattr(model, AVERAGED_NET[algo]), tau)

    def update(self) -> None:
        """One averaging step towards the online network's current parameters."""
        import torch

        with torch.no_grad():
            for avg, cur in self._params:
                avg.lerp_(cur, self.tau)
            for avg, cur in self._buffers:
                avg.copy_(cur)


def _callback_base() -> type:
    from stable_baselines3.common.callbacks import BaseCallback

    return BaseCallback


class EvalHook:
    """Factory for an SB3 ``BaseCallback`` (built lazily so importing this module does not import SB3).

    ``on_step(model, num_timesteps)`` runs after every vectorised env step (the caller decides when to
    evaluate,
    as EvalCallback does with ``eval_freq``); ``on_episode(model, env_index, infos)`` after every finished
    training episode (``infos``: the step's per-env info dicts). Either may return ``False`` to stop training.
    """

    def __new__(
        cls,
        on_step: Callable[[Any, int], bool | None],
        on_episode: Callable[[Any, int, Any], bool | None] | None = None,
    ) -> Any:
        base = _callback_base()

        class _Hook(base):  # type: ignore[misc, valid-type]
            def _on_step(self) -> bool:
                keep = True
                if on_episode is not None:
                    dones = self.locals.get("dones")
                    if dones is not None:
                        for i in np.nonzero(np.asarray(dones))[0]:
                            infos = self.locals.get("infos")
                            keep = (on_episode(self.model, int(i), infos) is not False) and keep
                return (on_step(self.model, int(self.num_timesteps)) is not False) and keep

        return _Hook()


class PolyakHook:
    """Factory for an SB3 ``BaseCallback`` that steps a :class:`PolyakAverage` after every vectorised env step.

    List it before an :class:`EvalHook` (``model.learn(..., callback=[PolyakHook(avg), EvalHook(...)])``) so that
    an evaluation at step t sees the average updated with step t, as BongDQN's ``polyak_eval`` does.
    """

    def __new__(cls, average: PolyakAverage) -> Any:
        base = _callback_base()

        class _Polyak(base):  # type: ignore[misc, valid-type]
            def _on_step(self) -> bool:
                average.update()
                return True

        return _Polyak()
