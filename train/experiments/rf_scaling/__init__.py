"""Does the scaling exponent α of L(N) ∝ N^-α depend on the optimizer? Five optimizers × six spectra, with theory.

Setup (every part a config field; the equations are in docs/random_features.md, eqs. (RF-1), (RF-10)–(RF-18)):
- inputs x ~ N(0, Λ) in dimension D, λ_k = k^-s; teacher y = w̄·x + ε with task power v_k² = k^-a, a = s + shift
  (w̄_k² = k^-shift: `target_shift`), label noise σ²;
- N linear random features z = Fx (`models.random_features`, F_ik ~ N(0, 1/N), nested over N: the first N rows
  of one draw per seed), readout a trained from 0 for T steps on ½·(population MSE) — full-batch gradients of
  the exact population loss aᵀΣ_N a − 2aᵀb + c, so the only randomness is the features (the infinite-data regime);
- five optimizers (`.optimizers`, one `OptimizerSpec` each): GD, heavy-ball momentum, Adam, diagonal Fisher, damped
  natural gradient (Cholesky of Σ_N + εI), each at its tuned learning rate: a grid of multipliers of a per-optimizer
  base (with c = `STEP_FACTOR` = 0.95 — GD: c/μ_max(Σ_N), momentum: c(1+β)/μ_max, diagonal: c/μ_max(D⁻¹Σ_N),
  natural: c, Adam: `adam_lr`), the multiplier chosen per (optimizer, s, N) by the seed-mean final loss;
- α: log-log slope of the seed-mean loss over the N grid, bootstrap-over-seeds CI (`train.fits`).

Theory, side by side (`theory.random_features`):
- eigenbasis α: the exact eigenbasis dynamics (GD, heavy ball, natural gradient) on each seed's N-feature spectrum
  (float64), tuned over the same grid. Diagonal: the prediction "acts as GD with the rescaled step
  η/(mean diag Σ_N + ε)" (rotation-invariant features: diag Σ_N ≈ tr Σ_N/N). Adam: no eigenbasis theory.
- sampling-free α: the same dynamics on the deterministic equivalent of Σ_N's spectrum (`theory.rf_dynamics`, no
  feature draw; `predict`), each step rule on the predicted top eigenvalue — the prediction; `predict.predict_alpha`
  is the spectral diagnostic for any spectrum, budget and window, and `phases` maps where the paper's claims hold.
- closed-form α: no sampling at all — T steps at effective rate η_eff act as the ridge z = 1/(η_eff T), so
  L(N, T) ≈ rf_risk(N, P = ∞, ridge z) (the deterministic equivalent).
- converged α: the infinite-budget exponent, from the deterministic equivalent of the population readout
  (rf_risk, P = ∞, ridge 0) over the same window.
- the diagnostic: N*(T) = #{k: T η λ_k f(λ_k) ≥ 1} (η λ₁ = 1) for GD and natural gradient against the window.

Steps (the experiment contract of `train.harness.cli`): `config` (Config, PRESETS), `measure.run` (features and
training, one checkpoint per optimizer), `analysis.analyse` (theory and fits), `figures.report` (from results.json).

    python -m deeptheory.train rf_scaling --preset quick --out runs/rf_scaling
"""

from deeptheory.train.experiments.rf_scaling.analysis import analyse
from deeptheory.train.experiments.rf_scaling.config import NAME, PRESETS, Config
from deeptheory.train.experiments.rf_scaling.figures import report
from deeptheory.train.experiments.rf_scaling.measure import run
from deeptheory.train.experiments.rf_scaling.optimizers import OPTIMIZERS
from deeptheory.train.harness import cli

__all__ = ["EXPERIMENT", "NAME", "OPTIMIZERS", "PRESETS", "Config", "analyse", "report", "run"]

EXPERIMENT = cli.Experiment(
    name=NAME, title="Scaling exponents of random-feature regression by optimizer",
    question="Does the scaling exponent α of the test loss L ∝ N^-α depend on the optimizer, and does the theory "
             "predict α for five optimizers across six spectra?",
    Config=Config, presets=PRESETS, run=run, analyse=analyse, report=report, description=__doc__)
