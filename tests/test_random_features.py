"""theory.random_features: deterministic equivalents against an independent parametrisation, KRR, limits and
Monte Carlo; eigenbasis learning curves against simulated training; clear errors on bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.optimize import brentq

from deeptheory.theory.random_features import (
    degrees_of_freedom,
    effective_ridge,
    krr_risk,
    learning_curve,
    loglog_slope,
    power_law_spectrum,
    power_law_target,
    preconditioner,
    rf_equivalent,
    rf_risk,
    time_bottleneck,
)


def _random_spectrum(rng, D):
    """A random spectrum (not a power law) and target, so that nothing relies on k^-s structure."""
    lam = np.sort(rng.lognormal(0.0, 2.0, D))[::-1]
    return jnp.asarray(lam), jnp.asarray(lam * rng.lognormal(0.0, 1.0, D))


# --------------------------------------------------------------------------------------------------------------
# An independent implementation in the (κ₁ = κ, κ₂ = γ) parametrisation, in NumPy/SciPy: conditional on the
# features it is KRR on the N-feature spectrum at effective ridge κ₁ with the unexplained target as noise
# (docs/random_features.md, eq. (RF-5)); the N-feature quantities come from the P = ∞ resolvent
# G(z) = κ₂ tf(κ₂), κ₂(1 − Df1(κ₂)/N) = z, by G(z) − z G'(z) (excess risk at ridge z) and df_N(z) = Df1(κ₂(z)),
# df₂,N = df_N + z df_N'(z), with the z-derivatives taken by central differences. No formula of rf_risk's
# eqs. (2)–(3) is reused.
# --------------------------------------------------------------------------------------------------------------
def _reference_rf_risk(lam, v2, N, P, ridge, noise):
    lam, v2 = np.asarray(lam), np.asarray(v2)

    def kappa2(z):  # in u = log κ: the root of κ(1 − Df1(κ)/N) = z above the point Df1 = N
        df1 = lambda u: np.sum(lam / (lam + np.exp(u)))  # noqa: E731
        u0 = brentq(lambda u: df1(u) - N, -80.0, 80.0, xtol=1e-14)
        return np.exp(brentq(lambda u: np.exp(u) * (1 - df1(u) / N) - z, u0, np.log(z + np.sum(lam) / N + 1.0),
                             xtol=1e-15))

    def G(z):
        k = kappa2(z)
        return k * np.sum(v2 / (lam + k))

    def dfN(z):
        k = kappa2(z)
        return np.sum(lam / (lam + k))

    def deriv(fn, z):
        h = 1e-5 * z
        return (fn(z + h) - fn(z - h)) / (2 * h)

    kappa1 = brentq(lambda z: z * (1 - dfN(z) / P) - ridge, ridge, ridge + np.sum(lam) / P + 1.0, rtol=1e-15)
    excess = G(kappa1) - kappa1 * deriv(G, kappa1)
    df2N = dfN(kappa1) + kappa1 * deriv(dfN, kappa1)
    return (excess + noise) / (1 - df2N / P)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_two_parametrisations_agree(seed):
    rng = np.random.default_rng(seed)
    lam, v2 = _random_spectrum(rng, 400)
    for N, P, ridge in [(50, 120, 1e-3), (150, 60, 1e-2), (99, 101, 1e-4), (30, 30, 1.0)]:
        ours = float(rf_risk(lam, v2, n_features=N, n_samples=P, ridge=ridge, noise=0.3))
        ref = _reference_rf_risk(lam, v2, N, P, ridge, 0.3)
        # the reference's central differences are accurate to ~(1e-5)² relative
        assert ours == pytest.approx(ref, rel=1e-7), (N, P, ridge)


def test_infinite_features_is_kernel_ridge_regression():
    lam, v2 = power_law_spectrum(2000, 1.5), power_law_target(2000, 2.5)
    for P, ridge in [(10, 1e-4), (100, 0.0), (500, 1e-2), (jnp.inf, 1e-3)]:
        krr = float(krr_risk(lam, v2, n_samples=P, ridge=ridge, noise=0.1))
        assert float(rf_risk(lam, v2, n_features=jnp.inf, n_samples=P, ridge=ridge, noise=0.1)) == pytest.approx(
            krr, rel=1e-10)
        # and the finite-N risk approaches it at the rate O(1/N) of the κ₂ correction
        gaps = [abs(float(rf_risk(lam, v2, n_features=N, n_samples=P, ridge=ridge, noise=0.1)) / krr - 1)
                for N in (1e4, 1e6)]
        assert gaps[1] < 2e-2 * gaps[0] + 1e-12


def test_ridgeless_point_and_limits():
    lam, v2 = power_law_spectrum(1000, 1.2), power_law_target(1000, 2.0)
    for N, P in [(40, 100), (100, 40), (64, jnp.inf)]:
        eq = rf_equivalent(lam, v2, n_features=N, n_samples=P, ridge=0.0, noise=0.1)
        assert float(eq.df1) == pytest.approx(min(N, P), rel=1e-10)
        near = float(rf_risk(lam, v2, n_features=N, n_samples=P, ridge=1e-12, noise=0.1))
        assert float(eq.risk) == pytest.approx(near, rel=1e-6) and np.isfinite(float(eq.risk))
    # the interpolation peak is +inf, not NaN
    assert float(rf_risk(lam, v2, n_features=70, n_samples=70, ridge=0.0)) == np.inf
    # P = ∞, ridgeless: E = Σ v² κ₂/(λ + κ₂) with Df1(κ₂) = N (docs/random_features.md, eq. (RF-9))
    k2 = float(effective_ridge(lam, n_features=64, n_samples=jnp.inf, ridge=0.0))
    assert float(degrees_of_freedom(lam, k2)[0]) == pytest.approx(64, rel=1e-12)
    expected = float(jnp.sum(v2 * k2 / (lam + k2)))
    assert float(rf_risk(lam, v2, n_features=64, n_samples=jnp.inf, ridge=0.0)) == pytest.approx(expected, rel=1e-12)
    # fewer dimensions than features and samples: ordinary least squares, E = σ²/(1 − D/P)
    small, small_v2 = power_law_spectrum(10, 1.0), power_law_target(10, 2.0)
    assert float(rf_risk(small, small_v2, n_features=50, n_samples=40, ridge=0.0, noise=0.2)) == pytest.approx(
        0.2 / (1 - 10 / 40), rel=1e-9)


def test_float64_no_underflow_and_vmap():
    lam = power_law_spectrum(100_000, 2.0)
    assert lam.dtype == jnp.float64 and float(lam[-1]) == pytest.approx(1e-10, rel=1e-12)
    v2 = power_law_target(100_000, 3.0)
    grid = jnp.geomspace(1e-8, 1.0, 7)
    risks = jax.jit(jax.vmap(lambda r, n: rf_risk(lam, v2, n_features=n, n_samples=512, ridge=r, noise=0.0),
                             in_axes=(0, None)))(grid, 128.0)
    singles = [float(rf_risk(lam, v2, n_features=128, n_samples=512, ridge=float(r))) for r in grid]
    np.testing.assert_allclose(np.asarray(risks), singles, rtol=1e-12)
    assert np.all(np.isfinite(np.asarray(risks)))


def _monte_carlo(lam, v2, N, P, ridge, noise, K, draws, rng):
    lam = np.asarray(lam)
    w = np.sqrt(np.asarray(v2) / lam)
    D = lam.shape[0]
    errors = []
    for _ in range(draws):
        X = rng.standard_normal((P, D)) * np.sqrt(lam)
        y = X @ w + np.sqrt(noise) * rng.standard_normal(P)
        beta = np.zeros(D)
        for _ in range(K):
            F = rng.standard_normal((N, D)) / np.sqrt(N)
            Z = X @ F.T
            if ridge > 0:
                a = np.linalg.solve(Z.T @ Z / P + ridge * np.eye(N), Z.T @ y / P)
            else:  # the ridge → 0 limit is the minimum-norm least-squares readout
                a = np.linalg.lstsq(Z, y, rcond=None)[0]
            beta += F.T @ a / K
        errors.append(np.sum(lam * (beta - w) ** 2) + noise)
    errors = np.asarray(errors)
    return errors.mean(), errors.std(ddof=1) / np.sqrt(draws)


@pytest.mark.parametrize("N,P,ridge,K", [(160, 256, 1e-3, 1), (256, 160, 1e-2, 1), (200, 200, 0.1, 1),
                                         (128, 320, 0.0, 1), (320, 128, 0.0, 1), (128, 256, 1e-3, 3)])
def test_monte_carlo_ridge_regression_agrees(N, P, ridge, K):
    """Sampled ridge regression with N random features vs rf_risk. Tolerance: 3 standard errors of the Monte
    Carlo mean plus the deterministic equivalent's own O(1/min(N, P)) finite-size error (allowance 2/min(N, P)
    relative; measured ~0.5/min(N, P) at these sizes)."""
    rng = np.random.default_rng(N + P + K)
    lam, v2 = power_law_spectrum(800, 1.3), power_law_target(800, 2.0)
    theory = float(rf_risk(lam, v2, n_features=N, n_samples=P, ridge=ridge, noise=0.1, ensemble=K))
    mean, se = _monte_carlo(lam, v2, N, P, ridge, 0.1, K, 40, rng)
    assert abs(mean - theory) < 3 * se + 2.0 / min(N, P) * theory, (mean, se, theory)


def test_krr_monte_carlo_and_bad_inputs():
    rng = np.random.default_rng(5)
    lam, v2 = power_law_spectrum(600, 1.5), power_law_target(600, 2.5)
    theory = float(krr_risk(lam, v2, n_samples=200, ridge=1e-3, noise=0.05))
    errors = []
    w = np.sqrt(np.asarray(v2 / lam))
    for _ in range(40):
        X = rng.standard_normal((200, 600)) * np.sqrt(np.asarray(lam))
        y = X @ w + np.sqrt(0.05) * rng.standard_normal(200)
        beta = X.T @ np.linalg.solve(X @ X.T / 200 + 1e-3 * np.eye(200), y / 200)
        errors.append(np.sum(np.asarray(lam) * (beta - w) ** 2) + 0.05)
    se = np.std(errors, ddof=1) / np.sqrt(40)
    assert abs(np.mean(errors) - theory) < 3 * se + 2.0 / 200 * theory


@pytest.mark.parametrize("call,message", [
    (lambda: power_law_spectrum(10, 0.0), "s must be > 0"),
    (lambda: power_law_spectrum(10, -1.0), "s must be > 0"),
    (lambda: power_law_spectrum(0, 1.0), "dim"),
    (lambda: rf_risk(jnp.ones(5), jnp.ones(4), n_features=2, n_samples=3, ridge=0.1), "one entry per eigenvalue"),
    (lambda: rf_risk(jnp.ones(5), jnp.ones(5), n_features=0, n_samples=3, ridge=0.1), "n_features must be >= 1"),
    (lambda: rf_risk(jnp.ones(5), jnp.ones(5), n_features=2, n_samples=0.5, ridge=0.1), "n_samples must be >= 1"),
    (lambda: rf_risk(jnp.ones(5), jnp.ones(5), n_features=2, n_samples=3, ridge=-1.0), "ridge must be >= 0"),
    (lambda: krr_risk(jnp.ones(5), jnp.ones(5), n_samples=3, ridge=-1e-3), "ridge must be >= 0"),
    (lambda: rf_risk(jnp.array([1.0, 0.0]), jnp.ones(2), n_features=2, n_samples=3, ridge=0.1), "finite and > 0"),
    (lambda: rf_risk(jnp.ones(3), jnp.ones(3), n_features=jnp.ones(2), n_samples=3, ridge=0.1), "scalar"),
    (lambda: preconditioner(jnp.ones(3), "adam"), "preconditioner kind"),
])
def test_bad_input_is_one_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ---------------------------------------------------------------- learning curves in the eigenbasis

def _feature_problem(N=24, D=200, s=1.2, a=2.2, seed=0):
    """Population moments (Σ_N, b, c) of N linear random features, in float64."""
    rng = np.random.default_rng(seed)
    lam = np.asarray(power_law_spectrum(D, s))
    w = np.sqrt(np.asarray(power_law_target(D, a)) / lam)
    F = rng.standard_normal((N, D)) / np.sqrt(N)
    return F @ (lam[:, None] * F.T), F @ (lam * w), float(np.sum(lam * w * w))


def _eigen_problem(Sigma, b, c):
    mu, U = np.linalg.eigh(Sigma)
    c2 = (U.T @ b) ** 2 / mu
    return jnp.asarray(mu), jnp.asarray(c2), c - float(np.sum(c2))


def _simulate(Sigma, b, c, optimizer, steps):
    loss = lambda a: a @ Sigma @ a - 2 * a @ b + c  # noqa: E731
    a = jnp.zeros(b.shape[0])
    state = optimizer.init(a)
    out = [loss(a)]
    for _ in range(steps):
        updates, state = optimizer.update(Sigma @ a - b, state, a)  # ∇ of ½·loss
        a = optax.apply_updates(a, updates)
        out.append(loss(a))
    return np.asarray(out)


@pytest.mark.parametrize("kind,beta", [("gd", 0.0), ("gd", 0.9), ("natural", 0.0), ("power", 0.0)])
def test_eigenbasis_curve_equals_simulated_training(kind, beta):
    Sigma, b, c = _feature_problem()
    mu, c2, floor = _eigen_problem(Sigma, b, c)
    f = preconditioner(mu, kind, damping=1e-2, power=0.5)
    eta = 1.0 / float(jnp.max(mu * f))
    curve = learning_curve(mu, c2, 60, learning_rate=eta, preconditioner_values=f, momentum=beta, floor=floor)
    mu_np, U = np.linalg.eigh(Sigma)
    Q = U @ np.diag(np.asarray(f)) @ U.T  # the same preconditioner as a matrix: a ← a − η Q ∇
    optimizer = optax.chain(optax.trace(decay=beta) if beta else optax.identity(),
                            optax.GradientTransformation(lambda p: optax.EmptyState(),
                                                         lambda u, s, p=None: (-eta * (Q @ u), s)))
    simulated = _simulate(jnp.asarray(Sigma), jnp.asarray(b), c, optimizer, 60)
    np.testing.assert_allclose(np.asarray(curve), simulated, rtol=1e-9, atol=1e-12 * c)


def test_time_bottleneck_and_slope():
    lam = power_law_spectrum(10_000, 1.5)
    for T in (10, 100, 1000):
        # GD on λ_k = k^-s learns the modes with T η k^-s ≥ 1, i.e. k ≤ (ηT)^{1/s}
        assert int(time_bottleneck(lam, T, learning_rate=0.5)) == int(np.floor((0.5 * T) ** (1 / 1.5) + 1e-9))
    ng = time_bottleneck(lam, 100, learning_rate=0.5, preconditioner_values=preconditioner(lam, "natural",
                                                                                            damping=1e-3))
    assert int(ng) > int(time_bottleneck(lam, 100, learning_rate=0.5))
    n = jnp.array([8.0, 16.0, 32.0, 64.0])
    assert float(loglog_slope(n, 3.0 * n ** -0.37)) == pytest.approx(0.37, rel=1e-12)
    # GD on a pure power law: L(t) ~ t^{-(a-1)/s} = t^-1 here (docs/random_features.md, eq. (RF-14); Bordelon
    # et al. 2024); the finite D (modes past D are missing) and the discreteness of k correct the slope by
    # O(k_t/D) + O(1/k_t) ≈ 2 %.
    lam, v2 = power_law_spectrum(200_000, 1.0), power_law_target(200_000, 2.0)
    curve = learning_curve(lam, v2, 4000, learning_rate=1.0)
    t = jnp.array([500, 1000, 2000, 4000])
    assert float(loglog_slope(t.astype(jnp.float64), curve[t])) == pytest.approx(1.0, abs=0.03)
