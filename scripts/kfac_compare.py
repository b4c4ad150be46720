"""How close is ``kfac`` to ``full`` on small networks, and what does one update cost (vs diag / dlr / full)?

For each small net, every family sees the same stream of N single-observation BONG-LIN updates from the same
prior. Predictive variances diag(H Σ_fam Hᵀ) on held-out inputs are compared with full's, using for every
family the same Jacobian H (at full's posterior mean), so only the covariance structure differs. Reported:
median and 90th-percentile relative error |v − v_full| / v_full over held-out outputs, and the mean |log(v /
v_full)|. "Own run": each family follows its own BONG trajectory (its own means and linearisation points).
"Same increments": every family applies the exact (A, g) sequence of the full-covariance run, so only the
precision structure differs. Update cost: median wall time of one ``BONG.update`` (B = 1, LIN, float32;
Jacobian included) and of the family step alone (``family.update(state, A, g)`` with a precomputed increment);
the 10th percentile is shown beside the median because the 2-core machine is shared (the p10 is the better
estimate of the unloaded cost).

Usage::

    python scripts/kfac_compare.py                                  # ≈ 4 min on one core
    python scripts/kfac_compare.py --n-updates 100 --time-reps 50   # smoke run
"""

from __future__ import annotations

import argparse
import csv
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

from bongrl.bong import BONG

FAMILIES = [
    ("full", "full", {}),
    ("kfac", "kfac", {}),
    ("kfac+rescale", "kfac", {"rescale_step": True}),
    ("kfac+rescale, refresh 10", "kfac", {"rescale_step": True, "refresh_every": 10}),
    ("dlr-10", "dlr", {"rank": 10}),
    ("diag", "diag", {}),
]


