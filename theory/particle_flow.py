"""The two-stage in-context denoiser: Stage-1 particle flow of attention layers, Stage-2 readout, the depth–noise law.

Subject: tokens moved as particles by layers of RBF attention (Stage 1), read out by attention of the noisy tokens
over the refined particles (Stage 2), the baselines that bracket it (blurring mean shift, Tweedie on a KDE), and
the time T*(ε) at which Stage 1 has removed the noise. Sources: Smart, Ganguly, Metya, Morozov, Sengupta,
"Attention as In-Context Empirical Bayes: A Two-Stage View via Particle Dynamics" (arXiv 2605.29351, 2026); Smart,
Bietti & Sengupta, ICML 2025 ("In-context denoising with one-layer transformers"); Cheng, IEEE TPAMI 1995 (blurring
mean shift); Silverman 1986 (KDE bandwidth). Conventions, derivations and the tests that hold them:
docs/attention.md (eqs. (2)–(4) below are (A-5), (A-7), (A-10) there); tests/test_particles.py.

Data (docs/attention.md, eq. (A-1)). Tokens y_i = x_i + σ z_i, x_i ~ ρ₀ i.i.d., z_i ~ N(0, I_d), i = 1..N; σ² is `sigma2`.
m_ε(q; {x_j}) is RBF attention, eq. (1) of `theory.attention`: the posterior mean of the empirical prior on the keys.

Stage 1 (eqs. (A-5)–(A-8)): every token is a query of attention over all tokens,

    x_i^{l+1} = x_i^l + α_l (m_{ε_l}(x_i^l; {x_j^l}) − x_i^l),     x_i^0 = y_i,                        (2)

an Euler step of size α_l ε_l of ẋ = ∇ log(ρ_t * G_ε)(x) (by (1)), so depth L reaches time T = Σ_l α_l ε_l.
α = 1 is Gaussian blurring mean shift. The mean-field flow ∂_t ρ = −∇·(ρ ∇ log(ρ * G_ε)) tends to the backward
heat equation ∂_t ρ = −Δρ as ε → 0, which removes variance 2T from every direction: the noise σ² is gone at
T* = σ²/2. For a Gaussian prior N(μ, s₀I) the mean field stays Gaussian, ρ_t = N(μ, v_t I) with
v̇ = −2v/(v + ε) (the velocity is −(x − μ)/(v + ε)), i.e. v + ε ln v = v₀ + ε ln v₀ − 2t; v = s₀ when

    T*(ε) = σ²/2 + (ε/2) ln(1 + σ²/s₀)                                                               (3)

(`gaussian_t_star`). With Euler steps the mean field obeys v ← v (1 − α ε/(v + ε))² (`gaussian_flow_variance`).

Stage 2 (eq. (A-10)): the long skip connection brings back the noisy token as the query, bandwidth σ²:

    x̂_i = m_{σ²}(y_i; {x_j^L}) = E_{ρ̂_L}[X | Y = y_i],                                               (4)

the Bayes posterior mean under the refined empirical prior ρ̂_L; it is exact when ρ̂_L = ρ₀ (N → ∞ at T*). At
finite N, even N exact prior samples leave a relative excess C/N, C = (1 + s₀/σ²)^d for a Gaussian prior
(`stage2_excess_constant`; docs (A-17)).

Baselines. Tweedie on a KDE of the noisy data with bandwidth h²: y + σ² ∇ log p̂_{h²}(y) =
(1 − σ²/h²) y + (σ²/h²) m_{h²}(y; {y_j}) (biased: p̂ estimates ρ₀ * N(0, (σ² + h²)I)). The oracle
probability-flow ODE with the exact score of ρ₀ is `theory.priors.probability_flow`.

Neighbours: `theory.attention` (each layer is `rbf_attention`), `theory.priors` (the priors, their exact
denoisers and MMSE that this estimator approaches), `models.attention` (the trainable transformer whose analytic
parameters reproduce `two_stage_denoise`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from deeptheory.theory._checks import (
    as_array,
    as_tokens,
    check_depth,
    check_integer,
    check_positive,
    check_tokens,
    data_map,
    fails,
    float64_theory,
    working_dtype,
)
from deeptheory.theory.attention import rbf_attention
from deeptheory.theory.priors import Prior, sample_prior

__all__ = [
    "particle_flow",
    "stage2_readout",
    "two_stage_denoise",
    "blurring_mean_shift",
    "kde_bandwidth",
    "tweedie_kde",
    "stage2_excess_constant",
    "stage2_asymptotic_particles",
    "gaussian_t_star",
    "gaussian_flow_variance",
    "TStar",
    "find_t_star",
    "parabolic_minimum",
]


def _per_layer(name: str, value, depth: int, dtype, hint: str):
    check_positive(name, value, hint)
    value = jnp.asarray(value, dtype)
    if value.ndim == 0:
        return jnp.full((depth,), value, dtype)
    if value.shape != (depth,):
        raise ValueError(f"{name} must be a scalar or one value per layer (shape ({depth},)); got shape {value.shape}")
    return value


@data_map
def particle_flow(tokens, *, eps, step, depth, return_trajectory: bool = False, chunk_size=None):
    """Stage 1 (eq. 2; docs/attention.md, eq. (A-5)): x^{l+1} = x^l + α_l (m_{ε_l}(x^l; {x^l}) − x^l), x^0 = tokens.

    Args: tokens (N, d); eps ε > 0 and step α > 0, scalars or one per layer (shape (depth,)); depth L ≥ 0.
    The flow reaches time T = Σ_l α_l ε_l. Returns the particles x^L (N, d), or with return_trajectory the
    stack (L + 1, N, d) of x^0..x^L.
    """
    x, vector = as_tokens(tokens)
    check_tokens("tokens", x)
    L = check_depth(depth, minimum=0, what="the number of Stage-1 layers")
    eps_L = _per_layer("eps", eps, L, x.dtype, "the Stage-1 attention bandwidth")
    step_L = _per_layer("step", step, L, x.dtype, "the residual step size α per layer")

    def layer(x, params):
        e, a = params
        x = x + a * (rbf_attention(x, x, bandwidth=e, chunk_size=chunk_size) - x)
        return x, (x if return_trajectory else None)

    final, path = lax.scan(layer, x, (eps_L, step_L))
    if return_trajectory:
        out = jnp.concatenate([x[None], path], axis=0)
        return out[..., 0] if vector else out
    return final[:, 0] if vector else final


@data_map
def stage2_readout(noisy, particles, *, sigma2, chunk_size=None) -> jax.Array:
    """Stage 2 (eq. 4; docs/attention.md, eq. (A-10)): x̂_i = m_{σ²}(y_i; {x_j^L}) = E_{ρ̂_L}[X | Y = y_i], the
    noisy token y_i (the long skip connection) as query over the refined particles, bandwidth the noise variance σ²."""
    check_positive("sigma2", sigma2, "the noise variance σ² of y = x + σ z")
    return rbf_attention(noisy, particles, bandwidth=sigma2, chunk_size=chunk_size)


@float64_theory
def stage2_excess_constant(sigma2, prior_variance, dim: int) -> jax.Array:
    """C = (1 + s₀/σ²)^d: Stage 2 reading out N i.i.d. draws of the Gaussian prior N(μ, s₀I_d) itself (oracle
    particles) has MSE = Bayes MSE × (1 + C/N + o(1/N)) as N → ∞ (docs/attention.md, eq. (A-17): the delta method
    on the self-normalised kernel average). C/N is the relative excess; N/C the effective number of particles.
    Exponential in d: a relative excess δ needs N ≈ (1 + s₀/σ²)^d/δ particles even when they are exact prior
    samples. The limit holds only for N ≫ `stage2_asymptotic_particles` (≫ C): C is carried by queries in the
    tails, whose effective number of particles is far below N/C; below that N the excess sits under C/N (not
    monotonically: near N ≈ C it can be a few per cent above)."""
    check_positive("sigma2", sigma2, "the noise variance σ²")
    check_positive("prior_variance", prior_variance, "the prior variance s₀")
    check_integer("dim", dim, minimum=1)
    return (1 + jnp.asarray(prior_variance, jnp.float64) / jnp.asarray(sigma2, jnp.float64)) ** dim


@float64_theory
def stage2_asymptotic_particles(sigma2, prior_variance, dim: int) -> jax.Array:
    """B^d with B = √(σ²/(2s₀ + σ²)) (1 + s₀/σ²) e^{s₀/σ²}: the particle count beyond which the C/N law of
    `stage2_excess_constant` holds (docs/attention.md, eq. (A-17)). The delta-method integral is carried by queries
    with |y|² ≈ d w, w = (2s₀ + σ²)(s₀ + σ²)/σ², where E k²/(E k)² — the inverse fraction of the N particles that
    carry one query's softmax — is B per coordinate; the law needs each such query to see many particles."""
    check_positive("sigma2", sigma2, "the noise variance σ²")
    check_positive("prior_variance", prior_variance, "the prior variance s₀")
    check_integer("dim", dim, minimum=1)
    s, v = jnp.asarray(prior_variance, jnp.float64), jnp.asarray(sigma2, jnp.float64)
    return (jnp.sqrt(v / (2 * s + v)) * (1 + s / v) * jnp.exp(s / v)) ** dim


