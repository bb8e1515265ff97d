"""RBF and dot-product attention as kernel smoothers: dense, and chunked by the online softmax.

Subject: the attention map m_ε(q; {k_j}, {v_j}) = Σ_j softmax_j(−|q − k_j|²/(2ε)) v_j and its dot-product form,
computed densely or over key chunks in O(chunk² + N d) memory, safe against overflow in float32. Sources: Smart,
Ganguly, Metya, Morozov, Sengupta, "Attention as In-Context Empirical Bayes: A Two-Stage View via Particle Dynamics"
(arXiv 2605.29351, 2026); Efron, JASA 2011 (Tweedie's formula); Milakov & Gimelshein 2018 / Rabe & Staats 2021
(online softmax, memory-efficient attention). Derivations and the tests that hold them: docs/attention.md,
eqs. (A-2)–(A-4); tests/test_particles.py.

RBF attention is a posterior mean (eqs. (A-2)–(A-4)). With weights w_j(q) = softmax_j(−|q − x_j|²/(2ε)),

    m_ε(q; {x_j}) = Σ_j w_j(q) x_j = q + ε ∇ log (ρ̂ * N(0, εI))(q) = E_ρ̂[X | X + √ε Z = q],        (1)

ρ̂ = (1/N) Σ_j δ_{x_j}: ∇ log Σ_j exp(−|q − x_j|²/(2ε)) = Σ_j w_j (x_j − q)/ε, which is Tweedie's formula for
the empirical prior. −|q − x_j|²/(2ε) = [q·x_j − |x_j|²/2]/ε − |q|²/(2ε) and the last term is the same for
every key, so RBF attention is dot-product attention with logits q·k/ε plus the key-norm bias −|k|²/(2ε)
(`dot_product_attention(..., key_norm_bias=True)`); without the bias the two differ unless |k_j| is constant.

Neighbours: `theory.particle_flow` (the two-stage denoiser: layers of this attention), `theory.priors` (the
Bayes posterior means it estimates), `models.attention` (the trainable transformer built on these maps).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from deeptheory.theory._checks import as_tokens, check_positive, check_tokens, data_map, working_dtype

__all__ = ["rbf_attention", "dot_product_attention"]


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
    q, q_vector = as_tokens(queries, "queries")
    k, _ = as_tokens(keys, "keys")
    v = k if values is None else as_tokens(values, "values")[0]
    check_tokens("queries", q)
    check_tokens("keys", k)
    check_tokens("values", v)
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
