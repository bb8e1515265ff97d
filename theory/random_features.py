"""Random-feature ridge regression and linear-model training dynamics on power-law spectra.

Sources: Atanasov, Zavatone-Veth & Pehlevan, "Scaling and renormalization in high-dimensional regression"
(arXiv 2405.00592, 2024), §4 (KRR) and §6 (linear random features); Bach, SIAM J. Math. Data Sci. 2024
("High-dimensional analysis of double descent for linear regression with random projections");
Bordelon, Atanasov & Pehlevan, ICML 2024 ("A dynamical model of neural scaling laws"). Conventions, the
equations derived and the tests that hold them: docs/random_features.md (eqs. (1)–(3) below are (RF-5)–(RF-7)).

Setup. Inputs x ∈ R^D with covariance Λ = diag(λ_k); target y = w̄·x + ε, ε ~ N(0, σ²); the task power of
mode k is v_k² = λ_k w̄_k² (`target_power`). Random features z = F x, F ∈ R^{N×D} with i.i.d. entries of
variance 1/N, so that zᵀz' → xᵀx' as N → ∞. The readout a ∈ R^N minimises, on P samples,

    (1/P) Σ_μ (y_μ − a·z_μ)² + ridge·|a|²                                     (per-sample ridge)

and the returned risk is the test mean squared error E (y − a·z)², the test label noise σ² included.

Deterministic equivalent (docs/random_features.md, eqs. (RF-4)–(RF-7); Atanasov et al. eqs. 6.5–6.9). With
Df1(κ) = Σ λ/(λ+κ), Df2(κ) = Σ λ²/(λ+κ)², tf(κ) = Σ v²/(λ+κ), −tf'(κ) = Σ v²/(λ+κ)² (v² = λ w̄², so
tf = Σ w̄² λ/(λ+κ)), the effective ridge κ₂ is the root on the branch Df1(κ₂) ≤ min(N, P) of

    κ₂ (1 − Df1(κ₂)/P) (1 − Df1(κ₂)/N) = ridge,                                              (1)

and, with ρ = (N − Df1)/(N − Df2) and γ₁ = [Df1 − ρ(Df1 − Df2)]/P (all at κ₂),

    E_1 = [κ₂² (−tf') ρ + κ₂ tf (1 − ρ) + σ²] / (1 − γ₁)                                       (2)
    E_∞ = [κ₂² (−tf') + σ²] / (1 − Df2/P),        E_K = E_∞ + (E_1 − E_∞)/K   (K-model ensemble). (3)

Derivation sketch (why (1)–(2) hold; the tests check them against Monte Carlo): conditional on F the
problem is ridge regression on z with covariance Σ_N = FΛFᵀ, and the part of y outside span(z) acts as
extra Gaussian noise; the KRR equivalent then gives κ₁ = ridge/(1 − df_N(κ₁)/P) with df_N the N-feature
degrees of freedom, and free multiplication by the Wishart FᵀF renormalises κ₁ = κ₂(1 − Df1(κ₂)/N), with
df_N(κ₁) = Df1(κ₂) and Σ_N's second moment df_{N,2}(κ₁) = Df1 − ρ(Df1 − Df2) = P γ₁.

Ridgeless limit: ridge → 0 gives Df1(κ₂) = min(N, P) (when D exceeds it), which the solver reaches exactly;
at N = P (ridgeless) the risk is +inf (the interpolation peak), not NaN.

Training dynamics (docs/random_features.md, eqs. (RF-10)–(RF-13)). A linear model trained on the population
loss ½E(y − f)² with a fixed preconditioner f(H) moves each eigenmode of the Hessian H independently; mode k's
error follows e_{t+1} = (1 + β − η λ_k f(λ_k)) e_t − β e_{t−1} (heavy ball with momentum β; β = 0 is gradient descent,
e_t = (1 − ηλf)^t), and the loss is L(t) = L_∞ + Σ_k c_k² e_k(t)², c_k² the excess loss in mode k at t = 0.

Neighbours: `theory._solvers` (the bisection of (1)), `models.random_features` (the finite random-feature model
and its power-law inputs), `train.experiments.rf_scaling` (the experiment that compares both).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from deeptheory.theory._checks import (
    as_array,
    check_eigenvalues,
    check_integer,
    check_scalar,
    check_spectrum,
    fails,
    float64_theory,
)
from deeptheory.theory._solvers import bisect

__all__ = [
    "power_law_spectrum",
    "power_law_target",
    "degrees_of_freedom",
    "effective_ridge",
    "RidgeEquivalent",
    "rf_equivalent",
    "rf_risk",
    "krr_risk",
    "preconditioner",
    "learning_curve",
    "time_bottleneck",
    "loglog_slope",
]

_F64 = jnp.float64


def _check_exponent(name: str, value) -> None:
    check_scalar(name, value, minimum=0, strict=True, hint=f" (a decaying power law k^-{name})")


def _check_dim(dim) -> int:
    return check_integer("dim", dim, minimum=1, what="the input dimension D")


@float64_theory
def power_law_spectrum(dim: int, exponent) -> jax.Array:
    """Covariance eigenvalues λ_k = k^-s, k = 1..D, in float64 (computed as exp(−s log k): no underflow
    to 0 for large k, which float32 k**-s suffers; docs/random_features.md, eq. (RF-1))."""
    dim = _check_dim(dim)
    _check_exponent("s", exponent)
    k = jnp.arange(1, dim + 1, dtype=_F64)
    return jnp.exp(-jnp.asarray(exponent, _F64) * jnp.log(k))


@float64_theory
def power_law_target(dim: int, exponent) -> jax.Array:
    """Task power v_k² = λ_k w̄_k² = k^-a, k = 1..D (float64). An isotropic teacher on λ_k = k^-s has a = s;
    the converged exponent of L(N) is then a − 1 (docs/random_features.md, eq. (RF-9)), so `a` is a knob of its own."""
    return power_law_spectrum(dim, exponent)


@float64_theory
def degrees_of_freedom(eigenvalues, kappa):
    """(Df1, Df2) = (Σ λ/(λ+κ), Σ λ²/(λ+κ)²) (Atanasov et al. eq. 4.4)."""
    check_scalar("kappa", kappa, minimum=0, strict=False, allow_inf=True, hint=" (a ridge)")
    return _degrees_of_freedom(check_eigenvalues(eigenvalues), jnp.asarray(kappa, _F64))


def _degrees_of_freedom(lam, kappa):
    r = lam / (lam + kappa)
    return jnp.sum(r), jnp.sum(r * r)


@float64_theory
def effective_ridge(eigenvalues, *, n_features, n_samples, ridge):
    """κ₂, the root of eq. (1) on the branch Df1(κ₂) ≤ min(N, P); N or P may be inf.

    Solved by bisection in u = log κ on a bracket that provably holds the root: the clamped left side
    h(κ) = κ·max(1 − Df1/P, 0)·max(1 − Df1/N, 0) is 0 below the ridgeless point and increasing above it,
    h(κ) ≥ κ − Σλ(1/P + 1/N), so κ_hi = ridge + Σλ(1/P + 1/N) has h ≥ ridge; the lower end lies e⁻⁶⁰ below
    both λ_min and the ridge. The step "go right" is taken while h(κ) < ridge or Df1(κ) > min(N, P), so
    ridge = 0 converges to the ridgeless point Df1 = min(N, P) itself (or to ~0 when D < min(N, P)).
    160 halvings of a bracket at most ~10³ wide in log κ leave it below float64 resolution.
    """
    lam = check_eigenvalues(eigenvalues)
    check_scalar("n_features", n_features, minimum=1, strict=False, allow_inf=True, hint=" (N, the number of features)")
    check_scalar("n_samples", n_samples, minimum=1, strict=False, allow_inf=True, hint=" (P, the number of samples)")
    check_scalar("ridge", ridge, minimum=0, strict=False, hint=" (per-sample ridge; 0 is ridgeless)")
    N = jnp.asarray(n_features, _F64)
    P = jnp.asarray(n_samples, _F64)
    ridge = jnp.asarray(ridge, _F64)
    m = jnp.minimum(N, P)
    inv = 1.0 / N + 1.0 / P

    def go_right(u):
        kappa = jnp.exp(u)
        df1 = _degrees_of_freedom(lam, kappa)[0]
        h = kappa * jnp.maximum(1.0 - df1 / P, 0.0) * jnp.maximum(1.0 - df1 / N, 0.0)
        return (h < ridge) | (df1 > m)

    lo = jnp.minimum(jnp.log(jnp.min(lam)), jnp.log(jnp.where(ridge > 0, ridge, jnp.inf))) - 60.0
    hi = jnp.log(ridge + jnp.sum(lam) * inv + 1e-300) + 1e-9
    # bisect() expects h(lo) < 0 <= h(hi): encode "go right" as −1.
    return jnp.exp(bisect(lambda u: jnp.where(go_right(u), -1.0, 1.0), lo, hi, iterations=160))


class RidgeEquivalent(NamedTuple):
    risk: jax.Array  # E_K, the test MSE including the label noise
    risk_single: jax.Array  # E_1
    risk_infinite_ensemble: jax.Array  # E_∞
    kappa2: jax.Array  # effective ridge κ₂ (eq. 1)
    kappa1: jax.Array  # ridge/(1 − Df1/P) = κ₂(1 − Df1/N): the effective ridge seen by the N features
    df1: jax.Array
    df2: jax.Array


@float64_theory
def rf_equivalent(eigenvalues, target_power, *, n_features, n_samples, ridge, noise=0.0, ensemble=1) -> RidgeEquivalent:
    """Every piece of the deterministic equivalent (eqs. 1–3) of random-feature ridge regression.

    Args: as `rf_risk`. Returns `RidgeEquivalent`. Float64; jit- and vmap-friendly in every scalar.
    """
    lam, v2 = check_spectrum(eigenvalues, target_power)
    check_scalar("n_features", n_features, minimum=1, strict=False, allow_inf=True, hint=" (N, the number of features)")
    check_scalar("n_samples", n_samples, minimum=1, strict=False, allow_inf=True, hint=" (P, the number of samples)")
    check_scalar("ridge", ridge, minimum=0, strict=False, hint=" (per-sample ridge; 0 is ridgeless)")
    check_scalar("noise", noise, minimum=0, strict=False, hint=" (label-noise variance σ²)")
    check_scalar("ensemble", ensemble, minimum=1, strict=False, allow_inf=True, hint=" (K, models averaged)")
    N = jnp.asarray(n_features, _F64)
    P = jnp.asarray(n_samples, _F64)
    noise = jnp.asarray(noise, _F64)
    k2 = effective_ridge(lam, n_features=N, n_samples=P, ridge=ridge)
    df1, df2 = _degrees_of_freedom(lam, k2)
    tf = jnp.sum(v2 / (lam + k2))
    minus_tf_prime = jnp.sum(v2 / (lam + k2) ** 2)
    # ρ → 1 as N → ∞; written as 1 − (Df1 − Df2)/(N − Df2) so that N = inf needs no special case.
    rho = 1.0 - (df1 - df2) / (N - df2)
    gamma1 = (df1 - rho * (df1 - df2)) / P
    bias = k2 * k2 * minus_tf_prime
    single_num = bias * rho + k2 * tf * (1.0 - rho) + noise
    infinite_num = bias + noise
    # 1 − γ₁ is exactly 0 at the ridgeless interpolation point N = P (and for KRR at P = D): the risk is +inf.
    single = jnp.where(1.0 - gamma1 > 0, single_num / (1.0 - gamma1), jnp.inf)
    infinite = jnp.where(1.0 - df2 / P > 0, infinite_num / (1.0 - df2 / P), jnp.inf)
    K = jnp.asarray(ensemble, _F64)
    risk = jnp.where(jnp.isinf(single), single, infinite + (single - infinite) / K)
    kappa1 = k2 * (1.0 - df1 / N)
    return RidgeEquivalent(risk, single, infinite, k2, kappa1, df1, df2)


@float64_theory
def rf_risk(eigenvalues, target_power, *, n_features, n_samples, ridge, noise=0.0, ensemble=1):
    """Test MSE of random-feature ridge regression (Atanasov et al. 2024 §6; eqs. 1–3 above, i.e.
    docs/random_features.md, eqs. (RF-5)–(RF-7)).

    Args:
      eigenvalues: (D,) input-covariance eigenvalues λ_k > 0 (e.g. `power_law_spectrum`).
      target_power: (D,) v_k² = λ_k w̄_k², the target's power in mode k.
      n_features: N (inf: kernel ridge regression). n_samples: P (inf: the population readout).
      ridge: per-sample ridge ≥ 0 (the readout minimises (1/P)Σ(y − f)² + ridge·|a|²); 0 is ridgeless.
      noise: label-noise variance σ², counted in the training labels and in the test error.
      ensemble: K models with independent features, trained on the same data, averaged.

    Returns the scalar risk (float64). vmap over any scalar argument for a grid.
    """
    return rf_equivalent(eigenvalues, target_power, n_features=n_features, n_samples=n_samples, ridge=ridge,
                         noise=noise, ensemble=ensemble).risk


@float64_theory
def krr_risk(eigenvalues, target_power, *, n_samples, ridge, noise=0.0):
    """Test MSE of kernel ridge regression with P samples (Atanasov et al. 2024 eqs. 4.4–4.6;
    docs/random_features.md, eqs. (RF-2)–(RF-3)).

    With δ = P·ridge the ridge on the summed loss, κ solves Σ λ/(λ+κ) + δ/κ = P and

        L_k = λ_k/(λ_k + κ),   E₀ = P/(P − Σ L_k²),   E = E₀ [Σ (1 − L_k)² v_k² + σ²].

    Solved on its own (bisection in log κ on Df1(κ) + δ/κ − P, decreasing in κ), not through `rf_risk`,
    so that the test "rf_risk → krr_risk as N → ∞" compares two implementations. ridge = 0 with D > P gives
    the interpolating KRR (Df1 = P).
    """
    lam, v2 = check_spectrum(eigenvalues, target_power)
    check_scalar("n_samples", n_samples, minimum=1, strict=False, allow_inf=True, hint=" (P, the number of samples)")
    check_scalar("ridge", ridge, minimum=0, strict=False, hint=" (per-sample ridge; 0 is ridgeless)")
    check_scalar("noise", noise, minimum=0, strict=False, hint=" (label-noise variance σ²)")
    P = jnp.asarray(n_samples, _F64)
    ridge = jnp.asarray(ridge, _F64)
    population = jnp.isinf(P)  # P = ∞: the equation reads κ = ridge
    P_finite = jnp.where(population, 1.0, P)
    delta = ridge * P_finite

    def too_small(u):  # Df1 + δ/κ − P > 0 ⇔ κ below the root
        kappa = jnp.exp(u)
        return jnp.sum(lam / (lam + kappa)) + delta / kappa > P_finite

    lo = jnp.minimum(jnp.log(jnp.min(lam)), jnp.log(jnp.where(ridge > 0, ridge, jnp.inf))) - 60.0
    hi = jnp.log(jnp.sum(lam) / P_finite + ridge + 1e-300) + jnp.log(2.0)
    kappa = jnp.exp(bisect(lambda u: jnp.where(too_small(u), -1.0, 1.0), lo, hi, iterations=160))
    kappa = jnp.where(population, ridge, kappa)
    L = lam / (lam + kappa)
    sum_L2 = jnp.sum(L * L)
    E0 = jnp.where(population, 1.0, jnp.where(P_finite - sum_L2 > 0, P_finite / (P_finite - sum_L2), jnp.inf))
    return E0 * (jnp.sum((1.0 - L) ** 2 * v2) + jnp.asarray(noise, _F64))


@float64_theory
def preconditioner(eigenvalues, kind: str, *, damping=0.0, power=0.0):
    """f(λ) of a spectral preconditioner (docs/random_features.md, eq. (RF-12)): "gd" 1, "natural" 1/(λ + ε)
    (damped natural gradient), "power" λ^-γ (power preconditioning; γ = 1 is undamped natural gradient)."""
    lam = check_eigenvalues(eigenvalues)
    if kind == "gd":
        return jnp.ones_like(lam)
    if kind == "natural":
        check_scalar("damping", damping, minimum=0, strict=False, hint=" (ε in 1/(λ + ε))")
        return 1.0 / (lam + damping)
    if kind == "power":
        check_scalar("power", power, minimum=0, strict=False, hint=" (γ in λ^-γ)")
        return jnp.exp(-jnp.asarray(power, _F64) * jnp.log(lam))
    raise ValueError(f"preconditioner kind must be 'gd', 'natural' or 'power'; got {kind!r}")


@float64_theory
def learning_curve(eigenvalues, excess_power, n_steps: int, *, learning_rate, preconditioner_values=None,
                   momentum=0.0, floor=0.0):
    """Exact loss L(t), t = 0..n_steps, of a linear model trained on ½·(population MSE) (docs/random_features.md,
    eqs. (RF-10)–(RF-11)).

    Mode k of the Hessian (eigenvalue λ_k) starts with excess loss c_k² (`excess_power`) and its error
    follows the heavy-ball recurrence e_{t+1} = (1 + β − r_k) e_t − β e_{t−1}, e_0 = e_{−1} = 1, with
    r_k = η λ_k f(λ_k) (optax.sgd(η, momentum=β) on a quadratic is exactly this: Polyak 1964; Paquette
    et al. 2024 use the same 2×2 per-mode recurrence). β = 0 is preconditioned gradient descent,
    e_t = (1 − r_k)^t. L(t) = floor + Σ_k c_k² e_k(t)². Diverging modes give an increasing, possibly
    inf, curve — never NaN.

    For a finite-N random-feature model pass the eigenvalues of the N-feature covariance Σ_N = FΛFᵀ and
    c_j² = (u_jᵀ b)²/μ_j with b = FΛw̄; floor = the best loss reachable with those N features.
    """
    lam = as_array(eigenvalues, "eigenvalues", dtype=_F64, ndim=1, what="the Hessian eigenvalues λ_k")
    c2 = as_array(excess_power, "excess_power", dtype=_F64, ndim=1, what="c_k², the excess loss of mode k at t = 0")
    if c2.shape != lam.shape:
        raise ValueError(f"excess_power must match eigenvalues (1-d, same length); got {c2.shape} and {lam.shape}")
    check_integer("n_steps", n_steps, minimum=0)
    check_scalar("floor", floor, minimum=0, strict=False, hint=" (the loss the model cannot go below)")
    check_scalar("learning_rate", learning_rate, minimum=0, strict=True)
    check_scalar("momentum", momentum, minimum=0, strict=False, hint=" (β of heavy ball, below 1)")
    f = _preconditioner_values(preconditioner_values, lam)
    rate = jnp.asarray(learning_rate, _F64) * lam * f
    beta = jnp.asarray(momentum, _F64)

    def step(carry, _):
        e, e_prev = carry
        e_next = (1.0 + beta - rate) * e - beta * e_prev
        e_next = jnp.clip(e_next, -1e150, 1e150)  # a diverging mode saturates at a huge loss instead of NaN
        return (e_next, e), jnp.sum(c2 * e_next * e_next)

    ones = jnp.ones_like(lam)
    _, losses = lax.scan(step, (ones, ones), None, length=int(n_steps))
    return jnp.asarray(floor, _F64) + jnp.concatenate([jnp.sum(c2)[None], losses])


def _preconditioner_values(values, lam):
    if values is None:
        return jnp.ones_like(lam)
    f = as_array(values, "preconditioner_values", dtype=_F64, ndim=1, what="f(λ_k), one per eigenvalue")
    if f.shape != lam.shape:
        raise ValueError(f"preconditioner_values must have one value per eigenvalue ({lam.shape[0]}); got {f.shape}")
    return f


@float64_theory
def time_bottleneck(eigenvalues, n_steps, *, learning_rate, preconditioner_values=None):
    """N*(T): the number of modes learned within T steps, #{k : T·η λ_k f(λ_k) ≥ 1} (docs/random_features.md, eq. (RF-13)).

    For GD on λ_k = k^-s this is (η λ₁ T)^{1/s}: a random-feature model with N ≫ N*(T) features cannot use
    its extra features in T steps, so its fitted L(N) flattens (the "time bottleneck"). A preconditioner
    raises N* (damped natural gradient: modes with λ ≫ ε are learned in O(1/η) steps).
    """
    lam = as_array(eigenvalues, "eigenvalues", dtype=_F64, ndim=1, what="the Hessian eigenvalues λ_k")
    check_scalar("n_steps", n_steps, minimum=0, strict=False, hint=" (the training budget T)")
    check_scalar("learning_rate", learning_rate, minimum=0, strict=True)
    f = _preconditioner_values(preconditioner_values, lam)
    return jnp.sum(jnp.asarray(n_steps, _F64) * jnp.asarray(learning_rate, _F64) * lam * f >= 1.0)


@float64_theory
def loglog_slope(n, loss):
    """α of L ∝ N^-α by least squares of log L on log N (points with a non-finite or non-positive L are
    dropped by weight 0) (docs/random_features.md, eq. (RF-17)). The one α fit: the theory's predicted α and
    `train.fits.fit_exponent`'s measured α both call it, so prediction and measurement are fitted alike."""
    n = as_array(n, "n", dtype=_F64, ndim=1, what="the sizes N of the fit")
    if fails(lambda v: v > 0, n):
        raise ValueError("n (the sizes N of L ∝ N^-α) must be > 0")
    y = jnp.asarray(loss, _F64)
    if y.shape != n.shape:
        raise ValueError(f"loss must have one value per n; got shapes {y.shape} and {n.shape}")
    x = jnp.log(n)
    w = (jnp.isfinite(y) & (y > 0)).astype(_F64)
    if not isinstance(w, jax.core.Tracer) and np.unique(np.asarray(n)[np.asarray(w) > 0]).size < 2:
        raise ValueError(
            "loglog_slope needs at least two distinct n with a finite, positive loss; got "
            f"{int(jnp.sum(w))} usable point(s) of {n.shape[0]}"
        )
    y = jnp.log(jnp.where(w > 0, y, 1.0))
    xm = jnp.sum(w * x) / jnp.sum(w)
    ym = jnp.sum(w * y) / jnp.sum(w)
    return -jnp.sum(w * (x - xm) * (y - ym)) / jnp.sum(w * (x - xm) ** 2)
