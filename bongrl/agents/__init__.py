"""Agents: thin compositions of a BONG posterior, an exploration rule and an env loop."""

from bongrl.agents.bong_dqn import BongDQN, BongDQNConfig
from bongrl.agents.thompson_bandit import ThompsonBandit, ThompsonBanditConfig

__all__ = ["BongDQN", "BongDQNConfig", "ThompsonBandit", "ThompsonBanditConfig"]
