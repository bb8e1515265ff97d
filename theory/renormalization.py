"""Kernel renormalization of Bayesian deep networks in the proportional regime (equivalent Wishart ansatz).

Sources: Pacelli et al., Nat. Mach. Intell. 2023 (deep MLPs, "vanilla"/"nested" kernels, non-central
ansatz); Baglioni et al., PRL 2024 (one hidden layer, two-variable form); Baglioni et al., arXiv 2605.29684
(2026) (deep, equivalent Wishart ansatz); Li & Sompolinsky, PRX 2021 (deep linear networks). Equations,
conventions and the tests that hold them: docs/nngp_and_renormalization.md, §6–7, eqs. (R-12)–(R-21). CNNs:
`theory.conv_renormalization`.

Network: L hidden layers of widths N_1..N_L, inputs of dimension N_0, standard scaling, no biases, Gaussian
prior W^l ~ N(0, σ_l²) with σ_l² = 1/λ_l (`weight_var` = [σ_0², …, σ_L²], σ_L² the readout; the papers write the
precisions λ_l), posterior at temperature T (likelihood exp(−Σ(y − f)²/2T)). The NNGP kernel K^(L) is
`theory.nngp.nngp_kernel` with the same weight_var.

Renormalized kernel and action (docs/nngp_and_renormalization.md, eqs. (R-12), (R-13), (R-19); we write 𝒮 for
the whole exponent, Z ≈ ∫dQ exp(−𝒮/2)):

    vanilla:  K_R = (Π_l Q_l) K^(L)
    nested:   K_R = K^(L) with σ_wl² = Q_l/λ_l inside the recursion (l = 1..L)
    𝒮(Q)     = Σ_l N_l (Q_l − log Q_l) + yᵀA⁻¹y + log det A,        A = K_R + T I

(for equal widths 𝒮/N is the papers' effective action S and the authors' `effectiveAction`). The order parameters are the
minimiser of 𝒮 over Q > 0 (it exists: 𝒮 → ∞ at Q → 0 and Q → ∞). Vanilla stationarity, with
g(c) = c ∂_c[yᵀA⁻¹y + log det A] = Tr(A⁻¹K_R) − yᵀA⁻¹K_R A⁻¹y at c = Π Q_l:

    Q_l = 1 − g(c)/N_l                                  (docs/nngp_and_renormalization.md, eq. (R-14))

so all stationary points lie on one curve and are the roots of the scalar function of u = log c

    h(u) = u − Σ_l log(1 − g(eᵘ)/N_l)        (+∞ where some 1 − g/N_l ≤ 0),

which runs from −∞ to +∞: a root always exists, and h < 0 → h > 0 crossings are the minima. In the
eigenbasis of K^(L) = U diag(k) Uᵀ, ỹ = Uᵀy, g(c) = Σ_i r_i (1 − ỹ_i²/(c k_i + T)) with r_i = c k_i/(c k_i + T),
so every (width, temperature) point costs O(P) after one eigendecomposition (`Spectrum`, `solve_vanilla`).

Prediction at test points with the renormalized kernels (k_R, κ_R scaled the same way;
docs/nngp_and_renormalization.md, eqs. (R-9), (R-10), (R-17)):

    mean = k_Rᵀ A⁻¹ y,   var = κ_R − k_Rᵀ A⁻¹ k_R,   ε_g = ⟨(y0 − mean)²⟩ + ⟨var⟩ = bias² + variance.

Which variant: vanilla is exact for ReLU and linear networks and the default; `recommended_variant` names the one
the theory recommends for an activation (nested for odd φ, non-central where E[φ] ≠ 0), `variant="auto"` uses it.

Neighbours: `theory.nngp` and `theory.activations` (K^(L), F_φ and the mean activation μ), `theory.gp` (the GP
posterior the prediction is), `theory._solvers` (the jittable scan/bisection, Newton and Cholesky pieces),
`theory.conv_renormalization` (the same theory for CNNs); the finite networks it describes are `models.mlp.MLP`
sampled by `train.experiments.bayes_networks`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import cho_solve

from deeptheory.theory._checks import (
    all_finite,
    as_array,
    check_depth,
    check_scalar,
    fails,
    float64_theory,
    positive_scalar,
    weight_variances,
)
from deeptheory.theory._solvers import Solution, bisect, boustrophedon, newton_minimize, newton_root
from deeptheory.theory.activations import ODD_ACTIVATIONS, Activation, get_activation, mean_activation
from deeptheory.theory.gp import gp_posterior, gp_test_loss
from deeptheory.theory.nngp import covariance_chain, nngp_diag, nngp_kernel

__all__ = [
    "Prediction",
    "FCTheory",
    "NoncentralOrderParams",
    "Spectrum",
    "VanillaSolution",
    "TheoryGrid",
    "ConvergenceError",
    "VARIANTS",
    "recommended_variant",
    "resolve_variant",
    "fc_theory",
    "fc_theory_grid",
    "renormalized_kernel",
    "spectrum",
    "solve_vanilla",
    "solve_nested",
    "solve_noncentral",
    "vanilla_action",
    "eigen_prediction",
    "kernel_prediction",
    "one_layer_action",
    "one_layer_order_params",
    "zero_temperature_order_param",
]

VARIANTS = ("vanilla", "nested", "noncentral")
DEFAULT_TOL = 1e-10  # on the stationarity residual, relative to the widths (≈ relative accuracy of Q)
_SCAN_HALF_WIDTH = 100.0  # c = Π Q_l is searched in [e^-100, e^100]
_SCAN_POINTS = 401  # log-spacing 0.5: roots closer than that in log c would be merged
_MAX_MINIMA = 4


class ConvergenceError(RuntimeError):
    """A saddle-point solver did not reach its tolerance; the message gives the residual."""


class Prediction(NamedTuple):
    """Posterior of the network output at the test points, and the predicted test loss ε_g."""

    mean: jax.Array  # (Q,)
    var: jax.Array  # (Q,)
    test_loss: jax.Array  # ε_g = bias2 + variance
    bias2: jax.Array  # ⟨(y0 − mean)²⟩
    variance: jax.Array  # ⟨var⟩


class NoncentralOrderParams(NamedTuple):
    """Order parameters of the non-central ansatz (eq. (R-21)), one per hidden layer. `np.asarray` of it is the
    (2, L) array with rows (Q̄_l, Q_l); `renormalized_kernel` takes either form."""

    q_bar: jax.Array  # (L,) Q̄_l: multiplies Θ_l (for l = L, the posterior readout norm λ_L |v|²/N_L)
    q: jax.Array  # (L,) Q_l: its conjugate, Q = 1/Q̄ − 1 when the mean activation vanishes


class FCTheory(NamedTuple):
    """Renormalized-kernel prediction for a deep fully connected Bayesian network (`fc_theory`)."""

    order_params: jax.Array | NoncentralOrderParams  # (L,) Q_l; noncentral: NoncentralOrderParams(q_bar, q)
    mean: jax.Array
    var: jax.Array
    test_loss: jax.Array
    bias2: jax.Array
    variance: jax.Array
    action: jax.Array  # 𝒮 at the solution (module docstring); divide by N for the papers' S (eq. (R-13))
    residual: jax.Array  # max_l |∂𝒮/∂log Q_l| / N_l at the solution
    other_minima: tuple  # order parameters of other local minima found (metastable states), if any
    nngp: Prediction  # the infinite-width limit (Q = 1): plain NNGP GP regression


# ---------------------------------------------------------------------------------------------
# Input checks


def _widths(width, depth: int) -> np.ndarray:
    arr = np.asarray(as_array(width, "width", dtype=jnp.float64, ndim=(0, 1)))
    if arr.ndim == 0:
        arr = np.full(depth, float(arr))
    if arr.shape != (depth,):
        raise ValueError(f"width must be a scalar or one value per hidden layer (length {depth}); got {width!r}")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"width must be finite and > 0 (the number of units N_l); got {width!r}")
    return arr


def _weight_var(weight_var, priors, depth: int) -> jax.Array:
    """σ_l² for the depth + 1 weight layers (`_checks.weight_variances`: the one boundary for deprecated priors=)."""
    return jnp.asarray(weight_variances(weight_var, priors, depth + 1, f"depth + 1 = {depth + 1}"))


def resolve_variant(variant: str, activation: str | Callable) -> str:
    """The variant `fc_theory` and `renormalized_kernel` use for `variant`: "auto" is `recommended_variant(activation)`,
    any other name must be one of VARIANTS."""
    if variant == "auto":
        return recommended_variant(activation)
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS} or 'auto'; got {variant!r}")
    return variant


def recommended_variant(activation: str | Callable) -> str:
    """The renormalization variant the theory recommends for φ (what `variant="auto"` means).

    "nested" for the odd activations (`theory.activations.ODD_ACTIVATIONS`: linear, erf, tanh), whose mean activation
    vanishes: the order parameters then sit inside the recursion (eq. (R-19); for linear φ it equals vanilla).
    "noncentral" otherwise (ReLU, GELU, any callable): E[φ] ≠ 0 adds the mean term of eq. (R-21).
    """
    get_activation(activation)  # an unknown name raises here, naming the known ones
    return "nested" if isinstance(activation, str) and activation.lower() in ODD_ACTIVATIONS else "noncentral"


def _data(x_train, y_train, x_test, y_test):
    x = np.asarray(as_array(x_train, "x_train", dtype=jnp.float64, ndim=2, what="a (P, N_0) array"))
    x0 = np.asarray(as_array(x_test, "x_test", dtype=jnp.float64, ndim=2,
                             what="a (P_test, N_0) array with P_test >= 1: the theory predicts on test points"))
    y = np.asarray(as_array(y_train, "y_train", dtype=jnp.float64, ndim=(1, 2), what="(P,) targets"))
    y0 = np.asarray(as_array(y_test, "y_test", dtype=jnp.float64, ndim=(1, 2), what="(P_test,) targets"))
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"x_train must be a (P, N_0) array with P, N_0 >= 1; got shape {x.shape}")
    if x0.ndim != 2 or x0.shape[0] == 0:
        raise ValueError(
            f"x_test must be a (P_test, N_0) array with P_test >= 1 (the theory predicts on test points); "
            f"got shape {x0.shape}"
        )
    if x0.shape[1] != x.shape[1]:
        raise ValueError(f"x_train and x_test must have the same input dimension; got {x.shape} and {x0.shape}")
    y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
    y0 = y0.reshape(-1) if y0.ndim == 2 and y0.shape[1] == 1 else y0
    if y.shape != (x.shape[0],) or y0.shape != (x0.shape[0],):
        raise ValueError(
            f"y_train and y_test must hold one scalar target per point: shapes ({x.shape[0]},) and ({x0.shape[0]},); "
            f"got {y.shape} and {y0.shape}"
        )
    return jnp.asarray(x), jnp.asarray(y), jnp.asarray(x0), jnp.asarray(y0)


# ---------------------------------------------------------------------------------------------
# Eigenbasis (vanilla) theory: O(P) per point


class Spectrum(NamedTuple):
    """One eigendecomposition K^(L) = U diag(k) Uᵀ and the projections every grid point needs."""

    eigenvalues: jax.Array  # (P,) k_i >= 0 (rounding negatives clipped)
    target_power: jax.Array  # (P,) ỹ_i² = (Uᵀy)_i²
    y_tilde: jax.Array  # (P,) Uᵀy
    test_projection: jax.Array  # (Q, P) K0 U, with K0 the test × train NNGP kernel
    test_variance: jax.Array  # (Q,) κ0, the NNGP test variances
    y_test: jax.Array  # (Q,)


@float64_theory
def spectrum(K_PxP, y_train, K_QxP, k_Q, y_test) -> Spectrum:
    """Eigendecompose the train kernel once (docs/nngp_and_renormalization.md, eq. (R-16)). Float64."""
    K_PxP = as_array(K_PxP, "K_PxP", dtype=jnp.float64, ndim=2, what="the (P, P) NNGP train kernel")
    y_train = as_array(y_train, "y_train", dtype=jnp.float64, ndim=1, what="(P,) targets")
    K_QxP = as_array(K_QxP, "K_QxP", dtype=jnp.float64, ndim=2, what="the (Q, P) test × train kernel")
    k_Q = as_array(k_Q, "k_Q", dtype=jnp.float64, ndim=1, what="the (Q,) test variances")
    y_test = as_array(y_test, "y_test", dtype=jnp.float64, ndim=1, what="(Q,) test targets")
    P, Q = K_PxP.shape[0], K_QxP.shape[0]
    if K_PxP.shape != (P, P) or y_train.shape != (P,) or K_QxP.shape != (Q, P) or k_Q.shape != (Q,) or y_test.shape != (Q,):
        raise ValueError(
            f"shapes do not fit: K_PxP {K_PxP.shape}, y_train {y_train.shape}, K_QxP {K_QxP.shape}, k_Q {k_Q.shape}, "
            f"y_test {y_test.shape} (expected (P, P), (P,), (Q, P), (Q,), (Q,))"
        )
    return _decompose(K_PxP, y_train, K_QxP, k_Q, y_test)[0]


@jax.jit
def _decompose(K_PxP, y_train, K_QxP, k_Q, y_test) -> tuple[Spectrum, jax.Array]:
    """`Spectrum` and the eigenvectors U_PxP (the non-central theory projects the mean activations on them)."""
    k, U_PxP = jnp.linalg.eigh(K_PxP)
    y_tilde = U_PxP.T @ y_train
    return Spectrum(jnp.maximum(k, 0.0), y_tilde**2, y_tilde, K_QxP @ U_PxP, k_Q, y_test), U_PxP


def _data_term(c, T, sp: Spectrum):
    """yᵀA⁻¹y + log det A for A = cK + T I."""
    a = c * sp.eigenvalues + T
    return jnp.sum(sp.target_power / a + jnp.log(a))


def _g(c, T, sp: Spectrum):
    """g(c) = c ∂_c [yᵀA⁻¹y + log det A] = Tr(A⁻¹K_R) − yᵀA⁻¹K_R A⁻¹y, K_R = cK (eqs. (R-14), (R-16))."""
    a = c * sp.eigenvalues + T
    r = c * sp.eigenvalues / a
    return jnp.sum(r * (1.0 - sp.target_power / a))


def _as_float64(sp: Spectrum) -> Spectrum:
    return Spectrum(*(jnp.asarray(a, jnp.float64) for a in sp))


@float64_theory
def vanilla_action(Q, widths, T, sp: Spectrum):
    """𝒮(Q) = Σ_l N_l (Q_l − log Q_l) + yᵀA⁻¹y + log det A with A = (Π Q_l) K + T I (eq. (R-13))."""
    Q, widths, T = (jnp.asarray(a, jnp.float64) for a in (Q, widths, T))
    sp = _as_float64(sp)
    return jnp.sum(widths * (Q - jnp.log(Q))) + _data_term(jnp.prod(Q), T, sp)


class VanillaSolution(NamedTuple):
    order_params: jax.Array  # (L,) Q_l at the global minimum of 𝒮
    scale: jax.Array  # c = Π Q_l, the factor multiplying K^(L)
    action: jax.Array
    residual: jax.Array  # max_l |Q_l − 1 + g(Π Q)/N_l| = max_l |∂𝒮/∂log Q_l| / N_l
    n_minima: jax.Array  # local minima found along the stationary curve (> 1: metastability)
    minima: jax.Array  # (_MAX_MINIMA, L) their order parameters, NaN-padded
    minima_actions: jax.Array  # (_MAX_MINIMA,) their actions, +inf-padded
    converged: jax.Array


@float64_theory
def solve_vanilla(sp: Spectrum, widths, T, *, tol: float = DEFAULT_TOL) -> VanillaSolution:
    """Order parameters of the vanilla theory: global minimum of 𝒮, by a scan of h(log c) on a log grid
    and bisection of every sign change (module docstring). Pure jnp: jit and vmap over widths and T.

    The scan covers c ∈ [e⁻¹⁰⁰, e¹⁰⁰] at log-spacing 0.5 (O(400 P)), bisection adds 64 steps of O(P) per
    root. `converged` is False, never NaN-silent, if no crossing is found or the residual exceeds tol.
    """
    widths = as_array(widths, "widths", dtype=jnp.float64, ndim=1, what="(L,) one width N_l per hidden layer")
    check_scalar("T", T, minimum=0, strict=True, hint=" (the temperature)")
    if fails(lambda v: v > 0, widths):
        raise ValueError(f"widths must be > 0; got {np.asarray(widths).tolist()}")
    return _solve_vanilla(_as_float64(sp), widths, jnp.asarray(T, jnp.float64), tol=float(tol))


@functools.partial(jax.jit, static_argnames=("tol",))
def _solve_vanilla(sp: Spectrum, widths, T, *, tol: float) -> VanillaSolution:
    """`solve_vanilla` after its checks: compiled once per (P, L, tol)."""

    def order_params(u):
        return 1.0 - _g(jnp.exp(u), T, sp) / widths

    def h(u):
        Q = order_params(u)
        ok = jnp.all(Q > 0)
        return jnp.where(ok, u - jnp.sum(jnp.log(jnp.where(ok, Q, 1.0))), jnp.inf)

    u_grid = jnp.linspace(-_SCAN_HALF_WIDTH, _SCAN_HALF_WIDTH, _SCAN_POINTS, dtype=widths.dtype)
    negative = jax.vmap(h)(u_grid) < 0
    crossing = negative[:-1] & ~negative[1:]
    (idx,) = jnp.nonzero(crossing, size=_MAX_MINIMA, fill_value=0)
    valid = crossing[idx] & (jnp.arange(_MAX_MINIMA) < jnp.sum(crossing))
    roots = jax.vmap(lambda a, b: bisect(h, a, b))(u_grid[idx], u_grid[idx + 1])
    Qs = jax.vmap(order_params)(roots)
    Qs = jnp.where(valid[:, None] & jnp.all(Qs > 0, axis=1, keepdims=True), Qs, jnp.nan)
    actions = jax.vmap(lambda Q: vanilla_action(Q, widths, T, sp))(jnp.where(jnp.isnan(Qs), 1.0, Qs))
    actions = jnp.where(jnp.isnan(Qs[:, 0]), jnp.inf, actions)
    best = jnp.argmin(actions)
    Q = Qs[best]
    residual = jnp.max(jnp.abs(Q - 1.0 + _g(jnp.prod(Q), T, sp) / widths))
    n_minima = jnp.sum(jnp.isfinite(actions))
    converged = (n_minima >= 1) & (residual <= tol)
    return VanillaSolution(Q, jnp.prod(Q), actions[best], residual, n_minima, Qs, actions, converged)


@float64_theory
def eigen_prediction(scale, T, sp: Spectrum) -> Prediction:
    """Posterior mean/variance and ε_g with K_R = scale · K, from the eigenbasis in O(QP) (eqs. (R-16)–(R-17))."""
    scale, T, sp = jnp.asarray(scale, jnp.float64), jnp.asarray(T, jnp.float64), _as_float64(sp)
    a = scale * sp.eigenvalues + T
    mean = sp.test_projection @ (scale * sp.y_tilde / a)
    var = scale * sp.test_variance - scale**2 * (sp.test_projection**2) @ (1.0 / a)
    var = jnp.maximum(var, 0.0)
    bias2 = jnp.mean((sp.y_test - mean) ** 2)
    variance = jnp.mean(var)
    return Prediction(mean, var, bias2 + variance, bias2, variance)


# ---------------------------------------------------------------------------------------------
# One hidden layer: two-variable form (Baglioni et al. 2024)


@float64_theory
def one_layer_action(Q, Qbar, width, T, sp: Spectrum):
    """𝒮(Q, Q̄) = N[−Q Q̄ + log(1 + Q)] + yᵀA⁻¹y + log det A, A = Q̄ K + T I (eq. (R-20);
    Baglioni et al., PRL 2024). ∂𝒮/∂Q = 0 gives Q̄ = 1/(1 + Q); eliminating Q gives the vanilla action in Q̄
    up to the constant N, so Q̄ is the L = 1 vanilla order parameter. NNGP limit: Q̄ = 1, Q = 0."""
    Q, Qbar, width, T = (jnp.asarray(a, jnp.float64) for a in (Q, Qbar, width, T))
    return width * (-Q * Qbar + jnp.log1p(Q)) + _data_term(Qbar, T, _as_float64(sp))


@float64_theory
def one_layer_order_params(sp: Spectrum, width, T, *, tol: float = DEFAULT_TOL):
    """(Q, Q̄) of the two-variable one-hidden-layer theory: Q̄ from `solve_vanilla`, Q = 1/Q̄ − 1."""
    sol = solve_vanilla(sp, jnp.reshape(jnp.asarray(width, jnp.float64), (1,)), T, tol=tol)
    Qbar = sol.order_params[0]
    return 1.0 / Qbar - 1.0, Qbar, sol.converged


# ---------------------------------------------------------------------------------------------
# T → 0 closed form (docs/nngp_and_renormalization.md, eq.)


@float64_theory
def zero_temperature_order_param(s_over_P, alpha, depth: int):
    """Q at T → 0, equal widths: Q^L (Q − 1 + α) = α s/P, α = P/N, s = yᵀK⁻¹y (eq. (R-18)).

    From Q = 1 − g/N with g → P − s/Q^L as T → 0 (K of full rank). The left side increases from 0 to ∞
    on Q > max(0, 1 − α), so the root is unique. L = 1: Q = [(1 − α) + √((1 − α)² + 4αs/P)]/2; L > 1: bisection
    in log Q. Pure jnp (vmappable over s/P and α).
    """
    depth = check_depth(depth, minimum=1, what="the number of hidden layers")
    s_over_P = as_array(s_over_P, "s_over_P", dtype=jnp.float64, allow_empty=True)
    alpha = as_array(alpha, "alpha", dtype=jnp.float64, allow_empty=True)
    if fails(lambda a, s: (a > 0) & (s > 0), alpha, s_over_P):
        raise ValueError("alpha = P/N and s/P = yᵀK⁻¹y/P must be > 0")
    s_over_P, alpha = jnp.broadcast_arrays(s_over_P, alpha)
    if depth == 1:
        return 0.5 * ((1.0 - alpha) + jnp.sqrt((1.0 - alpha) ** 2 + 4.0 * alpha * s_over_P))
    floor = jnp.maximum(1.0 - alpha, 0.0)

    def h(log_excess):  # Q = floor + e^log_excess, monotone in log_excess
        Q = floor + jnp.exp(log_excess)
        return depth * jnp.log(Q) + jnp.log(Q - 1.0 + alpha) - jnp.log(alpha * s_over_P)

    return floor + jnp.exp(bisect(h, jnp.full_like(alpha, -200.0), jnp.full_like(alpha, 200.0), 128))


# ---------------------------------------------------------------------------------------------
# Dense actions (nested and non-central variants)


class _Network(NamedTuple):
    """The kernel recursion of the network, shared by every variant: φ and the weight variances."""

    act: Activation  # φ resolved (closed form or quadrature)
    activation: str | Callable  # φ as the caller named it (for `mean_activation`)
    quad_points: int | None
    sw2: jax.Array  # (L + 1,) σ_l² = 1/λ_l, input layer first, readout last


def _nested_kernel(Q, C, c_diag, layer_var, act: Activation):
    """K^(L) with σ_wl² = Q_l/λ_l inside the recursion (eq. (R-19), "nested"; the authors' `FC_deep_nested`)."""
    return covariance_chain(C, c_diag, c_diag, activation=act, layer_weight_var=Q * layer_var)


def _noncentral_kernel(Qbar, Q, Theta, mu_outer, readout_var):
    """K_R = (Π Q̄_l) Θ_L − m μ_L μ_Lᵀ/λ_L, m = Σ_l (Q̄_l − 1/(1 + Q_l)) Π_{r>l} Q̄_r (eq. (R-21), non-central)."""
    return jnp.prod(Qbar) * Theta - _mean_shift(Qbar, Q) * readout_var * mu_outer


# ---------------------------------------------------------------------------------------------
# Public entry point


@float64_theory
def fc_theory(
    x_train,
    y_train,
    x_test,
    y_test,
    *,
    activation: str | Callable,
    depth: int,
    width,
    temperature: float,
    weight_var: float | Sequence[float] | None = None,
    variant: str = "vanilla",
    quad_points: int | None = None,
    tol: float = DEFAULT_TOL,
    max_iter: int = 100,
    priors=None,
) -> FCTheory:
    """Renormalized-kernel theory of a deep fully connected Bayesian network (module docstring).

    Args:
      x_train, y_train: (P, N_0) inputs and (P,) targets, exactly the data the network is trained on.
      x_test, y_test: (P_test, N_0) and (P_test,), P_test >= 1.
      activation: "erf", "relu", "linear", "gelu", "tanh", or a jnp callable (quadrature kernels).
      depth: number of hidden layers L >= 1.
      width: N, a scalar or one width per hidden layer [N_1, …, N_L].
      temperature: T > 0 (the posterior's likelihood is exp(−Σ(y − f)²/2T)).
      weight_var: [σ_0², …, σ_L²], the prior variances of the weights (σ_l² = 1/λ_l; input layer first, readout
        last), or a scalar for all layers; None: 1.
      variant: "vanilla" (Q_l multiply K^(L); global minimum by scan + bisection, exact at any width),
        "nested" (Q_l inside the recursion; Newton from the vanilla solution and from Q = 1, the lowest
        minimum kept), "noncentral" (ReLU-type φ with E[φ] ≠ 0: order parameters (Q̄_l, Q_l); Newton on the
        saddle-point equations from the central solution), or "auto" (`recommended_variant(activation)`).
        Vanilla = nested for ReLU and linear.
      quad_points: force Gauss–Hermite kernels (see `theory.activations.get_activation`).
      tol: on max_l |∂𝒮/∂log Q_l|/N_l (the relative accuracy of the order parameters).
      max_iter: Newton iterations (nested, noncentral).
      priors: deprecated: the precisions [λ_0, …, λ_L] = 1/weight_var (a `DeprecationWarning`; pass weight_var).

    Returns:
      `FCTheory`, float64, with the NNGP (infinite-width) prediction in `.nngp`.

    Raises:
      ValueError: on bad input (shapes, width <= 0, temperature <= 0, wrong number of weight_var, no test points).
      ConvergenceError: if the solver does not reach `tol` (the message gives the residual).
    """
    depth = check_depth(depth, minimum=1, what="the number of hidden layers")
    variant = resolve_variant(variant, activation)
    T = positive_scalar("temperature", temperature, "the posterior temperature T, i.e. the GP noise variance")
    widths = jnp.asarray(_widths(width, depth))
    sw2 = _weight_var(weight_var, priors, depth)
    x, y, x0, y0 = _data(x_train, y_train, x_test, y_test)
    net = _Network(get_activation(activation, quad_points), activation, quad_points, sw2)
    if variant == "nested" and depth > 1:
        return _fc_nested(x, y, x0, y0, widths, T, net, tol, max_iter)
    if variant == "noncentral":  # works in the spectrum of Θ_L = K; its prediction builds its own covariances
        return _fc_noncentral(x, y, x0, y0, widths, T, net, tol, max_iter)

    central = _central_theory(x, y, x0, y0, widths, jnp.asarray(T, widths.dtype), sw2, activation=activation,
                              quad_points=quad_points, tol=float(tol))
    van = _checked_central(central, x.shape[0], widths, T, tol)
    _check_prediction("vanilla", central.vanilla_prediction, x.shape[0], T)
    # vanilla, or nested with one layer: nested = vanilla exactly
    return FCTheory(van.order_params, *central.vanilla_prediction, van.action, van.residual, _other_minima(van),
                    central.nngp)


class _Central(NamedTuple):
    """What every variant of `fc_theory` starts from (`_central_theory`)."""

    kernels_finite: jax.Array  # False if the NNGP kernels overflowed
    layer0: tuple  # (C (P, P), c (P,), C0 (P_test, P), c0 (P_test,)): the layer-0 covariances σ_0² x·x'/N_0
    spectrum: Spectrum  # of the NNGP kernel K^(L)
    U_PxP: jax.Array  # its eigenvectors
    nngp: Prediction  # Q = 1
    vanilla: VanillaSolution
    vanilla_prediction: Prediction


@functools.partial(jax.jit, static_argnames=("activation", "quad_points", "tol"))
def _central_theory(x, y, x0, y0, widths, T, sw2, *, activation, quad_points, tol: float) -> _Central:
    """The NNGP kernels, their spectrum, the NNGP prediction and the vanilla theory (eqs. (R-13)–(R-17)) as one
    program, compiled once per (shapes, φ, tol): at P = 1000 a first call had compiled some sixty small programs
    (2.6 s at L = 1). Inside a program the kernels' and the Cholesky's own checks cannot run: `_checked_central` and
    `_check_prediction` make them on the results."""
    act = get_activation(activation, quad_points)
    lin = dict(activation="linear", depth=0, weight_var=sw2[0])
    C, c_P, C0_QxP, c0_Q = nngp_kernel(x, **lin), nngp_diag(x, **lin), nngp_kernel(x0, x, **lin), nngp_diag(x0, **lin)
    if act.closed_form:
        # the recursion on the layer-0 covariances as one elementwise chain: compiles in a second less than
        # `nngp_kernel`'s blocks (P = 1000, L = 3), with a few P × P temporaries
        K = covariance_chain(C, c_P, c_P, activation=act, layer_weight_var=sw2[1:])[0]
        K0_QxP, k0_Q, _ = covariance_chain(C0_QxP, c0_Q, c_P, activation=act, layer_weight_var=sw2[1:])
    else:  # quadrature holds n nodes per entry: `nngp_kernel`'s blocks bound that memory
        kernel_args = dict(activation=activation, depth=sw2.shape[0] - 1, weight_var=sw2, quad_points=quad_points)
        K, K0_QxP, k0_Q = nngp_kernel(x, **kernel_args), nngp_kernel(x0, x, **kernel_args), nngp_diag(x0, **kernel_args)
    finite = jnp.all(jnp.isfinite(K)) & jnp.all(jnp.isfinite(K0_QxP)) & jnp.all(jnp.isfinite(k0_Q))
    sp, U_PxP = _decompose(K, y, K0_QxP, k0_Q, y0)
    van = _solve_vanilla(sp, widths, T, tol=tol)
    c = van.scale
    return _Central(finite, (C, c_P, C0_QxP, c0_Q), sp, U_PxP, kernel_prediction(K, K0_QxP, k0_Q, y, y0, T), van,
                    kernel_prediction(c * K, c * K0_QxP, c * k0_Q, y, y0, T))


def _checked_central(ct: _Central, P: int, widths, T, tol) -> VanillaSolution:
    """Raise what the eager steps raised, in their order: an overflowing kernel, a kernel matrix + T I that is not
    positive definite (the NNGP prediction's Cholesky failed), a vanilla solve that did not converge."""
    if not bool(ct.kernels_finite):
        raise ValueError("the NNGP kernel overflowed float64 (inputs or variances too large for it): rescale x or "
                         "weight_var")
    _check_prediction("NNGP", ct.nngp, P, T)
    van = ct.vanilla
    if not bool(van.converged):
        raise ConvergenceError(
            f"vanilla saddle point not found: {int(van.n_minima)} minima on the scanned range c ∈ [e^-100, e^100], "
            f"residual {float(van.residual):.3g} > tol {tol:g} (widths {np.asarray(widths).tolist()}, T = {T:g})")
    return van


def _checks_only(ct: _Central) -> _Central:
    """The part of `_central_theory` a variant's program returns: what `_checked_central` reads and the NNGP
    prediction (XLA then drops the unused vanilla prediction from the program)."""
    return _Central(ct.kernels_finite, None, None, None, ct.nngp, ct.vanilla, None)


def _check_prediction(name: str, pred: Prediction, P: int, T) -> None:
    if not (all_finite(pred.mean) and all_finite(pred.var)):
        raise ValueError(f"Cholesky of K + T I failed for the {name} prediction: the kernel matrix is not positive "
                         f"definite in float64 (P = {P}, T = {T:g}); increase the temperature, or remove duplicate "
                         f"training points")


@float64_theory
def kernel_prediction(K_PxP, K_QxP, k_Q, y_train, y_test, temperature) -> Prediction:
    """`Prediction` of GP regression with a (renormalized) kernel at temperature T: the posterior at the test points
    (`theory.gp.gp_posterior`, noise = T) and its test loss ε_g = bias² + variance (eqs. (R-9), (R-10), (R-17))."""
    post = gp_posterior(K_PxP, K_QxP, k_Q, y_train, noise=temperature)
    loss = gp_test_loss(post, y_test)
    return Prediction(post.mean, post.var, *loss)


def _other_minima(van: VanillaSolution) -> tuple:
    order = np.argsort(np.asarray(van.minima_actions))
    return tuple(
        jnp.asarray(van.minima[i])
        for i in order[1:]
        if np.isfinite(van.minima_actions[i]) and not np.allclose(van.minima[i], van.order_params, rtol=1e-6)
    )


class _Triangle(NamedTuple):
    """The upper triangle (i ≤ j, row by row) of a symmetric P × P matrix as a vector of M = P(P + 1)/2 entries.
    The nested chain is elementwise and its kernels symmetric, so the Newton solver runs it (and its tangents and
    curvature) on the triangle: half the transcendental work of the full matrix, which it unpacks only for the
    Cholesky and the products."""

    rows: jax.Array  # (M,) i of each entry
    cols: jax.Array  # (M,) j of each entry
    weights: jax.Array  # (M,) 1 on the diagonal, 2 off it: Σ_ij A_ij B_ij = Σ_k w_k A_k B_k for symmetric A, B
    full: jax.Array  # (P, P) the entry of (min(i, j), max(i, j)): vector[full] is the symmetric matrix


def _triangle(P: int, dtype) -> _Triangle:
    """`_Triangle` of a P × P matrix, built from iotas inside the caller's program (no P² constants to embed)."""
    if P > 46340:  # i·P below must not overflow int32 (a float64 P × P matrix is 17 GB there)
        raise ValueError(f"the nested solver's packed triangle indexes in int32, which holds P ≤ 46340 training "
                         f"points; got P = {P}: use a subset of the training data")
    i = jnp.arange(P, dtype=jnp.int32)
    start = i * P - (i * (i - 1)) // 2  # the triangle's index of (i, i)
    rows = jnp.repeat(i, P - i, total_repeat_length=P * (P + 1) // 2)
    cols = jnp.arange(P * (P + 1) // 2, dtype=jnp.int32) - start[rows] + rows
    lo, hi = jnp.minimum(i[:, None], i[None, :]), jnp.maximum(i[:, None], i[None, :])
    return _Triangle(rows, cols, jnp.where(rows == cols, 1.0, 2.0).astype(dtype), start[lo] + hi - lo)


class _NestedData(NamedTuple):
    """The nested action's fixed inputs at one (widths, T), as its Newton solver uses them."""

    C_M: jax.Array  # (M,) layer-0 covariances σ_0² x·x'/N_0 on the `_Triangle`
    c_diag: jax.Array  # (P,) layer-0 variances
    tri: _Triangle
    y: jax.Array  # (P,)
    widths: jax.Array  # (L,)
    T: jax.Array
    layer_var: jax.Array  # (L,) σ_1²..σ_L²


def _nested_data(C, c_diag, y, widths, T, layer_var) -> _NestedData:
    tri = _triangle(C.shape[0], C.dtype)
    return _NestedData(C[tri.rows, tri.cols], c_diag, tri, y, widths, T, layer_var)


def _nested_chain(Q, C_M, c_diag, tri: _Triangle, layer_var, act: Activation):
    """K_R of eq. (R-19) on the triangle: `theory.nngp.covariance_chain`'s recursion K^l = σ_wl² F_φ(k_i, K_ij, k_j)
    with σ_wl² = Q_l/λ_l, each point's variance k_i computed once per layer and gathered for its entries.
    The layers run as a loop (lax.scan), not as one unrolled expression: with the chain's tangents, at P = 1000 the
    gradient took 105 / 139 / 166 ms at L = 2 / 3 / 4 against 118 / 154 / 197 unrolled (2 cores, 2026-12-04, before
    the per-point factors below and the quieted OpenBLAS threads, which took L = 3 to 96–101 ms), and compiles as
    fast or faster; at depth the unrolled derivatives grow too large for XLA (L = 10: 0.51 s against 0.73 s per
    gradient)."""
    on_diagonal = tri.rows == tri.cols

    def layer(carry, sw2):
        K_M, k_P = carry
        k_new = act.diag(k_P)
        # per-point factors once per point (erf: 1/√(1 + 2k)), so that the entries and their tangents are products:
        # the general form divides per entry, and those divisions were most of the tangents' cost (P = 1000, L = 3:
        # the chain with its two tangents 45 → 27 ms, a gradient 113 → 101 ms; 2 cores, 2026-12-04)
        factors = act.prepare(k_P)
        rows, cols = (jax.tree.map(lambda a, i=i: a[i], factors) for i in (tri.rows, tri.cols))
        # the diagonal entries by the diagonal map: a quadrature F_φ(k, K, k) has an infinite derivative in its
        # √(1 − ρ²) at ρ = 1, whose NaN tangent would stop the solver (forward-mode tangents of the select are taken
        # from the selected branch only)
        K_new = jnp.where(on_diagonal, k_new[tri.rows], act.pair_from(rows, K_M, cols))
        return (sw2 * K_new, sw2 * k_new), None

    return jax.lax.scan(layer, (C_M, c_diag), Q * layer_var)[0][0]


class _NestedFactors(NamedTuple):
    """What the nested gradient computed and the Hessian reuses (arrays at one q)."""

    A_inv: jax.Array  # (P, P) A⁻¹, A = K_R + T I
    alpha: jax.Array  # (P,) A⁻¹y
    B_M: jax.Array  # (M,) B = A⁻¹ − ααᵀ on the triangle
    K_FxPxP: jax.Array  # (L − 1, P, P) ∂K_R/∂q_l for the first L − 1 layers
    K_FxM: jax.Array  # (L − 1, M) the same on the triangle
    trace_AK: jax.Array  # (L,) Tr(A⁻¹K_l)
    trace_BK: jax.Array  # (L,) Tr(B K_l)
    Kalpha_LxP: jax.Array  # (L, P) K_l α


def _chain_and_tangents(q, data: _NestedData, act: Activation):
    """K_R on the triangle and its tangents K_l = ∂K_R/∂q_l for the first L − 1 layers, (M,) and (L − 1, M).
    K_R is linear in e^{q_L} (the last layer's variance multiplies F_φ, and the nested chain has no biases — a bias
    would break this): K_L = K_R and K_Lm = K_m, so only the first L − 1 directions need tangents of the chain, and
    A⁻¹K_L = I − T A⁻¹ needs no product."""
    depth = q.shape[0]

    def kernel(q):
        return _nested_chain(jnp.exp(q), data.C_M, data.c_diag, data.tri, data.layer_var, act)

    if depth == 1:
        return kernel(q), jnp.zeros((0, data.tri.rows.shape[0]), q.dtype)
    return jax.vmap(lambda v: jax.jvp(kernel, (q,), (v,)), out_axes=(None, 0))(jnp.eye(depth, dtype=q.dtype)[:-1])


def _nested_gradient(q, data: _NestedData, act: Activation):
    """𝒮 and ∇𝒮 in q = log Q (eq. (R-19b)), and the factors `_nested_hessian` reuses.

    With K_l = ∂K_R/∂q_l, α = A⁻¹y and B = A⁻¹ − ααᵀ:  ∂_l 𝒮 = N_l (Q_l − 1) + Tr(B K_l).
    K_l are forward tangents of the (elementwise) chain, so automatic differentiation never passes through the
    factorisation. The last layer needs none (K_L = K_R): the O(P³) work is one Cholesky and A⁻¹.
    """
    tri, P = data.tri, data.c_diag.shape[0]
    K_M, K_FxM = _chain_and_tangents(q, data, act)
    K_R, K_FxPxP = K_M[tri.full], K_FxM[:, tri.full]
    chol = jnp.linalg.cholesky(K_R + data.T * jnp.eye(P, dtype=K_R.dtype))
    alpha = cho_solve((chol, True), data.y)
    A_inv = cho_solve((chol, True), jnp.eye(P, dtype=K_R.dtype))
    A_inv_M = A_inv[tri.rows, tri.cols]
    wA_M = tri.weights * A_inv_M
    Q = jnp.exp(q)
    value = jnp.sum(data.widths * (Q - q)) + jnp.dot(data.y, alpha) + 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol)))
    trace_AK = jnp.concatenate([K_FxM @ wA_M, jnp.vdot(wA_M, K_M)[None]])  # Tr(A⁻¹K_l)
    Kalpha_LxP = jnp.concatenate([K_FxPxP @ alpha, (K_R @ alpha)[None]])
    trace_BK = trace_AK - Kalpha_LxP @ alpha  # Tr(B K_l)
    grad = data.widths * (Q - 1.0) + trace_BK
    B_M = A_inv_M - alpha[tri.rows] * alpha[tri.cols]
    return value, grad, _NestedFactors(A_inv, alpha, B_M, K_FxPxP, K_FxM, trace_AK, trace_BK, Kalpha_LxP)


