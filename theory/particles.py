"""Deprecated import path: the attention pillar's theory is three modules now (issue 18, one subject per module).

    theory.attention       rbf_attention, dot_product_attention (dense and chunked)
    theory.priors          priors, Bayes posterior means and MMSE, sampling, the probability-flow ODE
    theory.particle_flow   particle_flow, the two-stage denoiser, baselines, T*(ε) laws, parabolic_minimum

`from deeptheory.theory.particles import name` still works for one release, with a DeprecationWarning naming the
new home; nothing is defined here. `prior_score` was removed (it was used nowhere).
"""

from __future__ import annotations

import importlib
import warnings

_HOMES = ("deeptheory.theory.attention", "deeptheory.theory.priors", "deeptheory.theory.particle_flow")


def __getattr__(name: str):
    for home in _HOMES:
        module = importlib.import_module(home)
        if name in module.__all__:
            warnings.warn(f"deeptheory.theory.particles is deprecated: import {name} from {home}",
                          DeprecationWarning, stacklevel=2)
            return getattr(module, name)
    raise AttributeError(f"module 'deeptheory.theory.particles' has no attribute {name!r} (the module is deprecated: "
                         f"see {', '.join(_HOMES)})")