@data_map
def two_stage_denoise(y, *, sigma2, eps, step, depth, return_trajectory: bool = False, chunk_size=None):
    """The two-stage empirical-Bayes denoiser of Smart et al. 2026 (eqs. 2 and 4; docs/attention.md, eqs. (A-5), (A-10)).

    Stage 1 moves the N noisy tokens y (N, d) as particles for `depth` layers of RBF attention with bandwidth
    eps and residual step `step` (scalars or per layer; T = Σ α ε); Stage 2 returns, for every token, the
    attention of the noisy y_i over the final particles with bandwidth sigma2 (σ² > 0, the noise variance).

    Returns x̂ (N, d), or (x̂, trajectory (depth + 1, N, d)) with return_trajectory. chunk_size: None for
    dense attention, an int for the memory-efficient online softmax (same result). depth = 0 is Tweedie on
    the KDE of the noisy tokens with bandwidth σ² (`tweedie_kde(y, bandwidth=σ²)`).
    """
    y_arr, vector = as_tokens(y)
    check_tokens("y", y_arr)
    check_positive("sigma2", sigma2, "the noise variance σ² of y = x + σ z")
    flow = particle_flow(y_arr, eps=eps, step=step, depth=depth, return_trajectory=return_trajectory,
                         chunk_size=chunk_size)
    path, final = (flow, flow[-1]) if return_trajectory else (None, flow)
    estimate = stage2_readout(y_arr, final, sigma2=sigma2, chunk_size=chunk_size)
    if vector:
        estimate, path = estimate[:, 0], (None if path is None else path[..., 0])
    return (estimate, path) if return_trajectory else estimate


