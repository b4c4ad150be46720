"""The ``kfac`` posterior family: conformance with a layer layout, exactness anchors, BONG integration.

The protocol-level conformance test in ``test_posteriors.py`` runs ``kfac`` without a layout (all-diagonal);
the tests here exercise the Kronecker blocks.
"""

from __future__ import annotations

import pytest
import torch
from _helpers import assert_sigma_products, assert_validate_state_rejects_damage
from _helpers import assert_state_equal as _assert_state_equal
from _helpers import clone_state as _clone
from torch import nn

from bongrl import registry
from bongrl.bong import BONG
from bongrl.posteriors.kfac import KroneckerFactored

F64 = torch.float64

# two Linear layers (one without bias) around a free parameter vector: P = 6 + 3 + 2 + 6 = 17
SHAPES = [("l1.weight", (3, 2)), ("l1.bias", (3,)), ("scale", (2,)), ("l2.weight", (2, 3))]
P = 17



def _family(**kw) -> KroneckerFactored:
    return registry.create_posterior("kfac", param_shapes=SHAPES, **kw)


def _kron_columns(gen, K: int, dtype=F64) -> torch.Tensor:
    """K columns whose layer blocks are rank-one outer products δ ãᵀ (one observation), random elsewhere."""
    A = torch.randn(P, K, generator=gen, dtype=dtype)
    a1 = torch.cat(
        [torch.randn(2, generator=gen, dtype=dtype), torch.ones(1, dtype=dtype)]
    )  # augmented input
    a2 = torch.randn(3, generator=gen, dtype=dtype)
    for k in range(K):
        M1 = torch.outer(torch.randn(3, generator=gen, dtype=dtype), a1)
        A[0:6, k] = M1[:, :2].reshape(-1)
        A[6:9, k] = M1[:, 2]
        A[11:17, k] = torch.outer(torch.randn(2, generator=gen, dtype=dtype), a2).reshape(-1)
    return A


def _random_state(fam, seed=0, dtype=F64, n=4):
    gen = torch.Generator().manual_seed(seed)
    state = fam.init(
        torch.randn(P, generator=gen, dtype=dtype), torch.rand(P, generator=gen, dtype=dtype) + 0.5
    )
    for _ in range(n):
        state = fam.update(state, _kron_columns(gen, 2, dtype), torch.randn(P, generator=gen, dtype=dtype))
    return fam.predict(state, 0.9, 0.05, torch.zeros(P, dtype=dtype))


def test_layout_is_parsed_from_param_shapes():
    fam = _family()
    assert [(ly.name, ly.d_out, ly.d_in, ly.d_a) for ly in fam.layers] == [("l1", 3, 2, 3), ("l2", 2, 3, 3)]
    assert fam.layers[1].b_off is None
    state = fam.init(torch.zeros(P, dtype=F64), torch.ones(P, dtype=F64))
    assert (
        state["diag"].shape == (2,)
        and state["layer0.S"].shape == (3, 3)
        and state["layer1.S"].shape == (2, 3)
    )
    explicit = KroneckerFactored(param_shapes=SHAPES, layers=[("l2.weight", None)])
    assert [ly.name for ly in explicit.layers] == ["l2"]
    for bad in (
        {"param_shapes": SHAPES, "layers": [("scale", None)]},  # not 2-D
        {"param_shapes": SHAPES, "layers": [("l1.weight", "scale")]},  # bias of the wrong size
        {"param_shapes": SHAPES, "layers": [("l1.weight", None), ("l1.weight", None)]},
        {"param_shapes": [("a", (2,)), ("a", (2,))]},
        {"layers": [("l1.weight", None)]},
        {"param_shapes": SHAPES, "refresh_every": 0},
    ):
        with pytest.raises(ValueError):
            KroneckerFactored(**bad)
    with pytest.raises(ValueError):
        fam.init(torch.zeros(P + 1, dtype=F64), torch.ones(P + 1, dtype=F64))


