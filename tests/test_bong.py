"""BONG on torch models, checked against exact Bayes and independent textbook filters.

Anchors (docs/design.md §2): conjugate Bayesian linear regression (closed form), full-LIN == EKF on a nonlinear
MLP,
Bernoulli/categorical LIN == EKF with moment matching, MC-EF -> the exact expectation at rate 1/sqrt(M),
MC-Hess (GGN) == LIN precision on a linear Gaussian model.
"""

from __future__ import annotations

import io
import math

import pytest
import torch
from _helpers import assert_state_equal as _assert_state_equal
from _helpers import clone_state as _clone
from torch import nn

from bongrl import registry
from bongrl.bong import BONG

F64 = torch.float64
FAMILIES = registry.available("posterior")
BUILTIN = ("full", "diag", "dlr")



def _blr_data(N: int, P: int, seed: int = 0, sigma: float = 0.3):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(N, P, generator=gen, dtype=F64)
    theta = torch.randn(P, generator=gen, dtype=F64)
    y = X @ theta + sigma * torch.randn(N, generator=gen, dtype=F64)
    return X, y


def _blr_posterior(Phi, y, sigma, prior_std):
    """Closed-form conjugate posterior, prior N(0, s²I): Λ = I/s² + ΦᵀΦ/σ², μ = Λ⁻¹Φᵀy/σ²."""
    lam = torch.eye(Phi.shape[1], dtype=F64) / prior_std**2 + Phi.T @ Phi / sigma**2
    cov = torch.linalg.inv(lam)
    return cov @ (Phi.T @ y) / sigma**2, cov


def _linear_bong(P, family, bias, sigma, prior_std, **kw):
    model = nn.Linear(P, 1, bias=bias)
    n = P + int(bias)
    return BONG(
        model,
        family=family,
        likelihood="gaussian",
        obs_std=sigma,
        prior_std=prior_std,
        prior_mean=torch.zeros(n, dtype=F64),
        dtype=F64,
        device="cpu",
        **kw,
    )


