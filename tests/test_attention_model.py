"""models.attention: the transformer at the analytic parameters is theory.particle_flow.two_stage_denoise."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deeptheory.models.attention import AttentionDenoiser, analytic_params
from deeptheory.theory.attention import dot_product_attention
from deeptheory.theory.particle_flow import particle_flow, two_stage_denoise


def _tokens(seed, shape, dtype=jnp.float64):
    return jax.random.normal(jax.random.key(seed), shape, dtype)


@pytest.mark.parametrize("shared", [False, True])
def test_model_with_analytic_weights_is_the_two_stage_estimator(shared):
    y = _tokens(0, (64, 2))
    model = AttentionDenoiser(depth=6, shared=shared)
    params = analytic_params(6, eps=0.3, step=0.4, sigma2=0.8, shared=shared, dtype=jnp.float64)
    got = model.apply(params, y)
    expect = two_stage_denoise(y, sigma2=0.8, eps=0.3, step=0.4, depth=6)
    np.testing.assert_allclose(got, expect, rtol=1e-12, atol=1e-14)


def test_model_with_per_layer_schedules_is_the_two_stage_estimator():
    y = _tokens(4, (40, 2))
    eps, step = jnp.linspace(0.1, 0.5, 6), jnp.linspace(0.9, 0.2, 6)
    got = AttentionDenoiser(depth=6).apply(analytic_params(6, eps=eps, step=step, sigma2=0.8, dtype=jnp.float64), y)
    np.testing.assert_allclose(got, two_stage_denoise(y, sigma2=0.8, eps=eps, step=step, depth=6), rtol=1e-12,
                               atol=1e-14)


def test_stage1_only_returns_the_particle_flow_with_the_same_parameters():
    y = _tokens(5, (40, 2))
    eps, step = jnp.linspace(0.1, 0.5, 6), jnp.linspace(0.9, 0.2, 6)
    params = analytic_params(6, eps=eps, step=step, sigma2=0.8, dtype=jnp.float64)
    got = AttentionDenoiser(depth=6).clone(stage1_only=True).apply(params, y)
    np.testing.assert_allclose(got, particle_flow(y, eps=eps, step=step, depth=6), rtol=1e-12, atol=1e-14)


def test_model_batches_chunks_and_initialises_at_its_attributes():
    ys = _tokens(1, (3, 50, 2), jnp.float32)
    model = AttentionDenoiser(depth=4, init_bandwidth=0.25, init_step=0.5, init_readout_bandwidth=0.7)
    params = model.init(jax.random.key(0), ys)
    np.testing.assert_allclose(jnp.exp(params["params"]["log_bandwidth"]), np.full(4, 0.25), rtol=1e-6)
    out = model.apply(params, ys)
    assert out.shape == ys.shape and out.dtype == jnp.float32
    np.testing.assert_allclose(out[2], two_stage_denoise(ys[2], sigma2=0.7, eps=0.25, step=0.5, depth=4), rtol=2e-5,
                               atol=2e-6)
    chunked = AttentionDenoiser(depth=4, init_bandwidth=0.25, init_step=0.5, init_readout_bandwidth=0.7, chunk_size=16)
    np.testing.assert_allclose(chunked.apply(params, ys), out, rtol=2e-5, atol=2e-6)


def test_dot_product_model_differs_and_matches_its_own_recursion():
    y = _tokens(2, (30, 3))
    params = analytic_params(2, eps=0.5, step=0.5, sigma2=1.0, dtype=jnp.float64)
    dot = AttentionDenoiser(depth=2, attention="dot").apply(params, y)
    x = y
    for _ in range(2):
        x = x + 0.5 * (dot_product_attention(x, x, bandwidth=0.5) - x)
    np.testing.assert_allclose(dot, dot_product_attention(y, x, bandwidth=1.0), rtol=1e-12)
    assert np.max(np.abs(dot - AttentionDenoiser(depth=2).apply(params, y))) > 1e-3


def test_model_gradients_are_finite_and_bad_attributes_raise():
    y = _tokens(3, (2, 20, 1), jnp.float32)
    model = AttentionDenoiser(depth=3)
    params = model.init(jax.random.key(1), y)
    grads = jax.grad(lambda p: jnp.mean((model.apply(p, y) - 0.5 * y) ** 2))(params)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    with pytest.raises(ValueError, match="attention must be one of"):
        AttentionDenoiser(depth=1, attention="linear").init(jax.random.key(0), y)
    with pytest.raises(ValueError, match=r"\(N, d\) or \(B, N, d\)"):
        AttentionDenoiser(depth=1).init(jax.random.key(0), y[0, :, 0])
