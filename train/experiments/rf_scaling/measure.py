"""rf_scaling, step 1: draw the nested features of every (s, seed) and train every optimizer on their population loss.

raw = {"losses": (O, S, R, W, M) population test loss of the readout after T steps, per optimizer, spectral exponent
                 s, seed, width N and learning-rate multiplier (trained in float32),
       "spectra": what the theory in `analysis` needs of the feature draws: the eigenbasis of every Σ_N (float64),
                  leading axes (S, R, W):
           "mu" (…, max N) eigenvalues of Σ_N, ascending, padded with 1; "c2" (…, max N) excess power (uᵀb)²/μ of
           each mode, padded with 0; "floor" c − Σ c2 + σ² (the loss no readout of these N features removes);
           "mu_max" the top eigenvalue; "mean_diag" the mean of diag Σ_N; "mu_max_diag" the top eigenvalue of
           D^-1/2 Σ_N D^-1/2, D = diag Σ_N + ε}

One checkpoint per optimizer. Public for `benchmarks/rf_sweep.py`: `Problem`, `sweep_params`, `train_fn`.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from deeptheory.models.random_features import population_loss, population_moments, random_projection
from deeptheory.theory.random_features import power_law_spectrum, power_law_target
from deeptheory.train.experiments.rf_scaling.config import NAME, Config
from deeptheory.train.experiments.rf_scaling.optimizers import make_optimizer, spec
from deeptheory.train.harness.checkpoint import resume_loop
from deeptheory.train.harness.keys import derive, derive_batch
from deeptheory.train.harness.progress import progress
from deeptheory.train.harness.sweep import sweep

__all__ = ["Problem", "make_problems", "population", "spectra", "sweep_params", "train_fn", "run"]

SPECTRUM_FIELDS = ("mu", "c2", "floor", "mu_max", "mean_diag", "mu_max_diag")


def population(config: Config, s: float) -> tuple[np.ndarray, np.ndarray]:
    """(λ, v²) of the inputs and the teacher at spectral exponent s, float64: what the features are drawn on and
    what the sampling-free theory (`analysis`) integrates against."""
    return (np.asarray(power_law_spectrum(config.dim, s)),
            np.asarray(power_law_target(config.dim, s + config.target_shift)))


class Problem:
    """Per (s, seed): the nested features' population moments in float64 and their eigenbasis at every N."""

    def __init__(self, config: Config, s_index: int, seed: int):
        s = config.s_values[s_index]
        W = self.widths = config.widths
        self.lam, self.v2 = population(config, s)
        self.teacher = np.sqrt(self.v2 / self.lam)
        key = derive(config.seed, NAME, "features", s, seed)  # by value: --s-values 1.0 alone draws the same
        self.G = np.asarray(random_projection(key, W[-1], config.dim, dtype=jnp.float64)) * np.sqrt(W[-1])
        # (Σ, b, c) of the unscaled draw G (F = G/√N): Σ_N = Σ[:N, :N]/N, b_N = b[:N]/√N, c = Σ v_k²
        self.Sigma_full, self.b_full, c = (np.asarray(x) for x in population_moments(self.G, self.lam, self.teacher))
        self.c = float(c)
        self.eig = []
        for N in W:
            Sigma, b = self.Sigma_full[:N, :N] / N, self.b_full[:N] / np.sqrt(N)
            mu, U = np.linalg.eigh(Sigma)
            c2 = (U.T @ b) ** 2 / mu
            diag = np.diag(Sigma) + config.damping
            Dm = Sigma / np.sqrt(diag[:, None] * diag[None, :])
            self.eig.append({"mu": mu, "c2": c2, "floor": self.c - float(np.sum(c2)) + config.noise, "mu_max": mu[-1],
                             "mean_diag": float(np.mean(np.diag(Sigma))), "mu_max_diag": float(np.linalg.eigvalsh(Dm)[-1])})

    def moments(self, i: int, n_max: int):
        """(Σ_N, b, mask) of width index i, zero-padded to n_max."""
        N = self.widths[i]
        Sigma = np.zeros((n_max, n_max))
        Sigma[:N, :N] = self.Sigma_full[:N, :N] / N
        b = np.zeros(n_max)
        b[:N] = self.b_full[:N] / np.sqrt(N)
        return Sigma, b, (np.arange(n_max) < N).astype(np.float64)


def make_problems(config: Config) -> dict:
    """{(s index, seed): Problem} for every spectrum and seed of the config."""
    return {(si, r): Problem(config, si, r)
            for si in progress(range(len(config.s_values)), desc=f"{NAME}: features", unit="spectra")
            for r in range(config.seeds)}


