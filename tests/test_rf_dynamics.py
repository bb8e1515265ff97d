"""theory.rf_dynamics: the sampling-free learning curve of a random-feature readout against its exact identities,
the t = 0 and t → ∞ limits, the power law of GD, and Monte Carlo over feature draws for every spectral optimizer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deeptheory.theory.random_features import (
    learning_curve,
    power_law_spectrum,
    power_law_target,
    preconditioner,
    rf_risk,
)
from deeptheory.theory.rf_dynamics import rf_learning_curve, rf_spectral_measure, rf_top_eigenvalue


def _random_spectrum(rng, D):
    lam = np.sort(rng.lognormal(0.0, 1.5, D))[::-1]
    return jnp.asarray(lam), jnp.asarray(lam * rng.lognormal(0.0, 1.0, D))


@pytest.mark.parametrize("D,N,s,a", [(1024, 64, 1.5, 2.5), (1024, 128, 0.75, 1.75), (1024, 8, 2.0, 2.5),
                                     (300, 200, 1.0, 2.0), (400, 50, None, None)])
def test_quadrature_reproduces_the_exact_masses(D, N, s, a):
    """Three identities of the equivalent (docs RF-23) that the quadrature does not use: the eigenvalue count has
    mass N, ν has mass Σ v²λ (= E|b|²), and ∫ν/μ is the static equivalent, i.e. the floor is rf_risk at P = ∞,
    ridge 0 (an independent solver). Power laws with D ≥ 2N and D < 2N (every pole split), and a random spectrum."""
    if s is None:
        lam, v2 = _random_spectrum(np.random.default_rng(0), D)
    else:
        lam, v2 = power_law_spectrum(D, s), power_law_target(D, a)
    m = rf_spectral_measure(lam, v2, N)
    assert float(m.residual) < 1e-12 and float(m.mass_error) < 1e-10
    np.testing.assert_allclose(float(jnp.sum(m.count)), N, rtol=1e-10)
    np.testing.assert_allclose(float(jnp.sum(m.target_mass)), float(jnp.sum(v2 * lam)), rtol=1e-10)
    np.testing.assert_allclose(float(m.floor), float(rf_risk(lam, v2, n_features=N, n_samples=jnp.inf, ridge=0.0)),
                               rtol=1e-9)
    assert bool(jnp.all(m.eigenvalues > 0)) and bool(jnp.all(m.target_mass >= 0)) and bool(jnp.all(m.count >= 0))


def test_clustered_spectrum_needs_more_nodes_and_says_so():
    """Nine equal eigenvalues next to 51 equal small ones (N = 10): the edge of the first bump lies close to a pole
    of multiplicity 51, which slows Gauss–Legendre on that piece. 16 nodes leave a mass error of ~6e-5, which
    `mass_error` reports; 64 nodes reach the identities to 1e-10."""
    lam = jnp.asarray(np.r_[np.ones(9), 1e-3 * np.ones(51)])
    assert float(rf_spectral_measure(lam, lam, 10).mass_error) > 1e-6
    fine = rf_spectral_measure(lam, lam, 10, nodes=64)
    assert float(fine.mass_error) < 1e-10
    np.testing.assert_allclose(float(fine.floor), float(rf_risk(lam, lam, n_features=10, n_samples=jnp.inf, ridge=0.0)),
                               rtol=1e-9)


def test_limits_and_node_convergence():
    lam, v2 = power_law_spectrum(1024, 1.5), power_law_target(1024, 2.5)
    curve = rf_learning_curve(lam, v2, 64, 20000, learning_rate=0.9, noise=0.1)
    floor = float(rf_spectral_measure(lam, v2, 64).floor)
    np.testing.assert_allclose(float(curve[0]), float(jnp.sum(v2)) + 0.1, rtol=1e-12)  # the zero readout
    np.testing.assert_allclose(float(curve[-1]), floor + 0.1, rtol=1e-6)  # converged: the N-feature floor
    assert bool(jnp.all(jnp.diff(curve) <= 1e-15))  # GD below 1/μ_max only ever lowers the loss
    coarse = rf_learning_curve(lam, v2, 64, 20000, learning_rate=0.9, noise=0.1, nodes=8)
    np.testing.assert_allclose(np.asarray(coarse), np.asarray(curve), rtol=1e-6)


def test_infinite_width_limit_is_the_input_eigenbasis_curve():
    """N → ∞ at fixed t: the equivalent tends to GD on Λ itself (`learning_curve` on (λ_k, v_k²), whose t^{-(a-1)/s}
    power law is tested in test_random_features), with a gap ∝ 1/N: quadrupling N divides the relative gap at t = 1
    and t = 10 by 4 (measured 3.99–4.07 for N = 128 → 512 at D = 2048; here 64 → 256, D = 1024; tolerance ±0.4)."""
    lam, v2 = power_law_spectrum(1024, 1.5), power_law_target(1024, 2.5)
    infinite = learning_curve(lam, v2, 10, learning_rate=1.0)[jnp.array([1, 10])]
    gaps = [rf_learning_curve(lam, v2, N, 10, learning_rate=1.0)[jnp.array([1, 10])] / infinite - 1.0 for N in (64, 256)]
    assert bool(jnp.all(gaps[1] > 0)), gaps  # finite width is slower (the features mix the modes)
    np.testing.assert_allclose(np.asarray(gaps[0] / gaps[1]), 4.0, atol=0.4)


def _monte_carlo(lam, v2, N, draws, rng, schedule):
    """Mean and SE over feature draws of the eigenbasis learning curve (exact given the draw), and of λ_max(Σ_N)."""
    lam, v2 = np.asarray(lam), np.asarray(v2)
    w = np.sqrt(v2 / lam)
    F = rng.standard_normal((draws, N, lam.shape[0])) / np.sqrt(N)
    mu, U = np.linalg.eigh(np.einsum("rnd,d,rmd->rnm", F, lam, F))
    c2 = np.einsum("rnj,rn->rj", U, F @ (lam * w)) ** 2 / mu
    curves = np.asarray(jax.jit(jax.vmap(schedule))(jnp.asarray(mu), jnp.asarray(c2), jnp.asarray(np.sum(v2) - c2.sum(1))))
    tops = mu[:, -1]
    return (curves.mean(0), curves.std(0, ddof=1) / np.sqrt(draws), tops.mean(), tops.std(ddof=1) / np.sqrt(draws))


@pytest.mark.parametrize("kind,momentum,damping,s,a", [("gd", 0.0, 0.0, 1.5, 2.5), ("gd", 0.9, 0.0, 1.0, 2.0),
                                                       ("natural", 0.0, 1e-3, 1.25, 2.25)])
def test_monte_carlo_over_feature_draws(kind, momentum, damping, s, a):
    """The expected learning curve at t = 0, 1, 10, 100, 1000 against the average over 40 feature draws of the exact
    eigenbasis curve (N = 128, D = 1024), for GD, heavy ball β = 0.9 and damped natural gradient. Tolerance: 3
    standard errors plus the equivalent's own O(1/N) finite-size error, allowance 2/N relative (the convention of
    the ridge equivalent's Monte Carlo test; measured ≈ 1.7/N at N = 64 and < 0.5 SE at N = 256 with 200 draws).
    The predicted top eigenvalue (`rf_top_eigenvalue`, a median) against the mean of λ_max, within 3 SE + 2/N."""
    N, steps, eta = 128, 1000, 0.5
    lam, v2 = power_law_spectrum(1024, s), power_law_target(1024, a)

    def schedule(mu, c2, floor):
        f = preconditioner(mu, kind, damping=damping)
        return learning_curve(mu, c2, steps, learning_rate=eta, preconditioner_values=f, momentum=momentum,
                              floor=floor)

    mean, se, top, top_se = _monte_carlo(lam, v2, N, 40, np.random.default_rng(7), schedule)
    theory = np.asarray(rf_learning_curve(lam, v2, N, steps, learning_rate=eta, kind=kind, damping=damping,
                                          momentum=momentum))
    at = np.array([0, 1, 10, 100, 1000])
    assert np.all(np.abs(theory[at] - mean[at]) <= 3 * se[at] + 2.0 / N * theory[at]), \
        np.c_[at, theory[at], mean[at], se[at]]
    predicted_top = float(rf_top_eigenvalue(rf_spectral_measure(lam, v2, N)))
    assert abs(predicted_top - top) <= 3 * top_se + 2.0 / N * top, (predicted_top, top, top_se)


def test_jit_with_static_width_and_vmap_over_spectra():
    lam = jnp.stack([power_law_spectrum(256, s) for s in (1.0, 1.5)])
    v2 = jnp.stack([power_law_target(256, s + 1.0) for s in (1.0, 1.5)])
    with jax.enable_x64(True):
        batched = jax.jit(jax.vmap(lambda lam, v2: rf_learning_curve(lam, v2, 32, 50, learning_rate=0.5)))(lam, v2)
    for i in range(2):
        np.testing.assert_allclose(np.asarray(batched[i]),
                                   np.asarray(rf_learning_curve(lam[i], v2[i], 32, 50, learning_rate=0.5)), rtol=1e-12)


@pytest.mark.parametrize("call,message", [
    (lambda: rf_spectral_measure(jnp.ones(10), jnp.ones(10), 10), "must be below the input dimension"),
    (lambda: rf_spectral_measure(jnp.ones(10), jnp.ones(9), 3), "one entry per eigenvalue"),
    (lambda: rf_spectral_measure(jnp.ones(10), jnp.ones(10), 0), "n_features must be an integer >= 1"),
    (lambda: rf_learning_curve(jnp.ones(10), jnp.ones(10), 3, 5, learning_rate=0.0), "learning_rate must be > 0"),
    (lambda: rf_learning_curve(jnp.ones(10), jnp.ones(10), 3, 5, learning_rate=0.1, kind="adam"), "preconditioner kind"),
])
def test_bad_input_is_one_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
