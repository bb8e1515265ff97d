"""Does the scaling exponent α of L(N) ∝ N^-α depend on the optimizer? Five optimizers × six spectra, with theory.

Setup (every part a config field; the equations are in docs/random_features.md, eqs. (RF-1), (RF-10)–(RF-18)):
- inputs x ~ N(0, Λ) in dimension D, λ_k = k^-s; teacher y = w̄·x + ε with task power v_k² = k^-a, a = s + shift
  (w̄_k² = k^-shift: `target_shift`), label noise σ²;
- N linear random features z = Fx (`models.random_features`, F_ik ~ N(0, 1/N), nested over N: the first N rows
  of one draw per seed), readout a trained from 0 for T steps on ½·(population MSE) — full-batch gradients of
  the exact population loss aᵀΣ_N a − 2aᵀb + c, so the only randomness is the features (the infinite-data regime);
- five optimizers (`.optimizers`): GD, heavy-ball momentum, Adam, diagonal Fisher, damped natural gradient
  (Cholesky of Σ_N + εI), each at its tuned learning rate: a grid of multipliers of a per-optimizer base
  (GD: 0.95/μ_max(Σ_N), momentum: 0.95(1+β)/μ_max, diagonal: 0.95/μ_max(D⁻¹Σ_N), natural: 0.95, Adam: `adam_lr`),
  the multiplier chosen per (optimizer, s, N) by the seed-mean final loss;
- α: log-log slope of the seed-mean loss over the N grid, bootstrap-over-seeds CI (`train.fits`).

Theory, side by side (`theory.random_features`):
- eigenbasis α: the exact eigenbasis dynamics (GD, heavy ball, natural gradient) on each seed's N-feature spectrum
  (float64), tuned over the same grid. Diagonal: the prediction "acts as GD with the rescaled step
  η/(mean diag Σ_N + ε)" (rotation-invariant features: diag Σ_N ≈ tr Σ_N/N). Adam: no eigenbasis theory.
- closed-form α: no sampling at all — T steps at effective rate η_eff act as the ridge z = 1/(η_eff T), so
  L(N, T) ≈ rf_risk(N, P = ∞, ridge z) (the deterministic equivalent).
- converged α: the infinite-budget exponent, from the deterministic equivalent of the population readout
  (rf_risk, P = ∞, ridge 0) over the same window.
- the diagnostic: N*(T) = #{k: T η λ_k f(λ_k) ≥ 1} (η λ₁ = 1) for GD and natural gradient against the window.

    python -m deeptheory.train rf_scaling --preset quick --out runs/rf_scaling
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from deeptheory.models.random_features import population_loss, random_projection
from deeptheory.theory.random_features import (
    learning_curve,
    loglog_slope,
    power_law_spectrum,
    power_law_target,
    preconditioner,
    rf_risk,
    time_bottleneck,
)
from deeptheory.train.experiments.rf_scaling.optimizers import OPTIMIZERS, make_optimizer
from deeptheory.train.fits import fit_exponent
from deeptheory.train.harness import cli
from deeptheory.train.harness.checkpoint import Checkpointer
from deeptheory.train.harness.cli import param
from deeptheory.train.harness.keys import derive, derive_seed
from deeptheory.train.harness.progress import progress
from deeptheory.train.harness.report import Figure, Panel, ReportSpec, Series, Table, inside_interval
from deeptheory.train.harness.sweep import sweep

NAME = "rf_scaling"


@dataclass(frozen=True)
class Config:
    s_values: tuple[float, ...] = param((0.75, 1.0, 1.25, 1.5, 1.75, 2.0), "spectral exponents s (λ_k = k^-s)",
                                        valid="each > 0")
    target_shift: float = param(1.0, "a − s: task power v_k² = k^-a with a = s + shift (0: isotropic teacher; "
                                "negative: teacher weights w̄_k² = k^-shift growing with k; the converged exponent is "
                                "min(a − 1, s), so a ≤ 1 has no power law to fit)",
                                valid="any number with a = s + shift > 0 for every s")
    dim: int = param(2048, "input dimension D (≫ max N)", valid="> 2 × max(widths)")
    widths: tuple[int, ...] = param((8, 16, 32, 64, 128), "feature counts N (geometric; the fit window of α)",
                                    valid="at least three, each ≥ 1, increasing")
    steps: int = param(200, "step budget T of every optimizer", valid="≥ 1")
    seeds: int = param(5, "feature draws per (s, N); α's CI is a bootstrap over them", valid="≥ 2")
    optimizers: tuple[str, ...] = param(OPTIMIZERS, "optimizers", choices=OPTIMIZERS)
    lr_multipliers: tuple[float, ...] = param((0.25, 0.5, 1.0, 2.0), "learning-rate grid, multiples of each "
                                               "optimizer's base rate (the best per (s, N) is kept)", valid="each > 0")
    momentum: float = param(0.9, "heavy-ball β", valid="0 ≤ β < 1")
    damping: float = param(1e-3, "ε of natural gradient and of the diagonal preconditioner (λ₁ = 1)", valid="> 0")
    adam_lr: float = param(0.01, "Adam's base learning rate", valid="> 0")
    noise: float = param(0.0, "label noise σ² (a floor under L; 0 keeps the fits clean)", valid="≥ 0")
    confidence: float = param(0.95, "confidence level of α's interval", valid="0 < level < 1")
    chunk: int = param(0, "configurations trained at once (0: all; set on a GPU to bound memory)", valid="≥ 0")
    seed: int = param(0, "seed of the feature draws and the bootstrap", valid="≥ 0")

    def validate(self):
        req = cli.require
        req(len(self.s_values) >= 1 and all(s > 0 for s in self.s_values),
            f"--s-values must be > 0 (λ_k = k^-s decays); got {','.join(f'{s:g}' for s in self.s_values)}")
        a_min = min(self.s_values) + self.target_shift
        req(a_min > 0, f"--target-shift {self.target_shift:g} gives a task power k^-a with a = s + shift = {a_min:g} "
            f"at s = {min(self.s_values):g}; it must decay (a > 0): use --target-shift > {-min(self.s_values):g}")
        req(len(self.widths) >= 3 and all(w >= 1 for w in self.widths) and list(self.widths) == sorted(set(self.widths)),
            f"--widths must be >= 3 increasing positive integers; got {','.join(map(str, self.widths))}")
        req(self.dim > 2 * max(self.widths), f"--dim must exceed 2 × max(--widths) = {2 * max(self.widths)} (D ≫ N); "
            f"got {self.dim}")
        req(self.steps >= 1, f"--steps must be >= 1; got {self.steps}")
        req(self.seeds >= 2, f"--seeds must be >= 2 (the CI is a bootstrap over seeds); got {self.seeds}")
        req(len(self.optimizers) >= 1 and all(o in OPTIMIZERS for o in self.optimizers),
            f"--optimizers must be among {', '.join(OPTIMIZERS)}; got {','.join(self.optimizers)}")
        req(len(self.lr_multipliers) >= 1 and all(m > 0 for m in self.lr_multipliers),
            f"--lr-multipliers must be > 0; got {','.join(f'{m:g}' for m in self.lr_multipliers)}")
        req(0 <= self.momentum < 1, f"--momentum must be in [0, 1); got {self.momentum}")
        req(self.damping > 0, f"--damping must be > 0; got {self.damping}")
        req(self.adam_lr > 0, f"--adam-lr must be > 0; got {self.adam_lr}")
        req(self.noise >= 0, f"--noise must be >= 0; got {self.noise}")
        req(0 < self.confidence < 1, f"--confidence must be in (0, 1); got {self.confidence}")
        req(self.chunk >= 0, f"--chunk must be >= 0 (0: all at once); got {self.chunk}")
        req(self.seed >= 0, f"--seed must be >= 0; got {self.seed}")


PRESETS = {
    "quick": Config(),
    # T = 256 puts GD's time bottleneck N*(T) ≈ (1.9 T)^{1/s} inside the window for every s ≥ 1
    # (docs/random_features.md, eq. (RF-13))
    "paper": Config(dim=16384, widths=(16, 32, 64, 128, 256, 512, 1024, 2048), steps=256, seeds=8,
                    lr_multipliers=(0.125, 0.25, 0.5, 1.0, 1.5, 2.0), chunk=32),
}


class _Problem:
    """Per (s, seed): the nested features' population moments in float64 and their eigenbasis at every N."""

    def __init__(self, config: Config, s_index: int, seed: int):
        s = config.s_values[s_index]
        W = self.widths = config.widths
        self.lam = np.asarray(power_law_spectrum(config.dim, s))
        self.v2 = np.asarray(power_law_target(config.dim, s + config.target_shift))
        self.teacher = np.sqrt(self.v2 / self.lam)
        key = derive(config.seed, NAME, "features", s, seed)  # by value: --s-values 1.0 alone draws the same
        self.G = np.asarray(random_projection(key, W[-1], config.dim, dtype=jnp.float64)) * np.sqrt(W[-1])
        GL = self.G * self.lam[None, :]
        self.Sigma_full, self.b_full = GL @ self.G.T, GL @ self.teacher
        self.c = float(np.sum(self.v2))
        self.eig = []
        for N in W:
            Sigma, b = self.Sigma_full[:N, :N] / N, self.b_full[:N] / np.sqrt(N)
            mu, U = np.linalg.eigh(Sigma)
            c2 = (U.T @ b) ** 2 / mu
            diag = np.diag(Sigma) + config.damping
            Dm = Sigma / np.sqrt(diag[:, None] * diag[None, :])
            self.eig.append({"mu": mu, "c2": c2, "floor": self.c - float(np.sum(c2)) + config.noise,
                             "mean_diag": float(np.mean(np.diag(Sigma))), "mu_max_diag": float(np.linalg.eigvalsh(Dm)[-1])})

    def moments(self, i: int, n_max: int):
        """(Σ_N, b, mask) of width index i, zero-padded to n_max."""
        N = self.widths[i]
        Sigma = np.zeros((n_max, n_max))
        Sigma[:N, :N] = self.Sigma_full[:N, :N] / N
        b = np.zeros(n_max)
        b[:N] = self.b_full[:N] / np.sqrt(N)
        return Sigma, b, (np.arange(n_max) < N).astype(np.float64)


