"""Kernel-renormalization theory speed: one solve + prediction, and a (width, temperature) grid from one
eigendecomposition against solving every point densely, same run; then the nested (erf) and non-central (ReLU)
variants: first call (compilation included), warm calls at other widths and temperatures (and the programs they
compiled: none), the order-parameter solve against the previous algorithm (Newton with jax.hessian through the
Cholesky, jitted once) and against the authors' algorithm (SciPy fsolve on ∇𝒮 = 0 with a finite-difference Jacobian,
∇𝒮 by reverse-mode autodiff as in their PyTorch code; here JAX, jitted), and a nested / non-central grid per point
against single calls.

    python -m deeptheory.benchmarks.renormalization              # P = 1000, d = 784, erf, depths 1 and 3, 64 × 64 grid
    python -m deeptheory.benchmarks.renormalization --p 300 --grid 16 --dense-points 4     # quick
    python -m deeptheory.benchmarks.renormalization --only-variants --variant-grid 4       # the variants only
    python -m deeptheory.benchmarks.renormalization --cnn                                  # the CNN theory only

The CNN section (`--cnn`): `conv_theory` on 28 × 28 Gaussian images in 7 × 7 patches (n = 16, one layer, erf,
labels from the first patch) — first call, warm calls at other (N_c, T), the order-parameter solve against fsolve on
∇𝒮 over the n(n+1)/2 entries of Q (finite-difference Jacobian, JAX gradient: the algorithm the fully connected
authors' code uses, applied to the CNN action), and a (N_c, T) grid per point against single calls.

The dense baseline is what one writes without the eigenbasis: for each (N, T), Newton on 𝒮(Q) with a
Cholesky of (Π Q_l) K + T I at every evaluation, then the Cholesky prediction — exactly the saddle point the
grid finds (agreement printed). Its per-point time is measured on `--dense-points` points of the grid and
compared with the grid's total time (eigendecomposition included) divided by the number of grid points.
Data: Gaussian inputs, labels sign(x_1) (the timing does not depend on the data). Float64 throughout.
"""

from __future__ import annotations

import argparse
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from deeptheory.benchmarks.timing import median_time
from deeptheory.theory import conv_renormalization as CR
from deeptheory.theory import renormalization as R
from deeptheory.theory._solvers import cholesky_terms, newton_minimize, newton_root
from deeptheory.theory.activations import get_activation, mean_activation
from deeptheory.theory.conv_kernels import conv_patch_kernels
from deeptheory.theory.nngp import covariance_chain, nngp_diag, nngp_kernel

_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


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
    parser.add_argument("--variant-grid", type=int, default=4, help="side of the nested / non-central grid")
    parser.add_argument("--only-variants", action="store_true", help="skip the vanilla grid section")
    parser.add_argument("--skip-baselines", action="store_true", help="variants: skip the two baseline solvers")
    parser.add_argument("--cnn", action="store_true", help="the CNN theory section only (P, P_test from --p, --p-test)")
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    rng = np.random.default_rng(0)
    if args.cnn:
        return _cnn_section(args, rng)
    x, x0 = rng.standard_normal((args.p, args.d)), rng.standard_normal((args.p_test, args.d))
    y, y0 = np.sign(x[:, 0]), np.sign(x0[:, 0])
    data = (x, y, x0, y0)
    widths = np.geomspace(args.p / 8, args.p * 8, args.grid)
    temps = np.geomspace(1e-4, 1.0, args.grid)
    dev = jax.devices()[0]
    print(f"device: {dev.device_kind} ({jax.default_backend()}); P = {args.p}, P_test = {args.p_test}, "
          f"d = {args.d}, erf, float64; grid {args.grid} × {args.grid}")
    if not args.only_variants:
        _vanilla_section(args, data, widths, temps, rng)
    for depth in [int(v) for v in args.depths.split(",")]:
        for activation, variant in (("erf", "nested"), ("relu", "noncentral")):
            _variant_section(args, data, depth, activation, variant)


def _vanilla_section(args, data, widths, temps, rng):
    x, y, x0, y0 = data
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


