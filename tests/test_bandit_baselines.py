"""Bandit baselines (bongrl.baselines): exact conjugate posteriors, learning, reproducibility, bad input.

All data come from small synthetic generators defined here (no dependency on bongrl.envs).
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from bongrl.baselines import (
    BASELINES,
    BanditAgent,
    BetaBernoulliTS,
    EpsilonGreedyNeural,
    LinearTS,
    NeuralLinear,
    NIGLinearPosterior,
    UniformRandom,
    nig_posterior_batch,
)
from bongrl.baselines.neural_bandits import TFRMSProp

# ---------------------------------------------------------------------------- synthetic bandits


def linear_bandit(n_rounds: int, d: int, n_arms: int, seed: int, noise: float = 0.1):
    """Contexts x ~ N(0, I); arm k's mean reward θₖᵀx + cₖ. Returns contexts, mean rewards, a noise draw."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=(n_arms, d))
    c = rng.normal(size=n_arms)
    X = rng.normal(size=(n_rounds, d)).astype(np.float32)
    means = X.astype(np.float64) @ theta.T + c
    eps = noise * rng.standard_normal((n_rounds, n_arms))
    return X, means, eps


def wheel_bandit(n_rounds: int, delta: float, seed: int):
    """Riquelme et al. (2018)'s wheel bandit: mean rewards per arm (noise added by the caller)."""
    rng = np.random.default_rng(seed)
    r = np.sqrt(rng.random(n_rounds))
    phi = rng.random(n_rounds) * 2 * np.pi
    X = np.stack([r * np.cos(phi), r * np.sin(phi)], 1).astype(np.float32)
    means = np.tile([1.0, 1.0, 1.0, 1.0, 1.2], (n_rounds, 1))
    far = np.linalg.norm(X, axis=1) >= delta
    quad = np.where(X[:, 0] > 0, np.where(X[:, 1] > 0, 0, 1), np.where(X[:, 1] > 0, 2, 3))
    means[far, quad[far]] = 50.0
    eps = 0.05 * rng.standard_normal((n_rounds, 5))
    return X, means, eps


def run(agent, X, means, eps) -> np.ndarray:
    """Play every round; return the per-round regret."""
    regret = np.empty(len(X))
    for t in range(len(X)):
        a = agent.act(X[t])
        agent.update(X[t], a, means[t, a] + eps[t, a])
        regret[t] = means[t].max() - means[t, a]
    return regret


def fingerprint(agent) -> dict:
    """Everything that makes up an agent's state, as plain comparable values."""
    fp: dict = {"t": agent.t, "rng": repr(agent.rng.bit_generator.state)}
    for k, p in enumerate(getattr(agent, "posteriors", [])):
        fp[f"post{k}"] = (p.mu.copy(), p.precision.copy(), p.xty.copy(), p.a, p.b, p.n)
    if isinstance(agent, BetaBernoulliTS):
        fp["counts"] = (agent.successes.copy(), agent.failures.copy())
    if hasattr(agent, "net"):
        fp["params"] = [p.detach().clone().numpy() for p in agent.net.parameters()]
        fp["gen"] = agent.gen.get_state().numpy().copy()
        fp["replay"] = tuple(a.copy() for a in agent.replay())
        fp["trained"] = agent.times_trained
    return fp


def assert_same(fp1: dict, fp2: dict) -> None:
    assert fp1.keys() == fp2.keys()
    for k in fp1:
        a, b = fp1[k], fp2[k]
        if isinstance(a, (tuple, list)):
            assert len(a) == len(b)
            for x, y in zip(a, b, strict=True):
                np.testing.assert_array_equal(x, y, err_msg=k)
        else:
            np.testing.assert_array_equal(a, b, err_msg=k)


FAST_NN = dict(hidden=(16,), train_every=10, train_steps=5, batch_size=32)


def make(name: str, n_arms: int = 3, d: int = 4, seed: int = 0):
    cls = BASELINES[name]
    kw = FAST_NN if name in ("neural-linear", "eps-greedy-nn") else {}
    return cls(n_arms, d, seed=seed, **kw)


# ---------------------------------------------------------------------------- interface


