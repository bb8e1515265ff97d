"""The precision policy with the global x64 flag off (theory._checks; docs/README.md, "Precision").

The suite runs with x64 on (conftest); each test here switches it off around the calls, as a user who never touched
the flag has it. Warnings are errors in this suite, so a float64 request truncated to float32 fails the test.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deeptheory.theory import attention as ATT
from deeptheory.theory import gp as G
from deeptheory.theory import nngp as K
from deeptheory.theory import particle_flow as PF
from deeptheory.theory import random_features as RF
from deeptheory.theory import renormalization as R

rng = np.random.default_rng(3)
X, Y = rng.normal(size=(20, 5)), rng.normal(size=20)
X0, Y0 = rng.normal(size=(6, 5)), rng.normal(size=6)


def _rounded(a):
    return np.asarray(a).astype(np.float32)


def test_random_features_compute_in_float64_with_the_flag_off():
    """rf_risk at the ridgeless interpolation peak N = P is +inf; in float32 it came out 75726 with ~20 warnings."""
    lam64 = RF.power_law_spectrum(200, 1.5)
    expected = np.asarray(RF.rf_risk(lam64, lam64, n_features=40, n_samples=80, ridge=0.0))
    with jax.enable_x64(False):
        lam = RF.power_law_spectrum(200, 1.5)
        peak = RF.rf_risk(lam, lam, n_features=80, n_samples=80, ridge=0.0)
        regular = RF.rf_risk(lam, lam, n_features=40, n_samples=80, ridge=0.0)
    assert lam.dtype == jnp.float32 and peak.dtype == jnp.float32
    assert np.isinf(float(peak))
    # computed in float64 from the rounded spectrum; one rounding of the inputs moves the risk by ~1e-7
    np.testing.assert_allclose(float(regular), float(expected), rtol=1e-6)


def test_outputs_are_the_float64_results_rounded_once():
    with_flag = R.fc_theory(X, Y, X0, Y0, activation="erf", depth=2, width=30, temperature=0.05, variant="nested")
    with jax.enable_x64(False):
        without = R.fc_theory(X, Y, X0, Y0, activation="erf", depth=2, width=30, temperature=0.05, variant="nested")
    for a, b in zip(jax.tree.leaves(without), jax.tree.leaves(with_flag), strict=True):
        assert a.dtype in (jnp.float32, jnp.int32, jnp.bool_)
        np.testing.assert_allclose(np.asarray(a), _rounded(b), rtol=2e-7)


def test_one_module_feeds_the_next_with_the_flag_off():
    """nngp → gp (the failure a newcomer hit: `lax.mul requires arguments to have the same dtypes`), nngp → spectrum →
    solve_vanilla, fc_theory → renormalized_kernel, spectrum → rf_risk."""
    with jax.enable_x64(False):
        Kxx = K.nngp_kernel(X, activation="erf", depth=2)
        Kqx = K.nngp_kernel(X0, X, activation="erf", depth=2)
        kq = jnp.diagonal(K.nngp_kernel(X0, activation="erf", depth=2))
        post = G.gp_posterior(Kxx, Kqx, kq, Y, noise=0.1)
        loss = G.gp_test_loss(post, Y0)
        sp = R.spectrum(Kxx, Y, Kqx, kq, Y0)
        sol = R.solve_vanilla(sp, jnp.full((2,), 30.0), 0.1)
        theory = R.fc_theory(X, Y, X0, Y0, activation="relu", depth=2, width=30, temperature=0.1, variant="noncentral")
        K_R = R.renormalized_kernel(X, activation="relu", depth=2, order_params=theory.order_params,
                                    variant="noncentral")
        lam = RF.power_law_spectrum(50, 2.0)
        risk = RF.rf_risk(lam, RF.preconditioner(lam, "natural", damping=1e-3) * lam, n_features=10, n_samples=20,
                          ridge=1e-4)
    post64 = G.nngp_regression(X, Y, X0, Y0, noise=0.1, activation="erf", depth=2)
    np.testing.assert_allclose(np.asarray(post.mean), np.asarray(post64[0].mean), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(float(loss.total), float(post64[1].total), rtol=1e-4)
    assert bool(sol.converged) and np.all(np.isfinite(np.asarray(K_R))) and np.isfinite(float(risk))


def test_data_maps_follow_their_inputs():
    t32 = jnp.asarray(rng.normal(size=(30, 2)), jnp.float32)
    t64 = np.asarray(t32, np.float64)
    assert PF.two_stage_denoise(t32, sigma2=0.5, eps=0.1, step=1.0, depth=2).dtype == jnp.float32
    assert PF.two_stage_denoise(t64, sigma2=0.5, eps=0.1, step=1.0, depth=2).dtype == jnp.float64
    assert ATT.rbf_attention(np.ones((3, 2), np.int32), t64, bandwidth=1.0).dtype == jnp.float64
    assert ATT.rbf_attention(t32.astype(jnp.float16), t32, bandwidth=1.0).dtype == jnp.float32
    assert K.nngp_kernel(t32, activation="relu", depth=1).dtype == jnp.float32
    expected = np.asarray(PF.two_stage_denoise(t64, sigma2=0.5, eps=0.1, step=1.0, depth=2))
    with jax.enable_x64(False):
        out32 = PF.two_stage_denoise(t32, sigma2=0.5, eps=0.1, step=1.0, depth=2)
        out64 = PF.two_stage_denoise(t64, sigma2=0.5, eps=0.1, step=1.0, depth=2)
    assert out32.dtype == out64.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(out64), expected.astype(np.float32))  # float64 arithmetic, one rounding
    np.testing.assert_allclose(np.asarray(out32), expected, rtol=1e-4, atol=1e-5)  # float32 arithmetic


def test_inside_a_transformation_traced_with_the_flag_off():
    """A data map runs in float32 inside the caller's jit (what a float32 model needs); a float64 theory function
    refuses with the fix instead of computing in float32 or failing to lower."""
    t32 = jnp.asarray(rng.normal(size=(16, 2)), jnp.float32)
    with jax.enable_x64(False):
        out = jax.jit(lambda t: PF.two_stage_denoise(t, sigma2=0.5, eps=0.1, step=1.0, depth=2))(t32)
        grads = jax.grad(lambda e: jnp.sum(ATT.rbf_attention(t32, t32, bandwidth=e)))(jnp.float32(0.3))
        lam = RF.power_law_spectrum(50, 1.5)
        with pytest.raises(ValueError, match="jax_enable_x64"):
            jax.jit(lambda r: RF.rf_risk(lam, lam, n_features=10, n_samples=20, ridge=r))(1e-3)
        with pytest.raises(ValueError, match="jax_enable_x64"):
            jax.vmap(lambda r: RF.rf_risk(lam, lam, n_features=10, n_samples=20, ridge=r))(jnp.ones(3))
    assert out.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(out))) and np.isfinite(float(grads))
    # with the flag on, the same vmap is the documented way to make a grid
    lam = RF.power_law_spectrum(50, 1.5)
    grid = jax.vmap(lambda r: RF.rf_risk(lam, lam, n_features=10, n_samples=20, ridge=r))(jnp.geomspace(1e-4, 1, 3))
    assert grid.dtype == jnp.float64 and bool(jnp.all(jnp.isfinite(grid)))
