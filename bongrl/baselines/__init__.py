"""Bandit baselines sharing the :class:`BanditAgent` interface with the BONG bandit agent (docs/design.md §6).

``Cls(n_arms, context_dim, seed=0, **hyperparameters)``; ``act(context) -> arm``;
``update(context, arm, reward)``. Independent of the environments in :mod:`bongrl.envs`.
"""

from bongrl.baselines.bandits import BetaBernoulliTS, LinearTS, UniformRandom
from bongrl.baselines.base import BanditAgent, BaseBanditAgent
from bongrl.baselines.neural_bandits import EpsilonGreedyNeural, NeuralLinear
from bongrl.baselines.nig import NIGLinearPosterior, nig_posterior_batch

BASELINES = {
    "uniform": UniformRandom,
    "lin-ts": LinearTS,
    "neural-linear": NeuralLinear,
    "eps-greedy-nn": EpsilonGreedyNeural,
    "beta-bernoulli": BetaBernoulliTS,
}

__all__ = [
    "BASELINES",
    "BanditAgent",
    "BaseBanditAgent",
    "BetaBernoulliTS",
    "EpsilonGreedyNeural",
    "LinearTS",
    "NIGLinearPosterior",
    "NeuralLinear",
    "UniformRandom",
    "nig_posterior_batch",
]