def _base_lr(name: str, config: Config, eig: dict) -> float:
    if name == "gd":
        return 0.95 / eig["mu"][-1]
    if name == "momentum":
        return 0.95 * (1 + config.momentum) / eig["mu"][-1]
    if name == "diagonal":
        return 0.95 / eig["mu_max_diag"]
    if name == "natural":
        return 0.95
    return config.adam_lr


def _train_fn(name: str, config: Config):
    """(key, params) → final readouts (M, max N): T steps of `name` on ½·(aᵀΣa − 2aᵀb) at each of the M learning
    rates, float32. The learning rates share Σ (an inner vmap, so the step is one (M, N) × (N, N) matmul instead
    of M matrix-vector products); padded coordinates stay 0 (their gradient is 0 and their Fisher entries are 1
    so that the preconditioners stay finite)."""

    def train(_, p):
        Sigma, b, mask = p["Sigma"], p["b"], p["mask"]
        fisher = Sigma + jnp.diag(1.0 - mask)

        def one_rate(lr):
            opt = make_optimizer(name, lr, fisher=fisher, damping=config.damping, beta=config.momentum)
            a = jnp.zeros_like(b)

            def step(carry, _):
                a, state = carry
                updates, state = opt.update(Sigma @ a - b, state, a)
                return (optax.apply_updates(a, updates) * mask, state), None

            return jax.lax.scan(step, (a, opt.init(a)), None, length=config.steps)[0][0]

        # optax.adam raises a float to its int32 step count (bias correction), which strict promotion refuses
        with jax.numpy_dtype_promotion("standard"):
            return jax.vmap(one_rate)(p["lr"])

    return train


