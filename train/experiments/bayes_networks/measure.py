"""bayes_networks, step 1: sample the posterior of every (activation, depth, width, T) point with C chains.

raw = [Measured(point, chains, sampler), ...], one per point in the order of `points(config)`:
- point: (activation, depth, width, T);
- chains: the `train.inference.chains.ChainResult` of its C chains, restored from out_dir/checkpoints/<point>:
  traces of the test loss and the readout norm at every measurement, the test predictions f summed per chain and
  the readout kernel (MLP: q̂K̂_L; CNN: Q̂) summed over chains, after burn-in;
- sampler: the step h, the top curvature it came from (NaN for a given --step), and the schedule in steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp

from deeptheory.models.collapsed import collapsed_log_posterior, readout_features, split_readout
from deeptheory.models.posterior import log_posterior
from deeptheory.train.data import load_task
from deeptheory.train.experiments.bayes_networks.architectures import ARCHITECTURES, Data, readout_name
from deeptheory.train.experiments.bayes_networks.config import NAME, Config
from deeptheory.train.harness.keys import derive, derive_seed
from deeptheory.train.inference.chains import ChainResult, run_chains
from deeptheory.train.inference.samplers import SAMPLERS
from deeptheory.train.inference.stepsize import stable_step, top_curvature


class Measured(NamedTuple):
    point: tuple  # (activation, depth, width, T)
    chains: ChainResult  # without the final states (`final` is None: all points' states would not fit in memory)
    sampler: dict  # step, top_curvature, every, burn_in, n_steps (steps)


def points(config: Config) -> list[tuple]:
    """(activation, depth, width, T) in the order they are run and reported: widths innermost."""
    return [(a, d, w, T) for a in config.activations for d in config.depths for T in config.temperatures
            for w in config.widths]


def load_data(config: Config):
    task = load_task(config, input_dim=config.image_side**2, reduce="downsample", labels=config.labels)
    if ARCHITECTURES[config.architecture].images and task.info["input_dim"] != config.image_side**2:
        raise ValueError(f"the {config.architecture.upper()} needs images; {task.info['dataset']} has "
                         f"{task.info['input_dim']}-d inputs (install Fashion-MNIST or give --data-dir)")
    return task


def _schedule(config: Config, h: float) -> tuple[int, int, int]:
    """(every, burn_in, n_steps) in steps from the times in the config and the step h."""
    every = max(1, round(config.measure_time / h))
    burn = every * round(config.burn_in_time / (every * h))
    n_meas = max(8, round(config.sample_time / (every * h)))
    return every, burn, burn + n_meas * every


def _unit_name(activation: str, depth: int, width: int, T: float) -> str:
    return f"{activation}_L{depth}_N{width}_T{T:g}"


def _run_unit(config: Config, task, activation: str, depth: int, width: int, T: float, out_dir: Path) -> Measured:
    arch = ARCHITECTURES[config.architecture]
    model = arch.model(config, activation, depth, width)
    x_tr = jnp.asarray(arch.inputs(config, task.x_train), jnp.float32)
    x_te = jnp.asarray(arch.inputs(config, task.x_test), jnp.float32)
    y_tr, y_te = jnp.asarray(task.y_train, jnp.float32), jnp.asarray(task.y_test, jnp.float32)
    path = (NAME, config.architecture, activation, depth, width, T)
    key = derive(config.seed, *path, "init")
    positions = jax.vmap(lambda k: model.init(k, x_tr))(jax.random.split(jax.random.fold_in(key, 0), config.chains))
    if config.collapsed:  # sample θ_h alone, the readout integrated out (models.collapsed)
        positions = split_readout(positions, readout_name(depth))[0]
        log_p = collapsed_log_posterior(readout_features(model, readout_name(depth), x_tr), y_tr, T,
                                        config.weight_var)
    else:
        log_p = log_posterior(model.apply, x_tr, y_tr, T)
    sampler = SAMPLERS[config.sampler]
    if config.step > 0:
        h, lam = config.step, float("nan")
    else:
        lam = top_curvature(log_p, jax.tree.map(lambda a: a[0], positions), jax.random.fold_in(key, 1))
        h = stable_step(sampler, lam, config.step_scale)
    every, burn, n_steps = _schedule(config, h)
    options = {name: getattr(config, name) for name in sampler.options}  # e.g. BAOAB's friction
    label = f"{activation} L={depth} N={width} T={T:g}"
    result = run_chains(sampler(log_p, h, **options), positions, seed=derive_seed(config.seed, *path, "chains"),
                        n_steps=n_steps, every=every, burn_in=burn,
                        measure=arch.measure(config, model, Data(x_tr, y_tr, x_te, y_te), depth, width, T),
                        checkpoint_dir=out_dir / "checkpoints" / _unit_name(activation, depth, width, T),
                        checkpoint_every=config.checkpoint_every, description=label)
    return Measured((activation, depth, width, T), result._replace(final=None),  # the chains' states: not needed
                    dict(step=h, top_curvature=lam, every=every, burn_in=burn, n_steps=n_steps))


def run(config: Config, task, out_dir: Path) -> list[Measured]:
    units = points(config)
    raw = []
    for unit, (activation, depth, width, T) in enumerate(units):
        print(f"[{NAME}] point {unit + 1}/{len(units)}: {activation} L={depth} N={width} T={T:g}", flush=True)
        raw.append(_run_unit(config, task, activation, depth, width, T, out_dir))
    return raw
