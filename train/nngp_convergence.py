"""NNGP kernel vs the empirical kernels of ensembles of wide random networks, on a real binary task.

For each activation, depth L and width N, draw D networks from the prior (`models.mlp.MLP`, standard
parameterisation) and form each one's readout-layer kernel K̂ = σ²/N φ(h^L)φ(h^L)ᵀ + σ_b² on the
train and test points. Theory (`theory.nngp`): E K̂ = K_NNGP exactly at L = 1 and up to O(1/N) at
L > 1, and K̂ fluctuates by O(1/√N), so the ensemble mean over D draws misses K_NNGP by
~ c/√(D·N) (plus the O(1/N) bias at L > 1). We measure the relative Frobenius error for every
(N, D = 1, 2, 4, ...), fit its slope against N, and compare GP regression with the ensemble kernel
against the NNGP predictor's test loss (`theory.gp`, bias² + variance at temperature T).

    python -m deeptheory.train.nngp_convergence --preset quick --out runs/nngp
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from deeptheory.models.mlp import MLP, empirical_kernel
from deeptheory.theory.gp import gp_posterior, gp_test_loss
from deeptheory.theory.nngp import ACTIVATIONS, nngp_kernel
from deeptheory.train import cli, plots
from deeptheory.train.checkpoint import Checkpointer
from deeptheory.train.data import binary_task, load_dataset
from deeptheory.train.progress import progress
from deeptheory.train.sweep import sweep

NAME = "nngp_convergence"


@dataclass(frozen=True)
class Config:
    dataset: str = "auto"  # fashion-mnist | mnist1d | auto (Fashion-MNIST if installed, else MNIST-1D)
    data_dir: str = ""  # a folder of MNIST-format IDX files; empty: $DEEPTHEORY_DATA_DIR, then Debian's
    classes: tuple[int, ...] = (0, 1)  # Fashion-MNIST: T-shirt/top vs Trouser
    n_train: int = 64  # P
    n_test: int = 64  # P_test
    input_dim: int = 0  # PCA to this many inputs; 0 keeps all (784 for Fashion-MNIST)
    activations: tuple[str, ...] = ("relu", "erf")
    depths: tuple[int, ...] = (1, 3)  # hidden layers L
    widths: tuple[int, ...] = (32, 64, 128, 256, 512, 1024)
    draws: int = 64  # D networks per width (a power of two gives the full D = 1, 2, 4, ... ladder)
    chunk: int = 16  # networks evaluated at once, sharded across devices
    weight_var: float = 1.0  # σ_w² = 1/λ for every layer (the sources use λ = 1)
    bias_var: float = 0.0
    noise: float = 0.01  # GP temperature T
    seed: int = 0

    def validate(self):
        req = cli.require
        cli.require_binary_task(self)
        req(self.input_dim >= 0, f"input_dim must be >= 0 (0 keeps all features); got {self.input_dim}")
        req(len(self.activations) > 0 and all(a in ACTIVATIONS for a in self.activations),
            f"activations must be among {', '.join(ACTIVATIONS)}; got {self.activations}")
        req(len(self.depths) > 0 and all(d >= 1 for d in self.depths), f"depths must be >= 1; got {self.depths}")
        req(len(self.widths) >= 2 and all(w >= 1 for w in self.widths) and list(self.widths) == sorted(set(self.widths)),
            f"widths must be >= 2 increasing positive integers; got {self.widths}")
        req(self.draws >= 2 and self.chunk >= 1, f"need draws >= 2 and chunk >= 1; got {self.draws}, {self.chunk}")
        req(self.weight_var > 0 and self.bias_var >= 0,
            f"need weight_var > 0 and bias_var >= 0; got {self.weight_var}, {self.bias_var}")
        req(self.noise > 0, f"noise (GP temperature) must be > 0; got {self.noise}")


PRESETS = {
    "quick": Config(),
    "paper": Config(n_train=512, n_test=512, activations=("relu", "erf", "gelu"), depths=(1, 2, 3, 5),
                    widths=(64, 128, 256, 512, 1024, 2048, 4096), draws=256, chunk=32),
}


def _draw_ladder(draws: int) -> list[int]:
    ladder = [1]
    while ladder[-1] * 2 <= draws:
        ladder.append(ladder[-1] * 2)
    return ladder if ladder[-1] == draws else [*ladder, draws]


def _ensemble_errors(config, x_all, K_ref, activation, depth, width, unit):
    """Relative Frobenius error of the D-draw mean kernel for D on the ladder, and that mean kernel."""
    model = MLP(widths=(width,) * depth, activation=activation, weight_var=config.weight_var,
                bias_var=config.bias_var)
    x32 = jnp.asarray(x_all, jnp.float32)

    def readout_kernel(key, _):
        _, phi = model.apply(model.init(key, x32), x32, return_features=True)
        return empirical_kernel(phi, weight_var=config.weight_var, bias_var=config.bias_var)

    ladder, norm = _draw_ladder(config.draws), np.linalg.norm(K_ref)
    running, errors = np.zeros_like(K_ref), []
    for first in range(0, config.draws, config.chunk):
        count = min(config.chunk, config.draws - first)
        kernels = sweep(readout_kernel, seed=config.seed * 1_000_003 + unit, size=count, first_index=first)
        for i, K_hat in enumerate(kernels.astype(np.float64)):
            running += K_hat
            if first + i + 1 in ladder:
                errors.append(np.linalg.norm(running / (first + i + 1) - K_ref) / norm)
    return np.asarray(errors), running / config.draws


def _gp_loss(K_all, task, noise):
    """(ε_g, bias², variance) of GP regression with the kernel K_all on [train; test] points."""
    P = len(task.y_train)
    post = gp_posterior(jnp.asarray(K_all[:P, :P]), jnp.asarray(K_all[P:, :P]), jnp.asarray(np.diag(K_all)[P:]),
                        jnp.asarray(task.y_train), noise=noise)
    loss = gp_test_loss(post, jnp.asarray(task.y_test))
    return np.array([float(loss.total), float(loss.bias2), float(loss.variance)])


def run(config: Config, out_dir: Path) -> cli.Outcome:
    dataset = load_dataset(config.dataset, config.data_dir or None)
    task = binary_task(dataset, classes=tuple(config.classes), n_train=config.n_train, n_test=config.n_test,
                       seed=config.seed, input_dim=config.input_dim or None, reduce="pca")
    x_all = np.concatenate([task.x_train, task.x_test])
    A, L, W = config.activations, config.depths, config.widths
    ladder = _draw_ladder(config.draws)
    units = [(a, l, w) for a in range(len(A)) for l in range(len(L)) for w in range(len(W))]
    initial = {
        "errors": np.full((len(A), len(L), len(W), len(ladder)), np.nan),
        "gp_empirical": np.full((len(A), len(L), len(W), 3), np.nan),
    }
    references = {}
    for a, l in {(a, l) for a, l, _ in units}:
        K = np.asarray(nngp_kernel(x_all, activation=A[a], depth=L[l], weight_var=config.weight_var,
                                   bias_var=config.bias_var))
        references[a, l] = (K, _gp_loss(K, task, config.noise))
    with Checkpointer(out_dir / "checkpoints", every=1) as ckpt:
        start, state = ckpt.restore(initial)
        for unit in progress(range(start, len(units)), desc=NAME, total=len(units), initial=start):
            a, l, w = units[unit]
            errors, K_mean = _ensemble_errors(config, x_all, references[a, l][0], A[a], L[l], W[w], unit)
            state = {"errors": state["errors"].copy(), "gp_empirical": state["gp_empirical"].copy()}
            state["errors"][a, l, w] = errors
            state["gp_empirical"][a, l, w] = _gp_loss(K_mean, task, config.noise)
            ckpt.save(unit + 1, state)
    gp_nngp = np.array([[references[a, l][1] for l in range(len(L))] for a in range(len(A))])
    return _report(config, task, ladder, state, gp_nngp, out_dir)


def _slope(widths, errors):
    """Least-squares slope of log error vs log width, with its standard error."""
    x, y = np.log(np.asarray(widths, float)), np.log(errors)
    A = np.stack([x, np.ones_like(x)], 1)
    coef, res, *_ = np.linalg.lstsq(A, y, rcond=None)
    dof = max(len(x) - 2, 1)
    sigma2 = float(res[0]) / dof if len(res) else 0.0
    return float(coef[0]), float(np.sqrt(sigma2 * np.linalg.inv(A.T @ A)[0, 0]))


def _report(config, task, ladder, state, gp_nngp, out_dir):
    A, L, W = config.activations, config.depths, config.widths
    errors, gp_emp = state["errors"], state["gp_empirical"]
    slopes = {f"{A[a]}_L{L[l]}": _slope(W, errors[a, l, :, -1]) for a in range(len(A)) for l in range(len(L))}
    figs = []

    fig, axes = plots.figure(len(A))
    for a, ax in enumerate(axes):
        for l, depth in enumerate(L):
            line, = ax.loglog(W, errors[a, l, :, -1], "o-", label=f"L = {depth} (slope {slopes[f'{A[a]}_L{depth}'][0]:.2f})")
            ref = errors[a, l, 0, -1] * (np.asarray(W) / W[0]) ** -0.5
            ax.loglog(W, ref, ":", color=line.get_color(), alpha=0.7)
        ax.set(title=f"{A[a]}: {ladder[-1]} draws", xlabel="width N", ylabel="‖K̄ − K_NNGP‖_F / ‖K_NNGP‖_F")
        ax.legend(fontsize=8, title="dotted: ∝ N^-1/2", title_fontsize=8)
    figs.append(plots.save(fig, out_dir / "kernel_error_vs_width.png"))

    fig, axes = plots.figure(len(A))
    dn = np.asarray(W)[:, None] * np.asarray(ladder)[None, :]
    for a, ax in enumerate(axes):
        for l, depth in enumerate(L):
            ax.loglog(dn.ravel(), errors[a, l].ravel(), ".", alpha=0.6, label=f"L = {depth}")
        c = np.median(errors[a, 0] * np.sqrt(dn))
        grid = np.geomspace(dn.min(), dn.max(), 20)
        ax.loglog(grid, c / np.sqrt(grid), "k--", label="c/√(D·N)")
        ax.set(title=f"{A[a]}: every (width N, draws D)", xlabel="D · N", ylabel="relative kernel error")
        ax.legend(fontsize=8)
    figs.append(plots.save(fig, out_dir / "kernel_error_collapse.png"))

    fig, axes = plots.figure(len(A))
    for a, ax in enumerate(axes):
        for l, depth in enumerate(L):
            line, = ax.semilogx(W, gp_emp[a, l, :, 0], "o-", label=f"ensemble kernel, L = {depth}")
            ax.axhline(gp_nngp[a, l, 0], color=line.get_color(), ls="--", lw=1, label=f"NNGP, L = {depth}")
        ax.set(title=f"{A[a]}: GP test loss (T = {config.noise})", xlabel="width N", ylabel="ε_g = bias² + variance")
        ax.legend(fontsize=7)
    figs.append(plots.save(fig, out_dir / "gp_test_loss_vs_width.png"))

    rows = []
    for a in range(len(A)):
        for l in range(len(L)):
            for w in range(len(W)):
                rows.append({"activation": A[a], "depth": L[l], "width": W[w],
                             "kernel_error": dict(zip(map(str, ladder), errors[a, l, w].tolist(), strict=True)),
                             "gp_test_loss_empirical": gp_emp[a, l, w, 0],
                             "gp_test_loss_nngp": gp_nngp[a, l, 0]})
    nngp = {f"{A[a]}_L{L[l]}": dict(zip(("total", "bias2", "variance"), gp_nngp[a, l].tolist(), strict=True))
            for a in range(len(A)) for l in range(len(L))}
    summary = {
        "task": f"{task.info['dataset']} {' vs '.join(task.info['class_names'])}, P = {config.n_train}",
        "error_slope_vs_width": {k: round(v[0], 3) for k, v in slopes.items()},
        "nngp_gp_test_loss": {k: round(v["total"], 4) for k, v in nngp.items()},
        "widest_ensemble_gp_test_loss": {f"{A[a]}_L{L[l]}": round(float(gp_emp[a, l, -1, 0]), 4)
                                         for a in range(len(A)) for l in range(len(L))},
    }
    metrics = {"task": task.info, "draw_ladder": ladder, "rows": rows, "nngp_gp": nngp,
               "error_slope_vs_width": {k: {"slope": v[0], "stderr": v[1]} for k, v in slopes.items()}}
    return cli.Outcome(metrics, figs, summary)


if __name__ == "__main__":
    cli.main(NAME, Config, PRESETS, run, description=__doc__)
