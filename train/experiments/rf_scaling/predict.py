"""rf_scaling, the spectral diagnostic: α predicted for every optimizer with a Σ_N theory, on any spectrum, budget and
N window, with no feature draw (`theory.rf_dynamics`; docs/random_features.md, eqs. (RF-20)–(RF-24)).

    from deeptheory.train.experiments.rf_scaling.predict import predict_alpha
    lam, v2 = power_law_spectrum(4096, 1.0), power_law_target(4096, 1.31)
    prediction = predict_alpha(lam, v2, widths=(8, 16, 32, 64, 128, 256), steps=4)
    prediction.alpha["natural"] - prediction.alpha["gd"]     # what natural gradient gains in α

Each optimizer runs at the experiment's step rule (`optimizers.OptimizerSpec.base_lr`) on the predicted spectrum, at
its best learning-rate multiplier per N, exactly as the experiment tunes it; α is the log-log slope over the window.
Cost: one `rf_spectral_measure` per width (about a second at N = 128, D = 2048 on one CPU core; the quadrature has
about 64 N nodes and each costs O(D) per Newton step), then a learning curve per optimizer and multiplier.
Adam has no prediction (its update is not a function of Σ_N).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from deeptheory.theory.random_features import learning_curve, loglog_slope, time_bottleneck
from deeptheory.theory.rf_dynamics import rf_spectral_measure, rf_top_eigenvalue
from deeptheory.train.experiments.rf_scaling.config import PRESETS, Config
from deeptheory.train.experiments.rf_scaling.optimizers import SPECS, OptimizerSpec

__all__ = ["EquivalentSpectrum", "equivalent_spectrum", "equivalent_curves", "Prediction", "predict_alpha",
           "THEORY_OPTIMIZERS"]

THEORY_OPTIMIZERS = tuple(name for name, spec in SPECS.items() if spec.has_theory)


class EquivalentSpectrum(NamedTuple):
    """One width's Σ_N, predicted: the quadrature of `rf_spectral_measure` as modes of the eigenbasis dynamics."""

    mu: np.ndarray  # (nodes,) eigenvalues
    c2: np.ndarray  # (nodes,) excess power ν_i/μ_i at a = 0
    floor: float  # the loss no readout of N features removes, noise included
    count: np.ndarray  # (nodes,) eigenvalue count at each node
    step_rule: dict  # what OptimizerSpec.base_lr reads: mu_max, mean_diag, mu_max_diag


def equivalent_spectrum(eigenvalues, target_power, n_features: int, hp: Config) -> EquivalentSpectrum:
    """The deterministic equivalent of Σ_N for N features, with the predicted quantities the step rules read: μ_max
    from `rf_top_eigenvalue`, mean diag Σ_N = Σλ/N (exact in expectation), and the diagonal method's top eigenvalue
    μ_max/(mean diag + ε) (its concentration, docs RF-24)."""
    m = rf_spectral_measure(eigenvalues, target_power, n_features)
    if not float(m.mass_error) < 1e-6 or not float(m.residual) < 1e-9:
        raise ValueError(f"the equivalent spectrum of N = {n_features} features is not resolved (eigenvalue count off "
                         f"by {float(m.mass_error):.1e} relative, q² residual {float(m.residual):.1e}): spectra with "
                         "clusters of equal eigenvalues need more quadrature nodes, rf_spectral_measure(..., nodes=64)")
    mu_max, mean_diag = float(rf_top_eigenvalue(m)), float(jnp.sum(jnp.asarray(eigenvalues)) / n_features)
    return EquivalentSpectrum(np.asarray(m.eigenvalues), np.asarray(m.target_mass / m.eigenvalues),
                              float(m.floor) + hp.noise, np.asarray(m.count),
                              {"mu_max": mu_max, "mean_diag": mean_diag, "mu_max_diag": mu_max / (mean_diag + hp.damping)})


@functools.partial(jax.jit, static_argnames="steps")
def _curves(mu, c2, floor, f, beta, lr_M, steps: int):
    """(M, steps + 1) learning curves of one spectrum at M learning rates."""
    return jax.vmap(lambda lr: learning_curve(mu, c2, steps, learning_rate=lr, preconditioner_values=f,
                                              momentum=beta, floor=floor))(lr_M)


