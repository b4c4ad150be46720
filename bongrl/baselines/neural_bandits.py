"""Neural bandit baselines: NeuralLinear (Bayesian last layer) and an ε-greedy MLP. torch, CPU.

Both use the network of Riquelme, Tucker & Snoek (2018), "Deep Bayesian Bandits Showdown", ICLR (code:
``tensorflow/models/research/deep_contextual_bandits``, ``neural_bandit_model.py``): an MLP body (default one
hidden layer of 50 ReLU units) shared by all arms, with one linear output per arm. It is trained on the replay
of *all* observed ``(context, arm, reward)`` by squared error on the arm that was played only::

    L = (1/B) Σᵢ (f(xᵢ)[aᵢ] − rᵢ)²        (minibatch of B rows drawn uniformly with replacement)

every ``train_every`` rounds for ``train_steps`` minibatch steps.

Defaults follow the paper's ``example_main.py`` (``hparams_nlinear``) wherever it sets a value:

=====================  =========  ==========================================================================
hyperparameter         default    source
=====================  =========  ==========================================================================
hidden                 (50,)      ``layer_sizes=[50]``
init_scale             0.3        weights ~ U(−0.3, 0.3), biases 0 (``init_scale=0.3``)
train_every            50         ``training_freq_network=50``
train_steps            100        ``training_epochs=100`` (minibatch steps, not epochs, in their ``train``)
batch_size             512        ``batch_size=512``
optimizer              "rmsprop"  ``tf.train.RMSPropOptimizer`` (ρ 0.9, ε 1e-10, mean-square slots start at 1)
lr                     0.1        ``initial_lr=0.1``
lr_decay_rate          0.5        ``inverse_time_decay``: lr_k = lr / (1 + 0.5 k), k = step within a
                                  retraining (``reset_lr=True``)
max_grad_norm          5.0        ``max_grad_norm=5.0`` (global-norm clipping)
initial_pulls          2          ``initial_pulls=2`` (round-robin start)
a0, b0, lambda_prior   6, 6, 0.25 ``a0=6, b0=6, lambda_prior=0.25`` (NeuralLinear only)
=====================  =========  ==========================================================================

``optimizer="adam"`` is also available (its defaults then become ``lr=1e-3``, ``lr_decay_rate=0``: Kingma &
Ba's Adam defaults, constant step size). Deviations from the reference code: the learning rate is reset at the
start of every retraining as ``reset_lr=True`` intends (in the TF code the reset tensor is never wired into
the optimizer, so the decay runs on across retrainings); and NeuralLinear refreshes every arm's linear
posterior exactly after each round, where the TF code skips the arm of the round just played until a later
round (``actions[:-training_freq]``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from bongrl.baselines.base import BaseBanditAgent, _check_int, _check_positive
from bongrl.baselines.nig import NIGLinearPosterior

__all__ = ["NeuralLinear", "EpsilonGreedyNeural", "TFRMSProp"]


class TFRMSProp(torch.optim.Optimizer):
    """RMSProp as in ``tf.train.RMSPropOptimizer`` (TF1), which the reference code uses.

    ms ← ρ ms + (1 − ρ) g²;  θ ← θ − lr · g / √(ms + ε), with ms initialised to **1** (PyTorch's RMSprop
    starts it at 0, which makes the first steps ≈ lr/√(1−ρ) per coordinate — far too large at lr = 0.1).
    """

    def __init__(self, params, lr: float = 0.1, rho: float = 0.9, eps: float = 1e-10) -> None:
        super().__init__(params, {"lr": lr, "rho": rho, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "ms" not in state:
                    state["ms"] = torch.ones_like(p)
                ms = state["ms"]
                ms.mul_(group["rho"]).addcmul_(p.grad, p.grad, value=1.0 - group["rho"])
                p.addcdiv_(p.grad, (ms + group["eps"]).sqrt(), value=-group["lr"])
        return None


class _MLP(nn.Module):
    """Body (Linear → ReLU)×len(hidden) shared by all arms, then one linear output per arm."""

    def __init__(
        self, in_dim: int, hidden: Sequence[int], n_out: int, init_scale: float, gen: torch.Generator
    ):
        super().__init__()
        layers: list[nn.Module] = []
        d = in_dim
        for h in hidden:
            layers += [nn.Linear(d, h), nn.ReLU()]
            d = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(d, n_out)
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.Linear):
                    m.weight.uniform_(-init_scale, init_scale, generator=gen)
                    m.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


class _NeuralBanditBase(BaseBanditAgent):
    """Replay buffer, MLP and its periodic retraining, shared by the two neural baselines."""

    def __init__(
        self,
        n_arms: int,
        context_dim: int,
        seed: int = 0,
        hidden: Sequence[int] = (50,),
        train_every: int = 50,
        train_steps: int = 100,
        batch_size: int = 512,
        optimizer: str = "rmsprop",
        lr: float | None = None,
        lr_decay_rate: float | None = None,
        max_grad_norm: float | None = 5.0,
        init_scale: float = 0.3,
        initial_pulls: int = 2,
    ) -> None:
        super().__init__(n_arms, context_dim, seed)
        if self.context_dim < 1:
            raise ValueError(f"context_dim: neural agents need context_dim >= 1, got {self.context_dim}")
        if isinstance(hidden, (int, np.integer)):
            hidden = (int(hidden),)
        self.hidden = tuple(_check_int("hidden", h, 1) for h in hidden)
        if not self.hidden:
            raise ValueError("hidden: needs at least one hidden layer")
        self.train_every = _check_int("train_every", train_every, 1)
        self.train_steps = _check_int("train_steps", train_steps, 0)
        self.batch_size = _check_int("batch_size", batch_size, 1)
        if optimizer not in ("rmsprop", "adam"):
            raise ValueError(f"optimizer: expected 'rmsprop' or 'adam', got {optimizer!r}")
        self.optimizer_name = optimizer
        self.lr = _check_positive("lr", lr if lr is not None else (0.1 if optimizer == "rmsprop" else 1e-3))
        self.lr_decay_rate = _check_positive(
            "lr_decay_rate",
            lr_decay_rate if lr_decay_rate is not None else (0.5 if optimizer == "rmsprop" else 0.0),
            allow_zero=True,
        )
        self.max_grad_norm = (
            None if max_grad_norm is None else _check_positive("max_grad_norm", max_grad_norm)
        )
        self.init_scale = _check_positive("init_scale", init_scale)
        self.initial_pulls = _check_int("initial_pulls", initial_pulls, 0)

        self.gen = torch.Generator().manual_seed(self.seed)
        self.net = _MLP(self.context_dim, self.hidden, self.n_arms, self.init_scale, self.gen)
        if optimizer == "rmsprop":
            self.opt: torch.optim.Optimizer = TFRMSProp(self.net.parameters(), lr=self.lr)
        else:
            self.opt = torch.optim.Adam(self.net.parameters(), lr=self.lr)
        self.times_trained = 0

        cap = 256
        self._X = np.zeros((cap, self.context_dim), dtype=np.float32)
        self._A = np.zeros(cap, dtype=np.int64)
        self._R = np.zeros(cap, dtype=np.float64)

    # ------------------------------------------------------------------ replay
    @property
    def n_data(self) -> int:
        return self.t

    def replay(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All observed ``(contexts, arms, rewards)`` (views; do not modify)."""
        n = self.t
        return self._X[:n], self._A[:n], self._R[:n]

    def _store(self, x: np.ndarray, arm: int, reward: float) -> None:
        n = self.t
        if n == len(self._A):
            self._X = np.concatenate([self._X, np.zeros_like(self._X)])
            self._A = np.concatenate([self._A, np.zeros_like(self._A)])
            self._R = np.concatenate([self._R, np.zeros_like(self._R)])
        self._X[n] = x
        self._A[n] = arm
        self._R[n] = reward

    # ------------------------------------------------------------------ network
    @torch.no_grad()
    def _features(self, X: np.ndarray) -> np.ndarray:
        """Last hidden layer's activations, float64, shape (n, hidden[-1])."""
        return self.net.body(torch.as_tensor(X, dtype=torch.float32)).double().numpy()

    @torch.no_grad()
    def predict(self, context: np.ndarray) -> np.ndarray:
        """The network's predicted reward of every arm for one context."""
        x = self._check_context(context)
        return self.net(torch.as_tensor(x, dtype=torch.float32)).double().numpy()

    def _train(self) -> None:
        """``train_steps`` minibatch steps of squared error on the played arm over the whole replay."""
        n = self.t + 1  # the current round is already stored
        X = torch.from_numpy(self._X[:n])
        A = torch.from_numpy(self._A[:n])
        R = torch.from_numpy(self._R[:n]).float()
        params = list(self.net.parameters())
        self.net.train()
        for k in range(self.train_steps):
            idx = torch.randint(n, (self.batch_size,), generator=self.gen)
            pred = self.net(X[idx]).gather(1, A[idx, None]).squeeze(1)
            loss = (pred - R[idx]).square().sum() / self.batch_size
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            if self.max_grad_norm is not None:
                nn.utils.clip_grad_norm_(params, self.max_grad_norm)
            for group in self.opt.param_groups:
                group["lr"] = self.lr / (1.0 + self.lr_decay_rate * k)
            self.opt.step()
        self.net.eval()
        self.times_trained += 1

    def _update(self, x: np.ndarray, arm: int, reward: float) -> None:
        self._store(x, arm, reward)
        self._observe(x, arm, reward)
        if (self.t + 1) % self.train_every == 0 and self.train_steps > 0:
            self._train()
            self._after_train()

    def _observe(self, x: np.ndarray, arm: int, reward: float) -> None:
        """Per-round bookkeeping besides the replay (NeuralLinear: the linear posterior)."""

    def _after_train(self) -> None:
        """Called after each retraining of the network."""


