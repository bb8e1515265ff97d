"""Small jittable solvers for the order-parameter problems of `theory.renormalization` and its neighbours.

Subject: bisection, saddle-free Newton, Newton root finding and BFGS for small problems, and the Cholesky data
term yᵀA⁻¹y + log det A that every renormalized action shares. Each solver returns its answer together with the
residual and a `converged` flag instead of raising, so it can run under jit and vmap; the public functions in
`theory.renormalization`, `theory.conv_renormalization` and `theory.random_features` turn a failure into an error
that names the residual. Private module (not re-exported from `deeptheory.theory`), public names (`__all__`): the
theory modules and `benchmarks/renormalization.py` import them. The callers own the precision (`_checks`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.linalg import cho_solve

__all__ = ["Solution", "bisect", "newton_minimize", "newton_root", "bfgs_minimize", "cholesky_terms", "boustrophedon"]

# Armijo tests accept changes of f below this fraction of |f|: near the solution the decrease predicted from a
# gradient of relative size 1e-10 is ~1e-20 |f|, far below float64 rounding, and must not trigger backtracking.
_ROUNDING = 1e-13


class Solution(NamedTuple):
    x: jax.Array  # the solution (in the solver's coordinates)
    value: jax.Array  # the objective there (minimisation) or the merit ½|F|² (root finding)
    residual: jax.Array  # max |gradient| (minimisation) or max |F| (root finding), as scaled by the caller
    iterations: jax.Array
    converged: jax.Array
    # `newton_minimize`: the last Hessian it used (zeros if it needed none). Possibly computed some short steps back,
    # or borrowed from a known minimum, and only as exact as the caller's `hessian` (a steering matrix, not ∇²f(x))
    hessian: jax.Array | None = None


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


def newton_minimize(f: Callable | None, x0, *, scale, tol: float, max_iter: int = 100,
                    derivatives: Callable | None = None, hessian: Callable | None = None,
                    known: Solution | None = None, reuse_step: float = 1e-3, merge_radius: float = 1e-2) -> Solution:
    """Minimise a smooth f: Rⁿ → R (n small) by saddle-free Newton with Armijo backtracking.

    The step solves |H| d = −g with |H| = V|Λ|Vᵀ (eigenvalues floored at 1e-12·max|Λ|), so it is a descent
    direction even where H is indefinite (Dauphin et al. 2014); backtracking halves it at most 59 times.
    Converged when max |g_i / scale_i| <= tol.

    `derivatives(x) -> (f, ∇f, aux)` and `hessian(x, aux) -> ∇²f` replace automatic differentiation where the
    caller has them cheaper (one factorisation shared by all three, as `theory.renormalization`'s nested action
    does: aux carries the factorisation; f may then be None); default: jax.value_and_grad and jax.hessian of f.
    Every trial point of the line search is evaluated with the derivatives: the full step is accepted at almost
    every iterate, whose derivatives are then at hand, and the program holds one copy of them for the loop
    (evaluating f alone while backtracking would add a copy of f to compile for a rarely taken branch).

    Hessians are computed only where they change the step: at each iterate, except after a full step (no
    backtracking) that at least halved the residual and was no longer than `reuse_step` (max norm) — there the
    last Hessian, computed one or a few such short steps back, steers as well as a fresh one (the error contracts
    by a factor ∝ the distance travelled since, e.g. 1e-9 → 1e-13 where a fresh Hessian would give 1e-15) — and
    never at the point that passes the test. A step that does not halve the residual ends the reuse.

    `known`: a minimum found before (another start's `Solution`, with its Hessian). The run starts with that Hessian
    and keeps it while every full step at least halves the residual: exact at the minimum, it converges there as
    fast as fresh Hessians would (the error still squares each step), and costs none. As soon as a step lands
    within `merge_radius` of known.x (max norm, in the solver's coordinates; well inside the region where Newton
    converges quadratically, e_{k+1} ≈ M e_k², for the smooth actions here: M ≲ 1) *and* at least halves the
    iterate's distance to known.x, the run stops and returns `known` with its own iteration count — it is heading
    for the same minimum. Being close is not enough: near a spinodal another minimum's basin can reach into the
    radius, and a step from there moves away from known.x (tested). A start that heads elsewhere loses the
    borrowed Hessian at its first slow step and continues with fresh ones. Borrowing steers the first steps, so in
    principle it can change which minimum a start far from known.x reaches; on the nested problems measured none
    did (docs (R-19c); tests/test_renormalization.py compares merged starts with starts solved alone). A `known`
    without a usable Hessian (none computed, or not finite) lends none.
    """
    if (derivatives is None) != (hessian is None):
        raise ValueError("newton_minimize: give both `derivatives` and `hessian`, or neither (autodiff)")
    if derivatives is None and f is None:
        raise ValueError("newton_minimize: give f, or `derivatives` and `hessian`")
    if derivatives is None:
        value_and_grad, autodiff_hessian = jax.value_and_grad(f), jax.hessian(f)

        def derivatives(x):
            return (*value_and_grad(x), ())

        def hessian(x, _):
            return autodiff_hessian(x)

    def direction(H, g):
        lam, V = jnp.linalg.eigh(H)
        floor = 1e-12 * jnp.maximum(jnp.max(jnp.abs(lam)), 1e-300)
        return -V @ ((V.T @ g) / jnp.maximum(jnp.abs(lam), floor))

    def line_search(x, fx, g, aux, slope, d):
        """t = 1, 1/2, 1/4, … (at most 60 trials) until Armijo holds: (the last trial point, the derivatives
        there, the number of trials)."""

        def cond(state):
            t, _, (fx_new, _, _), k = state
            return (k == 0) | (~(fx_new <= fx + 1e-4 * t * slope + _ROUNDING * jnp.abs(fx)) & (k < 60))

        def body(state):
            t, _, _, k = state
            t = jnp.where(k == 0, t, 0.5 * t)
            return t, x + t * d, derivatives(x + t * d), k + 1

        _, x_new, evaluated, trials = lax.while_loop(cond, body, (jnp.ones_like(fx), x, (fx, g, aux), 0))
        return x_new, evaluated, trials

    def residual(g):
        return jnp.max(jnp.abs(g / scale))

    n = x0.shape[0]
    if known is None:
        known = Solution(x0, jnp.inf, jnp.inf, 0, False, jnp.zeros((n, n), x0.dtype))
    elif known.hessian is None:
        raise ValueError("newton_minimize: `known` has no Hessian; pass a Solution that newton_minimize returned "
                         "(or known=None)")
    known_hessian = jnp.asarray(known.hessian, x0.dtype)
    # a known minimum reached without a Hessian (its start passed the test at once) has none to lend
    lend = known.converged & jnp.any(known_hessian != 0) & jnp.all(jnp.isfinite(known_hessian))

    def distance(x):
        return jnp.max(jnp.abs(x - known.x))

    def cond(state):
        x, fx, g, aux, H, reuse, following, k, stalled, merged = state
        return (residual(g) > tol) & (k < max_iter) & ~stalled & ~merged

    def body(state):
        x, fx, g, aux, H, reuse, following, k, _, _ = state
        H = lax.cond(reuse, lambda: H, lambda: hessian(x, aux))
        d = direction(H, g)
        x_new, (fx_new, g_new, aux_new), trials = line_search(x, fx, g, aux, jnp.dot(g, d), d)
        accepted = trials == 1  # the full step
        # No decrease at all (at the floor of float64 rounding): stop; the residual says how close we are.
        stalled = ~(fx_new < fx) & jnp.all(x_new == x)
        progress = accepted & (residual(g_new) <= 0.5 * residual(g))
        following = following & progress
        short = jnp.max(jnp.abs(x_new - x)) <= reuse_step
        merged = known.converged & (distance(x_new) <= merge_radius) & (distance(x_new) <= 0.5 * distance(x))
        return x_new, fx_new, g_new, aux_new, H, following | (progress & short), following, k + 1, stalled, merged

    H0 = jnp.where(lend, known_hessian, jnp.zeros((n, n), x0.dtype))
    x, fx, g, _, H, _, _, k, _, merged = lax.while_loop(cond, body,
                                                        (x0, *derivatives(x0), H0, lend, lend, 0, False, False))
    r = residual(g)
    own = Solution(x, fx, r, k, r <= tol, H)
    known = known._replace(iterations=k, hessian=known_hessian)
    return jax.tree.map(lambda a, b: jnp.where(merged, a, b), known, own)


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


def bfgs_minimize(value_and_grad: Callable, x0, *, residual: Callable, tol: float, max_iter: int = 500) -> Solution:
    """Minimise f by BFGS (Nocedal & Wright 2006, Alg. 6.1) with Armijo backtracking; f may be +inf outside
    its domain (a backtracking step then simply halves). `residual(x, g)` is the convergence measure.

    The inverse-Hessian estimate starts as the identity scaled by yᵀs/yᵀy after the first step (ibid., eq. 6.20);
    an update is skipped when the curvature yᵀs is not positive.
    """
    n = x0.shape[0]

    def body(state):
        x, f, g, H, k = state
        d = -H @ g
        slope = jnp.dot(g, d)
        d, slope = jnp.where(slope < 0, d, -g), jnp.where(slope < 0, slope, -jnp.dot(g, g))

        # each trial point's gradient is computed with its value: the accepted point's is then at hand (the
        # first trial is accepted in most steps, so this saves one evaluation per step)
        def ls_cond(ls):
            t, f_new, _, j = ls
            return ~(f_new <= f + 1e-4 * t * slope + _ROUNDING * jnp.abs(f)) & (j < 60)

        def ls_body(ls):
            t, _, _, j = ls
            return 0.5 * t, *value_and_grad(x + 0.5 * t * d), j + 1

        t, f_new, g_new, _ = lax.while_loop(ls_cond, ls_body, (jnp.ones_like(f), *value_and_grad(x + d), 0))
        s = t * d
        x_new = x + s
        yv = g_new - g
        ys = jnp.dot(yv, s)
        H = jnp.where(k == 0, H * jnp.where(ys > 0, ys / jnp.dot(yv, yv), 1.0), H)
        rho = 1.0 / jnp.where(ys > 0, ys, 1.0)
        V = jnp.eye(n, dtype=x.dtype) - rho * jnp.outer(s, yv)
        H = jnp.where(ys > 0, V @ H @ V.T + rho * jnp.outer(s, s), H)
        return x_new, f_new, g_new, H, k + 1

    def cond(state):
        x, f, g, H, k = state
        return (residual(x, g) > tol) & (k < max_iter) & jnp.isfinite(f)

    f0, g0 = value_and_grad(x0)
    x, f, g, _, k = lax.while_loop(cond, body, (x0, f0, g0, jnp.eye(n, dtype=x0.dtype), 0))
    r = residual(x, g)
    return Solution(x, f, r, k, r <= tol)


def cholesky_terms(K_R, y, T):
    """yᵀA⁻¹y + log det A for A = K_R + T I, by Cholesky: the data term of every renormalized action
    (docs/nngp_and_renormalization.md, eqs. (R-13), (R-20)–(R-21), (R-24))."""
    L = jnp.linalg.cholesky(K_R + T * jnp.eye(K_R.shape[0], dtype=K_R.dtype))
    alpha = cho_solve((L, True), y)
    return jnp.dot(y, alpha) + 2.0 * jnp.sum(jnp.log(jnp.diagonal(L)))


def boustrophedon(rows: int, columns: int) -> np.ndarray:
    """The flat indices of a rows × columns grid with rows alternating direction, so that each point's predecessor
    is its neighbour: the order in which the theory grids warm-start one point from the last."""
    order = np.arange(rows * columns).reshape(rows, columns)
    order[1::2] = order[1::2, ::-1]
    return order.reshape(-1)
