"""Posterior sampling throughput: C chains of a Bayesian MLP stepped together (vmap) against one at a time.

    python -m deeptheory.benchmarks.langevin                        # default: 16 chains, P = 1024, d = 784, N = 512, L = 2
    python -m deeptheory.benchmarks.langevin --p 256 --n 128        # quick

Both sides run the same BAOAB step (`train.inference.samplers.baoab`, one gradient per step) on the same posterior
(`models.posterior`, float32). Baseline: a Python loop over the chains, each advanced by a jitted single-chain
step. Ours: one jitted call that advances all chains (`vmap`), and the same inside `lax.scan` over a block of
steps (what `train.inference.chains` runs). Printed: steps/s of the whole ensemble, the ratio, and the achieved FLOP/s as
a fraction of this machine's dense float32 matmul FLOP/s measured in the same run (the physical limit). FLOPs per
chain-step are counted from the matmuls: forward 2P(dN + N² + N), backward 2P(dN + 2N² + 2N) (no gradient
with respect to the inputs).
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from deeptheory.benchmarks.timing import median_time
from deeptheory.models.mlp import MLP
from deeptheory.models.posterior import log_posterior
from deeptheory.train.inference.samplers import baoab


def matmul_flops(size: int = 4096, repeats: int = 3) -> float:
    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    mm = jax.jit(lambda a: a @ a)
    return 2 * size**3 / median_time(lambda: mm(a), repeats)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chains", type=int, default=16)
    parser.add_argument("--p", type=int, default=1024)
    parser.add_argument("--d", type=int, default=784)
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--block", type=int, default=10, help="steps per scanned call")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    C, P, d, N, L = args.chains, args.p, args.d, args.n, args.depth

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(P, d)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 2, size=P), jnp.float32)
    model = MLP(widths=(N,) * L, activation="erf")
    sampler = baoab(log_posterior(model.apply, x, y, 0.01), step_size=1e-3)
    states = jax.vmap(sampler.init)(jax.vmap(lambda k: model.init(k, x))(jax.random.split(jax.random.key(0), C)))
    keys = jax.random.split(jax.random.key(1), C)

    one = jax.jit(sampler.step)
    chains = [jax.tree.map(lambda a, c=c: a[c], states) for c in range(C)]

    def loop():
        return [one(keys[c], chains[c])[0] for c in range(C)]

    vmapped = jax.jit(jax.vmap(sampler.step))

    @jax.jit
    def scanned(states, keys):
        def body(s, t):
            return jax.vmap(lambda k, st: sampler.step(jax.random.fold_in(k, t), st)[0])(keys, s), None
        return jax.lax.scan(body, states, jnp.arange(args.block))[0]

    t_loop = median_time(loop, args.repeats)
    t_vmap = median_time(lambda: vmapped(keys, states)[0], args.repeats)
    t_scan = median_time(lambda: scanned(states, keys), args.repeats) / args.block
    widths = [d] + [N] * L
    forward = 2 * P * (sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=True)) + N)
    backward = 2 * P * (d * N + 2 * sum(N * N for _ in range(L - 1)) + 2 * N)
    flops_step = C * (forward + backward)
    peak = matmul_flops()

    device = jax.devices()[0]
    print(f"device: {device.platform} {device.device_kind} × {jax.device_count()}, jax {jax.__version__}")
    print(f"{C} chains, MLP P = {P}, d = {d}, N = {N}, L = {L}, erf, float32, BAOAB; "
          f"{flops_step / 1e9:.2f} GFLOP per ensemble step")
    print(f"dense matmul (4096², float32): {peak / 1e9:.1f} GFLOP/s")
    for name, t in (("loop over chains (jitted step)", t_loop), ("vmap, one step per call", t_vmap),
                    (f"vmap + scan, {args.block} steps per call", t_scan)):
        print(f"  {name:<36} {1 / t:8.2f} steps/s  {flops_step / t / 1e9:8.1f} GFLOP/s  "
              f"{100 * flops_step / t / peak:5.1f} % of matmul  ×{t_loop / t:.2f} vs loop")


if __name__ == "__main__":
    main()