def test_registry_and_protocol():
    assert set(BASELINES) == {"uniform", "lin-ts", "neural-linear", "eps-greedy-nn", "beta-bernoulli"}
    for name, cls in BASELINES.items():
        params = list(inspect.signature(cls).parameters)
        assert params[:3] == ["n_arms", "context_dim", "seed"], name
        agent = make(name)
        assert isinstance(agent, BanditAgent)
        assert agent.n_arms == 3
        arm = agent.act(np.zeros(4, dtype=np.float32))
        assert isinstance(arm, int) and 0 <= arm < 3
        agent.update(np.zeros(4, dtype=np.float32), arm, 1.0)


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_reproducible_from_seed(name):
    X, means, eps = linear_bandit(60, 4, 3, seed=3)
    if name == "beta-bernoulli":
        means = (means > 0).astype(float)
        eps = np.zeros_like(eps)
    runs = []
    for seed in (7, 7, 8):
        agent = make(name, seed=seed)
        arms = []
        for t in range(len(X)):
            a = agent.act(X[t])
            agent.update(X[t], a, means[t, a] + eps[t, a])
            arms.append(a)
        runs.append(arms)
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_bad_input_raises_and_leaves_state_unchanged(name):
    agent = make(name)
    X, means, _ = linear_bandit(25, 4, 3, seed=1)
    for t in range(len(X)):  # past the round-robin start and (neural) through two retrainings
        a = agent.act(X[t])
        agent.update(X[t], a, float(means[t, a] > 0))
    good = np.ones(4, dtype=np.float32)
    nan_ctx = good.copy()
    nan_ctx[2] = np.nan
    bad_calls = [
        ("context", lambda: agent.act(nan_ctx)),
        ("context", lambda: agent.act(np.ones(5))),
        ("context", lambda: agent.act(np.ones((1, 4)))),
        ("context", lambda: agent.act("abcd")),
        ("context", lambda: agent.update(np.full(4, np.inf), 0, 1.0)),
        ("context", lambda: agent.update(np.ones(3), 0, 1.0)),
        ("arm", lambda: agent.update(good, 3, 1.0)),
        ("arm", lambda: agent.update(good, -1, 1.0)),
        ("arm", lambda: agent.update(good, 1.5, 1.0)),
        ("arm", lambda: agent.update(good, True, 1.0)),
        ("reward", lambda: agent.update(good, 0, float("nan"))),
        ("reward", lambda: agent.update(good, 0, np.inf)),
        ("reward", lambda: agent.update(good, 0, "1")),
        ("reward", lambda: agent.update(good, 0, [1.0, 0.0])),
    ]
    before = fingerprint(agent)
    for field, call in bad_calls:
        with pytest.raises(ValueError, match=f"^{field}"):
            call()
        assert_same(before, fingerprint(agent))
    # the agent still works, and numpy integer arms / numpy scalar rewards are accepted
    agent.update(good, np.int64(1), np.float32(1.0))
    assert agent.t == before["t"] + 1


@pytest.mark.parametrize(
    "cls, kwargs",
    [
        (LinearTS, {"lambda_prior": 0.0}),
        (LinearTS, {"a0": -1.0}),
        (LinearTS, {"b0": float("nan")}),
        (LinearTS, {"initial_pulls": -1}),
        (BetaBernoulliTS, {"alpha0": 0.0}),
        (NeuralLinear, {"hidden": ()}),
        (NeuralLinear, {"optimizer": "sgd"}),
        (NeuralLinear, {"train_every": 0}),
        (EpsilonGreedyNeural, {"epsilon": 1.5}),
        (UniformRandom, {"n_arms": 0}),
        (UniformRandom, {"context_dim": -1}),
    ],
)
def test_bad_hyperparameters(cls, kwargs):
    args = {"n_arms": 3, "context_dim": 2, **kwargs}
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        cls(**args)


def test_neural_agents_need_a_context():
    for cls in (NeuralLinear, EpsilonGreedyNeural):
        with pytest.raises(ValueError, match="context_dim"):
            cls(3, 0)


def test_context_free_agents_accept_empty_context():
    for cls in (UniformRandom, LinearTS, BetaBernoulliTS):
        agent = cls(4, 0, seed=1)
        for _ in range(20):
            a = agent.act(np.zeros(0, dtype=np.float32))
            agent.update(np.zeros(0), a, 1.0)


# ---------------------------------------------------------------------------- uniform


def test_uniform_is_uniform():
    agent = UniformRandom(4, 2, seed=0)
    counts = np.bincount([agent.act(np.zeros(2)) for _ in range(4000)], minlength=4)
    assert np.all(np.abs(counts / 4000 - 0.25) < 0.03)


