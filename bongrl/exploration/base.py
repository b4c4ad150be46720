"""The exploration-rule protocol shared by the RL and bandit agents.

A rule turns a Bayesian value model (posterior over the weights of a network mapping an observation to one value
per action) into actions. Agents call :meth:`ExplorationRule.on_episode_start` when an environment (or bandit round
stream) starts an episode, and :meth:`ExplorationRule.act` every step; they never special-case a rule by name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = ["ValueModel", "ExplorationRule"]


@runtime_checkable
class ValueModel(Protocol):
    """What an agent exposes to its exploration rule. ``obs`` is a batch (B, ...) on the agent's device."""

    num_actions: int

    def q_values(self, obs: Tensor, theta: Tensor | None = None) -> Tensor:
        """Values (B, A) at θ (default: the posterior mean). θ of shape (B, P) gives row b the values at θ_b."""
        ...

    def q_std(self, obs: Tensor) -> Tensor:
        """Linearised predictive standard deviation sqrt(diag(J Σ Jᵀ)) of every action's value, (B, A)."""
        ...

    def sample_params(self, n: int) -> Tensor:
        """n posterior samples θ̃ ~ N(μ, Σ), shape (n, P)."""
        ...


class ExplorationRule(ABC):
    """Chooses actions from a :class:`ValueModel`. Holds per-environment state (e.g. Thompson samples) for
    ``num_envs`` parallel environments; :meth:`state_dict` makes it checkpointable."""

    name: str = ""
    #: True when the rule's actions depend only on the posterior mean (used for deterministic evaluation).
    deterministic: bool = False

    @classmethod
    def search_space(cls) -> dict[str, dict[str, Any]]:
        """The constructor options a tuner may search, as ``{name: {"type": "int" | "log" | "float" | "choice",
        "low": .., "high": .. (or "choices": [..]), "note": ..}}`` (the format of
        :meth:`bongrl.posteriors.base.PosteriorFamily.search_space`); default: none."""
        return {}

    def reset(self, num_envs: int) -> None:
        """Forget per-environment state; called once by the agent before acting in ``num_envs`` environments."""
        self.num_envs = num_envs

    def on_episode_start(self, model: ValueModel, env_ids: Tensor | list[int]) -> None:  # noqa: B027
        """Environments ``env_ids`` have just started a new episode."""

    def on_posterior_change(self, model: ValueModel) -> None:  # noqa: B027
        """The posterior was replaced wholesale (e.g. loaded): drop anything derived from the old one."""

    @abstractmethod
    def act(self, model: ValueModel, obs: Tensor, generator: torch.Generator) -> Tensor:
        """Actions (B,) as int64 for the observations of all ``num_envs`` environments."""

    def state_dict(self) -> dict[str, Tensor]:
        return {}

    def load_state_dict(self, sd: dict[str, Tensor]) -> None:  # noqa: B027
        pass
