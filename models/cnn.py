"""The finite CNN of the local-renormalization theory: stacked non-overlapping patch convolutions.

Layer 1 applies N_c filters of size M_1×M_1 (× c_in) with stride M_1; layer l > 1 applies N_c filters of size
M_l×M_l (× N_c) with stride M_l to φ of the previous layer; the readout has one weight per (final position,
channel) — no pooling (Aiudi et al., Nat. Commun. 2025; `theory.conv_kernels.conv_patch_kernels`, whose
`patchify` cuts the patches here too). Standard parameterisation as in `models.mlp`: every parameter is standard
normal and the scales sit in the forward pass,

    h^1_{c,i} = σ_0/√(M_1² c_in) · Σ W^0 x^(i),   h^{l+1}_{c,i} = σ_l/√(M² N_c) · Σ W^l φ(h^l)^(i),
    f = σ_L/√(n N_c) · Σ_{c,i} v_{c,i} φ(h^L_{c,i}),

so the effective weights have the prior N(0, σ_l²) = N(0, 1/λ_l) of the theory and the prior covariance of f
is Σ_i K^{ii}/(λ_L n), the local NNGP (`theory.conv_renormalization`, Q = I; docs/nngp_and_renormalization.md,
eqs. (R-22)–(R-23)).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp

from deeptheory.models.mlp import layer_values
from deeptheory.theory.activations import get_activation
from deeptheory.theory.conv_kernels import patchify

__all__ = ["PatchCNN"]


class PatchCNN(nn.Module):
    """Stacked non-overlapping patch convolutions with a local (per position and channel) readout.

    Attributes:
      patches: (M_1, …, M_L) patch sides; the image sides must be divisible by their product.
      channels: N_c, the number of channels of every convolutional layer.
      activation: as in `models.mlp.MLP`.
      weight_var: σ_l² = 1/λ_l, scalar or one per layer (L + 1: the convolutions, then the readout).
      dtype: parameter and compute dtype.
    """

    patches: Sequence[int]
    channels: int
    activation: str | Callable = "relu"
    weight_var: float | Sequence[float] = 1.0
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, return_features: bool = False):
        """x: (B, H, W) or (B, H, W, c_in) → f (B, 1); with return_features also φ(h^L) (B, n, N_c)."""
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4:
            raise ValueError(f"PatchCNN needs images (B, H, W[, c]); got shape {x.shape}")
        side = math.prod(self.patches)
        if x.shape[1] % side or x.shape[2] % side:
            raise ValueError(f"image size {x.shape[1]}x{x.shape[2]} is not divisible by the patch product {side}")
        sw2 = layer_values(self.weight_var, len(self.patches) + 1, "weight_var")
        phi = get_activation(self.activation).fn
        normal = nn.initializers.normal(1.0)
        h = x.astype(self.dtype)
        for l, side_l in enumerate(self.patches):
            patches = patchify(h if l == 0 else phi(h), side_l)
            fan_in = patches.shape[-1]
            W = self.param(f"W{l}", normal, (fan_in, self.channels), self.dtype)
            h = (sw2[l] / fan_in) ** 0.5 * (patches @ W)
        features = phi(h).reshape(h.shape[0], -1, self.channels)  # (B, n, N_c), positions row-major
        n = features.shape[1]
        v = self.param(f"W{len(self.patches)}", normal, (n, self.channels), self.dtype)
        f = (sw2[-1] / (n * self.channels)) ** 0.5 * jnp.einsum("bnc,nc->b", features, v)[:, None]
        return (f, features) if return_features else f
