"""Gaussian-process regression by Cholesky, and the NNGP predictor built on `theory.nngp`.

Subject: the posterior mean and variance of a GP at test points and the test loss they predict.

Posterior of a GP with prior covariance K and observation noise T (Rasmussen & Williams 2006,
eqs. 2.25–2.26; the infinite-width Bayesian network at temperature T,
docs/nngp_and_renormalization.md, eqs. (R-9)–(R-11)):

    mean(x0) = k0ᵀ (K + T I)⁻¹ y
    var(x0)  = κ0 − k0ᵀ (K + T I)⁻¹ k0                  (T is not added: var of f, not of y)
    ε_g      = ⟨(y0 − mean(x0))²⟩_test + ⟨var(x0)⟩_test = bias² + variance

ε_g is what a sampling experiment measures, E_θ[(y0 − f_θ(x0))²] averaged over test points.

Neighbours: `theory.nngp` (the kernels), `theory.renormalization` and `theory.conv_renormalization` (GP regression
with renormalized kernels: `kernel_prediction` calls `gp_posterior` with noise = T).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.linalg import cho_solve, solve_triangular

from deeptheory.theory._checks import all_finite, as_array, check_scalar, float64_theory
from deeptheory.theory.nngp import nngp_diag, nngp_kernel

__all__ = ["GPPosterior", "TestLoss", "gp_posterior", "gp_test_loss", "nngp_regression", "jitter_for"]

JITTER_EPS_MULTIPLE = 10.0


class GPPosterior(NamedTuple):
    """Posterior of f at the test points. mean: (Q,) or (Q, C); var: (Q,), shared by all outputs."""

    mean: jax.Array
    var: jax.Array


class TestLoss(NamedTuple):
    """ε_g = bias² + variance, averaged over test points (and outputs, for (Q, C) targets)."""

    total: jax.Array
    bias2: jax.Array
    variance: jax.Array


def jitter_for(K_PxP) -> jax.Array:
    """The documented jitter: 10 · machine-ε(dtype) · mean(diag K), added to the diagonal on top of T.

    `gp_posterior` factorises in float64, where it changes results by a relative ~1e-15, and keeps T = 0
    (noiseless interpolation) factorisable for kernels that are PSD up to rounding.
    """
    return JITTER_EPS_MULTIPLE * jnp.finfo(K_PxP.dtype).eps * jnp.mean(jnp.diagonal(K_PxP))


@float64_theory
def gp_posterior(K_PxP, K_QxP, k_Q, y_train, *, noise, jitter=None) -> GPPosterior:
    """GP posterior mean and variance at Q test points (Rasmussen & Williams 2006, eqs. 2.25–2.26).

    Args:
      K_PxP: train kernel. K_QxP: test × train kernel. k_Q: test variances κ0.
      y_train: (P,) or (P, C) targets.
      noise: observation noise T >= 0.
      jitter: added to the diagonal on top of `noise`; None: `jitter_for(K_PxP)`.

    Raises:
      ValueError: on bad shapes or noise, or (for concrete inputs) when K + T I is not positive
        definite in working precision, instead of returning NaN.
    """
    check_scalar("noise", noise, minimum=0, strict=False, hint=" (the temperature T: the observation-noise variance)")
    if jitter is not None:
        check_scalar("jitter", jitter, minimum=0, strict=False, hint=" (added to the diagonal; None: jitter_for(K))")
    K_PxP = as_array(K_PxP, "K_PxP", ndim=2, what="the (P, P) train kernel")
    K_QxP = as_array(K_QxP, "K_QxP", ndim=2, what="the (Q, P) test × train kernel", allow_empty=True)
    k_Q = as_array(k_Q, "k_Q", ndim=1, what="the (Q,) test variances", allow_empty=True)
    y_train = as_array(y_train, "y_train", ndim=(1, 2), what="(P,) or (P, C) targets")
    P = K_PxP.shape[0]
    if K_PxP.shape != (P, P) or K_QxP.ndim != 2 or K_QxP.shape[1] != P or k_Q.shape != (K_QxP.shape[0],):
        raise ValueError(
            f"shapes do not fit: K_PxP {K_PxP.shape}, K_QxP {K_QxP.shape}, k_Q {k_Q.shape} "
            "(expected (P, P), (Q, P), (Q,))"
        )
    if y_train.shape[0] != P or y_train.ndim not in (1, 2):
        raise ValueError(f"y_train must be (P,) or (P, C) with P = {P}; got shape {y_train.shape}")
    dtype = jnp.float64  # a solver: float64 whatever the inputs (theory._checks, precision policy)
    K_PxP, K_QxP, k_Q = K_PxP.astype(dtype), K_QxP.astype(dtype), k_Q.astype(dtype)
    jitter = jitter_for(K_PxP) if jitter is None else jitter
    A_PxP = K_PxP + (jnp.asarray(noise, dtype) + jnp.asarray(jitter, dtype)) * jnp.eye(P, dtype=dtype)
    L_PxP = jnp.linalg.cholesky(A_PxP)
    if not all_finite(L_PxP):
        raise ValueError(
            "Cholesky of K + T I failed: the kernel matrix is not positive definite in "
            f"float64 (P = {P}, T = {float(noise)}). Increase `noise` or `jitter`, or remove duplicate "
            "training points."
        )
    alpha = cho_solve((L_PxP, True), y_train.astype(dtype))
    mean = K_QxP @ alpha
    V_PxQ = solve_triangular(L_PxP, K_QxP.T, lower=True)
    # Rounding can make a near-zero variance slightly negative; it is a variance, so floor it at 0.
    var = jnp.maximum(k_Q - jnp.sum(V_PxQ * V_PxQ, axis=0), 0.0)
    return GPPosterior(mean, var)


@float64_theory
def gp_test_loss(posterior: GPPosterior, y_test) -> TestLoss:
    """ε_g = ⟨(y0 − mean)²⟩ + ⟨var⟩ over test points (docs/nngp_and_renormalization.md, eq. (R-10))."""
    mean, var = posterior
    y_test = as_array(y_test, "y_test", ndim=(1, 2), what="(Q,) or (Q, C) test targets")
    if y_test.shape != mean.shape:
        raise ValueError(f"y_test has shape {y_test.shape} but the posterior mean has shape {mean.shape}")
    bias2 = jnp.mean((y_test.astype(mean.dtype) - mean) ** 2)
    variance = jnp.mean(var)
    return TestLoss(bias2 + variance, bias2, variance)


@float64_theory
def nngp_regression(
    x_train,
    y_train,
    x_test,
    y_test=None,
    *,
    noise: float,
    activation: str | Callable,
    depth: int,
    weight_var: float | Sequence[float] = 1.0,
    bias_var: float | Sequence[float] = 0.0,
    jitter=None,
):
    """GP regression with the NNGP kernel: the infinite-width Bayesian MLP at temperature `noise`.

    Kernels from `theory.nngp` (Lee et al. 2018), posterior from `gp_posterior`.

    Returns:
      (GPPosterior, TestLoss) if y_test is given, else GPPosterior.
    """
    kernel_args = dict(activation=activation, depth=depth, weight_var=weight_var, bias_var=bias_var)
    x_train = as_array(x_train, "x_train", ndim=2, what="a (P, d) array of training inputs")
    x_test = as_array(x_test, "x_test", ndim=2, what="a (Q, d) array of test inputs", allow_empty=True)
    K_PxP = nngp_kernel(x_train, **kernel_args)
    K_QxP = nngp_kernel(x_test, x_train, **kernel_args)
    k_Q = nngp_diag(x_test.astype(K_PxP.dtype), **kernel_args)
    posterior = gp_posterior(K_PxP, K_QxP, k_Q, y_train, noise=noise, jitter=jitter)
    if y_test is None:
        return posterior
    return posterior, gp_test_loss(posterior, y_test)
