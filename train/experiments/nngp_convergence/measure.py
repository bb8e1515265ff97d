"""nngp_convergence, step 1: draw D networks per (activation, depth, width) and measure their mean kernel's error.

raw = {"errors": (A, L, W, ladder) relative Frobenius errors of the D-network mean kernel for D on the ladder,
       "gp_empirical": (A, L, W, 3) (ε_g, bias², variance) of GP regression with the D-network mean kernel}
"""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np

from deeptheory.models.mlp import MLP, empirical_kernel
from deeptheory.theory.gp import gp_posterior, gp_test_loss
from deeptheory.theory.nngp import nngp_kernel
from deeptheory.train.data import load_task
from deeptheory.train.experiments.nngp_convergence.config import NAME, Config
from deeptheory.train.harness.checkpoint import resume_loop
from deeptheory.train.harness.keys import derive_batch
from deeptheory.train.harness.sweep import sweep


def draw_ladder(draws: int) -> list[int]:
    """D = 1, 2, 4, … up to `draws` (and `draws` itself): the ensemble sizes whose error is recorded."""
    ladder = [1]
    while ladder[-1] * 2 <= draws:
        ladder.append(ladder[-1] * 2)
    return ladder if ladder[-1] == draws else [*ladder, draws]


def _ensemble_errors(config, x_all, K_ref, activation, depth, width):
    """Relative Frobenius error of the D-draw mean kernel for D on the ladder, and that mean kernel."""
    model = MLP(widths=(width,) * depth, activation=activation, weight_var=config.weight_var,
                bias_var=config.bias_var)
    x32 = jnp.asarray(x_all, jnp.float32)

    def readout_kernel(key, _):
        _, phi = model.apply(model.init(key, x32), x32, return_features=True)
        return empirical_kernel(phi, weight_var=config.weight_var, bias_var=config.bias_var)

    ladder, norm = draw_ladder(config.draws), np.linalg.norm(K_ref)
    running, errors = np.zeros_like(K_ref), []
    for first in range(0, config.draws, config.chunk):
        count = min(config.chunk, config.draws - first)
        keys = derive_batch(config.seed, (NAME, activation, depth, width), range(first, first + count))
        kernels = sweep(readout_kernel, keys=keys, size=count)
        for i, K_hat in enumerate(kernels.astype(np.float64)):
            running += K_hat
            if first + i + 1 in ladder:
                errors.append(np.linalg.norm(running / (first + i + 1) - K_ref) / norm)
    return np.asarray(errors), running / config.draws


def gp_loss(K_all, task, temperature):
    """(ε_g, bias², variance) of GP regression with the kernel K_all on [train; test] points at temperature T
    (`theory.gp` calls it the noise variance)."""
    P = len(task.y_train)
    post = gp_posterior(jnp.asarray(K_all[:P, :P]), jnp.asarray(K_all[P:, :P]), jnp.asarray(np.diag(K_all)[P:]),
                        jnp.asarray(task.y_train), noise=temperature)
    loss = gp_test_loss(post, jnp.asarray(task.y_test))
    return np.array([float(loss.total), float(loss.bias2), float(loss.variance)])


def load_data(config: Config):
    return load_task(config, input_dim=config.input_dim or None, reduce="pca")



def nngp_reference(config: Config, task, activation: str, depth: int) -> np.ndarray:
    """The NNGP kernel (float64) on [train; test] points: the limit the ensembles are measured against."""
    x_all = np.concatenate([task.x_train, task.x_test])
    return np.asarray(nngp_kernel(x_all, activation=activation, depth=depth, weight_var=config.weight_var,
                                  bias_var=config.bias_var))


def run(config: Config, task, out_dir: Path) -> dict:
    x_all = np.concatenate([task.x_train, task.x_test])
    A, L, W = config.activations, config.depths, config.widths
    units = [(a, l, w) for a in range(len(A)) for l in range(len(L)) for w in range(len(W))]
    initial = {
        "errors": np.full((len(A), len(L), len(W), len(draw_ladder(config.draws))), np.nan),
        "gp_empirical": np.full((len(A), len(L), len(W), 3), np.nan),
    }
    references = {}

    def measure(unit, state):
        a, l, w = units[unit]
        if (a, l) not in references:
            references[a, l] = nngp_reference(config, task, A[a], L[l])
        errors, K_mean = _ensemble_errors(config, x_all, references[a, l], A[a], L[l], W[w])
        state = {"errors": state["errors"].copy(), "gp_empirical": state["gp_empirical"].copy()}
        state["errors"][a, l, w] = errors
        state["gp_empirical"][a, l, w] = gp_loss(K_mean, task, config.temperature)
        return state

    return resume_loop(out_dir / "checkpoints", initial, len(units), measure, desc=NAME, unit="units")
