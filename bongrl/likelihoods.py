"""Observation models for BONG: Gaussian, Bernoulli and categorical.

Each likelihood maps the network output f (B, C) to

* the mean function ŷ = m(f) and its Jacobian D = ∂m/∂f (B, C, C), so the LIN Jacobian is H = D · ∂f/∂θ;
* the moment-matched observation covariance R = Cov[y | f] (B, C, C) used by BONG-LIN
  (Jones et al. 2024 §4.2; LO-FI, Chang et al. 2023): Gaussian R = σ²I; Bernoulli R = p(1 − p);
  categorical R = diag(p) − ppᵀ + εI (singular without the jitter ε, as in the authors' code);
* the log-likelihood log p(y | f) for the Monte-Carlo variants, and a square root of its negative Hessian in f
  (the generalised Gauss-Newton factor) for MC-Hess.

Targets: Gaussian y is (B,) or (B, C) real; Bernoulli y ∈ {0, 1}; categorical y are integer labels in [0, C).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import Tensor

from bongrl.posteriors.base import NonFiniteError

__all__ = ["Likelihood", "Gaussian", "Bernoulli", "Categorical", "make_likelihood", "LIKELIHOODS"]


class Likelihood(ABC):
    """An observation model p(y | f) for a network output f of shape (B, C)."""

    name: str = ""

    @abstractmethod
    def encode(self, y: Tensor, f_shape: tuple[int, int]) -> Tensor:
        """Validate targets and return them as a float (B, C) tensor in the mean function's space."""

    @abstractmethod
    def mean_and_jacobian(self, f: Tensor) -> tuple[Tensor, Tensor | None]:
        """ŷ = m(f) (B, C) and D = ∂m/∂f (B, C, C); ``None`` means D = I."""

    @abstractmethod
    def obs_cov(self, f: Tensor) -> Tensor:
        """Moment-matched R = Cov[y | f], (B, C, C), positive definite."""

    @abstractmethod
    def log_prob(self, f: Tensor, y_enc: Tensor) -> Tensor:
        """log p(y | f) per row, (B,)."""

    @abstractmethod
    def hessian_sqrt(self, f: Tensor) -> Tensor:
        """S (B, C, C) with S Sᵀ = −∂² log p / ∂f² (PSD; the GGN curvature in output space)."""

    def lin_terms(self, f: Tensor, J: Tensor, y_enc: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(H, residual, R) for BONG-LIN from output f (B, C) and its Jacobian J = ∂f/∂θ (B, C, P)."""
        yhat, D = self.mean_and_jacobian(f)
        H = J if D is None else D @ J
        return H, y_enc - yhat, self.obs_cov(f)


class Gaussian(Likelihood):
    """y ~ N(f, σ² I). LIN is exact for a linear model (conjugate Bayesian linear regression)."""

    name = "gaussian"

    def __init__(self, obs_std: float) -> None:
        if not (isinstance(obs_std, (int, float)) and math.isfinite(obs_std) and obs_std > 0):
            raise ValueError(f"obs_std must be a positive finite number, got {obs_std!r}")
        self.obs_std = float(obs_std)

    def encode(self, y: Tensor, f_shape: tuple[int, int]) -> Tensor:
        B, C = f_shape
        if not y.is_floating_point():
            y = y.to(torch.get_default_dtype())
        if y.ndim == 1 and C == 1:
            y = y.unsqueeze(1)
        if y.shape != (B, C):
            raise ValueError(f"y must have shape ({B},) or ({B}, {C}) for a gaussian likelihood, got {tuple(y.shape)}")
        if not bool(torch.isfinite(y).all()):
            raise NonFiniteError("y contains NaN or Inf")
        return y

    def mean_and_jacobian(self, f: Tensor) -> tuple[Tensor, Tensor | None]:
        return f, None

    def obs_cov(self, f: Tensor) -> Tensor:
        B, C = f.shape
        eye = torch.eye(C, dtype=f.dtype, device=f.device)
        return (self.obs_std**2 * eye).expand(B, C, C)

    def log_prob(self, f: Tensor, y_enc: Tensor) -> Tensor:
        C = f.shape[1]
        var = self.obs_std**2
        return -0.5 * ((y_enc - f) ** 2).sum(1) / var - 0.5 * C * math.log(2 * math.pi * var)

    def hessian_sqrt(self, f: Tensor) -> Tensor:
        B, C = f.shape
        eye = torch.eye(C, dtype=f.dtype, device=f.device)
        return (eye / self.obs_std).expand(B, C, C)


def _check_labels(y: Tensor, B: int, allowed: int, name: str) -> Tensor:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.shape != (B,):
        raise ValueError(f"y must have shape ({B},) for a {name} likelihood, got {tuple(y.shape)}")
    if y.is_floating_point():
        if not bool(torch.isfinite(y).all()) or not bool((y == y.round()).all()):
            raise ValueError(f"y must hold integer labels for a {name} likelihood")
        y = y.long()
    if y.dtype == torch.bool:
        y = y.long()
    if bool(((y < 0) | (y >= allowed)).any()):
        raise ValueError(f"y labels must lie in [0, {allowed}) for a {name} likelihood")
    return y


class Bernoulli(Likelihood):
    """y ~ Bernoulli(sigmoid(f)), f a single logit (C = 1). LIN: ŷ = p, D = p(1 − p), R = p(1 − p) + ε.

    ``eps`` (default 1e-6) keeps R > 0 where p saturates at 0 or 1 in floating point.
    """

    name = "bernoulli"

    def __init__(self, eps: float = 1e-6) -> None:
        self.eps = eps

    def encode(self, y: Tensor, f_shape: tuple[int, int]) -> Tensor:
        B, C = f_shape
        if C != 1:
            raise ValueError(f"a bernoulli likelihood needs a model with 1 output, got {C}")
        return _check_labels(y, B, 2, "bernoulli").to(torch.get_default_dtype()).unsqueeze(1)

    def mean_and_jacobian(self, f: Tensor) -> tuple[Tensor, Tensor | None]:
        p = torch.sigmoid(f)
        return p, (p * (1 - p)).unsqueeze(-1)

    def obs_cov(self, f: Tensor) -> Tensor:
        p = torch.sigmoid(f)
        return (p * (1 - p) + self.eps).unsqueeze(-1)

    def log_prob(self, f: Tensor, y_enc: Tensor) -> Tensor:
        return -F.binary_cross_entropy_with_logits(f, y_enc.to(f), reduction="none").sum(1)

    def hessian_sqrt(self, f: Tensor) -> Tensor:
        p = torch.sigmoid(f)
        return (p * (1 - p)).sqrt().unsqueeze(-1)


class Categorical(Likelihood):
    """y ~ Categorical(softmax(f)). LIN: ŷ = p, D = diag(p) − ppᵀ, R = diag(p) − ppᵀ + εI.

    ``eps`` (default 1e-5, the authors' value) makes the rank-(C−1) covariance invertible.
    """

    name = "categorical"

    def __init__(self, eps: float = 1e-5) -> None:
        self.eps = eps

    def encode(self, y: Tensor, f_shape: tuple[int, int]) -> Tensor:
        B, C = f_shape
        if C < 2:
            raise ValueError(f"a categorical likelihood needs a model with >= 2 outputs, got {C}")
        labels = _check_labels(y, B, C, "categorical")
        return F.one_hot(labels, C).to(torch.get_default_dtype())

    @staticmethod
    def _softmax_cov(f: Tensor) -> Tensor:
        p = torch.softmax(f, dim=-1)
        return torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)

    def mean_and_jacobian(self, f: Tensor) -> tuple[Tensor, Tensor | None]:
        return torch.softmax(f, dim=-1), self._softmax_cov(f)

    def obs_cov(self, f: Tensor) -> Tensor:
        C = f.shape[-1]
        return self._softmax_cov(f) + self.eps * torch.eye(C, dtype=f.dtype, device=f.device)

    def log_prob(self, f: Tensor, y_enc: Tensor) -> Tensor:
        return (torch.log_softmax(f, dim=-1) * y_enc.to(f)).sum(-1)

    def hessian_sqrt(self, f: Tensor) -> Tensor:
        # D = diag(p) − ppᵀ = (diag(√p) − p√pᵀ)(diag(√p) − p√pᵀ)ᵀ since Σp = 1: an exact square root, no jitter.
        p = torch.softmax(f, dim=-1)
        sp = p.sqrt()
        return torch.diag_embed(sp) - p.unsqueeze(-1) * sp.unsqueeze(-2)


LIKELIHOODS = {"gaussian": Gaussian, "bernoulli": Bernoulli, "categorical": Categorical}


def make_likelihood(name: str, obs_std: float = 1.0) -> Likelihood:
    """Build a likelihood by name; ``obs_std`` is used by the Gaussian only."""
    if name == "gaussian":
        return Gaussian(obs_std)
    if name in LIKELIHOODS:
        return LIKELIHOODS[name]()
    raise ValueError(f"unknown likelihood {name!r}; choose from {sorted(LIKELIHOODS)}")
