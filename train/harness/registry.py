"""The registered experiments, by name: what `train.harness.reproduce` runs and `train.harness.report` knows how to report.

Each module named here defines `EXPERIMENT` (a `train.harness.cli.Experiment`); importing is deferred until asked.
"""

from __future__ import annotations

import importlib

__all__ = ["EXPERIMENTS", "get"]

EXPERIMENTS = {
    "nngp_convergence": "deeptheory.train.experiments.nngp_convergence",
    "bayes_networks": "deeptheory.train.experiments.bayes_networks",
    "rf_scaling": "deeptheory.train.experiments.rf_scaling",
    "denoise": "deeptheory.train.experiments.denoise",
}


def get(name: str):
    """The Experiment registered as `name`."""
    if name not in EXPERIMENTS:
        raise KeyError(f"no experiment named {name!r}; registered: {', '.join(EXPERIMENTS)}")
    return importlib.import_module(EXPERIMENTS[name]).EXPERIMENT
