"""theory.nngp and theory.activations against independent formulas, quadrature, Monte Carlo and limits."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deeptheory.theory.activations import ACTIVATIONS, _arccos, _arcsin, get_activation
from deeptheory.theory.nngp import nngp_diag, nngp_kernel

# ----------------------------------------------------------------------------------------------
# An independent NumPy reference: per-entry formulas written from the papers' angle form
# (Cho & Saul 2009 eq. 6; Williams 1997 eq. 11), full P×P matrix at every layer, float64.


def _gh(n):
    z, w = np.polynomial.hermite_e.hermegauss(n)
    return z, w / math.sqrt(2 * math.pi)


def _np_quadrature(phi, a, c, b, n=160):
    """E[φ(u)φ(v)] with u, v built from the eigen-decomposition of the 2×2 covariance (not the
    Cholesky construction the library uses), so it is an independent quadrature."""
    z, w = _gh(n)
    out = np.empty(np.broadcast(a, c, b).shape)
    for idx in np.ndindex(out.shape):
        ai, ci, bi = (np.broadcast_to(t, out.shape)[idx] for t in (a, c, b))
        evals, evecs = np.linalg.eigh(np.array([[ai, ci], [ci, bi]]))
        s = np.sqrt(np.maximum(evals, 0))
        z1, z2 = np.meshgrid(z, z, indexing="ij")
        u = evecs[0, 0] * s[0] * z1 + evecs[0, 1] * s[1] * z2
        v = evecs[1, 0] * s[0] * z1 + evecs[1, 1] * s[1] * z2
        out[idx] = np.sum(np.outer(w, w) * phi(u) * phi(v))
    return out


def _np_pair(name, a, c, b):
    if name == "linear":
        return c
    if name == "relu":
        theta = np.arccos(np.clip(c / np.sqrt(a * b), -1, 1))
        return np.sqrt(a * b) / (2 * np.pi) * (np.sin(theta) + (np.pi - theta) * np.cos(theta))
    if name == "erf":
        return 2 / np.pi * np.arcsin(2 * c / np.sqrt((1 + 2 * a) * (1 + 2 * b)))
    from scipy.special import erf

    phi = {"gelu": lambda z: z * 0.5 * (1 + erf(z / np.sqrt(2))), "tanh": np.tanh}[name]
    return _np_quadrature(phi, a, c, b)


def _np_nngp(x1, x2, name, depth, sw2, sb2):
    x = np.concatenate([x1, x2])
    K = sw2[0] * x @ x.T / x.shape[1] + sb2[0]
    for l in range(1, depth + 1):
        q = np.diag(K)
        K = sw2[l] * _np_pair(name, q[:, None], K, q[None, :]) + sb2[l]
    return K[: len(x1), len(x1) :]


@pytest.fixture
def points():
    rng = np.random.default_rng(0)
    return rng.normal(size=(9, 6)), rng.normal(size=(4, 6)) * 1.5


@pytest.mark.parametrize("name", ["linear", "relu", "erf"])
@pytest.mark.parametrize("depth", [1, 2, 5, 10])
def test_closed_forms_match_independent_reference(points, name, depth):
    x1, x2 = points
    rng = np.random.default_rng(depth)
    sw2, sb2 = rng.uniform(0.5, 2.0, depth + 1), rng.uniform(0.0, 0.3, depth + 1)
    ref = _np_nngp(x1, x2, name, depth, sw2, sb2)
    ours = np.asarray(nngp_kernel(x1, x2, activation=name, depth=depth, weight_var=sw2, bias_var=sb2))
    # Same formulas in float64: only rounding differs, amplified mildly by the recursion.
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-13 * np.abs(ref).max())


@pytest.mark.parametrize("name", ["gelu", "tanh"])
def test_smooth_activations_match_independent_quadrature(points, name):
    x1, x2 = points
    x2 = x2 / 1.5  # input variances <= 3: the range where DEFAULT_QUAD_POINTS is documented at ~1e-8
    sw2, sb2 = [1.2, 1.6, 0.8], [0.1, 0.0, 0.2]
    ref = _np_nngp(x1[:4], x2[:3], name, 2, sw2, sb2)
    ours = np.asarray(nngp_kernel(x1[:4], x2[:3], activation=name, depth=2, weight_var=sw2, bias_var=sb2))
    # Both quadratures converge spectrally for these analytic φ; 160 nodes are at rounding level,
    # the library's 96-node tanh default at ~1e-8 for these variances (<= 3, |ρ| close to 1).
    np.testing.assert_allclose(ours, ref, rtol=1e-6 if name == "tanh" else 1e-10)


@pytest.mark.parametrize("name", ["erf", "gelu", "linear"])
def test_quadrature_agrees_with_closed_form_for_smooth_activations(name):
    a, c, b = jnp.array([1.7, 0.3, 2.5]), jnp.array([0.9, -0.25, 2.4]), jnp.array([1.1, 0.4, 2.5])
    closed = get_activation(name).pair(a, c, b)
    quad = get_activation(name, quad_points=100).pair(a, c, b)
    np.testing.assert_allclose(quad, closed, rtol=1e-9)
    np.testing.assert_allclose(get_activation(name, 100).diag(a), get_activation(name).diag(a), rtol=1e-9)


def test_relu_quadrature_converges_to_closed_form_at_the_kink_rate():
    """Gauss–Hermite converges only algebraically for the ReLU kink (~1/n): check the rate."""
    a, c, b = jnp.array([1.7, 0.5, 2.1]), jnp.array([0.9, -0.3, 2.0]), jnp.array([1.1, 0.6, 2.1])
    closed = np.asarray(get_activation("relu").pair(a, c, b))
    scale = np.sqrt(np.asarray(a * b))
    err = {n: np.abs(np.asarray(get_activation("relu", n).pair(a, c, b)) - closed) / scale for n in (80, 160)}
    assert np.all(err[160] < 0.7 * err[80])
    assert np.all(err[160] < 1e-3)


@pytest.mark.parametrize("name", ["linear", "relu", "erf", "gelu", "tanh"])
def test_gaussian_expectation_matches_monte_carlo(name):
    """F_φ(a, c, b) = E[φ(u)φ(v)] checked by 10^6 Gaussian draws, within 5 standard errors."""
    a, c, b = 1.3, -0.6, 0.8
    cov = np.array([[a, c], [c, b]])
    uv = np.random.default_rng(1).multivariate_normal([0, 0], cov, size=1_000_000)
    act = get_activation(name)
    prod = np.asarray(act.fn(jnp.asarray(uv[:, 0])) * act.fn(jnp.asarray(uv[:, 1])))
    se = prod.std() / math.sqrt(len(prod))
    assert abs(float(act.pair(jnp.array(a), jnp.array(c), jnp.array(b))) - prod.mean()) < 5 * se
    sq = np.asarray(act.fn(jnp.asarray(uv[:, 0])) ** 2)
    assert abs(float(act.diag(jnp.array(a))) - sq.mean()) < 5 * sq.std() / math.sqrt(len(sq))


def test_linear_network_is_a_product_of_variances():
    x = np.random.default_rng(2).normal(size=(5, 3))
    K = nngp_kernel(x, activation="linear", depth=4, weight_var=[2.0, 0.5, 1.5, 3.0, 0.25])
    np.testing.assert_allclose(K, 2.0 * 0.5 * 1.5 * 3.0 * 0.25 * x @ x.T / 3, rtol=1e-13)


def test_depth_zero_is_the_input_kernel():
    x = np.random.default_rng(3).normal(size=(5, 4))
    K = nngp_kernel(x, activation="erf", depth=0, weight_var=1.7, bias_var=0.3)
    np.testing.assert_allclose(K, 1.7 * x @ x.T / 4 + 0.3, rtol=1e-13)


def test_relu_correlation_map_on_the_sphere():
    """Unit-variance inputs, σ_w² = 2, no bias: variances stay 1 and ρ ↦ J_1(ρ)/π (Cho & Saul)."""
    x = np.random.default_rng(4).normal(size=(6, 8))
    x *= np.sqrt(8) / np.linalg.norm(x, axis=1, keepdims=True)
    rho = x @ x.T / 8
    for _ in range(3):
        rho = (np.sqrt(1 - np.clip(rho, -1, 1) ** 2) + (np.pi - np.arccos(np.clip(rho, -1, 1))) * rho) / np.pi
    K = nngp_kernel(x, activation="relu", depth=3, weight_var=[1.0, 2.0, 2.0, 2.0])
    np.testing.assert_allclose(K, rho, rtol=1e-12)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_blocked_equals_unblocked_and_diag_matches(name):
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(11, 4)), rng.normal(size=(7, 4))
    kw = dict(activation=name, depth=3, weight_var=[1.0, 1.5, 2.0, 0.7], bias_var=0.05)
    full = nngp_kernel(x, block_size=64, **kw)
    blocked = nngp_kernel(x, block_size=4, **kw)  # 11 = 4 + 4 + 3: a ragged remainder block
    assert bool(jnp.all(full == full.T)) and bool(jnp.all(blocked == blocked.T))
    # Quadrature kernels are symmetrised only on diagonal blocks, so blocking moves them by the
    # quadrature's own asymmetry error (~1e-8); closed forms agree to rounding.
    rtol = 1e-12 if get_activation(name).closed_form else 1e-6
    np.testing.assert_allclose(blocked, full, rtol=rtol)
    np.testing.assert_allclose(nngp_kernel(x, x, block_size=3, **kw), full, rtol=rtol)
    np.testing.assert_allclose(nngp_kernel(x, y, block_size=3, **kw), nngp_kernel(x, y, **kw), rtol=1e-12)
    np.testing.assert_allclose(nngp_diag(x, **kw), jnp.diagonal(full), rtol=1e-14)


def test_dtypes_follow_the_inputs():
    x64 = np.random.default_rng(6).normal(size=(5, 3))
    assert nngp_kernel(x64.astype(np.float32), activation="relu", depth=2).dtype == jnp.float32
    assert nngp_kernel(x64, activation="relu", depth=2).dtype == jnp.float64
    assert nngp_kernel(np.ones((3, 2), np.uint8), activation="erf", depth=1).dtype == jnp.float64


def test_float64_inputs_are_computed_in_float64_when_x64_is_off():
    """With the flag off the arithmetic stays float64; only the result is rounded, once, to float32."""
    x = np.random.default_rng(7).normal(size=(6, 3))
    expected = np.asarray(nngp_kernel(x, activation="erf", depth=6))
    with jax.enable_x64(False):
        K = nngp_kernel(x, activation="erf", depth=6)
    assert K.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(K), expected.astype(np.float32))


def test_zero_input_gives_no_nan():
    x = np.zeros((3, 4))
    x[1] = 1.0
    for name in ACTIVATIONS:
        K = nngp_kernel(x, activation=name, depth=2, bias_var=[0.0, 0.1, 0.0])
        assert bool(jnp.all(jnp.isfinite(K))), name


def test_gradients_are_finite_on_the_diagonal_and_jit_vmap_work():
    x = jnp.asarray(np.random.default_rng(8).normal(size=(5, 3)))

    def total(x, s):
        return jnp.sum(nngp_kernel(x, activation="relu", depth=3, weight_var=s))

    g_x, g_s = jax.jit(jax.grad(total, argnums=(0, 1)))(x, jnp.array([1.0, 2.0, 1.5, 1.0]))
    assert bool(jnp.all(jnp.isfinite(g_x))) and bool(jnp.all(jnp.isfinite(g_s)))
    # d/dσ² of a ReLU kernel without bias is K/σ² (degree-one homogeneity), layer by layer.
    s = jnp.array([1.0, 2.0, 1.5, 1.0])
    np.testing.assert_allclose(g_s, total(x, s) / s, rtol=1e-12)
    scales = jnp.linspace(0.5, 2.0, 4)
    batched = jax.vmap(lambda c: nngp_kernel(x, activation="erf", depth=2, weight_var=c))(scales)
    np.testing.assert_allclose(batched[2], nngp_kernel(x, activation="erf", depth=2, weight_var=scales[2]))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(activation="relu", depth=2, weight_var=-1.0), "weight_var must be finite and >= 0"),
        (dict(activation="relu", depth=2, bias_var=[0.1, -0.1, 0.0]), "bias_var must be finite and >= 0"),
        (dict(activation="relu", depth=2, weight_var=[1.0, 1.0]), "length depth \\+ 1 = 3"),
        (dict(activation="relu", depth=-1), "depth .* integer >= 0"),
        (dict(activation="relu", depth=1.5), "depth .* integer >= 0"),
        (dict(activation="softsign", depth=1), "unknown activation 'softsign'"),
        (dict(activation="relu", depth=1, block_size=0), "block_size"),
        (dict(activation="relu", depth=1, quad_points=1), "quad_points"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        nngp_kernel(np.ones((3, 2)), **kwargs)


def test_bad_shapes_raise_clear_errors():
    with pytest.raises(ValueError, match="same number of features"):
        nngp_kernel(np.ones((3, 2)), np.ones((4, 5)), activation="relu", depth=1)
    with pytest.raises(ValueError, match="must be a \\(P, d\\) array"):
        nngp_kernel(np.ones(3), activation="relu", depth=1)
    with pytest.raises(ValueError, match="zero features"):
        nngp_kernel(np.ones((3, 0)), activation="relu", depth=1)
    assert nngp_kernel(np.ones((0, 2)), np.ones((4, 2)), activation="relu", depth=1).shape == (0, 4)


def test_callable_activation_uses_quadrature():
    def softplus(z):
        return jnp.logaddexp(z, 0.0)

    x = np.random.default_rng(9).normal(size=(4, 3))
    K = nngp_kernel(x, activation=softplus, depth=1)
    ref = _np_nngp(x, x, "linear", 0, [1.0], [0.0])  # K^0
    q = np.diag(ref)
    expected = _np_quadrature(lambda z: np.logaddexp(z, 0), q[:, None], ref, q[None, :])
    np.testing.assert_allclose(K, expected, rtol=1e-9)


@pytest.mark.parametrize("ours, xla, exact", [(_arcsin, jnp.arcsin, np.arcsin), (_arccos, jnp.arccos, np.arccos)])
def test_float32_inverse_trig_is_as_accurate_as_xla_and_float64_is_untouched(ours, xla, exact):
    """The Cephes float32 arcsin/arccos of the closed forms: on a dense grid of [−1, 1] every value is within 3 ulps
    of float64 (the reduction π/2 − 2 asin √((1 − x)/2) just above 1/2 costs 2.4), the largest errors within 2× XLA's
    own, the endpoints and 0 exact, the slope at 0 ±1 (the odd reduction keeps it), and float64 goes to jnp
    unchanged, bitwise."""
    x = jnp.linspace(-1.0, 1.0, 1_000_001, dtype=jnp.float32)
    reference = exact(np.asarray(x, np.float64))
    ulp = np.spacing(np.abs(reference).astype(np.float32)).astype(np.float64)
    nonzero = reference != 0
    bounds = []
    for fn in (ours, xla):
        error = np.abs(np.asarray(fn(x), np.float64) - reference)
        bounds.append(np.array([error.max(), (error[nonzero] / np.abs(reference[nonzero])).max()]))
        if fn is ours:
            assert np.all(error <= 3 * ulp), float((error / ulp).max())
    assert np.all(bounds[0] <= 2 * bounds[1]), bounds
    np.testing.assert_array_equal(ours(jnp.asarray([-1.0, 0.0, 1.0], jnp.float32)),
                                  exact(np.asarray([-1.0, 0.0, 1.0])).astype(np.float32))
    slope = float(jax.grad(ours)(jnp.float32(0.0)))
    assert slope == (1.0 if ours is _arcsin else -1.0)
    x64 = np.random.default_rng(8).uniform(-1, 1, 257)
    np.testing.assert_array_equal(ours(jnp.asarray(x64, jnp.float64)), xla(jnp.asarray(x64, jnp.float64)))


def test_float32_arcsin_derivative_is_the_closed_form():
    """The float32 arcsin carries d asin x = dx/√(1 − x²) as its rule (not the derivative of the reduction's selects
    and polynomial): equal to float64's 1/√(1 − x²) to float32 rounding on (−1, 1), second derivative included."""
    x = jnp.linspace(-0.999, 0.999, 2001, dtype=jnp.float32)
    first = np.asarray(jax.vmap(jax.grad(_arcsin))(x), np.float64)
    second = np.asarray(jax.vmap(jax.grad(jax.grad(_arcsin)))(x), np.float64)
    x64 = np.asarray(x, np.float64)
    np.testing.assert_allclose(first, 1.0 / np.sqrt(1.0 - x64**2), rtol=1e-5)
    np.testing.assert_allclose(second, x64 / (1.0 - x64**2) ** 1.5, rtol=1e-4, atol=1e-4)
