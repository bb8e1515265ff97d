"""Distances between two samples of points (two empirical distributions), for measuring how close a set of
particles is to a sample of a target distribution.

    d = sliced_wasserstein1(a_NxD, b_NxD, directions_KxD)   # unit directions drawn by the caller
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["sliced_wasserstein1"]


def sliced_wasserstein1(a_NxD, b_NxD, directions_KxD) -> jax.Array:
    """Sliced Wasserstein-1 distance between two samples of N points each, over K given unit directions θ_k:

        SW₁(a, b) = (1/K) Σ_k W₁(⟨a, θ_k⟩, ⟨b, θ_k⟩),   W₁(u, v) = (1/N) Σ_i |u_(i) − v_(i)|,

    the 1-D Wasserstein-1 distance between two samples of equal size being the mean gap between their order
    statistics (sorting is the optimal coupling on a line). With θ_k uniform on the sphere this is a Monte Carlo
    estimate of the sliced distance E_θ W₁ (Rabin et al. 2011; Bonneel et al. 2015). Jittable; two independent
    samples of one distribution are O(N^-1/2) apart, the floor a particle set can reach.

    Args:
      a_NxD, b_NxD: the two samples (same N, same dimension D).
      directions_KxD: K unit vectors (rows).

    Returns:
      A scalar.
    """
    if a_NxD.shape != b_NxD.shape or a_NxD.ndim != 2 or directions_KxD.ndim != 2 \
            or directions_KxD.shape[1] != a_NxD.shape[1]:
        raise ValueError(f"sliced_wasserstein1 needs two (N, D) samples of the same shape and (K, D) directions; got "
                         f"{a_NxD.shape}, {b_NxD.shape} and {directions_KxD.shape}")
    pa, pb = a_NxD @ directions_KxD.T, b_NxD @ directions_KxD.T
    return jnp.mean(jnp.abs(jnp.sort(pa, axis=0) - jnp.sort(pb, axis=0)))
