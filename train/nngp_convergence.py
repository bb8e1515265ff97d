"""NNGP kernel vs the empirical kernels of ensembles of wide random networks, on a real binary task.

For each activation, depth L and width N, draw D networks from the prior (`models.mlp.MLP`, standard
parameterisation) and form each one's readout-layer kernel K̂ = σ²/N φ(h^L)φ(h^L)ᵀ + σ_b² on the train and test
points. Theory (`theory.nngp`; docs/nngp_and_renormalization.md, eqs. (R-1)–(R-2), (R-9)–(R-10)): E K̂ = K_NNGP
exactly at L = 1 and up to O(1/N) at L > 1, and K̂ fluctuates by O(1/√N), so the ensemble mean over D draws misses
K_NNGP by ~ c/√(D·N) (plus the O(1/N) bias at L > 1). We measure the relative Frobenius error for every (N, D = 1,
2, 4, ...), fit its slope against N, and compare GP regression with the ensemble kernel against the NNGP
predictor's test loss (`theory.gp`, bias² + variance at temperature T).

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
from deeptheory.train import cli
from deeptheory.train.checkpoint import Checkpointer
from deeptheory.train.cli import param
from deeptheory.train.data import DATASETS, load_task
from deeptheory.train.keys import derive_batch
from deeptheory.train.progress import progress
from deeptheory.train.report import AGREEMENT_NOTE, Figure, Panel, ReportSpec, Series, Table, agreement, plus_minus
from deeptheory.train.sweep import sweep

NAME = "nngp_convergence"


@dataclass(frozen=True)
class Config:
    dataset: str = param("auto", "data set (auto: Fashion-MNIST when installed, else MNIST-1D)", choices=DATASETS)
    data_dir: str = param("", "folder of MNIST-format IDX files (empty: $DEEPTHEORY_DATA_DIR, then Debian's)")
    classes: tuple[int, ...] = param((0, 1), "the two classes (Fashion-MNIST 0 = T-shirt/top, 1 = Trouser)",
                                     valid="two different class indices, 0–9")
    n_train: int = param(64, "training points P", valid="≥ 2")
    n_test: int = param(64, "test points", valid="≥ 1")
    input_dim: int = param(0, "PCA to this many inputs (0 keeps all: 784 for Fashion-MNIST, 40 for MNIST-1D)",
                           valid="0 … n_train")
    activations: tuple[str, ...] = param(("relu", "erf"), "activations φ", choices=ACTIVATIONS)
    depths: tuple[int, ...] = param((1, 3), "hidden layers L", valid="each ≥ 1")
    widths: tuple[int, ...] = param((32, 64, 128, 256, 512, 1024), "hidden widths N", valid="at least two, each ≥ 1, "
                                    "increasing")
    draws: int = param(64, "networks D per width (a power of two gives the full D = 1, 2, 4, ... ladder)", valid="≥ 2")
    chunk: int = param(16, "networks evaluated at once, sharded across devices", valid="≥ 1")
    weight_var: float = param(1.0, "weight variance σ_w² = 1/λ of every layer", valid="> 0")
    bias_var: float = param(0.0, "bias variance σ_b²", valid="≥ 0")
    noise: float = param(0.01, "GP temperature T (observation noise variance)", valid="> 0")
    seed: int = param(0, "seed of the data subset and the networks", valid="≥ 0")

    def validate(self):
        req = cli.require
        cli.require_binary_task(self)
        req(self.input_dim >= 0, f"--input-dim must be >= 0 (0 keeps all features); got {self.input_dim}")
        req(self.input_dim <= self.n_train, f"--input-dim must be <= --n-train (the PCA is fitted on the training "
            f"points); got {self.input_dim} > {self.n_train}")
        req(len(self.activations) > 0 and all(a in ACTIVATIONS for a in self.activations),
            f"--activations must be among {', '.join(ACTIVATIONS)}; got {','.join(self.activations)}")
        req(len(self.depths) > 0 and all(d >= 1 for d in self.depths),
            f"--depths must be >= 1; got {','.join(map(str, self.depths))}")
        req(len(self.widths) >= 2 and all(w >= 1 for w in self.widths) and list(self.widths) == sorted(set(self.widths)),
            f"--widths must be >= 2 increasing positive integers; got {','.join(map(str, self.widths))}")
        req(self.draws >= 2, f"--draws must be >= 2; got {self.draws}")
        req(self.chunk >= 1, f"--chunk must be >= 1; got {self.chunk}")
        req(self.weight_var > 0, f"--weight-var must be > 0; got {self.weight_var}")
        req(self.bias_var >= 0, f"--bias-var must be >= 0; got {self.bias_var}")
        req(self.noise > 0, f"--noise (GP temperature) must be > 0; got {self.noise}")
        req(self.seed >= 0, f"--seed must be >= 0; got {self.seed}")


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


def _ensemble_errors(config, x_all, K_ref, activation, depth, width):
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
        keys = derive_batch(config.seed, (NAME, activation, depth, width), range(first, first + count))
        kernels = sweep(readout_kernel, keys=keys, size=count)
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


def load_data(config: Config):
    return load_task(config, input_dim=config.input_dim or None, reduce="pca")


def run(config: Config, task, out_dir: Path) -> dict:
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
            errors, K_mean = _ensemble_errors(config, x_all, references[a, l][0], A[a], L[l], W[w])
            state = {"errors": state["errors"].copy(), "gp_empirical": state["gp_empirical"].copy()}
            state["errors"][a, l, w] = errors
            state["gp_empirical"][a, l, w] = _gp_loss(K_mean, task, config.noise)
            ckpt.save(unit + 1, state)
    gp_nngp = np.array([[references[a, l][1] for l in range(len(L))] for a in range(len(A))])
    return _analyse(config, ladder, state, gp_nngp)


def _slope(widths, errors):
    """Least-squares slope of log error vs log width, with its standard error."""
    x, y = np.log(np.asarray(widths, float)), np.log(errors)
    A = np.stack([x, np.ones_like(x)], 1)
    coef, res, *_ = np.linalg.lstsq(A, y, rcond=None)
    dof = max(len(x) - 2, 1)
    sigma2 = float(res[0]) / dof if len(res) else 0.0
    return float(coef[0]), float(np.sqrt(sigma2 * np.linalg.inv(A.T @ A)[0, 0]))


def _analyse(config, ladder, state, gp_nngp) -> dict:
    A, L, W = config.activations, config.depths, config.widths
    errors, gp_emp = state["errors"], state["gp_empirical"]
    rows = []
    for a in range(len(A)):
        for l in range(len(L)):
            for w in range(len(W)):
                rows.append({"activation": A[a], "depth": L[l], "width": W[w],
                             "kernel_error": dict(zip(map(str, ladder), errors[a, l, w].tolist(), strict=True)),
                             "gp_test_loss_empirical": gp_emp[a, l, w, 0],
                             "gp_test_loss_nngp": gp_nngp[a, l, 0]})
    slopes = {f"{A[a]}_L{L[l]}": _slope(W, errors[a, l, :, -1]) for a in range(len(A)) for l in range(len(L))}
    nngp = {f"{A[a]}_L{L[l]}": dict(zip(("total", "bias2", "variance"), gp_nngp[a, l].tolist(), strict=True))
            for a in range(len(A)) for l in range(len(L))}
    return {"draw_ladder": ladder, "rows": rows, "nngp_gp": nngp,
            "error_slope_vs_width": {k: {"slope": v[0], "stderr": v[1]} for k, v in slopes.items()}}


# ---------------------------------------------------------------------------------------------------- report


def report(record: dict) -> ReportSpec:
    config, m = record["config"], record["metrics"]
    A, L, W, ladder = config["activations"], config["depths"], config["widths"], m["draw_ladder"]
    D = ladder[-1]
    rows = {(r["activation"], r["depth"], r["width"]): r for r in m["rows"]}
    depth_group = {d: f"L = {d}" for d in L}

    def err(a, d, w, draws=D):
        return rows[a, d, w]["kernel_error"][str(draws)]

    def guide(a, d):
        """c·N^-1/2 through the data: c the median of error·√N over the widths (not pinned at one point)."""
        c = float(np.median([err(a, d, w) * np.sqrt(w) for w in W]))
        return [c / np.sqrt(w) for w in W]

    table = Table("Kernel error slope and GP test loss", [
        "activation", "L", f"slope of error vs N (D = {D})", "theory", "agreement", "NNGP GP ε_{g}",
        f"ensemble-kernel GP ε_{{g}} (N = {W[-1]})", "ensemble / NNGP − 1"], [])
    for a in A:
        for d in L:
            fit = m["error_slope_vs_width"][f"{a}_L{d}"]
            nngp, emp = m["nngp_gp"][f"{a}_L{d}"]["total"], rows[a, d, W[-1]]["gp_test_loss_empirical"]
            table.rows.append([a, d, plus_minus(fit["slope"], fit["stderr"], 3), "−0.5",
                               agreement(fit["slope"], fit["stderr"], -0.5, within=0.05), f"{nngp:.4f}",
                               f"{emp:.4f}", f"{100 * (emp / nngp - 1):+.2f} %"])
    table.note = ("Slope: least-squares fit of log error against log N with its standard error; the theory's −0.5 "
                  "holds exactly at L = 1 and asymptotically at L > 1 (where an O(1/N) bias adds). " + AGREEMENT_NOTE
                  + " Tolerance here: 5 %.")

    figures = [
        Figure("kernel_error_vs_width", f"Relative error of the {D}-network mean kernel against N, one point per width "
               "(a single draw of D networks, so it scatters around the trend): the points should follow the dotted "
               "slope −1/2 lines (each drawn through the median of error·√N of its depth); a depth > 1 may bend above "
               "its line at small N (the O(1/N) bias).",
               [Panel(f"{a}: mean of {D} networks", "width N", r"$\|\bar K - K_{\rm NNGP}\|_F\,/\,\|K_{\rm NNGP}\|_F$",
                      [s for d in L for s in (
                          Series(W, [err(a, d, w) for w in W], "points", group=depth_group[d], role="measured"),
                          Series(W, guide(a, d), "line", group=depth_group[d], line=":",
                                 role=r"$\propto N^{-1/2}$ (theory), through the median"))],
                      xscale="log", yscale="log", xticks=W) for a in A]),
        Figure("kernel_error_collapse", "Every (width N, draws D) pair against D·N: at L = 1 all points fall on one "
               "line c/√(D·N) — the readout kernel is an unbiased average of N·D independent units.",
               [Panel(f"{a}: every (N, D)", "D · N", "relative kernel error",
                      [Series([w * dd for w in W for dd in ladder], [err(a, d, w, dd) for w in W for dd in ladder],
                              "points", group=depth_group[d], role="measured", size=3) for d in L]
                      + [_collapse_line(rows, a, L[0], W, ladder)], xscale="log", yscale="log") for a in A]),
        Figure("gp_test_loss_vs_width", f"Test loss of GP regression (T = {config['noise']}) with the mean kernel of "
               f"{D} networks (solid) against the NNGP predictor's (dotted, same colour): look for each solid line "
               f"settling onto its dotted line as N grows (within {100 * _gp_gap(rows, m, A, L, W[-1]):.1f} % at "
               f"N = {W[-1]}); the wiggles at small N are the error of a {D}-network mean kernel.",
               [Panel(f"{a}: GP test loss", "width N", r"test loss $\varepsilon_g$ = bias² + variance",
                      [s for d in L for s in (
                          Series(W, [rows[a, d, w]["gp_test_loss_empirical"] for w in W], "line", marker=True,
                                 group=depth_group[d], role="ensemble kernel (measured)"),
                          Series([], [m["nngp_gp"][f"{a}_L{d}"]["total"]], "hline", group=depth_group[d], line=":",
                                 role="NNGP (theory)"))], xscale="log", xticks=W) for a in A]),
    ]
    slopes = m["error_slope_vs_width"]
    fits = ", ".join(f"{k.replace('_L', ' L=')} {v['slope']:.3f}" for k, v in slopes.items())
    worst_gp = _gp_gap(rows, m, A, L, W[-1])
    findings = [f"Fitted slopes of the kernel error against N (theory −0.5): {fits}.",
                f"At N = {W[-1]} GP regression with the {D}-network kernel is within {100 * worst_gp:.1f} % of the NNGP "
                "predictor's test loss for every activation and depth."]
    deep = [d for d in L if d > 1]
    deviations = [line for a in A for line in _shallow_slope_note(a, L[0], W, ladder, err, slopes[f"{a}_L{L[0]}"])]
    if deep:
        ratio = {a: np.median([err(a, d, w, dd) / err(a, L[0], w, dd) for w in W for dd in ladder]) for a in A
                 for d in deep[-1:]}
        deviations.append(f"At depth L = {deep[-1]} the error sits above the depth-{L[0]} collapse line (median ratio "
                          + ", ".join(f"{a} ×{v:.2f}" for a, v in ratio.items())
                          + "): a finite deep network's kernel carries an O(1/N) bias and larger per-unit fluctuations; "
                          "this is expected, not a failure of the NNGP limit.")
    deviations += _label_variance_note(record, m["nngp_gp"], A, L)
    headline = f"slopes {min(v['slope'] for v in slopes.values()):.2f} … {max(v['slope'] for v in slopes.values()):.2f} " \
               f"(theory −0.5); GP loss within {100 * worst_gp:.1f} % of NNGP at N = {W[-1]}"
    setup = (f"For each activation ({', '.join(A)}), depth L ∈ {{{', '.join(map(str, L))}}} and width N ∈ "
             f"{{{', '.join(map(str, W))}}}, {D} networks are drawn from the prior (standard parameterisation, σ_{{w}}² = "
             f"{config['weight_var']}, σ_{{b}}² = {config['bias_var']}) and the mean of their readout-layer kernels "
             f"σ²/N φ(h^L)φ(h^L)ᵀ on the {config['n_train']} + {config['n_test']} points is compared with the NNGP kernel "
             f"(relative Frobenius error, for D = {', '.join(map(str, ladder))}); GP regression at T = {config['noise']} "
             "with that mean kernel is compared with the NNGP predictor.")
    return ReportSpec(setup, [table], figures, findings, deviations, headline)


def _gp_gap(rows, m, A, L, width) -> float:
    """Largest |ensemble-kernel GP loss / NNGP GP loss − 1| at `width`."""
    return max(abs(rows[a, d, width]["gp_test_loss_empirical"] / m["nngp_gp"][f"{a}_L{d}"]["total"] - 1)
               for a in A for d in L)


def _shallow_slope_note(activation, depth, widths, ladder, err, fit) -> list[str]:
    """At L = 1 the −1/2 is exact for the expected error (E K̂ = K_NNGP); a fitted slope outside its error bar is
    then the scatter of single draws. Say so with the numbers: the spread of error·√(D·N) over the widths and the
    slopes fitted at the other D of the ladder."""
    if depth != 1 or len(widths) < 3 or not fit["stderr"] > 0 or abs(fit["slope"] + 0.5) <= fit["stderr"]:
        return []  # inside its error bar, or a fit too short to have one
    D = ladder[-1]
    spread = np.asarray([err(activation, depth, w) * np.sqrt(w * D) for w in widths])
    scatter = 50 * (spread.max() - spread.min()) / spread.mean()
    smaller = [dd for dd in ladder[:-1] if dd >= 4]
    others = [_slope(widths, [err(activation, depth, w, dd) for w in widths])[0] for dd in smaller]
    z = abs(fit["slope"] + 0.5) / fit["stderr"]
    text = (f"{activation}, L = 1: fitted slope {fit['slope']:.3f} ± {fit['stderr']:.3f}, {z:.1f} standard errors "
            "from −1/2, although at L = 1 the −1/2 is exact for the expected error (E K̂ = K_{NNGP}: no bias). Each "
            f"width contributes a single draw of the {D}-network mean: error·√(D·N) scatters by ±{scatter:.0f} % "
            f"over the widths ({spread.min():.2f}–{spread.max():.2f}), and the slope follows that scatter")
    if others:
        text += (f" (fitted at D = {', '.join(map(str, smaller))} of the same draws: "
                 f"{', '.join(f'{s:.2f}' for s in others)}, mean {np.mean(others):.3f})")
    verdict = ("sampling scatter, not a bias; more draws or widths narrow it" if z < 3 else
               "more than single-draw scatter usually gives; rerun with more --draws or --widths to tell")
    return [f"{text}: {verdict}."]


def _label_variance_note(record, nngp_gp, A, L) -> list[str]:
    """Why a GP test loss can exceed the label variance: ε_g = bias² + posterior variance, and the zero-mean prior
    is far from labels of mean ½."""
    data = record.get("data") or {}
    if data.get("labels") not in ("01", "pm1"):
        return []
    var, second = (0.25, 0.5) if data["labels"] == "01" else (1.0, 1.0)
    above = [(a, d) for a in A for d in L if nngp_gp[f"{a}_L{d}"]["total"] > var]
    if not above:
        return []
    parts = ", ".join(f"{a} L = {d}: {nngp_gp[f'{a}_L{d}']['total']:.3f} = bias² {nngp_gp[f'{a}_L{d}']['bias2']:.3f} "
                      f"+ variance {nngp_gp[f'{a}_L{d}']['variance']:.3f}" for a, d in above)
    worse = [f"{a} L = {d}" for a, d in above if nngp_gp[f"{a}_L{d}"]["total"] > second]
    text = (f"The NNGP test loss exceeds the label variance {var:g} ({parts}): ε_{{g}} counts the posterior variance of f "
            "as well as the posterior mean's error, and the prior has mean 0 (no bias: σ_{b}² = "
            f"{record['config'].get('bias_var', 0):g}) while the labels do not")
    if data["labels"] == "01":
        text += " (0/1, mean ½)"
    if worse:
        text += (f"; at P = {data.get('n_train')} the NNGP predictor of {', '.join(worse)} is even worse than "
                 f"predicting 0 (ε = E y² = {second:g})")
    return [text + "."]


def _collapse_line(rows, activation, depth, widths, ladder) -> Series:
    """c/√(D·N) with c the median of error·√(D·N) at the shallowest depth."""
    dn = np.asarray([w * d for w in widths for d in ladder], float)
    errors = np.asarray([rows[activation, depth, w]["kernel_error"][str(d)] for w in widths for d in ladder])
    c = float(np.median(errors * np.sqrt(dn)))
    grid = np.geomspace(dn.min(), dn.max(), 20)
    return Series(grid.tolist(), (c / np.sqrt(grid)).tolist(), "line", line="--", color="black",
                  label=r"$c/\sqrt{D N}$" + f" (theory, L = {depth})")


EXPERIMENT = cli.Experiment(
    name=NAME, title="NNGP kernels of finite networks",
    question="Does the mean readout kernel of D random networks of width N converge to the NNGP kernel as "
             "c/√(D·N), and does GP regression with it approach the NNGP predictor?",
    Config=Config, presets=PRESETS, run=run, report=report, load_data=load_data, description=__doc__)

if __name__ == "__main__":
    cli.main(EXPERIMENT)