def _sweep_params(name: str, config: Config, problems) -> dict:
    """The sweep axis: every (s, seed, N), zero-padded to max N, with its M learning rates."""
    n_max, items = config.widths[-1], []
    for si in range(len(config.s_values)):
        for r in range(config.seeds):
            for wi in range(len(config.widths)):
                Sigma, b, mask = problems[si, r].moments(wi, n_max)
                base = _base_lr(name, config, problems[si, r].eig[wi])
                items.append((Sigma, b, mask, base * np.asarray(config.lr_multipliers)))
    return {key: np.stack([item[i] for item in items]).astype(np.float32)
            for i, key in enumerate(("Sigma", "b", "mask", "lr"))}


def _final_losses(config: Config, mu, c2, floor, lr, f, beta):
    """L(T) of the eigenbasis dynamics for a batch of (spectrum, excess power, floor, η, f, β), float64, one jit."""
    curve = lambda *args: learning_curve(args[0], args[1], config.steps, learning_rate=args[3],  # noqa: E731
                                         preconditioner_values=args[4], momentum=args[5], floor=args[2])[-1]
    return np.asarray(jax.jit(jax.vmap(curve))(*(jnp.asarray(x, jnp.float64) for x in (mu, c2, floor, lr, f, beta))))


def _preconditioner_values(name: str, config: Config, mu, mean_diag: float):
    if name == "natural":
        return np.asarray(preconditioner(mu, "natural", damping=config.damping))
    if name == "diagonal":  # the prediction: diag Σ_N ≈ its mean (rotation-invariant features)
        return np.full_like(mu, 1.0 / (mean_diag + config.damping))
    return np.ones_like(mu)


