"""Priors ρ₀ of clean tokens, their Bayes-optimal denoisers, MMSE, and the oracle probability-flow ODE.

Subject: the data distributions of the attention pillar (Gaussian, isotropic mixture, discrete, subspace, sphere;
`make_prior`, `sample_prior`) and, for Y = X + σ Z, the exact posterior mean E[X | Y] (`bayes_posterior_mean`),
the Bayes risk (`bayes_mmse`) and the oracle-score probability-flow ODE (`probability_flow`): the references the
learned and the in-context denoisers are measured against. Sources: Efron, JASA 2011 (Tweedie's formula); Song et
al., ICLR 2021 (probability-flow ODE); DLMF 10.29, 10.40 (Bessel ratios). Derivations and the tests that hold them:
docs/attention.md, eqs. (A-13)–(A-15); tests/test_particles.py. "Prior" here is only this data distribution; a weight
prior is described by `weight_var` (docs/conventions.md).

Bayes posterior means (eqs. (A-14)–(A-15); noise σ²):
- Gaussian N(μ, Σ₀): μ + Σ₀ (Σ₀ + σ²I)⁻¹ (y − μ); MMSE = Σ_i l_i σ²/(l_i + σ²), l = eig(Σ₀).
- isotropic mixture Σ_k w_k N(μ_k, s₀I): p(k | y) = softmax_k(ln w_k − |y − μ_k|²/(2(s₀ + σ²))) and
  E[X | y, k] = (s₀ y + σ² μ_k)/(s₀ + σ²). s₀ = 0 is a discrete prior; ±μ gives μ tanh(μ·y/σ²).
- subspace X = V z, z ~ N(0, s₀ I_k), VᵀV = I: (s₀/(s₀ + σ²)) V Vᵀ y; MMSE = k s₀ σ²/(s₀ + σ²).
- sphere X = R V u, u uniform on S^{k−1}: p(u | y) ∝ exp(R u·Vᵀy/σ²) is von Mises–Fisher with κ = R|Vᵀy|/σ²,
  so E[X | y] = R A_k(κ) V Vᵀy/|Vᵀy| with A_k = I_{k/2}/I_{k/2−1} (`vmf_mean_length`).
MMSE = E|X|² − E|E[X | Y]|² (orthogonality), exact where closed and otherwise Monte Carlo of the second term.

The oracle probability-flow ODE: p_s = ρ₀ * N(0, sI) is carried from s = σ² to s → 0 by dx/ds = −½ ∇ log p_s(x)
(Song et al. 2021, VE SDE) with the exact score ∇ log p_s(x) = (E_{ρ₀}[X | X + √s Z = x] − x)/s; in u = ln s,
dx/du = −½ (E[X | ·] − x), which stays finite as s → 0 for every prior here (`probability_flow`).

Neighbours: `theory.attention` (RBF attention is this posterior mean for the empirical prior), `theory.particle_flow`
(the in-context denoiser that approaches `bayes_posterior_mean`; `find_t_star` draws from `sample_prior`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from deeptheory.theory._checks import (
    as_array,
    check_integer,
    check_positive,
    fails,
    float64_theory,
    is_concrete,
    working_dtype,
)

__all__ = [
    "GaussianPrior",
    "MixturePrior",
    "DiscretePrior",
    "SubspacePrior",
    "SpherePrior",
    "Prior",
    "make_prior",
    "sample_prior",
    "vmf_mean_length",
    "bayes_posterior_mean",
    "prior_second_moment",
    "bayes_mmse",
    "probability_flow",
]


class GaussianPrior(NamedTuple):
    """N(mean, cov): mean (d,), cov (d, d) symmetric positive semi-definite."""

    mean: jax.Array
    cov: jax.Array

    @property
    def kind(self) -> str:
        return "gaussian"

    @property
    def dim(self) -> int:
        return self.mean.shape[-1]


class MixturePrior(NamedTuple):
    """Isotropic Gaussian mixture Σ_k w_k N(μ_k, s₀ I): means (K, d), weights (K,) (normalised here), variance s₀ ≥ 0."""

    means: jax.Array
    weights: jax.Array
    variance: jax.Array

    @property
    def kind(self) -> str:
        return "mixture"

    @property
    def dim(self) -> int:
        return self.means.shape[-1]


class DiscretePrior(NamedTuple):
    """Σ_k w_k δ_{a_k}: atoms (K, d), weights (K,) (normalised here)."""

    atoms: jax.Array
    weights: jax.Array

    @property
    def kind(self) -> str:
        return "discrete"

    @property
    def dim(self) -> int:
        return self.atoms.shape[-1]


class SubspacePrior(NamedTuple):
    """X = V z, z ~ N(0, s₀ I_k): basis V (d, k) with orthonormal columns, variance s₀ > 0."""

    basis: jax.Array
    variance: jax.Array

    @property
    def kind(self) -> str:
        return "subspace"

    @property
    def dim(self) -> int:
        return self.basis.shape[0]


class SpherePrior(NamedTuple):
    """X = R V u, u uniform on the unit sphere S^{k−1}: basis V (d, k) with orthonormal columns, radius R > 0."""

    basis: jax.Array
    radius: jax.Array

    @property
    def kind(self) -> str:
        return "sphere"

    @property
    def dim(self) -> int:
        return self.basis.shape[0]


Prior = GaussianPrior | MixturePrior | DiscretePrior | SubspacePrior | SpherePrior
_KINDS = {"gaussian": GaussianPrior, "mixture": MixturePrior, "discrete": DiscretePrior, "subspace": SubspacePrior,
          "sphere": SpherePrior}


def _f(x, dtype):
    return jnp.asarray(x, dtype)


@float64_theory
def make_prior(kind: str, *, dim: int | None = None, mean=None, cov=None, variance=None, means=None, atoms=None,
               weights=None, basis=None, radius=None, dtype=jnp.float64) -> Prior:
    """A prior from its kind and parameters, validated (each wrong value raises one ValueError that says how).

        make_prior("gaussian", mean=μ, cov=Σ)          or  make_prior("gaussian", dim=d, variance=s₀)  (N(0, s₀I))
        make_prior("mixture", means=(K, d), variance=s₀, weights=None)   (equal weights by default)
        make_prior("discrete", atoms=(K, d), weights=None)
        make_prior("subspace", basis=V (d, k), variance=s₀)
        make_prior("sphere", basis=V (d, k), radius=R)    (basis=None with dim: the whole R^d)
    """
    if kind not in _KINDS:
        raise ValueError(f"unknown prior kind {kind!r}; choose one of {', '.join(_KINDS)}")
    if kind == "gaussian":
        if mean is None:
            if dim is None:
                raise ValueError("a Gaussian prior needs `mean` (d,) or `dim`")
            mean = np.zeros(int(dim))
        mean = _f(mean, dtype).reshape(-1)
        d = mean.shape[0]
        if cov is None:
            cov = (1.0 if variance is None else variance) * np.eye(d)
        cov = _f(cov, dtype)
        if cov.ndim == 0:
            cov = cov * jnp.eye(d, dtype=dtype)
        elif cov.ndim == 1:
            cov = jnp.diag(cov)
        prior = GaussianPrior(mean, cov)
    elif kind in ("mixture", "discrete"):
        centres = means if kind == "mixture" else atoms
        if centres is None:
            raise ValueError(f"a {kind} prior needs `{'means' if kind == 'mixture' else 'atoms'}` of shape (K, d)")
        centres = _f(centres, dtype)
        centres = centres[:, None] if centres.ndim == 1 else centres
        K = centres.shape[0]
        w = _f(np.full(K, 1.0 / K) if weights is None else weights, dtype).reshape(-1)
        if kind == "mixture":
            prior = MixturePrior(centres, w, _f(0.0 if variance is None else variance, dtype))
        else:
            prior = DiscretePrior(centres, w)
    else:
        if basis is None:
            if dim is None:
                raise ValueError(f"a {kind} prior needs `basis` (d, k) with orthonormal columns, or `dim` (basis I)")
            basis = np.eye(int(dim))
        basis = _f(basis, dtype)
        if kind == "subspace":
            prior = SubspacePrior(basis, _f(1.0 if variance is None else variance, dtype))
        else:
            prior = SpherePrior(basis, _f(1.0 if radius is None else radius, dtype))
    _check_prior(prior)
    return prior


def _check_prior(prior) -> None:
    """Shapes always; values when concrete."""
    if not isinstance(prior, tuple(_KINDS.values())):
        raise ValueError(f"prior must be one of {', '.join(c.__name__ for c in _KINDS.values())} (see make_prior); "
                         f"got {type(prior).__name__}")
    if prior.kind == "gaussian":
        d = prior.mean.shape[-1] if prior.mean.ndim == 1 else -1
        if prior.mean.ndim != 1 or prior.cov.shape != (d, d):
            raise ValueError(f"Gaussian prior: mean must be (d,) and cov (d, d); got {prior.mean.shape}, {prior.cov.shape}")
        if is_concrete(prior.cov):
            c = np.asarray(prior.cov, np.float64)
            if not np.allclose(c, c.T, rtol=1e-10, atol=1e-12 * np.abs(c).max()) or np.linalg.eigvalsh(c).min() < \
                    -1e-10 * max(np.abs(c).max(), 1e-300):
                raise ValueError("Gaussian prior: cov must be symmetric positive semi-definite")
    elif prior.kind in ("mixture", "discrete"):
        centres = prior[0]
        if centres.ndim != 2 or centres.shape[0] == 0 or prior.weights.shape != (centres.shape[0],):
            raise ValueError(f"{prior.kind} prior: need centres (K, d), K >= 1, and weights (K,); got "
                             f"{centres.shape} and {prior.weights.shape}")
        if is_concrete(prior.weights):
            w = np.asarray(prior.weights)
            if not (np.all(w >= 0) and w.sum() > 0 and np.all(np.isfinite(w))):
                raise ValueError(f"{prior.kind} prior: weights must be >= 0, finite, with a positive sum; got {w}")
        if prior.kind == "mixture" and is_concrete(prior.variance) and not float(prior.variance) >= 0:
            raise ValueError(f"mixture prior: variance s₀ must be >= 0; got {prior.variance}")
    else:
        V = prior.basis
        if V.ndim != 2 or V.shape[1] == 0 or V.shape[1] > V.shape[0]:
            raise ValueError(f"{prior.kind} prior: basis must be (d, k) with 1 <= k <= d; got {V.shape}")
        if is_concrete(V):
            V_np = np.asarray(V, np.float64)  # NumPy: inside a trace, jnp's V.T @ V would be a tracer
            gram = V_np.T @ V_np
            if not np.allclose(gram, np.eye(V.shape[1]), atol=1e-6):
                raise ValueError(f"{prior.kind} prior: basis columns must be orthonormal (VᵀV = I); "
                                 "orthonormalise with jnp.linalg.qr(V)[0]")
        scale = prior.variance if prior.kind == "subspace" else prior.radius
        if is_concrete(scale) and not float(scale) > 0:
            raise ValueError(f"{prior.kind} prior: {'variance' if prior.kind == 'subspace' else 'radius'} must be > 0; "
                             f"got {scale}")


def _log_weights(weights):
    return jnp.log(weights) - jnp.log(jnp.sum(weights))


@float64_theory
def sample_prior(key, prior: Prior, n: int) -> jax.Array:
    """n i.i.d. draws (n, d) from the prior, in the prior's dtype."""
    _check_prior(prior)
    check_integer("n", n, minimum=0, what="the number of draws")
    k_comp, k_noise = jax.random.split(key)
    if prior.kind == "gaussian":
        lam, U = jnp.linalg.eigh(prior.cov)  # a PSD square root: also for singular covariances
        z = jax.random.normal(k_noise, (n, prior.dim), prior.mean.dtype)
        return prior.mean[None, :] + (z * jnp.sqrt(jnp.maximum(lam, 0))[None, :]) @ U.T
    if prior.kind in ("mixture", "discrete"):
        centres = prior[0]
        comp = jax.random.categorical(k_comp, _log_weights(prior.weights), shape=(n,))
        x = centres[comp]
        if prior.kind == "mixture":
            x = x + jnp.sqrt(prior.variance) * jax.random.normal(k_noise, x.shape, x.dtype)
        return x
    z = jax.random.normal(k_noise, (n, prior.basis.shape[1]), prior.basis.dtype)
    if prior.kind == "subspace":
        return jnp.sqrt(prior.variance) * z @ prior.basis.T
    return prior.radius * (z / jnp.linalg.norm(z, axis=-1, keepdims=True)) @ prior.basis.T


