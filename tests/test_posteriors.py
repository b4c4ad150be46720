"""Posterior families at the protocol level: exact algebra, predict step, positive-definiteness, conformance.

Model-level anchors (conjugate regression, EKF equivalence, MC rates) live in ``test_bong.py``.
"""

from __future__ import annotations

import math
import time

import pytest
import torch
from _helpers import assert_sigma_products, assert_validate_state_rejects_damage
from _helpers import assert_state_equal as _assert_state_equal
from _helpers import clone_state as _clone

from bongrl import registry
from bongrl.posteriors.base import PosteriorFamily, whiten_lin

F64 = torch.float64
FAMILIES = registry.available("posterior")
#: registered families plus option variants that must honour the same protocol ("name:mean_update")
VARIANTS = [*FAMILIES, "diag:ng"]  # plain "diag" is mean_update="auto" (the gain form for LIN)


def _family(name: str, rank: int = 3) -> PosteriorFamily:
    name, _, mean_update = name.partition(":")
    if mean_update:
        return registry.create_posterior(name, rank=rank, mean_update=mean_update)
    return registry.create_posterior(name, rank=rank)



def _random_state(fam: PosteriorFamily, P: int, seed: int = 0, dtype=F64):
    """A non-trivial belief: random prior variances, three LIN-like updates and one predict step."""
    gen = torch.Generator().manual_seed(seed)
    mean = torch.randn(P, generator=gen, dtype=dtype)
    var = torch.rand(P, generator=gen, dtype=dtype) + 0.5
    state = fam.init(mean, var)
    for _ in range(3):
        A = torch.randn(P, 2, generator=gen, dtype=dtype)
        g = torch.randn(P, generator=gen, dtype=dtype)
        state = fam.update(state, A, g)
    return fam.predict(state, 0.9, 0.05, torch.zeros(P, dtype=dtype))


