"""train.fits: lines and exponents recover known values, and their error bars cover them as often as they say."""

import numpy as np
import pytest

from deeptheory.train.fits import fit_exponent, line_fit, offset_power_fit, student_t_quantile


def test_student_t_quantile():
    # t_{ν}(0.975) from tables: ν = 1: 12.706, ν = 4: 2.776, ν = 30: 2.042
    for dof, expected in [(1, 12.706), (4, 2.776), (30, 2.042)]:
        assert student_t_quantile(0.975, dof) == pytest.approx(expected, abs=1e-3)


def test_line_fit_is_exact_without_noise_and_its_stderr_is_honest():
    x = np.linspace(0.0, 3.0, 10)
    exact = line_fit(x, 2.0 * x + 1.0)
    assert exact.slope == pytest.approx(2.0, abs=1e-12) and exact.intercept == pytest.approx(1.0, abs=1e-12)
    assert exact.stderr == pytest.approx(0.0, abs=1e-12)
    # With Gaussian noise, (slope − 2)/stderr follows Student's t with n − 2 = 8 degrees of freedom: the 95 %
    # t interval covers the true slope in 95 % of 4000 repetitions (binomial sd 0.0034; tolerance 4 sd).
    rng = np.random.default_rng(1)
    fits = [line_fit(x, 2.0 * x + 1.0 + 0.3 * rng.standard_normal(10)) for _ in range(4000)]
    z = np.array([(f.slope - 2.0) / f.stderr for f in fits])
    assert np.mean(np.abs(z) <= student_t_quantile(0.975, 8)) == pytest.approx(0.95, abs=0.014)
    with pytest.raises(ValueError, match="two distinct x"):
        line_fit([1.0, 1.0], [0.0, 1.0])


def test_exact_power_laws_are_recovered():
    n = np.array([8.0, 16, 32, 64, 128, 256])
    losses = np.stack([1.7 * n ** -0.42] * 3)
    fit = fit_exponent(n, losses)
    assert fit.alpha == pytest.approx(0.42, abs=1e-12) and fit.ci[0] == pytest.approx(0.42, abs=1e-9)
    assert fit.window == (8.0, 256.0) and np.allclose(fit.local_slopes, 0.42)
    alpha, E, A = offset_power_fit(n, 0.05 + 2.0 * n ** -0.8)
    assert alpha == pytest.approx(0.8, abs=2e-3) and E == pytest.approx(0.05, rel=2e-2) and A == pytest.approx(2.0, rel=2e-2)


def test_bootstrap_interval_coverage():
    """Synthetic seeds: each seed's loss is A N^-α with its own slope error and per-point noise; the nominal 90 %
    interval must cover α in 90 % of 300 replications, within 3 binomial standard deviations (±0.052)."""
    rng = np.random.default_rng(0)
    n = np.array([8.0, 16, 32, 64, 128])
    hits, R, S = 0, 300, 10
    for r in range(R):
        noise = 0.1 * rng.standard_normal((S, 5)) + 0.1 * rng.standard_normal((S, 1)) * np.log(n)[None, :] / 5
        fit = fit_exponent(n, 2.0 * n[None, :] ** -0.7 * np.exp(noise), confidence=0.9, n_boot=1000, seed=r,
                           offset=False)
        hits += fit.ci[0] <= 0.7 <= fit.ci[1]
    assert abs(hits / R - 0.9) < 3 * np.sqrt(0.9 * 0.1 / R)


@pytest.mark.parametrize("n,losses,message", [
    (np.array([1.0, 2.0]), np.ones((1, 2)), "at least 2 seeds"),
    (np.array([1.0, 2.0, 3.0]), np.ones((2, 2)), "need losses"),
    (np.array([1.0, 2.0]), np.array([[1.0, np.nan], [1.0, 1.0]]), "finite and > 0"),
])
def test_bad_input(n, losses, message):
    with pytest.raises(ValueError, match=message):
        fit_exponent(n, losses)
