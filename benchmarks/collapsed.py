"""Effective samples per second of the test loss: the collapsed (readout-marginalised) sampler against full-weight BAOAB.

    python -m deeptheory.benchmarks.collapsed                      # P = 512, d = 784, N = 256, L = 2, T = 0.01 and 0.001
    python -m deeptheory.benchmarks.collapsed --budget 30 --p 128  # quick

Both sides sample the same posterior of an erf MLP on Fashion-MNIST (T-shirt vs trouser; the experiment's data, the
MNIST-1D fallback when it is absent) with BAOAB (friction 1, float32, C chains vmapped), the step chosen by the
experiment's rule h = 0.5/√λ_max(−∇² log π) at the first chain's start (`train.inference.stepsize`):
- full: over all weights (`models.posterior.log_posterior`); a draw's test loss is mean_x₀ (f(x₀) − y₀)²;
- collapsed: over the hidden weights with the readout integrated out (`models.collapsed`); a draw's test loss is
  the Rao-Blackwellised E[(f − y₀)² | θ_h] = (m − y₀)² + s².
Each side gets the same wall-clock budget for burn-in (discarded) and the same for sampling, from the same prior
draws; the test loss is measured every `--every` steps. Printed per T: steps/s, step h, measurements, the
multi-chain ESS (`train.inference.diagnostics`; between-chain spread counts against it, so chains that have not
mixed are not rewarded), ESS/s, the estimate ± its error bar (the two agree once both samplers have mixed),
split-R̂; then the ratios of ESS/s,
of natural time (steps·h) covered per second, and of the estimate's precision 1/error² per second (ESS counts draws,
so the smaller spread of the Rao-Blackwellised draws shows only in the last).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from deeptheory.models.collapsed import collapsed_log_posterior, readout_features, readout_posterior, split_readout
from deeptheory.models.mlp import MLP
from deeptheory.models.posterior import log_posterior
from deeptheory.train.experiments import bayes_networks
from deeptheory.train.inference import diagnostics
from deeptheory.train.inference.samplers import baoab
from deeptheory.train.inference.stepsize import stable_step, top_curvature


def _sample(sampler, measure, positions, *, every: int, burn_budget: float, budget: float, seed: int):
    """(trace (C, S) of the measurement after burn-in, steps/s of the sampling phase, steps taken while sampling)."""

    @jax.jit
    def block(states, first):
        def one_chain(state, c):
            key = jax.random.fold_in(jax.random.key(seed), c)

            def body(s, t):
                return sampler.step(jax.random.fold_in(key, t), s)[0], None

            state, _ = jax.lax.scan(body, state, first + jnp.arange(every, dtype=jnp.uint32))
            return state

        states = jax.vmap(one_chain)(states, jnp.arange(len(jax.tree.leaves(states.position)[0]), dtype=jnp.uint32))
        return states, jax.vmap(measure)(states.position)

    states = jax.jit(jax.vmap(sampler.init))(positions)
    jax.block_until_ready(block(states, jnp.uint32(0)))  # compile outside the budget
    step, trace = 0, []
    for phase_budget, keep in ((burn_budget, False), (budget, True)):
        start = time.perf_counter()
        phase_steps = 0
        while time.perf_counter() - start < phase_budget:
            states, value = block(states, jnp.uint32(step))
            value = np.asarray(value)  # waits for the block
            step += every
            phase_steps += every
            if keep:
                trace.append(value)
        elapsed = time.perf_counter() - start
    return np.stack(trace, axis=1).astype(np.float64), phase_steps / elapsed, phase_steps


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--p", type=int, default=512, help="training points")
    parser.add_argument("--p-test", type=int, default=256)
    parser.add_argument("--n", type=int, default=256, help="hidden width")
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--temperatures", default="0.01,0.001")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--every", type=int, default=10, help="steps between measurements")
    parser.add_argument("--burn-in", type=float, default=60.0, help="seconds of burn-in per sampler")
    parser.add_argument("--budget", type=float, default=120.0, help="seconds of sampling per sampler")
    args = parser.parse_args(argv)
    config = dataclasses.replace(bayes_networks.Config(), n_train=args.p, n_test=args.p_test)
    task = bayes_networks.load_data(config)
    x, x0 = (jnp.asarray(a, jnp.float32) for a in (task.x_train, task.x_test))
    y, y0 = (jnp.asarray(a, jnp.float32) for a in (task.y_train, task.y_test))
    L, N, C = args.depth, args.n, args.chains
    model = MLP(widths=(N,) * L, activation="erf")
    readout = f"W{L}"
    params0 = jax.vmap(lambda k: model.init(k, x))(jax.random.split(jax.random.key(0), C))
    features, features0 = readout_features(model, readout, x), readout_features(model, readout, x0)
    print(f"{jax.devices()[0].device_kind}; data {task.info['dataset']}: P = {len(y)}, P_test = {len(y0)}, "
          f"d = {x.shape[1]}; erf MLP L = {L}, N = {N}; {C} chains of BAOAB (friction 1), float32; budget "
          f"{args.burn_in:g} s burn-in + {args.budget:g} s sampling per sampler")

    for T in (float(t) for t in args.temperatures.split(",")):
        def measure_full(params):
            return jnp.mean((model.apply(params, x0)[:, 0] - y0) ** 2)

        def measure_collapsed(hidden, T=T):
            post = readout_posterior(features(hidden), y, features0(hidden), T, 1.0)
            return jnp.mean((post.mean - y0) ** 2 + post.var)

        sides = {
            "full": (log_posterior(model.apply, x, y, T), measure_full, params0),
            "collapsed": (collapsed_log_posterior(features, y, T, 1.0), measure_collapsed,
                          split_readout(params0, readout)[0]),
        }
        rates, precision, time_rate = {}, {}, {}
        print(f"\nT = {T:g}")
        print(f"  {'sampler':10s} {'step h':>9s} {'steps/s':>8s} {'draws':>6s} {'ESS':>7s} {'ESS/s':>8s} "
              f"{'test loss':>18s} {'R-hat':>6s}")
        for name, (log_p, measure, positions) in sides.items():
            first = jax.tree.map(lambda a: a[0], positions)
            h = stable_step("baoab", top_curvature(log_p, first, jax.random.key(1)), 0.5)
            trace, speed, steps = _sample(baoab(log_p, h), measure, positions, every=args.every,
                                          burn_budget=args.burn_in, budget=args.budget, seed=2)
            mean, err, n_eff = diagnostics.mean_and_error(trace)
            rates[name] = n_eff / (steps / speed)
            precision[name] = 1 / (err**2 * steps / speed)  # inverse variance of the estimate per second
            time_rate[name] = h * speed  # natural time (steps·h) per second
            print(f"  {name:10s} {h:9.2e} {speed:8.1f} {trace.size:6d} {n_eff:7.1f} {rates[name]:8.3f} "
                  f"{mean:9.4f} ± {err:.4f} {diagnostics.rhat(trace):6.3f}", flush=True)
        print(f"  ESS/s collapsed / full: {rates['collapsed'] / rates['full']:.1f}x; natural time per second "
              f"{time_rate['collapsed'] / time_rate['full']:.1f}x; precision of the estimate (1/error²) per second "
              f"{precision['collapsed'] / precision['full']:.1f}x (Rao-Blackwellisation shows here, not in ESS)")


if __name__ == "__main__":
    main()
