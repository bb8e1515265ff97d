"""Sample the Bayesian posterior of finite networks on real data and hold the renormalization theory against it.

For every (activation, depth L, width N, temperature T): C chains of a sampler (`train.inference.samplers`; BAOAB by
default) draw from p(θ | D) ∝ exp(−Σ(y − f)²/2T − |θ|²/2) for the network of `models.mlp` (or `models.cnn`),
all chains vmapped and sharded (`train.inference.chains`), checkpointed and resumable. With `collapsed` the
chains sample the hidden weights θ_h alone, the linear readout integrated out exactly (`models.collapsed`, docs eq.
(R-29)), and every readout quantity is its conditional expectation given θ_h (Rao-Blackwellised). Measured per
chain and draw: the test loss (1/P_test) Σ (f(x) − y)², the readout norm q̂ = λ_L|v|²/N_L, and the readout-layer
kernel. Compared
with (docs/nngp_and_renormalization.md: posterior eq. (R-11), renormalized theory eqs. (R-12)–(R-24), samplers
eqs. (R-25)–(R-28)):

- theory: `theory.renormalization.fc_theory` (variant "auto": `recommended_variant(φ)`, nested for odd φ, non-central
  otherwise; `conv_theory` for the CNN) on exactly the same train and test sets — ε_g = bias² + variance;
- NNGP: the same with Q = 1 (infinite width);
- renormalization itself: ⟨q̂⟩ against the readout order parameter, and ⟨q̂ K̂_L⟩ (K̂_L = φφᵀ/(λ_L N_L), the
  covariance of f given the readout norm) against K_R from `renormalized_kernel`, next to the NNGP kernel.

Error bars are Monte Carlo standard errors sd/√ESS of the chain-averaged test loss (`train.inference.diagnostics`, split-R̂
and MSER burn-in reported per point). Step size: `step` (h, log-density convention; the papers' ε is h/T, docs eq.
(R-28)), or when 0, `step_scale`/√λ_max for BAOAB and `step_scale`/λ_max for ULA/MALA, with λ_max the top curvature of
−log p at the first chain's start (`train.inference.stepsize`). Durations are in the natural time t = steps·h, in
which the prior's modes relax in O(1).

    python -m deeptheory.train bayes_networks --preset quick --out runs/bayes

Files: `config.py` (Config, presets), `architectures.py` (one spec per network: model, inputs, theory,
measurements), `measure.py` (run: the chains, checkpointed), `analysis.py` (analyse: theory and comparison rows),
`figures.py` (report: from results.json alone).
"""

from deeptheory.train.experiments.bayes_networks.analysis import analyse
from deeptheory.train.experiments.bayes_networks.architectures import ARCHITECTURES
from deeptheory.train.experiments.bayes_networks.config import NAME, PRESETS, Config
from deeptheory.train.experiments.bayes_networks.figures import report
from deeptheory.train.experiments.bayes_networks.measure import load_data, run
from deeptheory.train.harness import cli

__all__ = ["ARCHITECTURES", "EXPERIMENT", "NAME", "PRESETS", "Config", "analyse", "load_data", "report", "run"]

EXPERIMENT = cli.Experiment(
    name=NAME, title="Bayesian networks by sampling vs kernel renormalization",
    question="Does the renormalized kernel theory predict the test loss, the readout order parameter and the "
             "posterior kernel of finite Bayesian networks sampled at width N ~ P, where the NNGP does not?",
    Config=Config, presets=PRESETS, run=run, analyse=analyse, report=report, load_data=load_data, description=__doc__)
