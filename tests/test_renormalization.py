"""Kernel renormalization of deep MLPs: stationarity, limits, closed forms, variants, eigenbasis, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deeptheory.theory import renormalization as R
from deeptheory.theory.activations import get_activation, mean_activation
from deeptheory.theory.gp import gp_posterior
from deeptheory.theory.nngp import covariance_chain, nngp_diag, nngp_kernel


def _data(seed=0, P=200, N0=50, P_test=100, noise=0.3):
    """The reference data set of docs/nngp_and_renormalization.md, eq. (R-18): Gaussian inputs, sign labels of a
    noisy teacher."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((P, N0))
    y = np.sign(x[:, 0] + noise * rng.standard_normal(P))
    x0 = rng.standard_normal((P_test, N0))
    return x, y, x0, np.sign(x0[:, 0])


def _kernels(x, y, x0, activation, depth, priors=1.0):
    sw2 = 1.0 / np.broadcast_to(np.asarray(priors, float), (depth + 1,))
    args = dict(activation=activation, depth=depth, weight_var=sw2)
    return nngp_kernel(x, **args), nngp_kernel(x0, x, **args), nngp_diag(x0, **args)


def _dense_action(K_R, y, T):
    """yᵀA⁻¹y + log det A by a dense solve and slogdet (independent of the Cholesky/eigenbasis code)."""
    A = K_R + T * jnp.eye(K_R.shape[0])
    return y @ jnp.linalg.solve(A, y) + jnp.linalg.slogdet(A)[1]


# ---------------------------------------------------------------------------------------------
# Saddle point


@pytest.mark.parametrize("depth,width", [(1, 100), (3, 50), (2, (40, 160))])
def test_vanilla_is_stationary_point_of_the_dense_action(depth, width):
    x, y, x0, y0 = _data()
    T = 0.01
    r = R.fc_theory(x, y, x0, y0, activation="erf", depth=depth, width=width, temperature=T)
    K, _, _ = _kernels(x, y, x0, "erf", depth)
    N = jnp.broadcast_to(jnp.asarray(width, float), (depth,))

    def action(q):
        return jnp.sum(N * (jnp.exp(q) - q)) + _dense_action(jnp.prod(jnp.exp(q)) * K, jnp.asarray(y), T)

    grad = jax.grad(action)(jnp.log(r.order_params))
    # ∂𝒮/∂log Q_l is a difference of terms of size N_l; the solve reaches ~1e-14 of that.
    np.testing.assert_array_less(np.abs(grad) / N, 1e-9)
    hess = jax.hessian(action)(jnp.log(r.order_params))
    assert np.all(np.linalg.eigvalsh(hess) > 0), "the solution must be a minimum of the action"


def test_nested_is_stationary_point_of_the_dense_action():
    x, y, x0, y0 = _data()
    T, depth, N = 0.01, 3, 50.0
    r = R.fc_theory(x, y, x0, y0, activation="erf", depth=depth, width=N, temperature=T, variant="nested")

    def action(q):
        # the nested kernel rebuilt through nngp_kernel with per-layer variances Q_l/λ_l
        K_R = nngp_kernel(x, activation="erf", depth=depth, weight_var=jnp.concatenate([jnp.ones(1), jnp.exp(q)]))
        return jnp.sum(N * (jnp.exp(q) - q)) + _dense_action(K_R, jnp.asarray(y), T)

    grad = jax.grad(action)(jnp.log(r.order_params))
    np.testing.assert_array_less(np.abs(grad) / N, 1e-9)
    assert np.all(np.linalg.eigvalsh(jax.hessian(action)(jnp.log(r.order_params))) > 0)


def test_nested_with_a_quadrature_activation_is_stationary():
    """tanh has no closed form: its kernel is Gauss–Hermite in (u, ρu + √(1 − ρ²) z), whose derivative is infinite at
    ρ = 1, the diagonal. The solver's chain takes the diagonal from the diagonal map (it had stopped on NaN tangents
    at every start). Checked by central differences of the dense action (autodiff of the dense kernel has the same
    singularity): step h = 1e-5 in log Q, truncation ~h² × (third derivative ~ N) ≈ 1e-8 and rounding
    ~1e-16 |𝒮|/h ≈ 1e-9, against a gradient that is O(N) away from the solution."""
    x, y, x0, y0 = _data()
    T, depth, N = 0.01, 2, 50.0
    r = R.fc_theory(x, y, x0, y0, activation="tanh", depth=depth, width=N, temperature=T, variant="nested")
    assert float(r.residual) <= 1e-10
    vanilla = R.fc_theory(x, y, x0, y0, activation="tanh", depth=depth, width=N, temperature=T).order_params
    assert not np.allclose(r.order_params, vanilla, rtol=1e-3)

    def action(q):
        K_R = nngp_kernel(x, activation="tanh", depth=depth, weight_var=jnp.concatenate([jnp.ones(1), jnp.exp(q)]))
        return float(jnp.sum(N * (jnp.exp(q) - q)) + _dense_action(K_R, jnp.asarray(y), T))

    q, h = np.log(np.asarray(r.order_params)), 1e-5
    grad = [(action(q + h * e) - action(q - h * e)) / (2 * h) for e in np.eye(depth)]
    np.testing.assert_array_less(np.abs(grad) / N, 1e-7)


