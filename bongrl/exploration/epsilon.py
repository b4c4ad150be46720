"""ε-greedy on the posterior mean (the SB3 DQN behaviour; an ablation for the Bayesian rules)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from bongrl.exploration.base import ExplorationRule, ValueModel


class EpsilonGreedy(ExplorationRule):
    """With probability ε a uniform action, else argmax_a Q_μ(s, a). ε decays linearly from ``eps_start`` to
    ``eps_end`` over ``decay_steps`` calls of :meth:`act` (one call per vectorised env step)."""

    name = "epsilon"

    def __init__(self, eps_start: float = 0.1, eps_end: float = 0.01, decay_steps: int = 10_000) -> None:
        for n, v in (("eps_start", eps_start), ("eps_end", eps_end)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and 0.0 <= v <= 1.0):
                raise ValueError(f"{n} must be in [0, 1], got {v!r}")
        if not isinstance(decay_steps, int) or decay_steps < 0:
            raise ValueError(f"decay_steps must be a non-negative int, got {decay_steps!r}")
        self.eps_start, self.eps_end, self.decay_steps = float(eps_start), float(eps_end), decay_steps
        self.steps = 0

    @property
    def epsilon(self) -> float:
        if self.decay_steps == 0:
            return self.eps_end
        frac = min(1.0, self.steps / self.decay_steps)
        return self.eps_start + frac * (self.eps_end - self.eps_start)

    def act(self, model: ValueModel, obs: Tensor, generator: torch.Generator) -> Tensor:
        greedy = model.q_values(obs).argmax(-1)
        B = greedy.shape[0]
        u = torch.rand(B, generator=generator, device=generator.device).to(greedy.device)
        rand = torch.randint(model.num_actions, (B,), generator=generator, device=generator.device).to(greedy.device)
        eps = self.epsilon
        self.steps += 1
        return torch.where(u < eps, rand, greedy)

    def state_dict(self) -> dict[str, Tensor]:
        return {"steps": torch.tensor(self.steps, dtype=torch.int64)}

    def load_state_dict(self, sd: dict[str, Tensor]) -> None:
        self.steps = int(sd["steps"])
