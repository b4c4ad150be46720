"""Thompson sampling: act greedily on a posterior sample θ̃ ~ N(μ, Σ) held per environment."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from bongrl.exploration.base import ExplorationRule, ValueModel


class Thompson(ExplorationRule):
    """Resample θ̃ per episode (``every=0``, the default: deep, temporally consistent exploration), every k
    steps (``every=k``), or every step (``every=1``). Each environment keeps its own sample."""

    name = "thompson"

    def __init__(self, every: int = 0) -> None:
        if not isinstance(every, int) or every < 0:
            raise ValueError(f"every must be 0 (per episode) or a positive number of steps, got {every!r}")
        self.every = every
        self.theta: Tensor | None = None
        self.steps: Tensor | None = None  # per-env steps since the last draw; None until reset()
        self.resamples = 0  # total number of θ̃ draws (diagnostics and tests)

    @classmethod
    def search_space(cls) -> dict[str, dict[str, Any]]:
        return {
            "every": {
                "type": "choice",
                "choices": [0, 1, 10, 100],
                "note": "resample θ̃ every k steps; 0 = once per episode (deep exploration), 1 = every step",
            }
        }

    def reset(self, num_envs: int) -> None:
        super().reset(num_envs)
        self.theta = None
        self.steps = torch.zeros(num_envs, dtype=torch.int64)

    def _resample(self, model: ValueModel, env_ids: Tensor) -> None:
        if len(env_ids) == 0:
            return
        fresh = model.sample_params(len(env_ids))
        if self.theta is None:
            self.theta = fresh.new_zeros(self.num_envs, fresh.shape[1])
            if len(env_ids) != self.num_envs:  # first draw must cover every env
                env_ids = torch.arange(self.num_envs)
                fresh = model.sample_params(self.num_envs)
        self.theta[env_ids.to(self.theta.device)] = fresh
        self.steps[env_ids.cpu()] = 0
        self.resamples += len(env_ids)

    def on_episode_start(self, model: ValueModel, env_ids: Tensor | list[int]) -> None:
        if self.every == 0:
            self._resample(model, torch.as_tensor(env_ids, dtype=torch.int64).reshape(-1))

    def on_posterior_change(self, model: ValueModel) -> None:
        self.theta = None

    def act(self, model: ValueModel, obs: Tensor, generator: torch.Generator) -> Tensor:
        if self.theta is None:
            self._resample(model, torch.arange(self.num_envs))
        elif self.every > 0:
            due = torch.nonzero(self.steps >= self.every).reshape(-1)
            self._resample(model, due)
        self.steps += 1
        return model.q_values(obs, self.theta).argmax(-1)

    def state_dict(self) -> dict[str, Tensor]:
        if self.steps is None:  # never reset: nothing drawn yet (an agent saved before it acted)
            return {}
        sd = {"steps": self.steps.clone(), "resamples": torch.tensor(self.resamples)}
        if self.theta is not None:
            sd["theta"] = self.theta.clone()
        return sd

    def load_state_dict(self, sd: dict[str, Tensor]) -> None:
        self.steps = sd["steps"].clone()
        self.num_envs = int(self.steps.shape[0])
        self.resamples = int(sd["resamples"])
        self.theta = sd["theta"].clone() if "theta" in sd else None
