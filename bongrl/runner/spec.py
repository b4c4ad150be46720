"""RunSpec: everything one run needs, resolved and validated once (docs/design.md §7).

``train``, ``evaluate``, ``tune``, ``compare`` and distributed training all start from a :class:`RunSpec`:
the env id and its kwargs, the agent (a name in the ``bongrl.agents`` entry-point group), the preset it came
from, the posterior family and exploration rule, the hyperparameters (preset values with the user's overrides on
top), the seed, the device, the budget and the evaluation protocol. :meth:`RunSpec.resolve` builds one from
user input and raises :class:`~bongrl.errors.UsageError` with one line naming the problem before anything is
built; :meth:`RunSpec.build_agent` then makes the agent through its class's ``from_spec``.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bongrl.errors import UsageError, one_line

__all__ = ["RunSpec", "check_env_id", "parse_overrides", "load_preset", "split_plugin_options"]


def parse_overrides(items: list[str], flag: str = "--set") -> dict[str, Any]:
    """``["key=value", ...]`` as a dict; values are parsed as JSON where they parse, else kept as strings."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"{flag} expects KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


#: ``--set`` key prefixes that address a plugin's own options instead of the agent's hyperparameters
PLUGIN_PREFIXES = ("exploration", "posterior")


def split_plugin_options(overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``{"gamma": .., "exploration.temperature": ..}`` → the agent's hyperparameters and each plugin's options
    (``{"exploration": {"temperature": ..}, "posterior": {}}``)."""
    flat: dict[str, Any] = {}
    plugin: dict[str, dict[str, Any]] = {p: {} for p in PLUGIN_PREFIXES}
    for key, value in overrides.items():
        prefix, dot, option = key.partition(".")
        if not dot:
            flat[key] = value
        elif prefix in plugin and option:
            plugin[prefix][option] = value
        else:
            raise UsageError(f"--set {key}: a dotted key must be exploration.OPTION or posterior.OPTION")
    return flat, plugin


def check_env_id(env_id: str) -> None:
    """UsageError with close matches if ``env_id`` is not a registered gymnasium id (bongrl's own included)."""
    import gymnasium as gym

    import bongrl.envs

    if isinstance(env_id, str) and env_id in gym.registry:
        return
    close = difflib.get_close_matches(str(env_id), list(gym.registry), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    choices = ", ".join([*bongrl.envs.ENV_IDS, "CartPole-v1", "MountainCar-v0", "Acrobot-v1"])
    raise UsageError(
        f"unknown environment id {env_id!r}; {hint}choose e.g. {choices} "
        "(any registered gymnasium id with a Discrete action space)"
    )


def load_preset(name: str | None, env_id: str, defaults_only: bool = False) -> tuple[dict[str, Any], str | None]:
    """The preset to start from and its name: ``name`` (another env id's preset or a JSON file written by
    ``bongrl tune``), else ``env_id``'s own preset, else (and with ``defaults_only``) the generic one (the
    class defaults; its name is None)."""
    from bongrl import presets

    if defaults_only:
        return presets.generic(), None
    if name:
        if name in presets.PRESETS:
            return presets.get(name), name
        if Path(name).is_file() or name.endswith(".json"):
            return presets.load_file(name), name
        raise UsageError(f"unknown preset {name!r}; use a JSON file or one of {', '.join(presets.available())}")
    return presets.get(env_id), (env_id if env_id in presets.PRESETS else None)


def _non_negative_int(name: str, value: Any, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        what = "a non-negative integer" if low == 0 else f"an integer >= {low}"
        raise UsageError(f"--{name.replace('_', '-')} must be {what}, got {value!r}")
    return value


@dataclass(frozen=True)
class RunSpec:
    """One run, resolved (use :meth:`resolve`; the constructor does not validate)."""

    env: str
    agent: str = "bongdqn"
    posterior: str = "dlr"
    exploration: str = "thompson"
    #: the hyperparameters set by the preset and the user (the agent's config defaults fill in the rest)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    device: str = "auto"
    #: budget: env steps (rounds for bandits)
    steps: int = 50_000
    #: env steps between deterministic evaluations (0: only at the end)
    eval_every: int = 0
    eval_episodes: int = 10
    #: env steps between checkpoints (None: at every evaluation)
    checkpoint_every: int | None = None
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    preset: str | None = None
    preset_values: dict[str, Any] = field(default_factory=dict)
    #: options of the exploration rule / posterior family plugin (``--set exploration.temperature=0.5``)
    exploration_options: dict[str, Any] = field(default_factory=dict)
    posterior_options: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------------------------------------ building
    @classmethod
    def resolve(
        cls,
        env: str,
        *,
        preset: str | None = None,
        agent: str | None = None,
        posterior: str | None = None,
        exploration: str | None = None,
        overrides: dict[str, Any] | None = None,
        seed: int | None = None,
        device: str | None = None,
        steps: int | None = None,
        eval_every: int | None = None,
        eval_episodes: int | None = None,
        checkpoint_every: int | None = None,
        env_kwargs: dict[str, Any] | None = None,
        defaults_only: bool = False,
        check_env: bool = True,
    ) -> RunSpec:
        """A validated spec: the preset (``preset``; the env's own; the class defaults with ``defaults_only``)
        with every given argument on top. Raises :class:`UsageError` (or a registry ``PluginError``) with one
        line naming the problem. ``check_env=False`` skips making the env once to check its spaces."""
        check_env_id(env)
        values, preset_name = load_preset(preset, env, defaults_only)
        flat, plugin = split_plugin_options(overrides or {})
        spec = cls(
            env=env,
            agent=agent or values.get("agent", "bongdqn"),
            posterior=posterior or values.get("posterior", "dlr"),
            exploration=exploration or values.get("exploration", "thompson"),
            hyperparameters={**dict(values.get("hyperparameters") or {}), **flat},
            seed=0 if seed is None else seed,
            device=device or "auto",
            steps=int(values.get("steps", 50_000)) if steps is None else steps,
            eval_every=int(values.get("eval_every", 0)) if eval_every is None else eval_every,
            eval_episodes=int(values.get("eval_episodes", 10)) if eval_episodes is None else eval_episodes,
            checkpoint_every=checkpoint_every,
            env_kwargs=dict(env_kwargs or {}),
            preset=preset_name,
            preset_values=values,
            exploration_options={**dict(values.get("exploration_options") or {}), **plugin["exploration"]},
            posterior_options={**dict(values.get("posterior_options") or {}), **plugin["posterior"]},
        )
        spec.validate(check_env=check_env)
        return spec

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> RunSpec:
        """The spec a run directory's ``config.json`` (written by :meth:`to_config`) was made from."""
        names = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{k: v for k, v in config.items() if k in names})
        except TypeError as exc:
            raise UsageError(f"not a bongrl run config: {one_line(exc)}") from exc

    def replace(self, **changes: Any) -> RunSpec:
        """A copy with ``changes`` (not re-validated: call :meth:`validate` when they come from a user)."""
        return dataclasses.replace(self, **changes)

    def to_config(self) -> dict[str, Any]:
        """The JSON-ready dict ``config.json`` stores (with the agent's fully resolved config)."""
        out = dataclasses.asdict(self)
        out["agent_config"] = self.agent_config()
        return out

    # ------------------------------------------------------------------------------------------------ checking
    def validate(self, check_env: bool = True) -> None:
        """Check every field; raise :class:`UsageError` (or ``PluginError``) naming the first problem."""
        from bongrl import registry
        from bongrl.device import resolve_device

        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise UsageError(f"--seed must be a non-negative integer, got {self.seed!r}")
        for name in ("steps", "eval_every"):
            _non_negative_int(name, getattr(self, name))
        _non_negative_int("eval_episodes", self.eval_episodes, low=1)
        if self.checkpoint_every is not None:
            _non_negative_int("checkpoint_every", self.checkpoint_every, low=1)
        if not isinstance(self.env_kwargs, dict):
            raise UsageError(f"env kwargs must be a dict, got {self.env_kwargs!r}")
        self.agent_class()  # UnknownPluginError lists the registered agents
        for group, name, options in ((registry.POSTERIORS, self.posterior, self.posterior_options),
                                     (registry.EXPLORATION, self.exploration, self.exploration_options)):
            if not isinstance(options, dict):
                raise UsageError(f"{registry.KINDS[group]} options must be a dict, got {options!r}")
            try:
                registry.check_options(group, name, options)
            except registry.UnknownPluginError:
                raise
            except registry.PluginError as exc:
                raise UsageError(f"--set: {one_line(exc)}") from exc
        self.agent_config()
        try:
            resolve_device(self.device)
        except ValueError as exc:
            raise UsageError(f"--device: {one_line(exc)}") from exc
        if check_env:
            self.check_env()

    def agent_class(self) -> type:
        """The registered agent class (entry-point group ``bongrl.agents``)."""
        from bongrl import registry

        return registry.load_agent(self.agent)

    def agent_config(self) -> dict[str, Any]:
        """The agent's full config (class defaults filled in) for these hyperparameters; UsageError if a key is
        unknown or a value has the wrong type."""
        from bongrl.agents.base import config_from_kwargs

        cls = self.agent_class().config_class
        valid = sorted(f.name for f in dataclasses.fields(cls))
        unknown = sorted(set(self.hyperparameters) - set(valid))
        if unknown:
            raise UsageError(
                f"unknown {self.agent} hyperparameter(s) {', '.join(unknown)}; valid: {', '.join(valid)}"
            )
        try:  # typed: e.g. gamma="high" is refused here, not deep inside the agent
            return dataclasses.asdict(config_from_kwargs(cls, self.hyperparameters, self.agent))
        except (TypeError, ValueError) as exc:
            raise UsageError(f"bad hyperparameter value: {one_line(exc)}") from exc

    def make_env(self, seed: int | None = None) -> Any:
        """A single env (:func:`bongrl.envs.wrappers.make_env`) with this spec's kwargs."""
        from bongrl.envs.wrappers import make_env

        return make_env(self.env, seed=seed, **self.env_kwargs)

    def check_env(self) -> None:
        """Make the env once and let the agent class check its spaces (UsageError naming the problem)."""
        try:
            env = self.make_env()
        except Exception as exc:  # a broken third-party env or bad kwargs: a usage problem with that env
            kwargs = f" with {self.env_kwargs}" if self.env_kwargs else ""
            raise UsageError(f"cannot make environment {self.env!r}{kwargs}: {type(exc).__name__}: {one_line(exc)}"
                             ) from exc
        try:
            self.agent_class().check_env(env)
        except ValueError as exc:
            raise UsageError(f"{self.env}: the {self.agent} agent {one_line(exc)}") from exc
        finally:
            env.close()

    # ------------------------------------------------------------------------------------------------ using
    def build_agent(self) -> Any:
        """A fresh agent for this spec (``AgentClass.from_spec(self)``)."""
        return self.agent_class().from_spec(self)

    @property
    def unit(self) -> str:
        """"step" (episodic RL) or "round" (bandits): what ``steps`` counts."""
        return str(getattr(self.agent_class(), "unit", "step"))

    def evaluator(
        self, policies: tuple[str, ...] | None = None
    ) -> tuple[Callable[[Any], dict[str, Any]], Callable[[], None]]:
        """``(evaluate, close)``: the shared deterministic evaluation protocol for this run (its own env, episode
        seeds from :func:`bongrl.envs.wrappers.eval_seed`), scoring every policy the agent offers (or those named
        in ``policies``, e.g. ``("online",)``)."""
        from bongrl.callbacks import protocol_evaluator
        from bongrl.envs.wrappers import eval_seed

        return protocol_evaluator(self.env, self.eval_episodes, eval_seed(self.seed), self.env_kwargs, policies)
