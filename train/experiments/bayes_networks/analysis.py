"""bayes_networks, step 2: the theory of every point (renormalized and NNGP) against what its chains measured.

metrics = {"rows": one dict per point (sampled test loss with its error bar, bias² and variance, readout norm and
kernel, each next to the theory and the NNGP; R̂, ESS, burn-in, acceptance; the sampler's step and schedule),
           "kernel_scatter": the sampled posterior kernel entry by entry against K_R and K at one point (MLP only)}
"""

from __future__ import annotations

import numpy as np

from deeptheory.train.experiments.bayes_networks.architectures import ARCHITECTURES, UnitTheory
from deeptheory.train.experiments.bayes_networks.config import Config
from deeptheory.train.experiments.bayes_networks.measure import Measured
from deeptheory.train.inference import diagnostics


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
    row = {
        "activation": activation, "depth": depth, "width": width, "temperature": T, "p_over_n": config.n_train / width,
        "experiment": mean, "error": err, "theory": float(th.test_loss), "NNGP": float(nngp.test_loss),
        "relative_deviation": float(th.test_loss) / mean - 1,
        "within_error_bar": bool(abs(float(th.test_loss) - mean) <= err),
        "within_2_error_bars": bool(abs(float(th.test_loss) - mean) <= 2 * err),
        "within_3_percent": bool(abs(float(th.test_loss) / mean - 1) <= 0.03),
        "bias2": {"experiment": bias2, "theory": float(th.bias2), "NNGP": float(nngp.bias2)},
        "variance": {"experiment": mean - bias2, "theory": float(th.variance), "NNGP": float(nngp.variance)},
        "readout_q": {"experiment": q_mean, "error": q_err, "theory": theory.readout_q},
        "theory_variant": theory.variant,
        "diagnostics": {"rhat": diagnostics.rhat(loss), "ess": n_eff, "draws": int(loss.size),
                        "burn_in_detected_steps": diagnostics.burn_in(result.trace["test_loss"]) * run_info["every"],
                        "acceptance": float(np.mean(result.acceptance)),
                        "min_chain_acceptance": float(np.min(result.acceptance.mean(1)))},
        "sampler": dict(run_info, name=config.sampler),
    }
    pooled = {k: v / n for k, v in result.pooled.items()}
    row["kernel"], scatter = ARCHITECTURES[config.architecture].compare_kernel(pooled, theory)
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
    metrics = {"rows": rows}
    if kernels:  # the posterior kernel of one point, entry by entry, for the scatter plot (upper triangle)
        key = max(kernels, key=lambda k: (k[0] == config.activations[0], -k[2], k[1]))  # smallest width, deepest
        iu = np.triu_indices(len(task.y_train))
        emp, K_R, K = (np.asarray(a)[iu] for a in kernels[key])
        metrics["kernel_scatter"] = {"activation": key[0], "depth": key[1], "width": key[2], "temperature": key[3],
                                     "sampled": emp, "K_R": K_R, "nngp": K}
    return metrics
