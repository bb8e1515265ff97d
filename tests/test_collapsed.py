"""models.collapsed: the readout integrated out exactly, against dense formulas, the full posterior, quadrature and
the full-weight sampler (docs/nngp_and_renormalization.md, eq. (R-29))."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deeptheory.models.collapsed import (
    collapsed_log_posterior,
    readout_features,
    readout_posterior,
    split_readout,
)
from deeptheory.models.mlp import MLP
from deeptheory.models.posterior import log_posterior
from deeptheory.train.inference import diagnostics
from deeptheory.train.inference.chains import run_chains
from deeptheory.train.inference.samplers import baoab, mala


@pytest.mark.parametrize("P, F, rows", [(7, 4, 2), (4, 6, 3), (5, 5, 5), (9, 6, 1)])
def test_readout_posterior_is_the_gaussian_conditional_in_both_spaces(P, F, rows):
    """Feature-space (F ≤ P, Woodbury) and sample-space (F > P) factorisations against dense float64 formulas:
    v | θ_h ~ N(μ, Σ), Σ = (I + cΦᵀΦ/T)⁻¹, μ = Σ √c Φᵀy / T; f(x₀) = √c φ₀ᵀv; the overlap E[VVᵀ] of v read as
    `rows` rows is the block trace of μμᵀ + Σ (rows = F: the whole second moment; rows = 1: E|v|²)."""
    rng = np.random.default_rng(P * 10 + F)
    Phi, y, Phi0 = rng.normal(size=(P, F)), rng.normal(size=P), rng.normal(size=(3, F))
    T, var = 0.3, 1.7
    c = var / F
    Sigma = np.linalg.inv(np.eye(F) + c * Phi.T @ Phi / T)
    mu = Sigma @ (np.sqrt(c) * Phi.T @ y / T)
    post = readout_posterior(jnp.asarray(Phi), jnp.asarray(y), jnp.asarray(Phi0), T, var, overlap_rows=rows)
    np.testing.assert_allclose(post.mean, np.sqrt(c) * Phi0 @ mu, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(post.var, c * np.einsum("bf,fg,bg->b", Phi0, Sigma, Phi0), rtol=1e-12)
    np.testing.assert_allclose(post.sq_norm, mu @ mu + np.trace(Sigma), rtol=1e-12)
    second = (np.outer(mu, mu) + Sigma).reshape(rows, F // rows, rows, F // rows)
    np.testing.assert_allclose(post.overlap, np.einsum("icjc->ij", second), rtol=1e-11, atol=1e-13)
    assert post.mean.dtype == jnp.float64
    assert readout_posterior(jnp.asarray(Phi), jnp.asarray(y), jnp.asarray(Phi0), T, var).overlap is None
    with pytest.raises(ValueError, match="overlap_rows must divide"):
        readout_posterior(jnp.asarray(Phi), jnp.asarray(y), jnp.asarray(Phi0), T, var, overlap_rows=F + 1)


@pytest.mark.parametrize("width", [3, 9])  # F < P and F > P (P = 6)
def test_collapsed_density_is_the_full_posterior_with_the_readout_integrated_out(width):
    """log p(θ_h, v | D) − log N(v; μ(θ_h), Σ(θ_h)) does not depend on v, and equals the collapsed log density up to
    one constant for every θ_h: the definition of integrating v out, checked against `models.posterior` itself."""
    rng = np.random.default_rng(width)
    x, y = jnp.asarray(rng.normal(size=(6, 4))), jnp.asarray(rng.normal(size=6))
    T, var = 0.2, 1.5
    model = MLP(widths=(width, width), activation="erf", weight_var=var, dtype=jnp.float64)
    full = log_posterior(model.apply, x, y, T)
    features = readout_features(model, "W2", x)
    collapsed = collapsed_log_posterior(features, y, T, var)
    constants = []
    for seed in range(3):
        params = model.init(jax.random.key(seed), x)
        hidden, _ = split_readout(params, "W2")
        Phi = np.asarray(features(hidden))
        mu = _readout_mean(Phi, y, T, var)
        Sigma = np.linalg.inv(np.eye(width) + var / width * Phi.T @ Phi / T)
        for v_seed in range(2):
            v = np.random.default_rng(v_seed).normal(size=(width, 1))
            params_v = {"params": {**params["params"], "W2": jnp.asarray(v)}}
            d = v[:, 0] - mu
            log_gauss = -0.5 * d @ np.linalg.solve(Sigma, d) - 0.5 * np.linalg.slogdet(2 * np.pi * Sigma)[1]
            constants.append(float(full(params_v)) - log_gauss - float(collapsed(hidden)))
    np.testing.assert_allclose(constants, constants[0], rtol=0, atol=1e-10)


def _readout_mean(Phi, y, T, var):
    Phi, y = np.asarray(Phi), np.asarray(y)
    c = var / Phi.shape[1]
    return np.linalg.solve(np.eye(Phi.shape[1]) * T + c * Phi.T @ Phi, np.sqrt(c) * Phi.T @ y)


def test_gradient_matches_a_dense_implementation():
    """∇ of the Cholesky/Woodbury density = ∇ of −½yᵀA⁻¹y − ½ log det A − ½|θ|² written with dense solves."""
    rng = np.random.default_rng(3)
    x, y = jnp.asarray(rng.normal(size=(8, 3))), jnp.asarray(rng.normal(size=8))
    T, var = 0.05, 1.0
    for width in (5, 12):
        model = MLP(widths=(width,), activation="relu", weight_var=var, dtype=jnp.float64)
        features = readout_features(model, "W1", x)
        hidden, _ = split_readout(model.init(jax.random.key(width), x), "W1")

        def dense(h, features=features, width=width):
            Phi = features(h)
            A = var / width * Phi @ Phi.T + T * jnp.eye(8, dtype=Phi.dtype)
            sq = sum(jnp.sum(a**2) for a in jax.tree.leaves(h))
            return -0.5 * y @ jnp.linalg.solve(A, y) - 0.5 * jnp.linalg.slogdet(A)[1] - 0.5 * sq

        ours = jax.grad(collapsed_log_posterior(features, y, T, var))(hidden)
        for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(jax.grad(dense)(hidden)), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("width", [5, 12])  # feature space (F ≤ P) and sample space
def test_vmapped_over_chains_every_lapack_call_is_unbatched(width):
    """The deadlock guard (models.collapsed, the three sequential helpers): under vmap over chains no LAPACK call of
    the density, its gradient, its Hessian-vector product (top_curvature) or the readout posterior may carry a batch
    dimension — jaxlib's batched CPU kernels wait on the intra-op pool and deadlocked collapsed chains. Also checks
    that the vmapped values equal the per-chain ones."""
    import re

    rng = np.random.default_rng(4)
    x, y = jnp.asarray(rng.normal(size=(8, 3)), jnp.float32), jnp.asarray(rng.normal(size=8), jnp.float32)
    model = MLP(widths=(width,), activation="erf")
    features = readout_features(model, "W1", x)
    log_p = collapsed_log_posterior(features, y, 0.05, 1.0)
    hidden = split_readout(jax.vmap(lambda k: model.init(k, x))(jax.random.split(jax.random.key(0), 4)), "W1")[0]
    tangent = jax.tree.map(jnp.ones_like, hidden)
    programs = {
        "value and gradient": (jax.vmap(jax.value_and_grad(log_p)), (hidden,)),
        "Hessian-vector product": (jax.vmap(lambda h, t: jax.jvp(jax.grad(log_p), (h,), (t,))[1]), (hidden, tangent)),
        "readout posterior": (jax.vmap(lambda h: readout_posterior(features(h), y, features(h)[:3], 0.05, 1.0,
                                                                   overlap_rows=1)), (hidden,)),
    }
    for name, (fn, args) in programs.items():
        calls = re.findall(r'(lapack_\w+)\(.*?num_batch_dims = "(\d+)"', jax.jit(fn).lower(*args).as_text())
        assert calls and all(batch == "0" for _, batch in calls), (name, calls)
    value, grad = programs["value and gradient"][0](hidden)
    one = jax.tree.map(lambda a: a[1], hidden)
    np.testing.assert_allclose(value[1], log_p(one), rtol=1e-5)
    for a, b in zip(jax.tree.leaves(jax.tree.map(lambda g: g[1], grad)), jax.tree.leaves(jax.grad(log_p)(one)),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_float32_keeps_its_digits_at_low_temperature():
    """The readout mean and the gradient in float32 against float64 at T = 10⁻³, F < P (feature space): w = G⁻¹Φᵀy is
    solved for, not recovered from the residual as Φᵀr/T, which loses ~1/T of float32's digits (the readout mean
    was then 2.6e-3 off here, relative; now 2e-6)."""
    rng = np.random.default_rng(7)
    P, F, T = 256, 64, 1e-3
    x, y = rng.normal(size=(P, 32)), rng.integers(0, 2, size=P).astype(float)
    model = MLP(widths=(F,), activation="relu", dtype=jnp.float64)
    hidden64, _ = split_readout(model.init(jax.random.key(0), jnp.asarray(x)), "W1")
    results = {}
    for dtype in (jnp.float32, jnp.float64):
        m = MLP(widths=(F,), activation="relu", dtype=dtype)
        features = readout_features(m, "W1", jnp.asarray(x, dtype))
        hidden = jax.tree.map(lambda a, dtype=dtype: a.astype(dtype), hidden64)
        y_ = jnp.asarray(y, dtype)
        post = readout_posterior(features(hidden), y_, features(hidden), T, 1.0)
        grad = jax.grad(collapsed_log_posterior(features, y_, T, 1.0))(hidden)["params"]["W0"]
        results[dtype] = np.asarray(post.mean, np.float64), np.asarray(grad, np.float64)
    (mean32, grad32), (mean64, grad64) = results[jnp.float32], results[jnp.float64]
    assert np.max(np.abs(mean32 - mean64)) < 1e-3 * np.max(np.abs(mean64))
    assert np.linalg.norm(grad32 - grad64) < 1e-3 * np.linalg.norm(grad64)


def test_a_readout_bias_is_refused():
    model = MLP(widths=(3,), activation="erf", bias_var=(0.0, 1.0))
    with pytest.raises(ValueError, match="the readout has a bias 'b1'"):
        readout_features(model, "W1", jnp.ones((2, 4), jnp.float32))


def test_collapsed_mala_matches_quadrature_on_a_linear_network():
    """One hidden linear unit on 2-d inputs: f = v · (w·x)/√2, θ_h = w ∈ R². With u = Xw/√2 the collapsed density is
    N(w; 0, I) N(y; 0, T I + uuᵀ) (Sherman–Morrison, written out independently here), a 2-d integral on a grid, and so
    are the posterior expectations of the Rao-Blackwellised test loss E[(f − y₀)² | w] and of E[v² | w]. MALA is
    exact at any step: 2000 chains, one final draw each, within 5 standard errors."""
    rng = np.random.default_rng(4)
    P, T = 6, 0.5
    X, X0 = rng.normal(size=(P, 2)), rng.normal(size=(4, 2))
    y = X @ np.array([0.8, -0.4]) + 0.2 * rng.normal(size=P)
    y0 = X0 @ np.array([0.8, -0.4])

    grid = np.linspace(-6, 6, 601)
    W = np.stack(np.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    U, U0 = W @ X.T / np.sqrt(2), W @ X0.T / np.sqrt(2)  # (G, P), (G, B)
    uu = np.sum(U**2, 1)
    quad = (y @ y - (U @ y) ** 2 / (T + uu)) / T
    log_w = -0.5 * np.sum(W**2, 1) - 0.5 * quad - 0.5 * np.log1p(uu / T)
    weight = np.exp(log_w - log_w.max())
    weight /= weight.sum()
    mean = U0 * ((U @ y) / (T + uu))[:, None]
    var = U0**2 * (T / (T + uu))[:, None]
    loss = np.mean((mean - y0) ** 2 + var, axis=1)
    sq_norm = ((U @ y) / (T + uu)) ** 2 + T / (T + uu)
    exact_loss, exact_norm = weight @ loss, weight @ sq_norm

    model = MLP(widths=(1,), activation="linear", dtype=jnp.float64)
    x, x0 = jnp.asarray(X), jnp.asarray(X0)
    features, features0 = readout_features(model, "W1", x), readout_features(model, "W1", x0)
    log_p = collapsed_log_posterior(features, jnp.asarray(y), T, 1.0)

    def measure(hidden):
        post = readout_posterior(features(hidden), jnp.asarray(y), features0(hidden), T, 1.0)
        return {"loss": jnp.mean((post.mean - y0) ** 2 + post.var), "norm": post.sq_norm}, {}, {}

    n = 2000
    theta0 = {"params": {"W0": jax.random.normal(jax.random.key(1), (n, 2, 1), jnp.float64)}}
    result = run_chains(mala(log_p, 0.05), theta0, seed=2, n_steps=1500, every=1500, measure=measure)
    assert np.mean(result.acceptance) > 0.5
    for name, exact in (("loss", exact_loss), ("norm", exact_norm)):
        draws = result.trace[name][:, -1]
        assert abs(draws.mean() - exact) < 5 * draws.std() / np.sqrt(n), (name, draws.mean(), exact)


def test_collapsed_and_full_samplers_agree_on_a_small_mlp():
    """The same posterior sampled two ways (BAOAB over all weights; BAOAB over θ_h with the readout integrated out):
    test loss and readout norm agree within 4 combined Monte Carlo standard errors (about 0.3 % of each here), and
    the collapsed estimate of the test loss has the smaller error."""
    rng = np.random.default_rng(5)
    x, x0 = jnp.asarray(rng.normal(size=(10, 3))), jnp.asarray(rng.normal(size=(6, 3)))
    y = jnp.asarray(np.sin(np.asarray(x) @ np.array([1.0, -1.0, 0.5])))
    y0 = jnp.sin(x0 @ jnp.asarray([1.0, -1.0, 0.5]))
    T, width = 0.1, 4
    model = MLP(widths=(width,), activation="erf", dtype=jnp.float64)
    theta0 = jax.vmap(lambda k: model.init(k, x))(jax.random.split(jax.random.key(0), 32))
    features, features0 = readout_features(model, "W1", x), readout_features(model, "W1", x0)

    def measure_full(params):
        f0 = model.apply(params, x0)[:, 0]
        return {"loss": jnp.mean((f0 - y0) ** 2), "norm": jnp.sum(params["params"]["W1"] ** 2)}, {}, {}

    def measure_collapsed(hidden):
        post = readout_posterior(features(hidden), y, features0(hidden), T, 1.0)
        return {"loss": jnp.mean((post.mean - y0) ** 2 + post.var), "norm": post.sq_norm}, {}, {}

    runs = {
        "full": run_chains(baoab(log_posterior(model.apply, x, y, T), 0.05), theta0, seed=1, n_steps=20_000,
                           every=20, burn_in=2000, measure=measure_full),
        "collapsed": run_chains(baoab(collapsed_log_posterior(features, y, T, 1.0), 0.05),
                                split_readout(theta0, "W1")[0], seed=1, n_steps=20_000, every=20, burn_in=2000,
                                measure=measure_collapsed),
    }
    stats = {k: {m: diagnostics.mean_and_error(r.trace[m][:, 100:]) for m in ("loss", "norm")}
             for k, r in runs.items()}
    for m in ("loss", "norm"):
        (a, ea, _), (b, eb, _) = stats["full"][m], stats["collapsed"][m]
        assert abs(a - b) < 4 * np.hypot(ea, eb), (m, a, ea, b, eb)
    assert stats["collapsed"]["loss"][1] < stats["full"]["loss"][1]


def test_sharded_collapsed_chains_equal_unsharded():
    """The collapsed density in run_chains: 4 simulated devices or 1 give the same chains (rounding only)."""
    rng = np.random.default_rng(6)
    x, y = jnp.asarray(rng.normal(size=(10, 4))), jnp.asarray(rng.normal(size=10))
    model = MLP(widths=(6,), activation="erf", dtype=jnp.float64)
    log_p = collapsed_log_posterior(readout_features(model, "W1", x), y, 0.1, 1.0)
    theta0 = split_readout(jax.vmap(lambda k: model.init(k, x))(jax.random.split(jax.random.key(0), 8)), "W1")[0]
    runs = [run_chains(baoab(log_p, 0.02), theta0, seed=1, n_steps=30, every=10, measure=lambda p: ({}, {}, {}),
                       devices=devices) for devices in (jax.devices()[:1], jax.devices())]
    assert len(jax.devices()) == 4
    for a, b in zip(jax.tree.leaves(runs[0].final), jax.tree.leaves(runs[1].final), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_bad_input_gives_clear_errors():
    Phi, y = jnp.ones((4, 3)), jnp.ones(4)
    with pytest.raises(ValueError, match="temperature and readout_var must be > 0"):
        collapsed_log_posterior(lambda h: Phi, y, 0.0, 1.0)
    with pytest.raises(ValueError, match=r"features must be \(P, F\) and y \(P,\)"):
        readout_posterior(Phi, jnp.ones(5), Phi, 0.1, 1.0)
    with pytest.raises(ValueError, match=r"test features must be \(B, 3\)"):
        readout_posterior(Phi, y, jnp.ones((2, 4)), 0.1, 1.0)
    with pytest.raises(ValueError, match="no readout weight 'W5' among the parameters"):
        split_readout({"params": {"W0": Phi, "W1": Phi}}, "W5")
