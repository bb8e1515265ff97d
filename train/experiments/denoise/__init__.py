"""Attention as in-context empirical Bayes: the two-stage particle denoiser and trained attention-only transformers.

Setup (every part a config field; equations in docs/attention.md, eqs. (A-1)–(A-17); theory `theory.particle_flow`,
`theory.priors`):
- a prompt is N tokens y_i = x_i + σ z_i with x_i ~ ρ₀ i.i.d.; the estimator sees only the prompt;
- priors (per-coordinate scale ~1): "gaussian" N(0, I_d); "two_mode" ½N(±2e₁, s₀I); "gmm" K equal-weight
  components N(μ_k, s₀I), μ_k ~ N(0, 4I_d) drawn once from the seed; s₀ = `mode_variance`; "circle" uniform on a
  circle of radius √d in a 2-plane drawn from the seed (d ≥ 2; a one-dimensional support, no T*(ε) law); each in
  every d of `dims` where it exists;
- the analytic estimator: Stage 1 (`particle_flow`, bandwidth ε, step α, so T = l α ε after l layers) then
  Stage 2 (`stage2_readout`, the noisy tokens as queries, bandwidth σ²) at every depth: MSE(T), its minimiser
  T_best (parabolic refinement), against σ²/2 and the Gaussian mean-field T*(ε) = σ²/2 + (ε/2) ln(1 + σ²/s₀);
- comparators on the same tokens: depth 0 (= Tweedie on the KDE with h² = σ²), the Stage-1 particles
  themselves, blurring mean shift (α = 1), Tweedie–KDE at Silverman's h² and at the best h² of a grid, the
  oracle-score probability-flow ODE followed by Stage 2, Stage 2 on N fresh prior draws (the oracle particles:
  the finite-N floor, against its law (A-17)), and the Bayes posterior mean (realised on these tokens, and the
  Bayes MSE by closed form or Monte Carlo); every ratio with a bootstrap SE over prompts;
- MSE vs N: best-over-depth MSE at σ² = `convergence_sigma2` for N in `context_sizes` (prompts × N fixed);
- the particles against ρ₀ along depth: sliced Wasserstein-1 distance and per-coordinate variance;
- trained transformers (`models.attention`, RBF and/or dot-product attention, `depth_trained` layers, per-layer
  ε_l, α_l, readout τ, Adam on fresh prompts every step, `train_seeds` models each for mean ± SE): learned
  Σ α_l ε_l against σ²/2, τ against σ², ε_l's spread; MSE learned vs
  analytic (at the same N) vs Bayes.

Per-coordinate MSE throughout: |x̂ − x|²/d averaged over tokens and prompts.

    python -m deeptheory.train denoise --preset quick --out runs/denoise

Files: `config` (fields, presets, the priors by name), `measure` (step 1: prompts, comparators, trained models and
particle paths, checkpointed), `training` (the attention models' Adam loop), `analysis` (step 2: T_best, fits, T*(ε),
histograms), `figures` (step 3: from results.json alone).
"""

from deeptheory.train.experiments.denoise.analysis import analyse
from deeptheory.train.experiments.denoise.config import NAME, PRESETS, PRIORS, Config
from deeptheory.train.experiments.denoise.figures import report
from deeptheory.train.experiments.denoise.measure import run
from deeptheory.train.harness import cli

__all__ = ["EXPERIMENT", "NAME", "PRESETS", "PRIORS", "Config", "analyse", "report", "run"]

EXPERIMENT = cli.Experiment(
    name=NAME, title="Attention as in-context empirical Bayes",
    question="Does a stack of RBF attention layers followed by a long-skip readout denoise like the Bayes posterior "
             "mean, with its best depth at the flow time T*(ε) ≈ σ²/2, and do trained transformers find that?",
    Config=Config, presets=PRESETS, run=run, analyse=analyse, report=report, description=__doc__)
