"""Gymnasium environments bundled with bongrl (docs/design.md §6).

Importing this module registers, with :func:`gymnasium.register` and lazy string entry points:

=============================  ==========================================================================
``bongrl/DeepSea-v0``          :class:`~bongrl.envs.deep_sea.DeepSea` (bsuite 0.3.6 Deep Sea)
``bongrl/WheelBandit-v0``      :class:`~bongrl.envs.wheel_bandit.WheelBandit` (Riquelme et al. 2018)
``bongrl/ClassificationBandit-v0``  :class:`~bongrl.envs.classification_bandit.ClassificationBandit`
``bongrl/BernoulliBandit-v0``  :class:`~bongrl.envs.bernoulli_bandit.BernoulliBandit`
=============================  ==========================================================================

It also registers the MinAtar games (Young & Tian 2019; 10×10×C image observations) as ``MinAtar/<Game>-v1``
(minimal action set, episodes cut at 10 000 steps) for ``<Game>`` in Asterix, Breakout, Freeway, Seaquest,
SpaceInvaders — the ids the ``minatar`` package gives them, lazily, so they need ``pip install 'bongrl[minatar]'``
only when made.

``gymnasium.make("bongrl/DeepSea-v0")`` therefore needs ``import bongrl`` (or ``import bongrl.envs``) first;
``gymnasium.make("bongrl.envs:bongrl/DeepSea-v0")`` imports this module itself.

Importing is cheap: only gymnasium's registry is touched; the environment modules (and scikit-learn, bsuite)
are imported when an environment is first made or one of the names below is first accessed.
"""

from __future__ import annotations

import importlib
from typing import Any

import gymnasium

__all__ = [
    "ENV_IDS",
    "MINATAR_IDS",
    "BernoulliBandit",
    "BsuiteDeepSea",
    "ClassificationBandit",
    "DeepSea",
    "WheelBandit",
    "evaluate",
    "make_env",
    "register_envs",
]

#: Registered id -> lazy entry point.
ENV_IDS: dict[str, str] = {
    "bongrl/DeepSea-v0": "bongrl.envs.deep_sea:DeepSea",
    "bongrl/WheelBandit-v0": "bongrl.envs.wheel_bandit:WheelBandit",
    "bongrl/ClassificationBandit-v0": "bongrl.envs.classification_bandit:ClassificationBandit",
    "bongrl/BernoulliBandit-v0": "bongrl.envs.bernoulli_bandit:BernoulliBandit",
}

#: MinAtar ids (the minatar package's own, minimal action set) -> game name; entry point minatar.gym:BaseEnv.
MINATAR_IDS: dict[str, str] = {
    f"MinAtar/{name}-v1": game
    for game, name in (("asterix", "Asterix"), ("breakout", "Breakout"), ("freeway", "Freeway"),
                       ("seaquest", "Seaquest"), ("space_invaders", "SpaceInvaders"))
}

#: A time limit for the MinAtar games (the package sets none, so a greedy evaluation policy that keeps the ball in
#: play would never end an episode).
MINATAR_MAX_STEPS = 10_000

_LAZY: dict[str, str] = {
    "DeepSea": "bongrl.envs.deep_sea",
    "WheelBandit": "bongrl.envs.wheel_bandit",
    "ClassificationBandit": "bongrl.envs.classification_bandit",
    "BernoulliBandit": "bongrl.envs.bernoulli_bandit",
    "BsuiteDeepSea": "bongrl.envs.bsuite_adapter",
    "make_env": "bongrl.envs.wrappers",
    "evaluate": "bongrl.envs.wrappers",
}


def register_envs() -> None:
    """Register every bongrl env with gymnasium; ids already registered are left alone (idempotent)."""
    for env_id, entry_point in ENV_IDS.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point=entry_point)
    for env_id, game in MINATAR_IDS.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point="minatar.gym:BaseEnv", max_episode_steps=MINATAR_MAX_STEPS,
                               kwargs={"game": game, "use_minimal_action_set": True})


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


register_envs()