# the step of the curvature block's forward differences, in q = log Q (a relative change of 1e-6 in each Q_l)
_CURVATURE_STEP = 1e-6


def _nested_hessian(q, f: _NestedFactors, data: _NestedData, act: Activation, step: float = _CURVATURE_STEP):
    """∇²𝒮 in q = log Q (eq. (R-19b)) from the factors of `_nested_gradient` at the same q. With K_lm = ∂²K_R/∂q_l∂q_m:
        ∂_lm 𝒮 = δ_lm N_l Q_l + Tr(B K_lm) − Tr(A⁻¹K_l A⁻¹K_m) + 2 αᵀK_l A⁻¹ K_m α.
    Tr(B K_lm) = ∂_m Tr(B K_l) at fixed B, by forward differences of step h along each q_m (it only shapes the
    Newton step; convergence is judged on the exact gradient). The O(P³) work is one product of A⁻¹ with the L − 1
    first K_l (A⁻¹K_L = I − T A⁻¹)."""
    depth, P, T = q.shape[0], data.c_diag.shape[0], data.T
    A_inv, K_FxPxP = f.A_inv, f.K_FxPxP
    # Tr(A⁻¹K_l A⁻¹K_m) from N_l = K_l A⁻¹ (one product for the first L − 1 layers; the last one is I − T A⁻¹)
    last = P - 2.0 * T * jnp.trace(A_inv) + T**2 * jnp.vdot(A_inv, A_inv)
    traces = jnp.full((depth, depth), last)
    if depth > 1:
        N_FxPxP = (K_FxPxP.reshape(-1, P) @ A_inv).reshape(depth - 1, P, P)
        first = N_FxPxP.reshape(depth - 1, -1) @ jnp.swapaxes(N_FxPxP, 1, 2).reshape(depth - 1, -1).T
        mixed = f.trace_AK[:-1] - T * jnp.einsum("ij,lij->l", A_inv, N_FxPxP)
        traces = traces.at[:-1, :-1].set(first).at[:-1, -1].set(mixed).at[-1, :-1].set(mixed)
    # Tr(B K_lm): K_Lm = K_m and K_LL = K_R give the last row; only the (L−1) × (L−1) block needs second derivatives
    # of the chain. Forward differences of the first-order tangents the gradient already runs: in float64 with
    # h = 1e-6 the block is good to 1e-7–6e-7 of its scale (P = 1000: 1.3e-7; P = 30: 3.6e-7–5.7e-7), truncation ~h;
    # h = 1e-7 measured 6–9× better, but the rounding, amplified by the cancellation in B = A⁻¹ − ααᵀ, grows as
    # 1/h, and 1e-6 keeps a margin. The float32 forward-over-forward second derivatives it replaces were good to
    # ~6e-6, and at P = 1000, L = 3 compiled 0.64 s longer and ran slower (the solve 1.30 against 1.35 s; 2 cores,
    # 2026-12-04). The iterations and the solution were the same.
    curvature = jnp.zeros((depth, depth), q.dtype).at[-1, :].set(f.trace_BK).at[:, -1].set(f.trace_BK)
    if depth > 1:
        wB_M = data.tri.weights * f.B_M
        at_q = f.K_FxM @ wB_M  # Tr(B K_l) at q by the formula of the shifted points (trace_BK rounds differently)

        def shifted(e_m):  # (Tr(B K_l)(q + h e_m) − Tr(B K_l)(q))/h for l < L
            return (_chain_and_tangents(q + step * e_m, data, act)[1] @ wB_M - at_q) / step

        block = jax.lax.map(shifted, jnp.eye(depth, dtype=q.dtype)[:-1])
        curvature = curvature.at[:-1, :-1].set(0.5 * (block + block.T))
    hess = jnp.diag(data.widths * jnp.exp(q)) + curvature - traces + 2.0 * f.Kalpha_LxP @ A_inv @ f.Kalpha_LxP.T
    return 0.5 * (hess + hess.T)


