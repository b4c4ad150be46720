"""Posterior families. Reach them through :mod:`bongrl.registry` (entry-point group ``bongrl.posteriors``)."""

from bongrl.posteriors.base import PosteriorFamily, State

__all__ = ["PosteriorFamily", "State"]
