"""The Bayesian posterior of a finite network: tempered Gaussian likelihood, untempered Gaussian prior.

For the networks of `models.mlp` and `models.cnn` every parameter θ is standard normal a priori and the layer
scales σ_l = λ_l^{-1/2} sit in the forward pass, so the effective weights have the prior N(0, 1/λ_l) of the
theory (docs/nngp_and_renormalization.md, eqs. (R-1), (R-11)) and the posterior at temperature T is

    log p(θ | D) = −(1/2T) Σ_μ (y_μ − f_θ(x_μ))² − ½ |θ|² + const.

The papers' Langevin (docs/nngp_and_renormalization.md, eq. (R-28)) moves the effective weights W with step ε on
the energy ½Σ(f − y)² + (Tλ/2)|W|²; in θ and in the log-density convention used by `train.inference.samplers` that is the
step h = ε T (for λ = 1 exactly; otherwise the papers' dynamics is preconditioned by 1/λ_l, the stationary law
the same).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

__all__ = ["log_posterior", "squared_error", "tree_sq_norm"]


def tree_sq_norm(tree):
    """|θ|² = Σ over the leaves of the sum of squares (the prior term of `log_posterior` is −½ of it)."""
    return sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(tree))


def squared_error(apply_fn: Callable, params, x, y_P):
    """½ Σ_μ (y_μ − f(x_μ))² for a network with one output."""
    f_P = apply_fn(params, x)[:, 0]
    return 0.5 * jnp.sum((f_P - y_P.astype(f_P.dtype)) ** 2)


def log_posterior(apply_fn: Callable, x, y_P, temperature: float) -> Callable:
    """θ ↦ log p(θ | D) up to a constant (module docstring); pure, jit/grad/vmap-able.

    Args:
      apply_fn: `model.apply` of a network with standard-normal parameters and one output.
      x: training inputs, (P, ...); y_P: targets (P,).
      temperature: T > 0; the likelihood is exp(−Σ(y − f)²/2T), the prior is not tempered.
    """
    T = float(temperature)
    if not T > 0:
        raise ValueError(f"temperature must be > 0 (the likelihood is exp(-Σ(y - f)²/2T)); got {temperature}")
    if len(x) != len(y_P):
        raise ValueError(f"x and y need the same number of points; got {len(x)} and {len(y_P)}")

    def log_density(params):
        prior = tree_sq_norm(params)
        return -squared_error(apply_fn, params, x, y_P) / T - 0.5 * prior

    return log_density

