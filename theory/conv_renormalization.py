"""Local kernel renormalization of Bayesian CNNs with non-overlapping patches (Aiudi et al., Nat. Commun. 2025;
deep: Baglioni et al. 2026). Equations, derived, and the tests that hold them: docs/nngp_and_renormalization.md,
§8, eqs. (R-22)–(R-24).

One convolutional hidden layer of N_c channels, n patches, readout weights per (channel, patch) with prior
variance σ_1² = 1/λ_1 (`weight_var`; the papers write the precision λ). The order parameter is an n×n SPD matrix Q
coupling patches:

    K_R = Σ_ij Q_ij K^{ij} / (λ_L n)                   (K^{ij}: `theory.conv_kernels.conv_patch_kernels`)
    𝒮(Q) = N_c [Tr Q − log det Q − n] + yᵀA⁻¹y + log det A,      A = K_R + T I

Q = I is the infinite-width local NNGP (each readout weight sees its own patch); the rank-one Q = 11ᵀ/n, i.e.
K_R = Σ_ij K^{ij}/(λ_L n²), is the NNGP of a global-average-pooling readout. Stationarity:

    Q⁻¹ = I + G/N_c,     G_ij = ⟨A⁻¹ − A⁻¹yyᵀA⁻¹, K^{ij}⟩ / (λ_L n).

Deep stacks (L convolutional layers, n final positions): one n×n "product covariance" Q with prior term
N_c [L Tr Q^{1/L} − log det Q − L n] (eq. (R-24), after the authors' later code; needs N_c >= n), stationarity
Q^{1/L − 1} − Q⁻¹ + G/N_c = 0. For L = 1 it is the one-layer theory.

Solver: BFGS over the n(n+1)/2 entries of Q from one fixed-point step away from Q = I, 𝒮 = +inf outside the
positive definite cone, Armijo backtracking; the gradient is exact (prior term from one eigendecomposition, data
term by autodiff through the Cholesky). Converged when max |Q ∇𝒮 Q| / N_c <= tol; otherwise `ConvergenceError`
with the residual. (A preconditioned fixed-point iteration, Q ← Q − Q∇𝒮Q/N_c, converged only linearly at small
N_c: 500 steps left a residual of 3e-6 at N_c = 5.)

Neighbours: `theory.conv_kernels` (K^{ij}), `theory.renormalization` (the fully connected theory; its
`Prediction` and `kernel_prediction`), `theory._solvers` (BFGS and the Cholesky data term); the finite network is
`models.cnn.PatchCNN`, sampled by `train.experiments.bayes_networks`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from deeptheory.theory._checks import as_array, float64_theory, positive_scalar, weight_variances
from deeptheory.theory._solvers import bfgs_minimize, cholesky_terms
from deeptheory.theory.conv_kernels import conv_patch_kernels
from deeptheory.theory.renormalization import DEFAULT_TOL, ConvergenceError, Prediction, kernel_prediction

__all__ = ["ConvTheory", "conv_theory", "conv_kernel", "conv_action"]


class ConvTheory(NamedTuple):
    order_params: jax.Array  # (n, n) Q
    mean: jax.Array
    var: jax.Array
    test_loss: jax.Array
    bias2: jax.Array
    variance: jax.Array
    action: jax.Array
    residual: jax.Array
    iterations: jax.Array
    local_nngp: Prediction  # Q = I: the infinite-width CNN
    pooled_nngp: Prediction  # global average pooling readout, infinite width


@float64_theory
def conv_kernel(Q_nxn, K_nxnxAxB, readout_var):
    """K_R = Σ_ij Q_ij K^{ij} σ_L² / n (docs/nngp_and_renormalization.md, eq. (R-23)). Float64."""
    Q_nxn = as_array(Q_nxn, "Q_nxn", dtype=jnp.float64, ndim=2, what="the (n, n) order parameter Q")
    K_nxnxAxB = as_array(K_nxnxAxB, "K_nxnxAxB", dtype=jnp.float64, ndim=4, what="(n, n, A, B) patch kernels")
    n = Q_nxn.shape[0]
    if Q_nxn.shape != (n, n) or K_nxnxAxB.shape[:2] != (n, n):
        raise ValueError(f"Q is {Q_nxn.shape} and the patch kernels {K_nxnxAxB.shape}: expected (n, n) and (n, n, A, B)")
    return jnp.einsum("ij,ijab->ab", Q_nxn, K_nxnxAxB) * readout_var / n


def _prior_term(Q, depth: int):
    """L Tr Q^{1/L} − log det Q − L n from the eigenvalues (no derivative through eigh is ever taken)."""
    lam = jnp.linalg.eigvalsh(Q)
    return depth * jnp.sum(lam ** (1.0 / depth)) - jnp.sum(jnp.log(lam)) - depth * Q.shape[0]


@float64_theory
def conv_action(Q, K_patch, y, T, channels, readout_var, depth: int = 1):
    """𝒮(Q) = N_c [L Tr Q^{1/L} − log det Q − L n] + yᵀA⁻¹y + log det A (module docstring). Float64."""
    Q = as_array(Q, "Q", dtype=jnp.float64, ndim=2, what="the (n, n) order parameter Q")
    y = as_array(y, "y", dtype=jnp.float64, ndim=1, what="(P,) targets")
    T, channels = jnp.asarray(T, jnp.float64), jnp.asarray(channels, jnp.float64)
    return channels * _prior_term(Q, depth) + cholesky_terms(conv_kernel(Q, K_patch, readout_var), y, T)


def _solve(K_patch, y, T, channels, readout_var, depth, tol, max_iter):
    """BFGS over the upper triangle of Q; 𝒮 = +inf where Q is not positive definite (module docstring)."""
    n = K_patch.shape[0]
    rows, cols = jnp.triu_indices(n)
    off_diagonal = jnp.where(rows == cols, 1.0, 2.0)  # each off-diagonal variable is two entries of Q
    data = jax.value_and_grad(lambda Q: cholesky_terms(conv_kernel(Q, K_patch, readout_var), y, T))

    def unpack(v):
        Q = jnp.zeros((n, n), v.dtype).at[rows, cols].set(v)
        return Q + jnp.triu(Q, 1).T

    def matrix_value_and_grad(Q):
        lam, V = jnp.linalg.eigh(Q)
        positive = jnp.all(lam > 0)
        lam = jnp.where(positive, lam, 1.0)
        d, G = data(jnp.where(positive, Q, jnp.eye(n, dtype=Q.dtype)))
        prior = depth * jnp.sum(lam ** (1.0 / depth)) - jnp.sum(jnp.log(lam)) - depth * n
        prior_grad = (V * (lam ** (1.0 / depth - 1.0) - 1.0 / lam)[None, :]) @ V.T
        return jnp.where(positive, channels * prior + d, jnp.inf), channels * prior_grad + 0.5 * (G + G.T)

    def value_and_grad(v):
        f, grad = matrix_value_and_grad(unpack(v))
        return f / channels, grad[rows, cols] * off_diagonal / channels

    def residual(v, g):
        # max |Q ∇𝒮 Q| / N_c: the natural (scale-free) stationarity measure on positive definite matrices
        Q = unpack(v)
        grad = unpack(g / off_diagonal)
        return jnp.max(jnp.abs(Q @ grad @ Q))

    # Start from one fixed-point step from the NNGP point, Q = (I + G(I)/N_c)⁻¹, exact to O(1/N_c²) at large N_c.
    eye = jnp.eye(n, dtype=K_patch.dtype)
    G0 = data(eye)[1]
    Q0 = jnp.linalg.solve(eye + 0.5 * (G0 + G0.T) / channels, eye)
    Q0 = jnp.where(jnp.all(jnp.linalg.eigvalsh(Q0) > 0), 0.5 * (Q0 + Q0.T), eye)
    sol = bfgs_minimize(value_and_grad, Q0[rows, cols], residual=residual, tol=tol, max_iter=max_iter)
    return unpack(sol.x), sol.value, sol.residual, sol.iterations


@float64_theory
def conv_theory(
    x_train,
    y_train,
    x_test,
    y_test,
    *,
    activation: str | Callable,
    patches: int | Sequence[int],
    channels: float,
    temperature: float,
    weight_var: float | Sequence[float] | None = None,
    quad_points: int | None = None,
    tol: float = DEFAULT_TOL,
    max_iter: int = 500,
    priors=None,
) -> ConvTheory:
    """Renormalized-kernel theory of a Bayesian CNN with non-overlapping patches (module docstring).

    Args:
      x_train, x_test: (P, H, W) or (P, H, W, c_in) images; y_train (P,), y_test (P_test,), P_test >= 1.
      activation: as in `theory.nngp.nngp_kernel`.
      patches: patch side M (one convolutional layer) or (M_1, …, M_L) for a stack; the depth L is its length.
      channels: N_c, the number of channels of every convolutional layer.
      temperature: T > 0.
      weight_var: [σ_0², …, σ_L²] = 1/λ_l (L convolutional layers, then the readout), or a scalar; None: 1.
      priors: deprecated: the precisions [λ_0, …, λ_L] = 1/weight_var (a `DeprecationWarning`; pass weight_var).

    Raises:
      ValueError on bad input; ConvergenceError if the saddle point is not reached.
    """
    sides = np.asarray(patches)
    if sides.ndim > 1 or sides.size == 0 or sides.dtype.kind not in "iu" or np.any(sides < 1):
        raise ValueError(f"patches must be a patch side M >= 1 or a non-empty list (M_1, …, M_L) of them; got {patches!r}")
    patches = tuple(int(m) for m in sides.reshape(-1))
    depth = len(patches)
    T = positive_scalar("temperature", temperature, "the posterior temperature T")
    Nc = positive_scalar("channels", channels, "the number of channels N_c")
    sw2 = weight_variances(weight_var, priors, depth + 1, f"{depth + 1} (L = {depth} convolutional layers and the readout)")
    images = "(P, H, W) or (P, H, W, c_in) images"
    x = as_array(x_train, "x_train", dtype=jnp.float64, ndim=(3, 4), what=images)
    x0 = as_array(x_test, "x_test", dtype=jnp.float64, ndim=(3, 4), what=images + "; the theory predicts on P_test >= 1")
    y = as_array(y_train, "y_train", dtype=jnp.float64, ndim=1, what="(P,) targets")
    y0 = as_array(y_test, "y_test", dtype=jnp.float64, ndim=1, what="(P_test,) targets")
    if y.shape != (x.shape[0],) or y0.shape != (x0.shape[0],):
        raise ValueError(f"y_train, y_test must have shapes ({x.shape[0]},), ({x0.shape[0]},); got {y.shape}, {y0.shape}")
    kw = dict(activation=activation, patches=patches, weight_var=jnp.asarray(sw2[:-1]), quad_points=quad_points)
    K, _, _ = conv_patch_kernels(x, **kw)
    n = K.shape[0]
    if depth > 1 and Nc < n:
        raise ValueError(f"the deep product-covariance ansatz needs channels >= final positions n = {n}; got {Nc:g}")
    K0, _, _ = conv_patch_kernels(x0, x, **kw)
    readout = float(sw2[-1])

    def predict(Q):
        K_R, K0_R = conv_kernel(Q, K, readout), conv_kernel(Q, K0, readout)
        k0_R = _test_variances(Q, x0, kw, readout)
        return kernel_prediction(K_R, K0_R, k0_R, y, y0, T)

    Q, action, residual, iterations = jax.jit(_solve, static_argnames=("depth", "max_iter"))(
        K, y, T, Nc, readout, depth=depth, tol=tol, max_iter=max_iter
    )
    if not bool(residual <= tol):
        raise ConvergenceError(
            f"CNN saddle point not found after {int(iterations)} steps: residual max|QΔQ|/N_c = {float(residual):.3g} > "
            f"tol {tol:g} (N_c = {Nc:g}, T = {T:g}, n = {n} patches)"
        )
    pred = predict(Q)
    eye = jnp.eye(n)
    return ConvTheory(Q, *pred, action, residual, iterations, predict(eye), predict(jnp.ones((n, n)) / n))


def _test_variances(Q, x0, kw, readout):
    """Σ_ij Q_ij K^{ij}(x0, x0) σ_L²/n for each test image, one image at a time (O(n² P_test) memory)."""

    def one(img):
        K_nn = conv_patch_kernels(img[None], **kw)[0][:, :, 0, 0]
        return jnp.sum(Q * K_nn) * readout / Q.shape[0]

    return jax.lax.map(one, x0)
