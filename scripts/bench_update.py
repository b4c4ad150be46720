"""Per-update latency of BONG-LIN through the public ``BONG`` class, beside one Adam step on the same model.

Single observation (B = 1, C = 1, gaussian likelihood, LIN), CPU, ``torch.set_num_threads(1)``, float32. Each
configuration is warmed up, then timed update by update; the median is reported (robust to a busy machine).
Models are tanh MLPs ``d -> h -> h -> 1`` with ``h`` chosen to hit each target P, plus the CartPole Q-network
``4 -> 64 -> 64 -> 2`` updated on one selected action (``index``), P = 4,610, where the target is <= 1 ms per
DLR-10 update. The slope of diag/dlr latency against P is fitted by least squares (the update is O(P) per
observation for these families, so latency should be affine in P).

Usage::

    python scripts/bench_update.py                      # default grid, < 3 min on one core
    python scripts/bench_update.py --sizes 1000 5000 --families dlr --max-seconds 1
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from bongrl import registry
from bongrl.bong import BONG


def mlp_for(P: int, d: int = 8) -> nn.Module:
    """tanh MLP d -> h -> h -> 1 with h chosen so the parameter count is closest to P."""
    # P(h) = h² + (d + 3) h + 1
    h = max(1, round((-(d + 3) + math.sqrt((d + 3) ** 2 + 4 * (P - 1))) / 2))
    return nn.Sequential(nn.Linear(d, h), nn.Tanh(), nn.Linear(h, h), nn.Tanh(), nn.Linear(h, 1))


def cartpole_qnet() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 2))


def _time(step, warmup: int, min_reps: int, max_reps: int, max_seconds: float) -> dict:
    for i in range(warmup):
        step(i)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_reps and (len(times) < min_reps or time.perf_counter() - start < max_seconds):
        t0 = time.perf_counter()
        step(len(times))
        times.append(time.perf_counter() - t0)
    times.sort()
    return {
        "median_ms": 1e3 * statistics.median(times),
        "p10_ms": 1e3 * times[len(times) // 10],
        "p90_ms": 1e3 * times[(9 * len(times)) // 10],
        "reps": len(times),
    }


def _inputs(model: nn.Module, n: int, seed: int, n_actions: int | None = None):
    gen = torch.Generator().manual_seed(seed)
    d = next(m for m in model.modules() if isinstance(m, nn.Linear)).in_features
    xs = torch.randn(n, 1, d, generator=gen)
    ys = torch.randn(n, 1, generator=gen)
    idx = None if n_actions is None else torch.randint(n_actions, (n, 1), generator=gen)
    return xs, ys, idx


def bench_bong(model, family, args, n_actions=None) -> dict:
    est = BONG(
        copy.deepcopy(model),
        family=family,
        likelihood="gaussian",
        method="lin",
        rank=args.rank,
        device="cpu",
        dtype=torch.float32,
        obs_std=1.0,
        prior_std=0.1,
    )
    n = args.warmup + args.max_reps
    xs, ys, idx = _inputs(model, n, 0, n_actions)
    off = [0]

    def step(i):
        j = off[0] % n
        off[0] += 1
        est.update(xs[j], ys[j], index=None if idx is None else idx[j])

    res = _time(step, args.warmup, args.min_reps, args.max_reps, args.max_seconds)
    res["P"] = est.num_params
    res["health"] = est.family.health(est.state) if family != "full" or est.num_params <= 2000 else None
    return res


def bench_adam(model, args, n_actions=None) -> dict:
    model = copy.deepcopy(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    n = args.warmup + args.max_reps
    xs, ys, idx = _inputs(model, n, 0, n_actions)
    off = [0]

    def step(i):
        j = off[0] % n
        off[0] += 1
        out = model(xs[j])
        if idx is not None:
            out = out.gather(1, idx[j].unsqueeze(1))
        loss = ((out.reshape(-1) - ys[j]) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    res = _time(step, args.warmup, args.min_reps, args.max_reps, args.max_seconds)
    res["P"] = sum(p.numel() for p in model.parameters())
    return res


def fit_line(ps: list[int], ms: list[float]) -> dict:
    """Least-squares latency = a + b·P; returns b in µs per 1k params, a in ms, and R²."""
    n = len(ps)
    mx, my = sum(ps) / n, sum(ms) / n
    sxx = sum((p - mx) ** 2 for p in ps)
    sxy = sum((p - mx) * (m - my) for p, m in zip(ps, ms, strict=True))
    b = sxy / sxx
    a = my - b * mx
    ss_res = sum((m - a - b * p) ** 2 for p, m in zip(ps, ms, strict=True))
    ss_tot = sum((m - my) ** 2 for m in ms)
    return {
        "slope_us_per_1k_params": 1e3 * b * 1e3,
        "intercept_ms": a,
        "r2": 1 - ss_res / ss_tot if ss_tot else 1.0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000, 5_000, 20_000, 100_000])
    ap.add_argument("--families", nargs="+", default=None, help="default: every registered built-in family")
    ap.add_argument("--full-max", type=int, default=5_000, help="largest P for the full-covariance family")
    ap.add_argument("--rank", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--min-reps", type=int, default=15)
    ap.add_argument("--max-reps", type=int, default=400)
    ap.add_argument("--max-seconds", type=float, default=2.0, help="time budget per configuration")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-cartpole", action="store_true")
    ap.add_argument("--out", default="results/bench_update.json")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    families = args.families or [f for f in ("full", "diag", "dlr") if f in registry.available("posterior")]
    rows = []
    t_start = time.perf_counter()
    for P in args.sizes:
        model = mlp_for(P)
        for fam in families:
            if fam == "full" and P > args.full_max:
                continue
            r = bench_bong(model, fam, args)
            rows.append(
                {"model": f"mlp{P // 1000}k", "method": fam if fam != "dlr" else f"dlr-{args.rank}", **r}
            )
            print(f"  P={r['P']:>7} {rows[-1]['method']:>8}: {r['median_ms']:.3f} ms", flush=True)
        r = bench_adam(model, args)
        rows.append({"model": f"mlp{P // 1000}k", "method": "adam", **r})
        print(f"  P={r['P']:>7}     adam: {r['median_ms']:.3f} ms", flush=True)
    if not args.no_cartpole:
        q = cartpole_qnet()
        for fam in families:
            r = bench_bong(q, fam, args, n_actions=2)
            rows.append({"model": "cartpole-q", "method": fam if fam != "dlr" else f"dlr-{args.rank}", **r})
            print(f"  cartpole P={r['P']} {rows[-1]['method']:>8}: {r['median_ms']:.3f} ms", flush=True)
        r = bench_adam(q, args, n_actions=2)
        rows.append({"model": "cartpole-q", "method": "adam", **r})
        print(f"  cartpole P={r['P']}     adam: {r['median_ms']:.3f} ms", flush=True)

    fits = {}
    for fam in ("diag", f"dlr-{args.rank}", "adam"):
        pts = [(r["P"], r["median_ms"]) for r in rows if r["method"] == fam and r["model"].startswith("mlp")]
        if len(pts) >= 2:
            fits[fam] = fit_line([p for p, _ in pts], [m for _, m in pts])
    cart = next((r for r in rows if r["model"] == "cartpole-q" and r["method"] == f"dlr-{args.rank}"), None)
    out = {
        "setup": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "processor": platform.processor(),
            "threads": args.threads,
            "dtype": "float32",
            "observation": "B=1, C=1, gaussian, LIN",
            "rank": args.rank,
            "timing": "median over reps after warm-up, per configuration",
        },
        "rows": rows,
        "linear_fits": fits,
        "cartpole_dlr_target_ms": 1.0,
        "cartpole_dlr_ms": None if cart is None else cart["median_ms"],
        "cartpole_dlr_meets_target": None if cart is None else cart["median_ms"] <= 1.0,
        "wall_seconds": time.perf_counter() - t_start,
    }
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))

    adam = {r["model"]: r["median_ms"] for r in rows if r["method"] == "adam"}
    print()
    print("| model | P | method | median ms | p10–p90 ms | × Adam |")
    print("|---|---:|---|---:|---|---:|")
    for r in rows:
        ratio = r["median_ms"] / adam[r["model"]] if r["model"] in adam else float("nan")
        print(
            f"| {r['model']} | {r['P']:,} | {r['method']} | {r['median_ms']:.3f} | "
            f"{r['p10_ms']:.3f}–{r['p90_ms']:.3f} | {ratio:.1f} |"
        )
    print()
    print("| method | slope (µs per 1k params) | intercept (ms) | R² |")
    print("|---|---:|---:|---:|")
    for k, f in fits.items():
        print(f"| {k} | {f['slope_us_per_1k_params']:.1f} | {f['intercept_ms']:.3f} | {f['r2']:.3f} |")
    if cart is not None:
        verdict = "meets" if cart["median_ms"] <= 1.0 else "misses"
        print(
            f"\nCartPole Q-net dlr-{args.rank}: {cart['median_ms']:.3f} ms per update "
            f"({verdict} the 1 ms target)"
        )
    print(f"wrote {path} ({out['wall_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
