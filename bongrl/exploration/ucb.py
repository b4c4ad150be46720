"""Upper confidence bound on the linearised predictive distribution of Q."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from bongrl.exploration.base import ExplorationRule, ValueModel


class UCB(ExplorationRule):
    """a = argmax_a Q_μ(s, a) + β · sqrt(J_a Σ J_aᵀ) (optimism in the face of uncertainty)."""

    name = "ucb"
    deterministic = True

    def __init__(self, beta: float = 1.0) -> None:
        if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta >= 0):
            raise ValueError(f"beta must be finite and >= 0, got {beta!r}")
        self.beta = float(beta)

    @classmethod
    def search_space(cls) -> dict[str, dict[str, Any]]:
        return {"beta": {"type": "log", "low": 0.1, "high": 10.0, "note": "optimism: standard deviations added"}}

    def act(self, model: ValueModel, obs: Tensor, generator: torch.Generator) -> Tensor:
        return (model.q_values(obs) + self.beta * model.q_std(obs)).argmax(-1)
