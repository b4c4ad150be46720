"""Observation models (:mod:`bongrl.likelihoods`) in isolation, float64.

Each likelihood's quantities are checked against an independent computation: log-likelihoods against
``torch.distributions``, gradients and output-space Hessians against autograd (itself checked against finite
differences by ``gradcheck``), the moment-matched mean, Jacobian and covariance against their closed forms, and
the GGN square root against the Fisher identity E_y[∇ℓ ∇ℓᵀ] = −∇²ℓ (exact for these canonical links). Model-level
behaviour (LIN equals the moment-matched EKF, bad targets through ``BONG.update``) lives in ``test_bong.py``.

Tolerances: 1e-12 where both sides are a few float64 flops of O(1) numbers; autograd Hessians of log-softmax go
through exp/log, still within 1e-12 at these logits.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd.functional import hessian, jacobian

from bongrl.likelihoods import LIKELIHOODS, Bernoulli, Categorical, Gaussian, Likelihood, make_likelihood
from bongrl.posteriors.base import NonFiniteError

F64 = torch.float64
TOL = {"rtol": 1e-12, "atol": 1e-12}


@pytest.fixture(autouse=True)
def _float64_default():
    """encode() casts labels to the default dtype: run in float64 so every quantity is float64."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(F64)
    yield
    torch.set_default_dtype(old)


