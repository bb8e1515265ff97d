"""Kernel-renormalization theory speed: one solve + prediction, and a (width, temperature) grid from one
eigendecomposition against solving every point densely, same run.

    python -m deeptheory.benchmarks.renormalization              # P = 1000, d = 784, erf, depths 1 and 3, 64 × 64 grid
    python -m deeptheory.benchmarks.renormalization --p 300 --grid 16 --dense-points 4     # quick

The dense baseline is what one writes without the eigenbasis: for each (N, T), Newton on 𝒮(Q) with a
Cholesky of (Π Q_l) K + T I at every evaluation, then the Cholesky prediction — exactly the saddle point the
grid finds (agreement printed). Its per-point time is measured on `--dense-points` points of the grid and
compared with the grid's total time (eigendecomposition included) divided by the number of grid points.
Data: Gaussian inputs, labels sign(x_1) (the timing does not depend on the data). Float64 throughout.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from deeptheory.theory import renormalization as R
from deeptheory.theory._solvers import cholesky_terms, newton_minimize
from deeptheory.theory.nngp import nngp_diag, nngp_kernel


def _time(fn, repeats: int) -> tuple[float, object]:
    out = jax.block_until_ready(fn())  # compile and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return float(np.median(times)), out


@jax.jit
def dense_point(K, K0, k0, y, y0, widths, T):
    """Vanilla theory at one (N, T) without the eigenbasis: Newton on the Cholesky action, Cholesky prediction."""

    def action(q):
        return jnp.sum(widths * (jnp.exp(q) - q)) + cholesky_terms(jnp.exp(jnp.sum(q)) * K, y, T)

    sol = newton_minimize(action, jnp.zeros_like(widths), scale=widths, tol=1e-10, max_iter=100)
    c = jnp.exp(jnp.sum(sol.x))
    L = jnp.linalg.cholesky(c * K + T * jnp.eye(K.shape[0], dtype=K.dtype))
    mean = c * K0 @ jax.scipy.linalg.cho_solve((L, True), y)
    V = jax.scipy.linalg.solve_triangular(L, c * K0.T, lower=True)
    var = c * k0 - jnp.sum(V * V, axis=0)
    return jnp.exp(sol.x[0]), jnp.mean((y0 - mean) ** 2) + jnp.mean(var), sol.converged


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--p", type=int, default=1000)
    parser.add_argument("--p-test", type=int, default=1000)
    parser.add_argument("--d", type=int, default=784)
    parser.add_argument("--depths", default="1,3")
    parser.add_argument("--grid", type=int, default=64, help="grid side: grid × grid (width, temperature) points")
    parser.add_argument("--dense-points", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    rng = np.random.default_rng(0)
    x, x0 = rng.standard_normal((args.p, args.d)), rng.standard_normal((args.p_test, args.d))
    y, y0 = np.sign(x[:, 0]), np.sign(x0[:, 0])
    data = (x, y, x0, y0)
    widths = np.geomspace(args.p / 8, args.p * 8, args.grid)
    temps = np.geomspace(1e-4, 1.0, args.grid)
    dev = jax.devices()[0]
    print(f"device: {dev.device_kind} ({jax.default_backend()}); P = {args.p}, P_test = {args.p_test}, "
          f"d = {args.d}, erf, float64; grid {args.grid} × {args.grid}")
    for depth in [int(v) for v in args.depths.split(",")]:
        kw = dict(activation="erf", depth=depth)
        for variant in ("vanilla", "nested"):
            t, r = _time(lambda variant=variant, kw=kw: R.fc_theory(*data, **kw, width=args.p, temperature=0.01,
                                                            variant=variant), 1)
            print(f"L = {depth} one solve + prediction ({variant:7s}, kernels included): {t:8.3f} s   "
                  f"Q = {np.round(np.asarray(r.order_params), 5).tolist()}   ε_g = {float(r.test_loss):.5f}")
        t_grid, grid = _time(lambda kw=kw: R.fc_theory_grid(*data, **kw, width=widths, temperature=temps), args.repeats)
        n_points = args.grid**2
        args_k = dict(activation="erf", depth=depth)
        K = nngp_kernel(jnp.asarray(x), **args_k)
        K0, k0 = nngp_kernel(jnp.asarray(x0), jnp.asarray(x), **args_k), nngp_diag(jnp.asarray(x0), **args_k)
        t_kernel, _ = _time(lambda args_k=args_k: nngp_kernel(jnp.asarray(x), **args_k), 1)
        picks = rng.choice(n_points, size=args.dense_points, replace=False)
        times, worst = [], 0.0
        for flat in picks:
            i, j = divmod(int(flat), args.grid)
            point = (K, K0, k0, jnp.asarray(y), jnp.asarray(y0), jnp.full((depth,), widths[i]), temps[j])
            t, (Q, loss, ok) = _time(lambda point=point: dense_point(*point), 1)
            times.append(t)
            worst = max(worst, abs(float(Q) / float(grid.order_params[i, j]) - 1),
                        abs(float(loss) / float(grid.test_loss[i, j]) - 1))
        t_dense = float(np.median(times))
        per_point = t_grid / n_points
        print(f"L = {depth} grid ({n_points} points, eigendecomposition included): {t_grid:8.3f} s = "
              f"{per_point * 1e3:8.3f} ms/point   converged {int(jnp.sum(grid.converged))}/{n_points}")
        print(f"L = {depth} dense solve per point (median of {len(picks)}): {t_dense * 1e3:8.1f} ms/point   "
              f"ratio ×{t_dense / per_point:.0f}   max rel. difference grid vs dense {worst:.1e}   "
              f"(kernel build, common to both: {t_kernel:.3f} s)")


if __name__ == "__main__":
    main()
