"""BONG's public estimator API (what agents and bongrl.distributed use) against the paths it seals, and the
families' and rules' self-description (reduce_increment, search_space).

Tolerances, float64 throughout: where the public method runs the very code the old path ran (apply vs forward,
snapshot/restore) equality is exact; where the two sides compute the same quantity by different products
(batched rows vs a loop, forward-mode vs an explicit Jacobian, Woodbury vs a dense inverse, summation over ranks
vs over one batch) they agree to a few ulps of the O(1) numbers involved, so 1e-12 (1e-10 for the Woodbury and
cross-rank sums, which go through a factorisation or a differently ordered sum of a whole update).
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest
import torch
from torch import nn

from bongrl import registry
from bongrl.agents.base import mlp
from bongrl.bong import BONG
from bongrl.health import posterior_health

F64 = torch.float64
ROOT = Path(__file__).resolve().parents[1]


class _Odd(nn.Module):
    """Not a plain MLP: no compiled fast path, so every method takes its generic torch.func route."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(3, 6)
        self.b = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.tanh(self.a(x)) * 1.5)


def _estimators(family: str = "full") -> dict[str, BONG]:
    """One estimator per code path: plain MLP (hand-written passes), GELU MLP (compiled, autograd Jacobians),
    head-only layout with a frozen body, and a module with no fast path."""
    torch.manual_seed(0)
    out = {
        "mlp": BONG(mlp(3, [6, 5], 4), family=family, dtype=F64, device="cpu"),
        "gelu": BONG(mlp(3, [6], 4, activation=nn.GELU), family=family, dtype=F64, device="cpu"),
        "head": BONG(mlp(3, [6], 4), family=family, params=["head.weight", "head.bias"], dtype=F64, device="cpu"),
        "generic": BONG(_Odd(), family=family, dtype=F64, device="cpu"),
    }
    assert out["generic"]._fast is None and out["mlp"]._fast is not None  # the cases cover both routes
    return out


