"""Posterior inference for finite networks — sampling p(θ | D), which is not training.

- `samplers`: `ula`, `mala`, `baoab`, optax-style factories returning `Sampler(init, step)` over any pytree, in the
  log-density convention (docs/nngp_and_renormalization.md, eqs. (R-25)–(R-28)); `SAMPLERS` by name; `tree_normal`.
- `chains`: `run_chains`, C chains at once (vmapped, sharded over devices, checkpointed, resumable bit for bit),
  returning a `ChainResult` of traces, per-chain and pooled sums.
- `diagnostics`: split-R̂, multi-chain ESS, MSER burn-in and the error bar sd/√ESS of a (chains, draws) trace.
- `stepsize`: `top_curvature` (λ_max of −∇² log π by power iteration) and `stable_step` (a fraction of the
  sampler's stability scale).

The densities come from `models.posterior.log_posterior`; `train.experiments.bayes_networks` uses all four.
"""

from deeptheory.train.inference import chains, diagnostics, samplers, stepsize
from deeptheory.train.inference.chains import *  # noqa: F403
from deeptheory.train.inference.diagnostics import *  # noqa: F403
from deeptheory.train.inference.samplers import *  # noqa: F403
from deeptheory.train.inference.stepsize import *  # noqa: F403

MODULES = (samplers, chains, diagnostics, stepsize)
__all__ = [name for module in MODULES for name in module.__all__]
