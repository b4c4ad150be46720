"""Greedy on the posterior mean: no exploration (an ablation, and the evaluation policy)."""

from __future__ import annotations

import torch
from torch import Tensor

from bongrl.exploration.base import ExplorationRule, ValueModel


class Greedy(ExplorationRule):
    """a = argmax_a Q_μ(s, a)."""

    name = "greedy"
    deterministic = True

    def act(self, model: ValueModel, obs: Tensor, generator: torch.Generator) -> Tensor:
        return model.q_values(obs).argmax(-1)