@float64_theory
def solve_nested(q0_SxL, C, c_diag, y, widths, T, layer_var, *, act: Activation, tol: float, max_iter: int):
    """Nested order parameters (eq. (R-19)): Newton in q = log Q from each start (rows of q0_SxL), one after the other.
    Each start after the first borrows the Hessian of the lowest minimum found so far and stops once a step lands
    within 1e-2 of it in log Q, halving its distance (`_solvers.newton_minimize`'s `known`): put the most promising
    start first. The lower-level
    solver of `fc_theory(variant="nested")`, for callers that hold the layer-0 covariances C = σ_0² x xᵀ/N_0 (P, P)
    and c_diag (P,), the targets y, the widths (L,), T and layer_var = σ_1²..σ_L² (L,), and act =
    `theory.activations.get_activation(φ)`. Returns the `_solvers.Solution` of every start (stacked; `.x` is log Q;
    a start that reached an earlier start's minimum returns that minimum).
    Compiled once per (shapes, φ, tol, max_iter): widths, T, weight variances and starts are traced values.
    In float64 whatever the inputs' precision (the curvature's forward differences need it)."""
    return _solve_nested(*(jnp.asarray(a, jnp.float64) for a in (q0_SxL, C, c_diag, y, widths, T, layer_var)),
                         act=act, tol=float(tol), max_iter=int(max_iter))


