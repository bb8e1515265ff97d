"""Sample the Bayesian posterior of finite networks on real data and hold the renormalization theory against it.

For every (activation, depth L, width N, temperature T): C chains of a sampler (`train.samplers`; BAOAB by
default) draw from p(θ | D) ∝ exp(−Σ(y − f)²/2T − |θ|²/2) for the network of `models.mlp` (or `models.cnn`),
all chains vmapped and sharded (`train.chains`), checkpointed and resumable. Measured per chain and draw: the
test loss (1/P_test) Σ (f(x) − y)², the readout norm q̂ = λ_L|v|²/N_L, and the readout-layer kernel. Compared
with (kernel_renormalization.md §4–6):

- theory: `theory.renormalization.fc_theory` (variant "auto": nested for odd φ, non-central otherwise;
  `conv_theory` for the CNN) on exactly the same train and test sets — ε_g = bias² + variance;
- NNGP: the same with Q = 1 (infinite width);
- renormalization itself: ⟨q̂⟩ against the readout order parameter, and ⟨q̂ K̂_L⟩ (K̂_L = φφᵀ/(λ_L N_L), the
  covariance of f given the readout norm) against K_R from `renormalized_kernel`, next to the NNGP kernel.

Error bars are Monte Carlo standard errors sd/√ESS of the chain-averaged test loss (`train.diagnostics`, split-R̂
and MSER burn-in reported per point). Step size: `step` (h, log-density convention; the sources' ε is h/T), or
when 0, `step_scale`/√λ_max for BAOAB and `step_scale`/λ_max for ULA/MALA, with λ_max the top curvature of
−log p at the first chain's start (power iteration on Hessian-vector products). Durations are in the natural
time t = steps·h, in which the prior's modes relax in O(1).

    python -m deeptheory.train.bayes_networks --preset quick --out runs/bayes
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from deeptheory.models.cnn import PatchCNN
from deeptheory.models.mlp import MLP
from deeptheory.models.posterior import log_posterior
from deeptheory.theory.conv_renormalization import conv_theory
from deeptheory.theory.nngp import ACTIVATIONS, nngp_kernel
from deeptheory.theory.renormalization import fc_theory, renormalized_kernel
from deeptheory.train import cli, diagnostics, plots
from deeptheory.train.chains import run_chains
from deeptheory.train.data import binary_task, load_dataset
from deeptheory.train.samplers import SAMPLERS, tree_normal

NAME = "bayes_networks"
_ODD = ("erf", "tanh", "linear")


@dataclass(frozen=True)
class Config:
    dataset: str = "auto"  # fashion-mnist | mnist1d | auto (Fashion-MNIST if installed, else MNIST-1D)
    data_dir: str = ""  # a folder of MNIST-format IDX files; empty: $DEEPTHEORY_DATA_DIR, then Debian's
    classes: tuple[int, ...] = (0, 1)  # Fashion-MNIST T-shirt/top (label 0) vs Trouser (label 1)
    n_train: int = 64  # P
    n_test: int = 256
    image_side: int = 28  # Fashion-MNIST downsampled to side × side (28 keeps it); MNIST-1D: PCA to side²
    architecture: str = "mlp"  # mlp | cnn
    patches: tuple[int, ...] = (7,)  # CNN patch sides (their product divides image_side)
    activations: tuple[str, ...] = ("erf",)
    depths: tuple[int, ...] = (1, 2)
    widths: tuple[int, ...] = (32, 64, 256)  # N (MLP hidden widths, CNN channels)
    temperatures: tuple[float, ...] = (0.01,)
    prior: float = 1.0  # λ of every layer (the sources use 1)
    variant: str = "auto"  # fc_theory variant: auto | vanilla | nested | noncentral
    sampler: str = "baoab"  # baoab | mala | ula
    step: float = 0.0  # h; 0 = automatic from the curvature (module docstring)
    step_scale: float = 0.5
    friction: float = 1.0  # BAOAB γ
    burn_in_time: float = 10.0
    sample_time: float = 60.0  # after burn-in
    measure_time: float = 0.5  # time between measurements
    chains: int = 8
    checkpoint_every: int = 50  # measurements between checkpoints
    seed: int = 0

    def validate(self):
        req = cli.require
        cli.require_binary_task(self)
        req(self.image_side >= 1 and 28 % self.image_side == 0,
            f"image_side must divide 28 (Fashion-MNIST is downsampled by an integer factor); got {self.image_side}")
        req(self.architecture in ("mlp", "cnn"), f"architecture must be mlp or cnn; got {self.architecture!r}")
        req(len(self.patches) >= 1 and all(m >= 1 for m in self.patches)
            and self.image_side % math.prod(self.patches) == 0,
            f"patches {self.patches}: their product must divide image_side = {self.image_side}")
        req(len(self.activations) > 0 and all(a in ACTIVATIONS for a in self.activations),
            f"activations must be among {', '.join(ACTIVATIONS)}; got {self.activations}")
        req(len(self.depths) > 0 and all(d >= 1 for d in self.depths), f"depths must be >= 1; got {self.depths}")
        req(self.architecture == "mlp" or self.depths == (len(self.patches),),
            f"for the CNN the depth is len(patches) = {len(self.patches)}; set depths={len(self.patches)}")
        req(len(self.widths) >= 1 and all(w >= 1 for w in self.widths), f"widths must be >= 1; got {self.widths}")
        req(len(self.temperatures) >= 1 and all(t > 0 for t in self.temperatures),
            f"temperatures must be > 0 (the likelihood is exp(-Σ(y - f)²/2T)); got {self.temperatures}")
        req(self.prior > 0, f"prior (the weight precision λ) must be > 0; got {self.prior}")
        req(self.variant in ("auto", "vanilla", "nested", "noncentral"),
            f"variant must be auto, vanilla, nested or noncentral; got {self.variant!r}")
        req(self.sampler in SAMPLERS, f"sampler must be one of {', '.join(SAMPLERS)}; got {self.sampler!r}")
        req(self.step >= 0 and self.step_scale > 0 and self.friction > 0,
            f"need step >= 0 (0: automatic), step_scale > 0, friction > 0; got {self.step}, {self.step_scale}, "
            f"{self.friction}")
        req(0 < self.measure_time <= self.sample_time and self.burn_in_time >= 0,
            f"need 0 < measure_time <= sample_time and burn_in_time >= 0; got {self.measure_time}, "
            f"{self.sample_time}, {self.burn_in_time}")
        req(self.sample_time / self.measure_time >= 8,
            f"sample_time / measure_time must give >= 8 measurements for the diagnostics; got "
            f"{self.sample_time / self.measure_time:.1f}")
        req(self.chains >= 2, f"need >= 2 chains (R-hat compares chains); got {self.chains}")
        req(self.checkpoint_every >= 1, f"checkpoint_every must be >= 1; got {self.checkpoint_every}")


PRESETS = {
    # P = 64 full-resolution images, α = P/N = 2, 1, 1/4, depths 1 and 2: about 3 minutes on 2 CPU cores.
    # (Downsampled inputs are cheaper but the theory degrades with the input dimension: README.)
    "quick": Config(),
    # The paper-scale protocol: P = 1000 at full resolution, depths to 10, two activations, two temperatures.
    "paper": Config(n_train=1000, n_test=1000, image_side=28, activations=("erf", "relu"),
                    depths=(1, 2, 3, 5, 10), widths=(250, 500, 1000, 2000, 4000), temperatures=(0.01, 0.001),
                    chains=16, sample_time=500.0, burn_in_time=50.0, checkpoint_every=20),
}


def _task(config: Config):
    dataset = load_dataset(config.dataset, config.data_dir or None)
    images = dataset.x_train.ndim == 3
    if config.architecture == "cnn" and not images:
        raise cli.ConfigError(f"the CNN needs images; {dataset.name} is 1-d (use --dataset fashion-mnist)")
    side2 = config.image_side**2
    try:
        task = binary_task(dataset, classes=tuple(config.classes), n_train=config.n_train, n_test=config.n_test,
                           seed=config.seed, input_dim=None if images and side2 == 784 else side2,
                           reduce="downsample" if images else "pca")
    except ValueError as e:
        raise cli.ConfigError(f"data: {e}") from None
    return task


def _inputs(config: Config, x):
    if config.architecture == "cnn":
        return x.reshape(len(x), config.image_side, config.image_side)
    return x


def _model(config: Config, activation: str, depth: int, width: int):
    if config.architecture == "cnn":
        return PatchCNN(patches=config.patches, channels=width, activation=activation, weight_var=1 / config.prior)
    return MLP(widths=(width,) * depth, activation=activation, weight_var=1 / config.prior)


def _variant(config: Config, activation: str) -> str:
    if config.variant != "auto":
        return config.variant
    return "nested" if activation in _ODD else "noncentral"


def top_curvature(log_density, params, key, iterations: int = 30) -> float:
    """λ_max of −∇² log p at `params` by power iteration on Hessian-vector products."""
    grad = jax.grad(lambda p: -log_density(p))

    def body(_, carry):
        v, _ = carry
        hv = jax.jvp(grad, (params,), (v,))[1]
        norm = jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree.leaves(hv)))
        return jax.tree.map(lambda x: x / norm, hv), norm

    v = tree_normal(key, params)
    norm = jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree.leaves(v)))
    v = jax.tree.map(lambda x: x / norm, v)
    _, lam = jax.jit(lambda v: jax.lax.fori_loop(0, iterations, body, (v, norm)))(v)
    return float(lam)


def _schedule(config: Config, h: float) -> tuple[int, int, int]:
    """(every, burn_in, n_steps) in steps from the times in the config and the step h."""
    every = max(1, round(config.measure_time / h))
    burn = every * round(config.burn_in_time / (every * h))
    n_meas = max(8, round(config.sample_time / (every * h)))
    return every, burn, burn + n_meas * every


def _theory(config: Config, task, activation, depth, width, T):
    """(theory, NNGP, readout order parameter, K_R on the train points, NNGP kernel on the train points)."""
    x, y, x0, y0 = task.x_train, task.y_train, task.x_test, task.y_test
    if config.architecture == "cnn":
        img = lambda a: _inputs(config, a)  # noqa: E731
        th = conv_theory(img(x), y, img(x0), y0, activation=activation, patches=config.patches, channels=width,
                         temperature=T, priors=config.prior)
        return th, th.local_nngp, np.asarray(th.order_params), None, None
    variant = _variant(config, activation)
    th = fc_theory(x, y, x0, y0, activation=activation, depth=depth, width=width, temperature=T,
                   priors=config.prior, variant=variant)
    Q = np.asarray(th.order_params)
    readout = Q[0, -1] if variant == "noncentral" else Q[-1]
    K_R = np.asarray(renormalized_kernel(x, activation=activation, depth=depth, order_params=Q,
                                         priors=config.prior, variant=variant))
    K = np.asarray(nngp_kernel(x, activation=activation, depth=depth, weight_var=1 / config.prior))
    return th, th.nngp, readout, K_R, K


def _measure_fn(config, model, x_tr, x_te, y_te, depth, width):
    readout_var = 1 / config.prior
    readout = f"W{depth}"  # parameters W0..WL, input first (flax orders them as strings: W10 before W2)

    def measure(params):
        f_te = model.apply(params, x_te)[:, 0]
        _, phi = model.apply(params, x_tr, return_features=True)
        v = params["params"][readout]  # the readout's standard-normal weights
        if config.architecture == "cnn":
            q = v @ v.T / width  # (n, n) overlap of the readout weights across positions
            trace = {"test_loss": jnp.mean((f_te - y_te) ** 2), "readout_q": jnp.trace(q) / q.shape[0]}
            return trace, {"f": f_te}, {"Q": q}
        q = jnp.sum(v**2) / width  # λ_L |v_eff|² / N_L
        K_hat = readout_var * phi @ phi.T / width
        trace = {"test_loss": jnp.mean((f_te - y_te) ** 2), "readout_q": q}
        return trace, {"f": f_te}, {"qK": q * K_hat}

    return measure


def _run_unit(config: Config, task, unit: int, activation: str, depth: int, width: int, T: float, out_dir: Path):
    model = _model(config, activation, depth, width)
    x_tr = jnp.asarray(_inputs(config, task.x_train), jnp.float32)
    x_te = jnp.asarray(_inputs(config, task.x_test), jnp.float32)
    y_tr, y_te = jnp.asarray(task.y_train, jnp.float32), jnp.asarray(task.y_test, jnp.float32)
    log_p = log_posterior(model.apply, x_tr, y_tr, T)
    key = jax.random.fold_in(jax.random.key(config.seed), unit)
    positions = jax.vmap(lambda k: model.init(k, x_tr))(jax.random.split(jax.random.fold_in(key, 0), config.chains))
    if config.step > 0:
        h, lam = config.step, float("nan")
    else:
        lam = top_curvature(log_p, jax.tree.map(lambda a: a[0], positions), jax.random.fold_in(key, 1))
        h = config.step_scale / (math.sqrt(lam) if config.sampler == "baoab" else lam)
    every, burn, n_steps = _schedule(config, h)
    sampler = SAMPLERS[config.sampler]
    kwargs = {"friction": config.friction} if config.sampler == "baoab" else {}
    label = f"{activation} L={depth} N={width} T={T:g}"
    result = run_chains(sampler(log_p, h, **kwargs), positions, seed=config.seed * 1_000_003 + unit, n_steps=n_steps,
                        every=every, burn_in=burn, measure=_measure_fn(config, model, x_tr, x_te, y_te, depth, width),
                        checkpoint_dir=out_dir / "checkpoints" / f"unit_{unit:03d}",
                        checkpoint_every=config.checkpoint_every, description=label)
    return result, dict(step=h, top_curvature=lam, every=every, burn_in=burn, n_steps=n_steps)


def _row(config, task, result, run_info, theory, nngp, readout_theory, K_R, K, activation, depth, width, T):
    kept = slice(run_info["burn_in"] // run_info["every"], None)
    loss = result.trace["test_loss"][:, kept]
    mean, err, n_eff = diagnostics.mean_and_error(loss)
    n = result.n_kept * config.chains
    f_mean = result.accum["f"].sum(0) / n
    bias2 = float(np.mean((f_mean - task.y_test) ** 2))
    q_mean, q_err, _ = diagnostics.mean_and_error(result.trace["readout_q"][:, kept])
    row = {
        "activation": activation, "depth": depth, "width": width, "temperature": T, "alpha": config.n_train / width,
        "experiment": mean, "error": err, "theory": float(theory.test_loss), "NNGP": float(nngp.test_loss),
        "relative_deviation": float(theory.test_loss) / mean - 1,
        "within_error_bar": bool(abs(float(theory.test_loss) - mean) <= err),
        "within_2_error_bars": bool(abs(float(theory.test_loss) - mean) <= 2 * err),
        "within_3_percent": bool(abs(float(theory.test_loss) / mean - 1) <= 0.03),
        "bias2": {"experiment": bias2, "theory": float(theory.bias2), "NNGP": float(nngp.bias2)},
        "variance": {"experiment": mean - bias2, "theory": float(theory.variance), "NNGP": float(nngp.variance)},
        "readout_q": {"experiment": q_mean, "error": q_err,
                      "theory": float(np.trace(readout_theory) / len(readout_theory)) if np.ndim(readout_theory) == 2
                      else float(readout_theory)},
        "theory_variant": "conv" if config.architecture == "cnn" else _variant(config, activation),
        "diagnostics": {"rhat": diagnostics.rhat(loss), "ess": n_eff, "draws": int(loss.size),
                        "burn_in_detected_steps": diagnostics.burn_in(result.trace["test_loss"]) * run_info["every"],
                        "acceptance": float(np.mean(result.acceptance)),
                        "min_chain_acceptance": float(np.min(result.acceptance.mean(1)))},
        "sampler": dict(run_info, name=config.sampler),
    }
    if K_R is not None:
        qK = result.pooled["qK"] / n
        norm = np.linalg.norm(K_R)
        row["kernel"] = {
            "rel_distance_to_K_R": float(np.linalg.norm(qK - K_R) / norm),
            "rel_distance_to_NNGP": float(np.linalg.norm(qK - K) / norm),
            "scale_fit": float(np.sum(qK * K) / np.sum(K * K)),  # ⟨q̂K̂⟩ ≈ c K: the measured renormalization
            "scale_theory": float(np.sum(K_R * K) / np.sum(K * K)),
        }
    else:
        Q_emp = result.pooled["Q"] / n
        norm = np.linalg.norm(readout_theory)
        row["kernel"] = {"Q_rel_distance_to_theory": float(np.linalg.norm(Q_emp - readout_theory) / norm),
                         "Q_rel_distance_to_identity": float(np.linalg.norm(Q_emp - np.eye(len(Q_emp))) / norm)}
        return row, None
    return row, (qK, K_R, K)


def run(config: Config, out_dir: Path) -> cli.Outcome:
    task = _task(config)
    units = [(a, d, w, T) for a in config.activations for d in config.depths for T in config.temperatures
             for w in config.widths]
    rows, kernels = [], {}
    for unit, (activation, depth, width, T) in enumerate(units):
        print(f"[{NAME}] {unit + 1}/{len(units)}: {activation} L={depth} N={width} T={T:g}", flush=True)
        theory, nngp, readout, K_R, K = _theory(config, task, activation, depth, width, T)
        result, info = _run_unit(config, task, unit, activation, depth, width, T, out_dir)
        row, kernel = _row(config, task, result, info, theory, nngp, readout, K_R, K, activation, depth, width, T)
        rows.append(row)
        if kernel is not None:
            kernels[activation, depth, width, T] = kernel
    return _report(config, task, rows, kernels, out_dir)


def _log_ticks(ax, values) -> None:
    """Major ticks at the measured values only (log axes otherwise print overlapping minor labels)."""
    ticks = sorted(set(values))
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()


def _report(config, task, rows, kernels, out_dir):
    figs = []
    groups = sorted({(r["activation"], r["temperature"]) for r in rows})
    fig, axes = plots.figure(len(groups))
    for ax, (act, T) in zip(axes, groups, strict=True):
        for depth in config.depths:
            sel = [r for r in rows if r["activation"] == act and r["temperature"] == T and r["depth"] == depth]
            if not sel:
                continue
            N = [r["width"] for r in sel]
            bar = ax.errorbar(N, [r["experiment"] for r in sel], yerr=[r["error"] for r in sel], fmt="o", ms=4,
                              capsize=2, label=f"L = {depth}: sampled")
            ax.plot(N, [r["theory"] for r in sel], "-", color=bar[0].get_color(), label="theory")
            ax.plot(N, [r["NNGP"] for r in sel], ":", color=bar[0].get_color(), label="NNGP")
        ax.set(xscale="log", xlabel="width N", ylabel="test loss ε_g", title=f"{act}, T = {T:g}, P = {config.n_train}")
        _log_ticks(ax, config.widths)
        ax.legend(fontsize=7)
    figs.append(plots.save(fig, out_dir / "test_loss_vs_width.png"))

    fig, axes = plots.figure(1)
    ax = axes[0]
    for depth in config.depths:
        sel = [r for r in rows if r["depth"] == depth]
        ax.errorbar([r["alpha"] for r in sel], [100 * r["relative_deviation"] for r in sel],
                    yerr=[100 * r["error"] / r["experiment"] for r in sel], fmt="o", ms=4, capsize=2,
                    label=f"L = {depth}")
    ax.axhspan(-3, 3, color="0.9", zorder=0, label="±3 %")
    ax.axhline(0, color="k", lw=0.8)
    ax.set(xscale="log", xlabel="α = P/N", ylabel="theory / experiment − 1 (%)", title="renormalized theory vs sampling")
    _log_ticks(ax, [r["alpha"] for r in rows])
    ax.legend(fontsize=7)
    figs.append(plots.save(fig, out_dir / "relative_error_vs_alpha.png"))

    fig, axes = plots.figure(2)
    for depth in config.depths:
        sel = [r for r in rows if r["depth"] == depth]
        bar = axes[0].errorbar([r["alpha"] for r in sel], [r["readout_q"]["experiment"] for r in sel],
                               yerr=[r["readout_q"]["error"] for r in sel], fmt="o", ms=4, label=f"L = {depth}: sampled")
        axes[0].plot([r["alpha"] for r in sel], [r["readout_q"]["theory"] for r in sel], "x", ms=8,
                     color=bar[0].get_color(), label=f"L = {depth}: theory")
    axes[0].axhline(1, color="k", lw=0.8, ls=":")
    axes[0].set(xscale="log", xlabel="α = P/N", ylabel="readout order parameter Q_L", title="⟨λ_L|v|²/N_L⟩ vs Q_L")
    _log_ticks(axes[0], [r["alpha"] for r in rows])
    axes[0].legend(fontsize=7)
    if kernels:
        key = max(kernels, key=lambda k: (k[0] == config.activations[0], -k[2], k[1]))  # smallest width, deepest
        emp, K_R, K = kernels[key]
        axes[1].plot(K.ravel(), emp.ravel(), ".", ms=2, color="0.6", label="vs NNGP K")
        axes[1].plot(K_R.ravel(), emp.ravel(), ".", ms=2, label="vs K_R (theory)")
        lim = [min(K.min(), K_R.min()), max(K.max(), K_R.max())]
        axes[1].plot(lim, lim, "k-", lw=0.8)
        axes[1].set(xlabel="kernel entry (theory)", ylabel="⟨q̂ K̂_L⟩ (sampled)",
                    title=f"{key[0]} L={key[1]} N={key[2]}: posterior kernel")
        axes[1].legend(fontsize=7, markerscale=4)
    figs.append(plots.save(fig, out_dir / "renormalization.png"))

    shallow = [r for r in rows if r["depth"] <= 3]
    agree = [r["within_error_bar"] or r["within_3_percent"] for r in shallow]
    summary = {
        "task": f"{task.info['dataset']} {' vs '.join(task.info['class_names'])}, P = {config.n_train}, "
                f"d = {task.info['input_dim']}",
        "points": len(rows),
        "theory_within_error_or_3pct_depth_le_3": f"{sum(agree)}/{len(agree)}",
        "max_abs_relative_deviation_pct": round(100 * max(abs(r["relative_deviation"]) for r in rows), 2),
        "median_abs_relative_deviation_pct": round(100 * float(np.median([abs(r["relative_deviation"]) for r in rows])), 2),
        "max_rhat": round(max(r["diagnostics"]["rhat"] for r in rows), 4),
        "table": [f"{r['activation']} L={r['depth']} N={r['width']} T={r['temperature']:g}: "
                  f"exp {r['experiment']:.4f}±{r['error']:.4f} theory {r['theory']:.4f} NNGP {r['NNGP']:.4f}"
                  for r in rows],
    }
    metrics = {"task": task.info, "rows": rows}
    return cli.Outcome(metrics, figs, summary)


if __name__ == "__main__":
    cli.main(NAME, Config, PRESETS, run, description=__doc__)
