"""Conformance suite for posterior families (the protocol of :mod:`bongrl.posteriors.base`, docs/design.md §3).

Every check is a plain function that raises :class:`AssertionError` with a message naming the family, the check
and what went wrong; :func:`check_family` runs them all. The built-in families are tested with it
(``tests/test_posteriors.py``), and so can be a third-party family (docs/design.md §10). Nothing here imports
pytest, so the suite runs under any test runner or from a plain script.

Testing your family
-------------------
Pass a *factory* ``factory(P) -> PosteriorFamily`` that returns a fresh instance for a belief over P
parameters (P varies between checks: a family that needs a parameter layout, like ``kfac``, builds one for P)::

    # tests/test_my_family.py
    import torch
    from bongrl.posteriors.testing import check_family
    from my_package.family import MyFamily

    def test_my_family_conforms():
        check_family(lambda P: MyFamily(), dtype=torch.float64, seed=0, exact=False)

``exact`` states what the family claims. ``exact=True`` (the default): its update is exact Bayes for *any*
linear-Gaussian observation (a dense precision, like ``full``, or ``dlr`` with rank ≥ P). ``exact=False``: it is
exact only when every observation touches one parameter (independent coordinates keep the precision diagonal,
which every family represents, since it represents its own prior). ``exact_process_noise=False`` is for a family
whose predict step approximates Σ + qI (``dlr``'s LO-FI step); forgetting alone (q = 0) must still be exact. The
individual checks are public too, to run one of them on a state of your own (e.g. :func:`check_sigma_products`).

The module is long because each check is a public function a plugin author can run alone, with its tolerance
and the reason for it stated beside it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from bongrl.posteriors.base import PosteriorFamily, State

__all__ = [
    "Factory",
    "check_family",
    "tolerance",
    "random_state",
    "check_init",
    "check_validate_state",
    "check_covariance",
    "check_sigma_products",
    "check_sample_from_noise",
    "check_sample_moments",
    "check_predict",
    "check_update_contract",
    "check_bad_inputs",
    "check_information_form",
    "check_conjugate_update",
    "check_positive_definite",
    "check_float32_roundtrip",
    "check_state_dict_roundtrip",
]

#: ``factory(P)`` returns a fresh family instance for a belief over P parameters.
Factory = Callable[[int], PosteriorFamily]


def tolerance(dtype: torch.dtype) -> float:
    """Relative (and absolute) tolerance of the identities that are exact algebra up to round-off.

    The suite's beliefs are small (P = 6 by default) and well conditioned (prior variances in [0.5, 1.5] and O(1)
    increments), and every identity checked is a handful of P×P products, solves or factorisations, so only
    round-off separates the two sides: measured on every built-in family and the example plugin (seeds 0-5), at
    most 7·10⁻¹⁵ in float64 and 6·10⁻⁶ in float32 (relative to 1 + |expected|). The bounds leave margins of
    ~10⁴ and ~200 for families with less favourable round-off; a wrong formula is off by O(1).
    """
    if dtype == torch.float64:
        return 1e-10
    if dtype == torch.float32:
        return 1e-3
    raise ValueError(f"the conformance suite runs in float64 or float32, got {dtype}")


# ---------------------------------------------------------------------------------------------------- helpers
def _who(family: PosteriorFamily) -> str:
    name = getattr(family, "name", "") or "?"
    return f"family {name!r} ({type(family).__name__})"


def _fail(family: PosteriorFamily, check: str, detail: str) -> AssertionError:
    return AssertionError(f"{_who(family)}: {check}: {detail}")


def _close(family: PosteriorFamily, check: str, what: str, actual: Tensor, expected: Tensor, tol: float) -> None:
    """torch.testing.assert_close with ``rtol = atol = tol``, its message prefixed by family, check and quantity."""
    try:
        torch.testing.assert_close(actual, expected.to(actual), rtol=tol, atol=tol)
    except AssertionError as exc:
        raise _fail(family, check, f"{what}: {exc}") from None


def _equal_states(family: PosteriorFamily, check: str, what: str, a: State, b: State) -> None:
    """Bit-identical: same keys, and ``torch.equal`` on every entry."""
    if set(a) != set(b):
        raise _fail(family, check, f"{what}: keys differ: {sorted(a)} vs {sorted(b)}")
    for k in a:
        if a[k].dtype != b[k].dtype or not torch.equal(a[k], b[k]):
            raise _fail(family, check, f"{what}: entry {k!r} is not bit-identical")


def _clone(state: State) -> State:
    return {k: v.clone() for k, v in state.items()}


def _expect_value_error(family: PosteriorFamily, check: str, what: str, call: Callable[[], object]) -> None:
    try:
        call()
    except ValueError:
        return
    except Exception as exc:  # noqa: BLE001 - any other type is the failure being reported
        raise _fail(family, check, f"{what} raised {type(exc).__name__} ({exc}), not ValueError") from exc
    raise _fail(family, check, f"{what} did not raise ValueError")


def _randn(gen: torch.Generator, *shape: int, dtype: torch.dtype, device: torch.device | str = "cpu") -> Tensor:
    """Normal draws made on the CPU from ``gen`` (reproducible on every device), then moved."""
    return torch.randn(*shape, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)


def _rand(gen: torch.Generator, *shape: int, dtype: torch.dtype, device: torch.device | str = "cpu") -> Tensor:
    return torch.rand(*shape, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)


def _prior(P: int, gen: torch.Generator, dtype: torch.dtype, device: torch.device | str) -> tuple[Tensor, Tensor]:
    """A random prior: mean ~ N(0, I), variances uniform in [0.5, 1.5)."""
    return _randn(gen, P, dtype=dtype, device=device), _rand(gen, P, dtype=dtype, device=device) + 0.5


def random_state(
    family: PosteriorFamily,
    P: int,
    *,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> State:
    """A non-trivial belief for the checks: a random prior, three random two-column updates and one predict step
    (γ = 0.9, q = 0.05, pulled toward a zero prior mean)."""
    gen = torch.Generator().manual_seed(seed)
    state = family.init(*_prior(P, gen, dtype, device))
    for _ in range(3):
        state = family.update(state, _randn(gen, P, 2, dtype=dtype, device=device),
                              _randn(gen, P, dtype=dtype, device=device))
    return family.predict(state, 0.9, 0.05, torch.zeros(P, dtype=dtype, device=device))


def _dense_cov(family: PosteriorFamily, state: State, check: str) -> Tensor:
    cov = family.covariance(state)
    P = family.num_params(state)
    if cov.shape != (P, P):
        raise _fail(family, check, f"covariance() has shape {tuple(cov.shape)}, expected ({P}, {P})")
    return cov


# ------------------------------------------------------------------------------------------------ the checks
def check_init(
    factory: Factory,
    *,
    P: int = 6,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> None:
    """``init(mean, var)`` is the prior N(mean, diag(var)): a valid state of the input's dtype and device, holding
    its own copy of the mean (no aliasing), with ``num_params`` = P and ``noise_dim`` ≥ P (the noise must span
    a positive-definite Σ)."""
    check = "init"
    family = factory(P)
    tol = tolerance(dtype)
    mean, var = _prior(P, torch.Generator().manual_seed(seed), dtype, device)
    state = family.init(mean, var)
    try:
        family.validate_state(state)
    except ValueError as exc:
        raise _fail(family, check, f"validate_state rejects the prior state: {exc}") from exc
    for k, v in state.items():
        if v.dtype != dtype or v.device != mean.device:
            raise _fail(family, check, f"state entry {k!r} is {v.dtype} on {v.device}, the mean {dtype} on "
                                       f"{mean.device}")
        if v.data_ptr() in (mean.data_ptr(), var.data_ptr()):
            raise _fail(family, check, f"state entry {k!r} aliases an input of init (it must be a copy)")
    if not torch.equal(state["mean"], mean):
        raise _fail(family, check, "the state's mean is not the prior mean")
    if family.num_params(state) != P:
        raise _fail(family, check, f"num_params is {family.num_params(state)}, expected {P}")
    if family.noise_dim(state) < P:
        raise _fail(family, check, f"noise_dim {family.noise_dim(state)} < P = {P}: samples cannot span Σ")
    _close(family, check, "prior covariance vs diag(prior_var)", _dense_cov(family, state, check),
           torch.diag(var), tol)
    _close(family, check, "prior marginal variance", family.marginal_variance(state), var, tol)


def check_validate_state(family: PosteriorFamily, state: State) -> None:
    """``validate_state`` accepts ``state`` and rejects (ValueError) every entry grown by one row, given an
    extra leading axis or holding a NaN, every entry but the mean left out, and an extra key."""
    check = "validate_state"
    try:
        family.validate_state(state)
    except ValueError as exc:
        raise _fail(family, check, f"rejects a valid state: {exc}") from exc
    for key, val in state.items():
        damaged = {
            "grown by one row": torch.cat([val, val[:1]], 0),
            "with an extra leading axis": val.unsqueeze(0),
        }
        if val.is_floating_point() and val.numel():
            nan = val.clone()
            nan[(0,) * nan.ndim] = float("nan")
            damaged["holding a NaN"] = nan
        for how, bad in damaged.items():
            _expect_value_error(family, check, f"validate_state with {key!r} {how}",
                                lambda bad=bad, key=key: family.validate_state({**state, key: bad}))
        if key != "mean":
            _expect_value_error(family, check, f"validate_state without {key!r}",
                                lambda key=key: family.validate_state({k: x for k, x in state.items() if k != key}))
    _expect_value_error(family, check, "validate_state with an extra key",
                        lambda: family.validate_state({**state, "extra": torch.zeros_like(state["mean"])}))


def _asymmetry(cov: Tensor) -> float:
    """max |Σ_ij − Σ_ji| / √(Σ_ii Σ_jj): the asymmetry on the scale of a correlation."""
    d = cov.diagonal().abs().clamp_min(torch.finfo(cov.dtype).tiny).sqrt()
    return float(((cov - cov.T).abs() / (d.unsqueeze(0) * d.unsqueeze(1))).max())


def check_covariance(family: PosteriorFamily, state: State, *, symmetry_tol: float | None = None) -> None:
    """The dense Σ is symmetric (asymmetry on the scale of a correlation at most ``symmetry_tol``, by default
    the dtype's :func:`tolerance`: a covariance update written as a symmetric product is symmetric to round-off)
    and positive definite (its Cholesky succeeds in float64), and ``health`` is positive and finite."""
    check = "covariance"
    cov = _dense_cov(family, state, check)
    tol = tolerance(cov.dtype) if symmetry_tol is None else symmetry_tol
    asym = _asymmetry(cov)
    if not asym <= tol:
        raise _fail(family, check, f"Σ is not symmetric: max |Σ_ij − Σ_ji|/√(Σ_ii Σ_jj) = {asym:.3g} > {tol:g}")
    if int(torch.linalg.cholesky_ex(cov.double()).info) != 0:
        raise _fail(family, check, "Σ is not positive definite (its float64 Cholesky fails)")
    h = family.health(state)
    if not (math.isfinite(h) and h > 0):
        raise _fail(family, check, f"health() = {h!r} for a positive-definite belief (must be finite and > 0)")


def check_sigma_products(family: PosteriorFamily, state: State, *, seed: int = 0) -> None:
    """The Σ-products agree with the dense covariance: ``precondition`` (Σv for a vector and for a matrix),
    ``predictive_cov`` (HΣHᵀ for one H and for a batch) and ``marginal_variance`` (diag Σ)."""
    check = "sigma products"
    cov = _dense_cov(family, state, check)
    P, dt, dev = cov.shape[0], cov.dtype, cov.device
    tol = tolerance(dt)
    gen = torch.Generator().manual_seed(seed)
    v = _randn(gen, P, dtype=dt, device=dev)
    V = _randn(gen, P, 3, dtype=dt, device=dev)
    H = _randn(gen, 2, P, dtype=dt, device=dev)
    HB = _randn(gen, 4, 2, P, dtype=dt, device=dev)
    _close(family, check, "precondition(v) vs Σv", family.precondition(state, v), cov @ v, tol)
    _close(family, check, "precondition(V) vs ΣV", family.precondition(state, V), cov @ V, tol)
    _close(family, check, "predictive_cov(H) vs HΣHᵀ", family.predictive_cov(state, H), H @ cov @ H.T, tol)
    _close(family, check, "predictive_cov(batch) vs HΣHᵀ", family.predictive_cov(state, HB),
           HB @ cov @ HB.transpose(-1, -2), tol)
    _close(family, check, "marginal_variance vs diag Σ", family.marginal_variance(state), cov.diagonal(), tol)


def check_sample_from_noise(family: PosteriorFamily, state: State, *, seed: int = 0) -> None:
    """``sample_from_noise`` is affine in z with slope a square root of Σ: T = S(I_D) − μ has TᵀT = Σ, and
    S(0) = μ. ``sample`` returns (n, P) in the state's dtype, is reproducible from a seeded generator, and
    rejects a non-positive or non-int n (ValueError)."""
    check = "sample_from_noise"
    cov = _dense_cov(family, state, check)
    mean = state["mean"]
    P, dt, tol = cov.shape[0], cov.dtype, tolerance(cov.dtype)
    D = family.noise_dim(state)
    eye = torch.eye(D, dtype=dt, device=mean.device)
    T = family.sample_from_noise(state, eye) - mean
    if T.shape != (D, P):
        raise _fail(family, check, f"sample_from_noise(I_D) has shape {tuple(T.shape)}, expected ({D}, {P})")
    _close(family, check, "TᵀT vs Σ (T = sample_from_noise(I) − μ)", T.T @ T, cov, tol)
    _close(family, check, "sample_from_noise(0) vs μ",
           family.sample_from_noise(state, torch.zeros(1, D, dtype=dt, device=mean.device))[0], mean, tol)
    z = _randn(torch.Generator().manual_seed(seed), 3, D, dtype=dt, device=mean.device)
    _close(family, check, "sample_from_noise(z) vs μ + zT (affine in z)", family.sample_from_noise(state, z),
           mean + z @ T, tol)
    s = family.sample(state, 5, torch.Generator().manual_seed(seed))
    if s.shape != (5, P) or s.dtype != dt:
        raise _fail(family, check, f"sample(5) is {tuple(s.shape)} {s.dtype}, expected (5, {P}) {dt}")
    if not torch.equal(s, family.sample(state, 5, torch.Generator().manual_seed(seed))):
        raise _fail(family, check, "sample is not reproducible from a seeded generator")
    for bad_n in (0, -1, 2.5):
        _expect_value_error(family, check, f"sample(n={bad_n!r})", lambda bad_n=bad_n: family.sample(state, bad_n))


def check_sample_moments(family: PosteriorFamily, state: State, *, n: int = 20_000, seed: int = 0) -> None:
    """``sample`` draws N(μ, Σ): the sample mean and covariance of n draws match μ and Σ.

    Monte-Carlo tolerance: 5 standard errors per entry — √(Σ_ii/n) for a mean, √((Σ_ii Σ_jj + Σ_ij²)/n) for a
    covariance entry (the variance of a Gaussian sample covariance). For P = 6 that is 27 entries, so a correct
    family fails with probability ≈ 27 · 5.7·10⁻⁷ ≈ 2·10⁻⁵ for a random seed (and never for a fixed one), while a
    wrong square root is off by O(1) standard deviations, i.e. O(√n) standard errors.
    """
    check = "sample moments"
    cov = _dense_cov(family, state, check).double()
    mean = state["mean"].double()
    s = family.sample(state, n, torch.Generator().manual_seed(seed)).double()
    var = cov.diagonal()
    m_hat = s.mean(0)
    m_err = (m_hat - mean).abs() / (var / n).sqrt()
    if not bool((m_err <= 5.0).all()):
        raise _fail(family, check, f"sample mean is {float(m_err.max()):.1f} standard errors from μ (bound 5; "
                                   f"n = {n})")
    c_hat = torch.cov(s.T)
    se = ((torch.outer(var, var) + cov**2) / n).sqrt()
    c_err = (c_hat - cov).abs() / se
    if not bool((c_err <= 5.0).all()):
        raise _fail(family, check, f"sample covariance is {float(c_err.max()):.1f} standard errors from Σ (bound "
                                   f"5; n = {n})")


def check_predict(
    family: PosteriorFamily, state: State, *, exact_process_noise: bool = True, seed: int = 0
) -> None:
    """The predict step μ' = γμ + (1−γ)μ₀, Σ' = γ²Σ + qI (docs/design.md §2):

    * γ = 1, q = 0 is the identity: the result is bit-identical to the input (no arithmetic at all);
    * the mean is pulled toward μ₀ (toward 0 without one), to round-off of the two flops;
    * forgetting alone (q = 0) scales Σ by γ² exactly (every family represents a rescaled precision);
    * from the prior (a diagonal Σ, which every family represents) Σ' = γ²Σ₀ + qI exactly;
    * from ``state``, Σ' = γ²Σ + qI exactly when ``exact_process_noise``; otherwise the predicted belief must
      still be valid and positive definite (the family's documented approximation);
    * the input state is never modified.
    """
    check = "predict"
    cov = _dense_cov(family, state, check)
    mean = state["mean"]
    P, dt, dev = cov.shape[0], cov.dtype, mean.device
    tol = tolerance(dt)
    flops_tol = 16 * torch.finfo(dt).eps  # μ' = γμ + (1−γ)μ₀ is two multiply-adds of O(1) numbers
    gen = torch.Generator().manual_seed(seed)
    mu0 = _randn(gen, P, dtype=dt, device=dev)
    before = _clone(state)
    _equal_states(family, check, "predict(γ=1, q=0) vs the input state", family.predict(state, 1.0, 0.0, mu0), before)

    gamma, q = 0.7, 0.2
    eye = torch.eye(P, dtype=dt, device=dev)
    for qq in (0.0, q):
        new = family.predict(state, gamma, qq, mu0)
        _close(family, check, f"mean after predict(γ={gamma}, q={qq}) vs γμ + (1−γ)μ₀", new["mean"],
               gamma * mean + (1 - gamma) * mu0, flops_tol)
        _close(family, check, f"mean after predict(γ={gamma}, q={qq}) without μ₀ vs γμ",
               family.predict(state, gamma, qq)["mean"], gamma * mean, flops_tol)
    _close(family, check, f"Σ after predict(γ={gamma}, q=0) vs γ²Σ", family.covariance(family.predict(state, gamma)),
           gamma**2 * cov, tol)

    prior_var = _rand(gen, P, dtype=dt, device=dev) + 0.5
    prior = family.init(mu0, prior_var)
    _close(family, check, f"Σ after predict(γ={gamma}, q={q}) from the prior vs γ²Σ₀ + qI",
           family.covariance(family.predict(prior, gamma, q)), torch.diag(gamma**2 * prior_var + q), tol)

    new = family.predict(state, gamma, q)
    try:
        family.validate_state(new)
    except ValueError as exc:
        raise _fail(family, check, f"the predicted state is invalid: {exc}") from exc
    if exact_process_noise:
        _close(family, check, f"Σ after predict(γ={gamma}, q={q}) vs γ²Σ + qI", family.covariance(new),
               gamma**2 * cov + q * eye, tol)
    else:
        check_covariance(family, new)
    _equal_states(family, check, "the input state after predict calls", state, before)


def check_update_contract(family: PosteriorFamily, state: State, *, seed: int = 0) -> None:
    """``update`` / ``update_lin`` / ``update_mc`` return a new valid, positive-definite state in the input's
    dtype and never modify their input; a zero increment (A = 0, g = 0) changes nothing."""
    check = "update contract"
    mean = state["mean"]
    P, dt, dev = mean.shape[0], mean.dtype, mean.device
    tol = tolerance(dt)
    gen = torch.Generator().manual_seed(seed)
    before = _clone(state)
    cov = _dense_cov(family, state, check)
    A, g = _randn(gen, P, 2, dtype=dt, device=dev), _randn(gen, P, dtype=dt, device=dev)
    H, r = _randn(gen, 2, P, dtype=dt, device=dev), _randn(gen, 2, dtype=dt, device=dev)
    results = {
        "update(A, g)": lambda: family.update(state, A, g),
        "update_lin(H, r, R=0.5)": lambda: family.update_lin(state, H, r, 0.5),
        "update_mc(grads)": lambda: family.update_mc(state, _randn(gen, 5, P, dtype=dt, device=dev)),
        "update_mc(grads, factors)": lambda: family.update_mc(
            state, _randn(gen, 5, P, dtype=dt, device=dev), _randn(gen, 5, P, 2, dtype=dt, device=dev)
        ),
    }
    for what, call in results.items():
        new = call()
        _equal_states(family, check, f"the input state after {what}", state, before)
        try:
            family.validate_state(new)
        except ValueError as exc:
            raise _fail(family, check, f"{what} returned an invalid state: {exc}") from exc
        bad = [k for k, v in new.items() if v.dtype != dt]
        if bad:
            raise _fail(family, check, f"{what} changed the dtype of {bad} (expected {dt})")
        if not family.health(new) > 0:
            raise _fail(family, check, f"{what} returned a belief with health() <= 0")
    new0 = family.update(state, torch.zeros(P, 1, dtype=dt, device=dev), torch.zeros(P, dtype=dt, device=dev))
    _close(family, check, "Σ after a zero increment", family.covariance(new0), cov, tol)
    _close(family, check, "μ after a zero increment", new0["mean"], mean, tol)


def check_bad_inputs(family: PosteriorFamily, state: State, *, seed: int = 0) -> None:
    """Bad inputs to update / update_lin / update_mc / predict (NaN or Inf, wrong shapes, a non-positive
    observation variance, γ outside (0, 1], negative or NaN q, a wrong-size prior mean) raise ValueError and leave
    the state bit-identical."""
    check = "bad inputs"
    mean = state["mean"]
    P, dt, dev = mean.shape[0], mean.dtype, mean.device
    gen = torch.Generator().manual_seed(seed)

    def rn(*shape: int) -> Tensor:
        return _randn(gen, *shape, dtype=dt, device=dev)

    A, g, H = rn(P, 2), rn(P), rn(2, P)
    nanA, infG = A.clone(), g.clone()
    nanA[1, 0], infG[2 % P] = float("nan"), float("inf")
    before = _clone(state)
    calls: dict[str, Callable[[], object]] = {
        "update with NaN in A": lambda: family.update(state, nanA, g),
        "update with Inf in g": lambda: family.update(state, A, infG),
        "update with A of P+1 rows": lambda: family.update(state, rn(P + 1, 2), g),
        "update with a 1-D A": lambda: family.update(state, rn(P), g),
        "update with g of size P+1": lambda: family.update(state, A, rn(P + 1)),
        "update with a 2-D g": lambda: family.update(state, A, rn(P, 1)),
        "update_lin with a residual of the wrong size": lambda: family.update_lin(state, H, rn(3), 0.5),
        "update_lin with R = -1": lambda: family.update_lin(state, H, rn(2), -1.0),
        "update_lin with H of P+1 columns": lambda: family.update_lin(state, rn(2, P + 1), rn(2), 0.5),
        "update_mc with grads of P+1 columns": lambda: family.update_mc(state, rn(5, P + 1)),
        "update_mc with NaN grads": lambda: family.update_mc(state, torch.full((5, P), float("nan"), dtype=dt,
                                                                               device=dev)),
        "update_mc with factors of the wrong shape": lambda: family.update_mc(state, rn(5, P), rn(4, P, 2)),
        "predict with q = -0.1": lambda: family.predict(state, 1.0, -0.1),
        "predict with q = NaN": lambda: family.predict(state, 1.0, float("nan")),
        "predict with γ = 0": lambda: family.predict(state, 0.0, 0.0),
        "predict with γ = 1.5": lambda: family.predict(state, 1.5, 0.0),
        "predict with γ = -0.5": lambda: family.predict(state, -0.5, 0.0),
        "predict with γ = NaN": lambda: family.predict(state, float("nan"), 0.0),
        "predict with a prior mean of size P+1": lambda: family.predict(state, 0.9, 0.0, rn(P + 1)),
    }
    for what, call in calls.items():
        _expect_value_error(family, check, what, call)
        _equal_states(family, check, f"the state after the rejected {what}", state, before)


def check_information_form(family: PosteriorFamily, state: State, *, seed: int = 0) -> None:
    """For a family exact on dense structure: one update with arbitrary (A, g) is Λ' = Λ + AAᵀ, μ' = μ + Λ'⁻¹g
    exactly (the protocol's definition, module docstring of :mod:`bongrl.posteriors.base`)."""
    check = "information form"
    cov = _dense_cov(family, state, check)
    mean = state["mean"]
    P, dt, dev = cov.shape[0], cov.dtype, mean.device
    gen = torch.Generator().manual_seed(seed)
    A, g = _randn(gen, P, 3, dtype=dt, device=dev), _randn(gen, P, dtype=dt, device=dev)
    new = family.update(state, A, g)
    lam = torch.linalg.inv(cov.double()) + (A @ A.T).double()
    _close(family, check, "Σ' vs (Σ⁻¹ + AAᵀ)⁻¹", family.covariance(new), torch.linalg.inv(lam), tolerance(dt))
    _close(family, check, "μ' vs μ + Λ'⁻¹g", new["mean"], mean.double() + torch.linalg.solve(lam, g.double()),
           tolerance(dt))


def check_conjugate_update(
    factory: Factory,
    *,
    P: int = 6,
    dense: bool = True,
    n_obs: int = 30,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> None:
    """BONG-LIN on a conjugate linear-Gaussian model y = Hθ + ε, ε ~ N(0, R), prior N(μ₀, diag v₀) is exact
    Bayes: after ``n_obs`` observations (in batches of 1, 3 and 2 rows) the belief is
    Λ = diag(1/v₀) + Σ HᵀR⁻¹H, μ = Λ⁻¹(diag(1/v₀)μ₀ + Σ HᵀR⁻¹y), computed in float64.

    ``dense=True``: Gaussian features, scalar observations (R = σ² = 0.25) and every third batch a 2-vector
    observation with a correlated R. ``dense=False``: each observation touches one random coordinate (H = h eᵢᵀ,
    scalar R), so Λ stays diagonal; two rows of a batch may touch the same coordinate.
    """
    check = f"conjugate update ({'dense' if dense else 'independent coordinates'})"
    family = factory(P)
    gen = torch.Generator().manual_seed(seed)
    mu0, v0 = _prior(P, gen, torch.float64, "cpu")
    theta = torch.randn(P, generator=gen, dtype=torch.float64)
    state = family.init(mu0.to(device=device, dtype=dtype), v0.to(device=device, dtype=dtype))
    lam, eta = torch.diag(1.0 / v0), mu0 / v0
    sigma2 = 0.25
    t, k = 0, 0
    while t < n_obs:
        B = (1, 3, 2)[k % 3]
        if dense and k % 3 == 2:
            C = 2
            H = torch.randn(B, C, P, generator=gen, dtype=torch.float64)
            L = torch.randn(B, C, C, generator=gen, dtype=torch.float64)
            R = 0.5 * L @ L.transpose(-1, -2) + sigma2 * torch.eye(C, dtype=torch.float64)
        else:
            C = 1
            if dense:
                H = torch.randn(B, 1, P, generator=gen, dtype=torch.float64)
            else:
                H = torch.zeros(B, 1, P, dtype=torch.float64)
                j = torch.randint(P, (B,), generator=gen)
                H[torch.arange(B), 0, j] = torch.randn(B, generator=gen, dtype=torch.float64)
            R = torch.full((B, 1, 1), sigma2, dtype=torch.float64)
        noise = torch.linalg.cholesky(R) @ torch.randn(B, C, 1, generator=gen, dtype=torch.float64)
        y = H @ theta + noise.squeeze(-1)
        Rinv = torch.linalg.inv(R)
        lam = lam + torch.einsum("bcp,bcd,bdq->pq", H, Rinv, H)
        eta = eta + torch.einsum("bcp,bcd,bd->p", H, Rinv, y)
        Hd, Rd = H.to(device=device, dtype=dtype), R.to(device=device, dtype=dtype)
        residual = y.to(device=device, dtype=dtype) - Hd @ state["mean"]
        state = family.update_lin(state, Hd, residual, Rd)
        t, k = t + B, k + 1
    tol = tolerance(dtype)
    _close(family, check, "posterior mean vs exact Bayes", state["mean"], torch.linalg.solve(lam, eta), tol)
    _close(family, check, "posterior covariance vs exact Bayes", family.covariance(state), torch.linalg.inv(lam), tol)


def check_positive_definite(
    factory: Factory,
    *,
    n_updates: int = 1_000,
    cols: int = 1,
    P: int = 13,
    seed: int = 0,
    predict: bool = True,
    dtype: torch.dtype = torch.float32,
    checks: int = 20,
    symmetry_tol: float = 1e-3,
) -> None:
    """Random information-form updates whose columns have scales 10⁻³ … 10³ (so Σ's condition number grows far
    past 1/ε), optionally with a predict step (γ = 0.999, q ∈ [10⁻⁴, 1]) every 97 updates. At ``checks`` evenly
    spaced points and at the end ``health`` must be positive, the belief the state represents a symmetric
    positive-definite Gaussian (:func:`check_covariance` on the state cast to float64: a dense Σ formed from a
    stiff float32 factorisation, e.g. ``dlr``'s Woodbury form, loses its smallest eigenvalues to cancellation
    although the state is fine), its mean finite and samples finite.

    ``symmetry_tol`` (10⁻³ on the scale of a correlation by default): the built-in families keep Σ exactly
    symmetric here (measured: 0), a family that accumulates float32 round-off in Σ's two triangles may drift by
    a few ε per update, and a missing or wrong symmetric form is off by O(1). A family that raises (e.g.
    :class:`~bongrl.posteriors.base.NumericalError`) on one of these valid steps fails the check.
    """
    family = factory(P)
    gen = torch.Generator().manual_seed(seed)
    state = family.init(torch.zeros(P, dtype=dtype), torch.ones(P, dtype=dtype))
    check_every = max(n_updates // checks, 1)
    for t in range(n_updates):
        scale = 10.0 ** (6 * torch.rand(1, cols, generator=gen) - 3)
        A = (torch.randn(P, cols, generator=gen) * scale).to(dtype)
        g = A @ torch.randn(cols, generator=gen).to(dtype)
        try:
            state = family.update(state, A, g)
            if predict and t % 97 == 0:
                state = family.predict(state, 0.999, float(10 ** (-4 * torch.rand(1, generator=gen).item())))
        except ValueError as exc:  # NumericalError included: the family rejected a valid step
            raise _fail(family, f"positive definite (update {t + 1} of {n_updates}, seed {seed})",
                        f"{type(exc).__name__}: {exc}") from exc
        if t % check_every == 0 or t == n_updates - 1:
            where = f"positive definite (after {t + 1} of {n_updates} updates, seed {seed})"
            h = family.health(state)
            if not (math.isfinite(h) and h > 0):
                raise _fail(family, where, f"health() = {h!r} (must be finite and > 0)")
            try:  # the belief the state's numbers represent, its dense Σ formed in float64
                check_covariance(family, {k: v.double() for k, v in state.items()}, symmetry_tol=symmetry_tol)
            except AssertionError as exc:
                raise _fail(family, where, str(exc)) from None
            if not bool(torch.isfinite(state["mean"]).all()):
                raise _fail(family, where, "the mean is not finite")
            if not bool(torch.isfinite(family.sample(state, 2, gen)).all()):
                raise _fail(family, where, "samples are not finite")


def check_float32_roundtrip(
    factory: Factory, *, P: int = 6, seed: int = 0, device: torch.device | str = "cpu"
) -> None:
    """A float64 belief cast to float32 is valid, every operation on it stays float32 (no silent promotion), and
    its results agree with the float64 ones to float32 accuracy (:func:`tolerance`); cast back to float64 it is
    valid again."""
    check = "float32 round trip"
    family = factory(P)
    s64 = random_state(family, P, dtype=torch.float64, seed=seed, device=device)
    s32 = {k: v.float() for k, v in s64.items()}
    try:
        family.validate_state(s32)
        family.validate_state({k: v.double() for k, v in s32.items()})
    except ValueError as exc:
        raise _fail(family, check, f"validate_state rejects the cast state: {exc}") from exc
    gen = torch.Generator().manual_seed(seed)
    A, g = _randn(gen, P, 2, dtype=torch.float64, device=device), _randn(gen, P, dtype=torch.float64, device=device)
    H = _randn(gen, 3, P, dtype=torch.float64, device=device)
    v = _randn(gen, P, dtype=torch.float64, device=device)
    z = _randn(gen, 4, family.noise_dim(s64), dtype=torch.float64, device=device)
    ops: dict[str, Callable[[State, torch.dtype], Tensor | State]] = {
        "update": lambda s, dt: family.update(s, A.to(dt), g.to(dt)),
        "update_lin": lambda s, dt: family.update_lin(s, H.to(dt), v[:3].to(dt), 0.5),
        "predict": lambda s, dt: family.predict(s, 0.9, 0.1, v.to(dt)),
        "sample_from_noise": lambda s, dt: family.sample_from_noise(s, z.to(dt)),
        "precondition": lambda s, dt: family.precondition(s, v.to(dt)),
        "predictive_cov": lambda s, dt: family.predictive_cov(s, H.to(dt)),
        "marginal_variance": lambda s, dt: family.marginal_variance(s),
        "covariance": lambda s, dt: family.covariance(s),
    }
    tol = tolerance(torch.float32)
    for what, op in ops.items():
        out32, out64 = op(s32, torch.float32), op(s64, torch.float64)
        if isinstance(out32, dict):  # a new state: compare its moments
            bad = [k for k, t in out32.items() if t.dtype != torch.float32]
            if bad:
                raise _fail(family, check, f"{what} promoted {bad} out of float32")
            out32, out64 = (torch.cat([o["mean"], family.covariance(o).reshape(-1)]) for o in (out32, out64))
        if out32.dtype != torch.float32:
            raise _fail(family, check, f"{what} returned {out32.dtype} for a float32 state")
        _close(family, check, f"{what} in float32 vs float64", out32, out64, tol)
    if family.sample(s32, 3).dtype != torch.float32:
        raise _fail(family, check, "sample returned another dtype than float32")
    if not math.isfinite(family.health(s32)):
        raise _fail(family, check, "health() of the float32 state is not finite")


def check_state_dict_roundtrip(family: PosteriorFamily, state: State, *, seed: int = 0) -> None:
    """A state survives a safetensors round trip (what checkpoints do: contiguous copies, raw bytes): the reloaded
    state is valid, bit-identical, and every operation on it gives bit-identical results to the same operation on
    the original (a resumed run must continue exactly; so no result may depend on a tensor's memory layout)."""
    from safetensors.torch import load as st_load
    from safetensors.torch import save as st_save

    check = "state_dict round trip"
    blob = st_save({k: v.detach().to("cpu").clone(memory_format=torch.contiguous_format) for k, v in state.items()})
    loaded = {k: v.to(state[k].device) for k, v in st_load(blob).items()}
    _equal_states(family, check, "the reloaded state", loaded, state)
    try:
        family.validate_state(loaded)
    except ValueError as exc:
        raise _fail(family, check, f"validate_state rejects the reloaded state: {exc}") from exc
    mean = state["mean"]
    P, dt, dev = mean.shape[0], mean.dtype, mean.device
    gen = torch.Generator().manual_seed(seed)
    A, g = _randn(gen, P, 2, dtype=dt, device=dev), _randn(gen, P, dtype=dt, device=dev)
    H = _randn(gen, 2, P, dtype=dt, device=dev)
    V = _randn(gen, P, 3, dtype=dt, device=dev)
    z = _randn(gen, 3, family.noise_dim(state), dtype=dt, device=dev)
    ops: dict[str, Callable[[State], Tensor | State]] = {
        "update": lambda s: family.update(s, A, g),
        "predict": lambda s: family.predict(s, 0.9, 0.1),
        "sample_from_noise": lambda s: family.sample_from_noise(s, z),
        "precondition": lambda s: family.precondition(s, V),
        "predictive_cov": lambda s: family.predictive_cov(s, H),
        "marginal_variance": lambda s: family.marginal_variance(s),
    }
    for what, op in ops.items():
        a, b = op(state), op(loaded)
        if isinstance(a, dict):
            _equal_states(family, check, f"{what} on the reloaded state", b, a)
            b2, a2 = family.update(b, A, g), family.update(a, A, g)  # and the step after (layouts may differ now)
            _equal_states(family, check, f"a second update after {what} on the reloaded state", b2, a2)
        elif not torch.equal(a, b):
            raise _fail(family, check, f"{what} on the reloaded state is not bit-identical")


# --------------------------------------------------------------------------------------------- the entry point
def check_family(
    factory: Factory,
    *,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    exact: bool = True,
    exact_process_noise: bool = True,
    num_params: int = 6,
    device: torch.device | str = "cpu",
    skip: Sequence[str] = (),
) -> None:
    """Run the whole conformance suite on the family that ``factory(P)`` builds; raise AssertionError naming the
    first check that fails.

    Args:
        factory: ``factory(P)`` returns a fresh family instance for P parameters.
        dtype: float64 (default: tight tolerances) or float32 for the exact checks; the positive-definiteness
            stress test always runs in float32, and the float32 round trip compares float32 with float64.
        seed: seeds every random draw (the suite is deterministic for a given seed).
        exact: the family's update is exact Bayes on dense linear-Gaussian models (module docstring); when False
            it is checked on independent coordinates only.
        exact_process_noise: the predict step adds exactly qI to Σ (False: a documented approximation).
        num_params: P of the beliefs the exact checks use (small: the checks form dense P×P matrices).
        device: where the beliefs of the exact checks live (random draws are made on the CPU, so the numbers are
            the same on every device); the positive-definiteness stress test runs on the CPU.
        skip: names of checks to leave out, e.g. ``("positive_definite",)`` for a quick run; one of
            init, validate_state, covariance, sigma_products, sample_from_noise, sample_moments, predict,
            update_contract, bad_inputs, information_form and conjugate_dense (run only when ``exact``),
            conjugate (independent coordinates), positive_definite, float32_roundtrip, state_dict_roundtrip.

    Raises:
        AssertionError: the first failed check, named with the family; a check in which the family raised
            something else reports that exception (chained).
        ValueError: an unsupported ``dtype`` or an unknown name in ``skip``.
    """
    tolerance(dtype)  # rejects an unsupported dtype
    P = num_params
    family = factory(P)
    if not isinstance(family, PosteriorFamily):
        raise AssertionError(f"factory({P}) returned {type(family).__name__}, not a PosteriorFamily")
    state = _guarded(family, "random belief (init, three updates, a predict step)",
                     lambda: random_state(family, P, dtype=dtype, seed=seed, device=device))
    promoted = sorted(k for k, v in state.items() if v.dtype != dtype)
    if promoted:
        raise _fail(family, "dtype", f"after init, update and predict in {dtype} the state holds {promoted} in "
                                     "another dtype")
    exact_hint = "(pass exact=False if the family is exact on independent coordinates only)"
    checks: dict[str, Callable[[], None]] = {
        "init": lambda: check_init(factory, P=P, dtype=dtype, seed=seed, device=device),
        "validate_state": lambda: check_validate_state(family, state),
        "covariance": lambda: check_covariance(family, state),
        "sigma_products": lambda: check_sigma_products(family, state, seed=seed),
        "sample_from_noise": lambda: check_sample_from_noise(family, state, seed=seed),
        "sample_moments": lambda: check_sample_moments(family, state, seed=seed),
        "predict": lambda: check_predict(family, state, exact_process_noise=exact_process_noise, seed=seed),
        "update_contract": lambda: check_update_contract(family, state, seed=seed),
        "bad_inputs": lambda: check_bad_inputs(family, state, seed=seed),
        "information_form": lambda: _hinted(exact_hint, lambda: check_information_form(family, state, seed=seed)),
        "conjugate": lambda: check_conjugate_update(factory, P=P, dense=False, dtype=dtype, seed=seed,
                                                    device=device),
        "conjugate_dense": lambda: _hinted(exact_hint, lambda: check_conjugate_update(
            factory, P=P, dense=True, dtype=dtype, seed=seed, device=device)),
        "positive_definite": lambda: check_positive_definite(factory, seed=seed),
        "float32_roundtrip": lambda: check_float32_roundtrip(factory, P=P, seed=seed, device=device),
        "state_dict_roundtrip": lambda: check_state_dict_roundtrip(family, state, seed=seed),
    }
    unknown = sorted(set(skip) - set(checks))
    if unknown:
        raise ValueError(f"unknown check(s) to skip {unknown}; known: {sorted(checks)}")
    if not exact:
        skip = (*skip, "information_form", "conjugate_dense")
    for name, run in checks.items():
        if name not in skip:
            _guarded(family, name, run)


def _guarded(family: PosteriorFamily, check: str, run: Callable[[], object]) -> object:
    """Run one check; an exception other than AssertionError (the family crashed) becomes an AssertionError
    naming the check, chained to the original."""
    try:
        return run()
    except AssertionError:
        raise
    except Exception as exc:  # noqa: BLE001 - reported, with its traceback chained
        raise _fail(family, check, f"raised {type(exc).__name__}: {exc}") from exc


def _hinted(hint: str, run: Callable[[], None]) -> None:
    try:
        run()
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{hint}") from None