def _cnn_section(args, rng, side=28, patch=7, channels=500.0, T=0.01):
    x, x0 = rng.standard_normal((args.p, side, side)), rng.standard_normal((args.p_test, side, side))
    y, y0 = (np.sign(a[:, :patch, :patch].sum((1, 2))) for a in (x, x0))
    data, kw = (x, y, x0, y0), dict(activation="erf", patches=patch)
    n = (side // patch) ** 2
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}); CNN theory, P = {args.p}, "
          f"P_test = {args.p_test}, {side} × {side} images, {patch} × {patch} patches (n = {n}), erf, float64")

    def single(Nc, T_):
        return CR.conv_theory(*data, **kw, channels=Nc, temperature=T_)

    first, t_first, n_first, _, t_warm, n_warm = _first_and_warm(single, (channels, T),
                                                                 ((channels / 2, 2 * T), (2 * channels, T / 2)))
    print(f"CNN first call {t_first:7.2f} s (compiling {n_first} programs); warm calls at other (N_c, T) "
          f"{t_warm:7.2f} s, {n_warm} programs compiled; {int(first.iterations)} BFGS iterations")
    K = conv_patch_kernels(jnp.asarray(x), activation="erf", patches=(patch,), weight_var=jnp.ones(1))[0]
    yj = jnp.asarray(y)
    rows, cols = np.triu_indices(n)

    def unpack(v):
        Q = jnp.zeros((n, n), v.dtype).at[rows, cols].set(v)
        return Q + jnp.triu(Q, 1).T

    @jax.jit
    def gradient(v):
        # ∇𝒮 as the solver computes it (autodiff of conv_action contracts the patch kernels 20x slower on XLA CPU:
        # see conv_action_grad), so that the comparison is between the two algorithms, not two layouts of one gradient
        return jax.vjp(unpack, v)[1](CR.conv_action_grad(unpack(v), K, yj, T, channels, 1.0))[0]

    eye = np.eye(n)[rows, cols]
    ours = median_time(lambda: CR.solve_conv(K, yj, T, channels, 1.0, depth=1, tol=R.DEFAULT_TOL, max_iter=500), 1)
    t_fs = median_time(lambda: _fsolve(gradient, eye), 1)
    fs = np.asarray(unpack(jnp.asarray(_fsolve(gradient, eye)[0])))
    worst = float(np.max(np.abs(fs - np.asarray(first.order_params))) / np.max(np.abs(fs)))
    print(f"CNN order-parameter solve, warm: ours (BFGS) {ours:7.3f} s; fsolve on ∇𝒮 from Q = I {t_fs:7.3f} s "
          f"(×{t_fs / ours:.1f}); max difference of Q relative to its largest entry {worst:.1e}")
    _grid_against_single("CNN", args.variant_grid, np.geomspace(channels / 8, channels * 8, args.variant_grid),
                         np.geomspace(1e-3, 0.1, args.variant_grid),
                         lambda Ncs, Ts: CR.conv_theory_grid(*data, **kw, channels=Ncs, temperature=Ts), single)


def _first_and_warm(call, first, others):
    """call(*first) as the process's first call, compiling, then call(*a) for each a in others: the first call's
    result, its time, the programs it compiled and their compile seconds, the warm calls' median time and the
    programs they compiled (from JAX's backend-compile events)."""
    compiles = []

    def listen(event, duration, **_):
        if event == _COMPILE_EVENT:
            compiles.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        start = time.perf_counter()
        result = jax.block_until_ready(call(*first))
        t_first, n_first, s_first = time.perf_counter() - start, len(compiles), sum(compiles)
        compiles.clear()
        warm = []
        for args in others:
            start = time.perf_counter()
            jax.block_until_ready(call(*args))
            warm.append(time.perf_counter() - start)
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    return result, t_first, n_first, s_first, float(np.median(warm)) if warm else float("nan"), len(compiles)


