"""Theory of deep networks in pure jax.numpy: one subject per module, every public name re-exported here.

The map (module — subject — where it is derived):

    activations           φ, F_φ(a, c, b) = E[φ(u)φ(v)] in closed form or    docs/nngp_and_renormalization.md (R-2),
                          by Gauss–Hermite quadrature; the mean activation    (R-5)–(R-8), (R-21)
    nngp                  NNGP kernels of deep fully connected networks       docs/nngp_and_renormalization.md (R-1)–(R-8)
    conv_kernels          position-resolved kernels of patch CNNs; the one    docs/nngp_and_renormalization.md (R-22)
                          `patchify` of the repository
    gp                    GP regression by Cholesky; the NNGP predictor       docs/nngp_and_renormalization.md (R-9)–(R-11)
    renormalization       kernel renormalization of deep Bayesian MLPs        docs/nngp_and_renormalization.md (R-12)–(R-21)
                          (vanilla, nested, non-central; `recommended_variant`)
    conv_renormalization  local kernel renormalization of Bayesian CNNs       docs/nngp_and_renormalization.md (R-22)–(R-24)
    random_features       deterministic equivalents of random-feature         docs/random_features.md
                          regression, power-law scaling laws
    rf_dynamics           the learning curve of a random-feature readout      docs/random_features.md (RF-20)–(RF-24)
                          with no feature draw (Σ_N's equivalent spectrum)
    attention             RBF and dot-product attention, dense and chunked    docs/attention.md (A-2)–(A-4)
    priors                priors ρ₀ of clean tokens, Bayes posterior means,   docs/attention.md (A-13)–(A-15)
                          MMSE, the oracle probability-flow ODE
    particle_flow         the two-stage in-context denoiser (Stage-1 particle docs/attention.md (A-5)–(A-12), (A-17)
                          flow, Stage-2 readout), baselines, T*(ε), Stage 2 at finite N

Private, shared by the modules above (not re-exported): `_checks` (the float64 policy `float64_theory`/`data_map`
and the input checks) and `_solvers` (bisection, Newton, BFGS, the Cholesky data term). The layering is
theory ← models ← train: nothing here imports `models` or `train`. Conventions for names: docs/conventions.md.
One exception to the re-export: `particle_flow` here is the module; the function is `particle_flow.particle_flow`.
"""

from deeptheory.theory import (
    activations,
    attention,
    conv_kernels,
    conv_renormalization,
    gp,
    nngp,
    particle_flow,
    priors,
    random_features,
    renormalization,
    rf_dynamics,
)
from deeptheory.theory.activations import *  # noqa: F403
from deeptheory.theory.attention import *  # noqa: F403
from deeptheory.theory.conv_kernels import *  # noqa: F403
from deeptheory.theory.conv_renormalization import *  # noqa: F403
from deeptheory.theory.gp import *  # noqa: F403
from deeptheory.theory.nngp import *  # noqa: F403
from deeptheory.theory.particle_flow import (  # noqa: F401  (all but the function: particle_flow is the module)
    TStar,
    blurring_mean_shift,
    find_t_star,
    gaussian_flow_variance,
    gaussian_t_star,
    kde_bandwidth,
    parabolic_minimum,
    stage2_asymptotic_particles,
    stage2_excess_constant,
    stage2_readout,
    tweedie_kde,
    two_stage_denoise,
)
from deeptheory.theory.priors import *  # noqa: F403
from deeptheory.theory.random_features import *  # noqa: F403
from deeptheory.theory.renormalization import *  # noqa: F403
from deeptheory.theory.rf_dynamics import *  # noqa: F403

MODULES = (activations, nngp, conv_kernels, gp, renormalization, conv_renormalization, random_features, rf_dynamics,
           attention, priors, particle_flow)

# A module and a function share one name, particle_flow: here it is the module (the function is
# `particle_flow.particle_flow`), so that `from deeptheory.theory import particle_flow` and
# `import deeptheory.theory.particle_flow as m` keep meaning the module.
__all__ = [name for module in MODULES for name in module.__all__ if name != "particle_flow"]
