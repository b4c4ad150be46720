"""Data-parallel BONG (bongrl.distributed): 2 gloo ranks spawned with torch.multiprocessing.

Tolerances: the ranks run the same floating-point program on the same gathered bytes, so their posteriors are
*bit-identical* (equal SHA-256). Against one process conditioning on the union of the ranks' transitions the
states agree only to round-off, because the natural-gradient vector is summed in a different order (per-rank
partial sums, then across ranks) and the batched Jacobians come from differently-sized batches; in float64
that is ~1e-15 relative, so we assert 1e-10. The linear-Gaussian check (batched = sequential) is exact
algebra, so 1e-8 in float64.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from bongrl.bong import BONG
from bongrl.distributed import (
    DistributedBONG,
    posterior_hash,
    reduce_increment,
)

FAMILIES = ("full", "diag", "dlr")
ROUNDS = 4
# rows per rank per round (rank 1 has none in round 2: variable K, including K = 0)
SIZES = [(2, 3), (3, 1), (2, 0), (1, 4)]


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))  # P = 50


def _est(family: str, model_seed: int) -> BONG:
    return BONG(
        _model(model_seed),
        family=family,
        obs_std=0.5,
        prior_std=0.7,
        rank=4,
        dtype=torch.float64,
        device="cpu",
    )


def _round_data(t: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n = sum(SIZES[t])
    gen = torch.Generator().manual_seed(1000 + t)
    x = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    idx = torch.randint(2, (n,), generator=gen)
    y = torch.randn(n, generator=gen, dtype=torch.float64)
    return x, y, idx


def _rank_rows(t: int, rank: int) -> slice:
    k0, _ = SIZES[t]
    return slice(0, k0) if rank == 0 else slice(k0, sum(SIZES[t]))


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    from bongrl.distributed import init_distributed, run_distributed_training

    init_distributed("cpu", init_method=f"file://{init_file}", rank=rank, world_size=world)
    out = Path(out_dir)
    for family in FAMILIES:
        # Different initial networks per rank on purpose: DistributedBONG broadcasts rank 0's.
        est = _est(family, model_seed=1 + rank)
        dest = DistributedBONG(est)
        for t in range(ROUNDS):
            est.predict_step(0.98, 1e-4)
            x, y, idx = _round_data(t)
            rows = _rank_rows(t, rank)
            if rows.stop > rows.start:
                dest.update(x[rows], y[rows], idx[rows])
            else:  # nothing to condition on here, but the collective must still be joined
                P = est.num_params
                z = torch.zeros(P, dtype=torch.float64)
                dest.apply_increment(torch.zeros(P, 0, dtype=torch.float64), z)
            dest.assert_same_posterior()
        torch.save({k: v.contiguous() for k, v in est.state.items()}, out / f"{family}_rank{rank}.pt")
        (out / f"{family}_rank{rank}.hash").write_text(dest.hash())
    for family in ("dlr", "diag"):
        res = run_distributed_training(
            "CartPole-v1",
            100,
            out / f"train_{family}",
            posterior=family,
            seed=3,
            device="cpu",
            num_envs=2,
            hidden=[16],
            rank=4,
            target_update=40,
        )
        summary = {k: res[k] for k in ("rank", "world_size", "num_timesteps", "posterior_hash")}
        summary["moved"] = float((res["agent"].est.mean - res["agent"].est.prior_mean).abs().max())
        (out / f"train_{family}" / f"summary_rank{rank}.json").write_text(json.dumps(summary))


@pytest.fixture(scope="module")
def spawned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    mp.spawn(_worker, args=(2, str(out / "rendezvous"), str(out)), nprocs=2, join=True)
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_ranks_match_each_other_and_single_process(spawned: Path, family: str) -> None:
    h0 = (spawned / f"{family}_rank0.hash").read_text()
    h1 = (spawned / f"{family}_rank1.hash").read_text()
    assert h0 == h1  # bit-identical across ranks
    s0 = torch.load(spawned / f"{family}_rank0.pt")
    assert posterior_hash(s0) == h0

    ref = _est(family, model_seed=1)  # rank 0's initial network
    for t in range(ROUNDS):
        ref.predict_step(0.98, 1e-4)
        x, y, idx = _round_data(t)  # the union of both ranks' rows, in rank order
        ref.update(x, y, idx)
    assert set(s0) == set(ref.state)
    for k, v in ref.state.items():
        torch.testing.assert_close(s0[k], v, rtol=1e-10, atol=1e-10, msg=f"{family} {k}")
    # and the posterior really moved away from the prior
    assert float((s0["mean"] - ref.prior_mean).abs().max()) > 1e-3


@pytest.mark.parametrize("family", ("dlr", "diag"))
def test_distributed_training_hashes(spawned: Path, family: str) -> None:
    d = spawned / f"train_{family}"
    hashes = [(d / f"posterior_hash_rank{r}.txt").read_text().strip() for r in range(2)]
    assert hashes[0] == hashes[1] and len(hashes[0]) == 64
    summaries = [json.loads((d / f"summary_rank{r}.json").read_text()) for r in range(2)]
    assert [s["world_size"] for s in summaries] == [2, 2]
    assert all(s["num_timesteps"] >= 100 for s in summaries)
    assert summaries[0]["moved"] > 0
    assert (d / "model.safetensors").exists()


# ------------------------------------------------------------------------------------------ single process
@pytest.mark.parametrize("family,rank", [("full", 10), ("dlr", 12)])
def test_linear_gaussian_batched_equals_sequential(family: str, rank: int) -> None:
    """For a linear-Gaussian model the K-row batched update at one linearisation point equals K one-row
    updates (exact Bayes both ways; dlr with L ≥ P is exact). diag is not: it projects the precision onto its
    diagonal after
    every step, and the sequential means then see different gains."""
    torch.manual_seed(0)
    model = nn.Linear(9, 1)  # P = 10
    kw = dict(family=family, obs_std=0.3, prior_std=1.5, rank=rank, dtype=torch.float64, device="cpu")
    batched, seq = BONG(model, **kw), BONG(model, **kw)
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(7, 9, generator=gen, dtype=torch.float64)
    y = torch.randn(7, generator=gen, dtype=torch.float64)
    batched.update(x, y)
    for i in range(7):
        seq.update(x[i : i + 1], y[i : i + 1])
    torch.testing.assert_close(batched.mean, seq.mean, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(batched.covariance(), seq.covariance(), rtol=1e-8, atol=1e-8)


def test_single_process_reducer_is_identity_and_hash_is_layout_free() -> None:
    A, g = torch.randn(6, 3), torch.randn(6)
    A2, g2 = reduce_increment("dlr", A, g)
    assert A2 is A and g2 is g
    with pytest.raises(ValueError):
        reduce_increment("dlr", A, torch.randn(5))
    W = torch.randn(4, 6)
    s1 = {"mean": g, "W": W.T}  # non-contiguous view
    s2 = {"W": W.T.contiguous(), "mean": g.clone()}
    assert posterior_hash(s1) == posterior_hash(s2)
    s2["mean"][0] += 1e-7
    assert posterior_hash(s1) != posterior_hash(s2)


def test_attach_reducer_routes_the_estimators_updates() -> None:
    """attach_reducer installs the estimator's increment-reducer hook: every est.update (what both agents call)
    goes increment → reducer → apply_increment, with the numbers of a plain update for an identity reducer."""
    from types import SimpleNamespace

    from bongrl.distributed import attach_reducer

    calls: list[int] = []

    def reducer(A: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append(A.shape[1])
        return A, g

    est, ref = _est("dlr", 1), _est("dlr", 1)
    agent = SimpleNamespace(est=est)
    attach_reducer(agent, reducer)
    x, y, idx = _round_data(0)
    agent.est.update(x, y, idx)
    ref.update(x, y, idx)
    assert calls == [5]
    assert posterior_hash(est.state) == posterior_hash(ref.state)
    est.set_increment_reducer(None)
    est.update(x[:1], y[:1], idx[:1])
    assert calls == [5]
    with pytest.raises(ValueError, match="callable"):
        est.set_increment_reducer(42)  # type: ignore[arg-type]


class _RecordingCollective:
    """One rank's view of a 2-rank group whose other rank sends ``other`` (one tensor per call); records which
    operations the family used."""

    def __init__(self, other: list[torch.Tensor]) -> None:
        self.other = list(other)
        self.ops: list[str] = []

    def all_gather(self, t: torch.Tensor) -> list[torch.Tensor]:
        self.ops.append("all_gather")
        return [t.clone(), self.other.pop(0)]

    def all_reduce_sum(self, t: torch.Tensor) -> None:
        self.ops.append("all_reduce_sum")
        t += self.other.pop(0)


def test_diag_compact_reduction_only_for_the_natural_gradient_step() -> None:
    """The 2P all-reduce of diag carries rowsum(A²) only: right for mean_update="ng", wrong for the gain step
    (the default for LIN), which needs A's columns and so takes the generic all-gather, as does a subclass (it may
    use more of A). The family says which through reduce_increment; no name or type check in distributed."""
    from bongrl.posteriors.diag import DiagonalPrecision

    class MyDiag(DiagonalPrecision):
        pass

    A, g = torch.randn(6, 2, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    other = torch.stack([torch.rand(6, dtype=torch.float64), torch.randn(6, dtype=torch.float64)])
    coll = _RecordingCollective([other])
    A_all, g_sum = DiagonalPrecision(mean_update="ng").reduce_increment(A, g, coll)
    assert coll.ops == ["all_reduce_sum"] and A_all.shape == (6, 1)
    torch.testing.assert_close(A_all[:, 0] ** 2, (A * A).sum(1) + other[0], rtol=1e-14, atol=0)
    torch.testing.assert_close(g_sum, g + other[1], rtol=0, atol=0)
    for fam in (DiagonalPrecision(mean_update="gain"), DiagonalPrecision(), MyDiag(mean_update="ng")):
        coll = _RecordingCollective([torch.tensor([1]), torch.randn(3, 6, dtype=torch.float64)])
        A_all, _ = fam.reduce_increment(A, g, coll)
        assert coll.ops == ["all_gather", "all_gather"] and A_all.shape == (6, 3)