def equivalent_curves(optimizer: OptimizerSpec, spectrum: EquivalentSpectrum, hp: Config, steps: int) -> np.ndarray:
    """(M, steps + 1) predicted losses at the multipliers hp.lr_multipliers of the optimizer's step rule.

    A step rule η = c/μ_max(draw) (`OptimizerSpec.top_scaled`) puts every draw's top eigenvalue at the rate c
    exactly; the equivalent's top unit of eigenvalue count is a bump of width O(λ₁/√N), and at η = c/(its median)
    its upper half would sit above c — beyond the stability limit for the largest multipliers, a divergence no draw
    has. So the nodes of the top unit of count (one eigenvalue's worth) take the pinned rate (docs RF-24): without
    it the multiplier 2 diverged and GD's predicted α at s = 1.5 fell 0.15 below the draws'."""
    if not optimizer.has_theory:
        raise ValueError(f"{optimizer.name} has no sampling-free theory (its update is not a function of Σ_N)")
    mu, c2, count = spectrum.mu, spectrum.c2, spectrum.count
    f = np.asarray(optimizer.theory_preconditioner(mu, spectrum.step_rule["mean_diag"], hp), np.float64)
    if optimizer.top_scaled:
        order = np.argsort(-mu * f)
        top = np.zeros(len(mu), bool)
        top[order[:max(1, int(np.searchsorted(np.cumsum(count[order]), 1.0, side="right")))]] = True
        mu_max = np.asarray([spectrum.step_rule["mu_max"]])
        pinned = mu_max[0] * float(np.asarray(optimizer.theory_preconditioner(mu_max, spectrum.step_rule["mean_diag"],
                                                                              hp))[0])  # μ_max f(μ_max)
        f = np.where(top, pinned / mu, f)
    lr = optimizer.base_lr(spectrum.step_rule, hp) * np.asarray(hp.lr_multipliers, np.float64)
    beta = hp.momentum if optimizer.theory_momentum else 0.0
    with jax.enable_x64(True):  # the theory's float64, whatever the caller's flag
        args = (jnp.asarray(x, jnp.float64) for x in (mu, c2, spectrum.floor, f, beta, lr))
        return np.asarray(_curves(*args, steps=int(steps)))


class Prediction(NamedTuple):
    alpha: dict  # {optimizer: α over the window}
    loss: dict  # {optimizer: (W,) tuned final loss}
    lr_multiplier: dict  # {optimizer: (W,) the tuned multiplier per N}
    n_star_gd: int  # modes GD learns within the budget (ηλ₁ = 1): the window is budget-limited above it
    pays_off: dict  # {optimizer: α − α_GD}


def tuned_losses(optimizer: OptimizerSpec, spectra, hp: Config, budgets) -> tuple[np.ndarray, np.ndarray]:
    """(W, B) predicted loss after each budget in `budgets` (steps) at the best of hp.lr_multipliers, one row per
    spectrum in `spectra` (the equivalents of widths W), and (W, B) the index of that multiplier. A diverging
    multiplier (non-finite curve) is never chosen."""
    curves = np.stack([equivalent_curves(optimizer, sp, hp, max(budgets)) for sp in spectra])  # (W, M, T + 1)
    at_budgets = np.where(np.isfinite(curves), curves, np.inf)[:, :, list(budgets)]  # (W, M, B)
    best = np.argmin(at_budgets, axis=1)  # (W, B)
    return np.take_along_axis(at_budgets, best[:, None, :], axis=1)[:, 0, :], best


def predict_alpha(eigenvalues, target_power, *, widths, steps: int, optimizers=THEORY_OPTIMIZERS, **hp) -> Prediction:
    """The spectral diagnostic: predicted α of L(N) ∝ N^-α over `widths` after `steps` steps of each optimizer, at its
    best multiplier per N (hp: any Config field, e.g. lr_multipliers, momentum, damping, noise; defaults those of
    the quick preset), and its gain over GD. No feature draw; a dozen seconds for widths to 256 at D = 4096."""
    config = dataclasses.replace(PRESETS["quick"], widths=tuple(widths), steps=int(steps), **hp)
    spectra = [equivalent_spectrum(eigenvalues, target_power, N, config) for N in config.widths]
    n = np.asarray(config.widths, np.float64)
    alpha, loss, chosen = {}, {}, {}
    for name in optimizers:
        tuned, best = tuned_losses(SPECS[name], spectra, config, (config.steps,))
        loss[name] = tuned[:, 0]
        chosen[name] = [config.lr_multipliers[b] for b in best[:, 0]]
        alpha[name] = float(loglog_slope(n, jnp.asarray(loss[name])))
    n_star = int(time_bottleneck(eigenvalues, config.steps, learning_rate=1.0))
    gd = alpha.get("gd")
    return Prediction(alpha, loss, chosen, n_star, {k: v - gd for k, v in alpha.items() if gd is not None})