def _theory_losses(name: str, config: Config, problems) -> np.ndarray:
    """(S, R, W, M) final losses of the eigenbasis dynamics on each seed's N-feature spectrum (NaN for Adam).
    Spectra are padded to max N with modes of zero excess power."""
    S, R, W, M = len(config.s_values), config.seeds, config.widths, config.lr_multipliers
    if name == "adam":
        return np.full((S, R, len(W), len(M)), np.nan)
    n_max, rows = W[-1], []
    for si in range(S):
        for r in range(R):
            for wi, N in enumerate(W):
                eig = problems[si, r].eig[wi]
                mu = np.ones(n_max)
                mu[:N] = eig["mu"]
                c2 = np.zeros(n_max)
                c2[:N] = eig["c2"]
                f = _preconditioner_values(name, config, mu, eig["mean_diag"])
                rows += [(mu, c2, eig["floor"], _base_lr(name, config, eig) * m, f) for m in M]
    mu, c2, floor, lr, f = (np.stack([row[i] for row in rows]) for i in range(5))
    beta = np.full(len(rows), config.momentum if name == "momentum" else 0.0)
    return _final_losses(config, mu, c2, floor, lr, f, beta).reshape(S, R, len(W), len(M))


def _closed_form_losses(name: str, config: Config, problems) -> np.ndarray:
    """(S, W, M) losses predicted with no sampling: training for T steps at effective rate η_eff ≈ the population
    ridge z = 1/(η_eff T) (early stopping ↔ ridge: Ali, Kolter & Tibshirani 2019; Bordelon et al. 2024), so
    L(N, T) ≈ rf_risk(N features, P = ∞, ridge z). η_eff in units of λ₁ = 1: GD and diagonal 0.95 m, heavy ball
    0.95 m (1+β)/(1−β), natural gradient 0.95 m/ε (its slow modes, λ ≪ ε, relax at η/ε). NaN for Adam."""
    S, W, M = len(config.s_values), config.widths, config.lr_multipliers
    if name == "adam":
        return np.full((S, len(W), len(M)), np.nan)
    beta = config.momentum
    rate = {"gd": 0.95, "diagonal": 0.95, "momentum": 0.95 * (1 + beta) / (1 - beta), "natural": 0.95 / config.damping}
    ridge = np.asarray([1.0 / (rate[name] * m * config.steps) for m in M])
    out = np.empty((S, len(W), len(M)))
    for si in range(S):
        lam, v2 = jnp.asarray(problems[si, 0].lam), jnp.asarray(problems[si, 0].v2)
        risk = jax.vmap(jax.vmap(lambda n, z, lam=lam, v2=v2: rf_risk(lam, v2, n_features=n, n_samples=jnp.inf, ridge=z,
                                                                      noise=config.noise), (None, 0)), (0, None))
        out[si] = np.asarray(risk(jnp.asarray(W, jnp.float64), jnp.asarray(ridge)))
    return out


@jax.jit
def _population_losses(readouts_CxN, G_NxD, scale_C, lam, teacher, noise):
    """Test loss of C readouts of one (s, seed): features F = G[:N]/√N, zero-padded readouts."""
    return jax.vmap(lambda a, c: population_loss(a, G_NxD * c, lam, teacher, noise))(readouts_CxN, scale_C)