@pytest.mark.parametrize("refresh_every", [1, 3])
def test_conformance_with_layers(refresh_every):
    """The protocol identities of test_posteriors.test_family_conformance, with Kronecker blocks present.
    Tolerance 1e-10: float64, P = 17, every identity is exact algebra up to round-off."""
    tol = {"rtol": 1e-10, "atol": 1e-10}
    # the plain step μ' = μ + Σ'g (the default rescales it by the line minimiser, checked in
    # test_rescaled_step_is_the_line_minimiser; everything but the mean is the same)
    fam = _family(refresh_every=refresh_every, rescale_step=False)
    gen = torch.Generator().manual_seed(0)
    mean = torch.randn(P, generator=gen, dtype=F64)
    var = torch.rand(P, generator=gen, dtype=F64) + 0.5
    state = fam.init(mean, var)
    fam.validate_state(state)
    torch.testing.assert_close(fam.covariance(state), torch.diag(var), **tol)  # any diagonal prior is exact

    state = _random_state(fam)
    fam.validate_state(state)
    assert fam.health(state) > 0
    cov = fam.covariance(state)
    assert torch.linalg.eigvalsh(cov).min() > 0
    T = fam.sample_from_noise(state, torch.eye(P, dtype=F64)) - state["mean"]
    torch.testing.assert_close(T.T @ T, cov, **tol)
    H = assert_sigma_products(fam, state, cov, gen, tol)

    # update: μ' = μ + Σ'g with the new structured Σ'; trace of each block's precision grows by ‖A_block‖²_F
    before = _clone(state)
    A, g = _kron_columns(gen, 3), torch.randn(P, generator=gen, dtype=F64)
    new = fam.update(state, A, g)
    _assert_state_equal(state, before)
    fam.validate_state(new)
    new_cov = fam.covariance(new)
    torch.testing.assert_close(new["mean"], state["mean"] + new_cov @ g, **tol)
    lam, new_lam = torch.linalg.inv(cov), torch.linalg.inv(new_cov)
    for idx in (list(range(0, 9)), list(range(11, 17))):
        torch.testing.assert_close(
            new_lam[idx][:, idx].trace(), lam[idx][:, idx].trace() + (A[idx] ** 2).sum(), **tol
        )
    torch.testing.assert_close(new["diag"], state["diag"] + (A[9:11] ** 2).sum(1), **tol)
    new0 = fam.update(state, torch.zeros(P, 1, dtype=F64), torch.zeros(P, dtype=F64))
    torch.testing.assert_close(fam.covariance(new0), cov, **tol)
    torch.testing.assert_close(new0["mean"], state["mean"], **tol)

    # bad inputs raise and leave the state bit-identical
    nanA = A.clone()
    nanA[1, 0] = float("nan")
    for call in (
        lambda: fam.update(state, nanA, g),
        lambda: fam.update(state, torch.randn(P + 1, 2, dtype=F64), g),
        lambda: fam.predict(state, 0.0, 0.0),
        lambda: fam.update_lin(state, H, torch.randn(3, dtype=F64), 0.5),
    ):
        with pytest.raises(ValueError):
            call()
        _assert_state_equal(state, before)

    # validate_state
    assert_validate_state_rejects_damage(fam, state)
    with pytest.raises(ValueError):
        fam.validate_state({**state, "layer0.S": -state["layer0.S"]})
    with pytest.raises(ValueError):
        fam.validate_state({**state, "extra": torch.zeros(P, dtype=F64)})


