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

import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from deeptheory.theory._checks import as_array, fails, float64_theory, positive_scalar, weight_variances
from deeptheory.theory._solvers import bfgs_minimize, boustrophedon, cholesky_terms
from deeptheory.theory.conv_kernels import conv_patch_kernels
from deeptheory.theory.renormalization import DEFAULT_TOL, ConvergenceError, Prediction, kernel_prediction

__all__ = ["ConvTheory", "ConvTheoryGrid", "conv_theory", "conv_theory_grid", "conv_kernel", "conv_action",
           "conv_action_grad", "solve_conv"]


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


def _prior_term(lam, depth: int):
    """L Tr Q^{1/L} − log det Q − L n from the eigenvalues λ of Q (no derivative through eigh is ever taken)."""
    return depth * jnp.sum(lam ** (1.0 / depth)) - jnp.sum(jnp.log(lam)) - depth * lam.shape[0]


@float64_theory
def conv_action(Q, K_patch, y, T, channels, readout_var, depth: int = 1):
    """𝒮(Q) = N_c [L Tr Q^{1/L} − log det Q − L n] + yᵀA⁻¹y + log det A (module docstring). Float64."""
    Q = as_array(Q, "Q", dtype=jnp.float64, ndim=2, what="the (n, n) order parameter Q")
    y = as_array(y, "y", dtype=jnp.float64, ndim=1, what="(P,) targets")
    T, channels = jnp.asarray(T, jnp.float64), jnp.asarray(channels, jnp.float64)
    return channels * _prior_term(jnp.linalg.eigvalsh(Q), depth) + cholesky_terms(conv_kernel(Q, K_patch, readout_var), y, T)


def _data_value_and_grad(Q, K_patch, y, T, readout_var):
    """yᵀA⁻¹y + log det A and its gradient in Q, G_ij = ⟨∂/∂K_R, K^{ij}⟩ σ_L²/n. The contraction is written
    K-first: the transpose rule of `conv_kernel`'s einsum puts K second, and XLA CPU then copies K into a transposed
    layout at every evaluation (0.12 s against 0.006 s at n = 16, P = 300)."""
    value, dK_R = jax.value_and_grad(cholesky_terms)(conv_kernel(Q, K_patch, readout_var), y, T)
    return value, jnp.einsum("ijab,ab->ij", K_patch, dK_R) * readout_var / Q.shape[0]


def _action_value_and_grad(Q, K_patch, y, T, channels, readout_var, depth: int):
    """𝒮(Q) (+inf where Q is not positive definite) and ∇_Q 𝒮, symmetric: the prior's from one eigendecomposition,
    N_c (Q^{1/L − 1} − Q⁻¹); the data term's by `_data_value_and_grad`."""
    n = Q.shape[0]
    lam, V = jnp.linalg.eigh(Q)
    positive = jnp.all(lam > 0)
    lam = jnp.where(positive, lam, 1.0)
    d, G = _data_value_and_grad(jnp.where(positive, Q, jnp.eye(n, dtype=Q.dtype)), K_patch, y, T, readout_var)
    prior = _prior_term(lam, depth)
    prior_grad = (V * (lam ** (1.0 / depth - 1.0) - 1.0 / lam)[None, :]) @ V.T
    return jnp.where(positive, channels * prior + d, jnp.inf), channels * prior_grad + 0.5 * (G + G.T)


@float64_theory
def conv_action_grad(Q, K_patch, y, T, channels, readout_var, depth: int = 1):
    """∇_Q 𝒮 of `conv_action` at a positive definite Q, as the (n, n) symmetric matrix of partial derivatives:
    N_c (Q^{1/L − 1} − Q⁻¹) + G, G_ij = ⟨A⁻¹ − A⁻¹yyᵀA⁻¹, K^{ij}⟩ σ_L²/n (module docstring). Float64.

    What `solve_conv` differentiates; cheaper than autodiff of `conv_action` on XLA CPU (`_data_value_and_grad`)."""
    Q = as_array(Q, "Q", dtype=jnp.float64, ndim=2, what="the (n, n) order parameter Q")
    y = as_array(y, "y", dtype=jnp.float64, ndim=1, what="(P,) targets")
    T, channels = jnp.asarray(T, jnp.float64), jnp.asarray(channels, jnp.float64)
    K_patch = as_array(K_patch, "K_patch", dtype=jnp.float64, ndim=4, what="(n, n, P, P) patch kernels")
    # outside the cone the solver's evaluation stands in Q = I, which would be a gradient at the wrong point
    if fails(lambda q: (jnp.abs(q - q.T) <= 1e-10 * jnp.abs(q).max()) & (jnp.linalg.eigvalsh(q).min() > 0), Q):
        raise ValueError("conv_action_grad: Q must be symmetric positive definite (the action is +inf outside that "
                         f"cone); got eigenvalues {np.round(np.linalg.eigvalsh(0.5 * (Q + Q.T)), 6).tolist()}")
    return _action_value_and_grad(Q, K_patch, y, T, channels, readout_var, depth)[1]


