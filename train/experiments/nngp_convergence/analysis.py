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
            "error_slope_vs_width": {k: {"slope": v[0], "stderr": v[1]} for k, v in slopes.items()}}

