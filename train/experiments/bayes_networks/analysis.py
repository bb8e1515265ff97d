"""bayes_networks, step 2: the theory of every point (renormalized and NNGP) against what its chains measured.

metrics = {"rows": one dict per point (sampled test loss with its error bar, bias² and variance, readout norm and
kernel, each next to the theory and the NNGP; whether each prediction meets the measurement; R̂, ESS, burn-in,
acceptance; the sampler's step and schedule),
           "summary": how many points each prediction meets, how many kernels are closer to K_R, the largest R̂,
           "kernel_scatter": the sampled posterior kernel entry by entry against K_R and K at one point (MLP only)}

Every measured quantity is keyed "sampled", its predictions "theory" and "nngp". A prediction *meets* a measurement
when it lies inside its 1-SE error bar or within TOLERANCE (3 %) of it: `_agreement` records both parts of that
rule (`train.harness.report.within_error_bar` / `within_relative`, the rule of every report); figures.py only
formats the flags and counts.
"""

from __future__ import annotations

import numpy as np

from deeptheory.train.experiments.bayes_networks.architectures import ARCHITECTURES, UnitTheory
from deeptheory.train.experiments.bayes_networks.config import Config
from deeptheory.train.experiments.bayes_networks.measure import Measured
from deeptheory.train.harness.report import within_error_bar, within_relative
from deeptheory.train.inference import diagnostics

TOLERANCE = 0.03  # relative tolerance of agreement, next to the 1-SE error bar
RHAT_LIMIT = 1.05  # split-R̂ above it: a point may not be fully mixed
# The version of what a row holds and how it is computed. Bump it with any change to a formula or key of the rows:
# the committed study (results/bayes_networks) then fails its test until its parts are rerun (their checkpoints are
# not committed, so a clean clone cannot reanalyse them).
METRICS_VERSION = 2
SCATTER_ENTRIES = 4000  # kernel entries kept for the scatter plot (an even subset of the upper triangle)


def _agreement(measured: float, error: float, predicted: float) -> dict:
    """Whether a prediction meets a measurement: inside the 1-SE error bar, within TOLERANCE, either."""
    within_error = within_error_bar(measured, error, predicted)
    within_tolerance = within_relative(measured, predicted, TOLERANCE)
    return {"within_error_bar": within_error, "within_3_percent": within_tolerance,
            "meets": within_error or within_tolerance}


