"""The bandit benchmark script: a tiny run writes csv/md/png with the right columns and is reproducible."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from _helpers import read_csv_rows

ROOT = Path(__file__).resolve().parents[1]


def _load_script():
    """scripts/bandit_benchmark.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(
        "bandit_benchmark_script", ROOT / "scripts" / "bandit_benchmark.py"
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


bb = _load_script()


def _script_main():
    return bb.main


def _run(out: Path) -> dict[str, Path]:
    return _script_main()(
        [
            "--envs",
            "wheel:0.95",
            "bernoulli",
            "--agents",
            "uniform",
            "bong-conj",
            "bong-dlr",
            "--rounds",
            "30",
            "--seeds",
            "2",
            "--out",
            str(out),
            "--cache",
            "none",
            "--quiet",
        ]
    )


def test_tiny_run_outputs_and_reproducible(tmp_path):
    paths = _run(tmp_path / "a")
    for key in ("csv", "md", "png"):
        assert paths[key].exists() and paths[key].stat().st_size > 0
    rows = read_csv_rows(paths["csv"])
    assert list(rows[0]) == ["env", "agent", "seed", "round", "cumulative_regret"]
    # 2 agents per env (bong-conj only on bernoulli, bong-dlr only on wheel), 2 seeds, rounds 10, 20, 30
    runs = {(r["env"], r["agent"], r["seed"]) for r in rows}
    assert runs == {
        (e, a, s)
        for e, a in [
            ("wheel-0.95", "uniform"),
            ("wheel-0.95", "bong-dlr"),
            ("bernoulli", "uniform"),
            ("bernoulli", "bong-conj"),
        ]
        for s in ("0", "1")
    }
    assert sorted({int(r["round"]) for r in rows}) == [10, 20, 30]
    for r in rows:
        assert float(r["cumulative_regret"]) >= 0
    md = paths["md"].read_text()
    assert "wheel-0.95" in md and "bernoulli" in md and "update ms" in md and "% of uniform" in md
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # same seeds -> identical regret curves
    again = read_csv_rows(_run(tmp_path / "b")["csv"])
    assert again == rows


def test_resume_from_cache(tmp_path):
    spec = bb.parse_envs(["bernoulli"])
    first = bb.run_benchmark(spec, ["uniform"], [0], 20, cache_dir=tmp_path, log=None)
    assert len(list(tmp_path.glob("*.json"))) == 1
    msgs = []
    second = bb.run_benchmark(spec, ["uniform"], [0], 20, cache_dir=tmp_path, log=msgs.append)
    assert second == first and any("resuming" in m for m in msgs)


def test_parse_envs():
    names = [s.name for s in bb.parse_envs(["wheel:0.5,0.95", "digits", "wine", "bernoulli"])]
    assert names == ["wheel-0.5", "wheel-0.95", "digits", "wine", "bernoulli"]
    with pytest.raises(ValueError):
        bb.parse_envs(["covtype"])
    with pytest.raises(ValueError):
        bb.parse_envs(["wheel:1.5"])


def test_run_one_curve_and_final_regret():
    spec = bb.parse_envs(["wheel:0.95"])[0]
    res = bb.run_one(spec, "bong-dlr", 0, 25, record_every=10)
    assert res["agent"] == "bong-dlr" and res["rounds"] == 25 and res["failed_updates"] == 0
    assert [c[0] for c in res["curve"]] == [10, 20, 25]
    assert res["final_regret"] == res["curve"][-1][1]
    regrets = [c[1] for c in res["curve"]]
    assert regrets == sorted(regrets) and regrets[-1] > 0


def test_default_cache_dir_is_used(tmp_path):
    _script_main()(
        [
            "--envs",
            "bernoulli",
            "--agents",
            "uniform",
            "--rounds",
            "10",
            "--seeds",
            "1",
            "--out",
            str(tmp_path),
            "--quiet",
        ]
    )
    assert len(list((tmp_path / ".bandits_runs").glob("*.json"))) == 1
