"""Exploration rules. Reach them through :mod:`bongrl.registry` (entry-point group ``bongrl.exploration``)."""

from bongrl.exploration.base import ExplorationRule, ValueModel

__all__ = ["ExplorationRule", "ValueModel"]
