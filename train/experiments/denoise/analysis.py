"""denoise, step 2: T_best and the bootstrap SEs of every ratio, T*(ε) (theory), the slopes of T_best against σ², the
excess over Bayes, the gains over the comparators, the oracle particles against (A-17), the excess's decay with N,
the trained models' clocks (mean ± SE over seeds), and the particle histograms.

metrics = {"depth_curves": one row per (prior, d, σ²), "t_star_slopes": one per (prior, d),
           "convergence": one per (prior, d), "trained": one per (prior, attention, readout, σ²),
           "times": the flow-time grid,
           "particles_histogram": densities at T = 0, T_best, 2 T_best over a prior sample (or None),
           "t_star_law": T*(ε) on a σ² grid, for s₀ = 1 ("gaussian") and s₀ = mode_variance ("components"),
           "t_best_bootstrap": how the SEs were resampled (resamples, the seed's key path),
           "t_star_tolerance": the relative tolerance of each row's "t_star_deviates",
           "summary": the ranges and counts the report states over all depth-curve rows}

The random steps here are bootstraps over prompts, from NumPy generators seeded by
`train.harness.keys.derive_seed(config.seed, NAME, "t_best bootstrap", prior, d, σ²)` (per depth-curve cell, recorded
per row; one resampling serves every statistic of the cell) and `derive_seed(config.seed, NAME, "convergence
bootstrap", prior, d)` (the MSE-vs-N study). Priors without a T*(ε) law (the circle) have None in its fields.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from deeptheory.theory.particle_flow import parabolic_minimum, stage2_asymptotic_particles, stage2_excess_constant
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


def _resamples(seed: int, prompts: int) -> list[np.ndarray]:
    """BOOTSTRAP_RESAMPLES index sets over the prompts, from NumPy's generator at `seed` (one set serves every
    statistic of a cell, so their errors are those of one resampling)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, prompts, prompts) for _ in range(BOOTSTRAP_RESAMPLES)]


def _se(values) -> float:
    return float(np.std(values, ddof=1))


def _cell(c: dict, si: int, times, index) -> dict:
    """The statistics of one (prior, d, σ²) cell on the prompts `index` (all of them, or a bootstrap resample):
    T_best, the best MSE's excess over Bayes on the same tokens, and the gains over the comparators and the
    oracle particles' excess, all relative to that Bayes MSE."""
    curve = c["two_stage"][si][index].mean(0)
    bayes = c["bayes_realised"][si][index].mean()
    best = curve.min()
    return {"t_best": float(parabolic_minimum(jnp.asarray(times), jnp.asarray(curve))),
            "excess": best / bayes - 1,
            "gain_over_depth0": (curve[0] - best) / bayes,
            "gain_over_kde_best": (c["kde_grid"][si][index].mean(0).min() - best) / bayes,
            "gain_over_blurring": (c["blurring"][si][index].mean(0).min() - best) / bayes,
            "oracle_particles_excess": c["oracle_particles"][si][index].mean() / bayes - 1}