@float64_theory
def vmf_mean_length(kappa, dim: int) -> jax.Array:
    """A_k(κ) = I_{k/2}(κ)/I_{k/2−1}(κ), the mean resultant length of the von Mises–Fisher law on S^{k−1}.

    Small κ (≤ κ_c = 50 + 2ν², ν = k/2): backward recurrence of the ratio r_n = I_n/I_{n−1} = κ/(2n + κ r_{n+1})
    (DLMF 10.29.1) from n = ν + κ_c + 64, started at the Amos-type estimate κ/(n − ½ + √((n + ½)² + κ²));
    the recurrence contracts errors, so the start is forgotten. Large κ: the ratio of Hankel's expansions
    I_ν(κ) ~ e^κ/√(2πκ) Σ_m (−1)^m a_m(ν)/κ^m (DLMF 10.40.1), 12 terms. Both agree with SciPy to ~1e-13.
    """
    k = check_integer("dim", dim, minimum=1, what="the sphere dimension k")
    nu = 0.5 * k
    kappa = as_array(kappa, "kappa", dtype=working_dtype(kappa) if hasattr(kappa, "dtype") else jnp.float64,
                     allow_empty=True)
    if fails(lambda k: k >= 0, kappa):
        raise ValueError("kappa (the von Mises–Fisher concentration) must be >= 0")
    kappa_c = 50.0 + 2.0 * nu * nu
    extra = int(math.ceil(kappa_c)) + 64
    small = jnp.minimum(kappa, kappa_c)
    n_top = nu + extra
    r = small / (n_top - 0.5 + jnp.sqrt((n_top + 0.5) ** 2 + small * small))

    def down(j, r):
        n = nu + extra - 1 - j
        return small / (2.0 * n + small * r)

    r_small = lax.fori_loop(0, extra, down, r)
    large = jnp.maximum(kappa, kappa_c)

    def hankel(mu):
        total, term = jnp.ones_like(large), jnp.ones_like(large)
        for m in range(1, 13):
            term = -term * (4 * mu * mu - (2 * m - 1) ** 2) / (m * 8.0 * large)
            total = total + term
        return total

    r_large = hankel(nu) / hankel(nu - 1.0)
    return jnp.where(kappa <= kappa_c, r_small, r_large)


