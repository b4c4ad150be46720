"""Data-parallel BONG with ``torch.distributed``: every rank holds the *same* posterior after every update.

Independent observations add in information form (docs/design.md §2, §8). At a shared linearisation point (the
same predicted belief q_{t|t-1} on every rank), rank r's batch contributes a precision increment A_r A_rᵀ and a
natural-gradient vector g_r, so the joint BONG step on the union of the ranks' transitions is::

    Λ' = Λ + Σ_r A_r A_rᵀ = Λ + A_all A_allᵀ,   A_all = [A_0 | A_1 | … | A_{R-1}]  (columns in rank order)
    μ' = μ + Λ'⁻¹ Σ_r g_r

which is exactly the single-process batched update (:meth:`bongrl.bong.BONG.update`) on the concatenated
batch, because the whitened LIN columns and g of a batch are per-row columns and a per-row sum (MC-EF /
MC-Hess: each rank draws its own samples, so the sum of the ranks' unbiased estimates is an estimate of the
joint increment).

Reduction (:func:`reduce_increment`): the family says how its increments combine
(:meth:`~bongrl.posteriors.base.PosteriorFamily.reduce_increment`), through the two collective operations of
:class:`TorchCollective`, so the posterior modules never import ``torch.distributed``:

* default, any family (full, dlr, kfac, plugins): ``all_gather`` the columns (ranks may have different K: the
  sizes are gathered first and the blocks padded to the largest) together with g in one message, then every rank
  sums the g's and concatenates the columns *in rank order* and calls the family's own ``update``. Every rank
  runs the same floating-point program on the same bytes, so the states are bit-identical; for ``dlr`` the
  untruncated Woodbury mean step and the truncation of ``[W | A_all]`` are the single-process ones on the
  concatenated batch. For ``full`` this moves R·K·P numbers instead of the P² of a dense ``all_reduce`` of AAᵀ
  (cheaper whenever R·K < P).
* ``diag`` with the natural-gradient mean step (``mean_update="ng"``; the gain step uses A itself and takes the
  default path): only rowsum(A²) enters the update, so ``all_reduce(SUM)`` one (2, P) block [rowsum(A_r²); g_r] and
  hand the family the single column √(Σ_r rowsum(A_r²)) — 2P numbers per step whatever R and K are. The
  reduced buffer is the same on every rank (ring/tree all-reduce computes each sum once and copies it), which
  :func:`assert_same_posterior` checks.

The result differs from a single process on the same transitions only by floating-point summation order (the
sum of g over ranks, BLAS blockings of a differently-sized batch): ~1e-16 relative in float64, ~1e-7 in
float32.

Anything that consumes randomness or state on one rank only (exploration samples, replay minibatches, env
seeds) may differ across ranks; what must match is the *sequence* of collective calls: every rank calls the
reducer the same number of times, in the same order.

Backend: ``gloo`` for CPU tensors, ``nccl`` for CUDA (:func:`init_distributed` picks it from the device).
Launch with ``torchrun --nproc_per_node=R -m bongrl train --env ID --distributed`` (env:// rendezvous) or call
:func:`init_distributed` with an explicit ``init_method`` (tests use ``file://``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from bongrl.bong import Reducer
from bongrl.posteriors.base import PosteriorFamily, State, gather_increment

__all__ = [
    "init_distributed",
    "backend_for",
    "TorchCollective",
    "reduce_increment",
    "all_reduce_increment",
    "broadcast_state",
    "posterior_hash",
    "assert_same_posterior",
    "DistributedBONG",
    "attach_reducer",
    "prepare_agent",
    "write_posterior_hash",
    "run_distributed_training",
]


# -------------------------------------------------------------------------------------------------- set-up
def backend_for(device: str | torch.device) -> str:
    """``nccl`` for CUDA tensors, ``gloo`` otherwise."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def init_distributed(
    device: str | torch.device = "auto",
    init_method: str = "env://",
    rank: int | None = None,
    world_size: int | None = None,
    backend: str | None = None,
) -> tuple[int, int, torch.device]:
    """Join (or reuse) the default process group; returns ``(rank, world_size, device)``.

    With ``init_method="env://"`` (torchrun) rank and world size come from ``RANK`` / ``WORLD_SIZE``;
    otherwise pass them. ``device="auto"`` picks ``cuda:LOCAL_RANK`` when CUDA is available, else CPU; the
    backend follows the device (gloo on CPU, nccl on CUDA) unless given.
    """
    if not dist.is_available():
        raise RuntimeError("torch.distributed is not available in this PyTorch build")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if isinstance(device, str) and device == "auto":
        device = f"cuda:{local_rank % torch.cuda.device_count()}" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        kwargs: dict[str, Any] = {"backend": backend or backend_for(device), "init_method": init_method}
        if rank is not None:
            kwargs["rank"] = int(rank)
        if world_size is not None:
            kwargs["world_size"] = int(world_size)
        dist.init_process_group(**kwargs)
    return dist.get_rank(), dist.get_world_size(), device


