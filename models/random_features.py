"""The random-feature model of `theory.random_features` and its power-law Gaussian inputs.

    x ~ N(0, Λ),  Λ = diag(λ_1..λ_D)                     (`power_law_inputs`, D ≫ N a parameter)
    z = φ(F x),   F_ik ~ N(0, 1/N) frozen                 (`random_projection`; φ = identity: linear features)
    f(x) = a·z,   a trainable (zero at init)              (`RandomFeatures`)

With linear features zᵀz' = xᵀFᵀFx' → xᵀx' as N → ∞ (the theory's normalisation). The projection lives in
the flax collection "projection", not "params", so an optimizer sees only the readout. Nested widths: the
first N rows of one (N_max, D) Gaussian draw scaled by 1/√N, so that a sweep over N compares models that
share their features (`random_projection(..., n_max=N_max)`).

For linear features the population loss of a readout is closed form (`population_moments`):

    E(y − a·z)² = aᵀΣ_N a − 2 aᵀb + c + σ²,   Σ_N = FΛFᵀ,  b = FΛw̄,  c = w̄ᵀΛw̄ = Σ v_k²,

which is what the scaling experiment trains on (full-batch gradients of the population loss);
docs/random_features.md, eq. (RF-10).
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["FEATURE_MAPS", "power_law_inputs", "random_projection", "RandomFeatures", "population_moments",
           "population_loss"]

FEATURE_MAPS: dict[str, Callable] = {
    "linear": lambda u: u,
    "relu": jax.nn.relu,
    "erf": jax.scipy.special.erf,
    "tanh": jnp.tanh,
}


def power_law_inputs(key, n: int, eigenvalues, dtype=jnp.float32):
    """(n, D) Gaussian inputs with covariance diag(eigenvalues)."""
    lam = jnp.asarray(eigenvalues)
    if lam.ndim != 1 or not n >= 1:
        raise ValueError(f"need n >= 1 and a 1-d eigenvalue array; got n={n}, shape {lam.shape}")
    return (jax.random.normal(key, (n, lam.shape[0]), dtype) * jnp.sqrt(lam).astype(dtype)[None, :]).astype(dtype)


def random_projection(key, n_features: int, input_dim: int, *, n_max: int | None = None, dtype=jnp.float32):
    """F (n_features, input_dim) with entries N(0, 1/n_features): the first n_features rows of one
    (n_max, input_dim) standard normal draw, divided by √n_features (so widths n ≤ n_max are nested)."""
    n_max = n_features if n_max is None else n_max
    if not 1 <= n_features <= n_max or input_dim < 1:
        raise ValueError(f"need 1 <= n_features <= n_max and input_dim >= 1; got {n_features}, {n_max}, {input_dim}")
    G = jax.random.normal(key, (n_max, input_dim), dtype)
    return (G[:n_features] / jnp.sqrt(jnp.asarray(n_features, dtype))).astype(dtype)


class RandomFeatures(nn.Module):
    """f(x) = a·φ(Fx) with F frozen (collection "projection") and the readout a in "params".

    Attributes:
      n_features: N.
      features: a name in FEATURE_MAPS ("linear" is the model `theory.random_features` describes).
      n_max: draw F as the first N rows of an (n_max, D) matrix (nested widths); None: n_max = N.
      dtype: float32 for experiments.
    """

    n_features: int
    features: str = "linear"
    n_max: int | None = None
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x_BxD, return_features: bool = False):
        """f (B,); with return_features also z = φ(Fx) (B, N)."""
        if self.features not in FEATURE_MAPS:
            raise ValueError(f"features must be one of {sorted(FEATURE_MAPS)}; got {self.features!r}")
        F = self.variable("projection", "F", lambda: random_projection(
            self.make_rng("params"), self.n_features, x_BxD.shape[-1], n_max=self.n_max, dtype=self.dtype))
        z_BxN = FEATURE_MAPS[self.features](x_BxD.astype(self.dtype) @ F.value.T)
        a = self.param("readout", nn.initializers.zeros_init(), (self.n_features,), self.dtype)
        return (z_BxN @ a, z_BxN) if return_features else z_BxN @ a


def population_moments(projection_NxD, eigenvalues, teacher):
    """(Σ_N, b, c) of the population loss of linear random features (module docstring); the dtype of the
    projection is kept (pass float64 for theory)."""
    F = jnp.asarray(projection_NxD)
    lam = jnp.asarray(eigenvalues, F.dtype)
    w = jnp.asarray(teacher, F.dtype)
    if F.ndim != 2 or lam.shape != (F.shape[1],) or w.shape != lam.shape:
        raise ValueError(f"need F (N, D), eigenvalues (D,) and teacher (D,); got {F.shape}, {lam.shape}, {w.shape}")
    FL = F * lam[None, :]
    return FL @ F.T, FL @ w, jnp.sum(lam * w * w)


def population_loss(readout, projection_NxD, eigenvalues, teacher, noise=0.0):
    """E(y − a·Fx)² = Σ_k λ_k (Fᵀa − w̄)_k² + σ², summed in input space (no cancellation between the terms
    of the quadratic form, which float32 cannot afford once the loss is 10⁻⁵ of Σ v²)."""
    F = jnp.asarray(projection_NxD)
    r = readout @ F - jnp.asarray(teacher, F.dtype)
    return jnp.sum(jnp.asarray(eigenvalues, F.dtype) * r * r, axis=-1) + noise