# ---------------------------------------------------------------------------- NIG / linear TS


def test_nig_incremental_equals_batch_closed_form():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5))
    y = X @ rng.normal(size=5) + 30.0 + rng.normal(size=300)
    post = NIGLinearPosterior(5, lambda_prior=0.25, a0=6.0, b0=6.0)
    for x, yy in zip(X, y, strict=True):
        post.add(x, yy)
    mu, prec, a, b = nig_posterior_batch(X, y, 0.25, 6.0, 6.0)
    np.testing.assert_allclose(post.precision, prec, rtol=1e-12, atol=1e-8)
    np.testing.assert_allclose(post.mu, mu, rtol=1e-8, atol=1e-8)
    assert a == 6.0 + 150
    assert post.b == pytest.approx(b, rel=1e-8)
    np.testing.assert_allclose(post.cov, np.linalg.inv(prec), rtol=1e-8, atol=1e-12)
    refit = NIGLinearPosterior(5)
    refit.fit(X, y)
    np.testing.assert_allclose(refit.mu, post.mu, rtol=1e-10, atol=1e-10)
    assert refit.b == pytest.approx(post.b, rel=1e-10)
    refit.reset()
    np.testing.assert_array_equal(refit.mu, np.zeros(5))
    assert (refit.a, refit.b, refit.n) == (6.0, 6.0, 0)


def test_nig_sampler_matches_posterior_moments():
    rng = np.random.default_rng(1)
    post = NIGLinearPosterior(3, lambda_prior=0.25, a0=6.0, b0=6.0)
    post.fit(rng.normal(size=(20, 3)), rng.normal(size=20))
    draws = np.array([post.sample(rng) for _ in range(40000)])
    # Marginally β is Student-t: E β = μ, Cov β = b/(a − 1) Λ⁻¹.
    cov = post.b / (post.a - 1.0) * np.linalg.inv(post.precision)
    se = np.sqrt(np.diag(cov) / len(draws))
    assert np.all(np.abs(draws.mean(0) - post.mu) < 5 * se)
    np.testing.assert_allclose(np.cov(draws.T), cov, rtol=0.05, atol=0.05 * np.abs(cov).max())


def test_linear_ts_posterior_is_the_batch_closed_form():
    n_arms, d = 3, 4
    X, means, eps = linear_bandit(400, d, n_arms, seed=2, noise=0.5)
    agent = LinearTS(n_arms, d, seed=0)
    arms = []
    for t in range(len(X)):
        a = agent.act(X[t])
        agent.update(X[t], a, means[t, a] + eps[t, a] + 10.0)
        arms.append(a)
    arms = np.array(arms)
    assert list(arms[:6]) == [0, 1, 2, 0, 1, 2]  # round-robin start, initial_pulls = 2
    for k in range(n_arms):
        rows = arms == k
        Xk = np.hstack([X[rows].astype(np.float64), np.ones((rows.sum(), 1))])  # [x, 1]
        yk = means[rows, k] + eps[rows, k] + 10.0
        mu, prec, a, b = nig_posterior_batch(Xk, yk, 0.25, 6.0, 6.0)
        mu_n, prec_n, a_n, b_n = agent.posterior(k)
        np.testing.assert_allclose(prec_n, prec, rtol=1e-12, atol=1e-8)
        np.testing.assert_allclose(mu_n, mu, rtol=1e-8, atol=1e-8)
        assert a_n == a
        assert b_n == pytest.approx(b, rel=1e-8, abs=1e-8)


def test_linear_ts_learns_linear_bandit():
    X, means, eps = linear_bandit(1500, 5, 4, seed=4)
    reg_ts = run(LinearTS(4, 5, seed=0), X, means, eps)
    reg_unif = run(UniformRandom(4, 5, seed=0), X, means, eps)
    assert reg_ts.sum() < 0.1 * reg_unif.sum()
    # sublinear: the last third costs far less than the first third
    assert reg_ts[1000:].sum() < 0.3 * reg_ts[:500].sum()
    assert reg_unif[1000:].sum() > 0.8 * reg_unif[:500].sum()


# ---------------------------------------------------------------------------- Beta-Bernoulli TS