# -------------------------------------------------------------------------------------- conjugate
@pytest.mark.parametrize("family,kw", [("full", {}), ("dlr", {"rank": 6}), ("dlr", {"rank": 9})])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("batch", [1, 7, 40])
def test_bayesian_linear_regression_exact(family, kw, bias, batch):
    """Conjugate model: BONG-LIN is Bayes' rule, so after N=40 rows (one at a time or in batches of b) the
    belief
    equals the closed-form posterior. dlr with rank >= P is exact too. Tolerance 1e-6 (the spec's; float64
    gives
    ~1e-12, the margin covers BLAS differences)."""
    P, sigma, s = 5, 0.3, 2.0
    X, y = _blr_data(40, P)
    est = _linear_bong(P, family, bias, sigma, s, **kw)
    for i in range(0, 40, batch):
        est.update(X[i : i + batch], y[i : i + batch])
    Phi = torch.cat([X, torch.ones(40, 1, dtype=F64)], 1) if bias else X
    mu, cov = _blr_posterior(Phi, y, sigma, s)
    torch.testing.assert_close(est.mean, mu, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(est.covariance(), cov, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("batch", [1, 4])
def test_diag_exact_for_one_hot_inputs(batch):
    """One-hot inputs make every parameter an independent conjugate problem: diag equals the closed form.
    Tolerance 1e-6 (spec); float64 gives ~1e-14."""
    P, sigma, s, N = 6, 0.5, 1.5, 36
    gen = torch.Generator().manual_seed(1)
    X = nn.functional.one_hot(torch.randint(P, (N,), generator=gen), P).to(F64)
    y = X @ torch.randn(P, generator=gen, dtype=F64) + sigma * torch.randn(N, generator=gen, dtype=F64)
    est = _linear_bong(P, "diag", False, sigma, s)
    for i in range(0, N, batch):
        est.update(X[i : i + batch], y[i : i + batch])
    mu, cov = _blr_posterior(X, y, sigma, s)
    torch.testing.assert_close(est.mean, mu, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(est.covariance(), cov, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------------------ EKF anchors
def _ekf_step(mu, cov, h, y, R):
    """Textbook EKF measurement update: H = ∂h/∂θ at μ, S = HΣHᵀ + R, K = ΣHᵀS⁻¹,
    μ += K(y − h(μ)), Σ −= KSKᵀ."""
    H = torch.autograd.functional.jacobian(h, mu).reshape(-1, mu.shape[0])
    yhat = h(mu).reshape(-1)
    S = H @ cov @ H.T + R
    K = cov @ H.T @ torch.linalg.inv(S)
    return mu + K @ (y - yhat), cov - K @ S @ K.T


def _mlp_by_hand(theta, x):
    """2 -> 5 -> 1 tanh MLP written out from the flat vector in nn.Sequential's order (w1, b1, w2, b2)."""
    w1, b1, w2, b2 = theta[:10].reshape(5, 2), theta[10:15], theta[15:20].reshape(1, 5), theta[20:21]
    return torch.tanh(x @ w1.T + b1) @ w2.T + b2


def test_full_lin_equals_ekf_on_mlp():
    """full + LIN on a nonlinear MLP is the extended Kalman filter (BONG paper §4.2). 20 steps, float64.
    Tolerance 1e-9: the two differ only in round-off (Joseph/information form vs the plain covariance
    form)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 5), nn.Tanh(), nn.Linear(5, 1))
    est = BONG(net, family="full", obs_std=0.2, prior_std=0.8, dtype=F64, device="cpu")
    mu, cov = est.mean.clone(), 0.64 * torch.eye(21, dtype=F64)
    gen = torch.Generator().manual_seed(3)
    for _ in range(20):
        x = torch.randn(1, 2, generator=gen, dtype=F64)
        y = torch.sin(3 * x[:, 0]) + 0.1 * torch.randn(1, generator=gen, dtype=F64)
        est.update(x, y)
        mu, cov = _ekf_step(
            mu, cov, lambda th, x=x: _mlp_by_hand(th, x), y, torch.tensor([[0.04]], dtype=F64)
        )
    torch.testing.assert_close(est.mean, mu, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(est.covariance(), cov, rtol=1e-9, atol=1e-9)


def test_bernoulli_lin_equals_moment_matched_ekf():
    """Logistic regression, LIN: ŷ = sigmoid(θᵀx), H = p(1−p)xᵀ, R = p(1−p) + 1e-6 (Bernoulli.eps,
    documented).
    Equals the EKF with that moment matching; 30 steps, float64, tolerance 1e-9 (round-off only)."""
    P = 4
    gen = torch.Generator().manual_seed(4)
    w_true = torch.randn(P, generator=gen, dtype=F64) * 2
    est = BONG(
        nn.Linear(P, 1, bias=False),
        family="full",
        likelihood="bernoulli",
        prior_std=1.0,
        prior_mean=torch.zeros(P, dtype=F64),
        dtype=F64,
        device="cpu",
    )
    mu, cov = torch.zeros(P, dtype=F64), torch.eye(P, dtype=F64)
    for _ in range(30):
        x = torch.randn(1, P, generator=gen, dtype=F64)
        y = torch.bernoulli(torch.sigmoid(x @ w_true), generator=gen)
        p = torch.sigmoid(x @ mu)
        est.update(x, y.long())
        mu, cov = _ekf_step(
            mu, cov, lambda th, x=x: torch.sigmoid(x @ th), y, (p * (1 - p) + 1e-6).reshape(1, 1)
        )
    torch.testing.assert_close(est.mean, mu, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(est.covariance(), cov, rtol=1e-9, atol=1e-9)


def _softmax_data(N, D, C, seed):
    gen = torch.Generator().manual_seed(seed)
    W = 2 * torch.randn(C, D, generator=gen, dtype=F64)
    X = torch.randn(N, D, generator=gen, dtype=F64)
    y = torch.multinomial(torch.softmax(X @ W.T, -1), 1, generator=gen)[:, 0]
    return X, y


def test_categorical_lin_equals_moment_matched_ekf():
    """Softmax regression, LIN: ŷ = softmax, R = diag(p) − ppᵀ + 1e-5 I (authors' jitter), one-hot y.
    Equals the EKF; 25 steps, float64. Tolerance 1e-7: S is near-singular (jitter 1e-5), amplifying
    round-off."""
    D, C = 3, 3
    X, y = _softmax_data(25, D, C, 5)
    est = BONG(
        nn.Linear(D, C, bias=False),
        family="full",
        likelihood="categorical",
        prior_std=1.0,
        prior_mean=torch.zeros(D * C, dtype=F64),
        dtype=F64,
        device="cpu",
    )
    mu, cov = torch.zeros(D * C, dtype=F64), torch.eye(D * C, dtype=F64)
    for i in range(25):
        x = X[i : i + 1]
        p = torch.softmax(x @ mu.reshape(C, D).T, -1)[0]
        R = torch.diag(p) - torch.outer(p, p) + 1e-5 * torch.eye(C, dtype=F64)
        est.update(x, y[i : i + 1])
        h = lambda th, x=x: torch.softmax(x @ th.reshape(C, D).T, -1)  # noqa: E731
        mu, cov = _ekf_step(mu, cov, h, nn.functional.one_hot(y[i], C).to(F64), R)
    torch.testing.assert_close(est.mean, mu, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(est.covariance(), cov, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("family", FAMILIES)
def test_categorical_lin_learns(family):
    """Sanity for every family: on softmax regression (C=4) the precision grows and held-out NLL drops
    by > 30%."""
    D, C = 5, 4
    X, y = _softmax_data(400, D, C, 6)
    est = BONG(
        nn.Linear(D, C),
        family=family,
        likelihood="categorical",
        prior_std=1.0,
        rank=5,
        dtype=F64,
        device="cpu",
        seed=0,
    )

    def nll():
        return nn.functional.cross_entropy(est.forward(X[300:]), y[300:]).item()

    nll0, var0 = nll(), est.marginal_variance().sum().item()
    for i in range(300):
        est.update(X[i : i + 1], y[i : i + 1])
    assert est.marginal_variance().sum().item() < 0.5 * var0
    assert nll() < 0.7 * nll0


# ------------------------------------------------------------------------------------ Monte Carlo
def _mc_setup(method, M, seed):
    P, sigma = 3, 0.5
    est = BONG(
        nn.Linear(P, 1, bias=False),
        family="full",
        method=method,
        num_samples=M,
        obs_std=sigma,
        prior_std=1.0,
        prior_mean=torch.tensor([0.3, -0.2, 0.1], dtype=F64),
        dtype=F64,
        device="cpu",
        seed=seed,
    )
    return est, sigma


def test_mc_ef_converges_to_expectation_at_root_m_rate():
    """MC-EF on y = θᵀx + ε, q = N(μ, Σ): with r = y − xᵀθ,
    E_q[g] = x(y − xᵀμ)/σ² (the LIN gradient: unbiased) and E_q[g gᵀ] = xxᵀ((y − xᵀμ)² + xᵀΣx)/σ⁴ (closed
    form).
    The Monte-Carlo error of both is O(1/√M): averaged over 16 seeds, err(M=100)/err(M=10⁴) ≈ √100 = 10; we
    assert 4 < ratio < 25 (the ratio of two 16-sample mean absolute errors has ~±40% spread)."""
    x = torch.tensor([[1.0, -2.0, 0.5]], dtype=F64)
    y = torch.tensor([1.7], dtype=F64)

    def err(M, seed):
        est, sigma = _mc_setup("mc-ef", M, seed)
        mu, cov = est.mean, est.covariance()
        A, g = est.increment(x, y)
        r = (y - x @ mu).item()
        g_exact = x[0] * r / sigma**2
        F_exact = torch.outer(x[0], x[0]) * (r**2 + (x @ cov @ x.T).item()) / sigma**4
        return ((g - g_exact).norm() / g_exact.norm() + (A @ A.T - F_exact).norm() / F_exact.norm()).item()

    e_small = sum(err(100, s) for s in range(16)) / 16
    e_large = sum(err(10_000, s) for s in range(16)) / 16
    assert e_large < 0.05
    assert 4.0 < e_small / e_large < 25.0, (e_small, e_large)


@pytest.mark.parametrize("M", [1, 3, 17])
def test_mc_hess_ggn_gives_lin_precision_on_linear_gaussian(M):
    """MC-Hess uses the Gauss-Newton factor JᵀS at each sample; for a linear Gaussian model J = xᵀ and S =
    1/σ at
    every θ_m, so AAᵀ = XᵀX/σ² (the LIN precision increment) for any M. Tolerance 1e-12: float64 round-off."""
    est, sigma = _mc_setup("mc-hess", M, 0)
    X = torch.tensor([[1.0, -2.0, 0.5], [0.3, 0.2, -1.0]], dtype=F64)
    y = torch.tensor([1.7, -0.4], dtype=F64)
    A, _ = est.increment(X, y)
    torch.testing.assert_close(A @ A.T, X.T @ X / sigma**2, rtol=1e-12, atol=1e-12)
    cov0 = est.covariance()
    est.update(X, y)
    lam = torch.linalg.inv(cov0) + X.T @ X / sigma**2
    torch.testing.assert_close(torch.linalg.inv(est.covariance()), lam, rtol=1e-10, atol=1e-10)


# -------------------------------------------------------------------------------------- bad input
def _mlp(C=2):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, C))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", ["lin", "mc-ef", "mc-hess"])
def test_bad_input_raises_and_keeps_state(family, method):
    """Every bad input raises ValueError before the posterior changes (torch.equal on every tensor)."""
    nan = float("nan")
    cases = {
        "gaussian": [
            (torch.tensor([[nan, 0.0, 0.0]]), torch.zeros(1, 2), None),
            (torch.tensor([[math.inf, 0.0, 0.0]]), torch.zeros(1, 2), None),
            (torch.zeros(1, 3), torch.tensor([[nan, 0.0]]), None),
            (torch.zeros(1, 3), torch.tensor([[0.0, -math.inf]]), None),
            (torch.zeros(1, 4), torch.zeros(1, 2), None),  # wrong feature dimension
            (torch.zeros(2, 3), torch.zeros(3, 2), None),  # rows differ
            (torch.zeros(1, 3), torch.zeros(1, 3), None),  # wrong output dimension
            (torch.zeros(3), torch.zeros(1, 2), None),  # missing batch dimension
            (torch.zeros(0, 3), torch.zeros(0, 2), None),  # empty batch
            (torch.zeros(2, 3), torch.zeros(2), torch.tensor([0, 2])),  # index out of range
            (torch.zeros(2, 3), torch.zeros(2), torch.tensor([0, -1])),
            (torch.zeros(2, 3), torch.zeros(2), torch.tensor([0])),  # index wrong length
            (torch.zeros(2, 3), torch.zeros(2), torch.tensor([0.0, 1.0])),  # float index
            (torch.zeros(2, 3), torch.zeros(2), torch.tensor([True, False])),
        ],
        "bernoulli": [
            (torch.zeros(2, 3), torch.tensor([0, 2]), None),
            (torch.zeros(2, 3), torch.tensor([0.0, 0.5]), None),
            (torch.zeros(2, 3), torch.tensor([-1, 1]), None),
            (torch.zeros(2, 3), torch.tensor([nan, 1.0]), None),
            (torch.zeros(2, 3), torch.tensor([0, 1, 1]), None),
        ],
        "categorical": [
            (torch.zeros(2, 3), torch.tensor([0, 2]), None),
            (torch.zeros(2, 3), torch.tensor([-1, 0]), None),
            (torch.zeros(2, 3), torch.tensor([0.5, 1.0]), None),
            (torch.zeros(2, 3), torch.tensor([[1.0, 0.0], [0.0, 1.0]]), None),  # one-hot is not a label
        ],
    }
    for lik, rows in cases.items():
        est = BONG(
            _mlp(1 if lik == "bernoulli" else 2),
            family=family,
            likelihood=lik,
            method=method,
            num_samples=3,
            device="cpu",
            rank=3,
        )
        est.update(torch.randn(2, 3), torch.tensor([0, 1]) if lik != "gaussian" else torch.randn(2, 2))
        before = _clone(est.state)
        for x, y, index in rows:
            with pytest.raises(ValueError):
                est.update(x, y, index=index)
            _assert_state_equal(est.state, before)
        with pytest.raises(ValueError):
            est.predict(torch.zeros(1, 4))
        _assert_state_equal(est.state, before)


def test_bad_predict_step_keeps_state():
    est = BONG(_mlp(), family="full", device="cpu")
    before = _clone(est.state)
    for gamma, q in [(0.0, 0.0), (1.2, 0.0), (1.0, -1.0), (float("nan"), 0.0), (1.0, float("inf"))]:
        with pytest.raises(ValueError):
            est.predict_step(gamma, q)
        _assert_state_equal(est.state, before)
    est.predict_step()
    _assert_state_equal(est.state, before)


def test_bad_increment_keeps_state():
    est = BONG(_mlp(), family="dlr", rank=3, device="cpu")
    before = _clone(est.state)
    P = est.num_params
    for A, g in [
        (torch.full((P, 1), float("nan")), torch.zeros(P)),
        (torch.zeros(P, 1), torch.full((P,), float("inf"))),
        (torch.zeros(P + 1, 1), torch.zeros(P)),
        (torch.zeros(P, 1), torch.zeros(P - 1)),
    ]:
        with pytest.raises(ValueError):
            est.apply_increment(A, g)
        _assert_state_equal(est.state, before)


def test_constructor_errors():
    with pytest.raises(ValueError) as info:
        BONG(_mlp(), family="nope", device="cpu")
    for name in FAMILIES:
        assert name in str(info.value)
    with pytest.raises(ValueError, match="method"):
        BONG(_mlp(), method="vi", device="cpu")
    with pytest.raises(ValueError, match="likelihood"):
        BONG(_mlp(), likelihood="poisson", device="cpu")
    for bad in (-1.0, 0.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="obs_std"):
            BONG(_mlp(), obs_std=bad, device="cpu")
    for kw in (
        {"prior_std": -1.0},
        {"prior_std": 0.0},
        {"prior_mean": torch.zeros(3)},
        {"num_samples": 0},
        {"params": ["nope.weight"]},
        {"weight_decay": -1.0},
        {"dtype": torch.float16},
        {"family": "dlr", "rank": 0},
    ):
        with pytest.raises(ValueError):
            BONG(_mlp(), device="cpu", **kw)


# ------------------------------------------------------------------------------ persistence & API
@pytest.mark.parametrize("family", FAMILIES)
def test_state_dict_roundtrip_including_rng(family):
    """state_dict -> torch.save -> load_state_dict on a fresh estimator: same state, same future samples and
    updates (bit-identical: identical arithmetic on identical inputs)."""
    est = BONG(_mlp(), family=family, rank=3, method="mc-ef", num_samples=4, device="cpu", seed=1)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        est.update(torch.randn(2, 3, generator=gen), torch.randn(2, 2, generator=gen))
    est.sample(2)  # advance the RNG past its seed
    buf = io.BytesIO()
    torch.save(est.state_dict(), buf)
    buf.seek(0)
    other = BONG(_mlp(), family=family, rank=3, method="mc-ef", num_samples=4, device="cpu", seed=99)
    other.load_state_dict(torch.load(buf, weights_only=True))
    _assert_state_equal(other.state, est.state)
    assert torch.equal(other.prior_mean, est.prior_mean)
    x, y = torch.randn(1, 3, generator=gen), torch.randn(1, 2, generator=gen)
    if family in BUILTIN:
        # built-ins compute layout-independently, so a resumed run is bit-identical to an uninterrupted one
        assert torch.equal(other.sample(5), est.sample(5))
        other.update(x, y)
        est.update(x, y)
        _assert_state_equal(other.state, est.state)
    else:
        # plugins: the reloaded (contiguous) tensors may take other BLAS paths; require agreement to float32
        # round-off (rtol 1e-5) and the same RNG stream
        torch.testing.assert_close(other.sample(5), est.sample(5), rtol=1e-5, atol=1e-6)
        other.update(x, y)
        est.update(x, y)
        for k in est.state:
            torch.testing.assert_close(other.state[k], est.state[k], rtol=1e-5, atol=1e-6)


def test_load_state_dict_rejects_bad_state():
    est = BONG(_mlp(), family="full", device="cpu")
    before = _clone(est.state)
    sd = est.state_dict()
    for bad in (
        {**sd, "posterior.cov": sd["posterior.cov"][:-1]},
        {**sd, "posterior.mean": torch.full_like(sd["posterior.mean"], float("nan"))},
        {k: v for k, v in sd.items() if k != "posterior.cov"},
        {**sd, "prior_mean": sd["prior_mean"][:-1]},
    ):
        with pytest.raises(ValueError):
            est.load_state_dict(bad)
        _assert_state_equal(est.state, before)
    small = BONG(nn.Linear(2, 1), family="full", device="cpu")
    with pytest.raises(ValueError):
        est.load_state_dict(small.state_dict())
    _assert_state_equal(est.state, before)


def test_params_subset_keeps_other_weights_frozen():
    """params=["2.weight", "2.bias"]: P counts only the last layer; the first layer keeps its module values
    and
    the model's own parameters are never written. The last layer of a fixed feature map is a linear-Gaussian
    model, so the posterior is the closed-form BLR posterior on the features (tolerance 1e-6, spec)."""
    net = _mlp(1)
    frozen = {k: v.detach().clone() for k, v in net.named_parameters()}
    est = BONG(
        net,
        family="full",
        params=["2.weight", "2.bias"],
        obs_std=0.3,
        prior_std=2.0,
        prior_mean=torch.zeros(5),
        dtype=F64,
        device="cpu",
    )
    assert est.num_params == 5
    X, y = _blr_data(30, 3, seed=7)
    for i in range(30):
        est.update(X[i : i + 1], y[i : i + 1])
    for k, v in net.named_parameters():
        assert torch.equal(v.detach(), frozen[k].to(F64)), f"{k} was modified"
    with torch.no_grad():
        feats = torch.tanh(X @ net[0].weight.T + net[0].bias)
    Phi = torch.cat([feats, torch.ones(30, 1, dtype=F64)], 1)
    mu, cov = _blr_posterior(Phi, y, 0.3, 2.0)
    torch.testing.assert_close(est.mean, mu, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(est.covariance(), cov, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(est.forward(X[:4])[:, 0], Phi[:4] @ est.mean, rtol=1e-12, atol=1e-12)


def test_weight_decay_is_prior_precision():
    """weight_decay λ is a N(μ₀, I/λ) prior: initial Σ = I/λ, and BLR with it is the closed form with
    s² = 1/λ."""
    P, lam = 4, 4.0
    est = BONG(
        nn.Linear(P, 1, bias=False),
        family="full",
        obs_std=0.3,
        weight_decay=lam,
        prior_std=123.0,
        prior_mean=torch.zeros(P),
        dtype=F64,
        device="cpu",
    )
    torch.testing.assert_close(est.covariance(), torch.eye(P, dtype=F64) / lam, rtol=0, atol=1e-15)
    X, y = _blr_data(20, P, seed=8)
    est.update(X, y)
    mu, cov = _blr_posterior(X, y, 0.3, 1 / math.sqrt(lam))
    torch.testing.assert_close(est.mean, mu, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(est.covariance(), cov, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_predict_linearised_variance(family):
    """est.predict returns f(μ, x) and diag(J Σ Jᵀ), with J from torch.autograd.functional.jacobian on the MLP
    written by hand and Σ = est.covariance(). Tolerance 1e-10: float64 round-off."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 5), nn.Tanh(), nn.Linear(5, 1))
    est = BONG(net, family=family, rank=4, obs_std=0.3, dtype=F64, device="cpu")
    gen = torch.Generator().manual_seed(9)
    for _ in range(5):
        est.update(torch.randn(2, 2, generator=gen, dtype=F64), torch.randn(2, generator=gen, dtype=F64))
    X = torch.randn(6, 2, generator=gen, dtype=F64)
    f, var = est.predict(X)
    J = torch.autograd.functional.jacobian(lambda th: _mlp_by_hand(th, X)[:, 0], est.mean)  # (6, P)
    torch.testing.assert_close(f[:, 0], _mlp_by_hand(est.mean, X)[:, 0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(var[:, 0], ((J @ est.covariance()) * J).sum(1), rtol=1e-10, atol=1e-12)


def test_index_selects_one_output():
    """index picks Q(s, a): the update equals a single-output model made of that output's row
    (same θ layout)."""
    torch.manual_seed(0)
    net = nn.Linear(3, 2, bias=False)
    est = BONG(net, family="full", obs_std=0.5, prior_mean=torch.zeros(6), dtype=F64, device="cpu")
    X = torch.randn(4, 3, dtype=F64)
    y = torch.randn(4, dtype=F64)
    a = torch.tensor([0, 1, 1, 0])
    est.update(X, y, index=a)
    Phi = torch.zeros(4, 6, dtype=F64)
    for i in range(4):
        Phi[i, 3 * a[i] : 3 * a[i] + 3] = X[i]
    mu, cov = _blr_posterior(Phi, y, 0.5, 1.0)
    torch.testing.assert_close(est.mean, mu, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(est.covariance(), cov, rtol=1e-10, atol=1e-10)
    f, var = est.predict(X, index=a)
    assert f.shape == (4, 1) and var.shape == (4, 1)


def test_compiled_mlp_jacobian_matches_vmap_jacrev() -> None:
    """The plain-MLP fast path (hand-written backward pass; autograd probes for GELU) equals torch.func's
    vmap(jacrev) in float64: both compute the same products, so the tolerance is a few ulps (1e-12)."""
    from bongrl.agents.base import mlp

    torch.manual_seed(3)
    cases = [(names, act) for names in (None, ["head.weight", "head.bias"])
             for act in (torch.nn.ReLU, torch.nn.Tanh, torch.nn.Sigmoid, torch.nn.GELU)]
    for names, act in cases:
        model = torch.nn.Sequential(torch.nn.Flatten(), *mlp(6, [5, 4], 3, activation=act))
        est = BONG(model, family="diag", params=None if names is None else ["3.weight", "3.bias"],
                   dtype=torch.float64, device="cpu")
        assert est._fast is not None
        assert est._fast.manual == (act is not torch.nn.GELU)  # GELU: the autograd fallback
        x = torch.randn(7, 2, 3, dtype=torch.float64)
        idx = torch.randint(3, (7,))
        for index in (None, idx):
            f_fast, J_fast = est.jacobian(x, index=index)
            fast, est._fast = est._fast, None
            f_ref, J_ref = est.jacobian(x, index=index)
            est._fast = fast
            assert torch.allclose(f_fast, f_ref, atol=1e-12)
            assert torch.allclose(J_fast, J_ref, atol=1e-12)


def test_compiled_mlp_rows_match_vmap() -> None:
    """``CompiledMLP.rows`` (row b through θ_b by batched matmuls, what per-env Thompson acting uses) equals
    vmap over functional_call, for all weights and for a head-only layout with a frozen body (1e-12, float64:
    the same products in another order)."""
    from torch.func import functional_call, vmap

    from bongrl.agents.base import mlp

    torch.manual_seed(4)
    for names in (None, ["3.weight", "3.bias"]):
        model = torch.nn.Sequential(torch.nn.Flatten(), *mlp(6, [5, 4], 3)).double()
        est = BONG(model, family="diag", params=names, dtype=torch.float64, device="cpu")
        thetas = est.mean + 0.3 * torch.randn(5, est.num_params, dtype=torch.float64)
        x = torch.randn(5, 2, 3, dtype=torch.float64)
        got = est._fast.rows(thetas, x)
        def one(t: torch.Tensor, o: torch.Tensor, model=model, est=est) -> torch.Tensor:
            return functional_call(model, est.flat.unflatten(t), (o.unsqueeze(0),))[0]

        ref = vmap(one)(thetas, x)
        assert got.shape == (5, 3)
        assert torch.allclose(got, ref, atol=1e-12)
        assert torch.allclose(est._fast.rows(thetas[:1], x[:1]), ref[:1], atol=1e-12)


def test_compiled_mlp_jvp_matches_torch_func() -> None:
    """``CompiledMLP.jvp`` (hand-written forward mode) equals torch.func.jvp for one tangent and per-row tangents,
    with all weights or only the head in θ (frozen body: zero tangent), to 1e-12 in float64."""
    from torch.func import functional_call, jvp

    from bongrl.agents.base import mlp

    torch.manual_seed(5)
    for names, act in ((None, torch.nn.ReLU), (["head.weight", "head.bias"], torch.nn.Tanh), (None, torch.nn.Sigmoid)):
        model = mlp(3, [6, 5], 4, activation=act).double()
        est = BONG(model, family="diag", params=names, dtype=torch.float64, device="cpu")
        x = torch.randn(5, 3, dtype=torch.float64)
        v = torch.randn(5, est.num_params, dtype=torch.float64)

        def f(t: torch.Tensor, o: torch.Tensor, model=model, est=est) -> torch.Tensor:
            return functional_call(model, est.flat.unflatten(t), (o,))

        out, dout = est._fast.jvp(est.mean, v[0], x)
        ref, dref = jvp(lambda t, x=x, f=f: f(t, x), (est.mean,), (v[0],))
        assert torch.allclose(out, ref, atol=1e-12) and torch.allclose(dout, dref, atol=1e-12)
        _, drows = est._fast.jvp(est.mean, v, x)
        for b in range(5):
            _, db = jvp(lambda t, b=b, x=x, f=f: f(t, x[b : b + 1]), (est.mean,), (v[b],))
            assert torch.allclose(drows[b], db[0], atol=1e-12)
