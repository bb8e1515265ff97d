"""nngp_convergence, step 2: the NNGP predictor's GP test loss (theory) and the slope of the kernel error vs N."""

from __future__ import annotations

import numpy as np

from deeptheory.train.experiments.nngp_convergence.config import Config
from deeptheory.train.experiments.nngp_convergence.measure import draw_ladder, gp_loss, nngp_reference
from deeptheory.train.fits import line_fit


def error_slope(widths, errors) -> tuple[float, float]:
    """Slope of log error against log width, with its standard error (`train.fits.line_fit`)."""
    fit = line_fit(np.log(np.asarray(widths, float)), np.log(errors))
    return fit.slope, fit.stderr


def analyse(config: Config, task, raw: dict) -> dict:
    A, L, W = config.activations, config.depths, config.widths
    ladder = draw_ladder(config.draws)
    errors, gp_emp = raw["errors"], raw["gp_empirical"]
    gp_nngp = np.array([[gp_loss(nngp_reference(config, task, A[a], L[l]), task, config.temperature)
                         for l in range(len(L))] for a in range(len(A))])
    rows = []
    for a in range(len(A)):
        for l in range(len(L)):
            for w in range(len(W)):
                rows.append({"activation": A[a], "depth": L[l], "width": W[w],
                             "kernel_error": dict(zip(map(str, ladder), errors[a, l, w].tolist(), strict=True)),
                             "gp_test_loss_empirical": gp_emp[a, l, w, 0],
                             "gp_test_loss_nngp": gp_nngp[a, l, 0]})
    slopes = {f"{A[a]}_L{L[l]}": error_slope(W, errors[a, l, :, -1]) for a in range(len(A)) for l in range(len(L))}
    nngp = {f"{A[a]}_L{L[l]}": dict(zip(("total", "bias2", "variance"), gp_nngp[a, l].tolist(), strict=True))
            for a in range(len(A)) for l in range(len(L))}
    return {"draw_ladder": ladder, "rows": rows, "nngp_gp": nngp,
            "error_slope_vs_width": {k: {"slope": v[0], "stderr": v[1]} for k, v in slopes.items()},
            **_summary(config, ladder, errors, gp_emp, gp_nngp)}


def _summary(config: Config, ladder, errors, gp_emp, gp_nngp) -> dict:
    """The numbers the report states besides the rows: the constants of the c/√N and c/√(D·N) guide lines, the
    worst GP gap at the largest width, the slopes fitted at the smaller D of the ladder and the spread of
    error·√(D·N) (the scatter of single draws), and how far the deepest depth sits above the shallowest."""
    A, L, W = config.activations, config.depths, config.widths
    w_N, dn_K = np.asarray(W, float), np.asarray([w * d for w in W for d in ladder], float)
    smaller = [d for d in ladder[:-1] if d >= 4]
    per_key, collapse = {}, {}
    for a in range(len(A)):
        for l in range(len(L)):
            at_D = errors[a, l, :, -1]
            spread = at_D * np.sqrt(w_N * ladder[-1])
            per_key[f"{A[a]}_L{L[l]}"] = {
                "guide_c": float(np.median(at_D * np.sqrt(w_N))),  # c of c·N^-1/2 through the median
                "slopes_at_smaller_draws": {str(d): error_slope(W, errors[a, l, :, ladder.index(d)])[0]
                                            for d in smaller},
                "scaled_error_spread": {"min": float(spread.min()), "max": float(spread.max()),
                                        "half_range_percent": float(50 * (spread.max() - spread.min()) / spread.mean())},
            }
        all_pairs = np.asarray([errors[a, 0, w, k] for w in range(len(W)) for k in range(len(ladder))])
        collapse[A[a]] = float(np.median(all_pairs * np.sqrt(dn_K)))  # c of c/√(D·N) at the shallowest depth
    gap = float(np.max(np.abs(gp_emp[:, :, -1, 0] / gp_nngp[:, :, 0] - 1)))
    summary = {"per_activation_depth": per_key, "collapse_c": collapse, "gp_gap_at_max_width": gap}
    deep = [l for l in range(len(L)) if L[l] > 1]
    if deep:  # the last depth > 1 against the first depth of the list, over every (N, D)
        summary["deep_over_shallow_error"] = {
            "depth": L[deep[-1]], "shallow_depth": L[0],
            "median_ratio": {A[a]: float(np.median(errors[a, deep[-1]] / errors[a, 0])) for a in range(len(A))}}
    return summary

