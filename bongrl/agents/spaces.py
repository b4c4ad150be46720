"""Observation encoders: any gymnasium observation space → the float tensor a Q-network takes.

The encodings follow stable-baselines3's ``preprocess_obs`` (``stable_baselines3.common.preprocessing``):

* ``Box`` vectors (and non-image Box arrays): unchanged, as floats (BongDQN's ``obs_normalize`` acts on a
  top-level Box only, not on images or on Box entries of a Dict/Tuple).
* ``Box`` images (SB3's :func:`~stable_baselines3.common.preprocessing.is_image_space`: 3-D, uint8, bounds
  [0, 255]; channels first or last, the smallest dimension being the channels): transposed to channels-first
  (C, H, W) and scaled by 1/255. Binary frames — a 3-D ``bool`` Box, as MinAtar's gymnasium envs emit — are
  images too (an extension of SB3's test, which would flatten them), with scale 1.
* ``Discrete(n, start)``: one-hot of ``x − start`` (n floats; SB3 ignores ``start``, gymnasium's
  ``spaces.flatten`` does not).
* ``MultiDiscrete``: the one-hots of every entry (C order), concatenated.
* ``MultiBinary``: the bits as floats, flattened.
* ``Dict`` / ``Tuple``: every sub-space encoded as above and flattened (images too: scaled, channels-first,
  flattened — no CNN inside a Dict), concatenated in the space's key order (gymnasium sorts the keys of a plain
  dict) or tuple order. Nested Dict/Tuple spaces are encoded recursively.

Every entry point validates first and raises a one-line ``ValueError`` naming the observation (and the Dict key or
Tuple index) for a wrong shape, a value outside the space, NaN/Inf or a non-numeric dtype.

A batch is recognised by shape: a leaf observation of the space's shape is one observation, one with an extra
leading dimension is a batch (B, ...). A Dict/Tuple observation is a mapping/tuple whose leaves are all single or
all batched (what a gymnasium vector env returns); a ``list`` (or object array) of Dict/Tuple observations is a
batch as well.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first
from torch import Tensor

from bongrl.envs.recorder import EpisodeRecorder

__all__ = ["ObsEncoder", "EncodedObservations", "SUPPORTED_SPACES", "as_real_array"]

SUPPORTED_SPACES = "Box, Discrete, MultiDiscrete, MultiBinary, and Dict/Tuple of these"


def as_real_array(obs: Any, name: str) -> np.ndarray:
    """``np.asarray`` of one leaf observation (a torch tensor goes through the CPU), real-valued only."""
    if torch.is_tensor(obs):
        obs = obs.detach().cpu().numpy()
    try:
        arr = np.asarray(obs)
    except (TypeError, ValueError) as exc:  # e.g. ragged nested lists
        raise ValueError(f"{name} must be a numeric array: {' '.join(str(exc).split())[:120]}") from None
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating) or arr.dtype == np.bool_):
        raise ValueError(f"{name} must be real-valued (int, float or bool), got dtype {arr.dtype}")
    return arr


def _batched(arr: np.ndarray, shape: tuple[int, ...], name: str) -> tuple[np.ndarray, bool]:
    """(batch (B, *shape), whether ``arr`` was one observation), or a one-line ValueError."""
    if arr.shape == shape:
        return arr[None], True
    if arr.ndim == len(shape) + 1 and arr.shape[1:] == shape:
        if arr.shape[0] == 0:
            raise ValueError(f"{name} is an empty batch")
        return arr, False
    raise ValueError(f"{name} must have shape {shape} or (B, *{shape}), got {arr.shape}")


def _integers(arr: np.ndarray, name: str) -> np.ndarray:
    """``arr`` as int64, refusing non-integral or non-finite values."""
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or Inf")
        if not (arr == np.round(arr)).all():
            raise ValueError(f"{name} must hold integers, got non-integral values")
    return arr.astype(np.int64)


class ObsEncoder:
    """Validates and encodes observations of one gymnasium space (see the module docstring for the encodings).

    Attributes:
        space: the observation space.
        kind: "box", "image", "discrete", "multidiscrete", "multibinary", "dict" or "tuple".
        shape: the encoded shape of one observation — the Box's own shape, (C, H, W) for images, (D,) otherwise.
        raw_shape: the shape of one raw observation (``None`` for Dict/Tuple).
        is_image: an image Box (a CNN body; stored raw as uint8 in replay).
        pixel_max: an image's largest value (255; 1 for binary frames): the encoding divides by it.
        channels_last: an image given as (H, W, C) (transposed by the encoding).
        structured: a Dict or Tuple space.
    """

    def __init__(self, space: gym.Space) -> None:
        self.space = space
        self.is_image = False
        self.channels_last = False
        self.pixel_max = 255
        self.children: list[tuple[str, ObsEncoder]] = []
        if isinstance(space, spaces.Box):
            self.raw_shape: tuple[int, ...] | None = tuple(space.shape)
            binary = len(space.shape) == 3 and space.dtype == np.bool_
            if is_image_space(space) or binary:
                self.kind, self.is_image, self.pixel_max = "image", True, 1 if binary else 255
                self.channels_last = not is_image_space_channels_first(space)
                h, w, c = space.shape if self.channels_last else (*space.shape[1:], space.shape[0])
                self.shape: tuple[int, ...] = (int(c), int(h), int(w))
            else:
                self.kind, self.shape = "box", tuple(space.shape)
        elif isinstance(space, spaces.Discrete):
            self.kind, self.raw_shape, self.shape = "discrete", (), (int(space.n),)
        elif isinstance(space, spaces.MultiDiscrete):
            self.kind, self.raw_shape = "multidiscrete", tuple(space.shape)
            self._nvec = np.asarray(space.nvec, dtype=np.int64).reshape(-1)
            self._start = np.broadcast_to(np.asarray(space.start, dtype=np.int64), space.shape).reshape(-1)
            self._offsets = np.concatenate([[0], np.cumsum(self._nvec)[:-1]]).astype(np.int64)
            self.shape = (int(self._nvec.sum()),)
        elif isinstance(space, spaces.MultiBinary):
            self.kind, self.raw_shape = "multibinary", tuple(space.shape)
            self.shape = (int(np.prod(space.shape)),)
        elif isinstance(space, (spaces.Dict, spaces.Tuple)):
            self.kind, self.raw_shape = ("dict", None) if isinstance(space, spaces.Dict) else ("tuple", None)
            items = space.spaces.items() if isinstance(space, spaces.Dict) else enumerate(space.spaces)
            self.children = [(k, ObsEncoder(s)) for k, s in items]  # type: ignore[misc]
            if not self.children:
                raise ValueError(f"the observation space {space} has no sub-spaces")
            self.shape = (int(sum(c.flat_dim for _, c in self.children)),)
        else:
            raise ValueError(f"unsupported observation space {space}; supported: {SUPPORTED_SPACES}")
        if self.kind in ("discrete", "multidiscrete", "multibinary") and self.flat_dim == 0:
            raise ValueError(f"the observation space {space} is empty")

    # ------------------------------------------------------------------ properties
    @property
    def structured(self) -> bool:
        """A Dict or Tuple space (encoded to one flat vector)."""
        return self.kind in ("dict", "tuple")

    @property
    def flat_dim(self) -> int:
        """Number of floats in one encoded observation."""
        return int(np.prod(self.shape))

    def is_structured_value(self, obs: Any) -> bool:
        """Whether ``obs`` is a raw Dict/Tuple observation (or a list of them) rather than an encoded array."""
        if not self.structured:
            return False
        if isinstance(obs, (Mapping, tuple)):
            return True
        if isinstance(obs, list) or (isinstance(obs, np.ndarray) and obs.dtype == object):
            return len(obs) > 0 and all(isinstance(o, (Mapping, tuple)) for o in obs)
        return False

    def is_single(self, obs: Any) -> bool:
        """Whether ``obs`` is one observation (not a batch): a raw one of the space, or — for Dict/Tuple — also
        the flat encoding of one. Validates a Dict/Tuple value (the same errors as :meth:`encode`)."""
        if self.is_structured_value(obs):
            return self._encode_structured(obs, "observation")[1]
        shape = self.shape if self.structured else self.raw_shape
        return np.shape(obs.detach().cpu() if torch.is_tensor(obs) else obs) == shape

    # ------------------------------------------------------------------ public API
    def encode(
        self, obs: Any, device: str | torch.device | None = None, dtype: torch.dtype = torch.float32,
        name: str = "observation",
    ) -> Tensor:
        """The encoded batch (B, *shape) as a float tensor; one observation gives B = 1."""
        arr, _ = self.encode_numpy(obs, name)
        return torch.as_tensor(arr, device=device).to(dtype)

    def network_input(
        self, obs: Any, device: str | torch.device | None = None, dtype: torch.dtype = torch.float32,
        name: str = "observation",
    ) -> Tensor:
        """What the Q-network built by :func:`bongrl.agents.networks.build_q_network` takes: for images the
        validated raw batch as uint8 in the space's own layout (the network transposes and scales it, so replay
        stores 1 byte per pixel); for every other space :meth:`encode`."""
        if not self.is_image:
            return self.encode(obs, device, dtype, name)
        arr, _ = self._leaf_batch(obs, name)
        return torch.as_tensor(np.ascontiguousarray(arr), device=device)

    def encode_numpy(self, obs: Any, name: str = "observation") -> tuple[np.ndarray, bool]:
        """(encoded batch as float32 numpy (B, *shape), whether ``obs`` was one observation)."""
        if self.structured:
            flat, single = self._encode_structured(obs, name)
            return flat, single
        arr, single = self._leaf_batch(obs, name)
        return self._encode_leaf(arr), single

    # ------------------------------------------------------------------ leaves
    def _leaf_batch(self, obs: Any, name: str) -> tuple[np.ndarray, bool]:
        """Validated raw batch (B, *raw_shape) of a leaf space and whether it was one observation."""
        assert self.raw_shape is not None
        arr, single = _batched(as_real_array(obs, name), self.raw_shape, name)
        sp = self.space
        if self.kind == "box":
            if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
                raise ValueError(f"{name} contains NaN or Inf")
        elif self.kind == "image":
            if arr.dtype != np.uint8:
                vals = _integers(arr, name)
                top = self.pixel_max
                if vals.size and (vals.min() < 0 or vals.max() > top):
                    raise ValueError(f"{name} pixel values must lie in [0, {top}], got [{vals.min()}, {vals.max()}]")
                arr = vals.astype(np.uint8)
        elif self.kind == "discrete":
            vals = _integers(arr, name)
            lo, n = int(sp.start), int(sp.n)  # type: ignore[attr-defined]
            if vals.size and (vals.min() < lo or vals.max() >= lo + n):
                raise ValueError(f"{name} values must lie in [{lo}, {lo + n}) for {sp}, got {vals.reshape(-1)[:8]}")
            arr = vals
        elif self.kind == "multidiscrete":
            vals = _integers(arr, name).reshape(arr.shape[0], -1)
            rel = vals - self._start
            bad = ((rel < 0) | (rel >= self._nvec)).any(1)
            if bad.any():
                raise ValueError(f"{name} has entries outside {sp}: {vals[bad][0]}")
            arr = rel
        elif self.kind == "multibinary":
            vals = _integers(arr, name)
            if vals.size and not np.isin(vals, (0, 1)).all():
                raise ValueError(f"{name} must hold only 0s and 1s for {sp}")
            arr = vals
        return arr, single

    def _encode_leaf(self, arr: np.ndarray) -> np.ndarray:
        """Encode a validated leaf batch from :meth:`_leaf_batch` (float32)."""
        B = arr.shape[0]
        if self.kind == "box":
            return arr.astype(np.float32, copy=False)
        if self.kind == "image":
            if self.channels_last:
                arr = arr.transpose(0, 3, 1, 2)
            return arr.astype(np.float32) / np.float32(self.pixel_max)
        if self.kind == "discrete":
            out = np.zeros((B, self.shape[0]), dtype=np.float32)
            out[np.arange(B), arr - int(self.space.start)] = 1.0  # type: ignore[attr-defined]
            return out
        if self.kind == "multidiscrete":
            out = np.zeros((B, self.shape[0]), dtype=np.float32)
            rows = np.repeat(np.arange(B), arr.shape[1])
            out[rows, (arr + self._offsets).reshape(-1)] = 1.0
            return out
        return arr.reshape(B, -1).astype(np.float32)  # multibinary

    # ------------------------------------------------------------------ Dict / Tuple
    def _encode_structured(self, obs: Any, name: str) -> tuple[np.ndarray, bool]:
        """Flat encoding (B, D) of a Dict/Tuple observation, a batched one, or a list of them."""
        seq = isinstance(obs, list) or (isinstance(obs, np.ndarray) and obs.dtype == object)
        if seq:
            if len(obs) == 0:
                raise ValueError(f"{name} is an empty batch")
            rows = []
            for i, o in enumerate(obs):
                enc, single = self._encode_structured(o, f"{name}[{i}]")
                if not single:
                    raise ValueError(f"{name}[{i}] must be one observation in a list of observations")
                rows.append(enc)
            return np.concatenate(rows), False
        if self.kind == "dict":
            if not isinstance(obs, Mapping):
                raise ValueError(f"{name} must be a dict with keys {list(self.space.spaces)}, got {type(obs).__name__}")
            keys = [k for k, _ in self.children]
            missing = [k for k in keys if k not in obs]
            extra = [k for k in obs if k not in keys]
            if missing or extra:
                raise ValueError(f"{name} must have exactly the keys {keys}: missing {missing}, unknown {extra}")
            parts = [(f"{name}[{k!r}]", enc, obs[k]) for k, enc in self.children]
        else:
            if not isinstance(obs, tuple) or len(obs) != len(self.children):
                got = f"a tuple of {len(obs)}" if isinstance(obs, tuple) else type(obs).__name__
                raise ValueError(f"{name} must be a tuple of {len(self.children)} entries, got {got}")
            parts = [(f"{name}[{i}]", enc, o) for (i, enc), o in zip(self.children, obs)]
        encoded = []
        for sub_name, enc, o in parts:
            arr, single = enc.encode_numpy(o, sub_name)
            encoded.append((sub_name, arr.reshape(arr.shape[0], -1), single))
        singles = {s for _, _, s in encoded}
        sizes = {a.shape[0] for _, a, _ in encoded}
        if len(singles) > 1 or len(sizes) > 1:
            desc = ", ".join(f"{n}: {'one' if s else f'batch of {a.shape[0]}'}" for n, a, s in encoded)
            raise ValueError(f"{name}: the entries disagree on the batch size ({desc})")
        return np.concatenate([a for _, a, _ in encoded], axis=1), singles.pop()


class _EncodedRecorder(EpisodeRecorder):
    """An :class:`EpisodeRecorder` view whose ``restore`` returns the encoded observation (exact resume through
    :class:`EncodedObservations`); the record itself is the wrapped recorder's."""

    def __init__(self, recorder: EpisodeRecorder, encoder: ObsEncoder) -> None:
        super().__init__(recorder)
        self._recorder, self._encoder = recorder, encoder

    def snapshot(self) -> dict[str, Any] | None:
        return self._recorder.snapshot()

    def restore(self, snap: dict[str, Any]) -> Any:
        return self._encoder.encode_numpy(self._recorder.restore(snap))[0][0]


