"""Finite networks whose limits the theory describes, in flax; every public name re-exported here.

    mlp              `MLP`, the finite network of `theory.nngp` / `theory.renormalization` (standard
                     parameterisation, weight_var per layer), its empirical kernel and prior outputs
    cnn              `PatchCNN`, stacked non-overlapping patch convolutions: `theory.conv_kernels`,
                     `theory.conv_renormalization` (patches cut by `theory.conv_kernels.patchify`)
    posterior        the tempered Bayesian posterior of a network (`log_posterior`, `tree_sq_norm`),
                     sampled by `train.inference`
    collapsed        the same posterior with the linear readout integrated out (`collapsed_log_posterior`) and
                     the readout's exact conditional law given the hidden weights (`readout_posterior`)
    random_features  the random-feature model of `theory.random_features` and its power-law inputs
    attention        the attention-only transformer whose analytic parameters are `theory.particle_flow`'s
                     two-stage denoiser

Derivations: docs/nngp_and_renormalization.md, docs/random_features.md, docs/attention.md. Models import theory
(φ, patchify, the attention kernels), never train.
"""

from deeptheory.models import attention, cnn, collapsed, mlp, posterior, random_features
from deeptheory.models.attention import *  # noqa: F403
from deeptheory.models.cnn import *  # noqa: F403
from deeptheory.models.collapsed import *  # noqa: F403
from deeptheory.models.mlp import *  # noqa: F403
from deeptheory.models.posterior import *  # noqa: F403
from deeptheory.models.random_features import *  # noqa: F403

MODULES = (mlp, cnn, posterior, collapsed, random_features, attention)

__all__ = [name for module in MODULES for name in module.__all__]