def _logits(B: int, C: int, seed: int = 0, scale: float = 2.0) -> torch.Tensor:
    return scale * torch.randn(B, C, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _cases() -> list[tuple[Likelihood, int, torch.Tensor]]:
    """(likelihood, C, raw targets y) for a batch of 5 rows."""
    g = torch.Generator().manual_seed(1)
    return [
        (Gaussian(0.7), 3, torch.randn(5, 3, generator=g, dtype=F64)),
        (Bernoulli(), 1, torch.tensor([0, 1, 1, 0, 1])),
        (Categorical(), 4, torch.tensor([0, 3, 1, 2, 3])),
    ]


def _row_outcomes(lik: Likelihood, C: int) -> list[torch.Tensor]:
    """Every value one encoded target row can take (discrete likelihoods)."""
    if isinstance(lik, Bernoulli):
        return [torch.tensor([0.0], dtype=F64), torch.tensor([1.0], dtype=F64)]
    return list(torch.eye(C, dtype=F64))


# ------------------------------------------------------------------------------------------- log-likelihoods
def test_log_prob_matches_torch_distributions() -> None:
    f = _logits(5, 3)
    y = torch.randn(5, 3, generator=torch.Generator().manual_seed(2), dtype=F64)
    gauss = Gaussian(0.7)
    expected = torch.distributions.Normal(f, 0.7).log_prob(y).sum(1)
    torch.testing.assert_close(gauss.log_prob(f, gauss.encode(y, (5, 3))), expected, **TOL)

    f1 = _logits(6, 1)
    yb = torch.tensor([0, 1, 1, 0, 0, 1])
    bern = Bernoulli()
    expected = torch.distributions.Bernoulli(logits=f1[:, 0]).log_prob(yb.to(F64))
    torch.testing.assert_close(bern.log_prob(f1, bern.encode(yb, (6, 1))), expected, **TOL)

    f4 = _logits(5, 4)
    yc = torch.tensor([0, 3, 1, 2, 3])
    cat = Categorical()
    expected = torch.distributions.Categorical(logits=f4).log_prob(yc)
    torch.testing.assert_close(cat.log_prob(f4, cat.encode(yc, (5, 4))), expected, **TOL)


def test_log_prob_is_stable_at_saturated_logits() -> None:
    """|f| = 800 overflows exp() in float64: the log-likelihoods are computed in log space (logsigmoid /
    log_softmax) and stay finite and exact (log p = −|f| for the unlikely label, 0 for the likely one)."""
    f = torch.tensor([[800.0], [-800.0]], dtype=F64)
    bern = Bernoulli()
    lp = bern.log_prob(f, bern.encode(torch.tensor([0, 0]), (2, 1)))
    torch.testing.assert_close(lp, torch.tensor([-800.0, 0.0], dtype=F64), **TOL)
    cat = Categorical()
    fc = torch.tensor([[800.0, 0.0, 0.0]], dtype=F64)
    torch.testing.assert_close(cat.log_prob(fc, cat.encode(torch.tensor([1]), (1, 3))),
                               torch.tensor([-800.0], dtype=F64), **TOL)


# -------------------------------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("case", range(3), ids=["gaussian", "bernoulli", "categorical"])
def test_log_prob_gradient_closed_form_and_finite_differences(case: int) -> None:
    """∇_f log p(y | f) = (y − f)/σ² (Gaussian) and y − m(f) (Bernoulli / categorical: canonical links), and
    autograd agrees with central finite differences (``gradcheck``, float64)."""
    lik, C, y = _cases()[case]
    f = _logits(5, C).requires_grad_(True)
    y_enc = lik.encode(y, (5, C))
    (grad,) = torch.autograd.grad(lik.log_prob(f, y_enc).sum(), f)
    if isinstance(lik, Gaussian):
        expected = (y_enc - f.detach()) / lik.obs_std**2
    else:
        expected = y_enc - lik.mean_and_jacobian(f.detach())[0]
    torch.testing.assert_close(grad, expected, **TOL)
    assert torch.autograd.gradcheck(lambda x: lik.log_prob(x, y_enc), (f,), eps=1e-6, atol=1e-7)


# ------------------------------------------------------------------------------------- mean function (LIN)
@pytest.mark.parametrize("case", range(3), ids=["gaussian", "bernoulli", "categorical"])
def test_mean_and_jacobian(case: int) -> None:
    """ŷ = E[y | f] (f, sigmoid, softmax) and D = ∂ŷ/∂f, per row, against autograd's Jacobian."""
    lik, C, _ = _cases()[case]
    f = _logits(5, C)
    yhat, D = lik.mean_and_jacobian(f)
    link = {Gaussian: lambda x: x, Bernoulli: torch.sigmoid, Categorical: lambda x: torch.softmax(x, -1)}
    torch.testing.assert_close(yhat, link[type(lik)](f), **TOL)
    if isinstance(lik, Gaussian):
        assert D is None  # the identity, never materialised
        return
    for b in range(5):
        torch.testing.assert_close(D[b], jacobian(link[type(lik)], f[b]), **TOL)


@pytest.mark.parametrize("case", range(3), ids=["gaussian", "bernoulli", "categorical"])
def test_obs_cov_is_the_moment_matched_covariance(case: int) -> None:
    """R = Cov[y | f] + jitter: σ²I; p(1 − p) + eps; diag(p) − ppᵀ + eps·I, the covariance computed here by
    summing over the outcomes. R is positive definite in every case; for the canonical links R − jitter = D."""
    lik, C, _ = _cases()[case]
    f = _logits(5, C)
    R = lik.obs_cov(f)
    assert R.shape == (5, C, C)
    assert int(torch.linalg.cholesky_ex(R).info.abs().sum()) == 0
    if isinstance(lik, Gaussian):
        torch.testing.assert_close(R, (0.49 * torch.eye(C, dtype=F64)).expand(5, C, C), **TOL)
        return
    yhat, D = lik.mean_and_jacobian(f)
    for b in range(5):
        probs = [float(torch.exp(lik.log_prob(f[b : b + 1], o.unsqueeze(0)))) for o in _row_outcomes(lik, C)]
        assert math.isclose(sum(probs), 1.0, rel_tol=1e-12)
        cov = sum(p * torch.outer(o - yhat[b], o - yhat[b]) for p, o in zip(probs, _row_outcomes(lik, C)))
        torch.testing.assert_close(R[b], cov + lik.eps * torch.eye(C, dtype=F64), **TOL)
        torch.testing.assert_close(R[b] - lik.eps * torch.eye(C, dtype=F64), D[b], **TOL)


def test_bernoulli_obs_cov_stays_positive_where_p_saturates() -> None:
    """At f = 40 and f = −800 the float64 p(1 − p) is exactly 0 (sigmoid rounds to 1, resp. underflows to 0):
    R is exactly eps, still positive."""
    bern = Bernoulli()
    R = bern.obs_cov(torch.tensor([[40.0], [-800.0]], dtype=F64))
    torch.testing.assert_close(R[:, 0, 0], torch.full((2,), bern.eps, dtype=F64), rtol=0, atol=0)


# --------------------------------------------------------------------------------- curvature (MC-Hess, GGN)
@pytest.mark.parametrize("case", range(3), ids=["gaussian", "bernoulli", "categorical"])
def test_hessian_sqrt_squares_to_the_negative_hessian(case: int) -> None:
    """S Sᵀ = −∂² log p / ∂f² per row (autograd Hessian), and S is an exact square root: no jitter."""
    lik, C, y = _cases()[case]
    f = _logits(5, C)
    y_enc = lik.encode(y, (5, C))
    S = lik.hessian_sqrt(f)
    assert S.shape == (5, C, C)
    for b in range(5):
        neg_h = -hessian(lambda x, b=b: lik.log_prob(x.unsqueeze(0), y_enc[b : b + 1])[0], f[b])
        torch.testing.assert_close(S[b] @ S[b].T, neg_h, **TOL)


@pytest.mark.parametrize("case", [1, 2], ids=["bernoulli", "categorical"])
def test_fisher_identity(case: int) -> None:
    """E_y[∇ℓ ∇ℓᵀ] = S Sᵀ: the expected outer product of the score (summed exactly over the outcomes) is the
    Fisher, which for a canonical link is the negative Hessian that hessian_sqrt factors (so MC-EF and MC-Hess
    agree in expectation)."""
    lik, C, _ = _cases()[case]
    f = _logits(5, C)
    S = lik.hessian_sqrt(f)
    for b in range(5):
        fisher = torch.zeros(C, C, dtype=F64)
        for o in _row_outcomes(lik, C):
            x = f[b : b + 1].clone().requires_grad_(True)
            lp = lik.log_prob(x, o.unsqueeze(0))[0]
            (score,) = torch.autograd.grad(lp, x)
            fisher += lp.exp().detach() * torch.outer(score[0], score[0])
        torch.testing.assert_close(fisher, S[b] @ S[b].T, **TOL)


def test_lin_terms_chain_the_mean_jacobian() -> None:
    """(H, residual, R) = (D·J, y − ŷ, obs_cov): H is the Jacobian of θ ↦ m(f(θ)) for f linear in θ."""
    g = torch.Generator().manual_seed(3)
    for lik, C, y in _cases():
        W = torch.randn(C, 4, generator=g, dtype=F64)
        x = torch.randn(5, 4, generator=g, dtype=F64)
        f = x @ W.T
        J = torch.zeros(5, C, C * 4, dtype=F64)  # ∂f_bc/∂W[c, :] = x_b
        for c in range(C):
            J[:, c, c * 4 : (c + 1) * 4] = x
        y_enc = lik.encode(y, (5, C))
        H, residual, R = lik.lin_terms(f, J, y_enc)
        yhat, _ = lik.mean_and_jacobian(f)
        torch.testing.assert_close(residual, y_enc - yhat, **TOL)
        torch.testing.assert_close(R, lik.obs_cov(f), **TOL)
        for b in range(5):
            torch.testing.assert_close(H[b], jacobian(_mean_of_weights(lik, x[b : b + 1], C), W.reshape(-1)), **TOL)


def _mean_of_weights(lik: Likelihood, x: torch.Tensor, C: int):
    """θ ↦ m(x Wᵀ) for one input row x (1, d), θ = vec W (row-major, W of shape (C, d))."""
    return lambda th: lik.mean_and_jacobian(x @ th.reshape(C, -1).T)[0][0]


# ------------------------------------------------------------------------------------------ targets (encode)
def test_encode_accepted_forms() -> None:
    gauss = Gaussian(1.0)
    y = gauss.encode(torch.tensor([1, 2, 3]), (3, 1))  # integer targets become floats, (B,) becomes (B, 1)
    assert y.shape == (3, 1) and y.dtype == F64
    assert gauss.encode(torch.zeros(3, 2, dtype=F64), (3, 2)).shape == (3, 2)

    bern = Bernoulli()
    for labels in (torch.tensor([0, 1, 1]), torch.tensor([[0], [1], [1]]), torch.tensor([0.0, 1.0, 1.0]),
                   torch.tensor([False, True, True])):
        torch.testing.assert_close(bern.encode(labels, (3, 1)), torch.tensor([[0.0], [1.0], [1.0]], dtype=F64))

    cat = Categorical()
    for labels in (torch.tensor([2, 0]), torch.tensor([[2], [0]]), torch.tensor([2.0, 0.0])):
        torch.testing.assert_close(cat.encode(labels, (2, 3)), torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]))


