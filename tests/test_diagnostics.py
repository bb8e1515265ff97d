"""train.inference.diagnostics on processes with known answers: i.i.d. draws, AR(1) chains, shifted chains, transients."""

import numpy as np
import pytest

from deeptheory.train.inference.diagnostics import burn_in, drift, ess, mean_and_error, rhat


def _ar1(rho, chains, draws, seed=0):
    """x_t = ρ x_{t−1} + √(1 − ρ²) ε_t from stationarity: unit variance, τ = (1 + ρ)/(1 − ρ)."""
    rng = np.random.default_rng(seed)
    x = np.empty((chains, draws))
    x[:, 0] = rng.normal(size=chains)
    noise = np.sqrt(1 - rho**2) * rng.normal(size=(chains, draws))
    for t in range(1, draws):
        x[:, t] = rho * x[:, t - 1] + noise[:, t]
    return x


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9])
def test_ess_of_ar1_chains_is_n_over_tau(rho):
    """ESS = C·S/τ with τ = (1 + ρ)/(1 − ρ). The estimator's relative error at these lengths is a few % (Geyer
    1992: var τ̂/τ² ≈ 4M/S for a window M ~ τ); 20 % is several standard deviations."""
    x = _ar1(rho, chains=4, draws=20_000, seed=int(rho * 10))
    expected = x.size * (1 - rho) / (1 + rho)
    assert abs(ess(x) / expected - 1) < 0.2, (ess(x), expected)


def test_rhat_is_one_for_agreeing_chains_and_large_for_disagreeing():
    x = _ar1(0.5, chains=4, draws=4000)
    assert abs(rhat(x) - 1) < 0.01
    shifted = x + np.array([0.0, 0.0, 0.0, 1.0])[:, None]  # one chain stuck elsewhere
    assert rhat(shifted) > 1.1
    drifting = x + np.linspace(0, 2, x.shape[1])[None, :]  # split-R̂ sees a trend within chains
    assert rhat(drifting) > 1.1


def test_standard_error_covers_the_truth_at_the_nominal_rate():
    """Over 200 independent AR(1) runs (true mean 0), |mean| <= 2 se should hold ≈ 95 % of the time; a
    binomial 99.9 % band around 0.95 for 200 trials is [0.89, 0.99]."""
    covered = []
    for seed in range(200):
        m, se, _ = mean_and_error(_ar1(0.8, chains=4, draws=500, seed=100 + seed))
        covered.append(abs(m) <= 2 * se)
    assert 0.89 <= np.mean(covered) <= 0.995, np.mean(covered)


def test_drift_is_a_z_score_for_stationary_traces_and_signs_a_trend():
    """Stationary AR(1): z should be roughly standard normal; |z| > 3 in at most 5 of 200 runs (expected 0.5, a
    binomial tail far below 1e-3). A shared upward trend of 1 over the run (the noise's sd): z ≫ 3, positive."""
    zs = np.array([drift(_ar1(0.8, chains=4, draws=400, seed=500 + s))[0] for s in range(200)])
    assert np.sum(np.abs(zs) > 3) <= 5, np.sort(np.abs(zs))[-8:]
    assert 0.6 < np.std(zs) < 1.5, np.std(zs)
    x = _ar1(0.5, chains=4, draws=4000) + 3.0
    z, relative = drift(x + np.linspace(0, 1, x.shape[1])[None, :])
    assert z > 10 and relative == pytest.approx(0.5 / 3.25, rel=0.1)


def test_burn_in_finds_a_transient():
    """An exponential transient of amplitude 5 decaying with time constant 200 draws on top of unit noise:
    MSER must cut at least the part above the noise's standard error (~600 draws) and at most half."""
    x = _ar1(0.0, chains=4, draws=4000)
    t = np.arange(4000)
    cut = burn_in(x + 5 * np.exp(-t / 200)[None, :])
    assert 400 <= cut <= 2000, cut
    assert burn_in(x) <= 400


def test_bad_traces_are_refused():
    with pytest.raises(ValueError, match="NaN"):
        ess(np.array([[0.0, 1.0, np.nan, 2.0, 3.0]]))
    with pytest.raises(ValueError, match="at least 4 draws"):
        rhat(np.zeros((2, 3)))
