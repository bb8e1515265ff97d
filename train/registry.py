"""The registered experiments, by name: what `train.reproduce` runs and `train.report` knows how to report.

Each module named here defines `EXPERIMENT` (a `train.cli.Experiment`); importing is deferred until asked.
"""

from __future__ import annotations

import importlib

__all__ = ["EXPERIMENTS", "get"]

EXPERIMENTS = {
    "nngp_convergence": "deeptheory.train.nngp_convergence",
    "bayes_networks": "deeptheory.train.bayes_networks",
    "rf_scaling": "deeptheory.train.rf_scaling",
    "denoise": "deeptheory.train.denoise",
}


def get(name: str):
    """The Experiment registered as `name`."""
    if name not in EXPERIMENTS:
        raise KeyError(f"no experiment named {name!r}; registered: {', '.join(EXPERIMENTS)}")
    return importlib.import_module(EXPERIMENTS[name]).EXPERIMENT