def run(config: Config, data, out_dir: Path) -> dict:
    S, R, W, M, O = config.s_values, config.seeds, config.widths, config.lr_multipliers, config.optimizers
    n_max = W[-1]
    problems = {}
    for si in progress(range(len(S)), desc=f"{NAME}: features", unit="spectra"):
        for r in range(R):
            problems[si, r] = _Problem(config, si, r)
    # what the test loss of every trained readout needs, converted once (not once per optimizer)
    float32 = {k: tuple(jnp.asarray(x, jnp.float32) for x in (p.G, p.lam, p.teacher)) for k, p in problems.items()}
    initial = {"losses": np.full((len(O), len(S), R, len(W), len(M)), np.nan)}
    with Checkpointer(out_dir / "checkpoints", every=1) as ckpt:
        start, state = ckpt.restore(initial)
        for oi in progress(range(start, len(O)), desc=NAME, total=len(O), initial=start, unit="optimizers"):
            name = O[oi]
            readouts = sweep(_train_fn(name, config), _sweep_params(name, config, problems), seed=config.seed,
                             chunk_size=config.chunk or None)
            losses = state["losses"].copy()
            readouts = readouts.reshape(len(S), R, len(W) * len(M), n_max)
            scale = np.repeat(1.0 / np.sqrt(np.asarray(W, np.float32)), len(M)).astype(np.float32)
            for si in range(len(S)):
                for r in range(R):
                    G, lam, teacher = float32[si, r]
                    values = _population_losses(jnp.asarray(readouts[si, r]), G, jnp.asarray(scale), lam, teacher,
                                                np.float32(config.noise))
                    losses[oi, si, r] = np.asarray(values).reshape(len(W), len(M))
            state = {"losses": losses}
            ckpt.save(oi + 1, state)
    rows, diagnostics = _analyse(config, problems, state["losses"])
    return {"rows": rows, "diagnostics": diagnostics}


def _tuned(losses_RxWxM):
    """Per N the multiplier with the least seed-mean final loss (diverged runs count as +inf)."""
    mean = np.where(np.isfinite(losses_RxWxM), losses_RxWxM, np.inf).mean(axis=0)  # (W, M)
    best = np.argmin(mean, axis=1)
    return best, losses_RxWxM[:, np.arange(len(best)), best]


def _analyse(config: Config, problems, losses):
    S, W, O = config.s_values, config.widths, config.optimizers
    n = np.asarray(W, np.float64)
    theory_all = {name: _theory_losses(name, config, problems) for name in O}
    closed_all = {name: _closed_form_losses(name, config, problems) for name in O}
    rows = []
    for oi, name in enumerate(O):
        for si, s in enumerate(S):
            best, tuned = _tuned(losses[oi, si])
            fit = fit_exponent(n, tuned, confidence=config.confidence,
                               seed=derive_seed(config.seed, NAME, "bootstrap", name, s))
            theory = theory_all[name][si]  # (R, W, M)
            theory_curve = None if name == "adam" else np.min(theory.mean(axis=0), axis=1)
            closed = None if name == "adam" else np.min(closed_all[name][si], axis=1)
            rows.append({
                "optimizer": name, "s": s, "a": s + config.target_shift, **fit.as_dict(),
                "loss_mean": tuned.mean(axis=0).tolist(), "loss_per_seed": tuned.tolist(),
                "lr_multiplier": [config.lr_multipliers[b] for b in best],
                "theory_loss": None if theory_curve is None else theory_curve.tolist(),
                "theory_alpha": None if theory_curve is None else float(loglog_slope(n, theory_curve)),
                "closed_form_loss": None if closed is None else closed.tolist(),
                "closed_form_alpha": None if closed is None else float(loglog_slope(n, closed)),
            })
    diagnostics = []
    for si, s in enumerate(S):
        lam, v2 = problems[si, 0].lam, problems[si, 0].v2
        converged = [float(rf_risk(lam, v2, n_features=N, n_samples=jnp.inf, ridge=0.0, noise=config.noise)) for N in W]
        n_star = {name: int(time_bottleneck(lam, config.steps, learning_rate=1.0,
                                            preconditioner_values=preconditioner(lam, kind, damping=config.damping)))
                  for name, kind in (("gd", "gd"), ("natural", "natural"))}
        diagnostics.append({"s": s, "converged_alpha": float(loglog_slope(n, jnp.asarray(converged))),
                            "converged_loss": converged, "n_star_gd": n_star["gd"], "n_star_natural": n_star["natural"],
                            "window": [W[0], W[-1]]})
    return rows, diagnostics


