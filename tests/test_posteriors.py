"""Posterior families: the conformance suite (:mod:`bongrl.posteriors.testing`) on every family, proof that it
catches broken families, and the family-specific tests (exact algebra, predict step, positive definiteness).

Model-level anchors (conjugate regression, EKF equivalence, MC rates) live in ``test_bong.py``; the ``kfac``
Kronecker blocks in ``test_kfac.py``.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest
import torch

from bongrl import registry
from bongrl.posteriors import testing
from bongrl.posteriors.base import PosteriorFamily, State, whiten_lin
from bongrl.posteriors.diag import DiagonalPrecision
from bongrl.posteriors.full import FullCovariance
from bongrl.posteriors.kfac import KroneckerFactored

F64 = torch.float64
FAMILIES = registry.available("posterior")
#: registered families plus option variants that must honour the same protocol ("name:mean_update")
VARIANTS = [*FAMILIES, "diag:ng"]  # plain "diag" is mean_update="auto" (the gain form for LIN)


def _family(name: str, rank: int = 3) -> PosteriorFamily:
    name, _, mean_update = name.partition(":")
    shared = {"rank": rank}  # offered to every family, as BONG does; taken by those that name it
    if mean_update:
        return registry.create_posterior(name, shared, mean_update=mean_update)
    return registry.create_posterior(name, shared)


def _kfac_with_layout(P: int) -> KroneckerFactored:
    """kfac over one Linear(d_in → 2) layer with bias plus the remaining parameters on the diagonal (P >= 5)."""
    d_in = max(1, (P - 4) // 2)
    shapes: list[tuple[str, tuple[int, ...]]] = [("l.weight", (2, d_in)), ("l.bias", (2,))]
    if P > 2 * d_in + 2:
        shapes.append(("rest", (P - 2 * d_in - 2,)))
    return KroneckerFactored(param_shapes=shapes)


#: what each built-in family claims: exact Bayes on dense linear-Gaussian models (else on independent
#: coordinates only) and an exact qI in the predict step (dlr's LO-FI predict approximates it).
CLAIMS: dict[str, dict[str, bool]] = {
    "full": {"exact": True},
    "diag": {"exact": False},
    "diag:ng": {"exact": False},
    "dlr": {"exact": False, "exact_process_noise": False},  # rank 3 < P
    "kfac": {"exact": False},  # no layout: all-diagonal
}
#: (factory, claims) per case: every registered family (a third-party plugin is held to the weakest claims),
#: the diag NG variant, dlr at full rank (exact on dense models) and kfac with a Kronecker layer.
CASES: dict[str, tuple[testing.Factory, dict[str, bool]]] = {
    **{
        name: (lambda P, name=name: _family(name), CLAIMS.get(name, {"exact": False, "exact_process_noise": False}))
        for name in VARIANTS
    },
    "dlr:rank=P": (lambda P: registry.create_posterior("dlr", rank=P), {"exact": True, "exact_process_noise": False}),
    "kfac:layout": (_kfac_with_layout, {"exact": False}),
}


def _random_state(fam: PosteriorFamily, P: int, seed: int = 0, dtype=F64) -> State:
    return testing.random_state(fam, P, dtype=dtype, seed=seed)


# ------------------------------------------------------------------------------------ conformance
@pytest.mark.parametrize("dtype", [F64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("case", list(CASES))
def test_family_conformance(case: str, dtype: torch.dtype) -> None:
    """Every family honours the protocol of ``posteriors/base.py``: the whole suite, tolerances in
    :func:`bongrl.posteriors.testing.tolerance`."""
    factory, claims = CASES[case]
    testing.check_family(factory, dtype=dtype, **claims)


def test_example_plugin_family_conforms() -> None:
    """The suite runs on a third-party family as its docstring shows: the example plugin's ``fullprec``
    (information form, exact) passes every check, dense exactness included."""
    path = Path(__file__).parents[1] / "examples" / "third_party_plugin" / "src" / "bongrl_example_plugin"
    spec = importlib.util.spec_from_file_location("_fullprec_under_test", path / "fullprec.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    testing.check_family(lambda P: module.FullPrecision(), exact=True)


def test_check_family_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="float64 or float32"):
        testing.check_family(lambda P: FullCovariance(), dtype=torch.float16)
    with pytest.raises(ValueError, match="unknown check"):
        testing.check_family(lambda P: FullCovariance(), skip=("nope",))
    with pytest.raises(AssertionError, match="not a PosteriorFamily"):
        testing.check_family(lambda P: object())  # type: ignore[arg-type, return-value]


# --------------------------------------------------------------------- the suite catches broken families
class _NoMeanStep(FullCovariance):
    """Updates Σ but forgets μ' = μ + Σ'g."""

    def _update(self, state: State, A: torch.Tensor, g: torch.Tensor) -> State:
        return {**super()._update(state, A, g), "mean": state["mean"].clone()}


class _AsymmetricCov(FullCovariance):
    """Adds an antisymmetric part to Σ at every update."""

    def _update(self, state: State, A: torch.Tensor, g: torch.Tensor) -> State:
        new = super()._update(state, A, g)
        skew = torch.zeros_like(new["cov"])
        skew[0, 1], skew[1, 0] = 0.01, -0.01
        return {**new, "cov": new["cov"] + skew * new["cov"].diagonal().mean()}


class _IgnoresProcessNoise(FullCovariance):
    def _predict(self, state: State, gamma: float, q: float, prior_mean: torch.Tensor | None) -> State:
        return super()._predict(state, gamma, 0.0, prior_mean)


class _SamplesWithSigma(FullCovariance):
    """Maps noise through Σ instead of a square root of Σ."""

    def sample_from_noise(self, state: State, z: torch.Tensor) -> torch.Tensor:
        return state["mean"] + z @ state["cov"].T


class _UniformSamples(FullCovariance):
    """sample_from_noise is right, but sample draws uniform noise (mean ½, variance 1/12) instead of N(0, I)."""

    def sample(self, state: State, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        if not isinstance(n, int) or n < 1:
            raise ValueError("n must be a positive int")
        mean = state["mean"]
        z = torch.rand(n, self.noise_dim(state), generator=generator, dtype=mean.dtype)
        return self.sample_from_noise(state, z)


class _UpdatesInPlace(FullCovariance):
    def _update(self, state: State, A: torch.Tensor, g: torch.Tensor) -> State:
        new = super()._update(state, A, g)
        state["mean"].copy_(new["mean"])
        return new


class _PromotesToFloat64(FullCovariance):
    def _update(self, state: State, A: torch.Tensor, g: torch.Tensor) -> State:
        return {k: v.double() for k, v in super()._update(state, A, g).items()}


class _LaxValidation(FullCovariance):
    def validate_state(self, state: State) -> None:
        if "mean" not in state:
            raise ValueError("no mean")


class _LayoutDependent(FullCovariance):
    """Keeps Σ transposed (non-contiguous) after a predict step, and its precondition differs in the last bit
    when Σ is not contiguous: within every tolerance, but a reloaded (contiguous) state continues differently."""

    def _predict(self, state: State, gamma: float, q: float, prior_mean: torch.Tensor | None) -> State:
        new = super()._predict(state, gamma, q, prior_mean)
        return {**new, "cov": new["cov"].T}

    def precondition(self, state: State, v: torch.Tensor) -> torch.Tensor:
        out = state["cov"] @ v
        return out if state["cov"].is_contiguous() else out * (1 + torch.finfo(out.dtype).eps)


@pytest.mark.parametrize(
    "family,claims,match",
    [
        (_NoMeanStep, {}, "information form: μ' vs μ"),
        (_NoMeanStep, {"exact": False}, r"conjugate update \(independent coordinates\): posterior mean"),
        (_AsymmetricCov, {}, "covariance: Σ is not symmetric"),
        (_IgnoresProcessNoise, {}, r"predict: Σ after predict\(γ=0.7, q=0.2\) from the prior"),
        (_SamplesWithSigma, {}, "sample_from_noise: TᵀT vs Σ"),
        (_UniformSamples, {}, "sample moments: sample mean is"),
        (_UpdatesInPlace, {}, "the input state after update"),
        (_PromotesToFloat64, {"dtype": torch.float32}, r"dtype: .* holds \['cov', 'mean'\] in another dtype"),
        (_LaxValidation, {}, "validate_state with 'mean' grown by one row did not raise"),
        (_LayoutDependent, {}, "state_dict round trip: .* on the reloaded state is not bit-identical"),
        (DiagonalPrecision, {"exact": True}, "(?s)information form: .*pass exact=False"),
        (DiagonalPrecision, {"exact": True, "skip": ("information_form",)},
         r"(?s)conjugate update \(dense\).*exact=False"),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_check_family_catches_a_broken_family(family: type, claims: dict, match: str) -> None:
    """Each deliberately broken family (or a false claim) fails with an AssertionError naming the check."""
    with pytest.raises(AssertionError, match=match):
        testing.check_family(lambda P: family(), **claims)


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
def _stress(name: str, n_updates: int, cols: int, seed: int, P: int | None = None, predict: bool = True) -> None:
    """:func:`bongrl.posteriors.testing.check_positive_definite` on a registered family (rank 4 for dlr), float32,
    P in 8..20 from the seed unless given."""
    testing.check_positive_definite(
        lambda P: _family(name, rank=4), n_updates=n_updates, cols=cols, P=8 + seed % 13 if P is None else P,
        seed=seed, predict=predict,
    )


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
    float32's 1/eps ≈ 10⁷. (This seed made the previous term-by-term Joseph update of ``full`` indefinite after
    ~10³ steps.)"""
    _stress(name, n_updates=3_000, cols=1, seed=1, P=13, predict=False)


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("seed,predict", [(0, True), (7, True), (1, False)])
def test_positive_definite_under_1e5_single_column_updates(name, seed, predict):
    """1e5 separate single-column updates per family (slow: ~1 min per family and seed)."""
    _stress(name, n_updates=100_000, cols=1, seed=seed, predict=predict)


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
