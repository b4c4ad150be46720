"""Boltzmann (softmax) exploration on the posterior mean: a ∼ softmax(Q_μ(s, ·) / τ).

A non-Bayesian baseline rule, as ε-greedy is: it dithers in proportion to value gaps instead of to the
posterior's uncertainty. It ignores Σ, so it shows what the posterior adds over the same mean network.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from bongrl.exploration.base import ExplorationRule, ValueModel


class Boltzmann(ExplorationRule):
    """Sample each action from softmax(Q_μ(s, ·) / ``temperature``); τ → 0 is greedy, τ → ∞ uniform. Values are in
    the agent's TD-target units (rewards over the agent's reward scale), so τ = 1 means "one reward unit"."""

    name = "boltzmann"

    def __init__(self, temperature: float = 1.0) -> None:
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
                or not math.isfinite(temperature) or temperature <= 0:
            raise ValueError(f"temperature must be a positive number, got {temperature!r}")
        self.temperature = float(temperature)

    @classmethod
    def search_space(cls) -> dict[str, dict[str, Any]]:
        return {"temperature": {"type": "log", "low": 0.01, "high": 10.0, "note": "softmax temperature τ"}}

    def act(self, model: ValueModel, obs: Tensor, generator: torch.Generator) -> Tensor:
        q = model.q_values(obs)
        probs = torch.softmax((q / self.temperature).to(torch.float64), dim=-1).cpu()
        return torch.multinomial(probs, 1, generator=generator).reshape(-1).to(q.device)
