"""The scaling sweep: every configuration trained in one vmapped, sharded call against one jitted run per configuration.

    python -m deeptheory.benchmarks.rf_sweep                    # 2 spectra × 3 seeds × 5 N × 4 lr = 120 GD runs, T = 200
    python -m deeptheory.benchmarks.rf_sweep --optimizer natural --steps 400

Both sides run `train.experiments.rf_scaling.measure.train_fn` (float32, N padded to max N and masked) on the same
configurations of the quick preset's reduced grid. Baseline: a Python loop over the configurations, each a call of
the training function jitted once for one configuration. Ours: `train.harness.sweep.sweep` — one jit(vmap) over all
configurations, sharded over the devices. Printed: wall time of each, runs/s and the ratio. Then the time per
`theory.random_features.rf_risk` evaluation over a 10⁴-point (N, ridge) grid, vmapped and jitted, against a
Python loop of jitted single evaluations.
"""

from __future__ import annotations

import argparse
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from deeptheory.benchmarks.timing import median_time
from deeptheory.theory.random_features import power_law_spectrum, power_law_target, rf_risk
from deeptheory.train.experiments import rf_scaling
from deeptheory.train.experiments.rf_scaling.measure import Problem, sweep_params, train_fn
from deeptheory.train.harness.sweep import sweep


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--optimizer", default="gd", choices=rf_scaling.OPTIMIZERS)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    config = dataclasses.replace(rf_scaling.PRESETS["quick"], s_values=(1.0, 1.5), seeds=3, steps=args.steps)
    W, M, n_max = config.widths, config.lr_multipliers, config.widths[-1]
    problems = {(si, r): Problem(config, si, r) for si in range(2) for r in range(config.seeds)}
    params = sweep_params(args.optimizer, config, problems)
    items = params["lr"].shape[0]
    train = train_fn(args.optimizer, config)
    one = jax.jit(train)
    key = jax.random.key(0)
    # one configuration = one (s, seed, N, learning rate)
    singles = [jax.tree.map(lambda leaf, i=i: jnp.asarray(leaf[i]), params) | {"lr": jnp.asarray(params["lr"][i, m:m + 1])}
               for i in range(items) for m in range(len(M))]

    def loop():
        return [one(key, p) for p in singles]

    t_loop = median_time(loop, args.repeats)
    t_sweep = median_time(lambda: sweep(train, params, seed=0), args.repeats)
    swept = sweep(train, params, seed=0).reshape(-1, n_max)
    same = np.allclose(np.concatenate([np.asarray(a) for a in loop()]), swept, rtol=1e-4, atol=1e-6)
    C = len(singles)
    device = jax.devices()[0]
    print(f"device: {device.platform} {device.device_kind} × {jax.device_count()}, jax {jax.__version__}")
    print(f"{C} {args.optimizer} runs (2 s × {config.seeds} seeds × {len(W)} N ≤ {n_max} × {len(M)} lr), "
          f"T = {config.steps}, float32; results equal: {same}")
    print(f"  loop of jitted single runs   {t_loop * 1e3:9.1f} ms  {C / t_loop:9.1f} runs/s")
    print(f"  vmapped + sharded sweep      {t_sweep * 1e3:9.1f} ms  {C / t_sweep:9.1f} runs/s  "
          f"×{t_loop / t_sweep:.1f} vs loop")

    lam, v2 = power_law_spectrum(config.dim, 1.0), power_law_target(config.dim, 2.0)
    n_grid, ridge_grid = np.meshgrid(np.geomspace(8, 2048, 100), np.geomspace(1e-8, 1e-1, 100))
    n_flat, r_flat = jnp.asarray(n_grid.ravel()), jnp.asarray(ridge_grid.ravel())
    risk = jax.jit(jax.vmap(lambda n, r: rf_risk(lam, v2, n_features=n, n_samples=4096.0, ridge=r)))
    single = jax.jit(lambda n, r: rf_risk(lam, v2, n_features=n, n_samples=4096.0, ridge=r))
    t_grid = median_time(lambda: risk(n_flat, r_flat), args.repeats)
    t_single = median_time(lambda: [single(n_flat[i], r_flat[i]) for i in range(200)], args.repeats) / 200
    print(f"rf_risk over a 10⁴-point (N, ridge) grid, D = {config.dim}, float64: {t_grid * 1e3:.1f} ms "
          f"({t_grid / n_flat.shape[0] * 1e6:.1f} µs per point); jitted single calls {t_single * 1e6:.1f} µs per point "
          f"(×{t_single * n_flat.shape[0] / t_grid:.1f})")


if __name__ == "__main__":
    main()