def _fixed_point_start(K_patch, y, T, channels, readout_var):
    """One fixed-point step from the NNGP point, Q = (I + G(I)/N_c)⁻¹, exact to O(1/N_c²) at large N_c (I where that
    step leaves the positive definite cone)."""
    eye = jnp.eye(K_patch.shape[0], dtype=K_patch.dtype)
    G0 = _data_value_and_grad(eye, K_patch, y, T, readout_var)[1]
    Q0 = jnp.linalg.solve(eye + 0.5 * (G0 + G0.T) / channels, eye)
    return jnp.where(jnp.all(jnp.linalg.eigvalsh(Q0) > 0), 0.5 * (Q0 + Q0.T), eye)


def _solve(K_patch, y, T, channels, readout_var, depth, tol, max_iter, Q0=None):
    """BFGS over the upper triangle of Q from Q0 (None: `_fixed_point_start`); 𝒮 = +inf where Q is not positive
    definite (module docstring)."""
    n = K_patch.shape[0]
    rows, cols = jnp.triu_indices(n)
    off_diagonal = jnp.where(rows == cols, 1.0, 2.0)  # each off-diagonal variable is two entries of Q

    def unpack(v):
        Q = jnp.zeros((n, n), v.dtype).at[rows, cols].set(v)
        return Q + jnp.triu(Q, 1).T

    def value_and_grad(v):
        f, grad = _action_value_and_grad(unpack(v), K_patch, y, T, channels, readout_var, depth)
        return f / channels, grad[rows, cols] * off_diagonal / channels

    def residual(v, g):
        # max |Q ∇𝒮 Q| / N_c: the natural (scale-free) stationarity measure on positive definite matrices
        Q = unpack(v)
        grad = unpack(g / off_diagonal)
        return jnp.max(jnp.abs(Q @ grad @ Q))

    if Q0 is None:
        Q0 = _fixed_point_start(K_patch, y, T, channels, readout_var)
    sol = bfgs_minimize(value_and_grad, Q0[rows, cols], residual=residual, tol=tol, max_iter=max_iter)
    return unpack(sol.x), sol.value, sol.residual, sol.iterations


# the lower-level solver, for callers that hold the patch kernels: (Q, 𝒮, residual, iterations), compiled once per
# (shapes, depth, max_iter)
solve_conv = jax.jit(_solve, static_argnames=("depth", "max_iter"))


class _Problem(NamedTuple):
    K: jax.Array  # (n, n, P, P) patch kernels of the training images
    K0: jax.Array  # (n, n, P_test, P) test × training
    kw: dict  # conv_patch_kernels arguments
    x0: jax.Array
    y: jax.Array
    y0: jax.Array
    readout: float  # σ_L²
    depth: int
    T: jax.Array


