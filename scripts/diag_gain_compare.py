"""The two mean updates of the ``diag`` family, side by side (BONG-LIN, float32, CPU).

* ``ng``: μ' = μ + Hᵀ R⁻¹ (y − ŷ) / λ' (natural gradient with the projected diagonal precision);
* ``gain``: μ' = μ + K (y − ŷ), K = Σ⁻Hᵀ(R + HΣ⁻Hᵀ)⁻¹ (VD-EKF; the authors' ``update_ldg_bong``).

Parts (each run separately, results merged into ``results/diag_gain_compare.json`` and rendered to ``.md``):

* ``bandit``: ``bong-diag`` of ``scripts/bandit_benchmark.py`` (MLP [50], its tuned σ/σ₀ per env family) on the
  wheel (δ = 0.95) and digits, plus digits with bong-dlr's σ = 0.03 / σ₀ = 0.3 (which the ng form cannot run:
  see ``BONG_HYPERPARAMETERS``). Final cumulative regret and rejected (non-finite) updates per seed.
* ``cartpole``: ``BongDQN`` on CartPole-v1 with the CartPole preset's hyperparameters and ``posterior="diag"``,
  greedy evaluations (``ProtocolEval``, the ``bongrl train`` protocol) every ``--eval-every`` steps; records the
  step reached (a non-finite update stops the run, as in ``bongrl train``) and the evaluations.
* ``trace``: the first CartPole failure of the ng form, step by step: whitened residual e before the update and
  its linearised value e − Aᵀ(μ' − μ) after it, max |μ|, min/max λ.

The agent configs have no ``mean_update`` field yet; unless they do, the family object of the built agent is
replaced by ``DiagonalPrecision(mean_update=...)`` before its first step (the state layout is the same).

Usage: python scripts/diag_gain_compare.py --part cartpole --seeds 0 1 2 --steps 20000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bongrl import registry

RESULTS = Path(__file__).resolve().parent.parent / "results"
FORMS = ("ng", "gain")


def _set_mean_update(agent: Any, mean_update: str) -> None:
    """Give ``agent`` (ThompsonBandit / BongDQN, or a RewardScaled wrapper) a diag family with ``mean_update``."""
    agent = getattr(agent, "agent", agent)
    fam = registry.create_posterior("diag", mean_update=mean_update)
    fam.check_method(agent.est.method)
    agent.est.family = fam


def _config_has_field(cls: type, name: str) -> bool:
    return any(f.name == name for f in dataclasses.fields(cls))


# ---------------------------------------------------------------------------------------------- bandit
def _bandit_benchmark() -> Any:
    """scripts/bandit_benchmark.py as a module (scripts/ is not a package)."""
    import importlib.util
    import sys

    name = "bandit_benchmark_script"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parent / "bandit_benchmark.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod  # its dataclasses look their module up while the class is built
        spec.loader.exec_module(mod)
    return sys.modules[name]


def run_bandit(seeds: list[int], rounds: int) -> list[dict[str, Any]]:
    from bongrl.agents.thompson_bandit import ThompsonBanditConfig

    bb = _bandit_benchmark()

    native = _config_has_field(ThompsonBanditConfig, "mean_update")
    original = bb.make_agent

    def make_agent(agent, n_arms, context_dim, seed, family, overrides=None):
        overrides = dict(overrides or {})
        mean_update = overrides.pop("mean_update", "ng")
        if native:
            overrides["mean_update"] = mean_update
        ag = original(agent, n_arms, context_dim, seed, family, overrides)
        if not native:
            _set_mean_update(ag, mean_update)
        return ag

    bb.make_agent = make_agent
    cases = [
        ("wheel-0.95", bb.parse_envs(["wheel:0.95"])[0], {}),
        ("digits", bb.parse_envs(["digits"])[0], {}),
        ("digits σ=0.03 σ₀=0.3", bb.parse_envs(["digits"])[0], {"obs_std": 0.03, "prior_std": 0.3}),
    ]
    out = []
    try:
        for label, spec, extra in cases:
            for form in FORMS:
                for seed in seeds:
                    res = bb.run_one(spec, "bong-diag", seed, rounds, record_every=rounds,
                                     overrides={**extra, "mean_update": form})
                    row = {"case": label, "form": form, "seed": seed, "rounds": rounds,
                           "regret": res["final_regret"], "failed_updates": res["failed_updates"],
                           "update_ms": res["update_ms"]}
                    print(f"bandit {label:<22} {form:<4} seed {seed}: regret {row['regret']:8.1f}  "
                          f"failed {row['failed_updates']:4d}  ({res['wall_s']:.1f} s)", flush=True)
                    out.append(row)
    finally:
        bb.make_agent = original
    return out


# ---------------------------------------------------------------------------------------------- cartpole
def _cartpole_agent(seed: int, form: str):
    from bongrl import presets
    from bongrl.agents.bong_dqn import BongDQN, BongDQNConfig

    hyper = dict(presets.get("CartPole-v1")["hyperparameters"])
    native = _config_has_field(BongDQNConfig, "mean_update")
    if native:
        hyper["mean_update"] = form
    agent = BongDQN("CartPole-v1", posterior="diag", seed=seed, device="cpu", **hyper)
    if not native:
        _set_mean_update(agent, form)
    return agent


def run_cartpole(seeds: list[int], steps: int, eval_every: int, eval_episodes: int) -> list[dict[str, Any]]:
    from bongrl.envs.wrappers import ProtocolEval, eval_seed

    out = []
    for form in FORMS:
        for seed in seeds:
            torch.set_num_threads(1)
            agent = _cartpole_agent(seed, form)
            first_bad: list[int] = []
            fam, inner = agent.est.family, agent.est.family.update

            def update(state, A, g, _inner=inner, _agent=agent, _bad=first_bad):
                try:
                    return _inner(state, A, g)
                except ValueError:
                    if not _bad:
                        _bad.append(int(_agent.num_timesteps))
                    raise

            fam.update = update
            proto = ProtocolEval("CartPole-v1", eval_episodes, eval_seed(seed))
            evals: list[list[float]] = []
            returns: list[float] = []
            nxt = [eval_every]

            def callback(a, ev, returns=returns, nxt=nxt, evals=evals, proto=proto):
                returns.append(float(ev["return"]))
                if ev["step"] >= nxt[0]:
                    evals.append([a.num_timesteps, float(proto(a)["mean"])])
                    nxt[0] += eval_every
                return True

            t0 = time.perf_counter()
            error = None
            try:
                agent.learn(steps, callback=callback, progress_bar=False)
            except (ValueError, RuntimeError) as exc:
                error = " ".join(str(exc).split())[:160]
            if error is None and (not evals or evals[-1][0] < agent.num_timesteps):
                evals.append([agent.num_timesteps, float(proto(agent)["mean"])])
            proto.close()
            row = {"form": form, "seed": seed, "steps": steps, "reached": int(agent.num_timesteps),
                   "error": error, "rejected_updates": int(getattr(agent, "rejected_updates", 0)),
                   "first_failed_update_step": first_bad[0] if first_bad else None, "evals": evals,
                   "episodes": len(returns),
                   "last10_train_return": float(np.mean(returns[-10:])) if returns else float("nan"),
                   "max_abs_mean": float(agent.est.mean.abs().max()),
                   "min_prec": float(agent.est.state["prec"].min()),
                   "wall_s": time.perf_counter() - t0}
            print(f"cartpole {form:<4} seed {seed}: reached {row['reached']:6d}  rejected {row['rejected_updates']} "
                  f"(first at {row['first_failed_update_step']})  evals "
                  f"{[round(e[1]) for e in evals]}  {error or ''} ({row['wall_s']:.0f} s)", flush=True)
            out.append(row)
    return out


# ---------------------------------------------------------------------------------------------- trace
class _StopTrace(Exception):
    """Ends the traced run at its first failed update (whether or not the agent would reject it and go on)."""


def run_trace(seed: int, steps: int, form: str = "ng", keep: int = 14) -> dict[str, Any]:
    agent = _cartpole_agent(seed, form)
    fam = agent.est.family
    inner = fam.update
    log: list[dict[str, float]] = []

    def update(state, A, g):
        a, lam = A.double(), state["prec"].double()
        e = torch.linalg.lstsq(a, g.double().unsqueeze(1)).solution.squeeze(1) if torch.isfinite(g).all() else None
        try:
            new = inner(state, A, g)
        except ValueError as exc:
            raise _StopTrace(f"update at step {agent.num_timesteps} failed: {exc}") from exc
        d = (new["mean"] - state["mean"]).double()
        rec = {"step": agent.num_timesteps, "K": int(A.shape[1]), "max_abs_mean": float(state["mean"].abs().max()),
               "min_prec": float(lam.min()), "max_prec": float(lam.max()), "max_abs_delta": float(d.abs().max())}
        if e is not None:
            rec["e"] = float(e.norm())
            rec["e_post_linearised"] = float((e - a.T @ d).norm())
            rec["HSH_over_R"] = float((a.T @ (a / lam.unsqueeze(1))).diagonal().max())
        log.append(rec)
        return new

    fam.update = update
    error = None
    try:
        agent.learn(steps, progress_bar=False)
    except (_StopTrace, ValueError, RuntimeError) as exc:
        error = " ".join(str(exc).split())[:160]
    ratios = [r["e_post_linearised"] / r["e"] for r in log if "e" in r and r["e"] > 0]
    return {"form": form, "seed": seed, "reached": int(agent.num_timesteps), "error": error, "updates": len(log),
            "updates_growing_linearised_residual": int(sum(x > 1.0 for x in ratios)),
            "median_residual_ratio": float(np.median(ratios)) if ratios else None,
            "max_residual_ratio": float(max(ratios)) if ratios else None, "last": log[-keep:]}


# ---------------------------------------------------------------------------------------------- output
def _fmt(x: float) -> str:
    return f"{x:.3g}" if isinstance(x, float) and math.isfinite(x) else str(x)


def write_md(data: dict[str, Any], path: Path) -> None:
    lines = ["# diag family: natural-gradient (ng) vs VD-EKF gain mean update", "",
             "Generated by `scripts/diag_gain_compare.py` (BONG-LIN, float32, CPU).", ""]
    if "bandit" in data:
        lines += ["## Bandit (`bong-diag`, MLP [50])", "", "| case | form | rounds | seeds | regret mean ± sd | "
                  "per-seed regret | rejected updates |", "|---|---|---|---|---|---|---|"]
        rows = data["bandit"]
        for case in dict.fromkeys(r["case"] for r in rows):
            for form in FORMS:
                rs = [r for r in rows if r["case"] == case and r["form"] == form]
                if not rs:
                    continue
                reg = np.array([r["regret"] for r in rs])
                sd = reg.std(ddof=1) if len(reg) > 1 else 0.0
                lines.append(f"| {case} | {form} | {rs[0]['rounds']} | {len(rs)} | {reg.mean():.1f} ± {sd:.1f} | "
                             f"{', '.join(f'{x:.0f}' for x in reg)} | {sum(r['failed_updates'] for r in rs)} |")
        lines.append("")
    if "cartpole" in data:
        lines += ["## CartPole-v1 (`BongDQN`, CartPole preset, posterior diag)", "",
                  "A non-finite update either stops the run (error) or, with a BongDQN that rejects it and keeps the "
                  "last good posterior, is counted as rejected.", "",
                  "| form | seed | steps reached / asked | first failed update (step) | rejected updates | "
                  "greedy evals (step: mean of 10) | max abs mean | error |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in data["cartpole"]:
            ev = ", ".join(f"{int(s)}: {m:.0f}" for s, m in r["evals"])
            lines.append(f"| {r['form']} | {r['seed']} | {r['reached']} / {r['steps']} | "
                         f"{r.get('first_failed_update_step') or '—'} | {r.get('rejected_updates', 0)} | {ev} | "
                         f"{_fmt(r['max_abs_mean'])} | {r['error'] or ''} |")
        lines.append("")
    if "trace" in data:
        t = data["trace"]
        lines += [f"## Trace: ng form, CartPole seed {t['seed']}", "",
                  f"Stopped at step {t['reached']} ({t['error']}). Of {t['updates']} updates, "
                  f"{t['updates_growing_linearised_residual']} *grew* the linearised whitened residual "
                  f"(median ratio {_fmt(t['median_residual_ratio'])}, max {_fmt(t['max_residual_ratio'])}); "
                  "the gain form divides it by 1 + HΣHᵀ/R, so never grows it.", "",
                  "| step | K | ‖e‖ | ‖e − Aᵀδ‖ | HΣHᵀ/R | max abs μ | max abs δ | min λ | max λ |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in t["last"]:
            lines.append(f"| {r['step']} | {r['K']} | {_fmt(r.get('e', float('nan')))} | "
                         f"{_fmt(r.get('e_post_linearised', float('nan')))} | "
                         f"{_fmt(r.get('HSH_over_R', float('nan')))} | "
                         f"{_fmt(r['max_abs_mean'])} | {_fmt(r['max_abs_delta'])} | {_fmt(r['min_prec'])} | "
                         f"{_fmt(r['max_prec'])} |")
        lines.append("")
    if "provenance" in data:
        lines += ["## Provenance", "", "| part | commit | tree dirty | time | file sha256 (16) |",
                  "|---|---|---|---|---|"]
        for part, pv in data["provenance"].items():
            sh = ", ".join(f"{Path(k).name} {v}" for k, v in pv["sha256"].items())
            lines.append(f"| {part} | {pv['commit'][:10]} | {pv['dirty']} | {pv['time']} | {sh} |")
        lines.append("")
    path.write_text("\n".join(lines))


def _provenance() -> dict[str, Any]:
    """Commit, whether the tree was dirty, and hashes of the files the numbers depend on (the agents change)."""
    import hashlib
    import subprocess

    root = RESULTS.parent

    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", *a], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return "unknown"

    files = ["bongrl/posteriors/diag.py", "bongrl/bong.py", "bongrl/agents/bong_dqn.py",
             "bongrl/agents/thompson_bandit.py", "bongrl/agents/bandit_loop.py", "scripts/bandit_benchmark.py"]
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--", *files)),
            "sha256": {f: hashlib.sha256((root / f).read_bytes()).hexdigest()[:16]
                       for f in files if (root / f).exists()},
            "torch": torch.__version__, "time": time.strftime("%Y-%m-%d %H:%M:%S")}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", choices=("bandit", "cartpole", "trace"), required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rounds", type=int, default=1000, help="bandit rounds")
    p.add_argument("--steps", type=int, default=20_000, help="CartPole env steps (trace: max steps)")
    p.add_argument("--eval-every", type=int, default=5_000)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--out", type=Path, default=RESULTS / "diag_gain_compare.json")
    args = p.parse_args(argv)
    data = json.loads(args.out.read_text()) if args.out.exists() else {}
    if args.part == "bandit":
        new = run_bandit(args.seeds, args.rounds)
        data["bandit"] = [r for r in data.get("bandit", []) if (r["case"], r["form"], r["seed"], r["rounds"])
                          not in {(n["case"], n["form"], n["seed"], n["rounds"]) for n in new}] + new
    elif args.part == "cartpole":
        new = run_cartpole(args.seeds, args.steps, args.eval_every, args.eval_episodes)
        data["cartpole"] = [r for r in data.get("cartpole", []) if (r["form"], r["seed"], r["steps"])
                            not in {(n["form"], n["seed"], n["steps"]) for n in new}] + new
        data["cartpole"].sort(key=lambda r: (FORMS.index(r["form"]), r["seed"], r["steps"]))
    else:
        data["trace"] = run_trace(args.seeds[0], args.steps)
    data.setdefault("provenance", {})[args.part] = _provenance()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1))
    write_md(data, args.out.with_suffix(".md"))
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
