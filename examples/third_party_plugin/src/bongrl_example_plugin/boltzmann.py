"""Boltzmann (softmax) exploration rule ``boltzmann`` on the posterior-mean Q-values.

    π(a | s) = exp(Q_μ(s, a) / τ) / Σ_b exp(Q_μ(s, b) / τ)

τ → 0 approaches greedy; τ → ∞ approaches uniform. Actions are drawn with the ``torch.Generator`` the agent
passes to :meth:`Boltzmann.act`, so runs are reproducible from the agent's seed.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from bongrl.exploration.base import ExplorationRule, ValueModel

__all__ = ["Boltzmann"]


class Boltzmann(ExplorationRule):
    """Sample a ~ softmax(Q_μ(s, ·) / τ) independently for each environment, every step."""

    name = "boltzmann"
    deterministic = False

    def __init__(self, temperature: float = 1.0) -> None:
        if isinstance(temperature, bool) or not (
            isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0
        ):
            raise ValueError(f"temperature must be finite and > 0, got {temperature!r}")
        self.temperature = float(temperature)

    def probabilities(self, model: ValueModel, obs: Tensor) -> Tensor:
        """π(· | s) for every row of ``obs``, shape (B, A)."""
        q = model.q_values(obs)
        return torch.softmax(q / self.temperature, dim=-1)

    def act(self, model: ValueModel, obs: Tensor, generator: torch.Generator) -> Tensor:
        probs = self.probabilities(model, obs)
        draw = torch.multinomial(probs.to(generator.device), 1, generator=generator).squeeze(-1)
        return draw.to(device=probs.device, dtype=torch.int64)