@functools.partial(jax.jit, static_argnames=("act", "tol", "max_iter"))
def _solve_nested(q0_SxL, C, c_diag, y, widths, T, layer_var, *, act: Activation, tol: float, max_iter: int):
    """`solve_nested` on float64 arrays, traceable (the variant's program and the nested grid call it)."""
    data = _nested_data(C, c_diag, y, widths, T, layer_var)

    def start(best: Solution, q0):
        sol = newton_minimize(None, q0, scale=widths, tol=tol, max_iter=max_iter,
                              derivatives=lambda q: _nested_gradient(q, data, act),
                              hessian=lambda q, factors: _nested_hessian(q, factors, data, act), known=best)
        lower = sol.converged & (~best.converged | (sol.value < best.value))
        return jax.tree.map(lambda a, b: jnp.where(lower, a, b), sol, best), sol

    # one start at a time (lax.scan: under vmap a finished start would keep paying for the other's line search)
    depth = q0_SxL.shape[1]
    none = Solution(q0_SxL[0], jnp.asarray(jnp.inf, C.dtype), jnp.asarray(jnp.inf, C.dtype), 0, False,
                    jnp.zeros((depth, depth), C.dtype))
    return jax.lax.scan(start, none, q0_SxL)[1]


def _fc_nested(x, y, x0, y0, widths, T, net: _Network, tol: float, max_iter: int) -> FCTheory:
    ct, sols, pred = _nested_theory(x, y, x0, y0, widths, jnp.asarray(T, widths.dtype), net.sw2,
                                    activation=net.activation, quad_points=net.quad_points, tol=float(tol),
                                    max_iter=int(max_iter))
    _checked_central(ct, x.shape[0], widths, T, tol)
    ok = np.asarray(sols.converged)
    if not ok.any():
        raise ConvergenceError(
            f"nested saddle point not found after {max_iter} Newton steps from the vanilla solution and from Q = 1: "
            f"residuals {np.asarray(sols.residual).tolist()} > tol {tol:g}"
        )
    _check_prediction("nested", pred, x.shape[0], T)
    values = np.where(ok, np.asarray(sols.value), np.inf)
    best = int(np.argmin(values))
    Q = jnp.exp(sols.x[best])
    others = tuple(
        jnp.exp(sols.x[i]) for i in range(len(values))
        if ok[i] and not np.allclose(np.exp(np.asarray(sols.x[i])), np.asarray(Q), rtol=1e-6)
    )
    return FCTheory(Q, *pred, sols.value[best], sols.residual[best], others, ct.nngp)