def _problem(x_train, y_train, x_test, y_test, activation, patches, channels, temperature, weight_var, priors,
             quad_points) -> _Problem:
    """Validated inputs and the patch kernels, shared by `conv_theory` and `conv_theory_grid` (channels: one or many)."""
    sides = np.asarray(patches)
    if sides.ndim > 1 or sides.size == 0 or sides.dtype.kind not in "iu" or np.any(sides < 1):
        raise ValueError(f"patches must be a patch side M >= 1 or a non-empty list (M_1, …, M_L) of them; got {patches!r}")
    patches = tuple(int(m) for m in sides.reshape(-1))
    depth = len(patches)
    T = positive_scalar("temperature", temperature, "the posterior temperature T")
    for Nc in np.asarray(channels, np.float64).reshape(-1):
        positive_scalar("channels", Nc, "the number of channels N_c")
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
    fewest = float(np.min(np.asarray(channels, np.float64)))
    if depth > 1 and fewest < n:
        raise ValueError(f"the deep product-covariance ansatz needs channels >= final positions n = {n}; got {fewest:g}")
    K0, _, _ = conv_patch_kernels(x0, x, **kw)
    return _Problem(K, K0, kw, x0, y, y0, float(sw2[-1]), depth, T)


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
    pb = _problem(x_train, y_train, x_test, y_test, activation, patches, channels, temperature, weight_var, priors,
                  quad_points)
    K, K0, kw, readout, depth, T = pb.K, pb.K0, pb.kw, pb.readout, pb.depth, pb.T
    Nc = positive_scalar("channels", channels, "the number of channels N_c")
    x0, y, y0, n = pb.x0, pb.y, pb.y0, pb.K.shape[0]

    k0_QxNxN = _test_patch_diagonals(x0, **kw)
    Q, action, residual, iterations = solve_conv(K, y, T, Nc, readout, depth=depth, tol=tol, max_iter=max_iter)
    if not bool(residual <= tol):
        raise ConvergenceError(
            f"CNN saddle point not found after {int(iterations)} steps: residual max|QΔQ|/N_c = {float(residual):.3g} > "
            f"tol {tol:g} (N_c = {Nc:g}, T = {T:g}, n = {n} patches)"
        )
    pred, local, pooled = _predictions(Q, K, K0, k0_QxNxN, y, y0, T, readout)
    return ConvTheory(Q, *pred, action, residual, iterations, local, pooled)


@jax.jit
def _predictions(Q, K, K0, k0_QxNxN, y, y0, T, readout):
    """The predictions of the renormalized kernel (Q), the local NNGP (Q = I) and the pooled NNGP (Q = 11ᵀ/n), in
    one program: called op by op, each pass re-validated the (n, n, P, P) kernels (0.29 s a prediction at P = 300)."""
    def predict(Q):
        K_R, K0_R = conv_kernel(Q, K, readout), conv_kernel(Q, K0, readout)
        return kernel_prediction(K_R, K0_R, _test_variances(Q, k0_QxNxN, readout), y, y0, T)

    n = Q.shape[0]
    return predict(Q), predict(jnp.eye(n, dtype=Q.dtype)), predict(jnp.full((n, n), 1.0 / n, Q.dtype))


@functools.partial(jax.jit, static_argnames=("activation", "patches", "quad_points"))
def _test_patch_diagonals(x0, weight_var, *, activation, patches, quad_points):
    """K^{ij}(x0, x0) of each test image with itself, (P_test, n, n), one image at a time (O(n² P_test) memory);
    compiled once per (shapes, φ, patches), so that a second call with other values compiles nothing."""
    return jax.lax.map(lambda img: conv_patch_kernels(img[None], activation=activation, patches=patches,
                                                      weight_var=weight_var, quad_points=quad_points)[0][:, :, 0, 0],
                       x0)


def _test_variances(Q, k0_QxNxN, readout):
    """k_R(x0, x0) = Σ_ij Q_ij K^{ij}(x0, x0) σ_L²/n for each test image."""
    return jnp.einsum("ij,qij->q", Q, k0_QxNxN) * readout / Q.shape[0]


class ConvTheoryGrid(NamedTuple):
    """The CNN theory on a (channels, temperature) grid: `channels` (C,) and `temperature` (T,) are its axes; every
    other array is (C, T), the order parameters (C, T, n, n). Field names follow `ConvTheory`; points that did not
    converge are False in `converged` and NaN in the order parameters and the losses."""

    channels: jax.Array
    temperature: jax.Array
    order_params: jax.Array
    test_loss: jax.Array
    bias2: jax.Array
    variance: jax.Array
    residual: jax.Array
    iterations: jax.Array
    converged: jax.Array


