"""Every fit of a line, a slope or an exponent to measured points, in one place.

    fit = line_fit(x, y)                   # least squares y ≈ slope·x + intercept, with the slope's standard error
    fit = line_fit(np.log(n), np.log(err)) # a log-log slope (nngp_convergence: kernel error vs width; denoise)

The scaling exponent α is fitted by `theory.random_features.loglog_slope` (below, through `fit_exponent`), the
same function that turns the theory's predicted losses into a predicted α, so prediction and measurement are
fitted alike; it lives in theory/ because theory cannot import train.

Scaling exponents with honest confidence intervals (docs/random_features.md, eqs. (RF-17)–(RF-19)): α of
L(N) ∝ N^-α over a stated window.

    fit = fit_exponent(n_N, loss_SxN)      # S seeds × the N grid
    fit.alpha, fit.ci, fit.window, fit.local_slopes, fit.offset_fit

Point estimate: the least-squares slope of log(mean over seeds of L) on log N (`theory.random_features.
loglog_slope`, the same function the theory's predicted α uses). Uncertainty: bootstrap over seeds (resample
the S seeds with replacement, refit). With few seeds the plain percentile interval is too narrow (it ignores
the n/(n−1) variance factor and the t tails); we use the *expanded percentile* interval (Hesterberg 2015,
"What teachers should know about the bootstrap", §4.3): percentiles at the level α' with
Φ⁻¹(1 − α'/2) = √(S/(S−1))·t_{S−1}(1 − α/2). The test checks the coverage on synthetic power laws.

The offset form L = E + A·N^-α (E ≥ 0) is fitted by profiling α on a grid with (E, A) by weighted linear
least squares (relative residuals), also bootstrapped.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import betainc, ndtr

from deeptheory.theory.random_features import loglog_slope

__all__ = ["ExponentFit", "LineFit", "fit_exponent", "line_fit", "offset_power_fit", "student_t_quantile"]


class LineFit(NamedTuple):
    slope: float
    intercept: float
    stderr: float  # standard error of the slope (residual variance on n − 2 degrees of freedom; 0 for 2 points)


def line_fit(x, y) -> LineFit:
    """Ordinary least squares of y on x (float64 NumPy), with the slope's standard error."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.ndim != 1 or x.shape != y.shape or np.unique(x).size < 2 or not np.all(np.isfinite(y)):
        raise ValueError(f"line_fit needs matching 1-d x and finite y with two distinct x; got x {x!r}, y {y!r}")
    A = np.stack([x, np.ones_like(x)], axis=1)
    (slope, intercept), residual, *_ = np.linalg.lstsq(A, y, rcond=None)
    dof = max(len(x) - 2, 1)
    sigma2 = float(residual[0]) / dof if len(residual) else 0.0
    return LineFit(float(slope), float(intercept), float(np.sqrt(sigma2 * np.linalg.inv(A.T @ A)[0, 0])))


class ExponentFit(NamedTuple):
    alpha: float  # log-log slope of the seed-mean loss
    ci: tuple[float, float]  # expanded-percentile bootstrap interval at `confidence`
    confidence: float
    window: tuple[float, float]  # (N_min, N_max) of the fit
    local_slopes: list  # slopes between consecutive N of the seed-mean loss
    offset_fit: dict  # L = E + A N^-α: alpha, ci, E, A
    n_seeds: int

    def as_dict(self) -> dict:
        return {"alpha": self.alpha, "ci": list(self.ci), "confidence": self.confidence, "window": list(self.window),
                "local_slopes": self.local_slopes, "offset_fit": self.offset_fit, "n_seeds": self.n_seeds}


def student_t_quantile(p: float, dof: int) -> float:
    """Quantile of Student's t (p > ½) by bisection on its CDF 1 − ½ I_{ν/(ν+t²)}(ν/2, ½)."""
    lo, hi = 0.0, 1e3
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        cdf = 1.0 - 0.5 * float(betainc(dof / 2.0, 0.5, dof / (dof + mid * mid)))
        lo, hi = (mid, hi) if cdf < p else (lo, mid)
    return 0.5 * (lo + hi)