def _depth_rows(config: Config, name: str, dim: int, res: dict, times) -> tuple[list, dict]:
    """One row per σ² of the case's depth curves, and the case's slopes of T_best against σ²."""
    c = res["curves"]
    spec = PRIORS[name]
    s0 = spec.local_variance(config.mode_variance)
    rows, t_bests, corrected = [], [], []
    for si, s2 in enumerate(config.sigma2s):
        curve = c["two_stage"][si]
        R = curve.shape[0]
        seed = _bootstrap_seed(config, name, dim, s2)
        point = _cell(c, si, times, np.arange(R))
        boot = [_cell(c, si, times, idx) for idx in _resamples(seed, R)]
        se = {k: _se([b[k] for b in boot]) for k in point}
        t_best, t_se = point["t_best"], se["t_best"]
        t_bests.append(t_best)
        t_star_theory = t_star(s2, config.eps, s0) if spec.has_t_star else None
        if spec.has_t_star:
            corrected.append(t_best - (t_star_theory - s2 / 2))
        mean = curve.mean(0)
        i = int(np.argmin(mean))
        bayes = float(res["bayes"][si])
        kde = c["kde_grid"][si].mean(0)
        rows.append({
            "prior": name, "dim": dim, "sigma2": s2, "half_sigma2": s2 / 2, "prompts": R, "context": config.context,
            "t_best": t_best, "t_best_se": t_se, "t_best_bootstrap_seed": seed,
            "t_best_over_half_sigma2": t_best / (s2 / 2), "t_best_over_half_sigma2_se": t_se / (s2 / 2),
            "t_star_theory": t_star_theory, "t_star_theory_kind": spec.t_star_kind,
            "t_best_over_t_star": None if t_star_theory is None else t_best / t_star_theory,
            "t_best_over_t_star_se": None if t_star_theory is None else t_se / t_star_theory,
            "t_star_deviates": None if t_star_theory is None else not agrees(t_best, t_se, t_star_theory,
                                                                             within=T_STAR_TOLERANCE),
            "t_best_eps_corrected": None if t_star_theory is None else t_best - (t_star_theory - s2 / 2),
            "best_depth": i, "t_best_at_grid_end": i == len(mean) - 1,
            "mse_best": float(mean[i]), "mse_depth0": float(mean[0]),
            "mse_at_half_sigma2": float(np.interp(s2 / 2, times, mean)),
            "bayes_mse": bayes, "bayes_realised": float(c["bayes_realised"][si].mean()),
            "excess_over_bayes": float(mean[i] / bayes - 1),
            "excess_over_bayes_realised": float(point["excess"]), "excess_over_bayes_realised_se": se["excess"],
            **{k: float(point[k]) for k in ("gain_over_depth0", "gain_over_kde_best", "gain_over_blurring")},
            **{f"{k}_se": se[k] for k in ("gain_over_depth0", "gain_over_kde_best", "gain_over_blurring")},
            "mse_oracle_particles": float(c["oracle_particles"][si].mean()),
            "oracle_particles_excess": float(point["oracle_particles_excess"]),
            "oracle_particles_excess_se": se["oracle_particles_excess"],
            "oracle_particles_excess_theory": _stage2_theory(name, s2, dim, config.context),
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
    with_law = spec.has_t_star
    slopes = {"prior": name, "dim": dim, "slope": fit.slope, "intercept": fit.intercept,
              "theory_slope": line_fit(config.sigma2s, [t_star(s, config.eps, s0) for s in config.sigma2s]).slope
              if with_law else None,
              "slope_eps_corrected": line_fit(config.sigma2s, corrected).slope if with_law else None,
              "t_best": t_bests, "t_best_eps_corrected": corrected if with_law else None}
    return rows, slopes


GAUSSIAN_VARIANCE = 1.0  # the "gaussian" prior is N(0, I_d) (config._gaussian): s₀ of
MIN_PROMPTS_FOR_SE = 8  # a bootstrap over fewer prompts gives an SE too noisy (and biased low) to print
MIN_KEPT_RESAMPLES = 0.9  # a rate's bootstrap SE needs this fraction of resamples with a positive excess


def _stage2_theory(name: str, sigma2: float, dim: int, n: int) -> float | None:
    """(A-17): the oracle particles' relative excess C/N, C = (1 + s₀/σ²)^d, for the Gaussian prior where the law
    holds (N ≥ 10 B^d, `stage2_asymptotic_particles`); None otherwise (no closed form, or N too small)."""
    if name != "gaussian" or n < 10 * float(stage2_asymptotic_particles(sigma2, GAUSSIAN_VARIANCE, dim)):
        return None
    return float(stage2_excess_constant(sigma2, GAUSSIAN_VARIANCE, dim)) / n


def _excess_fit(context_sizes, excess) -> tuple[float, float, list] | None:
    """log(excess) ≈ a + x log N by least squares over the N with a positive excess: (x, a, those N), or None."""
    n, e = np.asarray(context_sizes), np.asarray(excess)
    positive = e > 0
    if positive.sum() < 2:
        return None
    fit = line_fit(np.log(n[positive]), np.log(e[positive]))
    return fit.slope, fit.intercept, n[positive].tolist()


def _local_slopes(context_sizes, excess) -> list:
    """d log(excess)/d log N between successive N (None where an excess is not positive): the rate's drift."""
    n, e = np.log(np.asarray(context_sizes, float)), np.asarray(excess)
    return [float(np.log(e[i + 1] / e[i]) / (n[i + 1] - n[i])) if e[i] > 0 and e[i + 1] > 0 else None
            for i in range(len(e) - 1)]


def _convergence_row(config: Config, name: str, dim: int, res: dict) -> dict:
    conv, Ns = res["convergence"], config.context_sizes
    best = np.asarray([conv[f"n{n}"].mean(0).min() for n in Ns])
    excess = best / float(res["bayes_convergence"]) - 1
    # paired: the Bayes posterior mean on the same tokens (removes most of the prompt-to-prompt noise)
    bayes_same_tokens = np.asarray([conv[f"n{n}_bayes"].mean() for n in Ns])
    paired = best / bayes_same_tokens - 1
    oracle = np.asarray([conv[f"n{n}_oracle"].mean() for n in Ns]) / bayes_same_tokens - 1
    # bootstrap over the prompts of every N independently (the N are independent draws)
    rng = np.random.default_rng(derive_seed(config.seed, NAME, "convergence bootstrap", name, dim))
    # the best flow time at every N: does the finite-N minimiser approach the mean-field T*(ε) as N grows?
    times = config.step * config.eps * np.arange(conv[f"n{Ns[0]}"].shape[1])
    t_best_of = lambda curves: float(parabolic_minimum(jnp.asarray(times), jnp.asarray(curves.mean(0))))  # noqa: E731
    t_best = np.asarray([t_best_of(conv[f"n{n}"]) for n in Ns])
    boot_paired, boot_oracle, boot_t_best = [], [], []
    for _ in range(BOOTSTRAP_RESAMPLES):
        idx = [rng.integers(0, len(conv[f"n{n}"]), len(conv[f"n{n}"])) for n in Ns]
        b = [conv[f"n{n}_bayes"][i].mean() for n, i in zip(Ns, idx, strict=True)]
        boot_paired.append([conv[f"n{n}"][i].mean(0).min() / bn - 1 for n, i, bn in zip(Ns, idx, b, strict=True)])
        boot_oracle.append([conv[f"n{n}_oracle"][i].mean() / bn - 1 for n, i, bn in zip(Ns, idx, b, strict=True)])
        boot_t_best.append([t_best_of(conv[f"n{n}"][i]) for n, i in zip(Ns, idx, strict=True)])
    boot_paired, boot_oracle, boot_t_best = np.asarray(boot_paired), np.asarray(boot_oracle), np.asarray(boot_t_best)
    prompts = np.asarray([len(conv[f"n{n}"]) for n in Ns])
    # the rates are fitted over the N whose excess has an SE: an N of a few prompts would weigh in unweighted and
    # its bootstrap would narrow the rate's SE (it is shown, and its local slope, but not fitted)
    fitted_ns = np.asarray(Ns)[prompts >= MIN_PROMPTS_FOR_SE]
    usable = np.isin(Ns, fitted_ns)
    fit, oracle_fit = _excess_fit(fitted_ns, paired[usable]), _excess_fit(fitted_ns, oracle[usable])

    def rate_se(point_fit, boot) -> float | None:
        """The fitted rate's bootstrap SE over the same N; None when more than 10 % of the resamples have a
        non-positive excess there (dropping them would narrow the spread)."""
        if point_fit is None:
            return None
        fitted = np.isin(Ns, point_fit[2])
        kept = [b for b in boot if np.all(b[fitted] > 0)]
        if len(kept) < MIN_KEPT_RESAMPLES * len(boot):
            return None
        return _se([line_fit(np.log(np.asarray(Ns)[fitted]), np.log(b[fitted])).slope for b in kept])

    def per_n_se(boot) -> list:
        """Per-N bootstrap SE, None where the N has fewer than MIN_PROMPTS_FOR_SE prompts."""
        se = np.std(boot, axis=0, ddof=1)
        return [float(e) if p >= MIN_PROMPTS_FOR_SE else None for e, p in zip(se, prompts, strict=True)]

    spec = PRIORS[name]
    law = t_star(config.convergence_sigma2, config.eps, spec.local_variance(config.mode_variance)) \
        if spec.has_t_star else None
    return {"prior": name, "dim": dim, "sigma2": config.convergence_sigma2,
            "t_best": t_best.tolist(), "t_best_se": per_n_se(boot_t_best), "t_star_theory": law,
            "t_best_at_grid_end": (t_best >= times[-1]).tolist(),
            "context_sizes": list(Ns), "mse_best": best.tolist(),
            "bayes_mse": float(res["bayes_convergence"]), "excess_over_bayes": excess.tolist(),
            "excess_over_bayes_realised": paired.tolist(),
            "excess_over_bayes_realised_se": per_n_se(boot_paired),
            "bayes_realised": bayes_same_tokens.tolist(),
            "excess_decay_exponent": None if fit is None else fit[0],
            "excess_decay_exponent_se": rate_se(fit, boot_paired),
            "excess_decay_log_intercept": None if fit is None else fit[1],
            "excess_decay_fitted_n": [] if fit is None else fit[2],
            "excess_local_slopes": _local_slopes(Ns, paired),
            "oracle_particles_excess": oracle.tolist(),
            "oracle_particles_excess_se": per_n_se(boot_oracle),
            "oracle_particles_decay_exponent": None if oracle_fit is None else oracle_fit[0],
            "oracle_particles_decay_exponent_se": rate_se(oracle_fit, boot_oracle),
            "oracle_particles_excess_theory": None if name != "gaussian" else
            [_stage2_theory(name, config.convergence_sigma2, dim, n) for n in Ns],
            "stage2_excess_constant": None if name != "gaussian" else
            float(stage2_excess_constant(config.convergence_sigma2, GAUSSIAN_VARIANCE, dim)),
            "stage2_asymptotic_particles": None if name != "gaussian" else
            float(stage2_asymptotic_particles(config.convergence_sigma2, GAUSSIAN_VARIANCE, dim)),
            "prompts": prompts.tolist()}


def _mean_se(values) -> tuple[float, float | None]:
    """Mean over the seeds and its standard error (None with one seed)."""
    values = np.asarray(values, np.float64)
    return float(values.mean()), (float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else None)


def _trained_rows(config: Config, name: str, tr: dict, times) -> list[dict]:
    analytic = tr["analytic_curve"]  # (S, prompts, L + 1)
    analytic_bayes = tr["analytic_bayes_realised"].mean(1)
    rows = []
    for ai, attention in enumerate(config.train_attention):
        for vi, variant in enumerate(config.train_readout):
            for si, s2 in enumerate(config.sigma2s):
                at = (ai, vi, si)  # then the seeds (R,)
                bw, steps = tr["bandwidth"][at], tr["step"][at]  # (R, L)
                tau = tr["readout"][at]
                learned, bayes = tr["learned_mse"][at], tr["bayes_realised"][at]
                effective = tr["effective_time"][at]
                row = {"prior": name, "dim": min(config.dims), "attention": attention, "readout": variant, "sigma2": s2,
                       "context": config.train_context, "seeds": config.train_seeds, "half_sigma2": s2 / 2}
                for key, values in (("learned_total_time", np.sum(bw * steps, axis=-1)),
                                    ("time_over_half_sigma2", np.sum(bw * steps, axis=-1) / (s2 / 2)),
                                    ("learned_readout_bandwidth", tau), ("readout_over_sigma2", tau / s2),
                                    ("effective_time", effective),
                                    ("effective_time_over_half_sigma2", effective / (s2 / 2)),
                                    ("bandwidth_cv", np.std(bw, axis=-1) / np.mean(bw, axis=-1)),
                                    ("mse_learned", learned), ("learned_excess_over_bayes", learned / bayes - 1)):
                    row[key], row[f"{key}_se"] = _mean_se(values)
                row.update({
                    # geometric means over the seeds: the parameters are learned as logarithms
                    "bandwidths": np.exp(np.log(bw).mean(0)).tolist(), "steps": np.exp(np.log(steps).mean(0)).tolist(),
                    "mse_analytic_best": float(analytic[si].mean(0).min()),
                    "analytic_excess_over_bayes": float(analytic[si].mean(0).min() / analytic_bayes[si] - 1),
                    "analytic_best_time": float(times[int(np.argmin(analytic[si].mean(0)))]),
                    "mse_bayes_realised": float(bayes.mean()), "analytic_bayes_realised": float(analytic_bayes[si]),
                    "final_loss": float(tr["losses"][-max(1, config.train_steps // 10):, ai, vi, si].mean())})
                rows.append(row)
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


def _span(values) -> list[float] | None:
    """[min, max], or None over no cells (a run of trained models only)."""
    values = list(values)
    return [float(min(values)), float(max(values))] if values else None


def _summary(rows: list) -> dict:
    """The ranges and counts over all (prior, d, σ²) cells that the report's findings state (T*(ε) over the cells
    of priors that have the law)."""
    with_law = [r for r in rows if r["t_star_theory"] is not None]
    return {"cells": len(rows), "cells_with_t_star": len(with_law),
            "t_best_over_t_star": _span([r["t_best_over_t_star"] for r in with_law]),
            "t_best_over_half_sigma2": _span([r["t_best_over_half_sigma2"] for r in rows]),
            "excess_over_bayes_realised": _span([r["excess_over_bayes_realised"] for r in rows]),
            "beats_comparators": sum(r["beats_comparators"] for r in rows),
            "t_star_deviations": sum(bool(r["t_star_deviates"]) for r in with_law),
            "t_best_at_grid_end": [[r["prior"], r["dim"], r["sigma2"]] for r in rows if r["t_best_at_grid_end"]]}


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