@functools.partial(jax.jit, static_argnames=("activation", "quad_points", "tol", "max_iter"))
def _nested_theory(x, y, x0, y0, widths, T, sw2, *, activation, quad_points, tol: float, max_iter: int):
    """`fc_theory(variant="nested")` after its checks, as one program (compiled once per shapes, φ, tol, max_iter;
    a first call compiles it in about the time the same steps took as some seventy programs, and a warm call
    dispatches one): `_central_theory` (the vanilla solution is the first start), `solve_nested` from it and from
    Q = 1, and the prediction at the lower minimum. Returns (`_checks_only` of the central theory, the starts'
    solutions, prediction) for the caller to check."""
    act = get_activation(activation, quad_points)
    ct = _central_theory(x, y, x0, y0, widths, T, sw2, activation=activation, quad_points=quad_points, tol=tol)
    C, c_diag, C0_QxP, c0_Q = ct.layer0
    starts = jnp.stack([jnp.log(ct.vanilla.order_params), jnp.zeros_like(widths)])  # the closer start first
    sols = _solve_nested(starts, C, c_diag, y, widths, T, sw2[1:], act=act, tol=tol, max_iter=max_iter)
    best = jnp.argmin(jnp.where(sols.converged, sols.value, jnp.inf))
    pred = _nested_prediction_arrays(jnp.exp(sols.x[best]), C, c_diag, C0_QxP, c0_Q, y, y0, T, sw2[1:], act)
    return _checks_only(ct), sols, pred


