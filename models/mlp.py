"""The finite MLP whose infinite-width limit is `theory.nngp.nngp_kernel`.

Standard ("ntk", W_std) parameterisation: every parameter is standard normal and the scales sit in
the forward pass (Lee et al. 2018; Jacot et al. 2018):

    h^1 = σ_w0/√N_0 · W^0 x + σ_b0 b^0,   h^{l+1} = σ_wl/√N_l · W^l φ(h^l) + σ_bl b^l,
    f   = σ_wL/√N_L · V φ(h^L) + σ_bL b^L.

So a prior draw is `MLP(...).init(key, x)`, and a Gaussian prior W ~ N(0, 1/λ) on the *effective*
weights of Pacelli et al. (2023) is weight_var = 1/λ. Biases exist only for layers with bias_var > 0.
Conventions: docs/nngp_and_renormalization.md, eq. (R-1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from deeptheory.theory.activations import get_activation

__all__ = ["MLP", "layer_values", "empirical_kernel", "prior_outputs"]


def layer_values(value, n_layers: int, name: str) -> tuple[float, ...]:
    """A scalar or a sequence of length n_layers (input layer first) → tuple of floats >= 0."""
    values = (float(value),) * n_layers if np.ndim(value) == 0 else tuple(float(v) for v in value)
    if len(values) != n_layers:
        raise ValueError(f"{name} needs one value per layer (input first): {n_layers}; got {len(values)}")
    if any(not v >= 0 for v in values):
        raise ValueError(f"{name} must be >= 0 (it is a variance); got {list(values)}")
    return values


class MLP(nn.Module):
    """Fully connected network in the standard parameterisation (module docstring).

    Attributes:
      widths: hidden widths N_1..N_L (L = len(widths) = the kernel's `depth`; empty: linear model).
      activation: a name from `theory.activations.ACTIVATIONS` or a callable (the same φ as the kernel).
      weight_var: σ_w², scalar or one per layer (L + 1, input first, readout last).
      bias_var: σ_b², same shapes.
      out_dim: readout dimension.
      dtype: parameter and compute dtype (float32 for experiments).
    """

    widths: Sequence[int]
    activation: str | Callable = "relu"
    weight_var: float | Sequence[float] = 1.0
    bias_var: float | Sequence[float] = 0.0
    out_dim: int = 1
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x_BxD, return_features: bool = False):
        """Readout f (B, out_dim); with return_features, also φ(h^L) (B, N_L) (x itself if L = 0)."""
        n_layers = len(self.widths) + 1
        sw2 = layer_values(self.weight_var, n_layers, "weight_var")
        sb2 = layer_values(self.bias_var, n_layers, "bias_var")
        phi = get_activation(self.activation).fn
        normal = nn.initializers.normal(1.0)
        h = x_BxD.astype(self.dtype)
        for l, width in enumerate((*self.widths, self.out_dim)):
            features = h if l == 0 else phi(h)
            fan_in = features.shape[-1]
            W = self.param(f"W{l}", normal, (fan_in, width), self.dtype)
            h = (sw2[l] / fan_in) ** 0.5 * (features @ W)
            if sb2[l] > 0:
                h = h + sb2[l] ** 0.5 * self.param(f"b{l}", normal, (width,), self.dtype)[None, :]
        return (h, features) if return_features else h


def empirical_kernel(features_BxN, features2_CxN=None, *, weight_var: float, bias_var: float = 0.0):
    """The readout-layer kernel of one network: σ_wL²/N_L · φ(h^L)·φ(h^L)ᵀ + σ_bL².

    Its expectation over prior draws is the NNGP kernel at depth L when L = 1 (any width) and up to
    O(1/N) at larger depth; its fluctuation is O(1/√N_L).
    """
    other = features_BxN if features2_CxN is None else features2_CxN
    return weight_var * (features_BxN @ other.T) / features_BxN.shape[-1] + bias_var


def prior_outputs(model: MLP, keys, x_BxD):
    """Readouts of independent prior draws, one per key: (K, B, out_dim)."""
    return jax.vmap(lambda k: model.apply(model.init(k, x_BxD), x_BxD))(keys)
