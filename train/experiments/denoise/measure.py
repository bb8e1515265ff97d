"""denoise, step 1: every prompt, prior sample, trained model and particle path, drawn and checkpointed.

raw = {"cases": {(prior, d): {
           "curves": per (σ², prompt): the two-stage MSE, the particles' MSE, sliced W1 distance to a prior sample
                     and per-coordinate variance at every depth; blurring mean shift at every depth; the distance
                     floor (two prior samples), Tweedie–KDE at Silverman's h² and on KDE_GRID, the oracle-score
                     probability flow + Stage 2, the Bayes posterior mean on the same tokens, Stage 2 on N fresh
                     prior samples (oracle particles),
           "convergence": {"n{N}": (prompts, depth + 1) two-stage MSE, "n{N}_bayes": (prompts,) Bayes, same tokens,
                           "n{N}_oracle": (prompts,) Stage 2 on N fresh prior samples (the oracle particles)},
           "bayes": (S,) Bayes MSE per coordinate, "bayes_convergence": () at the convergence σ²}},
       "trained": {prior: `training.train`'s measurements, plus "analytic_curve" (S, prompts, depth + 1) and
                   "analytic_bayes_realised" (S, prompts): the analytic estimator and Bayes at the training N},
       "histogram": {"particles": (depth + 1, 4·context) Stage-1 particles of `config.histogram_case`,
                     "tokens": (4·context,) their clean tokens, a sample of the prior} or None}

Each piece is saved under out_dir/checkpoints when computed and restored on a rerun. Every key comes from
`train.harness.keys` by value (prior, d, σ², N, prompt index), so a σ² draws the same prompts whatever else is
in the grid.
"""

from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from deeptheory.theory.particle_flow import (
    blurring_mean_shift,
    kde_bandwidth,
    particle_flow,
    stage2_readout,
    tweedie_kde,
)
from deeptheory.theory.priors import bayes_mmse, bayes_posterior_mean, probability_flow, sample_prior
from deeptheory.train.distances import sliced_wasserstein1
from deeptheory.train.experiments.denoise import training
from deeptheory.train.experiments.denoise.config import (
    KDE_GRID,
    NAME,
    PRIORS,
    Config,
    cases,
    chunk,
    depth,
    histogram_case,
)
from deeptheory.train.harness.checkpoint import compute_once
from deeptheory.train.harness.keys import derive, derive_batch
from deeptheory.train.harness.progress import progress
from deeptheory.train.harness.sweep import sweep


def prior(config: Config, name: str, dim: int, dtype):
    """The prior `name` in dimension `dim` (`config.PRIORS`)."""
    return PRIORS[name].build(config, dim, dtype)


def _blurring_depth(config: Config, depth: int) -> int:
    """Blurring mean-shift steps covering the flow time of `depth` Stage-1 layers (it advances T by ε per step,
    a layer by α ε)."""
    return int(math.ceil(depth * config.step))


