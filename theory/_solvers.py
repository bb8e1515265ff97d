"""Small jittable solvers for the order-parameter problems of `theory.renormalization`.

Each returns its answer together with the residual and a `converged` flag instead of raising, so it
can run under jit and vmap; the public functions in `theory.renormalization` turn a failure into an
error that names the residual.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax


class Solution(NamedTuple):
    x: jax.Array  # the solution (in the solver's coordinates)
    value: jax.Array  # the objective there (minimisation) or the merit ½|F|² (root finding)
    residual: jax.Array  # max |gradient| (minimisation) or max |F| (root finding), as scaled by the caller
    iterations: jax.Array
    converged: jax.Array


def bisect(h: Callable, lo, hi, iterations: int = 64):
    """Root of h in [lo, hi] given h(lo) < 0 <= h(hi) (h may be +inf on part of the bracket).

    Each step halves the bracket; 64 steps shrink a bracket of width 1 below float64 resolution.
    Returns the midpoint of the last bracket.
    """

    def step(_, bracket):
        a, b = bracket
        m = 0.5 * (a + b)
        negative = h(m) < 0
        return jnp.where(negative, m, a), jnp.where(negative, b, m)

    a, b = lax.fori_loop(0, iterations, step, (lo, hi))
    return 0.5 * (a + b)


def newton_minimize(f: Callable, x0, *, scale, tol: float, max_iter: int = 100) -> Solution:
    """Minimise a smooth f: Rⁿ → R (n small) by saddle-free Newton with Armijo backtracking.

    The step solves |H| d = −g with |H| = V|Λ|Vᵀ (eigenvalues floored at 1e-12·max|Λ|), so it is a descent
    direction even where H is indefinite (Dauphin et al. 2014); backtracking halves it at most 60 times.
    Converged when max |g_i / scale_i| <= tol.
    """
    value_and_grad = jax.value_and_grad(f)
    hessian = jax.hessian(f)

    def direction(x, g):
        lam, V = jnp.linalg.eigh(hessian(x))
        floor = 1e-12 * jnp.maximum(jnp.max(jnp.abs(lam)), 1e-300)
        return -V @ ((V.T @ g) / jnp.maximum(jnp.abs(lam), floor))

    def line_search(x, fx, g, d):
        slope = jnp.dot(g, d)

        def cond(state):
            t, fx_new, k = state
            return (~(fx_new <= fx + 1e-4 * t * slope)) & (k < 60)

        def body(state):
            t, _, k = state
            return 0.5 * t, f(x + 0.5 * t * d), k + 1

        t, fx_new, _ = lax.while_loop(cond, body, (jnp.ones_like(fx), f(x + d), 0))
        return x + t * d, fx_new

    def residual(g):
        return jnp.max(jnp.abs(g / scale))

    def cond(state):
        x, fx, g, k, stalled = state
        return (residual(g) > tol) & (k < max_iter) & ~stalled

    def body(state):
        x, fx, g, k, _ = state
        x_new, fx_new = line_search(x, fx, g, direction(x, g))
        fx_new, g_new = value_and_grad(x_new)
        # No decrease at all (at the floor of float64 rounding): stop; the residual says how close we are.
        stalled = ~(fx_new < fx) & jnp.all(x_new == x)
        return x_new, fx_new, g_new, k + 1, stalled

    fx0, g0 = value_and_grad(x0)
    x, fx, g, k, _ = lax.while_loop(cond, body, (x0, fx0, g0, 0, False))
    r = residual(g)
    return Solution(x, fx, r, k, r <= tol)


def newton_root(F: Callable, x0, *, scale, tol: float, max_iter: int = 100) -> Solution:
    """Solve F(x) = 0 (F: Rⁿ → Rⁿ, n small) by Newton's method with backtracking on ½|F/scale|².

    Used for saddle points (the gradient of an action that is not a minimum in every direction).
    The Jacobian system is solved by least squares so a singular Jacobian gives a finite step.
    """
    jacobian = jax.jacfwd(F)

    def merit(Fx):
        return 0.5 * jnp.sum((Fx / scale) ** 2)

    def body(state):
        x, Fx, k, _ = state
        d = jnp.linalg.lstsq(jacobian(x), -Fx)[0]
        m0 = merit(Fx)

        def ls_cond(ls):
            t, F_new, j = ls
            return ~(merit(F_new) <= (1.0 - 1e-4 * t) * m0) & (j < 60)

        def ls_body(ls):
            t, _, j = ls
            return 0.5 * t, F(x + 0.5 * t * d), j + 1

        t, F_new, _ = lax.while_loop(ls_cond, ls_body, (jnp.ones_like(m0), F(x + d), 0))
        x_new = x + t * d
        stalled = jnp.all(x_new == x)
        return x_new, F_new, k + 1, stalled

    def cond(state):
        x, Fx, k, stalled = state
        return (jnp.max(jnp.abs(Fx / scale)) > tol) & (k < max_iter) & ~stalled

    F0 = F(x0)
    x, Fx, k, _ = lax.while_loop(cond, body, (x0, F0, 0, False))
    r = jnp.max(jnp.abs(Fx / scale))
    return Solution(x, merit(Fx), r, k, r <= tol)