# ----------------------------------------------------------------------------------------------- reduction
def _world(group: Any) -> int:
    return dist.get_world_size(group) if dist.is_initialized() else 1


class TorchCollective:
    """:class:`~bongrl.posteriors.base.Collective` over a ``torch.distributed`` process group (``None``: the
    default group): what a family's :meth:`~bongrl.posteriors.base.PosteriorFamily.reduce_increment` calls."""

    def __init__(self, group: Any = None) -> None:
        self.group = group

    def all_gather(self, t: Tensor) -> list[Tensor]:
        out = [torch.empty_like(t) for _ in range(dist.get_world_size(self.group))]
        dist.all_gather(out, t, group=self.group)
        return out

    def all_reduce_sum(self, t: Tensor) -> None:
        dist.all_reduce(t, op=dist.ReduceOp.SUM, group=self.group)


def reduce_increment(
    family: PosteriorFamily | str | None, A: Tensor, g: Tensor, group: Any = None
) -> tuple[Tensor, Tensor]:
    """Combine the ranks' increments into ``(A_all, g_sum)``: A_all A_allᵀ = Σ_r A_r A_rᵀ, g_sum = Σ_r g_r.

    ``A`` is (P, K_r) (K_r may differ across ranks, and may be 0), ``g`` is (P,). Collective: every rank of
    ``group`` must call it. Without an initialised process group (or with one rank) it returns its inputs.
    The ``family`` object chooses the communication pattern
    (:meth:`~bongrl.posteriors.base.PosteriorFamily.reduce_increment`: ``diag`` with its natural-gradient step
    all-reduces 2P numbers, the others all-gather the columns); a name or ``None`` means the generic all-gather.
    """
    if A.ndim != 2 or g.ndim != 1 or A.shape[0] != g.shape[0]:
        raise ValueError(f"A must be (P, K) and g (P,), got {tuple(A.shape)} and {tuple(g.shape)}")
    if _world(group) == 1:
        return A, g
    A = A.to(g.dtype)
    collective = TorchCollective(group)
    if isinstance(family, PosteriorFamily):
        return family.reduce_increment(A, g, collective)
    return gather_increment(A, g, collective)


def all_reduce_increment(
    family: PosteriorFamily, state: State, A: Tensor, g: Tensor, group: Any = None
) -> State:
    """The joint BONG step of all ranks: ``family.update(state, *reduce_increment(family, A, g))``.

    Every rank must pass the same ``state`` (the shared linearisation point); the returned state is then the
    same on every rank and equals the single-process batched update on the union of the ranks' transitions (up
    to floating-point summation order). If the total number of columns is 0 the state is returned unchanged.
    """
    A_all, g_sum = reduce_increment(family, A, g, group)
    if A_all.shape[1] == 0:
        return dict(state)
    return family.update(state, A_all, g_sum)


def broadcast_state(state: State, src: int = 0, group: Any = None) -> State:
    """Rank ``src``'s state on every rank, as a new dict of contiguous tensors (every rank, ``src`` included,
    gets the same layout). Checks first that keys, shapes and dtypes agree, so a mismatch raises instead of
    hanging."""
    if _world(group) == 1:
        return {k: v.contiguous() for k, v in state.items()}
    ref = next(iter(state.values()))
    sig = repr([(k, tuple(state[k].shape), str(state[k].dtype)) for k in sorted(state)])
    _check_equal_digest(
        hashlib.sha256(sig.encode()).digest(), ref.device, group, "posterior structure (keys/shapes)"
    )
    out: State = {}
    for k in sorted(state):
        t = state[k].detach().clone(memory_format=torch.contiguous_format)
        dist.broadcast(t, src=_global_rank(src, group), group=group)
        out[k] = t
    return {k: out[k] for k in state}


def _global_rank(group_rank: int, group: Any) -> int:
    if group is None:
        return group_rank
    return dist.get_global_rank(group, group_rank)


