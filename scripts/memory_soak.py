"""Memory soak: resident memory (RSS) of a long CartPole BongDQN run with the replay buffer at capacity.

The replay fills up long before the first measurement (``--buffer-size`` < ``--start``), so any growth between
``--start`` and ``--steps`` is a leak (Python objects, tensors, autograd graphs, RNG states, checkpoints: a
checkpoint with the replay is also written every ``--measure-every`` steps). Target: < 5 % growth between step
10⁴ and 10⁵. Writes ``results/memory_soak.json``.

    OMP_NUM_THREADS=1 nice -n 5 python scripts/memory_soak.py                 # 10^5 steps (several CPU minutes)
    python scripts/memory_soak.py --steps 20000 --start 5000 --out /tmp/soak.json   # a shorter run
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import tempfile
import time
from pathlib import Path


def rss_bytes() -> int:
    """Resident set size of this process (psutil when installed, else /proc/self/statm)."""
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:  # pragma: no cover - psutil is a dev dependency
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=100_000, help="total env steps (default 10^5)")
    p.add_argument("--start", type=int, default=10_000, help="step of the baseline measurement (default 10^4)")
    p.add_argument("--measure-every", type=int, default=10_000, help="steps between RSS samples / checkpoints")
    p.add_argument("--posterior", default="dlr")
    p.add_argument("--hidden", default="64,64", help="hidden widths (default the CartPole preset's 64,64)")
    p.add_argument("--buffer-size", type=int, default=5_000, help="replay capacity (full long before --start)")
    p.add_argument("--target", type=float, default=5.0, help="pass threshold in percent")
    p.add_argument("--out", default="results/memory_soak.json")
    args = p.parse_args(argv)
    if not 0 < args.start < args.steps or args.buffer_size > args.start:
        p.error("need 0 < --start < --steps and --buffer-size <= --start (replay at capacity when measuring)")

    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from bongrl.agents import BongDQN

    hidden = [int(h) for h in args.hidden.split(",") if h]
    hyper = dict(hidden=hidden, prior_std=1.0, obs_std=1.0, target_update=20, replay_every=4,
                 learning_starts=1_000, buffer_size=args.buffer_size, replay_batch=32)
    agent = BongDQN("CartPole-v1", posterior=args.posterior, seed=0, device="cpu", **hyper)
    samples: list[dict[str, float]] = []
    ckpt_dir = tempfile.mkdtemp(prefix="bongrl-soak-")
    t0 = time.perf_counter()

    def measure(a: BongDQN, info: dict) -> None:
        if info.get("kind") != "step":
            return
        a.save(Path(ckpt_dir) / "soak.safetensors", include_replay=True)  # exercise the checkpoint path too
        gc.collect()
        rss = rss_bytes()
        samples.append({"step": int(info["step"]), "rss_mib": rss / 2**20, "wall_s": time.perf_counter() - t0,
                        "episodes": a.num_episodes, "replay_size": a._replay_size()})
        print(f"step {info['step']:>7}: RSS {rss / 2**20:8.1f} MiB, replay {a._replay_size()}, "
              f"{time.perf_counter() - t0:7.1f}s", flush=True)

    # the baseline sample must fall exactly on --start
    every = args.measure_every if args.start % args.measure_every == 0 else args.start
    agent.learn(args.steps, callback=measure, callback_every=every)
    base = next(s for s in samples if s["step"] == args.start)
    final = samples[-1]
    growth = 100.0 * (final["rss_mib"] - base["rss_mib"]) / base["rss_mib"]
    result = {
        "description": "RSS growth of a CartPole BongDQN run with the replay buffer at capacity, between the "
                       "baseline step and the last step (checkpoint with replay written at every sample)",
        "steps": args.steps,
        "baseline_step": args.start,
        "rss_baseline_mib": round(base["rss_mib"], 2),
        "rss_final_mib": round(final["rss_mib"], 2),
        "growth_percent": round(growth, 3),
        "target_percent": args.target,
        "passed": bool(growth < args.target),
        "posterior": args.posterior,
        "hyperparameters": hyper,
        "num_params": agent.est.num_params,
        "episodes": agent.num_episodes,
        "wall_s": round(time.perf_counter() - t0, 1),
        "samples": [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in s.items()} for s in samples],
        "rss_source": "psutil" if _has_psutil() else "/proc/self/statm",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared), OMP_NUM_THREADS="
                   f"{os.environ.get('OMP_NUM_THREADS', 'unset')}",
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"RSS {base['rss_mib']:.1f} MiB at step {args.start} -> {final['rss_mib']:.1f} MiB at step "
          f"{final['step']}: {growth:+.2f} % (target < {args.target} %: {'PASS' if result['passed'] else 'FAIL'}); "
          f"wrote {out}")
    return 0 if result["passed"] else 1


def _has_psutil() -> bool:
    try:
        import psutil  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    raise SystemExit(main())
