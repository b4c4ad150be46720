"""Exact Bayesian linear regression with unknown noise variance (normal-inverse-gamma prior).

Model (Riquelme, Tucker & Snoek 2018, "Deep Bayesian Bandits Showdown", ICLR, §2 "Linear Methods", and their
``linear_full_posterior_sampling.py``; standard conjugate result, e.g. Murphy, *Machine Learning: a
Probabilistic Perspective* §7.6.3)::

    σ² ~ InvGamma(a₀, b₀),   β | σ² ~ N(0, σ² (λ I)⁻¹),   y | x, β, σ² ~ N(βᵀx, σ²)

After n observations (rows of X, entries of y) the posterior is NIG(μₙ, Λₙ, aₙ, bₙ) with::

    Λₙ = λ I + XᵀX                       (precision, up to the factor 1/σ²)
    μₙ = Λₙ⁻¹ Xᵀy
    aₙ = a₀ + n / 2
    bₙ = b₀ + ½ (yᵀy − μₙᵀ Λₙ μₙ)

Thompson sampling draws σ² ~ InvGamma(aₙ, bₙ), then β ~ N(μₙ, σ² Λₙ⁻¹).

The sufficient statistics (XᵀX, Xᵀy, yᵀy, n) are accumulated exactly (float64, one rank-1 term per
observation); the mean and the sampler use a Cholesky factor Λₙ = L Lᵀ recomputed after each change (no
explicit inverse): μₙ = L⁻ᵀ L⁻¹ Xᵀy and β = μₙ + σ L⁻ᵀ z with z ~ N(0, I), whose covariance is σ² L⁻ᵀ L⁻¹ = σ²
Λₙ⁻¹.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import cho_solve, solve_triangular

__all__ = ["NIGLinearPosterior", "nig_posterior_batch"]


def nig_posterior_batch(
    X: np.ndarray, y: np.ndarray, lambda_prior: float, a0: float, b0: float
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Closed-form NIG posterior ``(μₙ, Λₙ, aₙ, bₙ)`` from all data at once (explicit inverse; for tests)."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    dim = X.shape[1]
    precision = lambda_prior * np.eye(dim) + X.T @ X
    mu = np.linalg.inv(precision) @ (X.T @ y)
    a = a0 + X.shape[0] / 2.0
    b = b0 + 0.5 * (y @ y - mu @ precision @ mu)
    return mu, precision, float(a), float(b)


class NIGLinearPosterior:
    """NIG posterior of one arm's linear model; see the module docstring for the equations."""

    def __init__(self, dim: int, lambda_prior: float = 0.25, a0: float = 6.0, b0: float = 6.0) -> None:
        self.dim = int(dim)
        self.lambda_prior = float(lambda_prior)
        self.a0 = float(a0)
        self.b0 = float(b0)
        self.reset()

    def reset(self) -> None:
        """Back to the prior."""
        self.xtx = np.zeros((self.dim, self.dim))
        self.xty = np.zeros(self.dim)
        self.yty = 0.0
        self.n = 0
        self._refresh(self.xtx, self.xty, self.yty, self.n)

    # ------------------------------------------------------------------ updates
    def add(self, x: np.ndarray, y: float) -> None:
        """Condition on one more observation (rank-1 update of the sufficient statistics)."""
        x = np.asarray(x, dtype=np.float64)
        self._refresh(self.xtx + np.outer(x, x), self.xty + y * x, self.yty + y * y, self.n + 1)

    def fit(self, X: np.ndarray, y: np.ndarray) -> None:
        """Replace the data by ``(X, y)``: the posterior from the prior and these observations only."""
        X = np.asarray(X, dtype=np.float64).reshape(-1, self.dim)
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        self._refresh(X.T @ X, X.T @ y, float(y @ y), int(X.shape[0]))

    def _refresh(self, xtx: np.ndarray, xty: np.ndarray, yty: float, n: int) -> None:
        # Compute everything first, assign at the end: an exception leaves the posterior as it was.
        precision = self.lambda_prior * np.eye(self.dim) + xtx
        chol = np.linalg.cholesky(precision)  # lower, Λ = L Lᵀ
        mu = cho_solve((chol, True), xty)
        # yᵀy − μᵀΛμ = ‖y − Xμ‖² + λ‖μ‖² ≥ 0; clip round-off so that bₙ ≥ b₀ as in exact arithmetic.
        b = self.b0 + 0.5 * max(yty - float(mu @ xty), 0.0)
        self.xtx, self.xty, self.yty, self.n = xtx, xty, float(yty), int(n)
        self.precision, self.chol, self.mu = precision, chol, mu
        self.a = self.a0 + n / 2.0
        self.b = b

    # ------------------------------------------------------------------ queries
    @property
    def cov(self) -> np.ndarray:
        """Λₙ⁻¹ (β's covariance is σ² Λₙ⁻¹)."""
        return cho_solve((self.chol, True), np.eye(self.dim))

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """One draw of β from the posterior: σ² ~ InvGamma(aₙ, bₙ), β ~ N(μₙ, σ² Λₙ⁻¹)."""
        sigma2 = self.b / rng.gamma(self.a)  # b / Gamma(a, 1) ~ InvGamma(a, scale=b)
        z = rng.standard_normal(self.dim)
        return self.mu + np.sqrt(sigma2) * solve_triangular(self.chol, z, lower=True, trans="T")