@float64_theory
def bayes_posterior_mean(y, prior: Prior, sigma2) -> jax.Array:
    """E_{ρ₀}[X | Y = y] for Y = X + σ Z, Z ~ N(0, I) (docs/attention.md, eq. (A-14); formulas in the module docstring).

    y: (..., d) (a 1-D array is read as d = 1 when the prior is one-dimensional); prior: a `make_prior` result;
    sigma2: σ² > 0. Returns an array shaped like y.
    """
    _check_prior(prior)
    check_positive("sigma2", sigma2, "the noise variance σ² of y = x + σ z")
    dtype = prior[0].dtype
    y = as_array(y, "y", dtype=dtype, what="(..., d) noisy observations", allow_empty=True)
    squeeze = prior.dim == 1 and (y.ndim == 1 and y.shape[-1] != 1 or y.ndim == 0)
    if squeeze:
        y = y[..., None]
    if y.shape[-1] != prior.dim:
        raise ValueError(f"y has dimension {y.shape[-1]} but the prior lives in d = {prior.dim}: mismatched dimensions")
    s2 = jnp.asarray(sigma2, dtype)
    shape = y.shape
    y = y.reshape(-1, prior.dim)  # (M, d): explicit broadcasting below
    if prior.kind == "gaussian":
        eye = jnp.eye(prior.dim, dtype=dtype)
        chol = jnp.linalg.cholesky(prior.cov + s2 * eye)  # PD for σ² > 0: no jitter needed
        solved = jax.scipy.linalg.cho_solve((chol, True), (y - prior.mean[None, :]).T)  # (Σ₀ + σ²I)⁻¹ (y − μ)
        out = prior.mean[None, :] + (prior.cov @ solved).T
    elif prior.kind in ("mixture", "discrete"):
        centres = prior[0]
        s0 = prior.variance if prior.kind == "mixture" else jnp.zeros((), dtype)
        total = s0 + s2
        sq = jnp.sum((y[:, None, :] - centres[None]) ** 2, axis=-1)  # (M, K)
        resp = jax.nn.softmax(_log_weights(prior.weights)[None, :] - sq / (2 * total), axis=-1)
        out = (s0 * y + s2 * (resp @ centres)) / total
    elif prior.kind == "subspace":
        out = (prior.variance / (prior.variance + s2)) * (y @ prior.basis) @ prior.basis.T
    else:
        coords = y @ prior.basis  # Vᵀy
        norm = jnp.linalg.norm(coords, axis=-1, keepdims=True)
        kappa = prior.radius * norm / s2
        length = vmf_mean_length(kappa, prior.basis.shape[1])
        direction = coords / jnp.where(norm > 0, norm, 1.0)
        out = (prior.radius * length * direction) @ prior.basis.T
    out = out.reshape(shape)
    return out[..., 0] if squeeze else out