# ---------------------------------------------------------------------------------- exact algebra
def test_full_update_is_information_form():
    """full: Λ' = Λ + AAᵀ and μ' = μ + Λ'⁻¹g exactly.
    Tolerance 1e-10: float64, P=7, condition number < 1e3."""
    fam = _family("full")
    state = _random_state(fam, 7)
    gen = torch.Generator().manual_seed(1)
    A = torch.randn(7, 3, generator=gen, dtype=F64)
    g = torch.randn(7, generator=gen, dtype=F64)
    new = fam.update(state, A, g)
    lam = torch.linalg.inv(state["cov"]) + A @ A.T
    torch.testing.assert_close(torch.linalg.inv(new["cov"]), lam, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(
        new["mean"], state["mean"] + torch.linalg.solve(lam, g), rtol=1e-10, atol=1e-10
    )


@pytest.mark.parametrize("rank", [7, 9])
def test_dlr_full_rank_equals_full(rank):
    """dlr with rank L >= P keeps every direction, so it equals full over 20 updates.
    Tolerance 1e-8 relative: float64, 20 Woodbury/eigh round trips with condition numbers < 1e4."""
    P = 7
    full, dlr = _family("full"), _family("dlr", rank=rank)
    gen = torch.Generator().manual_seed(2)
    mean = torch.randn(P, generator=gen, dtype=F64)
    var = torch.rand(P, generator=gen, dtype=F64) + 0.5
    sf, sd = full.init(mean, var), dlr.init(mean, var)
    for t in range(20):
        A = torch.randn(P, 1 + t % 3, generator=gen, dtype=F64)
        g = torch.randn(P, generator=gen, dtype=F64)
        sf, sd = full.update(sf, A, g), dlr.update(sd, A, g)
    torch.testing.assert_close(sd["mean"], sf["mean"], rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(dlr.covariance(sd), sf["cov"], rtol=1e-8, atol=1e-10)


def test_dlr_truncation_preserves_precision_diagonal():
    """dlr with L < P: the discarded low-rank mass moves to υ, so diag(Λ') = diag(Λ) + rowsum(A²) exactly.
    Tolerance 1e-10 relative: float64 round-off of one (L+K)-dim eigendecomposition."""
    P, L = 12, 2
    dlr = _family("dlr", rank=L)
    gen = torch.Generator().manual_seed(3)
    state = dlr.init(torch.zeros(P, dtype=F64), torch.ones(P, dtype=F64))
    for _ in range(6):
        A = torch.randn(P, 3, generator=gen, dtype=F64)
        lam_diag = state["ups"] + (state["W"] ** 2).sum(1)
        state = dlr.update(state, A, torch.zeros(P, dtype=F64))
        new_diag = state["ups"] + (state["W"] ** 2).sum(1)
        torch.testing.assert_close(new_diag, lam_diag + (A**2).sum(1), rtol=1e-10, atol=1e-12)


def test_diag_independent_parameters_equal_full():
    """diag equals full when every increment column touches one parameter (AAᵀ diagonal).
    Tolerance 1e-12: float64, the two forms are algebraically identical here."""
    P = 5
    full, diag = _family("full"), _family("diag")
    gen = torch.Generator().manual_seed(4)
    mean, var = torch.randn(P, generator=gen, dtype=F64), torch.rand(P, generator=gen, dtype=F64) + 0.1
    sf, sd = full.init(mean, var), diag.init(mean, var)
    for _ in range(15):
        j = torch.randint(P, (2,), generator=gen)
        A = torch.zeros(P, 2, dtype=F64)
        A[j, torch.arange(2)] = torch.randn(2, generator=gen, dtype=F64)
        g = A @ torch.randn(2, generator=gen, dtype=F64)
        sf, sd = full.update(sf, A, g), diag.update(sd, A, g)
    torch.testing.assert_close(sd["mean"], sf["mean"], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(diag.covariance(sd), sf["cov"], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mean_update", ["ng", "gain"])
def test_diag_single_coordinate_observation_is_scalar_kalman(mean_update):
    """One scalar observation whose Jacobian H has a single nonzero entry h (at j): both diag mean updates are the
    exact scalar Kalman update μ_j' = μ_j + σ_j² h (y − ŷ)/(R + h²σ_j²), σ_j'² = σ_j² R/(R + h²σ_j²), and the
    other coordinates do not move. Tolerance 1e-12 relative: float64, a handful of flops."""
    P, j, h, r, R = 7, 3, -2.5, 0.8, 0.3
    fam = _family(f"diag:{mean_update}")
    state = _random_state(fam, P)
    H = torch.zeros(1, P, dtype=F64)
    H[0, j] = h
    new = fam.update_lin(state, H, torch.tensor([r], dtype=F64), R)
    var = 1.0 / state["prec"]
    exp_mean, exp_var = state["mean"].clone(), var.clone()
    exp_mean[j] += var[j] * h * r / (R + h * h * var[j])
    exp_var[j] = var[j] * R / (R + h * h * var[j])
    torch.testing.assert_close(new["mean"], exp_mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(1.0 / new["prec"], exp_var, rtol=1e-12, atol=1e-12)


def test_diag_gain_is_the_vdekf_gain():
    """diag mean_update="gain" is the authors' ``update_ldg_bong`` (VD-EKF): K = Σ⁻Hᵀ(R + HΣ⁻Hᵀ)⁻¹,
    μ' = μ + K(y − ŷ), for a batch of vector observations with full R; the precision is the same as "ng"
    (λ⁻ + diag(HᵀR⁻¹H)). Tolerance 1e-10: float64, P = 9, B·C = 6, condition numbers < 1e3."""
    P, B, C = 9, 3, 2
    gen = torch.Generator().manual_seed(13)
    ng, gain = _family("diag:ng"), _family("diag:gain")
    state = _random_state(ng, P)
    H = torch.randn(B, C, P, generator=gen, dtype=F64)
    r = torch.randn(B, C, generator=gen, dtype=F64)
    Lr = torch.randn(B, C, C, generator=gen, dtype=F64)
    R = Lr @ Lr.transpose(-1, -2) + torch.eye(C, dtype=F64)
    new = gain.update_lin(state, H, r, R)
    Hf = H.reshape(B * C, P)
    Rf = torch.block_diag(*R)
    S = torch.diag(1.0 / state["prec"])
    K = S @ Hf.T @ torch.linalg.inv(Rf + Hf @ S @ Hf.T)
    torch.testing.assert_close(new["mean"], state["mean"] + K @ r.reshape(-1), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(new["prec"], ng.update_lin(state, H, r, R)["prec"], rtol=0, atol=0)


def test_diag_gain_does_not_overshoot_on_a_tanh_mlp():
    """One BONG-LIN step on a 2-8-1 tanh MLP (seed 0, σ = 0.1, σ₀ = 1, x = (0.5, −1), y = 1), float64.
    Measured: residual y − f(μ) = 1.135 before; after "ng" −7.83 (the 65 coordinates each fit the residual as if
    alone: a 6.9-fold overshoot with a sign flip); after "gain" −0.0035 (the linearised residual is divided by
    1 + HΣHᵀ/R ≈ 3·10²). Bounds asserted: |gain| < 0.01, |ng| > 5·|before|."""
    from torch import nn

    from bongrl.bong import BONG

    x, y = torch.tensor([[0.5, -1.0]], dtype=F64), torch.tensor([1.0], dtype=F64)
    post = {}
    for mean_update in ("ng", "gain"):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))
        est = BONG(net, family="diag", obs_std=0.1, prior_std=1.0, device="cpu", dtype=F64, mean_update=mean_update)
        before = 1.0 - est.forward(x)[0, 0].item()
        f, J = est.jacobian(x)
        var = 1.0 / est.state["prec"]
        hsh = float((J[0, 0] ** 2 * var).sum())
        expected_mean = est.mean + var * J[0, 0] * (1.0 - f[0, 0]) / (0.01 + hsh)  # VD-EKF gain, scalar case
        est.update(x, y)
        post[mean_update] = 1.0 - est.forward(x)[0, 0].item()
        if mean_update == "gain":
            torch.testing.assert_close(est.mean, expected_mean, rtol=1e-10, atol=1e-12)
    assert before == pytest.approx(1.1355, abs=1e-3)
    assert abs(post["gain"]) < 0.01 and abs(post["gain"]) < 0.01 * abs(before)
    assert abs(post["ng"]) > 5.0 * abs(before) and post["ng"] * before < 0


@pytest.mark.parametrize("mean_update", ["ng", "gain"])
@pytest.mark.parametrize("batch", [1, 4])
def test_diag_one_hot_linear_gaussian_is_exact_bayes(mean_update, batch):
    """Conjugate linear-Gaussian model y = θᵀx + ε with one-hot features: the precision stays diagonal, so both
    diag mean updates equal exact Bayes (per coordinate: λ = 1/σ₀² + n_j/σ², μ = (μ₀/σ₀² + Σ y/σ²)/λ), one row
    at a time or in batches (where two rows may hit the same coordinate). Tolerance 1e-10: float64."""
    from torch import nn

    from bongrl.bong import BONG

    P, n, sigma, sigma0 = 6, 40, 0.4, 1.5
    gen = torch.Generator().manual_seed(14)
    idx = torch.randint(P, (n,), generator=gen)
    X = torch.nn.functional.one_hot(idx, P).to(F64)
    theta = torch.randn(P, generator=gen, dtype=F64)
    y = X @ theta + sigma * torch.randn(n, generator=gen, dtype=F64)
    mu0 = torch.randn(P, generator=gen, dtype=F64)
    est = BONG(nn.Linear(P, 1, bias=False), family="diag", obs_std=sigma, prior_std=sigma0, prior_mean=mu0,
               device="cpu", dtype=F64, mean_update=mean_update)
    for t in range(0, n, batch):
        est.update(X[t : t + batch], y[t : t + batch])
    prec = 1.0 / sigma0**2 + X.sum(0) / sigma**2
    mean = (mu0 / sigma0**2 + X.T @ y / sigma**2) / prec
    torch.testing.assert_close(est.mean, mean, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(est.state["prec"], prec, rtol=1e-10, atol=1e-10)


def test_diag_gain_is_lin_only():
    """The gain identity needs g = A·e (BONG-LIN); the Monte-Carlo variants are refused at construction, and an
    unknown mean_update is rejected."""
    from torch import nn

    from bongrl.bong import BONG

    for method in ("mc-ef", "mc-hess"):
        with pytest.raises(ValueError, match="needs method='lin'"):
            BONG(nn.Linear(2, 1), family="diag", method=method, device="cpu", mean_update="gain")
        BONG(nn.Linear(2, 1), family="diag", method=method, device="cpu", mean_update="ng")
    with pytest.raises(ValueError, match="mean_update"):
        registry.create_posterior("diag", mean_update="kalman")


def test_update_lin_equals_whitened_update():
    """update_lin(H, r, R) is update(A, g) with AAᵀ = Σ HᵀR⁻¹H, g = Σ HᵀR⁻¹r.
    Tolerance 1e-12: float64 round-off."""
    P, B, C = 6, 3, 2
    gen = torch.Generator().manual_seed(5)
    H = torch.randn(B, C, P, generator=gen, dtype=F64)
    r = torch.randn(B, C, generator=gen, dtype=F64)
    Lr = torch.randn(B, C, C, generator=gen, dtype=F64)
    R = Lr @ Lr.transpose(-1, -2) + torch.eye(C, dtype=F64)
    A, g = whiten_lin(H, r, R)
    Rinv = torch.linalg.inv(R)
    torch.testing.assert_close(A @ A.T, torch.einsum("bcp,bcd,bdq->pq", H, Rinv, H), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g, torch.einsum("bcp,bcd,bd->p", H, Rinv, r), rtol=1e-12, atol=1e-12)
    fam = _family("full")
    state = _random_state(fam, P)
    a, b = fam.update_lin(state, H, r, R), fam.update(state, A, g)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------------- predict step
@pytest.mark.parametrize("name", FAMILIES)
def test_predict_identity_is_bit_identical(name):
    """gamma=1, q=0 is the identity: bit-identical (no arithmetic at all)."""
    fam = _family(name)
    state = _random_state(fam, 6)
    before = _clone(state)
    out = fam.predict(state, 1.0, 0.0, torch.randn(6, dtype=F64))
    _assert_state_equal(out, before)
    _assert_state_equal(state, before)


@pytest.mark.parametrize("name", ["full", "diag"])
def test_predict_process_noise_adds_q_identity(name):
    """Σ' = Σ + qI exactly for full and diag (γ = 1). Tolerance 1e-12: float64 (diag inverts twice)."""
    fam = _family(name)
    state = _random_state(fam, 6)
    q = 0.3
    new = fam.predict(state, 1.0, q)
    torch.testing.assert_close(
        fam.covariance(new) - fam.covariance(state), q * torch.eye(6, dtype=F64), rtol=0, atol=1e-12
    )
    torch.testing.assert_close(new["mean"], state["mean"], rtol=0, atol=0)


@pytest.mark.parametrize("name", ["full", "diag"])
def test_predict_gamma_and_q(name):
    """Σ' = γ²Σ + qI for full and diag. Tolerance 1e-12: float64."""
    fam = _family(name)
    state = _random_state(fam, 6)
    new = fam.predict(state, 0.7, 0.2)
    expect = 0.49 * fam.covariance(state) + 0.2 * torch.eye(6, dtype=F64)
    torch.testing.assert_close(fam.covariance(new), expect, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", FAMILIES)
def test_predict_gamma_pulls_mean_to_prior(name):
    """μ' = γμ + (1−γ)μ₀ for every family; without μ₀ the pull is toward 0. Tolerance 1e-14: two flops."""
    fam = _family(name)
    state = _random_state(fam, 6)
    mu0 = torch.linspace(-1, 1, 6, dtype=F64)
    new = fam.predict(state, 0.6, 0.0, mu0)
    torch.testing.assert_close(new["mean"], 0.6 * state["mean"] + 0.4 * mu0, rtol=1e-14, atol=1e-14)
    assert (new["mean"] - mu0).norm() < (state["mean"] - mu0).norm()
    torch.testing.assert_close(fam.predict(state, 0.6, 0.0)["mean"], 0.6 * state["mean"], rtol=0, atol=0)


def test_dlr_predict_gamma_only_scales_covariance():
    """dlr with q=0: Σ' = γ²Σ exactly (υ/γ², W/γ). Tolerance 1e-12 relative: float64 Woodbury round-off."""
    fam = _family("dlr", rank=3)
    state = _random_state(fam, 8)
    for gamma in (0.99, 0.5):
        new = fam.predict(state, gamma, 0.0)
        torch.testing.assert_close(
            fam.covariance(new), gamma**2 * fam.covariance(state), rtol=1e-12, atol=1e-14
        )


def test_dlr_predict_process_noise_isotropic_is_exact():
    """dlr LO-FI predict is exact when υ is isotropic (derivation in the dlr docstring's source, LO-FI §3):
    Σ' = Σ + qI. Tolerance 1e-10: float64; elsewhere the family documents it as an approximation."""
    fam = _family("dlr", rank=2)
    P = 6
    gen = torch.Generator().manual_seed(6)
    state = fam.init(torch.zeros(P, dtype=F64), torch.full((P,), 0.5, dtype=F64))
    state = fam.update(state, torch.randn(P, 2, generator=gen, dtype=F64), torch.zeros(P, dtype=F64))
    new = fam.predict(state, 1.0, 0.3)
    torch.testing.assert_close(
        fam.covariance(new), fam.covariance(state) + 0.3 * torch.eye(P, dtype=F64), rtol=1e-10, atol=1e-10
    )


# -------------------------------------------------------------------------------- PD under stress
def _stress(
    name: str, n_updates: int, cols: int, seed: int, P: int | None = None, predict: bool = True
) -> None:
    """Random information-form updates (columns with scales 1e-3 … 1e3), optionally interleaved with predict
    steps, float32. The belief must stay positive definite: health() > 0 and the dense covariance's Cholesky
    succeeds; sampling must work.
    """
    P = 8 + seed % 13 if P is None else P  # P in 8..20
    fam = _family(name, rank=4)
    gen = torch.Generator().manual_seed(seed)
    state = fam.init(torch.zeros(P), torch.ones(P))
    check_every = max(n_updates // 20, 1)
    for t in range(n_updates):
        scale = 10.0 ** (6 * torch.rand(1, cols, generator=gen) - 3)
        A = torch.randn(P, cols, generator=gen) * scale
        g = A @ torch.randn(cols, generator=gen)
        state = fam.update(state, A, g)
        if predict and t % 97 == 0:
            state = fam.predict(state, 0.999, float(10 ** (-4 * torch.rand(1, generator=gen).item())))
        if t % check_every == 0 or t == n_updates - 1:
            assert fam.health(state) > 0, f"{name}: not positive definite after {t + 1} updates"
            cov = fam.covariance(state).double()
            assert torch.linalg.cholesky_ex(cov)[1] == 0, f"{name}: Cholesky failed after {t + 1} updates"
            assert bool(torch.isfinite(state["mean"]).all())
            assert bool(torch.isfinite(fam.sample(state, 2, gen)).all())


@pytest.mark.parametrize("name", VARIANTS)
def test_positive_definite_under_1e5_random_rank_one_increments(name):
    """1e5 rank-one increments per family (5·10³ updates of 20 columns each, 50+ predict steps), float32.

    Batching keeps the default run fast (~a few s per family); the per-update variant is the slow test below.
    """
    t0 = time.perf_counter()
    _stress(name, n_updates=5_000, cols=20, seed=11)
    assert time.perf_counter() - t0 < 60  # generous: catches an accidental O(P³) blow-up, not a benchmark


@pytest.mark.parametrize("name", VARIANTS)
def test_positive_definite_without_process_noise(name):
    """3·10³ single-column updates and no predict step, float32: Σ's condition number reaches ~10⁹, past
    float32's
    1/eps ≈ 10⁷. (This seed made the previous term-by-term Joseph update of ``full`` indefinite after ~10³
    steps.)"""
    _stress(name, n_updates=3_000, cols=1, seed=1, P=13, predict=False)


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("seed,predict", [(0, True), (7, True), (1, False)])
def test_positive_definite_under_1e5_single_column_updates(name, seed, predict):
    """1e5 separate single-column updates per family (slow: ~1 min per family and seed)."""
    _stress(name, n_updates=100_000, cols=1, seed=seed, predict=predict)


# ------------------------------------------------------------------------------------ conformance
@pytest.mark.parametrize("name", VARIANTS)
def test_family_conformance(name):
    """Every registered family (third-party plugins included) honours the protocol in ``posteriors/base.py``.

    Tolerances are 1e-10 (float64, P=6: every identity below is exact algebra up to round-off).
    """
    tol = {"rtol": 1e-10, "atol": 1e-10}
    P = 6
    fam = _family(name)
    gen = torch.Generator().manual_seed(0)
    mean = torch.randn(P, generator=gen, dtype=F64)
    var = torch.rand(P, generator=gen, dtype=F64) + 0.5

    # init: mean and prior covariance diag(var)
    state = fam.init(mean, var)
    fam.validate_state(state)
    torch.testing.assert_close(state["mean"], mean, rtol=0, atol=0)
    torch.testing.assert_close(fam.covariance(state), torch.diag(var), **tol)
    assert fam.num_params(state) == P
    assert not any(v.data_ptr() == mean.data_ptr() for v in state.values()), "init must not alias its input"

    state = _random_state(fam, P)
    fam.validate_state(state)
    assert fam.health(state) > 0
    cov = fam.covariance(state)
    torch.testing.assert_close(cov, cov.T, rtol=0, atol=1e-12)
    assert torch.linalg.eigvalsh(cov).min() > 0

    # sample_from_noise is affine in z with slope Σ^{1/2}: T = S(I_D) − μ has TᵀT = Σ exactly
    D = fam.noise_dim(state)
    T = fam.sample_from_noise(state, torch.eye(D, dtype=F64)) - state["mean"]
    assert T.shape == (D, P)
    torch.testing.assert_close(T.T @ T, cov, **tol)
    torch.testing.assert_close(
        fam.sample_from_noise(state, torch.zeros(1, D, dtype=F64))[0], state["mean"], **tol
    )
    s = fam.sample(state, 5, torch.Generator().manual_seed(1))
    assert s.shape == (5, P) and s.dtype == F64
    torch.testing.assert_close(s, fam.sample(state, 5, torch.Generator().manual_seed(1)), rtol=0, atol=0)
    for bad_n in (0, -1, 2.5):
        with pytest.raises(ValueError):
            fam.sample(state, bad_n)

    H = assert_sigma_products(fam, state, cov, gen, tol)

    # update: returns a new valid state and never modifies its input. (Variances need not all shrink: dlr's
    # diagonal-preserving truncation is not monotone in the Loewner order, so that is not part of the
    # contract.)
    before = _clone(state)
    A = torch.randn(P, 2, generator=gen, dtype=F64)
    g = torch.randn(P, generator=gen, dtype=F64)
    new = fam.update(state, A, g)
    _assert_state_equal(state, before)
    fam.validate_state(new)
    assert fam.health(new) > 0
    new0 = fam.update(state, torch.zeros(P, 1, dtype=F64), torch.zeros(P, dtype=F64))
    torch.testing.assert_close(fam.covariance(new0), cov, **tol)  # a zero increment changes nothing
    torch.testing.assert_close(new0["mean"], state["mean"], **tol)
    new_lin = fam.update_lin(state, H, torch.randn(2, generator=gen, dtype=F64), 0.5)
    new_mc = fam.update_mc(state, torch.randn(5, P, generator=gen, dtype=F64))
    for st in (new_lin, new_mc):
        fam.validate_state(st)
        _assert_state_equal(state, before)
    predicted = fam.predict(state, 0.9, 0.1)
    _assert_state_equal(state, before)
    fam.validate_state(predicted)

    # bad inputs raise ValueError and leave the state bit-identical
    nanA, nanG = A.clone(), g.clone()
    nanA[1, 0], nanG[2] = float("nan"), float("inf")
    bad_calls = [
        lambda: fam.update(state, nanA, g),
        lambda: fam.update(state, A, nanG),
        lambda: fam.update(state, torch.randn(P + 1, 2, dtype=F64), g),
        lambda: fam.update(state, torch.randn(P, dtype=F64), g),
        lambda: fam.update(state, A, torch.randn(P + 1, dtype=F64)),
        lambda: fam.update(state, A, torch.randn(P, 1, dtype=F64)),
        lambda: fam.update_lin(state, H, torch.randn(3, dtype=F64), 0.5),
        lambda: fam.update_lin(state, H, torch.randn(2, dtype=F64), -1.0),
        lambda: fam.update_lin(state, torch.randn(2, P + 1, dtype=F64), torch.randn(2, dtype=F64), 0.5),
        lambda: fam.update_mc(state, torch.randn(5, P + 1, dtype=F64)),
        lambda: fam.update_mc(state, torch.full((5, P), float("nan"), dtype=F64)),
        lambda: fam.predict(state, 1.0, -0.1),
        lambda: fam.predict(state, 1.0, float("nan")),
        lambda: fam.predict(state, 0.0, 0.0),
        lambda: fam.predict(state, 1.5, 0.0),
        lambda: fam.predict(state, -0.5, 0.0),
        lambda: fam.predict(state, float("nan"), 0.0),
        lambda: fam.predict(state, 0.9, 0.0, torch.zeros(P + 1, dtype=F64)),
    ]
    for i, call in enumerate(bad_calls):
        with pytest.raises(ValueError):
            call()
        _assert_state_equal(state, before)
        assert i >= 0

    # validate_state rejects wrong shapes, missing/extra keys and non-finite entries
    assert_validate_state_rejects_damage(fam, state)
    with pytest.raises(ValueError):
        fam.validate_state({**state, "extra": torch.zeros(P, dtype=F64)})
    fam.validate_state(state)


@pytest.mark.parametrize("name", VARIANTS)
def test_family_float32_roundtrip(name):
    """float32 states stay float32 through every operation (no silent promotion)."""
    fam = _family(name)
    state = _random_state(fam, 5, dtype=torch.float32)
    for v in fam.update(state, torch.randn(5, 2), torch.randn(5)).values():
        assert v.dtype == torch.float32
    assert fam.sample(state, 3).dtype == torch.float32
    assert math.isfinite(fam.health(state))


def test_dlr_float32_update_with_tiny_columns_stays_finite() -> None:
    """Regression: a float32 softmax-head update (scripts/finetune_head.py, seed 0, update 19) appends columns
    of norm ~1e-11..1e-21 beside O(1) factors; float32 LAPACK eigh of that Gram matrix returned NaN
    eigenvectors and the update was rejected. The family now decomposes the small Gram matrix in float64."""
    from pathlib import Path

    from safetensors.torch import load_file

    from bongrl.posteriors.dlr import DiagonalPlusLowRank

    case = load_file(str(Path(__file__).parent / "data" / "dlr_eigh_nan_case.safetensors"))
    fam = DiagonalPlusLowRank(rank=10)
    state = {k: case[k] for k in ("mean", "ups", "W")}
    new = fam.update(state, case["A"], case["g"])
    assert all(bool(torch.isfinite(v).all()) for v in new.values())
    # the precision's diagonal is preserved exactly by the truncation (up to float32 round-off)
    old_diag = state["ups"] + (state["W"] ** 2).sum(1) + (case["A"] ** 2).sum(1)
    assert torch.allclose(new["ups"] + (new["W"] ** 2).sum(1), old_diag, rtol=1e-5)


def test_full_cholesky_cache_follows_the_covariance() -> None:
    """`full` caches chol(Σ) between draws from the same Σ; a new state or an in-place change must not reuse it
    (exact: the same noise must map through the current Σ's factor)."""
    fam = registry.create_posterior("full")
    P = 4
    state = fam.init(torch.zeros(P, dtype=torch.float64), torch.ones(P, dtype=torch.float64))
    z = torch.eye(P, dtype=torch.float64)
    assert torch.allclose(fam.sample_from_noise(state, z), z)
    new = fam.update(state, torch.ones(P, 1, dtype=torch.float64), torch.zeros(P, dtype=torch.float64))
    T = fam.sample_from_noise(new, z)
    assert torch.allclose(T.T @ T, new["cov"], atol=1e-12)
    state["cov"].mul_(4.0)  # in place: the version counter invalidates the cached factor
    assert torch.allclose(fam.sample_from_noise(state, z), 2.0 * z)
