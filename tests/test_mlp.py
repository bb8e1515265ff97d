"""models.mlp: the finite network's prior covariance is the NNGP kernel (Monte Carlo)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deeptheory.models.mlp import MLP, empirical_kernel, prior_outputs
from deeptheory.theory.nngp import nngp_kernel


def _points():
    rng = np.random.default_rng(0)
    return rng.normal(size=(5, 8)).astype(np.float32)


@pytest.mark.parametrize("activation", ["linear", "relu", "erf", "gelu"])
@pytest.mark.parametrize("depth", [1, 2])
def test_prior_covariance_of_f_matches_nngp_kernel(activation, depth):
    """E[f(x)f(x')] over prior draws vs K^depth. The estimate's standard error is measured from the
    draws themselves; at depth 1 the finite-width covariance is exactly the NNGP (h^1 is Gaussian
    at any width), at depth 2 it differs by O(1/N) (Jensen on F of a fluctuating kernel), which we
    bound by 2 max|K| / N. Threshold: 5 standard errors + that bias."""
    x = _points()
    width, draws = 256, 3000
    sw2, sb2 = [1.5, 2.0, 1.0][: depth + 1], [0.0, 0.1, 0.2][: depth + 1]
    model = MLP(widths=(width,) * depth, activation=activation, weight_var=sw2, bias_var=sb2)
    keys = jax.random.split(jax.random.key(depth), draws)
    f = np.concatenate([np.asarray(prior_outputs(model, k, x))[..., 0] for k in np.split(keys, 6)])
    products = f[:, :, None] * f[:, None, :]
    emp, se = products.mean(0), products.std(0) / np.sqrt(draws)
    K = np.asarray(nngp_kernel(x.astype(np.float64), activation=activation, depth=depth, weight_var=sw2, bias_var=sb2))
    bias = 0.0 if depth == 1 else 2 * np.abs(K).max() / width
    assert np.all(np.abs(emp - K) <= 5 * se + bias), np.max(np.abs(emp - K) / se)


def test_readout_layer_kernel_concentrates_like_one_over_sqrt_width():
    """At depth 1 the readout-layer kernel is an average over N i.i.d. units: unbiased, with
    Frobenius error ∝ N^{-1/2}. Quadrupling N halves the error (within sampling noise)."""
    x = _points()
    K = np.asarray(nngp_kernel(x.astype(np.float64), activation="erf", depth=1, weight_var=2.0))
    errors = []
    for width in (256, 4096):
        model = MLP(widths=(width,), activation="erf", weight_var=2.0)
        def kernel(key, model=model):
            _, phi = model.apply(model.init(key, x), x, return_features=True)
            return empirical_kernel(phi, weight_var=2.0)
        kernels = jax.vmap(kernel)(jax.random.split(jax.random.key(1), 64))
        errors.append(np.sqrt(np.mean(np.sum((np.asarray(kernels) - K) ** 2, axis=(1, 2)))))
    ratio = errors[0] / errors[1]
    assert 3.0 < ratio < 5.3  # expected 4 = √(4096/256); 64 draws give ~±9% on each RMS error


def test_parameters_exist_only_where_the_prior_has_variance():
    model = MLP(widths=(3, 4), activation="relu", bias_var=[0.0, 0.5, 0.0])
    params = model.init(jax.random.key(0), jnp.ones((2, 6)))["params"]
    assert set(params) == {"W0", "W1", "W2", "b1"}
    assert params["W0"].dtype == jnp.float32


def test_bad_layer_values_raise():
    with pytest.raises(ValueError, match="one value per layer"):
        MLP(widths=(3,), weight_var=[1.0, 1.0, 1.0]).init(jax.random.key(0), jnp.ones((1, 2)))
    with pytest.raises(ValueError, match=">= 0"):
        MLP(widths=(3,), bias_var=-1.0).init(jax.random.key(0), jnp.ones((1, 2)))
