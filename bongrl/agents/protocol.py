"""What the run layer needs from an agent (docs/design.md §7, §10).

An agent is one class registered in the entry-point group ``bongrl.agents`` (``pyproject.toml``)::

    [project.entry-points."bongrl.agents"]
    bongdqn = "bongrl.agents.bong_dqn:BongDQN"

It subclasses :class:`Agent`: ``config_class`` (the dataclass of its hyperparameters, which ``--set`` and presets
are checked against), ``unit`` ("step" for episodic RL, "round" for bandits), :meth:`Agent.check_env`,
:meth:`Agent.from_spec`, ``learn(total, callback=None, progress_bar=False)`` calling its callback with the SB3
protocol (:mod:`bongrl.callbacks`), ``predict``, ``save`` / ``load`` and a ``num_timesteps`` counter. The CLI's
``train`` / ``evaluate``, ``tune``, ``compare`` and distributed training then work for it unchanged.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # pragma: no cover
    from bongrl.runner.spec import RunSpec

__all__ = ["Agent"]


class Agent(ABC):
    """Base class of registered agents (see the module docstring)."""

    #: dataclass of the agent's hyperparameters (presets and ``--set`` are validated against its fields)
    config_class: ClassVar[type]
    #: "step": episodic env steps, evaluated by deterministic episodes; "round": bandit rounds, scored by regret
    unit: ClassVar[str] = "step"
    num_timesteps: int

    @classmethod
    def check_env(cls, env: Any) -> None:
        """Raise ValueError naming the problem if the agent cannot act in ``env`` (a gymnasium Env)."""
        import gymnasium as gym

        if not isinstance(env.action_space, gym.spaces.Discrete):
            raise ValueError(f"needs a Discrete action space, got {env.action_space}")

    @classmethod
    @abstractmethod
    def from_spec(cls, spec: RunSpec) -> Agent:
        """A fresh agent for a resolved :class:`~bongrl.runner.spec.RunSpec` (env, posterior, exploration,
        hyperparameters, seed, device)."""

    @abstractmethod
    def learn(self, total_timesteps: int, callback: Any = None, progress_bar: bool = False) -> Agent:
        """Train for ``total_timesteps`` more steps (rounds), driving ``callback`` (:mod:`bongrl.callbacks`)."""

    @abstractmethod
    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = False) -> tuple[Any, Any]:
        """SB3-style actions for an observation (or a batch)."""

    @abstractmethod
    def save(self, path: str | Path, include_replay: bool = False) -> Path:
        """Write a checkpoint (safetensors + JSON metadata, never a pickle)."""

    @classmethod
    @abstractmethod
    def load(cls, path: str | Path, env: Any = None, device: str = "auto") -> Agent:
        """Read a checkpoint written by :meth:`save`."""
