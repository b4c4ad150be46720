"""Checkpoints: one safetensors file holding every tensor, with the JSON metadata in its header. No pickle.

Writes are atomic (temporary file in the same folder, fsync, ``os.replace``: :func:`bongrl.runs.atomic_write`), so a
crash never leaves a half-written checkpoint under the final name; the file gets the umask's mode, as ``open()``
would give it. Loading parses only the safetensors format: a pickle payload, a tampered or a
truncated file is refused with :class:`CheckpointError` and nothing in it is executed. The header also carries a
SHA-256 digest of every tensor's name, dtype, shape and bytes, so flipped or replaced tensor bytes are detected
too (an integrity check against corruption and accidental edits, not a signature: whoever can write the file can
recompute it; the security guarantee is that loading never executes code).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as st_save
from torch import Tensor

from bongrl.runs import atomic_write

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "read_meta", "FORMAT"]

FORMAT = "bongrl-checkpoint-v1"


class CheckpointError(ValueError):
    """The file is not a readable bongrl checkpoint."""


def save_checkpoint(path: str | os.PathLike, tensors: dict[str, Tensor], meta: dict[str, Any]) -> Path:
    """Atomically write ``tensors`` and JSON-serialisable ``meta`` to ``path`` (a ``.safetensors`` file)."""
    clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    header = {"format": FORMAT, "meta": json.dumps(meta, sort_keys=True), "sha256": _digest(clean)}
    return atomic_write(path, st_save(clean, metadata=header), fsync=True)


def _digest(tensors: dict[str, Tensor]) -> str:
    """SHA-256 over the tensors in name order: name, dtype, shape and raw bytes of each."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[dict[str, Tensor], dict]:
    """Read a checkpoint written by :func:`save_checkpoint`: (tensors, meta).

    Raises:
        CheckpointError: missing file, not safetensors (e.g. a pickle), truncated/tampered, or not ours.
    """
    header, tensors = _open(Path(path), device, tensors=True)
    meta = _meta(Path(path), header)
    digest = header.get("sha256")
    if digest is not None and digest != _digest(tensors):
        raise CheckpointError(f"{str(path)!r} failed its SHA-256 check: the tensor data was modified or corrupted")
    return tensors, meta


def read_meta(path: str | os.PathLike) -> dict:
    """A checkpoint's JSON metadata from its header alone (no tensor is read): a cheap check that ``path`` is a
    bongrl checkpoint before anything is written next to it. :class:`CheckpointError` otherwise."""
    header, _ = _open(Path(path), "cpu", tensors=False)
    return _meta(Path(path), header)


def _open(path: Path, device: str | torch.device, tensors: bool) -> tuple[dict[str, str], dict[str, Tensor]]:
    """The safetensors header of ``path`` and (``tensors``) every tensor, on ``device``."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as fh:
            header = fh.metadata() or {}
            out = {k: fh.get_tensor(k).clone() for k in fh.keys()} if tensors else {}
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{str(path)!r} is not a valid bongrl checkpoint (safetensors): {exc}") from exc
    return header, out


def _meta(path: Path, header: dict[str, str]) -> dict:
    """The metadata dict in a bongrl checkpoint's header (CheckpointError when the header is not ours)."""
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is a safetensors file but not a {FORMAT} checkpoint")
    try:
        meta = json.loads(header["meta"])
    except (KeyError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{str(path)!r} has a corrupt metadata header: {exc}") from exc
    if not isinstance(meta, dict):
        raise CheckpointError(f"{str(path)!r} has a corrupt metadata header: not a JSON object")
    return meta
