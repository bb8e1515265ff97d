"""theory.gp: function-space GP regression against weight-space Bayesian linear regression."""

import jax.numpy as jnp
import numpy as np
import pytest

from deeptheory.theory.gp import GPPosterior, gp_posterior, gp_test_loss, jitter_for, nngp_regression
from deeptheory.theory.nngp import nngp_diag, nngp_kernel


@pytest.fixture
def regression_data():
    rng = np.random.default_rng(0)
    x, x_test = rng.normal(size=(20, 5)), rng.normal(size=(8, 5))
    w = rng.normal(size=5)
    return x, x @ w / np.sqrt(5) + 0.1 * rng.normal(size=20), x_test, x_test @ w / np.sqrt(5)


def test_linear_kernel_gp_equals_bayesian_linear_regression(regression_data):
    """depth 0, linear: f = σ_w/√d w·x with w ~ N(0, I), noise T. Weight space (Bishop 2006, eq. 3.53):
    Σ_w = (I + (σ²/(d T)) XᵀX)⁻¹, μ_w = (σ/√d) Σ_w Xᵀy / T, then mean = (σ/√d) x0·μ_w,
    var = (σ²/d) x0ᵀ Σ_w x0. An independent derivation of the same posterior."""
    x, y, x_test, y_test = regression_data
    sigma2, T, d = 1.7, 0.05, x.shape[1]
    posterior, loss = nngp_regression(
        x, y, x_test, y_test, noise=T, activation="linear", depth=0, weight_var=sigma2
    )
    cov_w = np.linalg.inv(np.eye(d) + sigma2 / (d * T) * x.T @ x)
    mu_w = np.sqrt(sigma2 / d) * cov_w @ x.T @ y / T
    mean = np.sqrt(sigma2 / d) * x_test @ mu_w
    var = sigma2 / d * np.einsum("qi,ij,qj->q", x_test, cov_w, x_test)
    np.testing.assert_allclose(posterior.mean, mean, rtol=1e-9)
    np.testing.assert_allclose(posterior.var, var, rtol=1e-8)
    np.testing.assert_allclose(loss.bias2, np.mean((y_test - mean) ** 2), rtol=1e-9)
    np.testing.assert_allclose(loss.variance, np.mean(var), rtol=1e-8)
    np.testing.assert_allclose(loss.total, loss.bias2 + loss.variance, rtol=1e-15)


def test_posterior_matches_gaussian_conditioning_with_a_dense_solve(regression_data):
    x, y, x_test, _ = regression_data
    kw = dict(activation="erf", depth=3, weight_var=[1.0, 2.0, 1.5, 1.0], bias_var=0.1)
    K, Kq, kq = nngp_kernel(x, **kw), nngp_kernel(x_test, x, **kw), nngp_diag(x_test, **kw)
    T = 0.01
    post = gp_posterior(K, Kq, kq, jnp.asarray(y), noise=T, jitter=0.0)
    A = np.asarray(K) + T * np.eye(len(x))
    np.testing.assert_allclose(post.mean, np.asarray(Kq) @ np.linalg.solve(A, y), rtol=1e-8)
    full_var = np.asarray(kq) - np.einsum("qp,pq->q", Kq, np.linalg.solve(A, np.asarray(Kq).T))
    np.testing.assert_allclose(post.var, full_var, rtol=1e-7, atol=1e-12)


def test_limits_of_the_noise(regression_data):
    x, y, x_test, _ = regression_data
    kw = dict(activation="relu", depth=2, weight_var=2.0)
    K, Kq, kq = nngp_kernel(x, **kw), nngp_kernel(x_test, x, **kw), nngp_diag(x_test, **kw)
    huge = gp_posterior(K, Kq, kq, jnp.asarray(y), noise=1e12)
    np.testing.assert_allclose(huge.mean, 0.0, atol=1e-9)
    np.testing.assert_allclose(huge.var, kq, rtol=1e-9)
    # T = 0: the posterior mean interpolates the training data and its variance there vanishes.
    at_train = gp_posterior(K, K, nngp_diag(x, **kw), jnp.asarray(y), noise=0.0)
    np.testing.assert_allclose(at_train.mean, y, atol=1e-8)
    np.testing.assert_allclose(at_train.var, 0.0, atol=1e-8)


def test_multi_output_targets_share_the_variance(regression_data):
    x, y, x_test, y_test = regression_data
    Y = np.stack([y, -2 * y], axis=1)
    post, loss = nngp_regression(x, Y, x_test, np.stack([y_test, -2 * y_test], 1), noise=0.1,
                                 activation="erf", depth=1)
    single = nngp_regression(x, y, x_test, noise=0.1, activation="erf", depth=1)
    np.testing.assert_allclose(post.mean[:, 1], -2 * single.mean, rtol=1e-12)
    np.testing.assert_allclose(post.var, single.var, rtol=1e-12)


def test_not_positive_definite_raises_instead_of_nan():
    K = jnp.array([[1.0, 2.0], [2.0, 1.0]])  # eigenvalues 3 and -1
    with pytest.raises(ValueError, match="not positive definite"):
        gp_posterior(K, K, jnp.diagonal(K), jnp.ones(2), noise=0.0)


def test_bad_inputs_raise(regression_data):
    x, y, x_test, _ = regression_data
    with pytest.raises(ValueError, match="noise .* >= 0"):
        nngp_regression(x, y, x_test, noise=-0.1, activation="relu", depth=1)
    with pytest.raises(ValueError, match="y_train must be"):
        nngp_regression(x, y[:5], x_test, noise=0.1, activation="relu", depth=1)
    with pytest.raises(ValueError, match="same number of features"):
        nngp_regression(x, y, x_test[:, :3], noise=0.1, activation="relu", depth=1)
    with pytest.raises(ValueError, match="y_test has shape"):
        gp_test_loss(GPPosterior(jnp.zeros(3), jnp.zeros(3)), jnp.zeros(4))


def test_jitter_is_relative_to_the_kernel_scale():
    K = 1e6 * jnp.eye(3)
    assert float(jitter_for(K)) == pytest.approx(10 * np.finfo(np.float64).eps * 1e6)