@data_map
def blurring_mean_shift(y, *, eps, depth, return_trajectory: bool = False, chunk_size=None):
    """Gaussian blurring mean shift (Cheng 1995): x ← m_ε(x; {x}) `depth` times, i.e. Stage 1 with α = 1; as a
    denoiser the particles themselves are the estimates (no Stage 2)."""
    return particle_flow(y, eps=eps, step=1.0, depth=depth, return_trajectory=return_trajectory,
                         chunk_size=chunk_size)


@data_map
def kde_bandwidth(y) -> jax.Array:
    """Silverman's rule for a d-dimensional Gaussian KDE, h² = (4/((d + 2) N))^{2/(d+4)} · mean per-coordinate
    variance (Silverman 1986, eq. 4.14): the default bandwidth of `tweedie_kde`."""
    y, _ = as_tokens(y)
    N, d = y.shape
    return (4.0 / ((d + 2) * N)) ** (2.0 / (d + 4)) * jnp.mean(jnp.var(y, axis=0))


@data_map
def tweedie_kde(y, *, sigma2, bandwidth=None, chunk_size=None) -> jax.Array:
    """Single-step baseline: Tweedie's formula on a Gaussian KDE of the noisy tokens (docs/attention.md, eq. (A-12)),
    y + σ² ∇ log p̂_{h²}(y) = (1 − σ²/h²) y + (σ²/h²) m_{h²}(y; {y_j}); bandwidth h² (default Silverman's
    rule, `kde_bandwidth`). Biased for every h² > 0: p̂ estimates ρ₀ * N(0, (σ² + h²)I), not p_{σ²}."""
    y_arr, _ = as_tokens(y)
    check_tokens("y", y_arr)
    check_positive("sigma2", sigma2, "the noise variance σ² of y = x + σ z")
    h2 = kde_bandwidth(y_arr) if bandwidth is None else jnp.asarray(bandwidth, y_arr.dtype)
    check_positive("bandwidth", h2, "the KDE bandwidth h²")
    ratio = jnp.asarray(sigma2, y_arr.dtype) / h2
    out = (1 - ratio) * y_arr + ratio * rbf_attention(y_arr, y_arr, bandwidth=h2, chunk_size=chunk_size)
    return out[:, 0] if jnp.ndim(y) == 1 else out


# ------------------------------------------------------------------------------------------ depth–noise law


@float64_theory
def gaussian_t_star(sigma2, eps, prior_variance) -> jax.Array:
    """T*(ε) = σ²/2 + (ε/2) ln(1 + σ²/s₀): the time at which the mean-field Stage-1 flow brings N(μ, (s₀ + σ²)I)
    back to the prior N(μ, s₀I) (eq. 3; docs/attention.md, eq. (A-7)). Anisotropic priors: pass the eigenvalues,
    get one T* each."""
    check_positive("sigma2", sigma2, "the noise variance σ²")
    check_positive("prior_variance", prior_variance, "the prior variance s₀")
    eps = as_array(eps, "eps", dtype=jnp.float64, allow_empty=True)
    if fails(lambda e: e >= 0, eps):
        raise ValueError(f"eps must be >= 0 (ε = 0 is the backward heat equation); got {eps!r}")
    sigma2 = jnp.asarray(sigma2, jnp.float64)
    return 0.5 * sigma2 + 0.5 * eps * jnp.log1p(sigma2 / jnp.asarray(prior_variance, jnp.float64))