def make_tasks(seed: int) -> list[dict]:
    """Small nets: tanh MLP regression on a smooth synthetic target, and a digits classifier (categorical)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(1200, 8, generator=g)
    y = torch.sin(X[:, 0]) + 0.5 * X[:, 1] * X[:, 2] + 0.1 * torch.randn(1200, generator=g)
    d = load_digits()
    Xd = torch.tensor(d.data / 16.0, dtype=torch.float32)
    yd = torch.tensor(d.target)
    perm = torch.randperm(len(yd), generator=g)
    Xd, yd = Xd[perm], yd[perm]
    return [
        {"name": "reg 8-16-1", "sizes": [8, 16, 1], "lik": "gaussian", "X": X, "y": y},
        {"name": "reg 8-32-32-1", "sizes": [8, 32, 32, 1], "lik": "gaussian", "X": X, "y": y},
        {"name": "digits 64-16-10", "sizes": [64, 16, 10], "lik": "categorical", "X": Xd, "y": yd},
    ]


def mlp(sizes: list[int], seed: int) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


def run_task(task: dict, n_updates: int, n_test: int, seed: int, time_reps: int) -> list[dict]:
    X, y = task["X"], task["y"]
    Xtr, ytr, Xte = X[:n_updates], y[:n_updates], X[-n_test:]

    def make(fam: str, **opts: object) -> BONG:
        return BONG(mlp(task["sizes"], seed), family=fam, likelihood=task["lik"], obs_std=0.3, prior_std=0.5,
                    dtype=torch.float64, seed=seed, **opts)

    ests = {}
    for label, fam, opts in FAMILIES:
        est = make(fam, **opts)
        for i in range(n_updates):
            est.update(Xtr[i : i + 1], ytr[i : i + 1])
        ests[label] = est
    full = ests["full"]
    # shared increments: every family applies full's (A, g) sequence, so only the precision structure differs
    shared = {
        label: ests[label].family.init(ests["full"].prior_mean, torch.full_like(full.mean, 0.25))
        for label, _, _ in FAMILIES
    }
    teacher = make("full")
    for i in range(n_updates):
        A, g = teacher.increment(Xtr[i : i + 1], ytr[i : i + 1])
        teacher.apply_increment(A, g)
        for label, _, _ in FAMILIES:
            shared[label] = ests[label].family.update(shared[label], A, g)
    _, H = full.jacobian(Xte.double())  # (n_test, C, P) at full's mean
    v_full = full.family.predictive_cov(full.state, H).diagonal(dim1=-2, dim2=-1).reshape(-1)
    rows = []
    timings = time_updates(task, seed, time_reps)
    yte = y[-n_test:]
    for label, _fam, _opts in FAMILIES:
        est = ests[label]
        f = est.forward(Xte.double())
        if task["lik"] == "gaussian":
            loss = float((f[:, 0] - yte.double()).square().mean())
        else:
            loss = float(torch.nn.functional.cross_entropy(f, yte))
        v = est.family.predictive_cov(est.state, H).diagonal(dim1=-2, dim2=-1).reshape(-1)
        rel = ((v - v_full).abs() / v_full).numpy()
        v_sh = est.family.predictive_cov(shared[label], H).diagonal(dim1=-2, dim2=-1).reshape(-1)
        v_sh_full = full.family.predictive_cov(shared["full"], H).diagonal(dim1=-2, dim2=-1).reshape(-1)
        rel_sh = ((v_sh - v_sh_full).abs() / v_sh_full).numpy()
        row = {
            "task": task["name"],
            "P": est.num_params,
            "family": label,
            "n_updates": n_updates,
            "rel_err_median": float(np.median(rel)),
            "rel_err_p90": float(np.quantile(rel, 0.9)),
            "mean_abs_log_ratio": float((v / v_full).log().abs().mean()),
            "shared_rel_err_median": float(np.median(rel_sh)),
            "shared_rel_err_p90": float(np.quantile(rel_sh, 0.9)),
            "mean_dist_to_full": float((est.mean - full.mean).norm() / full.mean.norm()),
            "test_loss_at_mean": loss,
        }
        row.update(timings[label])
        rows.append(row)
        print({k: (round(x, 4) if isinstance(x, float) else x) for k, x in row.items()}, flush=True)
    return rows


def time_updates(task: dict, seed: int, reps: int) -> dict[str, dict]:
    """Median ms per single-observation update in float32, per family: the whole BONG update (increment +
    family step) and the family step alone. Families are timed round-robin, one update each in turn, so a busy
    machine slows them alike."""
    ests = {
        label: BONG(
            mlp(task["sizes"], seed),
            family=fam,
            likelihood=task["lik"],
            obs_std=0.3,
            prior_std=0.5,
            seed=seed,
            **opts,
        )
        for label, fam, opts in FAMILIES
    }
    X, y = task["X"], task["y"]
    for est in ests.values():
        for i in range(20):  # warm-up, and a non-trivial state
            est.update(X[i : i + 1], y[i : i + 1])
    t_all: dict[str, list[float]] = {k: [] for k in ests}
    t_fam: dict[str, list[float]] = {k: [] for k in ests}
    for i in range(reps):
        x1, y1 = X[20 + i : 21 + i], y[20 + i : 21 + i]
        for label, est in ests.items():
            t0 = time.perf_counter()
            A, g = est.increment(x1, y1)
            t1 = time.perf_counter()
            est.apply_increment(A, g)
            t2 = time.perf_counter()
            t_all[label].append(t2 - t0)
            t_fam[label].append(t2 - t1)

    def p10(v: list[float]) -> float:
        return 1e3 * sorted(v)[len(v) // 10]

    return {
        k: {
            "update_ms": 1e3 * statistics.median(t_all[k]),
            "family_step_ms": 1e3 * statistics.median(t_fam[k]),
            "update_ms_p10": p10(t_all[k]),
            "family_step_ms_p10": p10(t_fam[k]),
        }
        for k in ests
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-updates", type=int, default=300)
    ap.add_argument("--n-test", type=int, default=200)
    ap.add_argument("--time-reps", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="results/kfac_compare")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for task in make_tasks(args.seed):
        rows += run_task(task, args.n_updates, args.n_test, args.seed, args.time_reps)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lines = [
        f"N = {args.n_updates} single-observation BONG-LIN updates, prior std 0.5, obs std 0.3 (regression), "
        "float64 for the accuracy columns, float32 for the timings; "
        f"{platform.processor() or platform.machine()}, "
        "torch.set_num_threads(1).",
        "",
        "| net | P | family | rel. err. of diag(HΣHᵀ) vs full, own run: median / p90 "
        "| same increments: median / p90 "
        "| mean abs log-ratio (own run) | ‖μ−μ_full‖/‖μ_full‖ | held-out MSE / NLL at μ "
        "| ms / update (all), p10 / median "
        "| ms / family step, p10 / median |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['P']} | {r['family']} | "
            f"{r['rel_err_median']:.3f} / {r['rel_err_p90']:.3f} | "
            f"{r['shared_rel_err_median']:.3f} / {r['shared_rel_err_p90']:.3f} | "
            f"{r['mean_abs_log_ratio']:.3f} | {r['mean_dist_to_full']:.3f} | {r['test_loss_at_mean']:.3f} | "
            f"{r['update_ms_p10']:.2f} / {r['update_ms']:.2f} | "
            f"{r['family_step_ms_p10']:.2f} / {r['family_step_ms']:.2f} |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
