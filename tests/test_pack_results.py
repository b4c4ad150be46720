"""scripts/pack_results.py: a per-run tree packed into one gzipped CSV keeps every number, and the summary's
per-agent finals can be recomputed from it."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("pack_results", ROOT / "scripts" / "pack_results.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


pr = _script()

# (agent, seed) -> online evaluations at steps 0, 100, 200; the failed run stops after two
CURVES = {
    ("bongdqn", 0): [10.0, 200.0, 500.0],
    ("bongdqn", 1): [12.0, 150.0, 321.5],
    ("dqn", 0): [9.0, 40.0, 77.25],
    ("dqn", 1): [11.0, 60.0],
}
FAILED = {("dqn", 1)}


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def _compare_tree(root: Path) -> Path:
    """A bongrl-compare-style output folder: per_run/<agent>-s<seed>/{curve.csv,result.json}, a stale
    ``.partial`` folder, and the summary.json compare would have written."""
    header = ["step", "eval_mean", "eval_std", "eval_online_mean", "eval_online_std", "eval_averaged_mean",
              "eval_averaged_std", "wall_s", "env_steps_per_s"]
    for (agent, seed), evals in CURVES.items():
        run = root / "per_run" / f"{agent}-s{seed}"
        run.mkdir(parents=True)
        _write_csv(run / "curve.csv", header,
                   [[100 * i, v, 0.5, v, 0.5, v / 2, 0.25, 1.5 * i, "nan" if i == 0 else 80.0]
                    for i, v in enumerate(evals)])
        status = "failed" if (agent, seed) in FAILED else "complete"
        result = {"task": {"agent": agent, "seed": seed, "env": "CartPole-v1", "steps": 200,
                           "hyperparameters": {"hidden": [8, 8], "lr": 1e-3}},
                  "status": status, "wall_s": 3.5, "episodes_to_solve": None}
        if status == "failed":
            result["error"] = "ValueError: non-finite weights"
        (run / "result.json").write_text(json.dumps(result))
    stale = root / "per_run" / "bongdqn-s2.partial"
    stale.mkdir()
    _write_csv(stale / "curve.csv", header, [[0, 999.0, 0, 999.0, 0, 999.0, 0, 0, 0]])
    agents = {}
    for agent in ("bongdqn", "dqn"):
        finals = [None if (agent, s) in FAILED else CURVES[(agent, s)][-1] for s in (0, 1)]
        kept = [f for f in finals if f is not None]
        agents[agent] = {"seeds": [0, 1], "online": {"final_per_seed": finals, "final_mean": sum(kept) / len(kept)}}
    (root / "summary.json").write_text(json.dumps({"env": "CartPole-v1", "agents": agents}))
    (root / "summary.md").write_text("# summary\n")
    (root / "compare.csv").write_text("agent,seed,status,step,eval_mean\n")  # the packed rows supersede it
    return root


def test_compare_tree_packs_losslessly_and_finals_recompute(tmp_path: Path) -> None:
    tree = _compare_tree(tmp_path / "run")
    dest = tmp_path / "out" / "runs.csv.gz"
    assert pr.detect_layout(tree) == "compare"
    n = pr.pack(tree, dest)
    assert n == sum(len(v) for v in CURVES.values())  # one row per evaluation; the .partial folder is skipped
    rows = pr.read_packed(dest)
    assert {r["run"] for r in rows} == {f"{a}-s{s}" for a, s in CURVES}
    first = next(r for r in rows if r["run"] == "bongdqn-s1" and r["step"] == "200")
    assert first["eval_online_mean"] == "321.5" and first["agent"] == "bongdqn" and first["seed"] == "1"
    assert first["result.task.hyperparameters.hidden"] == "[8, 8]"  # settings ride along, as JSON text
    assert first["result.episodes_to_solve"] == "" and first["result.wall_s"] == "3.5"
    failed = [r for r in rows if r["run"] == "dqn-s1"]
    assert {r["status"] for r in failed} == {"failed"}
    assert failed[0]["result.error"] == "ValueError: non-finite weights"

    # the per-agent final mean, recomputed from the packed CSV alone (a failed run does not count)
    means = pr.final_means(rows)
    assert means["bongdqn"] == pytest.approx((500.0 + 321.5) / 2)
    assert means["dqn"] == pytest.approx(77.25)
    assert pr.final_evals(rows)["dqn"] == {0: 77.25, 1: None}
    assert pr.final_means(rows, "eval_averaged_mean")["bongdqn"] == pytest.approx((250.0 + 160.75) / 2)

    # packing twice gives the same bytes (no time or name in the gzip header)
    again = tmp_path / "again.csv.gz"
    pr.pack(tree, again)
    assert again.read_bytes() == dest.read_bytes()


def test_check_agrees_with_summary_and_catches_a_wrong_number(tmp_path: Path) -> None:
    tree = _compare_tree(tmp_path / "run")
    published = tmp_path / "results" / "exp"
    written = pr.publish(tree, published, command="bongrl compare --env CartPole-v1 --out runs/exp")
    assert {p.name for p in written} == {"summary.md", "summary.json", "runs.csv.gz", "command.txt"}
    assert not (published / "per_run").exists()
    assert pr.check(published) == []
    pr.add_command(published, "bongrl compare --env CartPole-v1 --out runs/exp")  # not repeated
    assert (published / "command.txt").read_text().count("bongrl compare") == 1

    summary = json.loads((published / "summary.json").read_text())
    summary["agents"]["bongdqn"]["online"]["final_mean"] = 999.0
    (published / "summary.json").write_text(json.dumps(summary))
    problems = pr.check(published)
    assert len(problems) == 1 and "bongdqn final mean" in problems[0]
    assert pr.main(["check", str(published)]) == 1


def test_older_summary_format_and_flat_run_folders(tmp_path: Path) -> None:
    """Older compare trees: run folders directly in the experiment folder, only eval_mean, final_eval_* keys."""
    root = tmp_path / "old"
    for seed, evals in enumerate([[1.0, 5.0], [2.0, 7.0]]):
        run = root / f"bongdqn-s{seed}"
        run.mkdir(parents=True)
        _write_csv(run / "curve.csv", ["step", "eval_mean"], [[10 * i, v] for i, v in enumerate(evals)])
        (run / "result.json").write_text(json.dumps({"task": {"agent": "bongdqn", "seed": seed}}))
    (root / "summary.json").write_text(json.dumps(
        {"agents": {"bongdqn": {"seeds": [0, 1], "final_eval_mean": 6.0, "final_eval_per_seed": [5.0, 7.0]}}}))
    pr.pack(root, root / "runs.csv.gz")
    assert pr.check(root) == []
    assert {r["status"] for r in pr.read_packed(root / "runs.csv.gz")} == {"complete"}


def test_train_and_tables_layouts(tmp_path: Path) -> None:
    runs = tmp_path / "families"
    for name, finished in (("diag-s100", True), ("kfac-s100", False)):
        run = runs / name
        run.mkdir(parents=True)
        _write_csv(run / "metrics.csv", ["kind", "step", "return", "eval_mean"],
                   [["episode", 20, 20, ""], ["eval", 50, "", 42.5], ["episode", 60, 40, ""]])
        (run / "config.json").write_text(json.dumps({"agent": "bongdqn", "seed": 100, "env": "CartPole-v1",
                                                     "posterior": name.split("-")[0]}))
        if finished:
            (run / "eval.json").write_text(json.dumps({"mean": 42.5, "returns": [40.0, 45.0]}))
        (runs / f"{name}.log").write_text("done\n")
    assert pr.detect_layout(runs) == "train"
    pr.pack(runs, tmp_path / "train.csv.gz")
    rows = pr.read_packed(tmp_path / "train.csv.gz")
    assert len(rows) == 6
    diag = [r for r in rows if r["run"] == "diag-s100"]
    assert diag[0]["status"] == "complete" and diag[0]["eval.returns"] == "[40.0, 45.0]"
    assert diag[0]["config.posterior"] == "diag" and diag[0]["log"] == "done"
    assert {r["status"] for r in rows if r["run"] == "kfac-s100"} == {"incomplete"}
    summaries = pr.run_summaries(rows)["runs"]
    assert summaries["diag-s100"]["final"] == {"step": 50, "eval_mean": 42.5}

    tables = tmp_path / "attribution"
    tables.mkdir()
    _write_csv(tables / "rto.csv", ["seed", "episodes_to_solve"], [[100, 52], [101, 38]])
    _write_csv(tables / "rto0.csv", ["seed", "episodes_to_solve"], [[100, 300]])
    assert pr.detect_layout(tables) == "tables"
    pr.pack(tables, tmp_path / "tables.csv.gz")
    rows = pr.read_packed(tmp_path / "tables.csv.gz")
    assert [(r["table"], r["episodes_to_solve"]) for r in rows] == [("rto", "52"), ("rto", "38"), ("rto0", "300")]
    assert pr.run_summaries(rows)["tables"]["rto0"] == [{"seed": 100, "episodes_to_solve": 300}]

    with pytest.raises(ValueError, match="no per-run tree"):
        pr.detect_layout(tmp_path / "missing")


def test_shrink_png_keeps_the_picture_and_saves_bytes(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    fig, ax = plt.subplots(figsize=(4, 3))
    for k in range(4):
        ax.plot(range(50), [((i * (k + 1)) % 17) for i in range(50)])
        ax.fill_between(range(50), [k] * 50, [k + 3] * 50, alpha=0.2)
    src = tmp_path / "fig.png"
    fig.savefig(src, dpi=100)
    plt.close(fig)
    before = src.stat().st_size
    dest = tmp_path / "small" / "fig.png"
    after = pr.shrink_png(src, dest)
    assert after == dest.stat().st_size and after < before
    with Image.open(src) as a, Image.open(dest) as b:
        assert a.size == b.size
        diff = np.abs(np.asarray(a.convert("RGB"), dtype=int) - np.asarray(b.convert("RGB"), dtype=int))
    assert diff.mean() < 2.0  # 64 colours, no dithering: the same picture (channel values 0-255)
    assert (diff.max(axis=2) > 64).mean() < 0.01  # only a few blended band pixels move further