def _nested_prediction_arrays(Q, C, c_diag, C0_QxP, c0_Q, y, y0, T, layer_var, act: Activation) -> Prediction:
    """GP prediction with the nested kernels, from the layer-0 covariances (traceable: the grid calls it under jit)."""
    K_R = _nested_kernel(Q, C, c_diag, layer_var, act)[0]
    K0_R, k0_R, _ = covariance_chain(C0_QxP, c0_Q, c_diag, activation=act, layer_weight_var=Q * layer_var)
    return kernel_prediction(K_R, K0_R, k0_R, y, y0, T)



def _noncentral_inputs(C, c_diag, net: _Network):
    """Θ_L = K^(L) and μ_L μ_Lᵀ, with μ_L the mean activation of the last hidden layer, from its pre-activation
    variances K^(L-1)(x, x); the chain runs once, layers 1..L-1 then layer L."""
    K_prev, q_prev, _ = covariance_chain(C, c_diag, c_diag, activation=net.act, layer_weight_var=net.sw2[1:-1])
    Theta, _, _ = covariance_chain(K_prev, q_prev, q_prev, activation=net.act, layer_weight_var=net.sw2[-1:])
    mu = mean_activation(net.activation, q_prev, net.quad_points)
    return Theta, jnp.outer(mu, mu)


def _mean_shift(Qbar, Q):
    """m = Σ_l (Q̄_l − 1/(1 + Q_l)) Π_{r>l} Q̄_r, the weight of the mean term in eq. (R-21)."""
    later = jnp.concatenate([jnp.cumprod(Qbar[::-1])[::-1][1:], jnp.ones((1,), Qbar.dtype)])
    return jnp.sum((Qbar - 1.0 / (1.0 + Q)) * later)


def _last_mean_activation(x, net: _Network, depth: int):
    """μ_L(x) = μ(K^(L-1)(x, x)), the prior mean activation of the last hidden layer at the points x (eq. (R-8))."""
    q_prev = nngp_diag(x, activation=net.activation, depth=depth - 1, weight_var=net.sw2[:depth],
                       quad_points=net.quad_points)
    return mean_activation(net.activation, q_prev, net.quad_points)


def _noncentral_data_term(scale, shift, T, theta, y_tilde, mu_tilde):
    """yᵀA⁻¹y + log det A for A = scale·Θ + T I − shift·μμᵀ in the eigenbasis Θ = U diag(θ) Uᵀ (ỹ = Uᵀy,
    μ̃ = Uᵀμ), by the Sherman–Morrison and matrix-determinant identities with D = scale·θ + T:
        yᵀA⁻¹y = ỹᵀD⁻¹ỹ + shift (ỹᵀD⁻¹μ̃)² / (1 − shift μ̃ᵀD⁻¹μ̃),  log det A = Σ log D_i + log(1 − shift μ̃ᵀD⁻¹μ̃).
    O(P) per evaluation. NaN, value and gradient, where A is not positive definite (as a failed Cholesky would
    be): the solvers' backtracking then shortens the step."""
    d = scale * theta + T
    s_mm, s_ym, s_yy = jnp.sum(mu_tilde**2 / d), jnp.sum(y_tilde * mu_tilde / d), jnp.sum(y_tilde**2 / d)
    den = 1.0 - shift * s_mm
    # Adding NaN (not selecting it) makes the gradient NaN too, so newton_root's merit rejects the point and backtracks.
    den = den + jnp.where(den > 0, 0.0, jnp.nan)
    return s_yy + shift * s_ym**2 / den + jnp.sum(jnp.log(d)) + jnp.log(den)


def _noncentral_action(z, theta, y_tilde, mu_tilde, widths, T, readout_var):
    """𝒮 of eq. (R-21) in z = (log Q̄_l, log(1 + Q_l)): K_R = (Π Q̄_l) Θ_L − m μ_L μ_Lᵀ/λ_L (`_noncentral_kernel`)."""
    depth = widths.shape[0]
    Qbar, Q = jnp.exp(z[:depth]), jnp.expm1(z[depth:])
    return (jnp.sum(widths * (-Qbar * Q + jnp.log1p(Q)))
            + _noncentral_data_term(jnp.prod(Qbar), _mean_shift(Qbar, Q) * readout_var, T, theta, y_tilde, mu_tilde))