@pytest.mark.parametrize("depth", [1, 2])
def test_noncentral_relu_is_stationary_and_differs_from_central(depth):
    x, y, x0, y0 = _data()
    x = x + 0.5  # inputs with a mean make the ReLU mean activations matter more
    x0 = x0 + 0.5
    T, N = 0.01, 60.0
    r = R.fc_theory(x, y, x0, y0, activation="relu", depth=depth, width=N, temperature=T, variant="noncentral")
    Qbar, Q = r.order_params.q_bar, r.order_params.q
    assert np.asarray(r.order_params).shape == (2, depth)  # the (2, L) array of rows (Q̄_l, Q_l)
    K, _, _ = _kernels(x, y, x0, "relu", depth)
    c_prev = nngp_diag(x, activation="relu", depth=depth - 1) if depth > 1 else jnp.sum(x * x, 1) / x.shape[1]
    mu = jnp.sqrt(c_prev / (2 * jnp.pi))

    def action(z):
        qb, qq = z[:depth], z[depth:]
        later = jnp.array([jnp.prod(qb[l + 1:]) for l in range(depth)])
        m = jnp.sum((qb - 1 / (1 + qq)) * later)
        K_R = jnp.prod(qb) * K - m * jnp.outer(mu, mu)
        return N * jnp.sum(-qb * qq + jnp.log(1 + qq)) + _dense_action(K_R, jnp.asarray(y), T)

    grad = jax.grad(action)(jnp.concatenate([Qbar, Q]))
    np.testing.assert_array_less(np.abs(grad) / N, 1e-8)
    central = R.fc_theory(x, y, x0, y0, activation="relu", depth=depth, width=N, temperature=T)
    # with the mean term the relation Q = 1/Q̄ − 1 of the central theory no longer holds exactly
    assert np.max(np.abs(Q - (1 / Qbar - 1))) > 1e-4
    assert abs(float(r.test_loss - central.test_loss)) > 1e-6


def test_noncentral_reduces_to_vanilla_for_odd_activation():
    x, y, x0, y0 = _data()
    kw = dict(activation="erf", depth=2, width=80, temperature=0.01)
    nc = R.fc_theory(x, y, x0, y0, variant="noncentral", **kw)
    van = R.fc_theory(x, y, x0, y0, **kw)
    np.testing.assert_allclose(nc.order_params.q_bar, van.order_params, rtol=1e-9)
    np.testing.assert_allclose(nc.order_params.q, 1 / van.order_params - 1, rtol=1e-8)
    np.testing.assert_allclose(nc.test_loss, van.test_loss, rtol=1e-9)