def _expanded_level(confidence: float, n: int) -> float:
    """The percentile level α' of the expanded interval (module docstring)."""
    tail = 0.5 * (1.0 - confidence)
    z = np.sqrt(n / (n - 1.0)) * student_t_quantile(1.0 - tail, n - 1)
    return float(2.0 * (1.0 - ndtr(z)))


def offset_power_fit(n, loss, alphas=None):
    """(alpha, E, A) minimising Σ ((L − E − A N^-α)/L)² with E, A ≥ 0: α on a grid (then a finer grid around
    the best point), (E, A) in closed form for every α at once."""
    n = np.asarray(n, np.float64)
    loss = np.asarray(loss, np.float64)
    w = 1.0 / loss

    def residuals(alpha_grid):
        ones = np.broadcast_to(w, (alpha_grid.shape[0], n.shape[0]))
        powers = n[None, :] ** -alpha_grid[:, None] * w[None, :]  # (grid, N)
        target = np.ones_like(n)  # L·w
        g11, g12, g22 = np.sum(ones * ones, 1), np.sum(ones * powers, 1), np.sum(powers * powers, 1)
        r1, r2 = ones @ target, powers @ target
        det = g11 * g22 - g12 * g12
        E = (g22 * r1 - g12 * r2) / det
        A = (g11 * r2 - g12 * r1) / det
        A_alone = r2 / g22
        E, A = np.where(E < 0, 0.0, E), np.where(E < 0, A_alone, A)
        fit = E[:, None] * ones + A[:, None] * powers
        return np.sum((fit - target[None, :]) ** 2, axis=1), E, A

    grid = np.linspace(0.005, 4.0, 400) if alphas is None else np.asarray(alphas, np.float64)
    best = int(np.argmin(residuals(grid)[0]))
    fine = np.linspace(grid[max(best - 1, 0)], grid[min(best + 1, grid.shape[0] - 1)], 81)
    res, E, A = residuals(fine)
    k = int(np.argmin(res))
    return float(fine[k]), float(E[k]), float(A[k])


def fit_exponent(n, losses_SxN, *, confidence: float = 0.95, n_boot: int = 2000, seed: int = 0,
                 offset: bool = True) -> ExponentFit:
    """α of the seed-mean loss over the N grid, with a bootstrap-over-seeds interval (module docstring)."""
    n = np.asarray(n, np.float64)
    L = np.asarray(losses_SxN, np.float64)
    if L.ndim != 2 or L.shape[1] != n.shape[0] or n.shape[0] < 2:
        raise ValueError(f"need losses (seeds, len(n)) and at least two N; got {L.shape} for {n.shape[0]} N")
    if L.shape[0] < 2:
        raise ValueError(f"a confidence interval over seeds needs at least 2 seeds; got {L.shape[0]}")
    if not np.all(np.isfinite(L) & (L > 0)):
        raise ValueError("losses must be finite and > 0 (a diverged run? check the learning-rate grid)")
    S = L.shape[0]
    mean = L.mean(axis=0)
    alpha = float(loglog_slope(jnp.asarray(n), jnp.asarray(mean)))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, S, size=(n_boot, S))
    boot_means = L[idx].mean(axis=1)  # (n_boot, N)
    boot = np.asarray(jax.vmap(loglog_slope, (None, 0))(jnp.asarray(n), jnp.asarray(boot_means)))
    level = _expanded_level(confidence, S)
    ci = (float(np.quantile(boot, level / 2)), float(np.quantile(boot, 1 - level / 2)))
    local = [float(s) for s in -np.diff(np.log(mean)) / np.diff(np.log(n))]
    offset_fit = {}
    if offset and n.shape[0] >= 3:
        a_hat, E, A = offset_power_fit(n, mean)
        boot_offset = [offset_power_fit(n, m)[0] for m in boot_means[: min(n_boot, 200)]]
        offset_fit = {"alpha": a_hat, "E": E, "A": A,
                      "ci": [float(np.quantile(boot_offset, level / 2)), float(np.quantile(boot_offset, 1 - level / 2))]}
    return ExponentFit(alpha, ci, confidence, (float(n[0]), float(n[-1])), local, offset_fit, S)