@functools.partial(jax.jit, static_argnames=("tol", "max_iter"))
def solve_noncentral(z0, theta, y_tilde, mu_tilde, widths, T, readout_var, *, tol: float, max_iter: int):
    """Non-central order parameters (eq. (R-21)): Newton on ∇𝒮 = 0 (a saddle: 𝒮 is linear in Q̄ at fixed Q) in the
    eigenbasis Θ_L = U diag(θ) Uᵀ, O(P) per evaluation; z = (log Q̄_l, log(1 + Q_l)), ỹ = Uᵀy, μ̃ = Uᵀμ_L, readout_var
    = σ_L². The lower-level solver of `fc_theory(variant="noncentral")`. Compiled once per (P, L, tol, max_iter);
    returns the `_solvers.Solution` and 𝒮 there."""
    args = (theta, y_tilde, mu_tilde, widths, T, readout_var)
    sol = newton_root(jax.grad(lambda z: _noncentral_action(z, *args)), z0,
                      scale=jnp.concatenate([widths, widths]), tol=tol, max_iter=max_iter)
    return sol, _noncentral_action(sol.x, *args)


def _fc_noncentral(x, y, x0, y0, widths, T, net: _Network, tol: float, max_iter: int) -> FCTheory:
    """Non-central ansatz from the spectrum of Θ_L = K^(L) (the NNGP kernel, already decomposed for the vanilla
    start): K_R differs from a multiple of Θ_L by a rank-one term, so every evaluation of 𝒮 is O(P)."""
    ct, sol, action, pred = _noncentral_theory(x, y, x0, y0, widths, jnp.asarray(T, widths.dtype), net.sw2,
                                               activation=net.activation, quad_points=net.quad_points,
                                               tol=float(tol), max_iter=int(max_iter))
    _checked_central(ct, x.shape[0], widths, T, tol)
    if not bool(sol.converged):
        raise ConvergenceError(
            f"non-central saddle point not found after {int(sol.iterations)} Newton steps from the central solution: "
            f"residual {float(sol.residual):.3g} > tol {tol:g}"
        )
    _check_prediction("non-central", pred, x.shape[0], T)
    depth = widths.shape[0]
    Qbar, Q = jnp.exp(sol.x[:depth]), jnp.expm1(sol.x[depth:])
    return FCTheory(NoncentralOrderParams(Qbar, Q), *pred, action, sol.residual, (), ct.nngp)


@functools.partial(jax.jit, static_argnames=("activation", "quad_points", "tol", "max_iter"))
def _noncentral_theory(x, y, x0, y0, widths, T, sw2, *, activation, quad_points, tol: float, max_iter: int):
    """`fc_theory(variant="noncentral")` after its checks, as one program: `_central_theory` (its solution is the
    start), the last layer's mean activations in the eigenbasis, `solve_noncentral` and the prediction. Returns
    (`_checks_only` of the central theory, the solver's `Solution`, 𝒮 there, prediction) for the caller to check."""
    net = _Network(get_activation(activation, quad_points), activation, quad_points, sw2)
    ct = _central_theory(x, y, x0, y0, widths, T, sw2, activation=activation, quad_points=quad_points, tol=tol)
    sp, depth = ct.spectrum, widths.shape[0]
    mu_tilde = ct.U_PxP.T @ _last_mean_activation(x, net, depth)
    Qbar0 = ct.vanilla.order_params
    z0 = jnp.concatenate([jnp.log(Qbar0), -jnp.log(Qbar0)])  # Q = 1/Q̄ − 1: log(1 + Q) = −log Q̄
    sol, action = solve_noncentral(z0, sp.eigenvalues, sp.y_tilde, mu_tilde, widths, T, sw2[-1], tol=tol,
                                    max_iter=max_iter)
    Qbar, Q = jnp.exp(sol.x[:depth]), jnp.expm1(sol.x[depth:])
    return _checks_only(ct), sol, action, _noncentral_prediction(Qbar, Q, x, y, x0, y0, T, net)


def _noncentral_prediction(Qbar, Q, x, y, x0, y0, T, net: _Network) -> Prediction:
    sw2 = net.sw2
    xx = jnp.concatenate([x, x0])
    lin = dict(activation="linear", depth=0, weight_var=sw2[0])
    Theta, mu_outer = _noncentral_inputs(nngp_kernel(xx, **lin), nngp_diag(xx, **lin), net)
    K_all = _noncentral_kernel(Qbar, Q, Theta, mu_outer, sw2[-1])
    P = x.shape[0]
    return kernel_prediction(K_all[:P, :P], K_all[P:, :P], jnp.diagonal(K_all)[P:], y, y0, T)


@float64_theory
def renormalized_kernel(x, *, activation: str | Callable, depth: int, order_params,
                        weight_var: float | Sequence[float] | None = None, variant: str = "vanilla",
                        quad_points: int | None = None, priors=None):
    """K_R on the points x (P×P), from the order parameters of `fc_theory` (its `.order_params`; noncentral: the
    `NoncentralOrderParams` or the equivalent (2, L) array of rows (Q̄_l, Q_l)).

    vanilla: (Π_l Q_l) K^(L); nested: K^(L) with σ_wl² = Q_l/λ_l (l = 1..L) inside the recursion; noncentral:
    (Π Q̄_l) Θ_L − m μ_L μ_Lᵀ/λ_L (module docstring); "auto": `recommended_variant(activation)`. `weight_var` and
    the deprecated `priors` as in `fc_theory`. This is the kernel the theory says the readout sees: for
    one hidden layer, Q = λ_1 |v|²/N_1 is the posterior readout norm and K_R = Q K^(1) the covariance of f
    given it (`train.experiments.bayes_networks` compares both with sampled networks).
    """
    depth = check_depth(depth, minimum=1, what="the number of hidden layers")
    variant = resolve_variant(variant, activation)
    sw2 = _weight_var(weight_var, priors, depth)
    x = as_array(x, "x", dtype=jnp.float64, ndim=2, what="a (P, N_0) array of inputs")
    Q = as_array(order_params, "order_params", dtype=jnp.float64)
    expected = (2, depth) if variant == "noncentral" else (depth,)
    if Q.shape != expected:
        raise ValueError(f"{variant} order parameters have shape {expected} for depth {depth}; got {Q.shape}")
    in_range = (lambda Q: (Q[0] > 0) & (Q[1] > -1)) if variant == "noncentral" else (lambda Q: Q > 0)
    if fails(in_range, Q):
        raise ValueError(
            "order parameters out of range: Q_l > 0 (vanilla, nested); Q̄_l > 0 and Q_l > −1 (noncentral); "
            f"got {np.asarray(Q).tolist()}"
        )
    net = _Network(get_activation(activation, quad_points), activation, quad_points, sw2)
    if variant == "vanilla":
        return jnp.prod(Q) * nngp_kernel(x, activation=activation, depth=depth, weight_var=sw2,
                                         quad_points=quad_points)
    C = nngp_kernel(x, activation="linear", depth=0, weight_var=sw2[0])
    c_diag = nngp_diag(x, activation="linear", depth=0, weight_var=sw2[0])
    if variant == "nested":
        return _nested_kernel(Q, C, c_diag, net.sw2[1:], net.act)[0]
    Theta, mu_outer = _noncentral_inputs(C, c_diag, net)
    return _noncentral_kernel(Q[0], Q[1], Theta, mu_outer, sw2[-1])


# ---------------------------------------------------------------------------------------------
# Grids from one eigendecomposition


class TheoryGrid(NamedTuple):
    """Theory on a (width, temperature) grid: `width` (W,) and `temperature` (T,) are the grid's axes; every other
    array has shape (W, T), order parameters (W, T, …) as below. Field names follow `FCTheory`."""

    width: jax.Array
    temperature: jax.Array
    # vanilla: (W, T) Q (equal widths: Q_l = Q for every layer l); nested: (W, T, L) Q_l;
    # noncentral: NoncentralOrderParams of two (W, T, L) arrays
    order_params: jax.Array | NoncentralOrderParams
    test_loss: jax.Array
    bias2: jax.Array
    variance: jax.Array
    n_minima: jax.Array  # local minima of the vanilla action (the start of nested and non-central)
    converged: jax.Array
    residual: jax.Array | None = None  # nested (L ≥ 2), noncentral: max |∂𝒮|/N per point; vanilla, nested L = 1: None


@functools.partial(jax.jit, static_argnames=("depth", "tol"))
def _grid(sp: Spectrum, widths, temperatures, depth: int, tol: float):
    def point(N, T):
        sol = solve_vanilla(sp, jnp.full((depth,), N), T, tol=tol)
        pred = eigen_prediction(sol.scale, T, sp)
        return sol.order_params[0], pred.test_loss, pred.bias2, pred.variance, sol.n_minima, sol.converged

    # Rows of the grid one after the other (lax.map), temperatures vmapped: a fully vmapped 64 × 64 grid at
    # P = 1000 asked XLA for 33 GB (per-point (P_test, P) temporaries); one row needs ~0.5 GB.
    return jax.lax.map(lambda N: jax.vmap(lambda T: point(N, T))(temperatures), widths)


@functools.partial(jax.jit, static_argnames=("depth", "tol"))
def _vanilla_points(sp: Spectrum, widths_G, temperatures_G, depth: int, tol: float):
    """Vanilla solutions at G points (the starts of the nested and non-central grids), O(P) each."""
    return jax.lax.map(lambda NT: solve_vanilla(sp, jnp.full((depth,), NT[0]), NT[1], tol=tol),
                       jnp.stack([widths_G, temperatures_G], axis=1))


