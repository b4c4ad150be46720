"""Scaling of BONG-DQN: vectorised environments, Q-network size, and the cross-rank increment reduction.

Three sweeps, each for the ``diag`` and ``dlr`` (rank 10) families, LIN, float32,
``torch.set_num_threads(1)``:

1. **num_envs** (1, 4, 16, 64): :class:`~bongrl.agents.bong_dqn.BongDQN` on ``CartPole-v1`` with a gymnasium
   sync vector env, Q-net 4-64-64-2 (P = 4,610); one batched BONG update of ``num_envs`` transitions per env
   step. Reported: env steps/s (transitions/s, everything included: acting, env, TD targets, update) and the
   median latency of one batched update (predict step + increment + apply), timed around
   ``BongDQN._bong_step``.
2. **P** (≈5k … 1M): Q-net 4-h-h-2 with h chosen to hit P; median latency of ``est.increment`` (Jacobians +
   whitening) and ``est.apply_increment`` (the family update) on batches of K = 1 and K = 16 transitions (one
   action each). Repetitions are time-boxed and capped at large P.
3. **reduction** (optional, ``--dist``): 2 gloo ranks on this machine, median latency of
   :func:`bongrl.distributed.reduce_increment` for K = 16 columns per rank at several P (diag: one all-reduce
   of 2P numbers; dlr: all-gather of K + 1 rows of P per rank).

Runs on CUDA too (``--device cuda``; ``auto`` picks it when present) — nothing here needs it. Writes
``results/bench_scale.{json,png,md}``. The default CPU run takes about 3-5 minutes on a busy 2-core machine.

Usage::

    python scripts/bench_scale.py                       # default sweeps, CPU
    python scripts/bench_scale.py --device cuda --out results/bench_scale_cuda
    python scripts/bench_scale.py --quick               # a smoke run (seconds)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

FAMILIES = ("diag", "dlr")


def _stats(times: list[float]) -> dict[str, float]:
    times = sorted(times)
    return {
        "median_ms": 1e3 * statistics.median(times),
        "p10_ms": 1e3 * times[len(times) // 10],
        "p90_ms": 1e3 * times[(9 * len(times)) // 10],
        "reps": len(times),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def hidden_for(P: int, obs: int = 4, act: int = 2) -> int:
    """h with P(h) = h² + (obs + act + 2) h + act closest to P (MLP obs-h-h-act)."""
    b = obs + act + 2
    return max(1, round((-b + math.sqrt(b * b + 4 * (P - act))) / 2))


def qnet_params(h: int, obs: int = 4, act: int = 2) -> int:
    return obs * h + h + h * h + h + h * act + act


# --------------------------------------------------------------------------------------------- 1. num_envs
def bench_envs(family: str, num_envs: int, device: torch.device, seconds: float, rank: int) -> dict[str, Any]:
    from bongrl.agents.bong_dqn import BongDQN

    agent = BongDQN(
        "CartPole-v1", posterior=family, seed=0, device=device, num_envs=num_envs, rank=rank, hidden=[64, 64]
    )
    lat: list[float] = []
    inner = agent._bong_step

    def timed(obs, act, y):  # noqa: ANN001
        _sync(device)
        t0 = time.perf_counter()
        inner(obs, act, y)
        _sync(device)
        lat.append(time.perf_counter() - t0)

    agent._bong_step = timed  # instance attribute: learn() calls self._bong_step
    agent.learn(num_envs * 5)  # warm-up (first-call dispatch, env reset)
    lat.clear()
    chunk = num_envs * 10
    steps0, t0 = agent.num_timesteps, time.perf_counter()
    while time.perf_counter() - t0 < seconds or agent.num_timesteps - steps0 < 2 * chunk:
        agent.learn(chunk)
    _sync(device)
    wall = time.perf_counter() - t0
    n = agent.num_timesteps - steps0
    agent.env.close()
    upd = _stats(lat)
    return {
        "family": family,
        "num_envs": num_envs,
        "P": agent.est.num_params,
        "env_steps": n,
        "wall_s": wall,
        "env_steps_per_s": n / wall,
        "updates_per_s": len(lat) / wall,
        "update": upd,
        "update_ms_per_transition": upd["median_ms"] / num_envs,
        "update_share": sum(lat) / wall,
    }


# ---------------------------------------------------------------------------------------------------- 2. P
def bench_size(
    family: str, P_target: int, K: int, device: torch.device, seconds: float, max_reps: int, rank: int
) -> dict[str, Any]:
    from bongrl.agents.base import mlp
    from bongrl.bong import BONG

    h = hidden_for(P_target)
    torch.manual_seed(0)
    est = BONG(mlp(4, [h, h], 2), family=family, obs_std=1.0, prior_std=0.1, rank=rank, device=device)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(K, 4, generator=gen).to(device)
    a = torch.randint(2, (K,), generator=gen).to(device)
    y = torch.randn(K, generator=gen).to(device)
    inc, app = [], []
    for _ in range(2):  # warm-up
        est.apply_increment(*est.increment(x, y, a))
    start = time.perf_counter()
    while len(inc) < max_reps and (len(inc) < 3 or time.perf_counter() - start < seconds):
        _sync(device)
        t0 = time.perf_counter()
        A, g = est.increment(x, y, a)
        _sync(device)
        t1 = time.perf_counter()
        est.apply_increment(A, g)
        _sync(device)
        t2 = time.perf_counter()
        inc.append(t1 - t0)
        app.append(t2 - t1)
    tot = [i + j for i, j in zip(inc, app, strict=True)]
    return {
        "family": family,
        "P": est.num_params,
        "hidden": h,
        "K": K,
        "increment": _stats(inc),
        "apply": _stats(app),
        "total": _stats(tot),
    }


# -------------------------------------------------------------------------------------------- 3. reduction
def _dist_worker(
    rank: int,
    world: int,
    init_file: str,
    out_file: str,
    sizes: list[int],
    K: int,
    seconds: float,
    device: str,
) -> None:
    torch.set_num_threads(1)
    import torch.distributed as dist

    from bongrl.distributed import init_distributed, reduce_increment

    _, _, dev = init_distributed(device, init_method=f"file://{init_file}", rank=rank, world_size=world)
    rows = []
    for P in sizes:
        for family in FAMILIES:
            A = torch.randn(P, K, device=dev)
            g = torch.randn(P, device=dev)
            times: list[float] = []
            reduce_increment(family, A, g)
            start = time.perf_counter()
            while True:
                dist.barrier()
                _sync(dev)
                t0 = time.perf_counter()
                reduce_increment(family, A, g)
                _sync(dev)
                times.append(time.perf_counter() - t0)
                flag = torch.tensor(
                    [float(len(times) >= 3 and time.perf_counter() - start >= seconds)], device=dev
                )
                dist.all_reduce(flag, op=dist.ReduceOp.MIN)  # stop together
                if flag.item() > 0 or len(times) >= 200:
                    break
            rows.append(
                {
                    "family": family,
                    "P": P,
                    "K_per_rank": K,
                    "world_size": world,
                    "floats_sent_per_rank": 2 * P if family == "diag" else (K + 1) * P + 1,
                    **_stats(times),
                }
            )
    if rank == 0:
        Path(out_file).write_text(json.dumps(rows))
    dist.barrier()
    dist.destroy_process_group()


def bench_reduce(sizes: list[int], K: int, seconds: float, device: torch.device) -> list[dict[str, Any]]:
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "reduce.json")
        mp.spawn(
            _dist_worker,
            args=(2, os.path.join(tmp, "rdv"), out, sizes, K, seconds, str(device)),
            nprocs=2,
            join=True,
        )
        return json.loads(Path(out).read_text())


# -------------------------------------------------------------------------------------------------- output
def write_markdown(res: dict[str, Any], path: Path) -> None:
    m = res["meta"]
    lines = [
        "# BONG-DQN scaling benchmark",
        "",
        f"`scripts/bench_scale.py` on {m['device_name']} ({m['device']}), torch {m['torch']}, "
        f"{m['threads']} thread(s), float32, LIN, dlr rank {m['rank']}. {m['note']}",
        "",
        "## Vectorised environments (CartPole-v1, Q-net 4-64-64-2, one batched update per env step)",
        "",
        "| family | num_envs | env steps/s | update latency (median ms) | update ms / transition "
        "| share of wall in update |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in res["envs"]:
        lines.append(
            f"| {r['family']} | {r['num_envs']} | {r['env_steps_per_s']:,.0f} | "
            f"{r['update']['median_ms']:.2f} | {r['update_ms_per_transition']:.3f} | "
            f"{100 * r['update_share']:.0f}% |"
        )
    lines += [
        "",
        "## Q-network size (MLP 4-h-h-2; batch of K transitions, one action each)",
        "",
        "| family | P | h | K | increment (ms) | apply (ms) | total (ms) | reps |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["sizes"]:
        lines.append(
            f"| {r['family']} | {r['P']:,} | {r['hidden']} | {r['K']} | {r['increment']['median_ms']:.2f} | "
            f"{r['apply']['median_ms']:.2f} | {r['total']['median_ms']:.2f} | {r['total']['reps']} |"
        )
    if res.get("reduce"):
        lines += [
            "",
            "## Cross-rank reduction (`bongrl.distributed.reduce_increment`, 2 gloo ranks on one machine)",
            "",
            "| family | P | K per rank | floats sent per rank | latency (median ms) |",
            "|---|---:|---:|---:|---:|",
        ]
        for r in res["reduce"]:
            lines.append(
                f"| {r['family']} | {r['P']:,} | {r['K_per_rank']} | {r['floats_sent_per_rank']:,} | "
                f"{r['median_ms']:.2f} |"
            )
    path.write_text("\n".join(lines) + "\n")


def plot(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    colors = {"diag": "tab:blue", "dlr": "tab:orange"}
    for fam in FAMILIES:
        rows = [r for r in res["envs"] if r["family"] == fam]
        if not rows:
            continue
        n = [r["num_envs"] for r in rows]
        axes[0].plot(n, [r["env_steps_per_s"] for r in rows], "o-", color=colors[fam], label=fam)
        axes[1].plot(
            n, [r["update"]["median_ms"] for r in rows], "o-", color=colors[fam], label=f"{fam}: per update"
        )
        axes[1].plot(
            n,
            [r["update_ms_per_transition"] for r in rows],
            "s--",
            color=colors[fam],
            alpha=0.6,
            label=f"{fam}: per transition",
        )
        for K, style in ((1, "o-"), (16, "s--")):
            rs = [r for r in res["sizes"] if r["family"] == fam and r["K"] == K]
            if rs:
                axes[2].plot(
                    [r["P"] for r in rs],
                    [r["total"]["median_ms"] for r in rs],
                    style,
                    color=colors[fam],
                    label=f"{fam}, K={K}",
                )
    axes[0].set(
        xscale="log",
        yscale="log",
        xlabel="num_envs",
        ylabel="env steps / s",
        title="CartPole-v1 throughput (P = 4,610)",
    )
    axes[1].set(xscale="log", yscale="log", xlabel="num_envs", ylabel="ms", title="batched update latency")
    axes[2].set(
        xscale="log",
        yscale="log",
        xlabel="P (Q-net parameters)",
        ylabel="ms (increment + apply)",
        title="update latency vs network size",
    )
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    m = res["meta"]
    fig.suptitle(f"bongrl scaling — {m['device_name']}, {m['threads']} thread(s), float32", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "CPU"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--num-envs", type=int, nargs="+", default=[1, 4, 16, 64])
    p.add_argument("--sizes", type=int, nargs="+", default=[5_000, 20_000, 100_000, 300_000, 1_000_000])
    p.add_argument("--batch", type=int, nargs="+", default=[1, 16], help="K transitions per update (P sweep)")
    p.add_argument("--rank", type=int, default=10, help="dlr rank L")
    p.add_argument("--env-seconds", type=float, default=5.0, help="timed seconds per num_envs point")
    p.add_argument("--size-seconds", type=float, default=3.0, help="timed seconds per P point")
    p.add_argument(
        "--dist", action=argparse.BooleanOptionalAction, default=True, help="2-rank gloo reduction sweep"
    )
    p.add_argument("--dist-sizes", type=int, nargs="+", default=[5_000, 100_000, 1_000_000])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="smoke run: tiny grid, short timings")
    p.add_argument("--out", default="results/bench_scale", help="output path without extension")
    a = p.parse_args()
    if a.quick:
        a.num_envs, a.sizes, a.batch = [1, 4], [5_000, 20_000], [1, 4]
        a.env_seconds = a.size_seconds = 0.5
        a.dist_sizes = [5_000]
    torch.set_num_threads(a.threads)
    from bongrl.device import resolve_device

    device = resolve_device(a.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    res: dict[str, Any] = {
        "meta": {
            "device": str(device),
            "device_name": name,
            "torch": torch.__version__,
            "threads": a.threads,
            "cpu_count": os.cpu_count(),
            "rank": a.rank,
            "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "loadavg_at_start": load,
            "note": f"Machine shared with other jobs (1-min load average {load:.1f} on {os.cpu_count()} "
            "cores at start): medians are robust, absolute numbers are pessimistic.",
        },
        "envs": [],
        "sizes": [],
        "reduce": [],
    }
    t_start = time.perf_counter()
    for fam in FAMILIES:
        for n in a.num_envs:
            r = bench_envs(fam, n, device, a.env_seconds, a.rank)
            res["envs"].append(r)
            print(
                f"[envs] {fam:4s} num_envs={n:3d}  {r['env_steps_per_s']:8.0f} steps/s  "
                f"update {r['update']['median_ms']:.2f} ms",
                flush=True,
            )
    for fam in FAMILIES:
        for P in a.sizes:
            for K in a.batch:
                max_reps = 200 if P <= 100_000 else 20 if P <= 300_000 else 8
                r = bench_size(fam, P, K, device, a.size_seconds, max_reps, a.rank)
                res["sizes"].append(r)
                print(
                    f"[size] {fam:4s} P={r['P']:>9,d} K={K:2d}  inc {r['increment']['median_ms']:8.2f} ms  "
                    f"apply {r['apply']['median_ms']:8.2f} ms",
                    flush=True,
                )
    if a.dist:
        res["reduce"] = bench_reduce(a.dist_sizes, 16, 1.0, device)
        for r in res["reduce"]:
            print(f"[reduce] {r['family']:4s} P={r['P']:>9,d}  {r['median_ms']:.2f} ms", flush=True)
    res["meta"]["wall_s"] = time.perf_counter() - t_start
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    write_markdown(res, out.with_suffix(".md"))
    plot(res, out.with_suffix(".png"))
    print(f"wrote {out}.json/.md/.png in {res['meta']['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