@functools.partial(jax.jit, static_argnames=("depth", "max_iter"))
def _grid(K, K0, k0_QxNxN, y, y0, readout, channels_G, temperatures_G, *, depth: int, tol: float, max_iter: int):
    """The grid's points in order (lax.scan: one in memory at a time), each by BFGS from the last converged point's
    Q (a warm start; from the point's own fixed-point start when that fails, or before any point has converged)."""
    n = K.shape[0]

    def point(carry, inputs):
        Q_prev, warm = carry
        Nc, T = inputs
        def cold(_):
            return _solve(K, y, T, Nc, readout, depth, tol, max_iter, _fixed_point_start(K, y, T, Nc, readout))

        # a warm start that fails is retried from the point's own start, as a single call would solve it
        first = jax.lax.cond(warm, lambda _: _solve(K, y, T, Nc, readout, depth, tol, max_iter, Q_prev), cold, None)
        Q, _, residual, iterations = jax.lax.cond(warm & (first[2] > tol), cold, lambda _: first, None)
        ok = residual <= tol
        pred = kernel_prediction(conv_kernel(Q, K, readout), conv_kernel(Q, K0, readout),
                                 _test_variances(Q, k0_QxNxN, readout), y, y0, T)
        return (jnp.where(ok, Q, Q_prev), warm | ok), (Q, pred.test_loss, pred.bias2, pred.variance, residual,
                                                       iterations, ok)

    return jax.lax.scan(point, (jnp.eye(n, dtype=K.dtype), jnp.asarray(False)), (channels_G, temperatures_G))[1]


@float64_theory
def conv_theory_grid(
    x_train,
    y_train,
    x_test,
    y_test,
    *,
    activation: str | Callable,
    patches: int | Sequence[int],
    channels: float | Sequence[float],
    temperature: float | Sequence[float],
    weight_var: float | Sequence[float] | None = None,
    quad_points: int | None = None,
    tol: float = DEFAULT_TOL,
    max_iter: int = 500,
    priors=None,
) -> ConvTheoryGrid:
    """`conv_theory` on a whole (channels, temperature) grid, compiled once for the grid: the patch kernels once,
    then the points in boustrophedon order (each point's predecessor a neighbour), each by BFGS warm-started from
    the previous converged solution. Arguments as in `conv_theory`, except that `channels` and `temperature` are
    the grid's axes (a scalar or a 1-D sequence each). Points that do not converge are flagged (`.converged`), not
    raised: one bad corner should not lose the grid. The NNGP limits are `conv_theory`'s (they do not depend on
    N_c)."""
    Cs = np.asarray(as_array(channels, "channels", dtype=jnp.float64, ndim=(0, 1))).reshape(-1)
    Ts = np.asarray(as_array(temperature, "temperature", dtype=jnp.float64, ndim=(0, 1))).reshape(-1)
    if np.any(Ts <= 0) or not np.all(np.isfinite(Ts)):
        raise ValueError(f"temperature must be > 0 (the posterior temperature T); got {temperature!r}")
    pb = _problem(x_train, y_train, x_test, y_test, activation, patches, Cs, float(Ts[0]), weight_var, priors,
                  quad_points)
    k0_QxNxN = _test_patch_diagonals(pb.x0, **pb.kw)
    C, n_T = Cs.shape[0], Ts.shape[0]
    order = boustrophedon(C, n_T)
    Q, loss, bias2, variance, residual, iterations, ok = _grid(
        pb.K, pb.K0, k0_QxNxN, pb.y, pb.y0, pb.readout, jnp.asarray(np.repeat(Cs, n_T)[order]),
        jnp.asarray(np.tile(Ts, C)[order]), depth=pb.depth, tol=float(tol), max_iter=int(max_iter))
    inverse = np.argsort(order)

    def unflatten(a, flag_bad=True):
        a = a[inverse].reshape((C, n_T) + a.shape[1:])
        bad = ~ok[inverse].reshape(C, n_T)
        return jnp.where(bad.reshape(bad.shape + (1,) * (a.ndim - 2)), jnp.nan, a) if flag_bad else a

    return ConvTheoryGrid(jnp.asarray(Cs), jnp.asarray(Ts), unflatten(Q), unflatten(loss), unflatten(bias2),
                          unflatten(variance), unflatten(residual, False), unflatten(iterations, False),
                          unflatten(ok, False))