def _row(config: Config, task, measured: Measured, theory: UnitTheory) -> tuple[dict, tuple | None]:
    """The row of one point, and (sampled, K_R, K) kernels for the scatter plot where the architecture has them."""
    activation, depth, width, T = measured.point
    result, run_info = measured.chains, measured.sampler
    kept = slice(run_info["burn_in"] // run_info["every"], None)
    loss = result.trace["test_loss"][:, kept]
    mean, err, n_eff = diagnostics.mean_and_error(loss)
    n = result.n_kept * config.chains
    f_mean = result.accum["f"].sum(0) / n
    bias2 = float(np.mean((f_mean - task.y_test) ** 2))
    q_mean, q_err, _ = diagnostics.mean_and_error(result.trace["readout_q"][:, kept])
    th, nngp = theory.prediction, theory.nngp
    theory_loss, nngp_loss = float(th.test_loss), float(nngp.test_loss)
    loss_vs_theory = _agreement(mean, err, theory_loss)
    drift_z, drift_relative = diagnostics.drift(loss)
    row = {
        "activation": activation, "depth": depth, "width": width, "temperature": T, "p_over_n": config.n_train / width,
        "sampled": mean, "error": err, "theory": theory_loss, "nngp": nngp_loss,
        "relative_deviation": theory_loss / mean - 1,
        "nngp_relative_deviation": nngp_loss / mean - 1,
        "within_error_bar": loss_vs_theory["within_error_bar"],
        "within_2_error_bars": bool(abs(theory_loss - mean) <= 2 * err),
        "within_3_percent": loss_vs_theory["within_3_percent"],
        "bias2": {"sampled": bias2, "theory": float(th.bias2), "nngp": float(nngp.bias2)},
        "variance": {"sampled": mean - bias2, "theory": float(th.variance), "nngp": float(nngp.variance)},
        "readout_q": {"sampled": q_mean, "error": q_err, "theory": theory.readout_q,
                      "relative_deviation": theory.readout_q / q_mean - 1},
        "theory_variant": theory.variant,
        "theory_variants": {name: {"test_loss": loss, "relative_deviation": loss / mean - 1}
                            for name, loss in theory.variants.items()},
        "diagnostics": {"rhat": diagnostics.rhat(loss), "ess": n_eff, "draws": int(loss.size),
                        "drift_z": drift_z, "drift_relative": drift_relative,
                        "burn_in_detected_steps": diagnostics.burn_in(result.trace["test_loss"]) * run_info["every"],
                        "acceptance": float(np.mean(result.acceptance)),
                        "min_chain_acceptance": float(np.min(result.acceptance.mean(1)))},
        "sampler": dict(run_info, name=config.sampler),
    }
    row["meets"] = {"theory": loss_vs_theory["meets"], "nngp": _agreement(mean, err, nngp_loss)["meets"],
                    "readout_q": _agreement(q_mean, q_err, theory.readout_q)["meets"]}
    row["deviation_in_errors"] = abs(theory_loss - mean) / err
    # where the theory's miss of ε_g = bias² + variance mostly lies
    row["larger_miss"] = ("bias2" if abs(row["bias2"]["theory"] - bias2) > abs(row["variance"]["theory"] - (mean - bias2))
                          else "variance")
    pooled = {k: v / n for k, v in result.pooled.items()}
    row["kernel"], scatter = ARCHITECTURES[config.architecture].compare_kernel(pooled, theory, TOLERANCE, task.y_train)
    return row, scatter


def analyse(config: Config, task, raw: list[Measured]) -> dict:
    arch = ARCHITECTURES[config.architecture]
    rows, kernels = [], {}
    for measured in raw:
        theory = arch.theory(config, task, *measured.point)
        row, scatter = _row(config, task, measured, theory)
        rows.append(row)
        if scatter is not None:
            kernels[measured.point] = scatter
    metrics = {"rows": rows, "summary": _summary(rows), "metrics_version": METRICS_VERSION}
    if kernels:  # the posterior kernel of one point, entry by entry, for the scatter plot (upper triangle)
        key = max(kernels, key=lambda k: (k[0] == config.activations[0], -k[2], k[1]))  # smallest width, deepest
        iu = np.triu_indices(len(task.y_train))
        keep = np.unique(np.linspace(0, len(iu[0]) - 1, min(SCATTER_ENTRIES, len(iu[0]))).astype(int))
        iu = (iu[0][keep], iu[1][keep])  # an even subset: P = 500 has 125 250 entries, 8 MB of JSON per result
        emp, K_R, K = (np.asarray(a)[iu] for a in kernels[key])
        metrics["kernel_scatter"] = {"activation": key[0], "depth": key[1], "width": key[2], "temperature": key[3],
                                     "sampled": emp, "K_R": K_R, "nngp": K}
    return metrics


def _summary(rows: list[dict]) -> dict:
    """The counts the report states: points each prediction meets, kernels closer to K_R than to K, and whether
    the largest R̂ stays within RHAT_LIMIT."""
    kernel_rows = [r for r in rows if "closer_to_K_R" in r["kernel"]]
    max_rhat = max(r["diagnostics"]["rhat"] for r in rows)
    return {"points": len(rows),
            "theory_meets": sum(r["meets"]["theory"] for r in rows),
            "nngp_meets": sum(r["meets"]["nngp"] for r in rows),
            "readout_q_meets": sum(r["meets"]["readout_q"] for r in rows),
            "kernel_points": len(kernel_rows),
            "kernel_closer_to_K_R": sum(r["kernel"]["closer_to_K_R"] for r in kernel_rows),
            "max_rhat": max_rhat, "rhat_limit": RHAT_LIMIT, "mixed": bool(max_rhat <= RHAT_LIMIT)}
