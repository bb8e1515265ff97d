"""MCMC diagnostics on traces `x_CxS` (C chains × S draws, after thinning), in NumPy on the host.

- `rhat`: split-R̂ (Gelman et al., BDA3 §11.4): each chain halved, R̂ = √(var⁺ / W) with
  var⁺ = (n−1)/n · W + B/n. ≈ 1 for chains that agree; > 1.01 is the usual warning sign.
- `ess`: multi-chain effective sample size (Stan reference manual §16.4; Geyer 1992): the autocovariances of
  all chains (by FFT) averaged, ρ_t = 1 − (W − ⟨γ_t⟩)/var⁺, summed over Geyer's initial positive and
  monotone sequence of pair sums; ESS = C S / τ with τ = −1 + 2 Σ pairs.
- `burn_in`: MSER-5 (White 1997): the truncation d (a multiple of 5 draws, at most half the trace) that
  minimises the squared standard error Σ_{t>d}(x̄_t − x̄_d)² / (S − d)² of the chain-averaged trace.
- `mean_and_error`: the grand mean and its Monte Carlo standard error sd / √ESS.
- `drift`: the second half's mean minus the first half's, in units of their combined standard error (a Geweke-style
  z, with both halves' errors from `mean_and_error`): |z| ≲ 2 for a stationary trace. Split-R̂ also grows with a
  trend, but does not say its sign or size; z does — whether a slow relaxation every chain shares (all started
  from prior draws) still moves the estimate, and which way.
"""

from __future__ import annotations

import numpy as np

__all__ = ["rhat", "ess", "burn_in", "mean_and_error", "drift"]


def _trace(x) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] < 4:
        raise ValueError(f"a trace is (chains, draws) with at least 4 draws; got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("the trace contains NaN or inf; diagnostics need finite draws")
    return x


def rhat(x_CxS) -> float:
    """Split-R̂ of a (chains, draws) trace (module docstring)."""
    x = _trace(x_CxS)
    half = x.shape[1] // 2
    split = np.concatenate([x[:, :half], x[:, -half:]])
    n = split.shape[1]
    W = split.var(axis=1, ddof=1).mean()
    B = n * split.mean(axis=1).var(ddof=1)
    if W == 0:
        return 1.0 if B == 0 else float("inf")
    return float(np.sqrt(((n - 1) / n * W + B / n) / W))


def _autocovariance(x_S: np.ndarray) -> np.ndarray:
    n = len(x_S)
    centred = x_S - x_S.mean()
    size = 1 << (2 * n - 1).bit_length()
    spectrum = np.fft.rfft(centred, size)
    return np.fft.irfft(spectrum * np.conj(spectrum), size)[:n] / n


def ess(x_CxS) -> float:
    """Multi-chain effective sample size (module docstring); C·S for independent draws."""
    x = _trace(x_CxS)
    C, n = x.shape
    acov = np.stack([_autocovariance(chain) for chain in x])  # biased (1/n) estimates
    W = acov[:, 0].mean() * n / (n - 1)
    var_plus = W * (n - 1) / n + (x.mean(axis=1).var(ddof=1) if C > 1 else 0.0)
    if var_plus == 0:
        return float(C * n)
    rho = 1.0 - (W - acov.mean(axis=0)) / var_plus
    rho[0] = 1.0
    pairs = rho[: 2 * ((n - 1) // 2)].reshape(-1, 2).sum(axis=1)
    positive = np.flatnonzero(pairs <= 0)
    pairs = pairs[: positive[0]] if len(positive) else pairs
    pairs = np.minimum.accumulate(pairs)  # initial monotone sequence
    tau = max(-1.0 + 2.0 * pairs.sum(), 1.0 / np.log10(C * n + 1))  # Stan's cap: ESS <= S log10(S)
    return float(C * n / tau)


def burn_in(x_CxS, batch: int = 5) -> int:
    """MSER-`batch` truncation point in draws (module docstring)."""
    x = _trace(x_CxS).mean(axis=0)
    n_batches = len(x) // batch
    if n_batches < 4:
        return 0
    means = x[: n_batches * batch].reshape(n_batches, batch).mean(axis=1)
    best, best_d = np.inf, 0
    for d in range(n_batches // 2 + 1):
        tail = means[d:]
        score = np.sum((tail - tail.mean()) ** 2) / len(tail) ** 2
        if score < best:
            best, best_d = score, d
    return best_d * batch


def mean_and_error(x_CxS) -> tuple[float, float, float]:
    """(mean, Monte Carlo standard error = sd/√ESS, ESS) of a (chains, draws) trace."""
    x = _trace(x_CxS)
    n_eff = ess(x)
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(n_eff)), n_eff


def drift(x_CxS) -> tuple[float, float]:
    """(z, relative change) between the first and the second half of a (chains, draws) trace (module docstring):
    z = (m₂ − m₁)/√(se₁² + se₂²), relative = m₂/m₁ − 1."""
    x = _trace(x_CxS)
    half = x.shape[1] // 2
    if half < 4:
        raise ValueError(f"drift compares two halves of at least 4 draws; got {x.shape[1]} draws")
    m1, se1, _ = mean_and_error(x[:, :half])
    m2, se2, _ = mean_and_error(x[:, -half:])
    scale = np.hypot(se1, se2)
    z = (m2 - m1) / scale if scale > 0 else (0.0 if m2 == m1 else float(np.sign(m2 - m1)) * np.inf)
    return float(z), float(m2 / m1 - 1) if m1 != 0 else float("nan")