class NeuralLinear(_NeuralBanditBase):
    """Thompson sampling with an exact Bayesian linear regression on a neural network's last-layer features.

    Reference: Riquelme, Tucker & Snoek (2018), "Deep Bayesian Bandits Showdown", ICLR, §3 "NeuralLinear", and
    ``neural_linear_sampling.py``. The MLP (see the module docstring) supplies features z(x) = its last hidden
    layer. Each arm k has the normal-inverse-gamma model of :class:`~bongrl.baselines.bandits.LinearTS` on z
    (no intercept, as in the reference): with the rows Zₖ and rewards yₖ of the rounds in which k was played::

        Λₙ = λ I + ZₖᵀZₖ,  μₙ = Λₙ⁻¹ Zₖᵀyₖ,  aₙ = a₀ + nₖ/2,  bₙ = b₀ + ½ (yₖᵀyₖ − μₙᵀ Λₙ μₙ)

    Each round adds z(x) of the played arm as one rank-1 term; whenever the network is retrained the features
    change, so every arm's posterior is recomputed from all its data under the new features. ``act``
    draws σ²ₖ ~ InvGamma(aₙ, bₙ), βₖ ~ N(μₙ, σ²ₖ Λₙ⁻¹) for every arm and plays argmaxₖ βₖᵀ z(x).
    Defaults: ``a0=b0=6``, ``lambda_prior=0.25`` (the paper's; also docs/design.md §6); the rest are in the
    module docstring.
    """

    name = "neural-linear"

    def __init__(
        self,
        n_arms: int,
        context_dim: int,
        seed: int = 0,
        lambda_prior: float = 0.25,
        a0: float = 6.0,
        b0: float = 6.0,
        **network_hparams,
    ) -> None:
        super().__init__(n_arms, context_dim, seed, **network_hparams)
        self.lambda_prior = _check_positive("lambda_prior", lambda_prior)
        self.a0 = _check_positive("a0", a0)
        self.b0 = _check_positive("b0", b0)
        self.latent_dim = self.hidden[-1]
        self.posteriors = [
            NIGLinearPosterior(self.latent_dim, self.lambda_prior, self.a0, self.b0)
            for _ in range(self.n_arms)
        ]

    def _act(self, x: np.ndarray) -> int:
        rr = self._round_robin(self.initial_pulls)
        if rr is not None:
            return rr
        z = self._features(x[None])[0]
        values = [post.sample(self.rng) @ z for post in self.posteriors]
        return int(np.argmax(values))

    def _observe(self, x: np.ndarray, arm: int, reward: float) -> None:
        self.posteriors[arm].add(self._features(x[None])[0], reward)

    def _after_train(self) -> None:
        n = self.t + 1
        Z = self._features(self._X[:n])
        A, R = self._A[:n], self._R[:n]
        for k, post in enumerate(self.posteriors):
            mask = A == k
            post.fit(Z[mask], R[mask])

    def posterior(self, arm: int) -> tuple[np.ndarray, np.ndarray, float, float]:
        """``(μₙ, Λₙ, aₙ, bₙ)`` of ``arm``'s last-layer regression (copies)."""
        p = self.posteriors[self._check_arm(arm)]
        return p.mu.copy(), p.precision.copy(), p.a, p.b


