"""The posterior of a network's hidden weights with its linear readout integrated out (collapsed posterior).

The readout of `models.mlp.MLP` and `models.cnn.PatchCNN` is linear in its standard-normal weights v:
f(x) = √c · φ(x)ᵀv with φ(x) the F readout features of the hidden weights θ_h (MLP: F = N_L; CNN: F = n·N_c,
positions × channels) and c = σ_L²/F. Under the posterior of `models.posterior.log_posterior` (likelihood
exp(−|y − f|²/2T), prior v ~ N(0, I)) the readout can be integrated out in closed form
(docs/nngp_and_renormalization.md, eq. (R-29)):

    log p(θ_h | D) = −½ yᵀA⁻¹y − ½ log det A − ½|θ_h|² + const,   A = K̂ + T I_P,  K̂ = c ΦΦᵀ  (P × P),

and given θ_h the readout is Gaussian, v | θ_h, D ~ N(μ, Σ) with Σ = T G⁻¹, μ = √c G⁻¹Φᵀy, G = T I_F + c ΦᵀΦ;
so the test outputs are Gaussian with mean m(x₀) = k₀ᵀA⁻¹y and variance s²(x₀) = k(x₀, x₀) − k₀ᵀA⁻¹k₀, the GP
posterior of the kernel K̂ (eq. (R-9) with K̂ for K). Sampling θ_h from the collapsed density and averaging these
conditional moments (Rao-Blackwellisation) estimates the same posterior expectations as sampling v along, each draw
with no larger variance than the draw it replaces, and removes the readout's stiff directions (curvature
~ λ_max(K̂)/T) from the sampler; the chain over θ_h mixes differently, which its ESS measures.

Both are computed from one Cholesky factor in min(P, F) dimensions: of G (F × F, Woodbury and the determinant
lemma: log det A = (P − F) log T + log det G) when F ≤ P, else of A (P × P). The quadratic form is yᵀr/T with the
residual r = T A⁻¹y = y − c Φ G⁻¹Φᵀy, and w = G⁻¹Φᵀy = ΦᵀA⁻¹y (the readout mean and the gradient) is solved for
directly: recovering it from the residual as Φᵀr/T would lose ~1/T of float32's digits.

    features = readout_features(model, "W2", x_train)        # θ_h ↦ Φ (P, F), the readout weight W2 left out
    log_p = collapsed_log_posterior(features, y, T, readout_var=σ_L²)
    post = readout_posterior(features(θ_h), y, readout_features(model, "W2", x_test)(θ_h), T, σ_L²)
    loss = jnp.mean((post.mean - y_test) ** 2 + post.var)    # E[(f − y₀)² | θ_h, D]
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl

from deeptheory.models.posterior import tree_sq_norm

__all__ = ["ReadoutPosterior", "split_readout", "readout_features", "collapsed_log_posterior", "readout_posterior"]


class ReadoutPosterior(NamedTuple):
    """The readout given the hidden weights and the data (module docstring); arrays of the features' dtype."""

    mean: jax.Array  # (B,) E[f(x₀) | θ_h, D] = k₀ᵀA⁻¹y
    var: jax.Array  # (B,) Var[f(x₀) | θ_h, D] = k(x₀, x₀) − k₀ᵀA⁻¹k₀
    sq_norm: jax.Array  # () E[|v|² | θ_h, D] = |μ|² + tr Σ
    overlap: jax.Array | None  # (n, n) E[V Vᵀ | θ_h, D], V = v as n rows of F/n (CNN: positions × channels), if asked


class _Factor(NamedTuple):
    feature_space: bool  # Cholesky of G (F × F) rather than of A (P × P)
    chol: jax.Array  # lower Cholesky factor of G or A
    residual: jax.Array  # (P,) r = T A⁻¹ y
    weights: jax.Array  # (F,) w = G⁻¹Φᵀy = ΦᵀA⁻¹y, solved for directly (Φᵀr/T would cancel to ~eps·|Φᵀy|/T)
    scale: float  # c = σ_L² / F


# Every LAPACK call below goes through these three, each one chain at a time under vmap (sequential_vmap turns the
# vmap over chains into a loop of unbatched calls). On CPU, jaxlib's batched LAPACK kernels (a batch dimension from
# vmapping over chains) split the batch over XLA's intra-op thread pool and wait for the pieces inside a pool
# thread; with several such calls in flight the pool starved and collapsed chains deadlocked (gdb: every pool thread
# in lapack_strsm_ffi → ParallelBatchMap → BlockingCounter::Wait; 4 of about 12 runs on 2 cores). Unbatched calls
# never wait on the pool. Forward-over-reverse (`top_curvature`) differentiates through them; reverse mode never
# does (the gradient is the custom VJP of `_log_evidence`).
@jax.custom_batching.sequential_vmap
def _cholesky_solve(M, B):
    """(L, M⁻¹B) with L the lower Cholesky factor of the SPD matrix M."""
    chol = jnp.linalg.cholesky(M)
    return chol, jsl.cho_solve((chol, True), B)