class EncodedObservations(gym.vector.VectorWrapper):
    """A vector env whose Dict/Tuple observations (and ``info["final_obs"]``) come out as the flat float32
    encoding of :class:`ObsEncoder`, so an agent loop can treat them as plain (B, D) arrays. Works with
    same-step autoreset (gymnasium's ``VectorObservationWrapper`` refuses it)."""

    def __init__(self, env: gym.vector.VectorEnv, encoder: ObsEncoder) -> None:
        super().__init__(env)
        self.encoder = encoder
        self.single_observation_space = spaces.Box(-np.inf, np.inf, encoder.shape, np.float32)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, env.num_envs)
        inner = getattr(env, "envs", None)
        self._envs = None if inner is None else [
            _EncodedRecorder(e, encoder) if isinstance(e, EpisodeRecorder) else e for e in inner
        ]

    @property
    def envs(self) -> list[Any] | None:
        """The sub-envs (recorders wrapped to restore encoded observations), or None for a non-sync env."""
        return self._envs

    def _encode(self, obs: Any) -> np.ndarray:
        return self.encoder.encode_numpy(obs, "environment observation")[0]

    def reset(self, *, seed: Any = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        obs, info = self.env.reset(seed=seed, options=options)
        return self._encode(obs), info

    def step(self, actions: Any) -> tuple[np.ndarray, Any, Any, Any, dict]:
        obs, rew, term, trunc, info = self.env.step(actions)
        if "final_obs" in info:
            final = np.empty(self.num_envs, dtype=object)
            mask = info.get("_final_obs", np.logical_or(term, trunc))
            for i in np.nonzero(mask)[0]:
                final[i] = self._encode(info["final_obs"][i])[0]
            info = {**info, "final_obs": final}
        return self._encode(obs), rew, term, trunc, info
