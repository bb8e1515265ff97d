"""Local kernel renormalization of CNNs: patch kernels, limits Q = I and pooling, stationarity, deep stacks, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deeptheory.theory import conv_renormalization as CR
from deeptheory.theory.conv_kernels import conv_patch_kernels
from deeptheory.theory.gp import gp_posterior, gp_test_loss
from deeptheory.theory.nngp import nngp_diag, nngp_kernel


def _images(seed=0, P=60, P_test=30, side=8):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((P, side, side))
    y = np.sign(x[:, :4, :4].sum((1, 2)) + 0.5 * rng.standard_normal(P))  # the label lives in the first patch
    x0 = rng.standard_normal((P_test, side, side))
    return x, y, x0, np.sign(x0[:, :4, :4].sum((1, 2)))


def _patches(x, M=4):
    P, H, W = x.shape
    r = x.reshape(P, H // M, M, W // M, M).transpose(1, 3, 0, 2, 4)
    return [r[a, b].reshape(P, M * M) for a in range(H // M) for b in range(W // M)]


def test_one_layer_patch_kernels_equal_nngp_of_patch_pairs():
    x, _, x0, _ = _images(P=7, P_test=5)
    K, k, _ = conv_patch_kernels(x0, x, activation="erf", patches=(4,), weight_var=1.7)
    px, px0 = _patches(x), _patches(x0)
    for i in range(4):
        for j in range(4):
            ref = nngp_kernel(px0[i], px[j], activation="erf", depth=1, weight_var=[1.7, 1.0])
            # rounding of O(1) sums: relative to the entry, and absolute to the kernel's scale where it is near 0
            np.testing.assert_allclose(K[i, j], ref, rtol=1e-12, atol=1e-14 * float(np.abs(ref).max()))
        np.testing.assert_allclose(k[i], nngp_diag(px0[i], activation="erf", depth=1, weight_var=[1.7, 1.0]), rtol=1e-12)


def test_two_layer_patch_kernel_against_a_wide_random_cnn():
    """Stack (2, 2) on 4×4 images: one final position. Monte Carlo over 4000 channels of a random network."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4, 4))
    K = np.asarray(conv_patch_kernels(x, activation="relu", patches=(2, 2), weight_var=[1.3, 0.8])[0][0, 0])
    Nc = 4000
    patches = x.reshape(3, 2, 2, 2, 2).transpose(0, 1, 3, 2, 4).reshape(3, 4, 4)  # (P, position, pixels)
    W0 = rng.standard_normal((Nc, 4)) * np.sqrt(1.3 / 4)
    h1 = np.maximum(np.einsum("cd,pnd->pnc", W0, patches), 0).reshape(3, -1)  # (P, 4 positions × Nc)
    W1 = rng.standard_normal((Nc, 4 * Nc)) * np.sqrt(0.8 / (4 * Nc))
    phi2 = np.maximum(h1 @ W1.T, 0)  # (P, Nc): φ at the single final position, one sample per channel
    prod = phi2[:, None, :] * phi2[None, :, :]
    mc, se = prod.mean(-1), prod.std(-1) / np.sqrt(Nc)
    # 5 standard errors plus the O(1/N_c) finite-width bias of a two-layer network
    assert np.all(np.abs(mc - K) < 5 * se + 2 * np.abs(K).max() / Nc * 10), (mc, K)


def _gp(K_tr, K_te, k_te, y, y0, T):
    post = gp_posterior(jnp.asarray(K_tr), jnp.asarray(K_te), jnp.asarray(k_te), jnp.asarray(y), noise=T)
    return post, gp_test_loss(post, jnp.asarray(y0))