def test_one_layer_two_variable_form():
    x, y, x0, y0 = _data()
    K, K0, k0 = _kernels(x, y, x0, "erf", 1)
    sp = R.spectrum(K, jnp.asarray(y), K0, k0, jnp.asarray(y0))
    Q, Qbar, ok = R.one_layer_order_params(sp, 100.0, 0.01)
    assert bool(ok)
    g = jax.grad(R.one_layer_action, argnums=(0, 1))(Q, Qbar, 100.0, 0.01, sp)
    np.testing.assert_array_less(np.abs(np.array(g)) / 100.0, 1e-10)
    r = R.fc_theory(x, y, x0, y0, activation="erf", depth=1, width=100, temperature=0.01)
    np.testing.assert_allclose(Qbar, r.order_params[0], rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# Limits and closed forms


@pytest.mark.parametrize("depth,width", [(1, 100), (3, 50), (2, 400)])
def test_zero_temperature_closed_form(depth, width):
    x, y, x0, y0 = _data()
    T = 1e-9
    r = R.fc_theory(x, y, x0, y0, activation="erf", depth=depth, width=width, temperature=T)
    K, _, _ = _kernels(x, y, x0, "erf", depth)
    s = float(y @ np.linalg.solve(np.asarray(K), y))
    P = len(y)
    Q = float(R.zero_temperature_order_param(s / P, P / width, depth))
    # the T → 0 formula drops O(T/k_min) corrections; K's smallest eigenvalue here is ~1e-2
    np.testing.assert_allclose(r.order_params, Q, rtol=1e-6)
    # and the closed form is the root of the polynomial Q^L (Q − 1 + α) − α s/P, found independently
    alpha = P / width
    coeffs = np.zeros(depth + 2)
    coeffs[0], coeffs[1], coeffs[-1] = 1.0, alpha - 1.0, -alpha * s / P
    real = [z.real for z in np.roots(coeffs) if abs(z.imag) < 1e-9 and z.real > max(0, 1 - alpha)]
    np.testing.assert_allclose(Q, real, rtol=1e-10)


def test_reference_values():
    """Reference values (docs/nngp_and_renormalization.md, eq. (R-18)): erf, P = 200, N_0 = 50, T → 0:
    L = 1, N = 100 → 3.79470; L = 3, N = 50 → 1.97771 (data recipe: rng(0) Gaussian inputs, sign of a noisy first
    coordinate)."""
    x, y, x0, y0 = _data()
    q1 = R.fc_theory(x, y, x0, y0, activation="erf", depth=1, width=100, temperature=1e-9).order_params
    q3 = R.fc_theory(x, y, x0, y0, activation="erf", depth=3, width=50, temperature=1e-9).order_params
    np.testing.assert_allclose(q1, 3.79470, atol=6e-6)
    np.testing.assert_allclose(q3, 1.97771, atol=6e-6)


@pytest.mark.parametrize("variant", ["vanilla", "nested"])
def test_infinite_width_gives_gp(variant):
    x, y, x0, y0 = _data(P=80)
    for N in (1e4, 1e6):
        r = R.fc_theory(x, y, x0, y0, activation="erf", depth=2, width=N, temperature=0.05, variant=variant)
        # Q − 1 = −g/N with |g| <= P + yᵀA⁻¹y: the departure is O(1/N)
        np.testing.assert_array_less(np.abs(r.order_params - 1), 10 * (80 + float(y @ y) / 0.05) / N)
    np.testing.assert_allclose(r.mean, r.nngp.mean, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(r.test_loss, r.nngp.test_loss, rtol=1e-3)


@pytest.mark.parametrize("activation", ["relu", "linear"])
def test_vanilla_equals_nested_for_homogeneous_activations(activation):
    x, y, x0, y0 = _data()
    kw = dict(activation=activation, depth=3, width=(60, 90, 120), temperature=0.02, weight_var=[1.0, 0.5, 2.0, 1 / 1.5])
    van, nes = (R.fc_theory(x, y, x0, y0, variant=v, **kw) for v in ("vanilla", "nested"))
    np.testing.assert_allclose(nes.order_params, van.order_params, rtol=1e-8)
    np.testing.assert_allclose(nes.test_loss, van.test_loss, rtol=1e-8)
    np.testing.assert_allclose(nes.var, van.var, rtol=1e-7, atol=1e-12)


def test_vanilla_differs_from_nested_for_erf():
    x, y, x0, y0 = _data()
    kw = dict(activation="erf", depth=3, width=50, temperature=0.01)
    van, nes = (R.fc_theory(x, y, x0, y0, variant=v, **kw) for v in ("vanilla", "nested"))
    assert np.max(np.abs(nes.order_params - van.order_params)) > 1e-2
    assert not np.allclose(nes.order_params, nes.order_params[0])  # nested Q_l depend on the layer


def test_deep_linear_network_li_sompolinsky():
    """Deep linear networks (Li & Sompolinsky 2021): at T → 0 the posterior mean is the GP's (independent of the
    renormalization) and the variance is the GP's times Π u_l = Q^L, with Q^L (Q − 1 + α) = α s/P."""
    x, y, x0, y0 = _data(P=40, N0=60)  # P < N_0 so the linear kernel has full rank
    depth, N, T = 3, 20.0, 1e-10
    r = R.fc_theory(x, y, x0, y0, activation="linear", depth=depth, width=N, temperature=T)
    np.testing.assert_allclose(r.mean, r.nngp.mean, rtol=1e-6, atol=1e-8)
    scale = float(np.prod(r.order_params))
    np.testing.assert_allclose(r.var, scale * r.nngp.var, rtol=1e-5, atol=1e-12)
    C = x @ x.T / x.shape[1]
    s = float(y @ np.linalg.solve(C, y))
    np.testing.assert_allclose(r.order_params, R.zero_temperature_order_param(s / 40, 40 / N, depth), rtol=1e-7)
    assert r.order_params[0] > 1  # α = 2 > 1 with s/P > 1: the kernel is expanded


# ---------------------------------------------------------------------------------------------
# Eigenbasis


def test_eigenbasis_equals_dense_prediction_and_grid_equals_pointwise():
    x, y, x0, y0 = _data()
    K, K0, k0 = _kernels(x, y, x0, "erf", 2)
    sp = R.spectrum(K, jnp.asarray(y), K0, k0, jnp.asarray(y0))
    for scale, T in [(0.3, 0.01), (2.5, 1e-4)]:
        e = R.eigen_prediction(scale, T, sp)
        d = R.kernel_prediction(scale * K, scale * K0, scale * k0, jnp.asarray(y), jnp.asarray(y0), T)
        np.testing.assert_allclose(e.mean, d.mean, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(e.var, d.var, rtol=1e-6, atol=1e-10)
        np.testing.assert_allclose(e.test_loss, d.test_loss, rtol=1e-9)
    widths, temps = [30.0, 100.0, 1000.0], [1e-3, 0.1]
    grid = R.fc_theory_grid(x, y, x0, y0, activation="erf", depth=2, width=widths, temperature=temps)
    assert bool(jnp.all(grid.converged))
    for i, N in enumerate(widths):
        for j, T in enumerate(temps):
            r = R.fc_theory(x, y, x0, y0, activation="erf", depth=2, width=N, temperature=T)
            np.testing.assert_allclose(grid.order_params[i, j], r.order_params[0], rtol=1e-10)
            np.testing.assert_allclose(grid.test_loss[i, j], r.test_loss, rtol=1e-8)
            np.testing.assert_allclose(grid.bias2[i, j], r.bias2, rtol=1e-8)


def test_metastability_is_detected_on_a_two_scale_spectrum():
    """Two groups of modes 5 decades apart, a weak target on the strong modes and a strong one on the weak modes,
    narrow network (P/N ≈ 26): the action has two minima, one where the renormalized kernel resolves the weak
    modes (c k_weak ≳ T) and one where it does not. Both are found and the lower is chosen. (Found by a random
    search over two-group spectra; about 1 in 20 such spectra is bistable at small N.)"""
    k = jnp.concatenate([jnp.ones(50), jnp.full(50, 1.83e-5)])
    y2 = jnp.concatenate([jnp.full(50, 3.57e-4), jnp.full(50, 0.617)])
    sp = R.Spectrum(k, y2, jnp.sqrt(y2), jnp.zeros((1, 100)), jnp.ones(1), jnp.zeros(1))
    T, N = 8.53e-4, 3.80
    sol = R.solve_vanilla(sp, jnp.array([N]), T)
    assert bool(sol.converged)
    assert int(sol.n_minima) == 2
    finite = np.isfinite(np.asarray(sol.minima_actions))
    minima = np.asarray(sol.minima)[finite]
    assert abs(np.log(minima[0, 0] / minima[1, 0])) > 1.0  # two distinct states, not one root counted twice
    for Q in minima:
        q = jnp.log(jnp.asarray(Q))
        grad = jax.grad(lambda q: R.vanilla_action(jnp.exp(q), jnp.array([N]), T, sp))(q)
        np.testing.assert_array_less(np.abs(grad) / N, 1e-8)
        assert float(jax.hessian(lambda q: R.vanilla_action(jnp.exp(q), jnp.array([N]), T, sp))(q)[0, 0]) > 0
    assert float(sol.action) == float(np.min(np.asarray(sol.minima_actions)))


# ---------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    "change,match",
    [
        (dict(width=0), "width"),
        (dict(width=[10, 20]), "width"),
        (dict(temperature=0.0), "temperature"),
        (dict(temperature=-1.0), "temperature"),
        (dict(weight_var=[1.0, 1.0]), "weight_var"),
        (dict(weight_var=[1.0, -1.0, 1.0, 1.0]), "weight_var"),
        (dict(variant="full"), "variant"),
        (dict(depth=0), "depth"),
    ],
)
def test_bad_input(change, match):
    x, y, x0, y0 = _data(P=20, P_test=5)
    kw = dict(activation="erf", depth=3, width=10, temperature=0.1, weight_var=1.0) | change
    with pytest.raises(ValueError, match=match):
        R.fc_theory(x, y, x0, y0, **kw)


def test_bad_data():
    x, y, x0, y0 = _data(P=20, P_test=5)
    kw = dict(activation="erf", depth=1, width=10, temperature=0.1)
    with pytest.raises(ValueError, match="P_test >= 1"):
        R.fc_theory(x, y, x0[:0], y0[:0], **kw)
    with pytest.raises(ValueError, match="one scalar target"):
        R.fc_theory(x, y[:-1], x0, y0, **kw)
    with pytest.raises(ValueError, match="same input dimension"):
        R.fc_theory(x, y, x0[:, :3], y0, **kw)
    with pytest.raises(ValueError, match="NaN"):
        R.fc_theory(np.where(x > 2, np.nan, x), y, x0, y0, **kw)


def test_non_convergence_raises_with_the_residual():
    x, y, x0, y0 = _data(P=50)
    with pytest.raises(R.ConvergenceError, match="residual"):
        R.fc_theory(x, y, x0, y0, activation="erf", depth=2, width=20, temperature=0.01, variant="nested", max_iter=0)


@pytest.mark.parametrize(("activation", "variant", "depth"),
                         [("erf", "vanilla", 2), ("erf", "nested", 2), ("relu", "noncentral", 2), ("relu", "nested", 1)])
def test_renormalized_kernel_reproduces_the_theory_prediction(activation, variant, depth):
    """GP regression with `renormalized_kernel` on [train; test] is the predictor `fc_theory` returns."""
    x, y, x0, y0 = _data(P=80, N0=20, P_test=30)
    weight_var = [1.0, 1 / 1.3, 1 / 0.8][: depth + 1]
    th = R.fc_theory(x, y, x0, y0, activation=activation, depth=depth, width=60, temperature=0.05,
                     weight_var=weight_var, variant=variant)
    K_all = R.renormalized_kernel(np.concatenate([x, x0]), activation=activation, depth=depth,
                                  order_params=th.order_params, weight_var=weight_var, variant=variant)
    post = gp_posterior(K_all[:80, :80], K_all[80:, :80], jnp.diagonal(K_all)[80:], jnp.asarray(y), noise=0.05)
    np.testing.assert_allclose(post.mean, th.mean, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(post.var, th.var, rtol=1e-8, atol=1e-10)
    with pytest.raises(ValueError, match="order parameters have shape"):
        R.renormalized_kernel(x, activation=activation, depth=depth, order_params=np.ones(depth + 1), variant=variant)


def test_deprecated_priors_warn_and_give_the_same_numbers():
    """priors= (precisions λ) is converted once, σ² = 1/λ: the same bits as weight_var = 1/λ, and a warning."""
    x, y, x0, y0 = _data(P=30, P_test=5)
    lam = [1.0, 1.3, 0.8]
    kw = dict(activation="relu", depth=2, width=40, temperature=0.05, variant="noncentral")
    new = R.fc_theory(x, y, x0, y0, weight_var=[1 / v for v in lam], **kw)
    with pytest.warns(DeprecationWarning, match=r"priors \(precisions λ\) is deprecated; pass weight_var = 1/λ"):
        old = R.fc_theory(x, y, x0, y0, priors=lam, **kw)
    for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(old), strict=True):
        np.testing.assert_array_equal(a, b)
    kernel_kw = dict(activation="relu", depth=2, order_params=new.order_params, variant="noncentral")
    with pytest.warns(DeprecationWarning, match="pass weight_var"):
        np.testing.assert_array_equal(R.renormalized_kernel(x, priors=lam, **kernel_kw),
                                      R.renormalized_kernel(x, weight_var=[1 / v for v in lam], **kernel_kw))
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="priors"):
        R.fc_theory(x, y, x0, y0, priors=[1.0, 1.0], **kw)
    with pytest.raises(ValueError, match="weight_var .* only"):
        R.fc_theory(x, y, x0, y0, priors=lam, weight_var=1.0, **kw)


@pytest.mark.parametrize(("activation", "expected"),
                         [("erf", "nested"), ("tanh", "nested"), ("linear", "nested"), ("relu", "noncentral"),
                          ("gelu", "noncentral"), (jax.nn.softplus, "noncentral")])
def test_recommended_variant_and_auto(activation, expected):
    assert R.recommended_variant(activation) == expected
    if activation in ("erf", "relu"):
        x, y, x0, y0 = _data(P=30, P_test=5)
        kw = dict(activation=activation, depth=2, width=40, temperature=0.05)
        auto, chosen = (R.fc_theory(x, y, x0, y0, variant=v, **kw) for v in ("auto", expected))
        np.testing.assert_array_equal(np.asarray(auto.order_params), np.asarray(chosen.order_params))
    with pytest.raises(ValueError, match="unknown activation"):
        R.recommended_variant("sigmoid-ish")


# ---------------------------------------------------------------------------------------------
# Fast solvers: closed-form derivatives, the eigenbasis non-central action, compile once, grids


@pytest.mark.parametrize("depth", [3, 6])  # 6: the deep case (the curvature block grows as (L − 1)²)
def test_nested_derivatives_equal_automatic_differentiation_of_the_dense_action(depth):
    """(R-19b): value, gradient and Hessian from one Cholesky equal autodiff through a dense solve, away from the
    solution (where the Tr(B K_lm) term does not vanish)."""
    x, y, _, _ = _data(P=30, N0=10)
    T = 0.05  # L hidden layers: L weight variances after the input's
    sw2 = jnp.asarray([1.0, 1.3, 0.8, 1.1, 0.9, 1.2, 1.05])[: depth + 1]
    C = nngp_kernel(x, activation="linear", depth=0, weight_var=sw2[0])
    c = nngp_diag(x, activation="linear", depth=0, weight_var=sw2[0])
    widths = jnp.asarray([20.0, 35.0, 50.0, 25.0, 40.0, 30.0])[:depth]
    act = get_activation("erf")

    def dense(q):
        K_R = covariance_chain(C, c, c, activation=act, layer_weight_var=jnp.exp(q) * sw2[1:])[0]
        return jnp.sum(widths * (jnp.exp(q) - q)) + _dense_action(K_R, jnp.asarray(y), T)

    def derivatives(q, **step):  # as the Newton solver composes them: the Hessian from the gradient's factors
        data = R._nested_data(C, c, jnp.asarray(y), widths, T, sw2[1:])
        value, grad, factors = R._nested_gradient(q, data, act)
        return value, grad, R._nested_hessian(q, factors, data, act, **step)

    q = jnp.asarray([0.3, -0.4, 0.7, 0.2, -0.3, 0.5])[:depth]
    value, grad, hess = derivatives(q)
    np.testing.assert_allclose(value, dense(q), rtol=1e-12)
    np.testing.assert_allclose(grad, jax.grad(dense)(q), rtol=1e-9, atol=1e-9 * float(jnp.max(widths)))
    # Tr(B K_lm) by forward differences of step h: truncation error ~h relative to the block, rounding ~ε/h;
    # the other terms are exact
    exact = jax.hessian(dense)(q)
    np.testing.assert_allclose(hess, exact, rtol=1e-6, atol=1e-6 * float(jnp.max(widths)))
    # and the error is the differences' (first order in h): ten times the step, about ten times the error
    coarse = derivatives(q, step=1e-5)[2]
    fine_error, coarse_error = (float(jnp.max(jnp.abs(h - exact))) for h in (hess, coarse))
    assert 3 * fine_error < coarse_error < 30 * fine_error, (fine_error, coarse_error)


@pytest.mark.parametrize("activation", ["relu", "gelu", "tanh"])
def test_nested_hessian_by_differences_holds_for_activations_without_per_point_factors(activation):
    """The Hessian's curvature block by forward differences for activations whose chain has no prepared form
    (closed forms relu, gelu; tanh by quadrature): within 1e-6 of jax.hessian of the dense action on the same chain
    (unpacked from the triangle, whose diagonal comes from the diagonal map; differentiated forward over forward, as
    reverse mode meets the pair map's infinite derivative at ρ = 1 in the unselected branch: 0 · ∞ = NaN)."""
    x, y, _, _ = _data(P=30, N0=10)
    T, sw2 = 0.05, jnp.asarray([1.0, 1.3, 0.8, 1.1])
    C = nngp_kernel(x, activation="linear", depth=0, weight_var=sw2[0])
    c = nngp_diag(x, activation="linear", depth=0, weight_var=sw2[0])
    widths = jnp.asarray([20.0, 35.0, 50.0])
    act = get_activation(activation)
    data = R._nested_data(C, c, jnp.asarray(y), widths, T, sw2[1:])

    def dense(q):
        K_R = R._nested_chain(jnp.exp(q), data.C_M, c, data.tri, sw2[1:], act)[data.tri.full]
        return jnp.sum(widths * (jnp.exp(q) - q)) + _dense_action(K_R, jnp.asarray(y), T)

    q = jnp.asarray([0.3, -0.4, 0.7])
    value, grad, factors = R._nested_gradient(q, data, act)
    np.testing.assert_allclose(grad, jax.jacfwd(dense)(q), rtol=1e-9, atol=1e-9 * float(jnp.max(widths)))
    # forward differences of step h = 1e-6 in log Q: truncation ~h/2·|∂³𝒮| with |∂³𝒮| ~ |∂²𝒮| (the chain is a
    # smooth function of e^q): an error of ~1e-6 of the Hessian's scale
    exact = jax.jacfwd(jax.jacfwd(dense))(q)
    np.testing.assert_allclose(R._nested_hessian(q, factors, data, act), exact, rtol=0,
                               atol=2e-6 * float(jnp.max(jnp.abs(exact))))


@pytest.mark.parametrize("P", [1, 2, 7])
def test_the_packed_triangle_unpacks_to_the_matrix_and_weights_its_inner_products(P):
    """The nested solver runs its chain on the upper triangle: unpacking gives back the symmetric matrix, and the
    weights (1 on the diagonal, 2 off it) give Frobenius inner products of symmetric matrices."""
    rng = np.random.default_rng(P)
    A, B = (m + m.T for m in rng.standard_normal((2, P, P)))
    tri = R._triangle(P, jnp.float64)
    assert tri.rows.shape == (P * (P + 1) // 2,) and bool(jnp.all(tri.rows <= tri.cols))
    np.testing.assert_array_equal(np.asarray(jnp.asarray(A)[tri.rows, tri.cols][tri.full]), A)
    inner = jnp.sum(tri.weights * jnp.asarray(A)[tri.rows, tri.cols] * jnp.asarray(B)[tri.rows, tri.cols])
    np.testing.assert_allclose(inner, np.sum(A * B), rtol=1e-13)


def test_nested_starts_that_reach_one_minimum_return_it_and_cost_less():
    """`solve_nested` from the vanilla solution and from Q = 1: the second start borrows the first's Hessian and stops
    near its minimum; both rows equal each start solved alone (to the solver's accuracy), in fewer iterations."""
    x, y, x0, y0 = _data(P=60, N0=10, P_test=5)
    T, widths = 0.02, jnp.asarray([30.0, 45.0, 60.0])
    sw2 = jnp.ones(4)
    C = nngp_kernel(x, activation="linear", depth=0, weight_var=sw2[0])
    c = nngp_diag(x, activation="linear", depth=0, weight_var=sw2[0])
    van = R.fc_theory(x, y, x0, y0, activation="erf", depth=3, width=widths, temperature=T).order_params
    starts = jnp.stack([jnp.log(van), jnp.zeros(3)])
    args = (C, c, jnp.asarray(y), widths, jnp.asarray(T), sw2[1:])
    kw = dict(act=get_activation("erf"), tol=1e-10, max_iter=100)
    both = R.solve_nested(starts, *args, **kw)
    alone = [R.solve_nested(q0[None], *args, **kw) for q0 in starts]
    assert bool(jnp.all(both.converged))
    for i in range(2):
        np.testing.assert_allclose(np.exp(both.x[i]), np.exp(alone[i].x[0]), rtol=1e-9)
    np.testing.assert_array_equal(np.asarray(both.x[1]), np.asarray(both.x[0]))  # returned the first's minimum
    assert int(both.iterations[1]) < int(alone[1].iterations[0])


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_noncentral_eigenbasis_action_equals_the_dense_action(activation):
    """(R-21) by Sherman–Morrison in the eigenbasis of Θ_L equals the dense action of the rank-one-corrected kernel,
    for a shift of either sign (m > 0 and m < 0)."""
    x, y, x0, y0 = _data(P=40, N0=10)
    depth, T, N = 2, 0.02, 30.0
    sw2 = jnp.asarray([1.0, 1.2, 0.9])
    K, K0, k0 = (nngp_kernel(x, activation=activation, depth=depth, weight_var=sw2),
                 nngp_kernel(x0, x, activation=activation, depth=depth, weight_var=sw2),
                 nngp_diag(x0, activation=activation, depth=depth, weight_var=sw2))
    sp, U = R._decompose(K, jnp.asarray(y), K0, k0, jnp.asarray(y0))
    mu = mean_activation(activation, nngp_diag(x, activation=activation, depth=depth - 1, weight_var=sw2[:depth]))
    widths = jnp.full((depth,), N)
    for z in (jnp.asarray([0.2, -0.1, 0.3, 0.05]), jnp.asarray([-0.3, 0.1, -0.2, 0.4])):
        Qbar, Q = jnp.exp(z[:depth]), jnp.expm1(z[depth:])
        K_R = R._noncentral_kernel(Qbar, Q, K, jnp.outer(mu, mu), sw2[-1])
        dense = jnp.sum(widths * (-Qbar * Q + jnp.log1p(Q))) + _dense_action(K_R, jnp.asarray(y), T)
        fast = R._noncentral_action(z, sp.eigenvalues, sp.y_tilde, U.T @ mu, widths, T, sw2[-1])
        np.testing.assert_allclose(fast, dense, rtol=1e-11)
    # Where A is not positive definite (a large positive shift), value and gradient are NaN, so that the Newton
    # merit rejects the point, as a failed Cholesky would.
    args = (sp.eigenvalues, sp.y_tilde, U.T @ mu, widths, T, 50.0 * float(jnp.max(sp.eigenvalues)))
    z = jnp.asarray([0.0, 0.0, 3.0, 3.0])  # Q = e³ − 1: m = Σ(Q̄ − 1/(1 + Q)) Π Q̄ ≈ 1.9 > 0
    assert np.isnan(R._noncentral_action(z, *args))
    assert np.all(np.isnan(jax.grad(R._noncentral_action)(z, *args)))


@pytest.mark.parametrize("activation,variant", [("erf", "nested"), ("relu", "noncentral")])
def test_a_second_call_with_other_values_compiles_nothing(activation, variant, compiles):
    """The solvers are compiled once per (shapes, φ, variant): other widths, temperatures and weight variances reuse
    the compiled programs (counted from JAX's backend-compile events)."""
    x, y, x0, y0 = _data(P=24, N0=6, P_test=5)
    kw = dict(activation=activation, depth=2, variant=variant)
    R.fc_theory(x, y, x0, y0, width=(20, 30), temperature=0.05, weight_var=[1.0, 1.0, 1.0], **kw)
    compiles.clear()
    R.fc_theory(x, y, x0, y0, width=(35, 50), temperature=0.01, weight_var=[1.0, 0.7, 1.4], **kw)
    assert not compiles, f"{len(compiles)} programs compiled again"


@pytest.mark.parametrize("activation,variant", [("erf", "nested"), ("relu", "noncentral")])
def test_grid_equals_single_calls(activation, variant):
    """Every point of a nested / non-central grid (warm starts, eigenbasis prediction) equals `fc_theory` there."""
    x, y, x0, y0 = _data(P=50, N0=10, P_test=20)
    widths, temps = [25.0, 200.0], [0.003, 0.05]
    kw = dict(activation=activation, depth=2, variant=variant)
    grid = R.fc_theory_grid(x, y, x0, y0, width=widths, temperature=temps, **kw)
    assert bool(jnp.all(grid.converged))
    for i, N in enumerate(widths):
        for j, T in enumerate(temps):
            one = R.fc_theory(x, y, x0, y0, width=N, temperature=T, **kw)
            point = jax.tree.map(lambda a, i=i, j=j: a[i, j], grid.order_params)
            np.testing.assert_allclose(np.asarray(point), np.asarray(one.order_params), rtol=1e-8)
            np.testing.assert_allclose(grid.test_loss[i, j], one.test_loss, rtol=1e-8)
            np.testing.assert_allclose(grid.bias2[i, j], one.bias2, rtol=1e-8)


@pytest.mark.parametrize(("variant", "activation"), [("vanilla", "erf"), ("nested", "erf"), ("noncentral", "relu")])
def test_each_variant_reports_an_overflowing_kernel_and_a_kernel_matrix_that_is_not_positive_definite(variant,
                                                                                                      activation):
    """fc_theory computes each variant as one compiled program, where the kernels' and the Cholesky's own checks
    cannot run; the same errors must still come out (not NaN, not a misleading ConvergenceError)."""
    rng = np.random.default_rng(1)
    x, x0 = rng.standard_normal((60, 5)), rng.standard_normal((4, 5))
    y, y0 = np.sign(x[:, 0]), np.sign(x0[:, 0])
    big = x0.copy()
    big[0] *= 1e160  # |x|² overflows float64
    with pytest.raises(ValueError, match="overflowed"):
        R.fc_theory(x, y, big, y0, activation=activation, depth=2, width=50.0, temperature=1e-2, variant=variant)

    # a step function's Gauss–Hermite kernel (96 nodes) is indefinite: smallest eigenvalue ≈ −1e-2 at L = 3
    def step(z):
        return (z > 0).astype(z.dtype)

    with pytest.raises(ValueError, match="not positive definite"):
        R.fc_theory(x, y, x0, y0, activation=step, depth=3, width=50.0, temperature=1e-3, variant=variant)
