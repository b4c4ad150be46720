"""Env steps per second: BongDQN (its CartPole-v1 preset) against SB3 DQN (rl-zoo CartPole-v1 preset).

Both run in this one process on the CPU with ``torch.set_num_threads(1)``, learning on CartPole-v1 without
evaluation. Each is warmed up first (BongDQN: ``--warmup`` steps; SB3 DQN: its ``learning_starts`` plus one
train_freq period, so that the timed window is in the regime where gradient steps run), then ``learn`` is
timed for ``--steps`` further env steps. Throughput is reported per wall second and per CPU second of this
process (``time.process_time``; robust to other processes on a shared machine); the ratios use CPU
seconds. Both are timed with 1 env and with 8 envs, and each ratio compares equal env counts: BongDQN with
``num_envs=8`` (a SyncVectorEnv of 8 CartPoles, one batched BONG update per vector step) against SB3 DQN with
``n_envs=8`` (``make_vec_env(..., n_envs=8)``, a DummyVecEnv). The zoo preset is kept as it is, with SB3's own
semantics: ``train_freq`` counts vector steps, so at 8 envs DQN does its ``gradient_steps`` every
``train_freq`` × 8 env steps (reported as ``gradient_steps_per_env_step``) — as BongDQN's ``replay_every``
counts vector steps. Finally one BongDQN run (num_envs=1) is profiled with cProfile (CPU-time timer) and its
time is broken down by component.

Usage::

    python scripts/bench_throughput.py                     # ~1-2 CPU-minutes
    python scripts/bench_throughput.py --steps 2000 --out /tmp/bench.json
    python scripts/bench_throughput.py --steps 200 --warmup 100 --profile-steps 100 --out /tmp/b.json  # smoke
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import platform
import pstats
import time
from pathlib import Path
from typing import Any

import torch

from bongrl import presets
from bongrl.agents.bong_dqn import BongDQN
from bongrl.baselines import sb3

ENV = "CartPole-v1"


def _timed(fn: Any) -> tuple[float, float]:
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def bongdqn(steps: int, warmup: int, num_envs: int = 1, seed: int = 0) -> dict[str, Any]:
    p = presets.get(ENV)
    hyper = {**p["hyperparameters"], "num_envs": num_envs}
    agent = BongDQN(
        ENV, posterior=p["posterior"], exploration=p["exploration"], seed=seed, device="cpu", **hyper
    )
    agent.learn(warmup)
    start = agent.num_timesteps
    wall, cpu = _timed(lambda: agent.learn(steps))
    done = agent.num_timesteps - start
    return {
        "agent": "bongdqn",
        "num_envs": num_envs,
        "posterior": p["posterior"],
        "exploration": p["exploration"],
        "hyperparameters": hyper,
        "steps": done,
        "wall_s": wall,
        "cpu_s": cpu,
        "steps_per_wall_s": done / wall,
        "steps_per_cpu_s": done / cpu,
        "updates_per_cpu_s": done / num_envs / cpu,
    }


def sb3_dqn(steps: int, n_envs: int = 1, seed: int = 0) -> dict[str, Any]:
    """SB3 DQN with the zoo preset on ``n_envs`` envs, warmed up past ``learning_starts`` and one training
    period (``train_freq`` vector steps = ``train_freq * n_envs`` env steps), then timed for ``steps``."""
    hp = sb3.resolved("dqn", ENV, {"n_envs": n_envs})
    model = sb3.make_model("dqn", ENV, seed, hp)
    period = int(hp["train_freq"]) * n_envs  # env steps between training phases
    model.learn(int(hp["learning_starts"]) + period)
    start = model.num_timesteps
    wall, cpu = _timed(lambda: model.learn(steps, reset_num_timesteps=False))
    done = model.num_timesteps - start
    return {
        "agent": "sb3-dqn",
        "num_envs": n_envs,
        "hyperparameters": hp,
        "warmup_steps": start,
        "steps": done,
        "wall_s": wall,
        "cpu_s": cpu,
        "steps_per_wall_s": done / wall,
        "steps_per_cpu_s": done / cpu,
        "gradient_steps_per_env_step": hp["gradient_steps"] / period,
    }


def _show(label: str, res: dict[str, Any]) -> dict[str, Any]:
    print(f"{label:<11}: {res['steps_per_cpu_s']:8.0f} steps/CPU-s ({res['steps_per_wall_s']:.0f}/wall-s)")
    return res


COMPONENTS = {
    # label: (substring of the file path, function name or names) whose cumulative time is reported
    "BONG update: predict step (forgetting / process noise)": ("bongrl/bong.py", "predict_step"),
    "BONG update: increment (Jacobian + posterior increment)": ("bongrl/bong.py", "increment"),
    "BONG update: apply increment": ("bongrl/bong.py", "apply_increment"),
    "TD targets (two target/mean forward passes)": ("bongrl/agents/bong_dqn.py", "_td_targets"),
    "replay BONG steps (all of _replay_updates; overlaps the rows above)": (
        "bongrl/agents/bong_dqn.py",
        "_replay_updates",
    ),
    "finiteness checks (check_finite, check_all_finite)": ("bongrl/posteriors", ("check_finite", "check_all_finite")),
    "acting (exploration rule, incl. posterior samples)": ("bongrl/exploration", "act"),
    "episode starts (Thompson resampling)": ("bongrl/exploration", "on_episode_start"),
    "env step (gymnasium SyncVectorEnv)": ("gymnasium/vector/sync_vector_env.py", "step"),
    "observation -> tensor": ("bongrl/agents", "_obs_tensor"),
    "target-network copy (clone)": ("~", "<method 'clone' of 'torch._C.TensorBase' objects>"),
}


def profile(steps: int, warmup: int, top: int) -> dict[str, Any]:
    p = presets.get(ENV)
    agent = BongDQN(
        ENV,
        posterior=p["posterior"],
        exploration=p["exploration"],
        seed=1,
        device="cpu",
        **p["hyperparameters"],
    )
    agent.learn(warmup)
    prof = cProfile.Profile(time.process_time)  # CPU time: robust to other processes on a shared machine
    prof.enable()
    agent.learn(steps)
    prof.disable()
    st = pstats.Stats(prof)
    total = max(v[3] for k, v in st.stats.items() if k[2] == "learn")  # cumulative time of learn()
    breakdown = {}
    for label, (path, fn) in COMPONENTS.items():
        names = fn if isinstance(fn, tuple) else (fn,)
        cum = sum(v[3] for k, v in st.stats.items() if path in k[0] and k[2] in names)
        breakdown[label] = {"seconds": cum, "fraction": cum / total}
    rows = sorted(st.stats.items(), key=lambda kv: kv[1][3], reverse=True)
    top_cum = [
        {
            "function": f"{Path(k[0]).name}:{k[1]}({k[2]})",
            "calls": v[1],
            "tottime_s": round(v[2], 4),
            "cumtime_s": round(v[3], 4),
            "cum_fraction": round(v[3] / total, 4),
        }
        for k, v in rows[:top]
    ]
    rows_t = sorted(st.stats.items(), key=lambda kv: kv[1][2], reverse=True)
    top_tot = [
        {
            "function": f"{Path(k[0]).name}:{k[1]}({k[2]})",
            "calls": v[1],
            "tottime_s": round(v[2], 4),
            "tot_fraction": round(v[2] / total, 4),
        }
        for k, v in rows_t[:top]
    ]
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("cumulative").print_stats(top)
    return {
        "steps": steps,
        "learn_cumtime_s": total,
        "breakdown": breakdown,
        "top_cumulative": top_cum,
        "top_tottime": top_tot,
        "pstats_text": text.getvalue(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=5000, help="timed env steps per configuration")
    ap.add_argument("--warmup", type=int, default=1000, help="BongDQN warm-up env steps")
    ap.add_argument("--profile-steps", type=int, default=2000)
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--out", default="results/bench_throughput.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    dqn1 = _show("sb3 dqn x1", sb3_dqn(args.steps, 1))
    dqn8 = _show("sb3 dqn x8", sb3_dqn(args.steps, 8))
    b1 = _show("bongdqn x1", bongdqn(args.steps, args.warmup, 1))
    b8 = _show("bongdqn x8", bongdqn(args.steps, args.warmup, 8))
    prof = profile(args.profile_steps, args.warmup, args.top)
    for label, v in prof["breakdown"].items():
        print(f"  {v['fraction'] * 100:5.1f}%  {label}")
    result = {
        "env": ENV,
        "device": "cpu",
        "torch_threads": torch.get_num_threads(),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "note": "shared machine (other processes running): wall-clock rates vary; CPU-second rates are the "
        "comparable numbers",
        "sb3_dqn_num_envs_1": dqn1,
        "sb3_dqn_num_envs_8": dqn8,
        "bongdqn_num_envs_1": b1,
        "bongdqn_num_envs_8": b8,
        "ratio_bongdqn_over_sb3_dqn": {
            "num_envs_1": b1["steps_per_cpu_s"] / dqn1["steps_per_cpu_s"],
            "num_envs_8": b8["steps_per_cpu_s"] / dqn8["steps_per_cpu_s"],
            "basis": "env steps per CPU second at equal env counts (BongDQN num_envs = SB3 DQN n_envs), same "
            "process, 1 torch thread; both presets unchanged (train_freq / replay_every count vector steps)",
        },
        "bongdqn_profile": prof,
        "bench_wall_s": time.perf_counter() - t0,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    r = result["ratio_bongdqn_over_sb3_dqn"]
    print(
        f"ratio bongdqn/sb3-dqn at equal env counts: {r['num_envs_1']:.3f} (1 env each), "
        f"{r['num_envs_8']:.3f} (8 envs each); "
        f"wrote {args.out}"
    )


if __name__ == "__main__":
    main()