def _moved(est: BONG, n: int = 6) -> BONG:
    """A few updates so that Σ is no longer the diagonal prior."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n, 3, generator=gen, dtype=F64)
    y = torch.randn(n, generator=gen, dtype=F64)
    est.update(x, y, index=torch.randint(4, (n,), generator=gen))
    return est


# ------------------------------------------------------------------------------------------ the network
@pytest.mark.parametrize("case", ["mlp", "gelu", "head", "generic"])
def test_apply_is_forward_and_differentiable(case: str) -> None:
    est = _moved(_estimators()[case])
    x = torch.randn(5, 3, dtype=F64)
    theta = est.mean + 0.1 * torch.randn(est.num_params, dtype=F64)
    assert torch.equal(est.apply(theta, x), est.forward(x, theta))
    assert torch.equal(est.apply(est.mean, x), est.forward(x))
    # unlike forward, apply carries gradients: ∂/∂θ Σ_b f_c(θ, x_b) is the column sum of the Jacobian
    th = theta.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(est.apply(th, x)[:, 2].sum(), th)
    _, J = est.jacobian(x, theta=theta)
    torch.testing.assert_close(grad, J[:, 2, :].sum(0), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", ["mlp", "gelu", "head", "generic"])
def test_apply_per_row_equals_a_loop(case: str) -> None:
    est = _estimators()[case]
    thetas = est.mean + 0.3 * torch.randn(5, est.num_params, dtype=F64)
    x = torch.randn(5, 3, dtype=F64)
    got = est.apply_per_row(thetas, x)
    ref = torch.stack([est.apply(thetas[i], x[i : i + 1])[0] for i in range(5)])
    assert got.shape == (5, 4)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", ["mlp", "gelu", "head", "generic"])
def test_apply_linearized_is_f_plus_J_eps(case: str) -> None:
    est = _moved(_estimators()[case])
    x = torch.randn(5, 3, dtype=F64)
    eps = 0.2 * torch.randn(5, est.num_params, dtype=F64)
    f, J = est.jacobian(x)  # (B, C), (B, C, P) at μ
    torch.testing.assert_close(est.apply_linearized(eps[0], x), f + J @ eps[0], rtol=1e-12, atol=1e-12)
    per_row = f + torch.einsum("bcp,bp->bc", J, eps)
    torch.testing.assert_close(est.apply_linearized(eps, x), per_row, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------------ linear algebra
def test_precondition_is_covariance_times_v_for_full() -> None:
    """full: Σ v is the same product as the dense Σ times v in exact arithmetic (the family stores Σ itself);
    BLAS may block a matrix-vector and a matrix-matrix product differently, so a few ulps: 1e-12."""
    est = _moved(_estimators("full")["mlp"])
    v = torch.randn(est.num_params, dtype=F64)
    V = torch.randn(est.num_params, 3, dtype=F64)
    cov = est.covariance()
    assert not torch.equal(cov, torch.diag(cov.diagonal()))  # a real, correlated Σ
    torch.testing.assert_close(est.precondition(v), cov @ v, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(est.precondition(V), cov @ V, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("family", ["diag", "dlr", "kfac"])
def test_precondition_is_covariance_times_v(family: str) -> None:
    """The structured families apply Σ without forming it (dlr: Woodbury; kfac: per-layer eigenbases); against
    the dense Σ (itself built from precondition(I) for dlr / kfac, so this checks the vector paths) to 1e-10."""
    est = _moved(_estimators(family)["mlp"])
    v = torch.randn(est.num_params, dtype=F64)
    torch.testing.assert_close(est.precondition(v), est.covariance() @ v, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(est.marginal_variance(), est.covariance().diagonal(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("family", ["full", "diag", "dlr", "kfac"])
def test_snapshot_restore_is_bit_identical(family: str) -> None:
    est = _moved(_estimators(family)["mlp"])
    ref = {k: v.clone() for k, v in est.state.items()}
    snap = est.snapshot()
    assert all(snap[k] is est.state[k] for k in snap)  # no tensor copied: states are replaced, not modified
    for _ in range(3):
        est.predict_step(0.9, 1e-3)
        _moved(est)
    assert not torch.equal(est.mean, ref["mean"])
    est.restore(snap)
    assert est.state.keys() == ref.keys() and all(torch.equal(est.state[k], ref[k]) for k in ref)
    snap["mean"] = torch.zeros_like(snap["mean"])  # the snapshot's dict is not the posterior's
    assert torch.equal(est.mean, ref["mean"])
    with pytest.raises(ValueError, match="keys"):
        est.restore({"mean": ref["mean"]})
    with pytest.raises(ValueError, match="mean"):
        est.restore({**ref, "mean": ref["mean"][:-1]})
    with pytest.raises(ValueError, match="mean"):
        est.restore({**ref, "mean": ref["mean"].float()})
    assert all(torch.equal(est.state[k], ref[k]) for k in ref)  # a rejected restore changes nothing


def test_state_is_read_only() -> None:
    est = _estimators("diag")["mlp"]
    with pytest.raises(AttributeError):
        est.state = est.snapshot()  # type: ignore[misc]


@pytest.mark.parametrize("family", ["full", "diag", "dlr", "kfac"])
def test_health_report(family: str) -> None:
    est = _moved(_estimators(family)["mlp"])
    rep = est.health_report()
    assert rep == {
        "finite": 1.0,
        "health": float(est.family.health(est.state)),
        "marginal_variance": float(est.marginal_variance().min()),
    }
    assert rep["health"] > 0 and rep["marginal_variance"] > 0
    assert posterior_health(est) == rep
    est.restore({**est.snapshot(), "mean": est.mean * float("nan")})
    bad = est.health_report()
    assert bad["finite"] == 0.0 and bad["health"] != bad["health"]  # NaN


# ------------------------------------------------------------------------------------------ reduce_increment
class _ThreadGroup:
    """R "ranks" as threads of one process: a Collective whose operations meet at a barrier."""

    def __init__(self, world: int) -> None:
        self.world = world
        self.barrier = threading.Barrier(world, timeout=60)
        self.slots: list[torch.Tensor | None] = [None] * world

    def member(self, rank: int) -> _ThreadCollective:
        return _ThreadCollective(self, rank)


class _ThreadCollective:
    def __init__(self, group: _ThreadGroup, rank: int) -> None:
        self.group, self.rank = group, rank

    def all_gather(self, t: torch.Tensor) -> list[torch.Tensor]:
        grp = self.group
        grp.slots[self.rank] = t.clone()
        grp.barrier.wait()
        out = [s.clone() for s in grp.slots if s is not None]
        grp.barrier.wait()
        return out

    def all_reduce_sum(self, t: torch.Tensor) -> None:
        total = self.all_gather(t)
        acc = total[0]
        for s in total[1:]:
            acc = acc + s
        t.copy_(acc)


FAMILY_CASES = [("full", {}), ("diag", {"mean_update": "ng"}), ("diag", {"mean_update": "gain"}), ("dlr", {}),
                ("kfac", {})]


@pytest.mark.parametrize(("family", "opts"), FAMILY_CASES, ids=[f"{f}-{o}" for f, o in FAMILY_CASES])
def test_reduce_increment_equals_the_update_on_the_concatenated_batch(family: str, opts: dict) -> None:
    """Three ranks (threads) with 2, 0 and 3 rows each combine their increments with the family's own
    reduce_increment: every rank gets the same bytes, and the update with them equals the single-process update
    on the concatenated batch (to summation order: 1e-10)."""
    sizes = (2, 0, 3)

    def make() -> BONG:
        torch.manual_seed(0)
        return BONG(mlp(3, [5], 2), family=family, obs_std=0.5, prior_std=0.7, rank=3, dtype=F64, device="cpu",
                    **opts)

    est, ref = make(), make()
    gen = torch.Generator().manual_seed(2)
    n = sum(sizes)
    x = torch.randn(n, 3, generator=gen, dtype=F64)
    y = torch.randn(n, generator=gen, dtype=F64)
    idx = torch.randint(2, (n,), generator=gen)
    P, bounds = est.num_params, [0, 2, 2, 5]
    incs = []
    for r in range(3):
        rows = slice(bounds[r], bounds[r + 1])
        if sizes[r]:
            incs.append(est.increment(x[rows], y[rows], idx[rows]))
        else:  # a rank with nothing to condition on still joins
            incs.append((torch.zeros(P, 0, dtype=F64), torch.zeros(P, dtype=F64)))
    group = _ThreadGroup(3)
    results: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * 3
    errors: list[BaseException] = []

    def run(r: int) -> None:
        try:
            results[r] = est.family.reduce_increment(*incs[r], group.member(r))
        except BaseException as exc:  # surfaced below
            errors.append(exc)
            group.barrier.abort()

    threads = [threading.Thread(target=run, args=(r,)) for r in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    A0, g0 = results[0]
    for A_r, g_r in results[1:]:
        assert torch.equal(A_r, A0) and torch.equal(g_r, g0)  # bit-identical on every rank
    if not (family == "diag" and opts["mean_update"] == "ng"):  # the gather: the columns in rank order, exactly
        assert torch.equal(A0, torch.cat([a for a, _ in incs], dim=1))
        assert torch.equal(g0, incs[0][1] + incs[1][1] + incs[2][1])
    else:  # the compact 2P all-reduce: one column carrying Σ_r rowsum(A_r²)
        assert A0.shape == (P, 1)
    est.apply_increment(A0, g0)
    ref.update(x, y, idx)
    assert est.state.keys() == ref.state.keys()
    for k in ref.state:
        torch.testing.assert_close(est.state[k], ref.state[k], rtol=1e-10, atol=1e-10, msg=k)
    assert float((est.mean - est.prior_mean).abs().max()) > 1e-3  # the update did something


# ------------------------------------------------------------------------------------------ search spaces
EXPECTED_SPACES = {
    ("posterior", "full"): {},
    ("posterior", "diag"): {},
    ("posterior", "kfac"): {},
    ("posterior", "dlr"): {"rank": {"type": "int", "low": 1, "high": 20}},
    ("exploration", "thompson"): {"every": {"type": "choice", "choices": [0, 1, 10, 100]}},
    ("exploration", "ucb"): {"beta": {"type": "log", "low": 0.1, "high": 10.0}},
    ("exploration", "greedy"): {},
    ("exploration", "epsilon"): {},
}


def _check_space(cls: type, space: dict) -> None:
    """Every entry is well formed and its bounds / choices are values the constructor accepts."""
    assert isinstance(space, dict)
    for name, spec in space.items():
        assert isinstance(name, str) and isinstance(spec, dict)
        assert spec["type"] in ("int", "log", "float", "choice"), spec
        assert isinstance(spec.get("note", ""), str)
        if spec["type"] == "choice":
            assert set(spec) <= {"type", "choices", "note"} and len(spec["choices"]) >= 1
            values = list(spec["choices"])
        else:
            assert set(spec) <= {"type", "low", "high", "note"} and spec["low"] < spec["high"]
            if spec["type"] == "log":
                assert spec["low"] > 0
            if spec["type"] == "int":
                assert isinstance(spec["low"], int) and isinstance(spec["high"], int)
            values = [spec["low"], spec["high"]]
        for v in values:
            cls(**{name: v})


@pytest.mark.parametrize(("group", "name"), list(EXPECTED_SPACES), ids=[f"{g}-{n}" for g, n in EXPECTED_SPACES])
def test_search_space(group: str, name: str) -> None:
    cls = registry.load(group, name)
    space = cls.search_space()
    _check_space(cls, space)
    expected = EXPECTED_SPACES[(group, name)]
    assert {k: {kk: vv for kk, vv in v.items() if kk != "note"} for k, v in space.items()} == expected


# ------------------------------------------------------------------------------------------ the seal
def test_agents_and_distributed_use_only_the_public_estimator_api() -> None:
    """No private estimator attribute, no reaching into the family with the estimator's state, and no
    assignment to the posterior state outside bongrl/bong.py."""
    pattern = re.compile(r"\best\._[a-z]|\._fast\b|\.family\.[a-z_]+\(.*\.state\b|est\.state\s*=[^=]|_is_diag")
    files = [*sorted((ROOT / "bongrl" / "agents").glob("*.py")), ROOT / "bongrl" / "distributed.py",
             ROOT / "bongrl" / "health.py"]
    hits = [f"{f.relative_to(ROOT)}:{i}: {line.strip()}" for f in files
            for i, line in enumerate(f.read_text().splitlines(), 1) if pattern.search(line)]
    assert hits == []