def _grid_against_single(label, side, first_axis, temperatures, grid_call, single_call):
    """A side × side grid's time per point against one single call at one of its points. The grid runs once (a
    nested 16 × 16 grid at L = 3 takes minutes): the seconds XLA spends compiling it, from JAX's compile events,
    are subtracted (tracing, a fraction of a second, is not)."""
    grid, t_total, n_compiled, s_compiled, _, _ = _first_and_warm(grid_call, (first_axis, temperatures), ())
    t_grid = t_total - s_compiled
    t_single = median_time(lambda: single_call(first_axis[1], temperatures[1]), 1)
    print(f"{label} grid {side} × {side}: {t_grid:7.2f} s = {t_grid / side**2:6.3f} s/point (converged "
          f"{int(np.sum(grid.converged))}/{side**2}; compiling {n_compiled} programs took {s_compiled:.1f} s more); "
          f"a single call {t_single:6.2f} s: ×{t_single * side**2 / t_grid:.1f}")

def _dense_nested_action(C, c, y, widths, T, layer_var, act):
    def action(q):
        K_R = covariance_chain(C, c, c, activation=act, layer_weight_var=jnp.exp(q) * layer_var)[0]
        return jnp.sum(widths * (jnp.exp(q) - q)) + cholesky_terms(K_R, y, T)
    return action


@functools.partial(jax.jit, static_argnames=("act",))
def before_nested(q0, C, c, y, widths, T, layer_var, act):
    """The previous nested solver: saddle-free Newton with jax.grad / jax.hessian through the Cholesky (jitted once)."""
    return newton_minimize(_dense_nested_action(C, c, y, widths, T, layer_var, act), q0, scale=widths, tol=1e-10)


@functools.partial(jax.jit, static_argnames=("act",))
def nested_gradient(q, C, c, y, widths, T, layer_var, act):
    return jax.grad(_dense_nested_action(C, c, y, widths, T, layer_var, act))(q)


def _noncentral_dense_action(Theta, mu_outer, y, widths, T, readout_var):
    depth = widths.shape[0]

    def action(z):
        Qbar, Q = jnp.exp(z[:depth]), jnp.expm1(z[depth:])
        later = jnp.concatenate([jnp.cumprod(Qbar[::-1])[::-1][1:], jnp.ones((1,), Qbar.dtype)])
        K_R = jnp.prod(Qbar) * Theta - jnp.sum((Qbar - 1.0 / (1.0 + Q)) * later) * readout_var * mu_outer
        return jnp.sum(widths * (-Qbar * Q + jnp.log1p(Q))) + cholesky_terms(K_R, y, T)
    return action


@jax.jit
def before_noncentral(z0, Theta, mu_outer, y, widths, T, readout_var):
    """The previous non-central solver: Newton on jax.grad of the dense (Cholesky) action, Jacobian by jax.jacfwd."""
    grad = jax.grad(_noncentral_dense_action(Theta, mu_outer, y, widths, T, readout_var))
    return newton_root(grad, z0, scale=jnp.concatenate([widths, widths]), tol=1e-10)


@jax.jit
def noncentral_gradient(z, Theta, mu_outer, y, widths, T, readout_var):
    return jax.grad(_noncentral_dense_action(Theta, mu_outer, y, widths, T, readout_var))(z)


def _fsolve(gradient, x0):
    """The authors' algorithm: scipy.optimize.fsolve (MINPACK hybrd, finite-difference Jacobian) on ∇𝒮 = 0."""
    from scipy.optimize import fsolve

    return fsolve(lambda v: np.asarray(gradient(jnp.asarray(v))), np.asarray(x0), xtol=1e-12, full_output=True)


