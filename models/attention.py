"""A minimal attention-only transformer for in-context denoising (Smart et al. 2026, `theory.particle_flow`).

    x⁰ = y                                                     (no embedding, no positional encoding)
    x^{l+1} = x^l + α_l (Attn_{ε_l}(x^l, x^l, x^l) − x^l)      (single head, no MLP; Stage 1)
    x̂ = Attn_τ(q = y, k = x^L, v = x^L)                        (long skip: the noisy input is the query; Stage 2)

Attn_ε is RBF attention softmax(−|q − k|²/(2ε)) v or plain dot-product attention softmax(q·k/ε) v
(`theory.attention.rbf_attention` / `dot_product_attention`). The learnable parameters are the per-layer
bandwidths ε_l and steps α_l (one shared pair with `shared=True`) and the readout bandwidth τ, all kept positive
through their logarithms. Identity query/key/value maps: the analytic estimator needs no others, and keeping them
out makes "what does training learn?" a question about ε, α and τ alone. With ε_l = ε, α_l = α, τ = σ² the
forward pass is `theory.particle_flow.two_stage_denoise` (`analytic_params`; tested). docs/attention.md, eq. (A-16).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from deeptheory.theory.attention import dot_product_attention, rbf_attention

__all__ = ["AttentionDenoiser", "analytic_params", "ATTENTIONS"]

ATTENTIONS = ("rbf", "dot")


class AttentionDenoiser(nn.Module):
    """Attributes:
      depth: Stage-1 layers L (0: Stage 2 only).
      attention: "rbf" or "dot" (dot-product without the key-norm bias).
      shared: one (ε, α) for every layer instead of one per layer.
      init_bandwidth, init_step, init_readout_bandwidth: initial ε, α, τ.
      chunk_size: None (dense attention) or the online-softmax chunk for long contexts.
      stage1_only: return the Stage-1 particles x^L instead of the readout (same parameters; for measuring what
        Stage 1 learned, e.g. `model.clone(stage1_only=True).apply(params, y)`).
    """

    depth: int
    attention: str = "rbf"
    shared: bool = False
    init_bandwidth: float = 0.2
    init_step: float = 0.5
    init_readout_bandwidth: float = 1.0
    chunk_size: int | None = None
    stage1_only: bool = False

    @nn.compact
    def __call__(self, y):
        """y (N, d) or (B, N, d) → denoised tokens of the same shape."""
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}; got {self.attention!r}")
        if self.depth < 0:
            raise ValueError(f"depth must be >= 0; got {self.depth}")
        n = 1 if self.shared else self.depth
        const = lambda v: nn.initializers.constant(np.log(v))  # noqa: E731
        log_bw = self.param("log_bandwidth", const(self.init_bandwidth), (n,), y.dtype)
        log_step = self.param("log_step", const(self.init_step), (n,), y.dtype)
        log_readout = self.param("log_readout_bandwidth", const(self.init_readout_bandwidth), (), y.dtype)
        bandwidths = jnp.broadcast_to(jnp.exp(log_bw), (self.depth,))
        steps = jnp.broadcast_to(jnp.exp(log_step), (self.depth,))

        def attend(q, k, bandwidth):
            if self.attention == "rbf":
                return rbf_attention(q, k, bandwidth=bandwidth, chunk_size=self.chunk_size)
            return dot_product_attention(q, k, bandwidth=bandwidth, chunk_size=self.chunk_size)

        def denoise(y_NxD):
            def layer(x, params):
                bandwidth, step = params
                return x + step * (attend(x, x, bandwidth) - x), None

            x, _ = jax.lax.scan(layer, y_NxD, (bandwidths, steps))
            return x if self.stage1_only else attend(y_NxD, x, jnp.exp(log_readout))

        if y.ndim == 3:
            return jax.vmap(denoise)(y)
        if y.ndim != 2:
            raise ValueError(f"tokens must be (N, d) or (B, N, d); got shape {y.shape}")
        return denoise(y)


def analytic_params(depth: int, *, eps, step, sigma2, shared: bool = False, dtype=jnp.float32) -> dict:
    """The parameters at which AttentionDenoiser(depth, "rbf", shared) is two_stage_denoise(sigma2, eps, step):
    ε_l = eps, α_l = step (scalars, or per layer when not shared), τ = σ²."""
    n = 1 if shared else depth
    log = lambda v: jnp.broadcast_to(jnp.log(jnp.asarray(v, dtype)), (n,))  # noqa: E731
    return {"params": {"log_bandwidth": log(eps), "log_step": log(step),
                       "log_readout_bandwidth": jnp.log(jnp.asarray(sigma2, dtype))}}