def spectra(config: Config, problems) -> dict:
    """raw["spectra"] (module docstring): every problem's eigenbasis at every N, padded to max N."""
    S, R, W = len(config.s_values), config.seeds, config.widths
    out = {"mu": np.ones((S, R, len(W), W[-1])), "c2": np.zeros((S, R, len(W), W[-1])),
           **{k: np.empty((S, R, len(W))) for k in SPECTRUM_FIELDS[2:]}}
    for (si, r), problem in problems.items():
        for wi, (N, eig) in enumerate(zip(W, problem.eig, strict=True)):
            out["mu"][si, r, wi, :N], out["c2"][si, r, wi, :N] = eig["mu"], eig["c2"]
            for k in SPECTRUM_FIELDS[2:]:
                out[k][si, r, wi] = eig[k]
    return out


def train_fn(name: str, config: Config):
    """(key, params) → final readouts (M, max N): T steps of `name` on ½·(aᵀΣa − 2aᵀb) at each of the M learning
    rates, float32 (the key is not used: training on the population loss is deterministic). The learning rates
    share Σ (an inner vmap, so the step is one (M, N) × (N, N) matmul instead of M matrix-vector products); padded
    coordinates stay 0 (their gradient is 0 and their Fisher entries are 1 so that the preconditioners stay finite)."""

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


def sweep_params(name: str, config: Config, problems) -> dict:
    """The sweep axis: every (s, seed, N), zero-padded to max N, with its M learning rates (the optimizer's base
    rate on that Σ_N times each multiplier)."""
    n_max, items, optimizer = config.widths[-1], [], spec(name)
    for si in range(len(config.s_values)):
        for r in range(config.seeds):
            for wi in range(len(config.widths)):
                Sigma, b, mask = problems[si, r].moments(wi, n_max)
                base = optimizer.base_lr(problems[si, r].eig[wi], config)
                items.append((Sigma, b, mask, base * np.asarray(config.lr_multipliers)))
    return {key: np.stack([item[i] for item in items]).astype(np.float32)
            for i, key in enumerate(("Sigma", "b", "mask", "lr"))}


@jax.jit
def _population_losses(readouts_CxN, G_NxD, scale_C, lam, teacher, noise):
    """Test loss of C readouts of one (s, seed): features F = G[:N]/√N, zero-padded readouts."""
    return jax.vmap(lambda a, c: population_loss(a, G_NxD * c, lam, teacher, noise))(readouts_CxN, scale_C)


def run(config: Config, data, out_dir: Path) -> dict:
    S, R, W, M, O = config.s_values, config.seeds, config.widths, config.lr_multipliers, config.optimizers
    n_max = W[-1]
    initial = {"losses": np.full((len(O), len(S), R, len(W), len(M)), np.nan),
               "spectra": {k: np.full((len(S), R, len(W), n_max) if k in ("mu", "c2") else (len(S), R, len(W)), np.nan)
                           for k in SPECTRUM_FIELDS}}
    drawn = {}  # the features, drawn on the first optimizer this invocation trains (none when the run is finished)

    def features():
        if not drawn:
            drawn["problems"] = problems = make_problems(config)
            drawn["spectra"] = spectra(config, problems)
            # what the test loss of every trained readout needs, converted once (not once per optimizer)
            drawn["float32"] = {k: tuple(jnp.asarray(x, jnp.float32) for x in (p.G, p.lam, p.teacher))
                                for k, p in problems.items()}
        return drawn

    def train_optimizer(oi, state):
        name, f = O[oi], features()
        params = sweep_params(name, config, f["problems"])
        keys = derive_batch(config.seed, (NAME, "train", name), range(len(params["lr"])))
        readouts = sweep(train_fn(name, config), params, keys=keys, chunk_size=config.chunk or None)
        losses = state["losses"].copy()
        readouts = readouts.reshape(len(S), R, len(W) * len(M), n_max)
        scale = np.repeat(1.0 / np.sqrt(np.asarray(W, np.float32)), len(M)).astype(np.float32)
        for si in range(len(S)):
            for r in range(R):
                G, lam, teacher = f["float32"][si, r]
                values = _population_losses(jnp.asarray(readouts[si, r]), G, jnp.asarray(scale), lam, teacher,
                                            np.float32(config.noise))
                losses[oi, si, r] = np.asarray(values).reshape(len(W), len(M))
        return {"losses": losses, "spectra": f["spectra"]}

    return resume_loop(out_dir / "checkpoints", initial, len(O), train_optimizer, desc=NAME, unit="optimizers")
