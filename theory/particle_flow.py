"""Attention as in-context empirical Bayes: RBF attention, particle flows, Bayes-optimal denoisers.

Sources: Smart, Ganguly, Metya, Morozov, Sengupta, "Attention as In-Context Empirical Bayes: A Two-Stage View
via Particle Dynamics" (arXiv 2605.29351, 2026); Smart, Bietti & Sengupta, ICML 2025 ("In-context denoising
with one-layer transformers"); Efron, JASA 2011 (Tweedie's formula); Cheng, IEEE TPAMI 1995 (blurring mean
shift); Song et al., ICLR 2021 (probability-flow ODE); Milakov & Gimelshein 2018 / Rabe & Staats 2021 (online
softmax, memory-efficient attention). Conventions, derivations and the tests that hold them: docs/attention.md
(eqs. (1)–(4) below are (A-3), (A-5), (A-7), (A-10) there); every equation is re-derived below and checked in
tests/test_particles.py.

Data (docs/attention.md, eq. (A-1)). Tokens y_i = x_i + σ z_i, x_i ~ ρ₀ i.i.d., z_i ~ N(0, I_d), i = 1..N; σ² is `sigma2`.

RBF attention is a posterior mean (eqs. (A-2)–(A-4)). With weights w_j(q) = softmax_j(−|q − x_j|²/(2ε)),

    m_ε(q; {x_j}) = Σ_j w_j(q) x_j = q + ε ∇ log (ρ̂ * N(0, εI))(q) = E_ρ̂[X | X + √ε Z = q],        (1)

ρ̂ = (1/N) Σ_j δ_{x_j}: ∇ log Σ_j exp(−|q − x_j|²/(2ε)) = Σ_j w_j (x_j − q)/ε, which is Tweedie's formula for
the empirical prior. −|q − x_j|²/(2ε) = [q·x_j − |x_j|²/2]/ε − |q|²/(2ε) and the last term is the same for
every key, so RBF attention is dot-product attention with logits q·k/ε plus the key-norm bias −|k|²/(2ε)
(`dot_product_attention(..., key_norm_bias=True)`); without the bias the two differ unless |k_j| is constant.

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

the Bayes posterior mean under the refined empirical prior ρ̂_L; it is exact when ρ̂_L = ρ₀ (N → ∞ at T*).

Baselines. Tweedie on a KDE of the noisy data with bandwidth h²: y + σ² ∇ log p̂_{h²}(y) =
(1 − σ²/h²) y + (σ²/h²) m_{h²}(y; {y_j}) (biased: p̂ estimates ρ₀ * N(0, (σ² + h²)I)). The oracle
probability-flow ODE: p_s = ρ₀ * N(0, sI) is carried from s = σ² to s → 0 by dx/ds = −½ ∇ log p_s(x)
(Song et al. 2021, VE SDE) with the exact score ∇ log p_s(x) = (E_{ρ₀}[X | X + √s Z = x] − x)/s; in u = ln s,
dx/du = −½ (E[X | ·] − x), which stays finite as s → 0 for every prior here (`probability_flow`).

Bayes posterior means (eqs. (A-14)–(A-15); noise σ²):
- Gaussian N(μ, Σ₀): μ + Σ₀ (Σ₀ + σ²I)⁻¹ (y − μ); MMSE = Σ_i l_i σ²/(l_i + σ²), l = eig(Σ₀).
- isotropic mixture Σ_k w_k N(μ_k, s₀I): p(k | y) = softmax_k(ln w_k − |y − μ_k|²/(2(s₀ + σ²))) and
  E[X | y, k] = (s₀ y + σ² μ_k)/(s₀ + σ²). s₀ = 0 is a discrete prior; ±μ gives μ tanh(μ·y/σ²).
- subspace X = V z, z ~ N(0, s₀ I_k), VᵀV = I: (s₀/(s₀ + σ²)) V Vᵀ y; MMSE = k s₀ σ²/(s₀ + σ²).
- sphere X = R V u, u uniform on S^{k−1}: p(u | y) ∝ exp(R u·Vᵀy/σ²) is von Mises–Fisher with κ = R|Vᵀy|/σ²,
  so E[X | y] = R A_k(κ) V Vᵀy/|Vᵀy| with A_k = I_{k/2}/I_{k/2−1} (`vmf_mean_length`).
MMSE = E|X|² − E|E[X | Y]|² (orthogonality), exact where closed and otherwise Monte Carlo of the second term.
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
    check_depth,
    check_integer,
    check_positive,
    data_map,
    fails,
    float64_theory,
    is_concrete,
    working_dtype,
)

__all__ = [
    "rbf_attention",
    "dot_product_attention",
    "particle_flow",
    "stage2_readout",
    "two_stage_denoise",
    "blurring_mean_shift",
    "tweedie_kde",
    "kde_bandwidth",
    "GaussianPrior",
    "MixturePrior",
    "DiscretePrior",
    "SubspacePrior",
    "SpherePrior",
    "Prior",
    "make_prior",
    "sample_prior",
    "bayes_posterior_mean",
    "bayes_mmse",
    "prior_second_moment",
    "prior_score",
    "probability_flow",
    "vmf_mean_length",
    "gaussian_t_star",
    "gaussian_flow_variance",
    "TStar",
    "find_t_star",
    "parabolic_minimum",
]


# ----------------------------------------------------------------------------------------------- input checks


def _check_tokens(name: str, x) -> None:
    if x.ndim != 2:
        raise ValueError(f"{name} must be a (N, d) array of N tokens in dimension d; got shape {x.shape}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty context (N = 0 tokens): attention needs at least one key")
    if x.shape[1] == 0:
        raise ValueError(f"{name} has dimension d = 0; tokens need at least one coordinate")


def _check_depth(depth) -> int:
    return check_depth(depth, minimum=0, what="the number of Stage-1 layers")


def _as_tokens(y, name: str = "tokens"):
    """(N,) → (N, 1) so that 1-D data can be passed as a vector; returns (array, was_vector). Finite, in the
    working dtype of a data map (theory._checks: float32 stays float32, anything else becomes float64)."""
    y = as_array(y, name, ndim=(1, 2), what="a (N, d) array of N tokens in dimension d, or (N,) for d = 1", allow_empty=True)
    y = y.astype(working_dtype(y))
    return (y[:, None], True) if y.ndim == 1 else (y, False)


# ------------------------------------------------------------------------------------------------- attention


def _logits(q_MxD, k_NxD, inv_bandwidth, key_norm_bias: bool):
    """(q·k − b|k|²/2)/ε: RBF logits up to the per-query constant −|q|²/(2ε) when b = 1 (eq. 1)."""
    logits = q_MxD @ k_NxD.T
    if key_norm_bias:
        logits = logits - 0.5 * jnp.sum(k_NxD * k_NxD, axis=-1)[None, :]
    return logits * inv_bandwidth


def _power_of_two_at_least(x):
    """The smallest power of two >= max(|x|, 1): dividing by it is exact and brings every entry into [−1, 1]."""
    largest = jnp.max(jnp.abs(x))
    return jnp.exp2(jnp.maximum(jnp.ceil(jnp.log2(jnp.where(largest > 0, largest, 1.0))), 0.0)).astype(x.dtype)


def _one_hot_where_degenerate(out, normaliser, fallback):
    """Where every weight underflowed (normaliser 0) or one overflowed (inf), the softmax is one-hot to working
    precision: return the value at the largest logit instead of 0/0. This happens only at logits so large that their
    rounding exceeds ~88: XLA fuses the row max and exp(logit − max) separately, and with FMA the largest entry minus
    "itself" is its rounding residual, not 0 (at logits ~1e34 in float32 it came out 1.7e27)."""
    ok = jnp.isfinite(normaliser) & (normaliser > 0)
    return jnp.where(ok[:, None], out, fallback)


def _dense_attention(q_MxD, k_NxD, v_NxV, inv_bandwidth, key_norm_bias):
    logits = _logits(q_MxD, k_NxD, inv_bandwidth, key_norm_bias)
    unnormalised = jnp.exp(logits - lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True)))
    normaliser = jnp.sum(unnormalised, axis=-1)
    out = (unnormalised / normaliser[:, None]) @ v_NxV  # = jax.nn.softmax(logits) @ v
    return _one_hot_where_degenerate(out, normaliser, v_NxV[jnp.argmax(logits, axis=-1)])


def _online_attention(q_MxD, k_NxD, v_NxV, inv_bandwidth, key_norm_bias, chunk: int):
    """Online softmax over key chunks (Milakov & Gimelshein 2018): running max m, normaliser l and weighted sum
    a per query, rescaled by exp(m_old − m_new) whenever the max grows, so no exp overflows and only an
    (M, chunk) block of logits exists at a time. Padding keys get logit −∞ → weight exactly 0."""
    N, dtype = k_NxD.shape[0], q_MxD.dtype
    n_chunks = -(-N // chunk)
    pad = n_chunks * chunk - N
    k = jnp.pad(k_NxD, ((0, pad), (0, 0))).reshape(n_chunks, chunk, -1)
    v = jnp.pad(v_NxV, ((0, pad), (0, 0))).reshape(n_chunks, chunk, -1)
    valid = (jnp.arange(n_chunks * chunk) < N).reshape(n_chunks, chunk)
    M = q_MxD.shape[0]

    def step(carry, block):
        m, l, a, best = carry
        k_c, v_c, valid_c = block
        s = jnp.where(valid_c[None, :], _logits(q_MxD, k_c, inv_bandwidth, key_norm_bias), -jnp.inf)
        chunk_max = jnp.max(s, axis=-1)
        m_new = jnp.maximum(m, chunk_max)  # finite: the first chunk holds a real key
        best = jnp.where((chunk_max > m)[:, None], v_c[jnp.argmax(s, axis=-1)], best)  # value at the largest logit
        scale = jnp.exp(m - m_new)
        p = jnp.exp(s - m_new[:, None])
        return (m_new, l * scale + jnp.sum(p, axis=-1), a * scale[:, None] + p @ v_c, best), None

    V = v_NxV.shape[1]
    init = (jnp.full((M,), -jnp.inf, dtype), jnp.zeros((M,), dtype), jnp.zeros((M, V), dtype), jnp.zeros((M, V), dtype))
    (_, l, a, best), _ = lax.scan(step, init, (k, v, valid))
    return _one_hot_where_degenerate(a / l[:, None], l, best)


def _attention(queries, keys, values, bandwidth, *, key_norm_bias: bool, chunk_size):
    q, q_vector = _as_tokens(queries, "queries")
    k, _ = _as_tokens(keys, "keys")
    v = k if values is None else _as_tokens(values, "values")[0]
    _check_tokens("queries", q)
    _check_tokens("keys", k)
    _check_tokens("values", v)
    if q.shape[1] != k.shape[1]:
        raise ValueError(f"queries and keys need the same dimension d; got {q.shape[1]} and {k.shape[1]}")
    if v.shape[0] != k.shape[0]:
        raise ValueError(f"values need one row per key; got {v.shape[0]} values for {k.shape[0]} keys")
    check_positive("bandwidth", bandwidth, "the attention temperature ε in softmax(−|q − k|²/(2ε))")
    dtype = working_dtype(q, k, v)
    q, k, v = q.astype(dtype), k.astype(dtype), v.astype(dtype)
    # Overflow guard for huge tokens (|x| ~ 1e30 in float32 squares to inf, and inf − inf is NaN): divide queries and
    # keys by a power of two s >= 1 that brings them into [−1, 1] and multiply the logits by s²/ε instead of 1/ε —
    # exact, so results are bitwise unchanged unless something overflowed. The factor is capped where it would
    # overflow: the logits of the scaled tokens are at most 1.5 d in size, so the cap keeps them and their differences
    # finite, and a softmax at the cap is one-hot to working precision, as the uncapped one would be. Values are
    # scaled by their own power of two and the output scaled back.
    s_qk = jnp.maximum(_power_of_two_at_least(q), _power_of_two_at_least(k))
    s_v = _power_of_two_at_least(v)
    q, k, v = q / s_qk, k / s_qk, v / s_v
    cap = jnp.finfo(dtype).max / (8.0 * q.shape[1])
    inv_bandwidth = jnp.minimum((1.0 / jnp.asarray(bandwidth, dtype)) * s_qk * s_qk, cap)
    if chunk_size is None or int(chunk_size) >= k.shape[0]:
        out = _dense_attention(q, k, v, inv_bandwidth, key_norm_bias)
    else:
        chunk = int(chunk_size)
        if chunk < 1:
            raise ValueError(f"chunk_size must be a positive integer (or None for dense); got {chunk_size!r}")
        M = q.shape[0]
        if M <= chunk:
            out = _online_attention(q, k, v, inv_bandwidth, key_norm_bias, chunk)
        else:  # query blocks too: memory O(chunk² + N d) instead of O(M chunk)
            n_blocks = -(-M // chunk)
            q_blocks = jnp.pad(q, ((0, n_blocks * chunk - M), (0, 0))).reshape(n_blocks, chunk, -1)
            out = lax.map(lambda qb: _online_attention(qb, k, v, inv_bandwidth, key_norm_bias, chunk), q_blocks)
            out = out.reshape(n_blocks * chunk, -1)[:M]
    out = out * s_v
    return out[:, 0] if q_vector and values is None else out


@data_map
def rbf_attention(queries, keys, values=None, *, bandwidth, chunk_size=None) -> jax.Array:
    """RBF (Gaussian-kernel) attention m_ε(q) = Σ_j softmax_j(−|q − k_j|²/(2ε)) v_j (eq. 1; docs/attention.md,
    eqs. (A-2)–(A-3)).

    With values = keys it is the posterior mean E_ρ̂[X | X + √ε Z = q] of the empirical prior on the keys
    (Tweedie's formula, Efron 2011). Args: queries (M, d), keys (N, d), values (N, V) (default: the keys);
    bandwidth ε > 0 (scalar, may be traced); chunk_size: None for the dense (M, N) softmax, or an int for the
    online softmax over key chunks (and query blocks) of that size — memory O(chunk² + N d), equal to the dense
    result up to rounding. 1-D inputs are read as d = 1.
    """
    return _attention(queries, keys, values, bandwidth, key_norm_bias=True, chunk_size=chunk_size)


@data_map
def dot_product_attention(queries, keys, values=None, *, bandwidth, key_norm_bias: bool = False,
                          chunk_size=None) -> jax.Array:
    """Dot-product attention softmax_j(q·k_j/ε − b|k_j|²/(2ε)) v_j (docs/attention.md, eq. (A-4)).

    With key_norm_bias=True it equals `rbf_attention` exactly (the −|q|²/(2ε) term is constant over keys);
    without it, keys with large norm win regardless of distance, so it is a posterior mean only when every
    |k_j| is the same. Arguments as in `rbf_attention`.
    """
    return _attention(queries, keys, values, bandwidth, key_norm_bias=key_norm_bias, chunk_size=chunk_size)


# --------------------------------------------------------------------------------------- two-stage estimator


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
    x, vector = _as_tokens(tokens)
    _check_tokens("tokens", x)
    L = _check_depth(depth)
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
    y_arr, vector = _as_tokens(y)
    _check_tokens("y", y_arr)
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
    y, _ = _as_tokens(y)
    N, d = y.shape
    return (4.0 / ((d + 2) * N)) ** (2.0 / (d + 4)) * jnp.mean(jnp.var(y, axis=0))


@data_map
def tweedie_kde(y, *, sigma2, bandwidth=None, chunk_size=None) -> jax.Array:
    """Single-step baseline: Tweedie's formula on a Gaussian KDE of the noisy tokens (docs/attention.md, eq. (A-12)),
    y + σ² ∇ log p̂_{h²}(y) = (1 − σ²/h²) y + (σ²/h²) m_{h²}(y; {y_j}); bandwidth h² (default Silverman's
    rule, `kde_bandwidth`). Biased for every h² > 0: p̂ estimates ρ₀ * N(0, (σ² + h²)I), not p_{σ²}."""
    y_arr, _ = _as_tokens(y)
    _check_tokens("y", y_arr)
    check_positive("sigma2", sigma2, "the noise variance σ² of y = x + σ z")
    h2 = kde_bandwidth(y_arr) if bandwidth is None else jnp.asarray(bandwidth, y_arr.dtype)
    check_positive("bandwidth", h2, "the KDE bandwidth h²")
    ratio = jnp.asarray(sigma2, y_arr.dtype) / h2
    out = (1 - ratio) * y_arr + ratio * rbf_attention(y_arr, y_arr, bandwidth=h2, chunk_size=chunk_size)
    return out[:, 0] if jnp.ndim(y) == 1 else out


# ------------------------------------------------------------------------------------------------------ priors


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
            gram = np.asarray(V.T @ V, np.float64)
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
def prior_score(x, prior: Prior, variance) -> jax.Array:
    """∇ log (ρ₀ * N(0, sI))(x) = (E_{ρ₀}[X | X + √s Z = x] − x)/s (Tweedie), s = `variance` > 0."""
    check_positive("variance", variance, "the variance s of the Gaussian smoothing")
    return (bayes_posterior_mean(x, prior, variance) - jnp.asarray(x, prior[0].dtype)) / variance


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
    L = _check_depth(depth)
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
    L = _check_depth(max_depth)
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