def test_limits_local_and_pooled_nngp_are_gp_regression_with_independent_kernels():
    x, y, x0, y0 = _images()
    T = 0.02
    r = CR.conv_theory(x, y, x0, y0, activation="erf", patches=4, channels=50, temperature=T)
    px, px0 = _patches(x), _patches(x0)

    def kern(a, b):
        return np.asarray(nngp_kernel(a, b, activation="erf", depth=1))

    local = [sum(kern(a[i], b[i]) for i in range(4)) / 4 for a, b in ((px, px), (px0, px))]
    k_local = sum(np.asarray(nngp_diag(p, activation="erf", depth=1)) for p in px0) / 4
    post, loss = _gp(*local, k_local, y, y0, T)
    np.testing.assert_allclose(r.local_nngp.mean, post.mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(r.local_nngp.test_loss, loss.total, rtol=1e-9)
    pooled = [sum(kern(a[i], b[j]) for i in range(4) for j in range(4)) / 16 for a, b in ((px, px), (px0, px))]
    k_pooled = np.array([sum(kern(p[i][q:q + 1], p[j][q:q + 1])[0, 0] for i in range(4) for j in range(4)) / 16
                         for p in (px0,) for q in range(len(x0))])
    post, loss = _gp(*pooled, k_pooled, y, y0, T)
    np.testing.assert_allclose(r.pooled_nngp.mean, post.mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(r.pooled_nngp.test_loss, loss.total, rtol=1e-9)


def test_wide_cnn_tends_to_local_nngp():
    x, y, x0, y0 = _images()
    r = CR.conv_theory(x, y, x0, y0, activation="erf", patches=4, channels=1e7, temperature=0.02)
    np.testing.assert_allclose(r.order_params, np.eye(4), atol=1e-3)
    np.testing.assert_allclose(r.test_loss, r.local_nngp.test_loss, rtol=1e-4)


@pytest.mark.parametrize("patches,channels", [(4, 8), ((2, 2), 12)])
def test_solution_is_stationary_and_renormalizes_the_informative_patch(patches, channels):
    x, y, x0, y0 = _images()
    T = 0.02
    r = CR.conv_theory(x, y, x0, y0, activation="relu", patches=patches, channels=channels, temperature=T)
    depth = 1 if isinstance(patches, int) else len(patches)
    K = conv_patch_kernels(x, activation="relu", patches=(patches,) if depth == 1 else patches, weight_var=1.0)[0]
    Q = jnp.asarray(r.order_params)
    rng = np.random.default_rng(0)
    for _ in range(3):  # directional derivatives along random symmetric directions
        D = rng.standard_normal(Q.shape)
        D = jnp.asarray(D + D.T)
        slope = jax.jvp(lambda t, D=D: CR.conv_action(Q + t * D, K, jnp.asarray(y), T, channels, 1.0, depth),
                        (0.0,), (1.0,))[1]
        assert abs(float(slope)) / channels < 1e-7 * float(jnp.abs(D).max()) * 10
    # the label is a function of patch 0: that patch's kernel is the one amplified
    assert int(np.argmax(np.diag(r.order_params))) == 0


@pytest.mark.parametrize("depth", [1, 2])
def test_action_gradient_equals_autodiff_of_the_action(depth):
    """conv_action_grad (the solver's gradient, written by hand) against jax.grad of conv_action, at a random
    positive definite Q away from the saddle point; symmetric because Q is."""
    x, y, _, _ = _images(P=40)
    K = conv_patch_kernels(x, activation="erf", patches=(4,), weight_var=1.0)[0]
    rng = np.random.default_rng(1)
    B = rng.standard_normal((4, 4))
    Q = jnp.asarray(np.eye(4) + 0.2 * B @ B.T)
    args = (K, jnp.asarray(y), 0.05, 7.0, 1.3, depth)
    ours = CR.conv_action_grad(Q, *args)
    reference = jax.grad(CR.conv_action)(Q, *args)
    np.testing.assert_allclose(ours, 0.5 * (reference + reference.T), rtol=1e-10, atol=1e-12 * float(jnp.abs(ours).max()))
    np.testing.assert_allclose(ours, ours.T, rtol=0, atol=1e-14 * float(jnp.abs(ours).max()))
    with pytest.raises(ValueError, match="symmetric positive definite"):
        CR.conv_action_grad(Q - 2.0 * jnp.eye(4) * float(jnp.linalg.eigvalsh(Q).max()), *args)
    with pytest.raises(ValueError, match="symmetric positive definite"):
        CR.conv_action_grad(Q.at[0, 1].add(0.1), *args)


@pytest.mark.parametrize(
    "change,match",
    [
        (dict(channels=0), "channels"),
        (dict(temperature=0.0), "temperature"),
        (dict(weight_var=[1.0, 1.0, 1.0]), "weight_var"),
        (dict(patches=3), "divisible"),
        (dict(patches=(2, 2), channels=2), "channels >= final positions"),
    ],
)
def test_bad_input(change, match):
    x, y, x0, y0 = _images(P=10, P_test=3)
    kw = dict(activation="erf", patches=4, channels=10, temperature=0.1) | change
    with pytest.raises(ValueError, match=match):
        CR.conv_theory(x, y, x0, y0, **kw)
    with pytest.raises(ValueError, match="P_test >= 1"):
        CR.conv_theory(x, y, x0[:0], y0[:0], activation="erf", patches=4, channels=10, temperature=0.1)


def test_deprecated_priors_warn_and_give_the_same_numbers():
    x, y, x0, y0 = _images(P=10, P_test=3)
    kw = dict(activation="erf", patches=4, channels=10, temperature=0.1)
    new = CR.conv_theory(x, y, x0, y0, weight_var=[1 / 1.3, 1 / 0.7], **kw)
    with pytest.warns(DeprecationWarning, match="pass weight_var = 1/λ"):
        old = CR.conv_theory(x, y, x0, y0, priors=[1.3, 0.7], **kw)
    for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(old), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("patches", [4, (2, 2)])
def test_grid_equals_single_calls_and_flags_what_does_not_converge(patches):
    """Every point of the (channels, temperature) grid, solved from its neighbour's solution, is the single call's
    saddle point (to the solver's tolerance, 1e-10 on max|Q∇𝒮Q|/N_c), with its prediction; a grid that cannot
    converge flags its points and gives NaN, not numbers."""
    x, y, x0, y0 = _images()
    kw = dict(activation="erf", patches=patches)
    channels, temperatures = (12.0, 40.0, 1e4), (0.02, 0.2)
    grid = CR.conv_theory_grid(x, y, x0, y0, channels=channels, temperature=temperatures, **kw)
    assert grid.order_params.shape == (3, 2, 4, 4) and bool(jnp.all(grid.converged))
    for i, Nc in enumerate(channels):
        for j, T in enumerate(temperatures):
            single = CR.conv_theory(x, y, x0, y0, channels=Nc, temperature=T, **kw)
            np.testing.assert_allclose(grid.order_params[i, j], single.order_params, rtol=1e-7, atol=1e-9)
            np.testing.assert_allclose(grid.test_loss[i, j], single.test_loss, rtol=1e-8)
            np.testing.assert_allclose(grid.bias2[i, j], single.bias2, rtol=1e-8)
    stuck = CR.conv_theory_grid(x, y, x0, y0, channels=channels, temperature=temperatures, max_iter=1, **kw)
    assert not bool(jnp.any(stuck.converged)) and bool(jnp.all(jnp.isnan(stuck.test_loss)))
    assert bool(jnp.all(jnp.isfinite(stuck.residual)))
    with pytest.raises(ValueError, match="channels"):
        CR.conv_theory_grid(x, y, x0, y0, channels=(10.0, -1.0), temperature=0.1, **kw)
    with pytest.raises(ValueError, match="temperature"):
        CR.conv_theory_grid(x, y, x0, y0, channels=10.0, temperature=(0.1, 0.0), **kw)
    for empty in (dict(channels=(), temperature=0.1), dict(channels=10.0, temperature=())):
        with pytest.raises(ValueError, match="is empty"):
            CR.conv_theory_grid(x, y, x0, y0, **empty, **kw)


def test_a_second_call_with_other_values_compiles_nothing(compiles):
    """conv_theory and its grid are compiled once per (shapes, φ, patches): other channels, temperatures and weight
    variances reuse the compiled programs (counted from JAX's backend-compile events)."""
    x, y, x0, y0 = _images(P=12, P_test=4)
    kw = dict(activation="erf", patches=4)
    CR.conv_theory(x, y, x0, y0, channels=10.0, temperature=0.05, weight_var=[1.0, 1.0], **kw)
    CR.conv_theory_grid(x, y, x0, y0, channels=(10.0, 20.0), temperature=0.05, weight_var=[1.0, 1.0], **kw)
    compiles.clear()
    CR.conv_theory(x, y, x0, y0, channels=25.0, temperature=0.01, weight_var=[0.7, 1.3], **kw)
    CR.conv_theory_grid(x, y, x0, y0, channels=(30.0, 5.0), temperature=0.2, weight_var=[0.7, 1.3], **kw)
    assert not compiles, f"{len(compiles)} programs compiled again"