LABELS = {"gd": "GD", "momentum": "heavy ball", "adam": "Adam", "diagonal": "diagonal Fisher",
          "natural": "natural gradient"}


def report(record: dict) -> ReportSpec:
    config, m = record["config"], record["metrics"]
    S, W, O = config["s_values"], config["widths"], config["optimizers"]
    row = {(r["optimizer"], r["s"]): r for r in m["rows"]}
    diag = {d["s"]: d for d in m["diagnostics"]}
    level = f"{config['confidence']:.0%}"

    def cell(r, key):
        value = r[key]
        mark = "" if value is None else (" ✓" if r["ci"][0] <= value <= r["ci"][1] else " ✗")
        return f"{r['alpha']:.2f} [{r['ci'][0]:.2f}, {r['ci'][1]:.2f}]" + ("" if value is None else f" / {value:.2f}{mark}")

    table = Table(f"Scaling exponent α over N ∈ [{W[0]}, {W[-1]}]: measured [{level} CI] / eigenbasis theory "
                  "(✓ inside the CI)", ["optimizer", *[f"s = {s:g}" for s in S]],
                  [[LABELS[name] + (" (theory: GD with a rescaled step, approximate)" if name == "diagonal" else ""),
                    *[cell(row[name, s], "theory_alpha") for s in S]] for name in O])
    if "gd" in O and "natural" in O:
        table.rows.append(["ridge equivalent GD / NG (no sampling)", *[
            f"{row['gd', s]['closed_form_alpha']:.2f} / {row['natural', s]['closed_form_alpha']:.2f}" for s in S]])
    table.rows.append(["infinite budget", *[f"{diag[s]['converged_alpha']:.2f}" for s in S]])
    table.rows.append(["N*(T) GD / NG", *[f"{diag[s]['n_star_gd']} / {diag[s]['n_star_natural']}" for s in S]])
    table.note = ("Eigenbasis theory: the exact per-mode dynamics on each seed's N-feature spectrum (it sees the feature "
                  "draw: a consistency check, not a prediction). Ridge equivalent: no sampling — T steps at effective "
                  "rate η act as the ridge 1/(ηT) in the deterministic equivalent. Infinite budget: the converged "
                  "exponent. N*(T): modes learned within T steps; GD is budget-limited inside the window where "
                  f"N*(T) < {W[-1]}. Adam has no theory here.")
    closed = Table("Agreement of the sampling-free ridge equivalent with the measured CI", ["optimizer", *[
        f"s = {s:g}" for s in S]], [[LABELS[name], *[inside_interval(row[name, s]["closed_form_alpha"], row[name, s]["ci"])
                                     for s in S]] for name in O if row[name, S[0]]["closed_form_alpha"] is not None])
    s_groups = {s: f"s = {s:g}" for s in S}
    loss_panels = []
    for name in O:
        series = []
        for s in S:
            r, g = row[name, s], s_groups[s]
            per_seed = np.asarray(r["loss_per_seed"])
            series += [Series(W, per_seed.min(0), "band", y2=per_seed.max(0), group=g, role="range over seeds"),
                       Series(W, r["loss_mean"], "points", group=g, role="trained (seed mean)")]
            if r["theory_loss"] is not None:
                series.append(Series(W, r["theory_loss"], "line", group=g, role="eigenbasis theory"))
            if r["closed_form_loss"] is not None:
                series.append(Series(W, r["closed_form_loss"], "line", line=":", group=g,
                                     role="ridge equivalent (no sampling)"))
        title = f"{LABELS[name]}" + (" (no theory)" if row[name, S[0]]["theory_loss"] is None else "")
        loss_panels.append(Panel(title, "features N", "test loss", series, xscale="log", yscale="log", xticks=W))
    figures = [Figure("loss_vs_n", f"Test loss after T = {config['steps']} steps against N, one panel per optimizer: "
                      "the slope on these log-log axes is −α; solid lines (theory on each seed's features) should "
                      "run through the dots, dotted lines are the sampling-free prediction.", loss_panels,
                      sequential=True, columns=3, panel_size=(3.6, 3.0))]
    alpha_series, shift_series = [], []
    for name in O:
        g = LABELS[name]
        alphas = [row[name, s]["alpha"] for s in S]
        err = [[a - row[name, s]["ci"][0] for a, s in zip(alphas, S, strict=True)],
               [row[name, s]["ci"][1] - a for a, s in zip(alphas, S, strict=True)]]
        alpha_series.append(Series(S, alphas, "points", yerr=err, group=g, role=f"measured ({level} CI)"))
        theory = [row[name, s]["theory_alpha"] for s in S]
        if theory[0] is not None:
            alpha_series.append(Series(S, theory, "line", group=g, role="eigenbasis theory"))
        if name != "gd" and "gd" in O:
            gd = [row["gd", s]["alpha"] for s in S]
            shift_series.append(Series(S, np.subtract(alphas, gd), "points", group=g, role=f"measured ({level} CI)"))
            if theory[0] is not None:
                shift_series.append(Series(S, np.subtract(theory, [row["gd", s]["theory_alpha"] for s in S]), "line",
                                           group=g, role="eigenbasis theory"))
    alpha_series.append(Series(S, [diag[s]["converged_alpha"] for s in S], "line", line="--", color="black",
                               label="infinite budget (deterministic equivalent)"))
    alpha_panels = [Panel(f"α over N ∈ [{W[0]}, {W[-1]}]", "spectral exponent s", "fitted α", alpha_series, xticks=S)]
    if shift_series:
        shift_series.append(Series([], [0.0], "hline", color="black", line="-"))
        alpha_panels.append(Panel("α shift over GD (same seeds)", "spectral exponent s", r"$\alpha - \alpha_{\rm GD}$",
                                  shift_series, xticks=S))
    figures.append(Figure("alpha_vs_s", "Fitted α against the spectral exponent s for every optimizer (left) and its "
                          "shift over GD (right): the optimizers part where GD's time bottleneck enters the window.",
                          alpha_panels, panel_size=(4.4, 3.4)))
    capped = [s for s in S if max(diag[s]["n_star_gd"], diag[s]["n_star_natural"]) >= config["dim"]]
    figures.append(Figure("diagnostic", f"Modes learned within T = {config['steps']} steps (ηλ₁ = 1) against s; where "
                          "N*(T) falls inside the grey window, GD's α is set by the budget, not by N. N*(T) counts modes, "
                          f"so it cannot exceed the input dimension D = {config['dim']} (dashed)"
                          + (f": natural gradient sits on that cap at s = {', '.join(f'{s:g}' for s in capped)}, where "
                             "it learns every mode within the budget." if capped else "."),
                          [Panel(f"time bottleneck at T = {config['steps']}", "spectral exponent s", r"$N^*(T)$", [
                              Series(S, [diag[s]["n_star_gd"] for s in S], "line", marker=True, group="GD"),
                              Series(S, [diag[s]["n_star_natural"] for s in S], "line", marker=True,
                                     group=f"natural gradient (ε = {config['damping']:g})"),
                              Series([], [config["dim"]], "hline", color="0.3", line="--",
                                     label=f"cap: D = {config['dim']} modes"),
                              Series([min(S) - 0.1, max(S) + 0.1], [W[0]] * 2, "band", y2=[W[-1]] * 2, color="0.5",
                                     label="fit window")], yscale="log", xticks=S)], panel_size=(5.0, 3.4)))

    with_theory = [r for r in m["rows"] if r["theory_alpha"] is not None]
    inside = sum(r["ci"][0] <= r["theory_alpha"] <= r["ci"][1] for r in with_theory)
    closed_inside = sum(r["ci"][0] <= r["closed_form_alpha"] <= r["ci"][1] for r in with_theory)
    findings = [f"Eigenbasis theory inside the measured CI in {inside}/{len(with_theory)} cells; the sampling-free "
                f"ridge equivalent in {closed_inside}/{len(with_theory)}."
                + (" For GD, heavy ball and natural gradient the eigenbasis dynamics is exact; for the diagonal Fisher "
                   "it is the rescaled-GD approximation (see the known deviations)." if "diagonal" in O else "")]
    if "gd" in O and "natural" in O:
        s1 = min(S, key=lambda s: abs(s - 1.0))
        shifts = {s: row["natural", s]["alpha"] - row["gd", s]["alpha"] for s in S}
        peak = max(shifts, key=shifts.get)
        findings.append(f"Natural gradient vs GD: α = {row['natural', s1]['alpha']:.3f} vs {row['gd', s1]['alpha']:.3f} at "
                        f"s = {s1:g}; the largest shift is {shifts[peak]:+.3f} at s = {peak:g}, where N*_{{GD}}(T) = "
                        f"{diag[peak]['n_star_gd']} against the window's {W[-1]}.")
    misses = [r for r in with_theory if not r["ci"][0] <= r["theory_alpha"] <= r["ci"][1]]
    deviations = ["Eigenbasis theory outside the CI: " + ", ".join(
        f"{LABELS[r['optimizer']]} s = {r['s']:g} ({r['theory_alpha']:.3f} vs [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}])"
        for r in misses) + "." if misses else "None of the eigenbasis predictions falls outside its CI."]
    if "diagonal" in O and "gd" in O:
        deviations.append(_diagonal_note(S, row))
    deviations.append("The ridge-equivalent (early stopping ↔ ridge) prediction is a heuristic; it is expected to miss "
                      "where training is budget-limited inside the window (large s for GD).")
    headline = (f"eigenbasis theory inside CI {inside}/{len(with_theory)}, "
                f"ridge equivalent {closed_inside}/{len(with_theory)}")
    setup = (f"Inputs x ~ N(0, diag k^-s) in D = {config['dim']} dimensions, s ∈ {{{', '.join(f'{s:g}' for s in S)}}}, "
             f"teacher with task power k^-(s {'−' if config['target_shift'] < 0 else '+'} "
             f"{abs(config['target_shift']):g}); N ∈ {{{', '.join(map(str, W))}}} linear "
             f"random features (nested: the first N rows of one draw per seed, {config['seeds']} seeds); the readout is "
             f"trained from zero for T = {config['steps']} full-batch steps on the exact population loss by "
             f"{', '.join(LABELS[o] for o in O)}, each at its best learning-rate multiplier of "
             f"{{{', '.join(f'{x:g}' for x in config['lr_multipliers'])}}} per (s, N); α is the log-log slope of the "
             f"seed-mean loss over N with a {level} bootstrap CI over seeds.")
    return ReportSpec(setup, [table, closed], figures, findings, deviations, headline)


