"""Step sizes from the posterior's top curvature.

    lam = top_curvature(log_density, params, key)       # λ_max of −∇² log π at params (power iteration)
    h = stable_step("baoab", lam, fraction=0.5)         # that fraction of the sampler's stability scale 1/r(λ_max)

A Langevin step h (log-density convention of `train.inference.samplers`) is stable on a Gaussian of precision
λ_max only below a limit set by λ_max: h λ_max < 2 for the overdamped samplers (ULA, and MALA's proposal), and
h √λ_max < 2 for BAOAB (docs/nngp_and_renormalization.md, eqs. (R-25)–(R-28)): h r(λ_max) < 2 with r the
stability rate of each sampler's `samplers.SamplerSpec`. The curvature is measured once, at a starting point, by
power iteration on Hessian-vector products (forward over reverse mode: one gradient's cost per iteration, no
Hessian formed).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from deeptheory.models.posterior import tree_sq_norm
from deeptheory.train.inference.samplers import SAMPLERS, SamplerSpec, tree_normal

__all__ = ["top_curvature", "stable_step"]


def top_curvature(log_density: Callable, params, key: jax.Array, iterations: int = 30) -> float:
    """λ_max of −∇² log π at `params` by power iteration on Hessian-vector products.

    Args:
      log_density: θ ↦ log π(θ) for a pytree θ (e.g. `models.posterior.log_posterior`).
      params: the point θ (one chain's position, no chain axis).
      key: the random start of the iteration.
      iterations: power-iteration steps; the estimate is the norm of the last Hessian-vector product.
    """
    grad = jax.grad(lambda p: -log_density(p))

    def power_iteration(v, point):
        # `point` is an argument, not a closed-over constant: XLA would otherwise constant-fold the whole forward
        # pass at compile time (seconds, and a "slow operation" alarm in the user's log)
        def body(_, carry):
            v, _ = carry
            hv = jax.jvp(grad, (point,), (v,))[1]
            norm = jnp.sqrt(tree_sq_norm(hv))
            return jax.tree.map(lambda x: x / norm, hv), norm

        return jax.lax.fori_loop(0, iterations, body, (v, jnp.sqrt(tree_sq_norm(v))))

    v = tree_normal(key, params)
    norm = jnp.sqrt(tree_sq_norm(v))
    v = jax.tree.map(lambda x: x / norm, v)
    _, lam = jax.jit(power_iteration)(v, params)
    return float(lam)


def stable_step(sampler: str | SamplerSpec, curvature: float, fraction: float) -> float:
    """The step h = fraction / r(λ_max), r the sampler's stability rate: fraction / √λ_max for BAOAB, fraction / λ_max
    for ULA and MALA (module docstring). `sampler`: a name in `SAMPLERS` or a `SamplerSpec`."""
    if not isinstance(sampler, SamplerSpec):
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}; got {sampler!r}")
        sampler = SAMPLERS[sampler]
    return fraction / sampler.stability_rate(curvature)