class EpsilonGreedyNeural(_NeuralBanditBase):
    """ε-greedy on the MLP's predicted rewards (the network of :class:`NeuralLinear`, trained the same way).

    Each round (after the round-robin start) plays a uniformly random arm with probability εₜ and argmaxₖ
    f(x)[k] otherwise. εₜ = ``epsilon`` (default 0.05, constant) — no reference fixes this value: Riquelme et
    al. (2018) only report the greedy network (ε = 0, "NeuralGreedy"), which ``epsilon=0`` reproduces. With
    ``epsilon_decay_rounds = T > 0`` it instead decays linearly from 1 to ``epsilon`` over the first T rounds
    (εₜ = max(ε, 1 − (1 − ε) t / T), the schedule of DQN / stable-baselines3's ``exploration_fraction``).
    """

    name = "eps-greedy-nn"

    def __init__(
        self,
        n_arms: int,
        context_dim: int,
        seed: int = 0,
        epsilon: float = 0.05,
        epsilon_decay_rounds: int = 0,
        **network_hparams,
    ) -> None:
        super().__init__(n_arms, context_dim, seed, **network_hparams)
        self.epsilon = _check_positive("epsilon", epsilon, allow_zero=True)
        if self.epsilon > 1:
            raise ValueError(f"epsilon: must be in [0, 1], got {self.epsilon}")
        self.epsilon_decay_rounds = _check_int("epsilon_decay_rounds", epsilon_decay_rounds, 0)

    @property
    def current_epsilon(self) -> float:
        if self.epsilon_decay_rounds == 0:
            return self.epsilon
        return max(self.epsilon, 1.0 - (1.0 - self.epsilon) * self.t / self.epsilon_decay_rounds)

    @torch.no_grad()
    def _act(self, x: np.ndarray) -> int:
        rr = self._round_robin(self.initial_pulls)
        if rr is not None:
            return rr
        if self.rng.random() < self.current_epsilon:
            return int(self.rng.integers(self.n_arms))
        return int(self.net(torch.as_tensor(x, dtype=torch.float32)).argmax())
