"""Shared test setup: one CPU thread (the test machines are shared and the problems are tiny)."""

from __future__ import annotations

import torch

torch.set_num_threads(1)