def test_predict_is_exact():
    """Σ' = γ²Σ + qI exactly (qI commutes with the Kronecker eigenbasis); μ' = γμ + (1−γ)μ₀.
    Tolerance 1e-10: float64."""
    fam = _family()
    state = _random_state(fam, seed=3)
    mu0 = torch.linspace(-1, 1, P, dtype=F64)
    new = fam.predict(state, 0.8, 0.3, mu0)
    expect = 0.64 * fam.covariance(state) + 0.3 * torch.eye(P, dtype=F64)
    torch.testing.assert_close(fam.covariance(new), expect, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(new["mean"], 0.8 * state["mean"] + 0.2 * mu0, rtol=1e-14, atol=1e-14)


def test_kronecker_data_precision_is_exact():
    """When every increment's layer block is δ_k ãᵀ with ã fixed (one input seen repeatedly) and the prior is
    isotropic, Λ = λ₀I + G ⊗ ããᵀ is diagonal in the factor eigenbasis: kfac equals full. Tolerance 1e-9."""
    fam, full = _family(), registry.create_posterior("full")
    gen = torch.Generator().manual_seed(5)
    sk = fam.init(torch.zeros(P, dtype=F64), torch.full((P,), 2.0, dtype=F64))
    sf = full.init(torch.zeros(P, dtype=F64), torch.full((P,), 2.0, dtype=F64))
    a1 = torch.tensor([0.3, -1.2, 1.0], dtype=F64)  # augmented input of layer 1 (bias)
    a2 = torch.tensor([0.5, 2.0, -0.7], dtype=F64)  # input of layer 2 (no bias)
    for _ in range(8):
        A = torch.zeros(P, 3, dtype=F64)  # each column touches one layer (no cross-layer terms)
        for k in range(2):
            M1 = torch.outer(torch.randn(3, generator=gen, dtype=F64), a1)
            A[0:6, k], A[6:9, k] = M1[:, :2].reshape(-1), M1[:, 2]
        A[11:17, 2] = torch.outer(torch.randn(2, generator=gen, dtype=F64), a2).reshape(-1)
        g = torch.randn(P, generator=gen, dtype=F64)
        sk, sf = fam.update(sk, A, g), full.update(sf, A, g)
    torch.testing.assert_close(fam.covariance(sk), sf["cov"], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(sk["mean"], sf["mean"], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("d_out,batch,rescale", [(1, 1, False), (1, 4, False), (3, 1, False), (3, 4, True)])
def test_linear_regression_matches_closed_form(d_out, batch, rescale):
    """A single Linear layer with a Gaussian likelihood (isotropic noise) and an isotropic prior: the data
    precision I ⊗ X̃ᵀX̃/σ² is Kronecker, so BONG-kfac equals the closed-form Bayesian linear-regression
    posterior. float64, 40 observations; tolerance 1e-6."""
    torch.manual_seed(0)
    d_in, n, sigma, prior_std = 4, 40, 0.3, 1.5
    model = nn.Linear(d_in, d_out).double()
    est = BONG(
        model,
        family="kfac",
        likelihood="gaussian",
        obs_std=sigma,
        prior_std=prior_std,
        dtype=F64,
        rescale_step=rescale,
    )
    assert [ly.name for ly in est.family.layers] == ["weight"]  # the layout reached the family through BONG
    mu0 = est.mean.clone()
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(n, d_in, generator=gen, dtype=F64)
    Y = X @ torch.randn(d_in, d_out, generator=gen, dtype=F64) + sigma * torch.randn(
        n, d_out, generator=gen, dtype=F64
    )
    for i in range(0, n, batch):
        est.update(X[i : i + batch], Y[i : i + batch].squeeze(-1) if d_out == 1 else Y[i : i + batch])
    # closed form per output o over augmented inputs [x, 1]; θ = [W (row-major), b]
    Xa = torch.cat([X, torch.ones(n, 1, dtype=F64)], 1)
    lam = torch.eye(d_in + 1, dtype=F64) / prior_std**2 + Xa.T @ Xa / sigma**2
    cov_o = torch.linalg.inv(lam)
    W0 = torch.cat([mu0[: d_out * d_in].reshape(d_out, d_in), mu0[d_out * d_in :].reshape(d_out, 1)], 1)
    Wn = (cov_o @ (W0.T / prior_std**2 + Xa.T @ Y / sigma**2)).T  # (d_out, d_in + 1)
    mean = torch.cat([Wn[:, :d_in].reshape(-1), Wn[:, d_in]])
    perm = torch.cat(
        [torch.arange(d_out * d_in).reshape(d_out, d_in), d_out * d_in + torch.arange(d_out)[:, None]], 1
    )
    cov = torch.zeros(est.num_params, est.num_params, dtype=F64)
    for o in range(d_out):
        idx = perm[o]
        cov[idx[:, None], idx[None, :]] = cov_o
    torch.testing.assert_close(est.mean, mean, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(est.covariance(), cov, rtol=1e-6, atol=1e-6)


def test_rescaled_step_is_the_line_minimiser():
    """rescale_step: μ' − μ = αΔ with Δ the plain step and α = gᵀΔ / (ΔᵀΛΔ + ‖AᵀΔ‖²) (Λ: the old structured
    precision), i.e. the exact minimiser of the BONG quadratic model along Δ. Tolerance 1e-10: float64."""
    plain, resc = _family(rescale_step=False), _family()
    state = _random_state(plain, seed=4)
    gen = torch.Generator().manual_seed(9)
    A, g = _kron_columns(gen, 2), torch.randn(P, generator=gen, dtype=F64)
    d_plain = plain.update(state, A, g)["mean"] - state["mean"]
    new = resc.update(state, A, g)
    lam = torch.linalg.inv(plain.covariance(state))
    alpha = (g @ d_plain) / (d_plain @ lam @ d_plain + (A.T @ d_plain).square().sum())
    torch.testing.assert_close(new["mean"] - state["mean"], alpha * d_plain, rtol=1e-10, atol=1e-10)
    assert not torch.isclose(alpha, torch.ones((), dtype=F64))  # the blocks interact here: α ≠ 1
    for k in new:
        if k != "mean":
            assert torch.equal(new[k], plain.update(state, A, g)[k])


def test_bong_head_subset_and_checkpoint_roundtrip():
    """BONG over a subset (the head of an MLP) builds Kronecker layers only for that subset; the state
    survives state_dict/load_state_dict bit-identically; predict returns finite variances."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
    est = BONG(model, family="kfac", likelihood="categorical", params=["2.weight", "2.bias"], prior_std=1.0)
    assert [(ly.d_out, ly.d_a) for ly in est.family.layers] == [(3, 9)]
    x = torch.randn(6, 5)
    for i in range(6):
        est.update(x[i : i + 1], torch.tensor([i % 3]))
    f, var = est.predict(x)
    assert f.shape == var.shape == (6, 3) and bool((var > 0).all())
    sd = est.state_dict()
    other = BONG(model, family="kfac", likelihood="categorical", params=["2.weight", "2.bias"], prior_std=1.0)
    other.load_state_dict(sd)
    _assert_state_equal(other.state, est.state)
    whole = BONG(model, family="kfac", likelihood="categorical", refresh_every=2)
    assert [(ly.d_out, ly.d_a) for ly in whole.family.layers] == [
        (8, 6),
        (3, 9),
    ] and "diag" not in whole.state
    whole.update(x, torch.arange(6) % 3)
    whole.family.validate_state(whole.state)


def test_float32_stays_float32():
    fam = _family()
    state = _random_state(fam, dtype=torch.float32)
    for v in fam.update(state, torch.randn(P, 2), torch.randn(P)).values():
        assert v.dtype == torch.float32
    assert fam.sample(state, 3).dtype == torch.float32
    assert fam.health(state) > 0


def test_cartpole_overshoot_case_default_step_does_not_grow_the_residual():
    """Regression: ``bongrl train --env CartPole-v1 --posterior kfac --seed 0`` (commit c122b3a) failed at step 723
    with "g contains NaN or Inf". The eigenbases and eigenvalues were healthy throughout (min S ≈ 0.99); the plain
    step μ' = μ + Λ̃'⁻¹g multiplied the linearised whitened residual e by up to 18 (130 of 723 updates grew it),
    the mean ran away (|μ| 1.5 → 6·10¹⁰ in the last 8 updates) and the next Jacobian overflowed. This is the
    recorded state and increment (A, g) of update 609 (float32, P = 4610, one observation; |μ| ≤ 1.7), where the
    plain step made ‖e − AᵀΔ‖ = 10.4‖e‖. The default (line-minimised) step must not grow it."""
    from pathlib import Path

    from safetensors.torch import load_file

    case = load_file(str(Path(__file__).parent / "data" / "kfac_cartpole_overshoot_case.safetensors"))
    state = {k[len("state.") :]: v for k, v in case.items() if k.startswith("state.")}
    A, g = case["A"], case["g"]
    shapes = [("fc0.weight", (64, 4)), ("fc0.bias", (64,)), ("fc1.weight", (64, 64)), ("fc1.bias", (64,)),
              ("head.weight", (2, 64)), ("head.bias", (2,))]
    e = (A.T @ g) / (A.T @ A).squeeze()  # g = A e for one scalar observation
    ratio = {}
    for rescale in (False, True):
        fam = KroneckerFactored(param_shapes=shapes, rescale_step=rescale)
        fam.validate_state(state)
        new = fam.update(state, A, g)
        fam.validate_state(new)
        delta = (new["mean"] - state["mean"]).double()
        ratio[rescale] = float((e.double() - A.double().T @ delta).norm() / e.double().norm())
    assert ratio[False] > 10.0  # measured 10.4: the plain step overshoots tenfold
    assert ratio[True] <= 1.0 + 1e-5  # measured 0.046; the default never grows it (float32 round-off allowance)
    assert KroneckerFactored().rescale_step  # and it is the default


def test_one_hot_inputs_in_float32() -> None:
    """One-hot inputs (a tabular Q: DeepSea's grid) give Kronecker input factors with many repeated eigenvalues,
    on which float32 LAPACK eigh fails; the eigenbases are computed in float64 (eigvecs_sym), so every update
    is accepted and the state stays finite."""
    from torch import nn

    from bongrl import BONG

    D = 36
    est = BONG(nn.Linear(D, 2), family="kfac", obs_std=0.1, prior_std=3.0, device="cpu", dtype=torch.float32)
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        x = torch.zeros(1, D)
        x[0, int(torch.randint(D, (1,), generator=g))] = 1.0
        est.update(x, torch.randn(1, generator=g), index=torch.randint(2, (1,), generator=g))
    assert all(bool(torch.isfinite(v).all()) for v in est.state.values() if v.is_floating_point())