def posterior_hash(state: State) -> str:
    """SHA-256 hex digest of the posterior: for every key in sorted order, its name, dtype, shape and the raw
    bytes of its values in C order (so the digest does not depend on memory layout or device)."""
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().to("cpu").contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _check_equal_digest(digest: bytes, device: torch.device, group: Any, what: str) -> list[str]:
    t = torch.tensor(list(digest), dtype=torch.int32, device=device)
    R = dist.get_world_size(group)
    got = [torch.empty_like(t) for _ in range(R)]
    dist.all_gather(got, t, group=group)
    hexes = [bytes(x.to("cpu", torch.uint8).tolist()).hex() for x in got]
    if len(set(hexes)) != 1:
        raise RuntimeError(
            f"{what} differs across ranks: " + ", ".join(f"rank {r}: {h[:12]}" for r, h in enumerate(hexes))
        )
    return hexes


def assert_same_posterior(state: State, group: Any = None) -> str:
    """Collective: raise ``RuntimeError`` unless every rank's :func:`posterior_hash` agrees; return it."""
    hx = posterior_hash(state)
    if _world(group) > 1:
        _check_equal_digest(bytes.fromhex(hx), state["mean"].device, group, "posterior")
    return hx


# --------------------------------------------------------------------------------------- estimator wrapper
class DistributedBONG:
    """Data-parallel view of a :class:`bongrl.bong.BONG` estimator.

    ``update(x, y, index)`` computes the local increment, combines it across ranks and applies the joint step,
    so every rank's posterior (``est.state``) stays identical. On construction rank ``src`` broadcasts its
    posterior, prior mean and network weights (parameters outside the posterior stay frozen at the module's
    values, so they must match too). Only the estimator's public API is used.

    :meth:`reducer` is the ``(A, g) -> (A, g)`` hook to install with ``est.set_increment_reducer`` (what
    :func:`prepare_agent` does), so that the estimator's own ``update`` takes the joint step.
    """

    def __init__(self, est: Any, group: Any = None, src: int = 0, sync_initial: bool = True) -> None:
        self.est = est
        self.group = group
        self.src = src
        if sync_initial:
            self.broadcast(src)

    @property
    def rank(self) -> int:
        return dist.get_rank(self.group) if dist.is_initialized() else 0

    @property
    def world_size(self) -> int:
        return _world(self.group)

    def broadcast(self, src: int = 0) -> None:
        """Overwrite every rank's posterior, prior mean and network weights with rank ``src``'s (each rank keeps
        its own random generator, so Monte-Carlo samples stay independent across ranks)."""
        est = self.est
        # the estimator's state dict minus its generator: ``posterior.*`` and ``prior_mean``
        sd = {k: v for k, v in est.state_dict().items() if k != "rng_state"}
        synced = broadcast_state({**sd, **{f"net.{k}": v for k, v in est.model.state_dict().items()}}, src, self.group)
        est.load_state_dict({k: v for k, v in synced.items() if not k.startswith("net.")})
        with torch.no_grad():
            for k, v in est.model.state_dict().items():
                v.copy_(synced[f"net.{k}"])

    def reducer(self, A: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
        """The combined increment of all ranks (collective)."""
        return reduce_increment(self.est.family, A, g, self.group)

    def apply_increment(self, A: Tensor, g: Tensor) -> Any:
        """Combine this rank's increment (A may have 0 columns: a rank with nothing to condition on must still
        join) with the others' and apply the joint step; nothing changes if no rank had a column."""
        A_all, g_sum = self.reducer(A, g)
        if A_all.shape[1] > 0:
            self.est.apply_increment(A_all, g_sum)
        return self.est

    def update(self, x: Any, y: Any, index: Any = None) -> Any:
        """The joint BONG step on every rank's batch (collective): this rank's increment on (x, y), combined."""
        A, g = self.est.increment(x, y, index)
        return self.apply_increment(A, g)

    def hash(self) -> str:
        return posterior_hash(self.est.state)

    def assert_same_posterior(self) -> str:
        return assert_same_posterior(self.est.state, self.group)


def attach_reducer(agent: Any, reducer: Reducer) -> None:
    """Make every BONG step of ``agent`` (anything with an ``est``, the :class:`~bongrl.bong.BONG` estimator it
    updates through ``est.update``) go through ``reducer``: the estimator's increment-reducer hook
    (:meth:`bongrl.bong.BONG.set_increment_reducer`)."""
    agent.est.set_increment_reducer(reducer)


# ------------------------------------------------------------------------------------------ training entry
def prepare_agent(agent: Any, group: Any = None, src: int = 0) -> DistributedBONG:
    """Make a freshly built agent data-parallel (collective; call on every rank before ``learn``).

    Rank ``src``'s network, prior and posterior are broadcast to every rank, the agent's target network (if
    any) is reset to the shared mean, and every BONG step of the agent goes through the cross-rank reducer.
    Build the agent on rank r with seed ``seed + r`` so the ranks explore differently.
    """
    dest = DistributedBONG(agent.est, group=group, src=src)
    if hasattr(agent, "target_theta"):
        agent.target_theta = agent.est.mean.clone()
    attach_reducer(agent, dest.reducer)
    return dest


def write_posterior_hash(dest: DistributedBONG, out_dir: str | Path) -> str:
    """Collective: check the ranks agree, write ``out_dir/posterior_hash_rank{r}.txt``, return the hash."""
    hx = dest.assert_same_posterior()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"posterior_hash_rank{dest.rank}.txt").write_text(hx + "\n")
    return hx