@float64_theory
def prior_second_moment(prior: Prior) -> jax.Array:
    """E|X|² under the prior."""
    _check_prior(prior)
    if prior.kind == "gaussian":
        return jnp.sum(prior.mean ** 2) + jnp.trace(prior.cov)
    if prior.kind in ("mixture", "discrete"):
        w = jnp.exp(_log_weights(prior.weights))
        spread = prior.dim * prior.variance if prior.kind == "mixture" else 0.0
        return jnp.sum(w * jnp.sum(prior[0] ** 2, axis=-1)) + spread
    if prior.kind == "subspace":
        return prior.basis.shape[1] * prior.variance
    return prior.radius ** 2


@float64_theory
def bayes_mmse(prior: Prior, sigma2, *, key=None, num_samples: int = 2 ** 16) -> jax.Array:
    """The Bayes risk E|X − E[X | Y]|² summed over the d coordinates (divide by d for per-coordinate MSE).

    Closed for Gaussian (Σ_i l_i σ²/(l_i + σ²)) and subspace (k s₀σ²/(s₀ + σ²)). Otherwise Monte Carlo with
    `num_samples` draws and `key` (required): E|X|² (exact) − mean |E[X | Y]|², unbiased, and with less variance
    than averaging squared errors because E[X | Y] varies less than X.
    """
    _check_prior(prior)
    check_positive("sigma2", sigma2, "the noise variance σ² of y = x + σ z")
    s2 = jnp.asarray(sigma2, prior[0].dtype)
    if prior.kind == "gaussian":
        lam = jnp.maximum(jnp.linalg.eigvalsh(prior.cov), 0)
        return jnp.sum(lam * s2 / (lam + s2))
    if prior.kind == "subspace":
        return prior.basis.shape[1] * prior.variance * s2 / (prior.variance + s2)
    if key is None:
        raise ValueError(f"the {prior.kind} prior's MMSE has no closed form: pass `key` for the Monte Carlo estimate")
    k_x, k_z = jax.random.split(key)
    x = sample_prior(k_x, prior, num_samples)
    y = x + jnp.sqrt(s2) * jax.random.normal(k_z, x.shape, x.dtype)
    return prior_second_moment(prior) - jnp.mean(jnp.sum(bayes_posterior_mean(y, prior, s2) ** 2, axis=-1))


