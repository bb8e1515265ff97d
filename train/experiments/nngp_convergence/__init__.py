"""NNGP kernel vs the empirical kernels of ensembles of wide random networks, on a real binary task.

For each activation, depth L and width N, draw D networks from the prior (`models.mlp.MLP`, standard
parameterisation) and form each one's readout-layer kernel K̂ = σ²/N φ(h^L)φ(h^L)ᵀ + σ_b² on the train and test
points. Theory (`theory.nngp`; docs/nngp_and_renormalization.md, eqs. (R-1)–(R-2), (R-9)–(R-10)): E K̂ = K_NNGP
exactly at L = 1 and up to O(1/N) at L > 1, and K̂ fluctuates by O(1/√N), so the ensemble mean over D draws misses
K_NNGP by ~ c/√(D·N) (plus the O(1/N) bias at L > 1). We measure the relative Frobenius error for every (N, D = 1,
2, 4, ...), fit its slope against N, and compare GP regression with the ensemble kernel against the NNGP
predictor's test loss (`theory.gp`, bias² + variance at temperature T).

    python -m deeptheory.train nngp_convergence --preset quick --out runs/nngp
"""

from deeptheory.train.experiments.nngp_convergence.analysis import analyse
from deeptheory.train.experiments.nngp_convergence.config import NAME, PRESETS, Config
from deeptheory.train.experiments.nngp_convergence.figures import report
from deeptheory.train.experiments.nngp_convergence.measure import load_data, run
from deeptheory.train.harness import cli

__all__ = ["EXPERIMENT", "NAME", "PRESETS", "Config", "analyse", "load_data", "report", "run"]

EXPERIMENT = cli.Experiment(
    name=NAME, title="NNGP kernels of finite networks",
    question="Does the mean readout kernel of D random networks of width N converge to the NNGP kernel as "
             "c/√(D·N), and does GP regression with it approach the NNGP predictor?",
    Config=Config, presets=PRESETS, run=run, analyse=analyse, report=report, load_data=load_data, description=__doc__)