def _diagonal_note(S, row) -> str:
    """The diagonal-Fisher 'theory' is GD with the step rescaled by the mean diagonal: exact only when diag Σ_N is
    constant. Its CIs are wide, but the shift over GD is measured on shared seeds: compare its sign."""
    measured = {s: row["diagonal", s]["alpha"] - row["gd", s]["alpha"] for s in S}
    predicted = {s: row["diagonal", s]["theory_alpha"] - row["gd", s]["theory_alpha"] for s in S}
    opposite = [s for s in S if measured[s] * predicted[s] < 0 and max(abs(measured[s]), abs(predicted[s])) >= 0.01]
    worst = max(S, key=lambda s: abs(row["diagonal", s]["theory_alpha"] - row["diagonal", s]["alpha"]))
    text = ("Diagonal Fisher: its eigenbasis 'theory' is an approximation — GD with the step rescaled by the mean "
            "diagonal of Σ_{N} (exact only when the diagonal is constant) — not the exact dynamics; where it parts "
            "from the measurement its ✓ come from wide CIs (largest gap "
            f"{row['diagonal', worst]['theory_alpha']:.2f} vs measured {row['diagonal', worst]['alpha']:.2f} at "
            f"s = {worst:g})")
    if opposite:
        text += ("; its shift over GD, which shared seeds measure much better than α itself, has the opposite sign "
                 "from the prediction at " + ", ".join(f"s = {s:g} (measured {measured[s]:+.3f}, predicted "
                                                        f"{predicted[s]:+.3f})" for s in opposite)
                 + ": there the diagonal preconditioner helps where the rescaled-GD picture says it hurts")
    return text + "."


EXPERIMENT = cli.Experiment(
    name=NAME, title="Scaling exponents of random-feature regression by optimizer",
    question="Does the scaling exponent α of the test loss L ∝ N^-α depend on the optimizer, and does the theory "
             "predict α for five optimizers across six spectra?",
    Config=Config, presets=PRESETS, run=run, analyse=lambda config, data, raw: raw, report=report, description=__doc__)

