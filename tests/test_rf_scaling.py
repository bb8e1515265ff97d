"""models.random_features, the rf_scaling optimizers and the experiment train.experiments.rf_scaling (tiny sizes)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from deeptheory.models.random_features import (
    RandomFeatures,
    population_loss,
    population_moments,
    power_law_inputs,
    random_projection,
)
from deeptheory.theory.random_features import learning_curve, power_law_spectrum, power_law_target
from deeptheory.train.experiments import rf_scaling
from deeptheory.train.experiments.rf_scaling.optimizers import (
    OPTIMIZERS,
    SPECS,
    STEP_FACTOR,
    make_optimizer,
    natural_gradient,
    spec,
)
from deeptheory.train.harness import cli

TINY = dict(s_values=(1.0, 2.0), dim=96, widths=(4, 8, 16), steps=40, seeds=3, lr_multipliers=(0.5, 1.0))


def test_model_features_projection_and_population_loss():
    lam = power_law_spectrum(64, 1.2)
    teacher = jnp.sqrt(power_law_target(64, 2.0) / lam)
    model = RandomFeatures(n_features=8, n_max=32)
    x = power_law_inputs(jax.random.key(1), 200_000, lam)
    variables = model.init(jax.random.key(0), x[:2])
    assert set(variables) == {"params", "projection"} and variables["params"]["readout"].shape == (8,)
    F = variables["projection"]["F"]
    # nested widths: the first rows of one (n_max, D) draw, scaled by 1/√N
    F16 = RandomFeatures(n_features=16, n_max=32).init(jax.random.key(0), x[:2])["projection"]["F"]
    np.testing.assert_allclose(np.asarray(F) * np.sqrt(8), np.asarray(F16[:8]) * np.sqrt(16), rtol=1e-6)
    F_big = random_projection(jax.random.key(9), 4000, 64, dtype=jnp.float64)
    assert float(jnp.var(F_big)) * 4000 == pytest.approx(1.0, abs=4 * np.sqrt(2 / F_big.size))
    a = jax.random.normal(jax.random.key(2), (8,), jnp.float32) * 0.3
    variables = {"params": {"readout": a}, "projection": variables["projection"]}
    y = x @ teacher.astype(jnp.float32)
    sq = np.asarray((y - model.apply(variables, x)) ** 2, np.float64)
    exact = float(population_loss(a, F, lam.astype(jnp.float32), teacher.astype(jnp.float32)))
    assert abs(sq.mean() - exact) < 4 * sq.std() / np.sqrt(sq.size)
    Sigma, b, c = population_moments(F.astype(jnp.float64), lam, teacher)
    a64 = a.astype(jnp.float64)
    assert float(a64 @ Sigma @ a64 - 2 * a64 @ b + c) == pytest.approx(exact, rel=1e-5)
    with pytest.raises(ValueError, match="features must be one of"):
        RandomFeatures(n_features=4, features="swish").init(jax.random.key(0), x[:2])


def _problem(N=12, D=80, seed=0):
    rng = np.random.default_rng(seed)
    lam = np.asarray(power_law_spectrum(D, 1.5))
    F = rng.standard_normal((N, D)) / np.sqrt(N)
    w = np.sqrt(np.asarray(power_law_target(D, 2.5)) / lam)
    return jnp.asarray(F @ (lam[:, None] * F.T)), jnp.asarray(F @ (lam * w))


def _trajectory(opt, Sigma, b, steps=25):
    a = jnp.zeros(b.shape[0])
    state, path = opt.init(a), []
    for _ in range(steps):
        updates, state = opt.update(Sigma @ a - b, state, a)
        a = optax.apply_updates(a, updates)
        path.append(a)
    return jnp.stack(path)


def test_natural_gradient_is_reparametrisation_invariant():
    """Features z' = A z (A invertible): Σ' = AΣAᵀ, b' = Ab, and a·z = a'·z' ⇔ a = Aᵀa'. Undamped natural
    gradient gives the same function at every step; gradient descent does not (the check can fail)."""
    Sigma, b = _problem()
    A = jnp.asarray(np.random.default_rng(3).standard_normal((12, 12)) + 3 * np.eye(12))
    S2, b2 = A @ Sigma @ A.T, A @ b
    path = _trajectory(natural_gradient(0.5, Sigma, 0.0), Sigma, b)
    path2 = _trajectory(natural_gradient(0.5, S2, 0.0), S2, b2)
    np.testing.assert_allclose(np.asarray(path2 @ A), np.asarray(path), rtol=1e-7, atol=1e-9)
    eta = 0.5 / float(jnp.linalg.eigvalsh(S2)[-1])
    gd, gd2 = _trajectory(optax.sgd(eta), Sigma, b), _trajectory(optax.sgd(eta), S2, b2)
    assert float(jnp.max(jnp.abs(gd2 @ A - gd))) > 1e-3


def test_optimizers_by_name_and_errors():
    Sigma, b = _problem()
    for name in OPTIMIZERS:
        with jax.numpy_dtype_promotion("standard"):  # optax.adam raises a float to an int32 power (bias correction)
            path = _trajectory(make_optimizer(name, 0.05, fisher=Sigma, damping=1e-3), Sigma, b, steps=5)
        assert path.shape == (5, 12) and bool(jnp.all(jnp.isfinite(path)))
    # diagonal preconditioning with a constant diagonal is gradient descent with a rescaled step
    const = jnp.full(12, 4.0)
    np.testing.assert_allclose(np.asarray(_trajectory(make_optimizer("diagonal", 0.2, fisher=const), Sigma, b)),
                               np.asarray(_trajectory(optax.sgd(0.05), Sigma, b)), rtol=1e-12)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        make_optimizer("lbfgs", 0.1)
    with pytest.raises(ValueError, match="needs the Fisher"):
        make_optimizer("natural", 0.1)
    with pytest.raises(ValueError, match="parameters have 3"):
        natural_gradient(0.1, Sigma).init(jnp.zeros(3))


def test_optimizer_specs_train_as_their_theory_says():
    """Each spec's transform at its base rate, trained in float64, ends where its eigenbasis theory (preconditioner
    values, momentum) says — exactly for the specs whose theory has no caveat; the top mode of GD's Σ sits at
    η μ_max = STEP_FACTOR."""
    Sigma, b = _problem()
    hp = rf_scaling.Config()
    mu, U = np.linalg.eigh(np.asarray(Sigma))
    c2 = (U.T @ np.asarray(b)) ** 2 / mu
    spectrum = {"mu_max": mu[-1], "mu_max_diag": 1.0}
    assert OPTIMIZERS == tuple(SPECS) and spec("gd").base_lr(spectrum, hp) * mu[-1] == pytest.approx(STEP_FACTOR)
    assert [name for name in OPTIMIZERS if not spec(name).has_theory] == ["adam"]
    for name in OPTIMIZERS:
        optimizer = spec(name)
        if not optimizer.has_theory or optimizer.theory_caveat:
            continue
        lr = optimizer.base_lr(spectrum, hp)
        a = _trajectory(make_optimizer(name, lr, fisher=Sigma, damping=hp.damping, beta=hp.momentum), Sigma, b)[-1]
        trained = float(a @ Sigma @ a - 2 * a @ b + np.sum(c2))  # the loss above the floor c − Σ c2
        theory = learning_curve(mu, c2, 25, learning_rate=lr, momentum=hp.momentum if optimizer.theory_momentum else 0.0,
                                preconditioner_values=optimizer.theory_preconditioner(mu, None, hp))[-1]
        assert trained == pytest.approx(float(theory), rel=1e-9), name
    with pytest.raises(ValueError, match="optimizer must be one of"):
        spec("lbfgs")


def test_experiment_matches_eigenbasis_theory_and_resumes(tmp_path):
    config = dataclasses.replace(rf_scaling.Config(), **TINY)
    record = cli.execute(rf_scaling.EXPERIMENT, config, tmp_path / "run")
    rows = {(r["optimizer"], r["s"]): r for r in record["metrics"]["rows"]}
    assert set(rows) == {(o, s) for o in OPTIMIZERS for s in TINY["s_values"]}
    for (name, _), row in rows.items():
        assert row["window"] == [4.0, 16.0] and row["ci"][0] <= row["alpha"] <= row["ci"][1]
        if name in ("gd", "momentum", "natural"):
            # trained in float32 with optax vs the float64 eigenbasis recurrence on the same spectra: equal up to
            # float32 rounding accumulated over T steps (relative 1e-7 × T × condition ≲ 1e-3)
            np.testing.assert_allclose(row["loss_mean"], row["theory_loss"], rtol=2e-3)
    assert record["plots"] == ["loss_vs_n.png", "alpha_vs_s.png", "diagnostic.png"]
    again = cli.execute(rf_scaling.EXPERIMENT, config, tmp_path / "run")
    assert again["metrics"] == record["metrics"]
    # interrupted after the first optimizer, then resumed: identical results
    calls = {"n": 0}
    original = rf_scaling.measure.sweep

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    rf_scaling.measure.sweep = failing
    try:
        with pytest.raises(KeyboardInterrupt):
            cli.execute(rf_scaling.EXPERIMENT, config, tmp_path / "cut")
    finally:
        rf_scaling.measure.sweep = original
    assert cli.execute(rf_scaling.EXPERIMENT, config, tmp_path / "cut")["metrics"] == record["metrics"]


@pytest.mark.parametrize("override,message", [
    (dict(s_values=(0.0, 1.0)), "--s-values must be > 0"),
    (dict(widths=(0, 4, 8)), "widths must be"),
    (dict(widths=(8, 4, 16)), "widths must be"),
    (dict(dim=20), "dim must exceed"),
    (dict(optimizers=("gd", "sgd")), "optimizers must be among"),
    (dict(damping=-1.0), "--damping must be > 0"),
    (dict(target_shift=-0.8), "--target-shift -0.8 gives a task power"),
])
def test_bad_config_is_one_clear_error(override, message):
    with pytest.raises(cli.ConfigError, match=message):
        dataclasses.replace(rf_scaling.Config(), **override).validate()


@pytest.mark.parametrize("name", ["gd", "natural"])
def test_sampling_free_losses_match_feature_draws_at_the_experiments_step_rule(name):
    """predict.equivalent_curves against the mean over 200 feature draws of the exact eigenbasis loss after T = 200
    steps, each draw at its own step rule (GD: η = 0.95·m/μ_max(draw), which pins the top eigenvalue's rate; NG:
    η = 0.95·m), for multipliers 1, 1.5 and 2 (at 2 GD's rate on the predicted top bump would diverge without the
    pin; below it the pin changes nothing visible at T = 200). N = 32, D = 512, s = 1.5. Tolerance: 3 SE + 1/N
    relative (the equivalent's own finite-N bias, measured −2.6 % for the floor at N = 32)."""
    from deeptheory.train.experiments.rf_scaling.optimizers import spec
    from deeptheory.train.experiments.rf_scaling.predict import equivalent_curves, equivalent_spectrum

    config = dataclasses.replace(rf_scaling.PRESETS["quick"], dim=512, widths=(8, 16, 32), s_values=(1.5,),
                                 lr_multipliers=(1.0, 1.5, 2.0), optimizers=(name,))
    optimizer = spec(name)
    lam, v2 = np.asarray(power_law_spectrum(512, 1.5)), np.asarray(power_law_target(512, 2.5))
    predicted = equivalent_curves(optimizer, equivalent_spectrum(lam, v2, 32, config), config, config.steps)[:, -1]
    w, N, rng = np.sqrt(v2 / lam), 32, np.random.default_rng(3)
    F = rng.standard_normal((200, N, 512)) / np.sqrt(N)
    mu, U = np.linalg.eigh(np.einsum("rnd,d,rmd->rnm", F, lam, F))
    c2 = np.einsum("rnj,rn->rj", U, F @ (lam * w)) ** 2 / mu
    mean_diag = np.full(200, lam.sum() / N)
    losses = []
    for m in config.lr_multipliers:
        lr = np.array([optimizer.base_lr({"mu_max": top}, config) * m for top in mu[:, -1]])
        f = np.stack([optimizer.theory_preconditioner(mu[r], mean_diag[r], config) for r in range(200)])
        curve = jax.vmap(lambda mu, c2, lr, f: learning_curve(mu, c2, config.steps, learning_rate=lr,
                                                              preconditioner_values=f)[-1])
        losses.append(np.asarray(curve(*(jnp.asarray(x) for x in (mu, c2, lr, f)))) + v2.sum() - c2.sum(1))
    losses = np.asarray(losses)
    mean, se = losses.mean(1), losses.std(1, ddof=1) / np.sqrt(200)
    assert np.all(np.abs(predicted - mean) <= 3 * se + 1.0 / N * mean), (predicted, mean, se)


def test_spectral_diagnostic_predicts_when_preconditioning_pays_off():
    """predict_alpha: natural gradient gains α over GD when the budget is small against the window (T = 4: GD
    learns N*(T) = 4 modes, the window reaches 32) and not when both have converged (T = 1000); Adam has no
    prediction; the gain is reported as α − α_GD."""
    from deeptheory.train.experiments.rf_scaling.optimizers import spec
    from deeptheory.train.experiments.rf_scaling.predict import equivalent_curves, equivalent_spectrum, predict_alpha

    lam, v2 = power_law_spectrum(512, 1.0), power_law_target(512, 1.31)
    short = predict_alpha(lam, v2, widths=(8, 16, 32), steps=4, optimizers=("gd", "natural"))
    long = predict_alpha(lam, v2, widths=(8, 16, 32), steps=1000, optimizers=("gd", "natural"))
    assert short.pays_off["natural"] > 0.05 and short.n_star_gd == 4
    assert abs(long.pays_off["natural"]) < 0.01 and short.pays_off["gd"] == 0.0
    assert short.alpha["natural"] - short.alpha["gd"] == short.pays_off["natural"]
    config = dataclasses.replace(rf_scaling.PRESETS["quick"], widths=(8, 16, 32))
    with pytest.raises(ValueError, match="adam has no sampling-free theory"):
        equivalent_curves(spec("adam"), equivalent_spectrum(lam, v2, 8, config), config, 4)
