"""models.cnn: the prior covariance of the finite patch CNN is the local NNGP of theory.conv_kernels (Monte Carlo)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deeptheory.models.cnn import PatchCNN
from deeptheory.theory.conv_kernels import conv_patch_kernels


@pytest.mark.parametrize(("patches", "activation"), [((2,), "erf"), ((2, 2), "relu")])
def test_prior_covariance_is_the_local_nngp(patches, activation):
    """E[f(x)f(x')] = σ_L²/n Σ_i K^{ii}(x, x'). With one convolutional layer the pre-activations are Gaussian
    at any channel count, so the covariance is exact; with two it is off by O(1/N_c), bounded by 2 max|K|/N_c.
    The threshold is 5 standard errors (measured from the draws) plus that bias."""
    x = np.random.default_rng(0).normal(size=(4, 4, 4, 2)).astype(np.float32)
    channels, draws, sw2 = 64, 4000, [1.5, 2.0, 0.7][: len(patches) + 1]
    model = PatchCNN(patches=patches, channels=channels, activation=activation, weight_var=sw2)
    keys = jax.random.split(jax.random.key(0), draws)
    f = jax.vmap(lambda k: model.apply(model.init(k, x), x)[:, 0])(keys)
    f = np.asarray(f, np.float64)
    products = f[:, :, None] * f[:, None, :]
    emp, se = products.mean(0), products.std(0) / np.sqrt(draws)
    K, _, _ = conv_patch_kernels(x.astype(np.float64), activation=activation, patches=patches, weight_var=sw2[:-1])
    n = K.shape[0]
    K_local = sw2[-1] * np.einsum("iiab->ab", np.asarray(K)) / n
    bias = 0.0 if len(patches) == 1 else 2 * np.abs(K_local).max() / channels
    assert np.all(np.abs(emp - K_local) <= 5 * se + bias), np.max(np.abs(emp - K_local) / se)


def test_features_have_one_row_per_position_and_bad_images_are_refused():
    model = PatchCNN(patches=(2,), channels=3)
    x = jnp.zeros((5, 4, 6))
    params = model.init(jax.random.key(0), x)
    f, features = model.apply(params, x, return_features=True)
    assert f.shape == (5, 1) and features.shape == (5, 6, 3)
    with pytest.raises(ValueError, match="not divisible"):
        model.apply(params, jnp.zeros((5, 5, 6)))