def test_beta_bernoulli_exact_counts():
    agent = BetaBernoulliTS(3, 0, seed=0, alpha0=2.0, beta0=0.5)
    data = [(0, 1), (0, 0), (2, 1), (2, 1), (2, 1), (1, 0), (0, 1.0), (1, False), (2, np.int64(0))]
    for arm, r in data:
        agent.update(np.zeros(0), arm, r)
    assert agent.posterior(0) == (2.0 + 2, 0.5 + 1)
    assert agent.posterior(1) == (2.0 + 0, 0.5 + 2)
    assert agent.posterior(2) == (2.0 + 3, 0.5 + 1)
    np.testing.assert_array_equal(agent.alpha, [4.0, 2.0, 5.0])
    before = fingerprint(agent)
    for bad in (0.5, 2, -1, float("nan")):
        with pytest.raises(ValueError, match="^reward"):
            agent.update(np.zeros(0), 0, bad)
    assert_same(before, fingerprint(agent))


def test_beta_bernoulli_samples_the_posterior():
    # Two arms with known posteriors: the probability of playing arm 1 is P(θ₁ > θ₀) under the posterior.
    agent = BetaBernoulliTS(2, 0, seed=3)
    for arm, r in [(0, 1)] * 3 + [(0, 0)] * 5 + [(1, 1)] * 4 + [(1, 0)] * 3:
        agent.update(np.zeros(0), arm, r)
    rng = np.random.default_rng(0)
    p1 = np.mean(rng.beta(5, 4, 200000) > rng.beta(4, 6, 200000))
    freq = np.mean([agent.act(np.zeros(0)) == 1 for _ in range(20000)])
    assert abs(freq - p1) < 0.015


def test_beta_bernoulli_beats_uniform():
    probs = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    T = 3000
    rng = np.random.default_rng(0)
    draws = (rng.random((T, 5)) < probs).astype(float)
    ctx = np.zeros(0, dtype=np.float32)
    results = {}
    for cls in (BetaBernoulliTS, UniformRandom):
        agent = cls(5, 0, seed=1)
        regret, pulls = 0.0, np.zeros(5, int)
        for t in range(T):
            a = agent.act(ctx)
            agent.update(ctx, a, draws[t, a])
            regret += probs.max() - probs[a]
            pulls[a] += 1
        results[cls] = (regret, pulls)
    reg_ts, pulls_ts = results[BetaBernoulliTS]
    reg_u, _ = results[UniformRandom]
    assert reg_ts < 0.2 * reg_u
    assert pulls_ts.argmax() == 4 and pulls_ts[4] > 0.7 * T


# ---------------------------------------------------------------------------- neural agents


def test_tf_rmsprop_step():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = TFRMSProp([p], lr=0.1)
    p.grad = torch.tensor([3.0, 0.5])
    opt.step()
    g = np.array([3.0, 0.5])
    ms = 0.9 + 0.1 * g**2  # mean-square slot starts at 1
    np.testing.assert_allclose(p.detach().numpy(), [1.0, -2.0] - 0.1 * g / np.sqrt(ms + 1e-10), rtol=1e-6)
    p.grad = torch.tensor([1.0, 1.0])
    opt.step()
    ms2 = 0.9 * ms + 0.1
    expected = [1.0, -2.0] - 0.1 * g / np.sqrt(ms + 1e-10) - 0.1 / np.sqrt(ms2 + 1e-10)
    np.testing.assert_allclose(p.detach().numpy(), expected, rtol=1e-6)


def test_neural_defaults_follow_the_paper():
    nl = NeuralLinear(5, 2)
    assert nl.hidden == (50,) and nl.latent_dim == 50
    assert (nl.a0, nl.b0, nl.lambda_prior) == (6.0, 6.0, 0.25)
    assert (nl.train_every, nl.train_steps, nl.batch_size, nl.initial_pulls) == (50, 100, 512, 2)
    assert (nl.optimizer_name, nl.lr, nl.lr_decay_rate, nl.max_grad_norm) == ("rmsprop", 0.1, 0.5, 5.0)
    w = nl.net.body[0].weight.detach()
    assert w.abs().max() <= 0.3 and torch.all(nl.net.body[0].bias == 0)
    adam = EpsilonGreedyNeural(5, 2, optimizer="adam")
    assert isinstance(adam.opt, torch.optim.Adam) and (adam.lr, adam.lr_decay_rate) == (1e-3, 0.0)
    assert adam.epsilon == 0.05


