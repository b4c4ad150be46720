"""Helpers shared by several test modules (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

import csv
from pathlib import Path

import torch


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    """Every row of a CSV file with a header, as dicts of strings."""
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def clone_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in state.items()}


def assert_state_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """Bit-identical: same keys and torch.equal on every tensor."""
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), f"state entry {k!r} changed"
