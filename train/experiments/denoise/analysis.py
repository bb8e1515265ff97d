"""denoise, step 2: T_best and its bootstrap SE, T*(ε) (theory), the slopes of T_best against σ², the excess over
Bayes and its decay with N, the trained models' clocks, and the particle histograms.

metrics = {"depth_curves": one row per (prior, d, σ²), "t_star_slopes": one per (prior, d),
           "convergence": one per (prior, d), "trained": one per (prior, readout, σ²), "times": the flow-time grid,
           "particles_histogram": densities at T = 0, T_best, 2 T_best over a prior sample (or None),
           "t_star_law": T*(ε) on a σ² grid, for s₀ = 1 ("gaussian") and s₀ = mode_variance ("components"),
           "t_best_bootstrap": how the SE of T_best was resampled (resamples, the seed's key path),
           "t_star_tolerance": the relative tolerance of each row's "t_star_deviates",
           "summary": the ranges and counts the report states over all depth-curve rows}

The one random step here, the bootstrap of T_best over prompts, draws from a NumPy generator seeded by
`train.harness.keys.derive_seed(config.seed, NAME, "t_best bootstrap", prior, d, σ²)` (recorded per row).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from deeptheory.theory.particle_flow import parabolic_minimum
from deeptheory.train.experiments.denoise.config import (
    KDE_GRID,
    NAME,
    PRIORS,
    Config,
    flow_times,
    histogram_case,
    local_variance,
    t_star,
)
from deeptheory.train.fits import line_fit
from deeptheory.train.harness.keys import derive_seed
from deeptheory.train.harness.report import agrees

BOOTSTRAP_RESAMPLES = 64  # resamples of the prompts behind the SE of T_best
BOOTSTRAP_PATH = (NAME, "t_best bootstrap")  # + (prior, d, σ²): the key path of each cell's bootstrap seed
T_STAR_TOLERANCE = 0.1  # T_best agrees with T*(ε) inside 1 SE or within this relative tolerance


def _bootstrap_seed(config: Config, name: str, dim: int, sigma2: float) -> int:
    return derive_seed(config.seed, *BOOTSTRAP_PATH, name, dim, sigma2)


def _t_best(times, curves_RxL, seed: int):
    """T minimising the prompt-mean curve, and the SE of that minimiser from a bootstrap over prompts
    (BOOTSTRAP_RESAMPLES resamples drawn from NumPy's generator at `seed`)."""
    best = float(parabolic_minimum(jnp.asarray(times), jnp.asarray(curves_RxL.mean(0))))
    rng = np.random.default_rng(seed)
    R = curves_RxL.shape[0]
    boot = [float(parabolic_minimum(jnp.asarray(times), jnp.asarray(curves_RxL[rng.integers(0, R, R)].mean(0))))
            for _ in range(BOOTSTRAP_RESAMPLES)]
    return best, float(np.std(boot, ddof=1))


def _depth_rows(config: Config, name: str, dim: int, res: dict, times) -> tuple[list, dict]:
    """One row per σ² of the case's depth curves, and the case's slopes of T_best against σ²."""
    c = res["curves"]
    spec = PRIORS[name]
    s0 = spec.local_variance(config.mode_variance)
    rows, t_bests, corrected = [], [], []
    for si, s2 in enumerate(config.sigma2s):
        curve = c["two_stage"][si]
        seed = _bootstrap_seed(config, name, dim, s2)
        t_best, t_se = _t_best(times, curve, seed)
        t_bests.append(t_best)
        t_star_theory = t_star(s2, config.eps, s0)
        corrected.append(t_best - (t_star_theory - s2 / 2))
        mean = curve.mean(0)
        i = int(np.argmin(mean))
        bayes = float(res["bayes"][si])
        kde = c["kde_grid"][si].mean(0)
        rows.append({
            "prior": name, "dim": dim, "sigma2": s2, "half_sigma2": s2 / 2,
            "t_best": t_best, "t_best_se": t_se, "t_best_bootstrap_seed": seed,
            "t_best_over_half_sigma2": t_best / (s2 / 2),
            "t_star_theory": t_star_theory, "t_star_theory_kind": spec.t_star_kind,
            "t_best_over_t_star": t_best / t_star_theory,
            "t_star_deviates": not agrees(t_best, t_se, t_star_theory, within=T_STAR_TOLERANCE),
            "t_best_eps_corrected": t_best - (t_star_theory - s2 / 2),
            "best_depth": i, "mse_best": float(mean[i]), "mse_depth0": float(mean[0]),
            "mse_at_half_sigma2": float(np.interp(s2 / 2, times, mean)),
            "bayes_mse": bayes, "bayes_realised": float(c["bayes_realised"][si].mean()),
            "excess_over_bayes": float(mean[i] / bayes - 1),
            "excess_over_bayes_realised": float(mean[i] / c["bayes_realised"][si].mean() - 1),
            "mse_particles_only_best": float(c["particles_only"][si].mean(0).min()),
            "mse_blurring_best": float(c["blurring"][si].mean(0).min()),
            "mse_kde_silverman": float(c["kde_silverman"][si].mean()),
            "mse_kde_best": float(kde.min()), "kde_best_h2_over_sigma2": KDE_GRID[int(np.argmin(kde))],
            "mse_oracle_flow": float(c["oracle_flow"][si].mean()),
            "beats_comparators": bool(mean[i] < min(mean[0], kde.min(), c["blurring"][si].mean(0).min())),
            "distance_best_time": float(times[int(np.argmin(c["distance"][si].mean(0)))]),
            "distance_min": float(c["distance"][si].mean(0).min()),
            "distance_floor": float(c["distance_floor"][si].mean()),
            "distance_min_over_floor": float(c["distance"][si].mean(0).min() / c["distance_floor"][si].mean()),
            "mse_curve": mean.tolist(), "distance_curve": c["distance"][si].mean(0).tolist(),
            "variance_curve": c["variance"][si].mean(0).tolist(),
        })
    fit = line_fit(config.sigma2s, t_bests)
    slopes = {"prior": name, "dim": dim, "slope": fit.slope, "intercept": fit.intercept,
              "theory_slope": line_fit(config.sigma2s, [t_star(s, config.eps, s0) for s in config.sigma2s]).slope,
              "slope_eps_corrected": line_fit(config.sigma2s, corrected).slope, "t_best": t_bests,
              "t_best_eps_corrected": corrected}
    return rows, slopes


def _convergence_row(config: Config, name: str, dim: int, res: dict) -> dict:
    conv = res["convergence"]
    best = np.asarray([conv[f"n{n}"].mean(0).min() for n in config.context_sizes])
    excess = best / float(res["bayes_convergence"]) - 1
    # paired: the Bayes posterior mean on the same tokens (removes most of the prompt-to-prompt noise)
    bayes_same_tokens = np.asarray([conv[f"n{n}_bayes"].mean() for n in config.context_sizes])
    paired = best / bayes_same_tokens - 1
    positive = paired > 0
    # log(paired excess) ≈ intercept + rate · log N, least squares over the N where the paired excess is positive
    fit = line_fit(np.log(np.asarray(config.context_sizes)[positive]), np.log(paired[positive])) \
        if positive.sum() >= 2 else None
    return {"prior": name, "dim": dim, "sigma2": config.convergence_sigma2,
            "context_sizes": list(config.context_sizes), "mse_best": best.tolist(),
            "bayes_mse": float(res["bayes_convergence"]), "excess_over_bayes": excess.tolist(),
            "excess_over_bayes_realised": paired.tolist(),
            "bayes_realised": bayes_same_tokens.tolist(),
            "excess_decay_exponent": None if fit is None else fit.slope,
            "excess_decay_log_intercept": None if fit is None else fit.intercept,
            "excess_decay_fitted_n": np.asarray(config.context_sizes)[positive].tolist(),
            "prompts": [len(conv[f"n{n}"]) for n in config.context_sizes]}


def _trained_rows(config: Config, name: str, tr: dict, times) -> list[dict]:
    analytic = tr["analytic_curve"]  # (S, prompts, L + 1)
    analytic_bayes = tr["analytic_bayes_realised"].mean(1)
    rows = []
    for vi, variant in enumerate(config.train_readout):
        for si, s2 in enumerate(config.sigma2s):
            bw, steps = tr["bandwidth"][vi, si], tr["step"][vi, si]
            total_time = float(np.sum(bw * steps))
            tau = float(tr["readout"][vi, si])
            rows.append({
                "prior": name, "dim": min(config.dims), "readout": variant, "sigma2": s2,
                "context": config.train_context, "learned_total_time": total_time, "half_sigma2": s2 / 2,
                "time_over_half_sigma2": total_time / (s2 / 2), "learned_readout_bandwidth": tau,
                "effective_time": float(tr["effective_time"][vi, si]),
                "effective_time_over_half_sigma2": float(tr["effective_time"][vi, si] / (s2 / 2)),
                "readout_over_sigma2": tau / s2, "bandwidths": bw.tolist(), "steps": steps.tolist(),
                "bandwidth_cv": float(np.std(bw) / np.mean(bw)),
                "mse_learned": float(tr["learned_mse"][vi, si]), "mse_analytic_best": float(analytic[si].mean(0).min()),
                "learned_excess_over_bayes": float(tr["learned_mse"][vi, si] / tr["bayes_realised"][vi, si] - 1),
                "analytic_excess_over_bayes": float(analytic[si].mean(0).min() / analytic_bayes[si] - 1),
                "analytic_best_time": float(times[int(np.argmin(analytic[si].mean(0)))]),
                "mse_bayes_realised": float(tr["bayes_realised"][vi, si]),
                "analytic_bayes_realised": float(analytic_bayes[si]),
                "final_loss": float(tr["losses"][-max(1, config.train_steps // 10):, vi, si].mean()),
            })
    return rows


def _particles_histogram(config: Config, rows: list, times, sample: dict | None) -> dict | None:
    """Densities of the Stage-1 particles at T = 0, T_best and 2 T_best (clipped to the last layer) over 60 bins
    spanning the noisy tokens, and of the clean tokens (a prior sample): the figure's data."""
    if sample is None:
        return None
    name, s2 = histogram_case(config)
    path, tokens = sample["particles"], sample["tokens"]
    t_best = next(r["t_best"] for r in rows if r["prior"] == name and r["dim"] == 1 and r["sigma2"] == s2)
    edges = np.linspace(np.min(path[0]), np.max(path[0]), 61)
    curves = []
    for t in (0.0, t_best, 2 * t_best):
        i = int(np.argmin(np.abs(times - t)))  # the recorded layer nearest t (the last one past the grid)
        curves.append({"time": float(times[i]), "density": np.histogram(path[i], edges, density=True)[0]})
    return {"prior": name, "sigma2": s2, "edges": edges,
            "prior_density": np.histogram(tokens, edges, density=True)[0], "curves": curves}


def _t_star_law(config: Config) -> dict:
    """T*(ε) on a σ² grid up to the largest σ², with s₀ = 1 and with s₀ = mode_variance: the figure's lines."""
    grid = np.linspace(0, max(config.sigma2s), 50)[1:]
    s0 = {kind: local_variance(component, config.mode_variance)
          for kind, component in (("gaussian", False), ("components", True))}
    return {"sigma2": grid.tolist(), **{kind: [t_star(s, config.eps, s0[kind]) for s in grid] for kind in s0}}


def _span(values) -> list[float]:
    return [float(min(values)), float(max(values))]


def _summary(rows: list) -> dict:
    """The ranges and counts over all (prior, d, σ²) cells that the report's findings state."""
    return {"cells": len(rows),
            "t_best_over_t_star": _span([r["t_best_over_t_star"] for r in rows]),
            "t_best_over_half_sigma2": _span([r["t_best_over_half_sigma2"] for r in rows]),
            "excess_over_bayes_realised": _span([r["excess_over_bayes_realised"] for r in rows]),
            "beats_comparators": sum(r["beats_comparators"] for r in rows),
            "t_star_deviations": sum(r["t_star_deviates"] for r in rows)}


def analyse(config: Config, data, raw: dict) -> dict:
    times = flow_times(config)
    rows, slopes, convergence = [], [], []
    for (name, dim), res in raw["cases"].items():
        case_rows, case_slopes = _depth_rows(config, name, dim, res, times)
        rows += case_rows
        slopes.append(case_slopes)
        convergence.append(_convergence_row(config, name, dim, res))
    trained = [row for name, tr in raw["trained"].items() for row in _trained_rows(config, name, tr, times)]
    return {"depth_curves": rows, "t_star_slopes": slopes, "convergence": convergence, "trained": trained,
            "times": times.tolist(), "particles_histogram": _particles_histogram(config, rows, times, raw["histogram"]),
            "t_star_law": _t_star_law(config), "summary": _summary(rows),
            "t_best_bootstrap": {"resamples": BOOTSTRAP_RESAMPLES, "seed": "train.harness.keys.derive_seed(seed, "
                                 + ", ".join(map(repr, BOOTSTRAP_PATH)) + ", prior, d, σ²)"},
            "t_star_tolerance": T_STAR_TOLERANCE}
