"""rf_scaling, step 2: the theory beside every measured loss, and the exponents α of both.

From raw (`measure`): the tuned loss per (optimizer, s, N), its α with a bootstrap CI over seeds (`train.fits`); the
eigenbasis theory on each seed's recorded spectrum (exact dynamics for GD, heavy ball, natural gradient; GD with a
rescaled step for the diagonal Fisher; none for Adam: `optimizers.OptimizerSpec`); the sampling-free learning curve
(`theory.rf_dynamics`: the same dynamics on the deterministic equivalent of Σ_N's spectrum, no feature draw); the
ridge equivalent and the infinite-budget exponent (`theory.random_features.rf_risk`, P = ∞); the time bottleneck N*(T).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from deeptheory.theory.random_features import (
    learning_curve,
    loglog_slope,
    rf_risk,
    time_bottleneck,
)
from deeptheory.train.experiments.rf_scaling.config import NAME, Config
from deeptheory.train.experiments.rf_scaling.measure import population
from deeptheory.train.experiments.rf_scaling.optimizers import OptimizerSpec, spec
from deeptheory.train.experiments.rf_scaling.predict import equivalent_curves, equivalent_spectrum
from deeptheory.train.fits import fit_exponent
from deeptheory.train.harness.keys import derive_seed


def _final_losses(config: Config, mu, c2, floor, lr, f, beta):
    """L(T) of the eigenbasis dynamics for a batch of (spectrum, excess power, floor, η, f, β), float64, one jit."""
    curve = lambda *args: learning_curve(args[0], args[1], config.steps, learning_rate=args[3],  # noqa: E731
                                         preconditioner_values=args[4], momentum=args[5], floor=args[2])[-1]
    return np.asarray(jax.jit(jax.vmap(curve))(*(jnp.asarray(x, jnp.float64) for x in (mu, c2, floor, lr, f, beta))))


def theory_losses(optimizer: OptimizerSpec, config: Config, spectra: dict) -> np.ndarray:
    """(S, R, W, M) final losses of the eigenbasis dynamics on each seed's N-feature spectrum (NaN without a
    theory). Spectra are padded to max N with modes of zero excess power."""
    S, R, W, M = len(config.s_values), config.seeds, config.widths, config.lr_multipliers
    if not optimizer.has_theory:
        return np.full((S, R, len(W), len(M)), np.nan)
    rows = []
    for si in range(S):
        for r in range(R):
            for wi in range(len(W)):
                at = {k: v[si, r, wi] for k, v in spectra.items()}
                f = optimizer.theory_preconditioner(at["mu"], at["mean_diag"], config)
                rows += [(at["mu"], at["c2"], at["floor"], optimizer.base_lr(at, config) * m, f) for m in M]
    mu, c2, floor, lr, f = (np.stack([row[i] for row in rows]) for i in range(5))
    beta = np.full(len(rows), config.momentum if optimizer.theory_momentum else 0.0)
    return _final_losses(config, mu, c2, floor, lr, f, beta).reshape(S, R, len(W), len(M))


def equivalent_losses(optimizer: OptimizerSpec, config: Config, spectra: dict) -> np.ndarray:
    """(S, W, M) final losses predicted with no feature draw (`predict.equivalent_curves` on `spectra`, {(s index, N):
    `predict.EquivalentSpectrum`}, shared by the optimizers; docs/random_features.md, eq. (RF-24)). NaN without a
    theory (Adam)."""
    S, W, M = len(config.s_values), config.widths, config.lr_multipliers
    if not optimizer.has_theory:
        return np.full((S, len(W), len(M)), np.nan)
    return np.asarray([[equivalent_curves(optimizer, spectra[si, N], config, config.steps)[:, -1] for N in W]
                       for si in range(S)])


def closed_form_losses(optimizer: OptimizerSpec, config: Config) -> np.ndarray:
    """(S, W, M) losses predicted with no sampling: training for T steps at effective rate η_eff ≈ the population
    ridge z = 1/(η_eff T) (early stopping ↔ ridge: Ali, Kolter & Tibshirani 2019; Bordelon et al. 2024), so
    L(N, T) ≈ rf_risk(N features, P = ∞, ridge z) (docs/random_features.md, eq. (RF-15)); η_eff per unit
    multiplier is the spec's `effective_rate`. NaN without a theory."""
    S, W, M = len(config.s_values), config.widths, config.lr_multipliers
    if optimizer.effective_rate is None:
        return np.full((S, len(W), len(M)), np.nan)
    rate = optimizer.effective_rate(config)
    ridge = np.asarray([1.0 / (rate * m * config.steps) for m in M])
    out = np.empty((S, len(W), len(M)))
    for si, s in enumerate(config.s_values):
        lam, v2 = (jnp.asarray(x) for x in population(config, s))
        risk = jax.vmap(jax.vmap(lambda n, z, lam=lam, v2=v2: rf_risk(lam, v2, n_features=n, n_samples=jnp.inf, ridge=z,
                                                                      noise=config.noise), (None, 0)), (0, None))
        out[si] = np.asarray(risk(jnp.asarray(W, jnp.float64), jnp.asarray(ridge)))
    return out