def _prompt_fn(config: Config, prior, n: int, depth: int, full: bool):
    """(key, {"sigma2"}) → per-depth Stage-2 MSE (and, when `full`, every comparator) on one fresh prompt."""
    chunk_size, eps, step = chunk(config), config.eps, config.step
    dim = prior.dim
    bms_depth = _blurring_depth(config, depth)

    def fn(key, p):
        sigma2 = p["sigma2"]
        k_x, k_z, k_ref, k_dir = jax.random.split(key, 4)
        x = sample_prior(k_x, prior, n)
        y = x + jnp.sqrt(sigma2) * jax.random.normal(k_z, x.shape, x.dtype)
        path = particle_flow(y, eps=eps, step=step, depth=depth, return_trajectory=True, chunk_size=chunk_size)
        mse = lambda est: jnp.mean((est - x) ** 2)  # noqa: E731
        # Stage 2 on N fresh prior samples: the Stage-2 (finite-N) part of the excess alone (docs eq. A-17); its key
        # is folded off the prompt's so that the prompt's other draws do not change
        oracle_particles = sample_prior(jax.random.fold_in(key, 7), prior, n)
        out = {"two_stage": jax.lax.map(lambda q: mse(stage2_readout(y, q, sigma2=sigma2, chunk_size=chunk_size)),
                                        path),
               "bayes_realised": mse(bayes_posterior_mean(y, prior, sigma2)),
               "oracle_particles": mse(stage2_readout(y, oracle_particles, sigma2=sigma2, chunk_size=chunk_size))}
        if not full:
            return out
        reference = sample_prior(k_ref, prior, n)
        dirs = jax.random.normal(k_dir, (config.directions, dim), x.dtype)
        dirs = dirs / jnp.linalg.norm(dirs, axis=1, keepdims=True)
        bms = blurring_mean_shift(y, eps=eps, depth=bms_depth, return_trajectory=True, chunk_size=chunk_size)
        transported = probability_flow(y, prior, sigma2=sigma2, steps=config.ode_steps)
        out.update({
            "particles_only": jnp.mean((path - x[None]) ** 2, axis=(1, 2)),
            "blurring": jnp.mean((bms - x[None]) ** 2, axis=(1, 2)),
            "distance": jax.lax.map(lambda q: sliced_wasserstein1(q, reference, dirs), path),
            "distance_floor": sliced_wasserstein1(sample_prior(jax.random.fold_in(k_ref, 1), prior, n), reference,
                                                  dirs),
            "variance": jnp.mean(jnp.var(path, axis=1), axis=1),
            "kde_silverman": mse(tweedie_kde(y, sigma2=sigma2, chunk_size=chunk_size)),
            "kde_grid": jnp.stack([mse(tweedie_kde(y, sigma2=sigma2, bandwidth=r * sigma2, chunk_size=chunk_size))
                                   for r in KDE_GRID]),
            "kde_h2": kde_bandwidth(y),
            "oracle_flow": mse(stage2_readout(y, transported, sigma2=sigma2, chunk_size=chunk_size)),
        })
        return out

    return fn


def _prompt_keys(config: Config, path: tuple, sigma2s, prompts: int):
    """One key per (σ², prompt), by value: a σ² draws the same prompts whatever else is in the grid."""
    return jnp.concatenate([derive_batch(config.seed, (*path, s2), range(prompts)) for s2 in sigma2s])


def _bayes_mse(config: Config, name: str, dim: int, sigma2: float) -> float:
    """The Bayes MSE per coordinate (closed form where the prior has one, else Monte Carlo)."""
    key = derive(config.seed, NAME, "bayes mmse", name, dim, sigma2)
    return float(bayes_mmse(prior(config, name, dim, jnp.float64), sigma2, key=key,
                            num_samples=config.bayes_samples)) / dim


def _depth_curves(config: Config, name: str, dim: int) -> dict:
    S, R = config.sigma2s, config.prompts
    params = {"sigma2": np.repeat(np.asarray(S, np.float32), R)}
    out = sweep(_prompt_fn(config, prior(config, name, dim, jnp.float32), config.context, depth(config), True), params,
                keys=_prompt_keys(config, (NAME, "depth curves", name, dim), S, R))
    return {k: np.asarray(v, np.float64).reshape(len(S), R, *np.shape(v)[1:]) for k, v in out.items()}