@float64_theory
def gaussian_flow_variance(initial_variance, *, eps, step, depth: int) -> jax.Array:
    """Mean-field particle variance along depth for a Gaussian prior with Euler steps (eq. 2):
    m_ε(x) − x = −ε (x − μ)/(v + ε), so x − μ scales by 1 − αε/(v + ε) and v ← v (1 − αε/(v + ε))². Returns
    the (depth + 1,) variances v_0..v_L."""
    check_positive("eps", eps, "the Stage-1 attention bandwidth")
    check_positive("step", step, "the residual step size α")
    L = check_depth(depth, minimum=0, what="the number of Stage-1 layers")
    check_positive("initial_variance", initial_variance, "the particle variance at depth 0")
    v0 = jnp.asarray(initial_variance, jnp.float64)
    eps, step = jnp.asarray(eps, jnp.float64), jnp.asarray(step, jnp.float64)

    def layer(v, _):
        v = v * (1 - step * eps / (v + eps)) ** 2
        return v, v

    return jnp.concatenate([v0[None], lax.scan(layer, v0, None, length=L)[1]])


class TStar(NamedTuple):
    time: jax.Array  # the MSE-minimising integration time (parabolic refinement between layers)
    depth: jax.Array  # the best layer index
    times: jax.Array  # (L + 1,) T of every depth
    mse: jax.Array  # (L + 1,) per-coordinate Stage-2 MSE against the clean signal


@float64_theory
def find_t_star(key, prior: Prior, *, sigma2, eps, step, max_depth: int, num_particles: int = 1024,
                chunk_size=None) -> TStar:
    """Numerical T* for any prior: draw N clean x ~ ρ₀ and noisy y = x + σ z, run Stage 1 for max_depth layers,
    apply Stage 2 at every depth, and return the depth minimising the per-coordinate MSE |x̂ − x|²/d, refined
    by the vertex of the parabola through the minimum and its neighbours (in T). The minimiser at finite N sits
    slightly below the mean-field T*(ε) (eq. 3) because the empirical prior at finite N is a little too spread."""
    check_positive("sigma2", sigma2, "the noise variance σ²")
    L = check_depth(max_depth, minimum=0, what="the number of Stage-1 layers")
    check_integer("num_particles", num_particles, minimum=1)
    k_x, k_z = jax.random.split(key)
    x = sample_prior(k_x, prior, num_particles)
    y = x + jnp.sqrt(jnp.asarray(sigma2, x.dtype)) * jax.random.normal(k_z, x.shape, x.dtype)
    path = particle_flow(y, eps=eps, step=step, depth=L, return_trajectory=True, chunk_size=chunk_size)
    mse = lax.map(lambda p: jnp.mean((stage2_readout(y, p, sigma2=sigma2, chunk_size=chunk_size) - x) ** 2), path)
    times = jnp.concatenate([jnp.zeros((1,), x.dtype), jnp.cumsum(jnp.broadcast_to(
        jnp.asarray(step, x.dtype) * jnp.asarray(eps, x.dtype), (L,)))])
    return TStar(parabolic_minimum(times, mse), jnp.argmin(mse), times, mse)


@data_map
def parabolic_minimum(t, f) -> jax.Array:
    """The minimiser of f sampled at increasing t, refined by the vertex of the parabola through the grid
    minimum i and its neighbours (non-uniform spacing; Numerical Recipes §10.3), clipped to [t_{i−1}, t_{i+1}];
    t[i] itself at the ends of the grid or where the three points are not convex."""
    t = as_array(t, "t", ndim=1, what="increasing sample points")
    f = as_array(f, "f", ndim=1, what="one value per t")
    if t.shape != f.shape:
        raise ValueError(f"t and f must have the same length; got {t.shape} and {f.shape}")
    dtype = working_dtype(t, f)
    t, f = t.astype(dtype), f.astype(dtype)
    i = jnp.argmin(f)
    n = t.shape[0]
    j = jnp.clip(i, 1, max(n - 2, 1))
    t0, t1, t2 = t[j - 1], t[j], t[jnp.minimum(j + 1, n - 1)]
    f0, f1, f2 = f[j - 1], f[j], f[jnp.minimum(j + 1, n - 1)]
    num = (t1 - t0) ** 2 * (f1 - f2) - (t1 - t2) ** 2 * (f1 - f0)
    den = (t1 - t0) * (f1 - f2) - (t1 - t2) * (f1 - f0)
    ok = (n >= 3) & (i > 0) & (i < n - 1) & (den < 0)  # den < 0 ⇔ convex for t0 < t1 < t2
    vertex = jnp.clip(t1 - 0.5 * num / jnp.where(ok, den, 1.0), t0, t2)
    return jnp.where(ok, vertex, t[i])
