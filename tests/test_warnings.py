"""No deprecation warnings from bongrl itself: not at install (pyproject metadata), not when a user runs with
``-W error::DeprecationWarning``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = None

import pytest

ROOT = Path(__file__).resolve().parents[1]

# A network that is not a plain MLP, so apply_linearized takes torch.func.jvp (whose first use in a process makes
# torch load its forward-AD decompositions through the deprecated torch.jit.script).
LINEARIZED_JVP = textwrap.dedent(
    """
    import torch
    from torch import nn
    from bongrl.bong import BONG

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv1d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2))
    est = BONG(net, obs_std=1.0)
    assert est._fast is None or not est._fast.manual, "the network must take the torch.func.jvp path"
    x = torch.randn(3, 1, 6)
    one = est.apply_linearized(torch.randn(est.flat.num_params), x)
    rows = est.apply_linearized(torch.randn(3, est.flat.num_params), x)
    assert one.shape == rows.shape == (3, 2) and torch.isfinite(one).all() and torch.isfinite(rows).all()
    print("ok")
    """
)


def test_apply_linearized_with_jvp_is_clean_under_W_error():
    env = {**os.environ, "PYTHONWARNINGS": ""}
    proc = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", LINEARIZED_JVP],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


@pytest.mark.skipif(tomllib is None, reason="tomllib needs Python 3.11")
def test_pyproject_license_is_an_spdx_string():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert isinstance(meta["project"]["license"], str), "project.license as a table is deprecated (PEP 639)"
    assert meta["project"]["license"] == "MIT"
    requires = meta["build-system"]["requires"]
    assert any(r.replace(" ", "").startswith("setuptools>=") for r in requires)
    floor = next(r for r in requires if r.startswith("setuptools>="))
    major = int(floor.split(">=")[1].split(".")[0])
    assert major >= 77, f"license expressions need setuptools >= 77, build-system requires {floor}"