def _check_neural_linear_posteriors(agent: NeuralLinear) -> None:
    X, A, R = agent.replay()
    Z = agent._features(X)
    for k in range(agent.n_arms):
        mu, prec, a, b = nig_posterior_batch(Z[A == k], R[A == k], 0.25, 6.0, 6.0)
        mu_n, prec_n, a_n, b_n = agent.posterior(k)
        np.testing.assert_allclose(prec_n, prec, rtol=1e-10, atol=1e-8)
        np.testing.assert_allclose(mu_n, mu, rtol=1e-8, atol=1e-8)
        assert a_n == a
        assert b_n == pytest.approx(b, rel=1e-8, abs=1e-8)


def test_neural_linear_posterior_is_exact_on_current_features():
    X, means, eps = linear_bandit(47, 3, 3, seed=5)
    agent = NeuralLinear(3, 3, seed=0, hidden=(8,), train_every=20, train_steps=10, batch_size=16)
    for t in range(len(X)):
        a = agent.act(X[t])
        params = [p.detach().clone() for p in agent.net.parameters()]
        agent.update(X[t], a, means[t, a] + eps[t, a])
        changed = any(not torch.equal(p, q) for p, q in zip(params, agent.net.parameters(), strict=True))
        assert changed == ((t + 1) % 20 == 0)  # retrained exactly every train_every rounds
        if t in (5, 19, 20, 39, 46):  # before any training, right after each retraining, between retrainings
            _check_neural_linear_posteriors(agent)
    assert agent.times_trained == 2


def test_neural_training_fits_the_played_arm():
    # A fixed replay with a nonlinear reward: training lowers the squared error on the played arms.
    rng = np.random.default_rng(0)
    agent = EpsilonGreedyNeural(2, 2, seed=0, hidden=(32,), train_every=400, train_steps=300, batch_size=64)
    X = rng.uniform(-1, 1, size=(400, 2)).astype(np.float32)
    arms = rng.integers(2, size=400)
    f = np.stack([np.abs(X[:, 0]) + X[:, 1] ** 2, np.sin(3 * X[:, 0])], 1)

    def mse():
        pred = np.array([agent.predict(x) for x in X])
        return np.mean((pred[np.arange(400), arms] - f[np.arange(400), arms]) ** 2)

    before = None
    for t in range(400):
        if t == 399:
            before = mse()
        agent.update(X[t], arms[t], f[t, arms[t]])
    assert agent.times_trained == 1
    assert mse() < 0.2 * before


def test_neural_linear_learns_wheel_bandit():
    X, means, eps = wheel_bandit(600, delta=0.5, seed=0)
    reg_nl = run(NeuralLinear(5, 2, seed=0, batch_size=128), X, means, eps)
    reg_u = run(UniformRandom(5, 2, seed=0), X, means, eps)
    assert reg_nl.sum() < 0.25 * reg_u.sum()
    assert reg_nl[400:].sum() < 0.5 * reg_nl[:200].sum()


def test_epsilon_greedy_neural():
    X, means, eps = linear_bandit(500, 3, 3, seed=6)
    greedy = EpsilonGreedyNeural(
        3, 3, seed=0, epsilon=0.0, hidden=(16,), train_every=25, train_steps=50, batch_size=64
    )
    reg = run(greedy, X, means, eps)
    reg_u = run(UniformRandom(3, 3, seed=0), X, means, eps)
    assert reg.sum() < 0.4 * reg_u.sum()
    # ε = 0 plays the argmax of the network's predictions
    for x in X[:20]:
        assert greedy.act(x) == int(np.argmax(greedy.predict(x)))
    # ε = 1 plays uniformly (after the round-robin start)
    explorer = EpsilonGreedyNeural(3, 3, seed=0, epsilon=1.0, initial_pulls=0, **FAST_NN)
    counts = np.bincount([explorer.act(X[0]) for _ in range(3000)], minlength=3)
    assert np.all(np.abs(counts / 3000 - 1 / 3) < 0.04)
    # linear decay from 1 to ε over epsilon_decay_rounds
    decaying = EpsilonGreedyNeural(3, 3, seed=0, epsilon=0.1, epsilon_decay_rounds=100, **FAST_NN)
    assert decaying.current_epsilon == 1.0
    decaying.t = 50
    assert decaying.current_epsilon == pytest.approx(0.55)
    decaying.t = 1000
    assert decaying.current_epsilon == 0.1
