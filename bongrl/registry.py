"""Plugin registry: agents, posterior families and exploration rules found through Python entry points.

Groups: ``bongrl.agents``, ``bongrl.posteriors`` and ``bongrl.exploration``. Built-in plugins are registered through
the same entry points (in ``pyproject.toml``), so there is one code path. Plugins load lazily, on first request.

* An unknown name raises :class:`UnknownPluginError` listing the known names.
* A plugin that fails to import (or does not provide the right kind of object) raises :class:`PluginError` naming
  the plugin, its distribution and the cause — only when it is requested; :func:`list_plugins` reports it as broken.
* Two distributions registering the same name is an error (:class:`DuplicatePluginError`), not a silent override.
* An option a plugin's constructor does not take is an error listing the ones it does (:func:`create`); settings
  an agent offers to whichever plugin is chosen go in ``shared`` and are taken only where the constructor names them.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

__all__ = [
    "GROUPS",
    "PluginError",
    "UnknownPluginError",
    "DuplicatePluginError",
    "PluginInfo",
    "available",
    "list_plugins",
    "load",
    "create",
    "check_options",
    "option_names",
    "create_posterior",
    "create_exploration",
    "load_agent",
]

AGENTS = "bongrl.agents"
POSTERIORS = "bongrl.posteriors"
EXPLORATION = "bongrl.exploration"
GROUPS = {"agent": AGENTS, "posterior": POSTERIORS, "exploration": EXPLORATION}
#: what one plugin of each group is called in messages
KINDS = {AGENTS: "agent", POSTERIORS: "posterior family", EXPLORATION: "exploration rule"}


class PluginError(ValueError):
    """A plugin exists but cannot be used (import failure, wrong type, duplicate)."""


class UnknownPluginError(PluginError):
    """No plugin of that name is registered in the group."""


class DuplicatePluginError(PluginError):
    """Two entry points in one group share a name."""


@dataclass(frozen=True)
class PluginInfo:
    """What ``bongrl plugins`` shows for one entry point."""

    group: str
    name: str
    value: str
    distribution: str
    version: str
    status: str  # "ok", "broken: <cause>" or "not loaded"


def _group(group: str) -> str:
    if group in GROUPS:
        return GROUPS[group]
    if group in GROUPS.values():
        return group
    raise ValueError(f"unknown plugin group {group!r}; choose from {sorted(GROUPS)}")


def _dist_of(ep: EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "<unknown>", ""
    return dist.metadata["Name"] or "<unknown>", dist.version or ""


def _entry_points(group: str) -> dict[str, list[EntryPoint]]:
    by_name: dict[str, list[EntryPoint]] = {}
    seen: set[tuple[str, str, str]] = set()
    for ep in entry_points(group=group):
        dist, _ = _dist_of(ep)
        key = (ep.name, ep.value, dist)
        if key in seen:  # the same distribution visible twice on sys.path (e.g. editable + build dir)
            continue
        seen.add(key)
        by_name.setdefault(ep.name, []).append(ep)
    return by_name


def available(group: str) -> list[str]:
    """Sorted names registered in ``group`` ("agent" / "posterior" / "exploration" or the full group name)."""
    return sorted(_entry_points(_group(group)))


def _expected_base(group: str) -> type | None:
    if group == AGENTS:
        from bongrl.agents.protocol import Agent

        return Agent
    if group == POSTERIORS:
        from bongrl.posteriors.base import PosteriorFamily

        return PosteriorFamily
    try:
        from bongrl.exploration.base import ExplorationRule
    except ImportError:  # pragma: no cover - exploration package not importable
        return None
    return ExplorationRule


def _single(group: str, name: str) -> EntryPoint:
    eps = _entry_points(group)
    if not isinstance(name, str) or name not in eps:
        known = ", ".join(sorted(eps)) or "none"
        raise UnknownPluginError(f"unknown {KINDS[group]} {name!r}; known: {known}")
    if len(eps[name]) > 1:
        owners = ", ".join(f"{_dist_of(ep)[0]} ({ep.value})" for ep in eps[name])
        raise DuplicatePluginError(f"plugin name {name!r} in group {group} is registered more than once: {owners}")
    return eps[name][0]


def load(group: str, name: str) -> type:
    """Import and return the class registered as ``name`` in ``group``.

    Raises:
        UnknownPluginError: no such name (the message lists the known ones).
        DuplicatePluginError: the name is registered by more than one entry point.
        PluginError: the plugin failed to import or is not the right kind of class.
    """
    group = _group(group)
    ep = _single(group, name)
    dist, version = _dist_of(ep)
    try:
        obj = ep.load()
    except (Exception, SystemExit) as exc:  # any import-time failure of third-party code (even sys.exit())
        raise PluginError(
            f"plugin {name!r} ({ep.value}) from distribution {dist} {version} failed to load: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    base = _expected_base(group)
    if base is not None and not (inspect.isclass(obj) and issubclass(obj, base)):
        raise PluginError(
            f"plugin {name!r} ({ep.value}) from distribution {dist} {version} is not a "
            f"{base.__module__}.{base.__name__} subclass (got {obj!r})"
        )
    if inspect.isabstract(obj):
        missing = ", ".join(sorted(getattr(obj, "__abstractmethods__", ())))
        raise PluginError(
            f"plugin {name!r} ({ep.value}) from distribution {dist} {version} is abstract: "
            f"it does not implement {missing}"
        )
    return obj


def option_names(cls: type) -> set[str] | None:
    """The keyword options ``cls``'s constructor takes (None: it takes any, through ``**kwargs``)."""
    params = inspect.signature(cls).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def check_options(group: str, name: str, options: Mapping[str, Any]) -> type:
    """Raise :class:`PluginError` if plugin ``name`` does not take every key of ``options`` (the message lists the
    options it does take); returns the plugin class."""
    group = _group(group)
    cls = load(group, name)
    valid = option_names(cls)
    unknown = sorted(set(options) - valid) if valid is not None else []
    if unknown:
        listed = ", ".join(sorted(valid)) if valid else "none"
        raise PluginError(f"{KINDS[group]} {name!r} has no option(s) {', '.join(unknown)}; valid: {listed}")
    return cls


