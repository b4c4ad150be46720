"""Non-neural bandit baselines: uniform random, exact linear Thompson sampling, Beta–Bernoulli Thompson
sampling.

The neural ones (NeuralLinear, ε-greedy MLP) are in :mod:`bongrl.baselines.neural_bandits`. All share the
interface and input checks of :class:`bongrl.baselines.base.BaseBanditAgent`.
"""

from __future__ import annotations

import numpy as np

from bongrl.baselines.base import BaseBanditAgent, _check_int, _check_positive
from bongrl.baselines.nig import NIGLinearPosterior

__all__ = ["UniformRandom", "LinearTS", "BetaBernoulliTS"]


class UniformRandom(BaseBanditAgent):
    """Pick an arm uniformly at random every round; learn nothing ("Uniform" in Riquelme et al. 2018).

    ``update`` still validates its input, so it fails on the same bad data as the other agents.
    """

    name = "uniform"

    def __init__(self, n_arms: int, context_dim: int, seed: int = 0) -> None:
        super().__init__(n_arms, context_dim, seed)

    def _act(self, x: np.ndarray) -> int:
        return int(self.rng.integers(self.n_arms))

    def _update(self, x: np.ndarray, arm: int, reward: float) -> None:
        pass


class LinearTS(BaseBanditAgent):
    """Exact linear Thompson sampling with a normal-inverse-gamma prior per arm ("LinFullPost").

    Reference: Riquelme, Tucker & Snoek (2018), "Deep Bayesian Bandits Showdown", ICLR, §2 and §3
    "LinFullPost", and their ``deep_contextual_bandits/bandits/algorithms/linear_full_posterior_sampling.py``.

    Each arm k has its own Bayesian linear regression on the augmented context x̃ = [x, 1] (the last
    coefficient is the intercept)::

        σ²ₖ ~ InvGamma(a₀, b₀),  βₖ | σ²ₖ ~ N(0, σ²ₖ (λ I)⁻¹),  r | x, k ~ N(βₖᵀ x̃, σ²ₖ)

    and the exact posterior after the nₖ rounds in which arm k was played (rows X̃ₖ, rewards yₖ)::

        Λₙ = λ I + X̃ₖᵀX̃ₖ,  μₙ = Λₙ⁻¹ X̃ₖᵀyₖ,  aₙ = a₀ + nₖ/2,  bₙ = b₀ + ½ (yₖᵀyₖ − μₙᵀ Λₙ μₙ)

    ``update`` adds one rank-1 term to arm k's sufficient statistics and refactors Λₙ = L Lᵀ (Cholesky; see
    :class:`~bongrl.baselines.nig.NIGLinearPosterior`). ``act`` draws, for every arm, σ²ₖ ~ InvGamma(aₙ, bₙ)
    and βₖ ~ N(μₙ, σ²ₖ Λₙ⁻¹), and plays argmaxₖ βₖᵀ x̃.

    Defaults are the paper's (``example_main.py``, ``hparams_linear``): ``lambda_prior=0.25``, ``a0=b0=6``,
    ``initial_pulls=2`` (play the arms round-robin until each has been played ``initial_pulls`` times).
    """

    name = "lin-ts"

    def __init__(
        self,
        n_arms: int,
        context_dim: int,
        seed: int = 0,
        lambda_prior: float = 0.25,
        a0: float = 6.0,
        b0: float = 6.0,
        initial_pulls: int = 2,
    ) -> None:
        super().__init__(n_arms, context_dim, seed)
        self.lambda_prior = _check_positive("lambda_prior", lambda_prior)
        self.a0 = _check_positive("a0", a0)
        self.b0 = _check_positive("b0", b0)
        self.initial_pulls = _check_int("initial_pulls", initial_pulls, 0)
        self.posteriors = [
            NIGLinearPosterior(self.context_dim + 1, self.lambda_prior, self.a0, self.b0)
            for _ in range(self.n_arms)
        ]

    @staticmethod
    def _augment(x: np.ndarray) -> np.ndarray:
        return np.append(x, 1.0)

    def _act(self, x: np.ndarray) -> int:
        rr = self._round_robin(self.initial_pulls)
        if rr is not None:
            return rr
        xt = self._augment(x)
        values = [post.sample(self.rng) @ xt for post in self.posteriors]
        return int(np.argmax(values))

    def _update(self, x: np.ndarray, arm: int, reward: float) -> None:
        self.posteriors[arm].add(self._augment(x), reward)

    def posterior(self, arm: int) -> tuple[np.ndarray, np.ndarray, float, float]:
        """``(μₙ, Λₙ, aₙ, bₙ)`` of ``arm`` (copies)."""
        p = self.posteriors[self._check_arm(arm)]
        return p.mu.copy(), p.precision.copy(), p.a, p.b


class BetaBernoulliTS(BaseBanditAgent):
    """Thompson sampling for the Bernoulli multi-armed bandit with a conjugate Beta prior per arm.

    Reference: Thompson (1933); Chapelle & Li (2011), "An Empirical Evaluation of Thompson Sampling",
    Algorithm 2; Russo et al. (2018), "A Tutorial on Thompson Sampling", §3. Arm k has θₖ ~ Beta(α₀, β₀) and
    r | k ~ Bernoulli(θₖ); after Sₖ successes and Fₖ failures the posterior is Beta(α₀ + Sₖ, β₀ + Fₖ) (exact).
    ``act`` draws θ̃ₖ ~ Beta(αₖ, βₖ) for every arm and plays argmaxₖ θ̃ₖ. The context is ignored
    (``context_dim`` may be 0) but is still validated. Rewards must be 0 or 1 (``ValueError`` otherwise).
    Defaults α₀ = β₀ = 1: the uniform prior.
    """

    name = "beta-bernoulli"

    def __init__(
        self, n_arms: int, context_dim: int = 0, seed: int = 0, alpha0: float = 1.0, beta0: float = 1.0
    ) -> None:
        super().__init__(n_arms, context_dim, seed)
        self.alpha0 = _check_positive("alpha0", alpha0)
        self.beta0 = _check_positive("beta0", beta0)
        self.successes = np.zeros(self.n_arms, dtype=np.int64)
        self.failures = np.zeros(self.n_arms, dtype=np.int64)

    @property
    def alpha(self) -> np.ndarray:
        return self.alpha0 + self.successes

    @property
    def beta(self) -> np.ndarray:
        return self.beta0 + self.failures

    def _check_reward(self, reward: object) -> float:
        r = super()._check_reward(reward)
        if r not in (0.0, 1.0):
            raise ValueError(f"reward: Beta-Bernoulli rewards must be 0 or 1, got {r}")
        return r

    def _act(self, x: np.ndarray) -> int:
        return int(np.argmax(self.rng.beta(self.alpha, self.beta)))

    def _update(self, x: np.ndarray, arm: int, reward: float) -> None:
        if reward == 1.0:
            self.successes[arm] += 1
        else:
            self.failures[arm] += 1

    def posterior(self, arm: int) -> tuple[float, float]:
        """``(αₖ, βₖ)`` of ``arm``."""
        a = self._check_arm(arm)
        return float(self.alpha[a]), float(self.beta[a])