@pytest.mark.parametrize(
    "lik,y,shape,match",
    [
        (Gaussian(1.0), torch.zeros(3), (3, 2), "shape"),
        (Gaussian(1.0), torch.zeros(4, 1), (3, 1), "shape"),
        (Bernoulli(), torch.tensor([0, 1]), (2, 2), "1 output"),
        (Bernoulli(), torch.tensor([0, 2]), (2, 1), r"\[0, 2\)"),
        (Bernoulli(), torch.tensor([-1, 0]), (2, 1), r"\[0, 2\)"),
        (Bernoulli(), torch.tensor([0.0, 0.5]), (2, 1), "integer labels"),
        (Bernoulli(), torch.tensor([0.0, float("nan")]), (2, 1), "integer labels"),
        (Bernoulli(), torch.tensor([0, 1, 1]), (2, 1), "shape"),
        (Categorical(), torch.tensor([0, 1]), (2, 1), ">= 2 outputs"),
        (Categorical(), torch.tensor([0, 3]), (2, 3), r"\[0, 3\)"),
        (Categorical(), torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), (2, 3), "shape"),  # one-hot is not a label
    ],
)
def test_encode_rejects_bad_targets(lik: Likelihood, y: torch.Tensor, shape: tuple[int, int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        lik.encode(y, shape)


def test_gaussian_rejects_non_finite_targets_and_bad_noise() -> None:
    with pytest.raises(NonFiniteError, match="NaN or Inf"):
        Gaussian(1.0).encode(torch.tensor([0.0, float("inf")]), (2, 1))
    for bad in (0.0, -1.0, float("nan"), float("inf"), "1.0"):
        with pytest.raises(ValueError, match="obs_std"):
            Gaussian(bad)  # type: ignore[arg-type]


def test_make_likelihood() -> None:
    assert set(LIKELIHOODS) == {"gaussian", "bernoulli", "categorical"}
    g = make_likelihood("gaussian", obs_std=0.3)
    assert isinstance(g, Gaussian) and g.obs_std == 0.3
    assert isinstance(make_likelihood("bernoulli", obs_std=0.3), Bernoulli)  # obs_std is the Gaussian's only
    assert isinstance(make_likelihood("categorical"), Categorical)
    for name, cls in LIKELIHOODS.items():
        assert cls.name == name
    with pytest.raises(ValueError, match="unknown likelihood 'poisson'"):
        make_likelihood("poisson")