@functools.partial(jax.jit, static_argnames=("act", "tol", "max_iter"))
def _nested_grid(q_van_GxL, widths_G, temperatures_G, C, c_diag, C0_QxP, c0_Q, y, y0, layer_var, *,
                 act: Activation, tol: float, max_iter: int):
    """Nested theory at G points in order, each from two starts: the previous point's solution (warm start) and its
    own vanilla solution; the lower converged minimum is kept. One point in memory at a time (lax.scan)."""

    def point(q_prev, inputs):
        q_van, N, T = inputs
        widths = jnp.full_like(q_van, N)
        sols = _solve_nested(jnp.stack([q_prev, q_van]), C, c_diag, y, widths, T, layer_var, act=act, tol=tol,
                             max_iter=max_iter)
        best = jnp.argmin(jnp.where(sols.converged, sols.value, jnp.inf))
        q, ok = sols.x[best], jnp.any(sols.converged)
        pred = _nested_prediction_arrays(jnp.exp(q), C, c_diag, C0_QxP, c0_Q, y, y0, T, layer_var, act)
        return jnp.where(ok, q, q_van), (jnp.exp(q), pred, sols.residual[best], ok)

    return jax.lax.scan(point, q_van_GxL[0], (q_van_GxL, widths_G, temperatures_G))[1]


def _noncentral_eigen_prediction(Qbar, Q, T, readout_var, sp: Spectrum, mu_tilde, mu0_Q) -> Prediction:
    """Eq. (R-21) prediction in the eigenbasis of Θ_L: k_R = aΘ0 − s μ0 μ, A⁻¹ by Sherman–Morrison, O(P_test · P)."""
    a = jnp.prod(Qbar)
    s = _mean_shift(Qbar, Q) * readout_var
    d = a * sp.eigenvalues + T
    den = 1.0 - s * jnp.sum(mu_tilde**2 / d)
    k_QxP = a * sp.test_projection - s * mu0_Q[:, None] * mu_tilde[None, :]
    A_inv_y = sp.y_tilde / d + s * (mu_tilde / d) * jnp.sum(mu_tilde * sp.y_tilde / d) / den
    mean = k_QxP @ A_inv_y
    var = (a * sp.test_variance - s * mu0_Q**2) - (k_QxP**2) @ (1.0 / d) - s * (k_QxP @ (mu_tilde / d)) ** 2 / den
    var = jnp.maximum(var, 0.0)
    bias2, variance = jnp.mean((sp.y_test - mean) ** 2), jnp.mean(var)
    return Prediction(mean, var, bias2 + variance, bias2, variance)


@functools.partial(jax.jit, static_argnames=("tol", "max_iter"))
def _noncentral_grid(z0_GxZ, widths_G, temperatures_G, sp: Spectrum, mu_tilde, mu0_Q, readout_var, *, tol: float,
                     max_iter: int):
    """Non-central theory at G points from each point's central solution; O(P) per Newton evaluation (vmapped)."""

    def point(z0, N, T):
        depth = z0.shape[0] // 2
        widths = jnp.full((depth,), N)
        sol, _ = solve_noncentral(z0, sp.eigenvalues, sp.y_tilde, mu_tilde, widths, T, readout_var,
                                  tol=tol, max_iter=max_iter)
        Qbar, Q = jnp.exp(sol.x[:depth]), jnp.expm1(sol.x[depth:])
        return Qbar, Q, _noncentral_eigen_prediction(Qbar, Q, T, readout_var, sp, mu_tilde, mu0_Q), sol.residual, \
            sol.converged

    return jax.lax.map(lambda args: point(*args), (z0_GxZ, widths_G, temperatures_G), batch_size=16)


@float64_theory
def fc_theory_grid(
    x_train,
    y_train,
    x_test,
    y_test,
    *,
    activation: str | Callable,
    depth: int,
    width: float | Sequence[float],
    temperature: float | Sequence[float],
    weight_var: float | Sequence[float] | None = None,
    variant: str = "vanilla",
    quad_points: int | None = None,
    tol: float = DEFAULT_TOL,
    max_iter: int = 100,
    priors=None,
    **renamed,
) -> TheoryGrid:
    """The theory (equal widths) on a whole (width, temperature) grid, compiled once for the grid.

    vanilla: from one eigendecomposition of K^(L): O(P³) once, then O(P · 400 + P · P_test) per point;
    temperatures vmapped, widths mapped row by row to bound memory (docs/nngp_and_renormalization.md, eq. (R-16)).
    nested: the points in boustrophedon order, each by Newton (eq. (R-19b)) from the previous point's solution (a warm
    start) and from its own vanilla solution, the lower minimum kept; O(P³) per Newton step, one point in memory.
    noncentral: from the same eigendecomposition, O(P) per Newton evaluation (eq. (R-21), Sherman–Morrison).
    "auto": `recommended_variant(activation)`.

    Arguments as in `fc_theory`, except that `width` (the same N in every hidden layer) and `temperature` are the
    grid's axes: a scalar or a 1-D sequence each.

    Points that did not converge are flagged in `.converged` (not raised: one bad corner should not lose the
    grid); their values are NaN.
    """
    if renamed:
        names = {"widths": "width", "temperatures": "temperature"}
        raise TypeError(
            "fc_theory_grid() got unexpected keyword argument(s) "
            + ", ".join(f"{k!r}" + (f" (now {names[k]}=, as in fc_theory)" if k in names else "") for k in renamed)
        )
    depth = check_depth(depth, minimum=1, what="the number of hidden layers")
    variant = resolve_variant(variant, activation)
    Ns = np.asarray(as_array(width, "width", dtype=jnp.float64, ndim=(0, 1))).reshape(-1)
    Ts = np.asarray(as_array(temperature, "temperature", dtype=jnp.float64, ndim=(0, 1))).reshape(-1)
    if np.any(Ns <= 0):
        raise ValueError(f"width must be > 0 (the number of units per hidden layer); got {width!r}")
    if np.any(Ts <= 0):
        raise ValueError(f"temperature must be > 0; got {temperature!r}")
    sw2 = _weight_var(weight_var, priors, depth)
    x, y, x0, y0 = _data(x_train, y_train, x_test, y_test)
    kernel_args = dict(activation=activation, depth=depth, weight_var=sw2, quad_points=quad_points)
    sp, U_PxP = _decompose(nngp_kernel(x, **kernel_args), y, nngp_kernel(x0, x, **kernel_args),
                           nngp_diag(x0, **kernel_args), y0)
    if variant == "vanilla" or (variant == "nested" and depth == 1):  # one layer: nested = vanilla exactly
        Q, loss, bias2, variance, n_minima, converged = _grid(sp, jnp.asarray(Ns), jnp.asarray(Ts), depth, float(tol))
        bad = ~converged
        nan = functools.partial(jnp.where, bad, jnp.nan)
        Q = nan(Q) if variant == "vanilla" else nan(Q)[..., None]
        return TheoryGrid(jnp.asarray(Ns), jnp.asarray(Ts), Q, nan(loss), nan(bias2), nan(variance), n_minima,
                          converged)

    W, n_T = Ns.shape[0], Ts.shape[0]
    order = boustrophedon(W, n_T)
    N_G, T_G = jnp.asarray(np.repeat(Ns, n_T)[order]), jnp.asarray(np.tile(Ts, W)[order])
    van = _vanilla_points(sp, N_G, T_G, depth, float(tol))
    q_van = jnp.where(van.converged[:, None], jnp.log(van.order_params), 0.0)  # Q = 1 where vanilla failed
    net = _Network(get_activation(activation, quad_points), activation, quad_points, sw2)
    if variant == "nested":
        lin = dict(activation="linear", depth=0, weight_var=sw2[0])
        Q, pred, residual, converged = _nested_grid(
            q_van, N_G, T_G, nngp_kernel(x, **lin), nngp_diag(x, **lin), nngp_kernel(x0, x, **lin),
            nngp_diag(x0, **lin), y, y0, sw2[1:], act=net.act, tol=float(tol), max_iter=int(max_iter))
        order_params = Q
    else:
        mu_tilde = U_PxP.T @ _last_mean_activation(x, net, depth)
        Qbar, Q, pred, residual, converged = _noncentral_grid(
            jnp.concatenate([q_van, -q_van], axis=1), N_G, T_G, sp, mu_tilde, _last_mean_activation(x0, net, depth),
            sw2[-1], tol=float(tol),
            max_iter=int(max_iter))
        order_params = NoncentralOrderParams(Qbar, Q)
    inverse = np.argsort(order)

    def unflatten(a, flag_bad=True):
        a = a[inverse].reshape((W, n_T) + a.shape[1:])
        if not flag_bad:
            return a
        bad = ~converged[inverse].reshape(W, n_T)
        return jnp.where(bad.reshape(bad.shape + (1,) * (a.ndim - 2)), jnp.nan, a)

    return TheoryGrid(jnp.asarray(Ns), jnp.asarray(Ts), jax.tree.map(unflatten, order_params),
                      unflatten(pred.test_loss), unflatten(pred.bias2), unflatten(pred.variance),
                      unflatten(van.n_minima, False), unflatten(converged, False), unflatten(residual, False))