@jax.custom_batching.sequential_vmap
def _cho_solve(chol, B):
    """M⁻¹B from the lower Cholesky factor L of M."""
    return jsl.cho_solve((chol, True), B)


@jax.custom_batching.sequential_vmap
def _solve_lower(chol, B):
    """L⁻¹B for lower-triangular L."""
    return jsl.solve_triangular(chol, B, lower=True)


def _factor(features_PxF, y_P, temperature, readout_var) -> _Factor:
    P, F = features_PxF.shape
    c = readout_var / F
    y = y_P.astype(features_PxF.dtype)
    if F <= P:
        G = c * (features_PxF.T @ features_PxF) + temperature * jnp.eye(F, dtype=features_PxF.dtype)
        chol, w = _cholesky_solve(G, features_PxF.T @ y)  # w = G⁻¹Φᵀy
        return _Factor(True, chol, y - c * (features_PxF @ w), w, c)
    A = c * (features_PxF @ features_PxF.T) + temperature * jnp.eye(P, dtype=features_PxF.dtype)
    chol, alpha = _cholesky_solve(A, y)  # A⁻¹y
    return _Factor(False, chol, temperature * alpha, features_PxF.T @ alpha, c)


def _check(features_PxF, y_P, temperature, readout_var) -> None:
    if features_PxF.ndim != 2 or y_P.shape != features_PxF.shape[:1]:
        raise ValueError(f"features must be (P, F) and y (P,); got {features_PxF.shape} and {y_P.shape}")
    if not (float(temperature) > 0 and float(readout_var) > 0):
        raise ValueError(f"temperature and readout_var must be > 0; got {temperature} and {readout_var}")


def split_readout(params, readout: str):
    """(hidden, v): a flax parameter dict {"params": {...}} without its readout weight `readout`, and that weight."""
    inner = dict(params["params"])
    if readout not in inner:
        raise ValueError(f"no readout weight {readout!r} among the parameters {sorted(inner)}")
    v = inner.pop(readout)
    return {**params, "params": inner}, v


def readout_features(model, readout: str, x) -> Callable:
    """θ_h ↦ Φ (B, F): the readout features of `model` (an MLP or PatchCNN, `return_features=True`) at inputs x,
    flattened to F columns, for hidden parameters θ_h = `split_readout(params, readout)[0]`.

    The readout weight only scales the output, so it is filled with zeros of the shape `model.init` gives it."""
    shapes = jax.eval_shape(model.init, jax.random.key(0), x[:1])["params"]
    if readout not in shapes:
        raise ValueError(f"no readout weight {readout!r} among the parameters {sorted(shapes)}")
    bias = "b" + readout[1:]
    if bias in shapes:  # it would stay in θ_h with its prior alone: another model
        raise ValueError(f"the readout has a bias {bias!r}; the collapsed posterior integrates out a readout without "
                         "one (set the readout's bias_var to 0, or append a constant feature)")
    shape = shapes[readout]

    def features(hidden):
        params = {**hidden, "params": {**hidden["params"], readout: jnp.zeros(shape.shape, shape.dtype)}}
        _, phi = model.apply(params, x, return_features=True)
        return phi.reshape(phi.shape[0], -1)

    return features


def _evidence_value(features_PxF, y_P, temperature, scale):
    P, F = features_PxF.shape
    fac = _factor(features_PxF, y_P, temperature, scale * F)
    log_det = 2 * jnp.sum(jnp.log(jnp.diagonal(fac.chol)))
    if fac.feature_space:
        log_det = log_det + (P - F) * jnp.log(jnp.asarray(temperature, features_PxF.dtype))
    quad = jnp.dot(y_P.astype(features_PxF.dtype), fac.residual) / temperature
    return -0.5 * (quad + log_det), fac


@partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _log_evidence(features_PxF, y_P, temperature, scale):
    """−½ yᵀA⁻¹y − ½ log det A, A = c ΦΦᵀ + T I (eq. (R-29)); its gradient in closed form (below)."""
    return _evidence_value(features_PxF, y_P, temperature, scale)[0]


def _log_evidence_fwd(features_PxF, y_P, temperature, scale):
    value, fac = _evidence_value(features_PxF, y_P, temperature, scale)
    return value, (features_PxF, fac)


def _log_evidence_bwd(temperature, scale, saved, g):
    """∂/∂Φ = c (α wᵀ − A⁻¹Φ) with α = A⁻¹y = r/T, w = ΦᵀA⁻¹y, and A⁻¹Φ = Φ G⁻¹ in feature space (AΦ = ΦG); ∂/∂y = −α.
    Autodiff through the Cholesky factor gives the same at twice the cost on CPU (measured 2026-12-02: value and
    gradient of this term for 4 chains at P = 512, F = 256 in 13 ms, against 28–40 ms through the factor)."""
    features, fac = saved
    alpha = fac.residual / temperature
    if fac.feature_space:
        inv_times_features = _cho_solve(fac.chol, features.T).T  # Φ G⁻¹
    else:
        inv_times_features = _cho_solve(fac.chol, features)  # A⁻¹Φ
    d_features = scale * (jnp.outer(alpha, fac.weights) - inv_times_features)  # αᵀΦ = w
    return g * d_features, (-g * alpha).astype(fac.residual.dtype)