def run_distributed_training(
    env: str,
    total_timesteps: int,
    out_dir: str | Path | None = None,
    posterior: str = "dlr",
    exploration: str = "thompson",
    seed: int = 0,
    device: str | torch.device = "auto",
    init_method: str = "env://",
    rank: int | None = None,
    world_size: int | None = None,
    exploration_options: dict[str, Any] | None = None,
    callback: Callable[[Any, dict[str, Any]], Any] | None = None,
    save_path: str | Path | None = None,
    **hyperparameters: Any,
) -> dict[str, Any]:
    """Data-parallel :class:`~bongrl.agents.bong_dqn.BongDQN` training; call on every rank (e.g. torchrun).

    Rank r steps its own ``num_envs`` environments seeded ``seed + r`` (its own exploration randomness too);
    after every env step the ranks' TD increments are combined (:func:`reduce_increment`) so all ranks hold
    the same posterior, initialised from rank 0's (a single-process run with ``seed`` has rank 0's initial
    network). ``total_timesteps`` counts env steps per rank (the posterior sees R times as many transitions).

    On return the ranks' posterior hashes are checked to agree, and if ``out_dir`` is given rank r writes
    ``out_dir/posterior_hash_rank{r}.txt`` (SHA-256 of :func:`posterior_hash`) and rank 0 saves a checkpoint
    to ``save_path`` (default ``out_dir/model.safetensors``). ``callback`` must not stop one rank early (it
    would leave the other ranks waiting in a collective); its return value is ignored. Returns a summary dict.
    """
    from bongrl.agents.bong_dqn import BongDQN

    r, R, dev = init_distributed(device, init_method, rank, world_size)
    agent = BongDQN(
        env,
        posterior=posterior,
        exploration=exploration,
        seed=seed + r,
        device=dev,
        exploration_options=exploration_options,
        **hyperparameters,
    )
    dest = prepare_agent(agent)  # rank 0's initial network, prior and posterior everywhere
    returns: list[float] = []

    def on_episode(a: Any, info: dict[str, Any]) -> None:
        returns.append(float(info["return"]))
        if callback is not None:
            callback(a, info)

    agent.learn(int(total_timesteps), callback=on_episode)
    if out_dir is not None:
        hx = write_posterior_hash(dest, out_dir)
        if r == 0:
            agent.save(save_path if save_path is not None else Path(out_dir) / "model.safetensors")
    else:
        hx = dest.assert_same_posterior()
    dist.barrier()
    return {
        "rank": r,
        "world_size": R,
        "device": str(dev),
        "posterior_hash": hx,
        "num_timesteps": agent.num_timesteps,
        "episodes": len(returns),
        "returns": returns,
        "agent": agent,
    }


def main(argv: Sequence[str] | None = None) -> None:
    """``torchrun --nproc_per_node=R -m bongrl.distributed --env CartPole-v1 --steps N --out DIR``: a
    stand-alone entry point until the CLI's ``train --distributed`` calls :func:`run_distributed_training`."""
    import argparse
    import json

    p = argparse.ArgumentParser(prog="python -m bongrl.distributed")
    p.add_argument("--env", required=True)
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--out", default=None)
    p.add_argument("--posterior", default="dlr")
    p.add_argument("--exploration", default="thompson")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="BongDQN hyperparameter")
    a = p.parse_args(argv)
    hyper = {}
    for item in a.set:
        k, _, v = item.partition("=")
        try:
            hyper[k] = json.loads(v)
        except json.JSONDecodeError:
            hyper[k] = v
    res = run_distributed_training(
        a.env,
        a.steps,
        a.out,
        posterior=a.posterior,
        exploration=a.exploration,
        seed=a.seed,
        device=a.device,
        **hyper,
    )
    rets = res["returns"][-20:]
    mean_ret = sum(rets) / len(rets) if rets else float("nan")
    print(
        f"rank {res['rank']}/{res['world_size']} steps={res['num_timesteps']} episodes={res['episodes']} "
        f"mean_return(last 20)={mean_ret:.1f} posterior={res['posterior_hash'][:16]}"
    )
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
