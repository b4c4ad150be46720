"""Q-network bodies for every observation space :class:`~bongrl.agents.spaces.ObsEncoder` encodes.

:func:`build_q_network` picks the body as stable-baselines3 does: an MLP (:func:`bongrl.agents.base.mlp`) on the
encoded (flattened) observation, or — for image Boxes (SB3's ``is_image_space``) — a CNN: SB3's ``NatureCNN``
(Mnih et al. 2015) when the image is at least 36×36, else the MinAtar network (Young & Tian 2019) for small
grids such as MinAtar's 10×10. Every network is an ``nn.Sequential`` whose last Linear is named ``head`` (BONG's
``posterior_params="head"`` puts the posterior on ``head.weight``/``head.bias``). Image networks start with
:class:`ImagePreprocess`, so they take the raw uint8 frames (as stored in replay) and encode them on the fly.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from bongrl.agents.base import mlp
from bongrl.agents.spaces import ObsEncoder

__all__ = ["ImagePreprocess", "nature_cnn", "minatar_cnn", "build_q_network", "NATURE_MIN_SIZE"]

NATURE_MIN_SIZE = 36
"""Smallest height/width NatureCNN's 8×8/4, 4×4/2, 3×3/1 convolutions accept (36 → 8 → 3 → 1)."""


class ImagePreprocess(nn.Module):
    """Raw image batch (uint8 0..``pixel_max``, channels first or last) → float (B, C, H, W) in [0, 1], in the
    module's dtype (SB3's ``preprocess_obs`` with ``VecTransposeImage``)."""

    def __init__(self, channels_last: bool, pixel_max: int = 255) -> None:
        super().__init__()
        self.channels_last = channels_last
        # a non-persistent buffer: follows .to(dtype/device), stays out of the state dict
        self.register_buffer("scale", torch.tensor(1.0 / pixel_max), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        x = x.to(self.scale.dtype)
        if self.channels_last:
            x = x.permute(0, 3, 1, 2)
        return x * self.scale

    def extra_repr(self) -> str:
        return f"channels_last={self.channels_last}"


def _conv_out(size: int, kernel: int, stride: int) -> int:
    return (size - kernel) // stride + 1


def nature_cnn(shape: tuple[int, int, int], n_actions: int, features: int = 512) -> list[tuple[str, nn.Module]]:
    """NatureCNN (Mnih et al. 2015, "Human-level control through deep reinforcement learning"; SB3's
    ``NatureCNN``): conv 32 8×8/4, conv 64 4×4/2, conv 64 3×3/1 (ReLU), Linear ``features`` (ReLU), then the
    ``head`` Linear to ``n_actions``. ``shape`` is (C, H, W), H and W ≥ 36. Returns the named layers."""
    c, h, w = shape
    for k, s in ((8, 4), (4, 2), (3, 1)):
        h, w = _conv_out(h, k, s), _conv_out(w, k, s)
    return [
        ("conv0", nn.Conv2d(c, 32, 8, stride=4)), ("act0", nn.ReLU()),
        ("conv1", nn.Conv2d(32, 64, 4, stride=2)), ("act1", nn.ReLU()),
        ("conv2", nn.Conv2d(64, 64, 3, stride=1)), ("act2", nn.ReLU()),
        ("flatten", nn.Flatten()),
        ("fc", nn.Linear(64 * h * w, features)), ("act_fc", nn.ReLU()),
        ("head", nn.Linear(features, n_actions)),
    ]


def minatar_cnn(shape: tuple[int, int, int], n_actions: int, features: int = 128) -> list[tuple[str, nn.Module]]:
    """The MinAtar DQN network (Young & Tian 2019, "MinAtar: An Atari-Inspired Testbed for Thorough and
    Reproducible Reinforcement Learning Experiments"): one conv 16 3×3/1 (ReLU), Linear ``features`` (ReLU),
    then the ``head`` Linear. ``shape`` is (C, H, W), H and W ≥ 3. Returns the named layers."""
    c, h, w = shape
    return [
        ("conv0", nn.Conv2d(c, 16, 3, stride=1)), ("act0", nn.ReLU()),
        ("flatten", nn.Flatten()),
        ("fc", nn.Linear(16 * (h - 2) * (w - 2), features)), ("act_fc", nn.ReLU()),
        ("head", nn.Linear(features, n_actions)),
    ]


def build_q_network(encoder: ObsEncoder, hidden: list[int], n_actions: int) -> nn.Sequential:
    """The Q-network for observations encoded by ``encoder``: obs → ``n_actions`` values, last Linear ``head``.

    * images: :class:`ImagePreprocess` then :func:`nature_cnn` (H, W ≥ 36) or :func:`minatar_cnn` (smaller);
      ``hidden`` is not used (the published architectures are kept). Images smaller than 3×3 get the MLP on the
      scaled pixels.
    * everything else: the ``hidden`` MLP on the encoded observation (a ``Flatten`` first when the encoded shape
      is not a vector, e.g. DeepSea's (N, N) grid) — a plain MLP, so BONG's compiled fast path applies.
    """
    if encoder.is_image:
        c, h, w = encoder.shape
        pre: list[tuple[str, nn.Module]] = [("preprocess", ImagePreprocess(encoder.channels_last, encoder.pixel_max))]
        if min(h, w) >= NATURE_MIN_SIZE:
            return nn.Sequential(OrderedDict(pre + nature_cnn((c, h, w), n_actions)))
        if min(h, w) >= 3:
            return nn.Sequential(OrderedDict(pre + minatar_cnn((c, h, w), n_actions)))
        body = mlp(encoder.flat_dim, list(hidden), n_actions)
        return nn.Sequential(OrderedDict([*pre, ("flatten", nn.Flatten()), *body.named_children()]))
    net = mlp(encoder.flat_dim, list(hidden), n_actions)
    if len(encoder.shape) > 1:  # the head keeps its name for posterior_params="head"
        net = nn.Sequential(OrderedDict([("flatten", nn.Flatten()), *net.named_children()]))
    return net