def _convergence(config: Config, name: str, dim: int) -> dict:
    rho = prior(config, name, dim, jnp.float32)
    s2 = config.convergence_sigma2
    curves = {}
    for n in config.context_sizes:
        prompts = max(2, config.convergence_tokens // n)
        out = sweep(_prompt_fn(config, rho, n, depth(config, s2), False), {"sigma2": np.full(prompts, s2, np.float32)},
                    keys=derive_batch(config.seed, (NAME, "convergence", name, dim, s2, n), range(prompts)))
        curves[f"n{n}"] = np.asarray(out["two_stage"], np.float64)
        curves[f"n{n}_bayes"] = np.asarray(out["bayes_realised"], np.float64)
        curves[f"n{n}_oracle"] = np.asarray(out["oracle_particles"], np.float64)
    return curves


def _case(config: Config, name: str, dim: int) -> dict:
    return {"curves": _depth_curves(config, name, dim),
            "convergence": _convergence(config, name, dim),
            "bayes": np.asarray([_bayes_mse(config, name, dim, s2) for s2 in config.sigma2s]),
            "bayes_convergence": np.asarray(_bayes_mse(config, name, dim, config.convergence_sigma2))}


def _case_template(config: Config) -> dict:
    """Zeros shaped like one case's results: the checkpoint template (orbax restores into it)."""
    S, R, L = len(config.sigma2s), config.prompts, depth(config) + 1
    per_depth = ("two_stage", "particles_only", "distance", "variance")
    scalars = ("distance_floor", "kde_silverman", "kde_h2", "oracle_flow", "bayes_realised", "oracle_particles")
    curves = {**{k: np.zeros((S, R, L)) for k in per_depth}, **{k: np.zeros((S, R)) for k in scalars},
              "blurring": np.zeros((S, R, _blurring_depth(config, L - 1) + 1)),
              "kde_grid": np.zeros((S, R, len(KDE_GRID)))}
    depth_n = depth(config, config.convergence_sigma2)
    convergence = {}
    for n in config.context_sizes:
        prompts = max(2, config.convergence_tokens // n)
        convergence.update({f"n{n}": np.zeros((prompts, depth_n + 1)), f"n{n}_bayes": np.zeros(prompts),
                            f"n{n}_oracle": np.zeros(prompts)})
    return {"curves": curves, "convergence": convergence, "bayes": np.zeros(S), "bayes_convergence": np.zeros(())}


def _analytic_prompts(config: Config) -> int:
    return 4 * config.train_batch


def _trained(config: Config, name: str, out_dir: Path) -> dict:
    """The trained models' measurements, and the analytic estimator and Bayes on prompts of the training size."""
    measured = training.train(config, name, out_dir)
    prompts, S = _analytic_prompts(config), len(config.sigma2s)
    rho = prior(config, name, min(config.dims), jnp.float32)
    out = sweep(_prompt_fn(config, rho, config.train_context, depth(config), False),
                {"sigma2": np.repeat(np.asarray(config.sigma2s, np.float32), prompts)},
                keys=_prompt_keys(config, (NAME, "analytic at the training N", name), config.sigma2s, prompts))
    return {**measured,
            "analytic_curve": np.asarray(out["two_stage"], np.float64).reshape(S, -1, out["two_stage"].shape[-1]),
            "analytic_bayes_realised": np.asarray(out["bayes_realised"], np.float64).reshape(S, -1)}


def _trained_template(config: Config) -> dict:
    S, prompts = len(config.sigma2s), _analytic_prompts(config)
    return {**training.template(config), "analytic_curve": np.zeros((S, prompts, depth(config) + 1)),
            "analytic_bayes_realised": np.zeros((S, prompts))}


def _histogram_sample(config: Config) -> dict:
    """Stage-1 particles at every depth for 4 prompts' worth of tokens of `histogram_case`, and the clean tokens."""
    name, s2 = histogram_case(config)
    rho = prior(config, name, 1, jnp.float32)
    x = sample_prior(derive(config.seed, NAME, "histogram", name, s2), rho, 4 * config.context)
    noise = jax.random.normal(derive(config.seed, NAME, "histogram", name, s2, 1), x.shape, x.dtype)
    y = x + np.float32(np.sqrt(s2)) * noise
    path = particle_flow(y, eps=config.eps, step=config.step, depth=depth(config), return_trajectory=True,
                         chunk_size=chunk(config))
    return {"particles": np.asarray(path)[..., 0], "tokens": np.asarray(x)[:, 0]}


def _histogram_template(config: Config) -> dict:
    n = 4 * config.context
    return {"particles": np.zeros((depth(config) + 1, n), np.float32), "tokens": np.zeros(n, np.float32)}


def run(config: Config, data, out_dir: Path) -> dict:
    ckpt = out_dir / "checkpoints"
    results = {}
    for name, dim in progress(cases(config), desc=f"{NAME}: depth curves", unit="cases"):
        results[name, dim] = compute_once(ckpt / f"case_{name}_{dim}", _case_template(config),
                                           lambda: _case(config, name, dim))  # noqa: B023 (called at once)
    trained = {name: compute_once(ckpt / f"trained_{name}", _trained_template(config),
                                   lambda: _trained(config, name, out_dir))  # noqa: B023 (called at once)
               for name in config.train_priors}
    histogram = None if histogram_case(config) is None else compute_once(
        ckpt / "histogram", _histogram_template(config), lambda: _histogram_sample(config))
    return {"cases": results, "trained": trained, "histogram": histogram}