def create(group: str, name: str, shared: Mapping[str, Any] | None = None, **options: Any) -> Any:
    """Instantiate plugin ``name`` with ``options``; an option its constructor does not take is an error
    (:class:`PluginError` listing the valid ones).

    ``shared`` are settings offered to every plugin of the group (an agent's ``rank`` or ``every``, say): each
    plugin takes the ones its constructor names and ignores the rest. ``options`` override them.
    """
    cls = check_options(group, name, options)
    valid = option_names(cls)
    offered = {k: v for k, v in (shared or {}).items() if valid is None or k in valid}
    accepted = {**offered, **options}
    try:
        return cls(**accepted)
    except (TypeError, ValueError) as exc:
        raise PluginError(f"{KINDS[_group(group)]} {name!r} rejected its options {accepted}: {exc}") from exc


def load_agent(name: str) -> type:
    """The agent class registered as ``name`` (e.g. ``load_agent("bongdqn")``)."""
    return load(AGENTS, name)


def create_posterior(name: str, shared: Mapping[str, Any] | None = None, **options: Any) -> Any:
    """A posterior family instance by registered name (e.g. ``create_posterior("dlr", rank=10)``)."""
    return create(POSTERIORS, name, shared, **options)


def create_exploration(name: str, shared: Mapping[str, Any] | None = None, **options: Any) -> Any:
    """An exploration rule instance by registered name (e.g. ``create_exploration("thompson", every=1)``)."""
    return create(EXPLORATION, name, shared, **options)


def list_plugins(load_plugins: bool = True) -> list[PluginInfo]:
    """Every registered plugin in every group; broken ones are reported, never raised."""
    out: list[PluginInfo] = []
    for group in GROUPS.values():
        for name, eps in sorted(_entry_points(group).items()):
            for ep in eps:
                dist, version = _dist_of(ep)
                status = "not loaded"
                if len(eps) > 1:
                    status = "broken: duplicate name"
                elif load_plugins:
                    try:
                        load(group, name)
                        status = "ok"
                    except PluginError as exc:
                        cause = exc.__cause__
                        status = f"broken: {type(cause).__name__}: {cause}" if cause else f"broken: {exc}"
                out.append(PluginInfo(group, name, ep.value, dist, version, status))
    return out
