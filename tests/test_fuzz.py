"""Every public theory entry point, fed broken and extreme inputs: one clear ValueError or a finite answer, never a
silent NaN, never an obscure exception from deep inside JAX.

Each entry point is called with one array argument replaced by a corrupted version of a valid value:
NaN, ±Inf, empty, a wrong number of dimensions, text, integers, float16, and valid entries of magnitude 1e30
(1e15 where the mathematics squares them twice). NaN/Inf/text must be refused; the rest must be refused with a
ValueError (or, for extreme magnitudes, a ConvergenceError stating the residual) or give a finite result. Scalar
arguments (noise, bandwidth, temperature, depth, …) get their own table.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deeptheory.theory import activations as ACT
from deeptheory.theory import attention as ATT
from deeptheory.theory import conv_kernels as CK
from deeptheory.theory import conv_renormalization as C
from deeptheory.theory import gp as G
from deeptheory.theory import nngp as K
from deeptheory.theory import particle_flow as PF
from deeptheory.theory import priors as PR
from deeptheory.theory import random_features as RF
from deeptheory.theory import renormalization as R

rng = np.random.default_rng(0)
X = rng.normal(size=(12, 4))
Y = rng.normal(size=12)
X0 = rng.normal(size=(5, 4))
Y0 = rng.normal(size=5)
IMAGES = rng.normal(size=(6, 4, 4))
TOKENS = rng.normal(size=(16, 2))
LAM = np.arange(1, 41, dtype=np.float64) ** -1.5
KERNEL = np.asarray(K.nngp_kernel(X, activation="erf", depth=1))
PRIOR = PR.make_prior("mixture", means=[[-1.0, 0.0], [1.0, 0.0]], variance=0.1)


def _nan(a):
    a = np.array(a, dtype=np.float64)
    a.flat[0] = np.nan
    return a


def _inf(a):
    a = np.array(a, dtype=np.float64)
    a.flat[-1] = -np.inf
    return a


CORRUPT = {
    "nan": _nan,
    "inf": _inf,
    "empty": lambda a: np.asarray(a)[:0],
    "extra_dim": lambda a: np.asarray(a)[None],
    "text": lambda a: "not an array",
    "integer": lambda a: np.round(np.abs(np.asarray(a)) * 3 + 1).astype(np.int32),
    "float16": lambda a: np.asarray(a).astype(np.float16),
    "huge": lambda a: np.asarray(a) * 1e30,
}
MUST_REFUSE = ("nan", "inf", "text")

# name -> (call with the corrupted array, the valid array); the valid call must give a finite answer.
ENTRIES = {
    "nngp_kernel": (lambda a: K.nngp_kernel(a, activation="erf", depth=2), X),
    "nngp_kernel_cross": (lambda a: K.nngp_kernel(X0, a, activation="relu", depth=2), X),
    "nngp_diag": (lambda a: K.nngp_diag(a, activation="tanh", depth=1), X),
    "covariance_chain": (lambda a: K.covariance_chain(a, np.diag(KERNEL), np.diag(KERNEL), activation="erf",
                                                      layer_weight_var=[1.0, 2.0]), KERNEL),
    "mean_activation": (lambda a: ACT.mean_activation("relu", a), np.abs(Y)),
    "conv_patch_kernels": (lambda a: CK.conv_patch_kernels(a, activation="relu", patches=(2,), weight_var=1.0), IMAGES),
    "gp_posterior_kernel": (lambda a: G.gp_posterior(a, KERNEL[:3], np.diag(KERNEL)[:3], Y, noise=0.1), KERNEL),
    "gp_posterior_labels": (lambda a: G.gp_posterior(KERNEL, KERNEL[:3], np.diag(KERNEL)[:3], a, noise=0.1), Y),
    "nngp_regression_x": (lambda a: G.nngp_regression(a, Y, X0, Y0, noise=0.1, activation="erf", depth=1), X),
    "nngp_regression_y": (lambda a: G.nngp_regression(X, a, X0, Y0, noise=0.1, activation="erf", depth=1), Y),
    "rf_risk": (lambda a: RF.rf_risk(a, LAM, n_features=10, n_samples=20, ridge=1e-3), LAM),
    "rf_risk_target": (lambda a: RF.rf_risk(LAM, a, n_features=10, n_samples=20, ridge=1e-3), LAM),
    "krr_risk": (lambda a: RF.krr_risk(a, LAM, n_samples=20, ridge=0.0), LAM),
    "effective_ridge": (lambda a: RF.effective_ridge(a, n_features=10, n_samples=20, ridge=0.0), LAM),
    "preconditioner": (lambda a: RF.preconditioner(a, "natural", damping=1e-3), LAM),
    "learning_curve": (lambda a: RF.learning_curve(a, LAM, 20, learning_rate=0.5), LAM),
    "time_bottleneck": (lambda a: RF.time_bottleneck(a, 100, learning_rate=0.5), LAM),
    "loglog_slope": (lambda a: RF.loglog_slope(a, 1.0 / np.asarray([2.0, 4.0, 8.0, 16.0])), [2.0, 4.0, 8.0, 16.0]),
    "fc_theory_x": (lambda a: R.fc_theory(a, Y, X0, Y0, activation="erf", depth=1, width=20, temperature=0.1), X),
    "fc_theory_y": (lambda a: R.fc_theory(X, a, X0, Y0, activation="relu", depth=1, width=20, temperature=0.1,
                                          variant="noncentral"), Y),
    "fc_theory_grid": (lambda a: R.fc_theory_grid(a, Y, X0, Y0, activation="erf", depth=2, width=[10, 40],
                                                  temperature=[0.1]), X),
    "renormalized_kernel": (lambda a: R.renormalized_kernel(a, activation="erf", depth=2, order_params=[0.9, 1.1],
                                                            variant="nested"), X),
    "spectrum": (lambda a: R.spectrum(a, Y, KERNEL[:3], np.diag(KERNEL)[:3], Y[:3]), KERNEL),
    "zero_temperature_order_param": (lambda a: R.zero_temperature_order_param(a, 0.5, 2), np.abs(Y) + 0.1),
    "conv_theory": (lambda a: C.conv_theory(a, Y[:6], IMAGES[:3], Y0[:3], activation="relu", patches=2, channels=8,
                                            temperature=0.1), IMAGES),
    "rbf_attention": (lambda a: ATT.rbf_attention(a, TOKENS, bandwidth=0.5), TOKENS),
    "dot_product_attention": (lambda a: ATT.dot_product_attention(TOKENS, a, bandwidth=0.5, key_norm_bias=True), TOKENS),
    "particle_flow": (lambda a: PF.particle_flow(a, eps=0.1, step=1.0, depth=3), TOKENS),
    "two_stage_denoise": (lambda a: PF.two_stage_denoise(a, sigma2=0.5, eps=0.1, step=1.0, depth=3), TOKENS),
    "two_stage_denoise_chunked": (lambda a: PF.two_stage_denoise(a, sigma2=0.5, eps=0.1, step=1.0, depth=3,
                                                                chunk_size=5), TOKENS),
    "stage2_readout": (lambda a: PF.stage2_readout(TOKENS, a, sigma2=0.5), TOKENS),
    "blurring_mean_shift": (lambda a: PF.blurring_mean_shift(a, eps=0.1, depth=2), TOKENS),
    "tweedie_kde": (lambda a: PF.tweedie_kde(a, sigma2=0.5), TOKENS),
    "bayes_posterior_mean": (lambda a: PR.bayes_posterior_mean(a, PRIOR, 0.5), TOKENS),
    "probability_flow": (lambda a: PR.probability_flow(a, PRIOR, sigma2=0.5, steps=8), TOKENS),
    "gaussian_t_star": (lambda a: PF.gaussian_t_star(0.5, a, 1.0), np.abs(Y)),
    "vmf_mean_length": (lambda a: PR.vmf_mean_length(a, 3), np.abs(Y)),
    "parabolic_minimum": (lambda a: PF.parabolic_minimum(np.arange(12.0), a), (np.arange(12.0) - 5) ** 2),
}

# Where |x|² enters more than once (kernels of kernels, Gram matrices of squared tokens), 1e30 overflows float64
# itself: 1e15 is the extreme these accept, and they must give finite answers there.
HUGE_BY_ENTRY = {"covariance_chain": 1e15, "spectrum": 1e15, "gp_posterior_kernel": 1e15}


def _finite(out) -> bool:
    leaves = [np.asarray(x) for x in jax.tree.leaves(out) if hasattr(x, "dtype") or isinstance(x, float)]
    return all(np.all(np.isfinite(x)) for x in leaves if x.dtype.kind in "fc")


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_valid_input_gives_a_finite_answer(name):
    call, valid = ENTRIES[name]
    assert _finite(call(valid)), name


@pytest.mark.parametrize("corruption", sorted(CORRUPT))
@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_corrupted_input_is_refused_clearly_or_answered_finitely(name, corruption):
    call, valid = ENTRIES[name]
    bad = CORRUPT[corruption](valid)
    if corruption == "huge" and name in HUGE_BY_ENTRY:
        bad = np.asarray(valid) * HUGE_BY_ENTRY[name]
    try:
        out = call(bad)
    except R.ConvergenceError as err:  # a solver that says it did not converge, with its residual, is a clear answer
        assert corruption == "huge" and "residual" in str(err), str(err)
        return
    except ValueError as err:
        message = str(err)
        assert message and len(message) < 500, message
        if corruption in ("nan", "inf"):
            assert "non-finite" in message or "finite" in message, message
        return
    assert corruption not in MUST_REFUSE, f"{name} accepted {corruption} input"
    assert _finite(out), f"{name} returned a non-finite answer for {corruption} input"


SCALAR_MISUSE = [
    (lambda: K.nngp_kernel(X, activation="tanh", depth=1, quad_points=400), "quad_points"),
    (lambda: K.nngp_kernel(X, activation="erf", depth=-1), "depth"),
    (lambda: K.nngp_kernel(X, activation="erf", depth=2.0), "depth"),
    (lambda: K.nngp_kernel(X, activation="erf", depth=1, weight_var=np.nan), "weight_var"),
    (lambda: K.nngp_kernel(X, activation="softsign", depth=1), "unknown activation"),
    (lambda: G.gp_posterior(KERNEL, KERNEL[:3], np.diag(KERNEL)[:3], Y, noise=np.nan), "noise"),
    (lambda: G.gp_posterior(KERNEL, KERNEL[:3], np.diag(KERNEL)[:3], Y, noise=-1.0), "noise"),
    (lambda: RF.rf_risk(LAM, LAM, n_features=np.nan, n_samples=20, ridge=0.0), "n_features"),
    (lambda: RF.rf_risk(LAM, LAM, n_features=10, n_samples=20, ridge=np.inf), "ridge"),
    (lambda: RF.power_law_spectrum(10.5, 1.0), "dim"),
    (lambda: RF.power_law_spectrum(10, np.nan), "s must be > 0"),
    (lambda: RF.learning_curve(LAM, LAM, -1, learning_rate=0.1), "n_steps"),
    (lambda: RF.loglog_slope([4.0, 4.0], [1.0, 2.0]), "two distinct"),
    (lambda: R.fc_theory(X, Y, X0, Y0, activation="erf", depth=1, width=20, temperature=np.nan), "temperature"),
    (lambda: R.fc_theory(X, Y, X0, Y0, activation="erf", depth=1, width=0, temperature=0.1), "width"),
    (lambda: R.fc_theory(X, Y, X0, Y0, activation="erf", depth=0, width=10, temperature=0.1), "depth"),
    (lambda: R.fc_theory_grid(X, Y, X0, Y0, activation="erf", depth=1, width=[10], temperature=[np.inf]), "temperature"),
    (lambda: R.renormalized_kernel(X, activation="erf", depth=1, order_params=[-1.0]), "out of range"),
    (lambda: C.conv_theory(IMAGES, Y[:6], IMAGES[:3], Y0[:3], activation="relu", patches=3, channels=8,
                           temperature=0.1), "divisible"),
    (lambda: C.conv_theory(IMAGES, Y[:6], IMAGES[:3], Y0[:3], activation="relu", patches=0, channels=8,
                           temperature=0.1), "patch"),
    (lambda: ATT.rbf_attention(TOKENS, TOKENS, bandwidth=np.inf), "bandwidth"),
    (lambda: PF.two_stage_denoise(TOKENS, sigma2=np.nan, eps=0.1, step=1.0, depth=2), "sigma2"),
    (lambda: PF.two_stage_denoise(TOKENS, sigma2=0.5, eps=0.1, step=1.0, depth=1.5), "depth"),
    (lambda: PF.particle_flow(TOKENS, eps=[0.1, 0.2], step=1.0, depth=3), "eps"),
    (lambda: PR.sample_prior(jax.random.key(0), PRIOR, -3), "n"),
    (lambda: PF.find_t_star(jax.random.key(0), PRIOR, sigma2=0.5, eps=0.1, step=1.0, max_depth=2, num_particles=0),
     "num_particles"),
    (lambda: PF.gaussian_flow_variance(np.nan, eps=0.1, step=1.0, depth=2), "initial_variance"),
]


@pytest.mark.parametrize(("call", "fragment"), SCALAR_MISUSE)
def test_bad_scalar_arguments_are_one_clear_error(call, fragment):
    with pytest.raises(ValueError, match=fragment) as info:
        call()
    assert len(str(info.value)) < 500


def test_huge_valid_tokens_denoise_to_themselves_in_float32():
    """Tokens ~1e30 are isolated at any bandwidth of O(1): every token attends only to itself, so the particles do not
    move and Stage 2 returns the noisy tokens. In float32 |y|² overflows; the answer must still be exact, not NaN."""
    y = jnp.asarray(TOKENS * 1e30, jnp.float32)
    for chunk_size in (None, 5):
        out = PF.two_stage_denoise(y, sigma2=0.5, eps=0.1, step=1.0, depth=3, chunk_size=chunk_size)
        np.testing.assert_array_equal(np.asarray(out), np.asarray(y))
        jitted = jax.jit(lambda t, c=chunk_size: PF.two_stage_denoise(t, sigma2=0.5, eps=0.1, step=1.0, depth=3,
                                                                     chunk_size=c))
        np.testing.assert_array_equal(np.asarray(jitted(y)), np.asarray(y))
