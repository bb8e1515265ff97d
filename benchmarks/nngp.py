"""NNGP kernel speed: `theory.nngp.nngp_kernel` against a straightforward jitted recursion, same run.

    python -m deeptheory.benchmarks.nngp                       # P = 4096, d = 784, depth 10, ReLU and erf, float32
    python -m deeptheory.benchmarks.nngp --p 50000 --d 64 --depth 3 --activations relu --no-baseline   # large P

The baseline is what one writes first: the whole P×P matrix per layer, its diagonal read back from
the matrix, the closed forms on jnp's arcsin/arccos, all inside one jax.jit. Ours propagates the
diagonal in O(P) so the depth chain fuses into one elementwise pass per block, computes only blocks on
or above the diagonal, and evaluates arcsin/arccos in float32 by a polynomial. The floor is the input
Gram matrix x xᵀ alone. Prints the median of `--repeats` timed calls after a warm-up call
(compilation excluded), the agreement of the two kernels, and peak memory.
"""

from __future__ import annotations

import argparse
import resource

import jax
import jax.numpy as jnp

from deeptheory.benchmarks.timing import median_time
from deeptheory.theory.activations import get_activation
from deeptheory.theory.nngp import nngp_kernel


def _relu_pair(a, c, b):
    """Cho & Saul (2009) with jnp's arccos, as a peer writes it (ours uses a float32 polynomial arccos)."""
    norm = jnp.sqrt(a * b)
    rho = jnp.clip(c / norm, -1.0, 1.0)
    return norm * (jnp.sqrt(1.0 - rho * rho) + (jnp.pi - jnp.arccos(rho)) * rho) / (2.0 * jnp.pi)


def _erf_pair(a, c, b):
    """Williams (1997) with jnp's arcsin."""
    return (2.0 / jnp.pi) * jnp.arcsin(jnp.clip(2.0 * c / jnp.sqrt((1.0 + 2.0 * a) * (1.0 + 2.0 * b)), -1.0, 1.0))


BASELINE_PAIRS = {"relu": _relu_pair, "erf": _erf_pair}


def baseline_kernel(x, *, activation: str, depth: int, weight_var: float = 1.0, bias_var: float = 0.0):
    """The straightforward recursion (Lee et al. 2018, eq. 4), full matrix at every layer, with the closed forms
    written on jnp's own arcsin/arccos (other activations: ours)."""
    pair = BASELINE_PAIRS.get(activation) or get_activation(activation).pair
    K = weight_var * (x @ x.T) / x.shape[1] + bias_var
    for _ in range(depth):
        q = jnp.diagonal(K)
        K = weight_var * pair(q[:, None], K, q[None, :]) + bias_var
    return K


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--p", type=int, default=4096)
    parser.add_argument("--d", type=int, default=784)
    parser.add_argument("--depth", type=int, default=10)
    parser.add_argument("--activations", default="relu,erf")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--block-sizes", default="", help="comma-separated block sizes to compare (default: ours)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-baseline", action="store_true", help="skip the baseline (for P too large for it)")
    args = parser.parse_args(argv)
    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    dtype = jnp.dtype(args.dtype)
    x = jax.random.normal(jax.random.key(0), (args.p, args.d), dtype)
    dev = jax.devices()[0]
    print(f"device: {jax.device_count()} × {dev.device_kind} ({jax.default_backend()}); "
          f"P = {args.p}, d = {args.d}, depth = {args.depth}, {args.dtype}")
    gram = jax.jit(lambda x: x @ x.T)
    t_gram = median_time(lambda: gram(x), args.repeats)
    print(f"input Gram x xᵀ alone (floor): {t_gram * 1e3:9.1f} ms")
    blocks = [int(b) for b in args.block_sizes.split(",") if b] or [None]
    for activation in args.activations.split(","):
        kw = dict(activation=activation, depth=args.depth, weight_var=2.0 if activation == "relu" else 1.0)
        results = {}
        for block in blocks:
            results[block] = median_time(lambda block=block, kw=kw: nngp_kernel(x, block_size=block, **kw), args.repeats)
            label = f"ours (block {block or 'default'})"
            print(f"{activation:5s} {label:26s}: {results[block] * 1e3:9.1f} ms")
        best = min(results.values())
        if not args.no_baseline:
            base = jax.jit(lambda x, kw=kw: baseline_kernel(x, **kw))
            t_base = median_time(lambda base=base: base(x), args.repeats)
            K_base = base(x)
            diff = float(jnp.max(jnp.abs(nngp_kernel(x, **kw) - K_base)) / jnp.max(jnp.abs(K_base)))
            print(f"{activation:5s} {'baseline (full recursion)':26s}: {t_base * 1e3:9.1f} ms   "
                  f"speed-up ×{t_base / best:.2f}   max rel. difference {diff:.1e}")
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    out_gb = args.p**2 * dtype.itemsize / 2**30
    print(f"peak host memory {peak_gb:.2f} GiB (output {out_gb:.2f} GiB)")


if __name__ == "__main__":
    main()
