"""The small solvers of `theory._solvers`: Newton's Hessian reuse and the merge of a start into a known minimum."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deeptheory.theory._solvers import newton_minimize

TOL = 1e-12


def _double_well(x):
    """Two minima, near x_0 = +1 and x_0 = −1 (the tilt makes them unequal), coupled through x_1 and x_2 so that the
    Hessian changes along every path (a quadratic would hide a stale Hessian)."""
    return ((x[0] ** 2 - 1.0) ** 2 + 0.1 * x[0] + (x[1] - 0.5 * x[0]) ** 2 + jnp.cosh(x[2] - 0.3 * x[1]) +
            0.2 * x[1] ** 4)


def _counting_newton(x0, **kw):
    """newton_minimize with autodiff derivatives, counting the Hessians it evaluates (a host callback runs only
    where the Hessian is computed, not where a branch skips it)."""
    count = []

    def derivatives(x):
        value, grad = jax.value_and_grad(_double_well)(x)
        return value, grad, ()

    def hessian(x, _):
        jax.debug.callback(lambda: count.append(1))
        return jax.hessian(_double_well)(x)

    sol = jax.jit(lambda x0: newton_minimize(_double_well, x0, scale=jnp.ones(3), tol=TOL, derivatives=derivatives,
                                             hessian=hessian, **kw))(x0)
    jax.effects_barrier()
    return sol, len(count)


def test_hessians_are_reused_only_after_short_steps_and_the_answer_is_unchanged():
    x0 = jnp.asarray([0.6, 0.2, -0.4])
    fresh, n_fresh = _counting_newton(x0, reuse_step=0.0)  # a Hessian at every iterate (the previous solver)
    lazy, n_lazy = _counting_newton(x0)
    assert bool(fresh.converged) and bool(lazy.converged)
    assert n_fresh == int(fresh.iterations)
    # the last step of a converging Newton run is short: its Hessian is reused at least once, at the cost of at most
    # one more iteration (the error contracts by ∝ the short step instead of squaring)
    assert n_lazy < n_fresh and int(lazy.iterations) <= int(fresh.iterations) + 1
    np.testing.assert_allclose(lazy.x, fresh.x, rtol=0, atol=1e-11)
    assert float(lazy.residual) <= TOL


def test_a_start_merges_into_a_known_minimum_of_its_basin_and_not_into_another():
    right, _ = _counting_newton(jnp.asarray([1.2, 0.5, 0.1]))
    assert bool(right.converged) and float(right.x[0]) > 0.9
    assert np.any(np.asarray(right.hessian) != 0)

    # starts in the same basin stop within merge_radius of the known minimum and return it. Near it, the borrowed
    # Hessian (exact at the minimum) steers every step and the start computes none of its own; farther out (x_0 = 0.7,
    # where the curvature along x_0 is a quarter of the minimum's) it is dropped at the first slow step.
    for same, borrowed_throughout in (([1.1, 0.6, 0.3], True), ([0.85, 0.3, 0.0], True), ([0.7, 0.1, -0.3], False)):
        alone, n_alone = _counting_newton(jnp.asarray(same))
        merged, n_merged = _counting_newton(jnp.asarray(same), known=right)
        np.testing.assert_allclose(alone.x, right.x, atol=1e-10)  # the merge is honest: alone it reaches the same point
        np.testing.assert_array_equal(np.asarray(merged.x), np.asarray(right.x))
        assert float(merged.value) == float(right.value) and bool(merged.converged)
        assert int(merged.iterations) < int(alone.iterations) and n_merged < n_alone
        assert (n_merged == 0) == borrowed_throughout

    # a start in the other basin is not merged: it finds the other minimum as it would alone (the wells' curvatures
    # differ by the tilt only, so the borrowed Hessian may steer it all the way there)
    other = jnp.asarray([-0.8, -0.2, 0.0])
    alone, _ = _counting_newton(other)
    found, _ = _counting_newton(other, known=right)
    assert bool(found.converged) and float(found.x[0]) < -0.9
    np.testing.assert_allclose(found.x, alone.x, atol=1e-10)
    assert float(found.value) != float(right.value)


def test_a_known_minimum_without_a_hessian_lends_none():
    """A start that passes the test at once computes no Hessian; a later start must not borrow its zeros."""
    right, _ = _counting_newton(jnp.asarray([1.2, 0.5, 0.1]))
    at_once, n = _counting_newton(right.x)
    assert n == 0 and int(at_once.iterations) == 0 and not np.any(np.asarray(at_once.hessian))
    later, n_later = _counting_newton(jnp.asarray([0.7, 0.1, -0.3]), known=at_once)
    assert bool(later.converged) and n_later > 0
    np.testing.assert_allclose(later.x, right.x, atol=1e-10)


def test_a_start_close_to_a_known_minimum_but_in_another_basin_is_not_merged():
    """Two minima 0.015 apart (a spinodal-like near-degeneracy): a start at 0.0095 lies within merge_radius = 1e-2 of
    the known minimum at 0, but its own Newton steps go to the other one at 0.015. Being close does not merge it;
    the step must also contract towards the known minimum."""
    a = 0.015

    def f(x):
        return 1e8 * (x[0] * (x[0] - a)) ** 2 + 1e3 * x[0] ** 3 + (x[1] - 0.1 * x[0]) ** 2

    solve = jax.jit(lambda x0, known=None: newton_minimize(f, x0, scale=jnp.ones(2), tol=1e-10, known=known))
    left = solve(jnp.asarray([-0.004, 0.0]))
    assert bool(left.converged) and abs(float(left.x[0])) < 1e-6
    start = jnp.asarray([0.0095, 0.0])
    alone = solve(start)
    assert bool(alone.converged) and abs(float(alone.x[0]) - a) < 1e-3  # its own basin is the other minimum (the cubic
    # tilt moves it 1.5e-5 from a)
    with_known = solve(start, left)
    assert bool(with_known.converged)
    np.testing.assert_allclose(with_known.x, alone.x, atol=1e-10)


def test_hessian_reuse_ends_at_the_first_step_that_does_not_halve_the_residual():
    """With reuse allowed after steps of any length (reuse_step = inf), the first Hessian of f = eˣ − 2x at x = 3 is
    ten times the curvature at the minimum (x = log 2): kept for good, it would contract the error by only 0.9 per
    step (~280 steps to 1e-12). The rule keeps a Hessian only while each step halves the residual, so the error
    falls at least twofold per step (≤ 45 steps from 18 to 1e-12; 22 measured, 7 with a fresh Hessian per step)."""
    solve = jax.jit(lambda x0, reuse: newton_minimize(lambda x: jnp.sum(jnp.exp(x) - 2.0 * x), x0, scale=jnp.ones(1),
                                                      tol=1e-12, reuse_step=reuse, max_iter=45))
    fresh = solve(jnp.asarray([3.0]), 0.0)
    lazy = solve(jnp.asarray([3.0]), jnp.inf)
    assert bool(fresh.converged) and bool(lazy.converged)
    np.testing.assert_allclose(lazy.x, [np.log(2.0)], atol=1e-12)
    assert int(fresh.iterations) < int(lazy.iterations)  # the Hessian was reused (this is what the test exercises)


def test_a_known_minimum_with_a_non_finite_hessian_lends_none_and_one_without_a_hessian_is_refused():
    right, _ = _counting_newton(jnp.asarray([1.2, 0.5, 0.1]))
    start = jnp.asarray([0.7, 0.1, -0.3])
    alone, n_alone = _counting_newton(start)
    broken, n = _counting_newton(start, known=right._replace(hessian=jnp.full((3, 3), jnp.nan)))
    assert bool(broken.converged) and n > 0
    np.testing.assert_allclose(broken.x, alone.x, atol=1e-10)
    with pytest.raises(ValueError, match="no Hessian"):
        newton_minimize(_double_well, start, scale=jnp.ones(3), tol=TOL, known=right._replace(hessian=None))