def _variant_section(args, data, depth, activation, variant):
    x, y, x0, y0 = data
    P = args.p
    kw = dict(activation=activation, depth=depth, variant=variant)

    def single(N, T):
        return R.fc_theory(*data, **kw, width=N, temperature=T)

    first, t_first, n_first, s_first, t_warm, n_warm = _first_and_warm(single, (P, 0.01),
                                                                      ((P / 2, 0.02), (2 * P, 0.005)))
    op = first.order_params
    Q = np.asarray(op.q_bar if variant == "noncentral" else op)
    print(f"L = {depth} {variant:10s} ({activation}) first call {t_first:7.2f} s (compiling {n_first} programs, "
          f"{s_first:.1f} s); warm calls at other (N, T) {t_warm:7.2f} s, {n_warm} programs compiled   "
          f"Q{'̄' if variant == 'noncentral' else ''} = {np.round(Q, 5).tolist()}")
    if not args.skip_baselines:
        _baselines(args, data, depth, activation, variant, first)
    if args.variant_grid > 0:
        side = args.variant_grid
        _grid_against_single(f"L = {depth} {variant:10s}", side, np.geomspace(P / 4, P * 4, side),
                             np.geomspace(1e-3, 0.1, side),
                             lambda Ns, Ts: R.fc_theory_grid(*data, **kw, width=Ns, temperature=Ts), single)


def _baselines(args, data, depth, activation, variant, first):
    x, y, _, _ = data
    P, T = args.p, 0.01
    widths = jnp.full((depth,), float(P))
    sw2 = jnp.ones(depth + 1)
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    C, c = nngp_kernel(xj, activation="linear", depth=0), nngp_diag(xj, activation="linear", depth=0)
    K = nngp_kernel(xj, activation=activation, depth=depth)
    sp = R.spectrum(K, yj, K[:1], jnp.diagonal(K)[:1], yj[:1])
    van = R.solve_vanilla(sp, widths, T)
    if variant == "nested":
        act = get_activation(activation)
        q0 = jnp.log(van.order_params)
        args_ = (C, c, yj, widths, jnp.asarray(T), sw2[1:])
        ours = median_time(lambda: R.solve_nested(q0[None], *args_, act=act, tol=1e-10, max_iter=100), 1)
        before = median_time(lambda: before_nested(q0, *args_, act), 1)
        ref = np.exp(np.asarray(before_nested(q0, *args_, act).x))
        t_fs = median_time(lambda: _fsolve(lambda q: nested_gradient(q, *args_, act), q0), 1)
        fs = np.exp(_fsolve(lambda q: nested_gradient(q, *args_, act), q0)[0])
        got = np.exp(np.asarray(R.solve_nested(q0[None], *args_, act=act, tol=1e-10, max_iter=100).x[0]))
    else:
        K_prev = covariance_chain(C, c, c, activation=activation, layer_weight_var=sw2[1:-1])
        mu = mean_activation(activation, K_prev[1])
        eigh = jax.jit(jnp.linalg.eigh)
        mu_tilde = eigh(K)[1].T @ mu
        z0 = jnp.concatenate([jnp.log(van.order_params), -jnp.log(van.order_params)])
        args_ = (K, jnp.outer(mu, mu), yj, widths, jnp.asarray(T), sw2[-1])
        ours_args = (sp.eigenvalues, sp.y_tilde, mu_tilde, widths, jnp.asarray(T), sw2[-1])
        # ours includes the eigendecomposition it needs (fc_theory shares it with the vanilla start)
        ours = median_time(lambda: (eigh(K), R.solve_noncentral(z0, *ours_args, tol=1e-10, max_iter=100)), 1)
        before = median_time(lambda: before_noncentral(z0, *args_), 1)
        ref = np.exp(np.asarray(before_noncentral(z0, *args_).x[:depth]))
        t_fs = median_time(lambda: _fsolve(lambda z: noncentral_gradient(z, *args_), z0), 1)
        fs = np.exp(_fsolve(lambda z: noncentral_gradient(z, *args_), z0)[0][:depth])
        got = np.exp(np.asarray(R.solve_noncentral(z0, *ours_args, tol=1e-10, max_iter=100)[0].x[:depth]))
    worst = max(np.max(np.abs(got / ref - 1)), np.max(np.abs(got / fs - 1)))
    print(f"L = {depth} {variant:10s} order-parameter solve from the vanilla start, warm: ours {ours:7.3f} s; "
          f"before (autodiff Hessian through Cholesky) {before:7.3f} s (×{before / ours:.1f}); authors' algorithm "
          f"(fsolve, JAX gradient) {t_fs:7.3f} s (×{t_fs / ours:.1f}); max rel. difference of Q {worst:.1e}")


if __name__ == "__main__":
    main()