def _tuned(losses_RxWxM):
    """Per N the multiplier with the least seed-mean final loss (diverged runs count as +inf)."""
    mean = np.where(np.isfinite(losses_RxWxM), losses_RxWxM, np.inf).mean(axis=0)  # (W, M)
    best = np.argmin(mean, axis=1)
    return best, losses_RxWxM[:, np.arange(len(best)), best]


def analyse(config: Config, data, raw: dict) -> dict:
    S, W, O = config.s_values, config.widths, config.optimizers
    losses, n = raw["losses"], np.asarray(W, np.float64)
    rows = []
    spectra = {(si, N): equivalent_spectrum(*population(config, s), N, config)
               for si, s in enumerate(S) for N in W}
    for oi, name in enumerate(O):
        optimizer = spec(name)
        theory_all, closed_all = theory_losses(optimizer, config, raw["spectra"]), closed_form_losses(optimizer, config)
        equivalent_all = equivalent_losses(optimizer, config, spectra)
        for si, s in enumerate(S):
            best, tuned = _tuned(losses[oi, si])
            fit = fit_exponent(n, tuned, confidence=config.confidence,
                               seed=derive_seed(config.seed, NAME, "bootstrap", name, s))
            theory_curve = np.min(theory_all[si].mean(axis=0), axis=1) if optimizer.has_theory else None
            closed = np.min(closed_all[si], axis=1) if optimizer.effective_rate is not None else None
            equivalent = np.min(equivalent_all[si], axis=1) if optimizer.has_theory else None
            rows.append({
                "optimizer": name, "s": s, "a": s + config.target_shift, **fit.as_dict(),
                "loss_mean": tuned.mean(axis=0).tolist(), "loss_per_seed": tuned.tolist(),
                "lr_multiplier": [config.lr_multipliers[b] for b in best],
                "theory_loss": None if theory_curve is None else theory_curve.tolist(),
                "theory_alpha": None if theory_curve is None else float(loglog_slope(n, theory_curve)),
                "closed_form_loss": None if closed is None else closed.tolist(),
                "closed_form_alpha": None if closed is None else float(loglog_slope(n, closed)),
                "equivalent_loss": None if equivalent is None else equivalent.tolist(),
                "equivalent_alpha": None if equivalent is None else float(loglog_slope(n, equivalent)),
            })
    diagnostics = []
    gd, natural = spec("gd"), spec("natural")
    for s in S:
        lam, v2 = population(config, s)
        converged = [float(rf_risk(lam, v2, n_features=N, n_samples=jnp.inf, ridge=0.0, noise=config.noise)) for N in W]
        # N*(T) at ηλ₁ = 1 (the population spectrum: the preconditioner's mean diagonal is not used by GD or NG)
        n_star = {o.name: int(time_bottleneck(lam, config.steps, learning_rate=1.0,
                                              preconditioner_values=o.theory_preconditioner(lam, None, config)))
                  for o in (gd, natural)}
        diagnostics.append({"s": s, "converged_alpha": float(loglog_slope(n, jnp.asarray(converged))),
                            "converged_loss": converged, "n_star_gd": n_star["gd"], "n_star_natural": n_star["natural"],
                            "window": [W[0], W[-1]]})
    return {"rows": rows, "diagnostics": diagnostics}