@float64_theory
def probability_flow(y, prior: Prior, *, sigma2, final_variance=None, steps: int = 64) -> jax.Array:
    """Oracle-score probability-flow ODE: carry y ~ ρ₀ * N(0, σ²I) to ρ₀ * N(0, s_end I) deterministically.

    dx/ds = −½ ∇ log p_s(x) (Song et al. 2021, VE SDE); in u = ln s it reads dx/du = −½ (E[X | ·; s] − x),
    integrated with `steps` classical RK4 steps uniform in u from ln σ² to ln s_end (default s_end = 1e-4 σ²).
    For N(μ, s₀I) the exact map is x = μ + √((s₀ + s_end)/(s₀ + σ²)) (y − μ) (tested). With Stage 2 on top
    (`stage2_readout`) it is the ε → 0, N-sample oracle of Stage 1.
    """
    check_positive("sigma2", sigma2, "the noise variance σ² of y = x + σ z")
    s_end = 1e-4 * sigma2 if final_variance is None else final_variance
    check_positive("final_variance", s_end, "the variance s_end left at the end of the flow")
    if is_concrete(s_end) and is_concrete(sigma2) and not float(s_end) < float(sigma2):
        raise ValueError(f"final_variance must be < sigma2; got {s_end} >= {sigma2}")
    _check_prior(prior)
    check_integer("steps", steps, minimum=1, what="RK4 steps")
    x = as_array(y, "y", dtype=prior[0].dtype, what="(..., d) noisy observations", allow_empty=True)
    u0, u1 = jnp.log(jnp.asarray(sigma2, x.dtype)), jnp.log(jnp.asarray(s_end, x.dtype))
    h = (u1 - u0) / steps

    def velocity(x, u):
        return -0.5 * (bayes_posterior_mean(x, prior, jnp.exp(u)) - x)

    def rk4(i, x):
        u = u0 + i * h
        k1 = velocity(x, u)
        k2 = velocity(x + 0.5 * h * k1, u + 0.5 * h)
        k3 = velocity(x + 0.5 * h * k2, u + 0.5 * h)
        k4 = velocity(x + h * k3, u + h)
        return x + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)

    return lax.fori_loop(0, int(steps), rk4, x)