_log_evidence.defvjp(_log_evidence_fwd, _log_evidence_bwd)


def collapsed_log_posterior(features_fn: Callable, y_P, temperature: float, readout_var: float) -> Callable:
    """θ_h ↦ log p(θ_h | D) with the readout integrated out (module docstring; eq. (R-29)), up to a constant.

    Args:
      features_fn: θ_h ↦ Φ (P, F), e.g. `readout_features(model, readout, x_train)`.
      y_P: training targets (P,).
      temperature: T > 0 (likelihood exp(−Σ(y − f)²/2T), as in `models.posterior.log_posterior`).
      readout_var: σ_L², the readout's weight variance; each of the F features carries c = σ_L²/F.
    """
    T, var = float(temperature), float(readout_var)
    if not (T > 0 and var > 0):
        raise ValueError(f"temperature and readout_var must be > 0; got {temperature} and {readout_var}")

    def log_density(hidden):
        features = features_fn(hidden)
        _check(features, y_P, T, var)
        y = y_P.astype(features.dtype)
        return _log_evidence(features, y, T, var / features.shape[1]) - 0.5 * tree_sq_norm(hidden)

    return log_density


def readout_posterior(features_PxF, y_P, features0_BxF, temperature: float, readout_var: float, *,
                      overlap_rows: int | None = None) -> ReadoutPosterior:
    """The Gaussian law of the readout given the features of the hidden weights (module docstring; eq. (R-29)).

    Args:
      features_PxF: Φ at the training inputs; y_P: training targets.
      features0_BxF: φ at the B test inputs.
      temperature, readout_var: as in `collapsed_log_posterior`.
      overlap_rows: n, to also return E[V Vᵀ] (n × n) for v read as V, n rows of F/n (row-major), e.g. the CNN's
        readout overlap across its n positions (rows) summed over channels; computed block by block, never the
        F × F second moment.
    """
    _check(features_PxF, y_P, temperature, readout_var)
    if features0_BxF.ndim != 2 or features0_BxF.shape[1] != features_PxF.shape[1]:
        raise ValueError(f"test features must be (B, {features_PxF.shape[1]}); got {features0_BxF.shape}")
    P, F = features_PxF.shape
    if overlap_rows is not None and (overlap_rows < 1 or F % overlap_rows):
        raise ValueError(f"overlap_rows must divide the {F} readout features; got {overlap_rows}")
    T = temperature
    fac = _factor(features_PxF, y_P, T, readout_var)
    c = fac.scale
    mu = jnp.sqrt(c) * fac.weights  # μ = √c G⁻¹Φᵀy = √c ΦᵀA⁻¹y
    mean = jnp.sqrt(c) * (features0_BxF @ mu)
    eye = jnp.eye(len(fac.chol), dtype=fac.chol.dtype)
    inv_chol = _solve_lower(fac.chol, eye)  # L⁻¹
    rows = overlap_rows or 1
    if fac.feature_space:  # Σ = T G⁻¹ = T L⁻ᵀL⁻¹
        half_FxB = _solve_lower(fac.chol, features0_BxF.T)  # L⁻¹φ₀
        var = c * T * jnp.sum(half_FxB**2, axis=0)
        trace = T * jnp.sum(inv_chol**2)
        blocks = lambda: T * jnp.einsum("kic,kjc->ij", *2 * (inv_chol.reshape(F, rows, -1),))  # noqa: E731
    else:  # Σ = I − c ΦᵀA⁻¹Φ = I − c HᵀH with H = L⁻¹Φ, tr Σ = F − P + T tr A⁻¹
        k0_PxB = c * (features_PxF @ features0_BxF.T)
        half_PxB = _solve_lower(fac.chol, k0_PxB)
        # a difference of two O(1) numbers: a test point in the span of the training features can round below 0
        var = jnp.maximum(c * jnp.sum(features0_BxF**2, axis=1) - jnp.sum(half_PxB**2, axis=0), 0)
        trace = (F - P) + T * jnp.sum(inv_chol**2)

        def blocks():
            H = (inv_chol @ features_PxF).reshape(P, rows, -1)
            return (F // rows) * jnp.eye(rows, dtype=mu.dtype) - c * jnp.einsum("pic,pjc->ij", H, H)

    overlap = None
    if overlap_rows is not None:
        V = mu.reshape(rows, -1)
        overlap = V @ V.T + blocks()
    return ReadoutPosterior(mean, var, jnp.sum(mu**2) + trace, overlap)
