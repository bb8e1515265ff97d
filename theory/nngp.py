"""NNGP kernels of deep fully connected networks in the standard ("ntk", W_std) parameterisation.

The network (all weights and biases i.i.d. standard normal, N_l the width of layer l, N_0 = d):

    h^1     = σ_w0/√N_0 · W^0 x      + σ_b0 · b^0
    h^{l+1} = σ_wl/√N_l · W^l φ(h^l) + σ_bl · b^l          l = 1 .. depth-1
    f       = σ_wL/√N_L · v · φ(h^L) + σ_bL · b^L          L = depth

As all N_l → ∞, f is a Gaussian process with covariance K^depth given by the recursion
(Neal 1996; Lee et al., ICLR 2018, "Deep neural networks as Gaussian processes", eq. 4;
Matthews et al., ICLR 2018):

    K^0(x, x') = σ_w0² x·x'/d + σ_b0²
    K^l(x, x') = σ_wl² F_φ(K^{l-1}(x, x), K^{l-1}(x, x'), K^{l-1}(x', x')) + σ_bl²      l = 1 .. depth

with F_φ(a, c, b) = E[φ(u) φ(v)] for (u, v) ~ N(0, [[a, c], [c, b]]). `depth` = 0 is the linear model.
In the notation of Pacelli et al. (2023) / Baglioni et al. (2026), σ_wl² = 1/λ_l and σ_b = 0.
Derivations and the tests that hold them: docs/nngp_and_renormalization.md, eqs. (R-1)–(R-8), (R-22).

Closed forms of F_φ (`Activation.pair`), each tested against quadrature and Monte Carlo:
  linear  c
  relu    √(ab)/(2π) · [sin θ + (π − θ) cos θ],  cos θ = c/√(ab)      (Cho & Saul 2009, eq. 6, n = 1)
  erf     (2/π) arcsin(2c / √((1 + 2a)(1 + 2b)))                     (Williams 1997, eq. 11)
  gelu    exact GELU z·Φ(z), derived in `_gelu_pair`                  (cf. Tsuchida et al. 2021)
Any other activation (tanh, or any callable) uses 2-D Gauss–Hermite quadrature.

Performance: the P×P work is one fused elementwise chain per block of the output, fed by one
matmul; per-point variances K^l(x, x) are propagated separately in O(P · depth), so no layer's
P×P matrix is ever materialised, and the symmetric case computes only blocks on or above the
diagonal. Memory is the output plus one block.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from deeptheory.theory._checks import (
    all_finite,
    as_array,
    check_depth,
    check_finite,
    data_map,
    fails,
    is_concrete,
    working_dtype,
)

__all__ = [
    "Activation",
    "get_activation",
    "nngp_kernel",
    "nngp_diag",
    "covariance_chain",
    "mean_activation",
    "conv_patch_kernels",
    "ACTIVATIONS",
    "DEFAULT_QUAD_POINTS",
    "DEFAULT_BLOCK_SIZE",
]

# tanh, measured near ρ = 1 (the hard case): relative error ~1e-8 with 96 nodes at pre-activation variances
# ≲ 3, ~5e-6 at variance 4.6 (tanh's poles come closer to the real axis as √variance grows).
DEFAULT_QUAD_POINTS = 96
# NumPy's Gauss–Hermite weights overflow to NaN from ~370 nodes (the weights ∝ 1/He_{n-1}(z_i)² leave float64).
MAX_QUAD_POINTS = 360
DEFAULT_BLOCK_SIZE = 512  # measured best of {256, 512, 1024, 2048, 4096} on CPU: benchmarks/RESULTS.md


class Activation(NamedTuple):
    """A pointwise nonlinearity and its Gaussian expectations.

    Attributes:
      name: for errors and reports.
      fn: φ, applied elementwise.
      pair: F_φ(a, c, b) = E[φ(u)φ(v)], (u, v) ~ N(0, [[a, c], [c, b]]); arrays broadcast together.
      diag: F_φ(q, q, q) = E[φ(u)²], u ~ N(0, q); used on the diagonal so that it is exact.
      closed_form: whether `pair`/`diag` are closed forms (False: Gauss–Hermite quadrature).
      prepare, pair_prepared: the same F_φ split so that per-point factors (√q, 1/√q, ...) are
        computed once per point, O(P), rather than once per P² entry:
        pair(a, c, b) = pair_prepared(prepare(a), c, prepare(b)).
    """

    name: str
    fn: Callable
    pair: Callable
    diag: Callable
    closed_form: bool
    prepare: Callable = lambda q: q
    pair_prepared: Callable | None = None

    def pair_from(self, prepared_a, c, prepared_b):
        if self.pair_prepared is None:
            return self.pair(prepared_a, c, prepared_b)
        return self.pair_prepared(prepared_a, c, prepared_b)


# ---------------------------------------------------------------------------------------------
# Closed forms


@jax.custom_jvp
def _arccos_j1(rho):
    """J_1(ρ) = sin θ + (π − θ) cos θ with cos θ = ρ (Cho & Saul 2009, eq. 6).

    Written as √(1−ρ²) + (π − arccos ρ)ρ. Its derivative is π − arccos ρ, finite on [−1, 1],
    whereas autodiff through arccos and the square root gives ∞·0 = NaN at ρ = ±1 (the diagonal).
    """
    return jnp.sqrt((1.0 - rho) * (1.0 + rho)) + (jnp.pi - jnp.arccos(rho)) * rho


@_arccos_j1.defjvp
def _arccos_j1_jvp(primals, tangents):
    (rho,), (t,) = primals, tangents
    return _arccos_j1(rho), (jnp.pi - jnp.arccos(rho)) * t


def _safe_correlation(a, c, b):
    """(c/√(ab) clipped to [−1, 1], √a·√b); zero where a variance is zero (then φ(0) terms only)."""
    norm = jnp.sqrt(a) * jnp.sqrt(b)
    positive = norm > 0
    rho = jnp.where(positive, c / jnp.where(positive, norm, 1.0), 0.0)
    return jnp.clip(rho, -1.0, 1.0), norm


def _relu_pair(a, c, b):
    rho, norm = _safe_correlation(a, c, b)
    return norm * _arccos_j1(rho) / (2.0 * jnp.pi)


def _relu_diag(q):
    return 0.5 * q


def _erf_pair(a, c, b):
    arg = 2.0 * c / jnp.sqrt((1.0 + 2.0 * a) * (1.0 + 2.0 * b))
    return (2.0 / jnp.pi) * jnp.arcsin(jnp.clip(arg, -1.0, 1.0))


def _erf_prepare(q):
    return 1.0 / jnp.sqrt(1.0 + 2.0 * q)


def _erf_pair_prepared(pa, c, pb):
    return (2.0 / jnp.pi) * jnp.arcsin(jnp.clip(2.0 * c * pa * pb, -1.0, 1.0))


def _erf_diag(q):
    return (2.0 / jnp.pi) * jnp.arcsin(2.0 * q / (1.0 + 2.0 * q))


def _gelu_pair(a, c, b):
    """E[φ(u)φ(v)] for the exact GELU φ(z) = zΦ(z), (u, v) ~ N(0, [[a, c], [c, b]]).

    Derivation. Φ(u) = P(ζ ≤ u) with ζ ~ N(0, 1) independent, so φ(u)φ(v) = E_ζ[u v 1{s ≥ 0} 1{t ≥ 0}]
    with s = u − ζ_1, t = v − ζ_2. (u, v, s, t) is jointly Gaussian: Var s = 1 + a, Var t = 1 + b,
    Cov(s, t) = c, Cov(u, (s, t)) = (a, c), Cov(v, (s, t)) = (c, b). Conditioning on w = (s, t):
        E[u v 1{w ≥ 0}] = αᵀ E[w wᵀ 1{w ≥ 0}] β + (c − (a, c)·β) P(w ≥ 0),
    α = S⁻¹(a, c), β = S⁻¹(c, b), S = Cov(w). For w standardised with correlation r (Sheppard):
        P = 1/4 + arcsin(r)/(2π),  E[x² 1] = P + r√(1−r²)/(2π),  E[x y 1] = rP + √(1−r²)/(2π).
    det S = (1 + a)(1 + b) − c² ≥ 1 + a + b > 0, so the formula has no singular point.
    """
    sa, sb = 1.0 + a, 1.0 + b
    det = sa * sb - c * c
    alpha_s, alpha_t = (sb * a - c * c) / det, c / det
    beta_s, beta_t = c / det, (sa * b - c * c) / det
    conditional_cov = c - (a * beta_s + c * beta_t)
    scale = jnp.sqrt(sa) * jnp.sqrt(sb)
    r = jnp.clip(c / scale, -1.0, 1.0)
    root = jnp.sqrt((1.0 - r) * (1.0 + r))
    orthant = 0.25 + jnp.arcsin(r) / (2.0 * jnp.pi)
    m2 = orthant + r * root / (2.0 * jnp.pi)
    m11 = r * orthant + root / (2.0 * jnp.pi)
    quadratic = (
        alpha_s * beta_s * sa * m2
        + (alpha_s * beta_t + alpha_t * beta_s) * scale * m11
        + alpha_t * beta_t * sb * m2
    )
    return quadratic + conditional_cov * orthant


def _gelu_diag(q):
    return _gelu_pair(q, q, q)


def _linear_pair(a, c, b):
    del a, b
    return c


def _linear_diag(q):
    return q


def _exact_gelu(z):
    return jax.nn.gelu(z, approximate=False)


# ---------------------------------------------------------------------------------------------
# Gauss–Hermite quadrature for any activation


def _hermite_rule(n: int):
    """Nodes and weights of ∫ g(z) N(z; 0, 1) dz ≈ Σ w_i g(z_i) (probabilists' Hermite)."""
    z, w = np.polynomial.hermite_e.hermegauss(n)
    return z, w / math.sqrt(2.0 * math.pi)


def _quadrature_pair(fn: Callable, n: int) -> Callable:
    """F_φ(a, c, b) by 2-D Gauss–Hermite with n² nodes.

    u = √a z_1, v = √b (ρ z_1 + √(1 − ρ²) z_2). Exact for polynomial φ of degree < n; spectrally
    accurate for smooth φ; O(n^{-3/2})-ish for kinks such as ReLU (use the closed form there).
    Memory: the broadcast shape times n (the outer node is a scan).
    """
    z_np, w_np = _hermite_rule(n)

    def pair(a, c, b):
        a, c, b = jnp.broadcast_arrays(a, c, b)
        z, w = jnp.asarray(z_np, c.dtype), jnp.asarray(w_np, c.dtype)
        rho, _ = _safe_correlation(a, c, b)
        sqrt_a, sqrt_b = jnp.sqrt(a), jnp.sqrt(b)
        rho_c = jnp.sqrt((1.0 - rho) * (1.0 + rho))
        z_row = z.reshape((1,) * c.ndim + (-1,))  # explicit ranks: rank promotion may be set to raise

        def outer(acc, node):
            zi, wi = node
            v = sqrt_b[..., None] * (rho[..., None] * zi + rho_c[..., None] * z_row)
            return acc + wi * fn(sqrt_a * zi) * (fn(v) @ w), None

        total, _ = lax.scan(outer, jnp.zeros_like(c), (z, w))
        return total

    return pair


def _quadrature_diag(fn: Callable, n: int) -> Callable:
    z_np, w_np = _hermite_rule(n)

    def diag(q):
        z, w = jnp.asarray(z_np, q.dtype), jnp.asarray(w_np, q.dtype)
        return fn(jnp.sqrt(q)[..., None] * z.reshape((1,) * q.ndim + (-1,))) ** 2 @ w

    return diag


_CLOSED_FORMS = {
    "linear": (lambda z: z, _linear_pair, _linear_diag),
    # ReLU stays on the plain form: with (√q, 1/√q) hoisted, XLA CPU ran the chain 4× slower (measured).
    "relu": (jax.nn.relu, _relu_pair, _relu_diag),
    "erf": (jax.scipy.special.erf, _erf_pair, _erf_diag, _erf_prepare, _erf_pair_prepared),
    "gelu": (_exact_gelu, _gelu_pair, _gelu_diag),
}
_QUADRATURE_ONLY = {"tanh": jnp.tanh}
ACTIVATIONS = tuple(_CLOSED_FORMS) + tuple(_QUADRATURE_ONLY)


@functools.lru_cache(maxsize=256)
def get_activation(activation: str | Callable, quad_points: int | None = None) -> Activation:
    """Resolve an activation name or callable to an `Activation`.

    Args:
      activation: one of `ACTIVATIONS` ("gelu" is the exact zΦ(z), not the tanh approximation),
        or any jnp-traceable callable φ (then Gauss–Hermite quadrature).
      quad_points: if given, force quadrature with this many nodes per dimension even where a
        closed form exists (to cross-check it); if None, closed form when known, else
        `DEFAULT_QUAD_POINTS` nodes.

    Cached, so that a given activation maps to the same (hashable) object and jit does not
    recompile; pass a module-level function rather than a fresh lambda for the same reason.
    """
    if quad_points is not None and (isinstance(quad_points, bool) or not isinstance(quad_points, int | np.integer)
                                    or not 2 <= quad_points <= MAX_QUAD_POINTS):
        raise ValueError(
            f"quad_points must be an integer in [2, {MAX_QUAD_POINTS}] (Gauss–Hermite nodes per dimension; the "
            f"weights are not representable beyond {MAX_QUAD_POINTS}), or None; got {quad_points!r}"
        )
    if callable(activation):
        name, fn, closed = getattr(activation, "__name__", repr(activation)), activation, None
    elif isinstance(activation, str) and activation.lower() in _CLOSED_FORMS:
        name = activation.lower()
        fn, *closed = _CLOSED_FORMS[name]
    elif isinstance(activation, str) and activation.lower() in _QUADRATURE_ONLY:
        name, fn, closed = activation.lower(), _QUADRATURE_ONLY[activation.lower()], None
    else:
        raise ValueError(
            f"unknown activation {activation!r}; use one of {', '.join(ACTIVATIONS)} "
            "or pass a jnp-traceable callable (its kernel is then computed by Gauss-Hermite quadrature)"
        )
    if closed is not None and quad_points is None:
        return Activation(name, fn, closed[0], closed[1], True, *closed[2:])
    n = quad_points or DEFAULT_QUAD_POINTS
    return Activation(name, fn, _quadrature_pair(fn, n), _quadrature_diag(fn, n), False)


# ---------------------------------------------------------------------------------------------
# Input checks (run on concrete values; skipped under tracing)


def _as_points(x, name: str):
    """(P, d) points, d >= 1 (P = 0 is allowed: the kernel is then empty), numeric, finite."""
    x = as_array(x, name, ndim=2, what="a (P, d) array of P points in d dimensions", allow_empty=True)
    if x.shape[1] == 0:
        raise ValueError(f"{name} has zero features (shape {x.shape}); the kernel needs d >= 1")
    return x


def _layer_values(value, depth: int, name: str, dtype):
    """A scalar or one value per layer (input layer first) → array of shape (depth + 1,)."""
    arr = jnp.asarray(value) if is_concrete(value) else value
    if arr.ndim == 0:
        arr = jnp.broadcast_to(arr, (depth + 1,))
    elif arr.shape != (depth + 1,):
        raise ValueError(
            f"{name} must be a scalar or have one value per layer, input layer first: length depth + 1 = "
            f"{depth + 1}; got shape {arr.shape}"
        )
    if is_concrete(arr):
        values = np.asarray(arr, dtype=np.float64)
        if not np.all(np.isfinite(values)) or np.any(values < 0):
            raise ValueError(f"{name} must be finite and >= 0 (it is a variance); got {values.tolist()}")
    return arr.astype(dtype)


def _check_depth(depth) -> int:
    return check_depth(depth, minimum=0, what="the number of hidden layers")


def _finite_result(K):
    """Finite inputs can still overflow (|x|² ~ 1e60 in float32, or variances growing through many layers): say so."""
    if not all_finite(K):
        raise ValueError(
            f"the kernel overflowed {K.dtype} (inputs or variances too large for it, e.g. |x|² beyond "
            f"{float(jnp.finfo(K.dtype).max):.1e}): pass float64 inputs, or rescale x or weight_var"
        )
    return K


# ---------------------------------------------------------------------------------------------
# The recursion


def _input_variances(x_PxD, sw2, sb2):
    return sw2[0] * jnp.sum(x_PxD * x_PxD, axis=-1) / x_PxD.shape[-1] + sb2[0]


def _diag_layers(x_PxD, sw2, sb2, act: Activation, depth: int):
    """K^l(x, x) for l = 0..depth: array (depth + 1, P). O(P · depth)."""
    q = _input_variances(x_PxD, sw2, sb2)
    layers = [q]
    for l in range(1, depth + 1):
        q = sw2[l] * act.diag(q) + sb2[l]
        layers.append(q)
    return jnp.stack(layers)


def _pair_chain(x_AxD, x_BxD, q_LxA, q_LxB, sw2, sb2, act: Activation, depth: int):
    """K^depth on an (A, B) block: one matmul, then an elementwise chain XLA fuses into one loop."""
    c = sw2[0] * (x_AxD @ x_BxD.T) / x_AxD.shape[-1] + sb2[0]
    for l in range(1, depth + 1):
        p_a = jax.tree.map(lambda t: t[:, None], act.prepare(q_LxA[l - 1]))
        p_b = jax.tree.map(lambda t: t[None, :], act.prepare(q_LxB[l - 1]))
        c = sw2[l] * act.pair_from(p_a, c, p_b) + sb2[l]
    return c


def _blocks(n: int, block: int) -> list[tuple[int, int]]:
    """(start, size) of blocks covering [0, n): full blocks, then one smaller remainder block."""
    return [(s, min(block, n - s)) for s in range(0, n, block)]


def _fill_blocks(out, jobs, compute_and_write):
    """Run `compute_and_write(out, s_a, s_b, shape)` over block pairs, one `fori_loop` per block
    shape (full × full, full × remainder, ...), so shapes stay static and the HLO stays small."""
    by_shape: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for (s_a, n_a), (s_b, n_b) in jobs:
        by_shape.setdefault((n_a, n_b), []).append((s_a, s_b))
    for shape, starts in by_shape.items():
        starts_Kx2 = jnp.asarray(starts)

        def body(k, out, starts_Kx2=starts_Kx2, shape=shape):
            return compute_and_write(out, starts_Kx2[k, 0], starts_Kx2[k, 1], shape)

        out = lax.fori_loop(0, len(starts), body, out)
    return out


@functools.partial(jax.jit, static_argnames=("act", "depth", "block"))
def _symmetric_kernel(x_PxD, sw2, sb2, *, act: Activation, depth: int, block: int):
    P = x_PxD.shape[0]
    q_LxP = _diag_layers(x_PxD, sw2, sb2, act, depth)
    blocks = _blocks(P, block)

    def write(out, s_a, s_b, shape):
        n_a, n_b = shape
        c = _pair_chain(
            lax.dynamic_slice_in_dim(x_PxD, s_a, n_a),
            lax.dynamic_slice_in_dim(x_PxD, s_b, n_b),
            lax.dynamic_slice_in_dim(q_LxP, s_a, n_a, 1),
            lax.dynamic_slice_in_dim(q_LxP, s_b, n_b, 1),
            sw2,
            sb2,
            act,
            depth,
        )
        on_diagonal = jnp.arange(n_a)[:, None] + s_a == jnp.arange(n_b)[None, :] + s_b
        # The diagonal K(x, x) comes from the O(P) recursion, so it is exact and bitwise reproducible.
        c = jnp.where(on_diagonal, lax.dynamic_slice_in_dim(q_LxP[depth], s_a, n_a)[:, None], c)
        if n_a == n_b:  # a diagonal block (s_a == s_b) is symmetrised; for the others this is a no-op
            c = jnp.where(s_a == s_b, 0.5 * (c + c.T), c)
        out = lax.dynamic_update_slice(out, c, (s_a, s_b))
        return lax.dynamic_update_slice(out, c.T, (s_b, s_a))

    # Blocks on and above the diagonal only; each is written with its transpose, and blocks do not
    # overlap, so the result is exactly symmetric.
    jobs = [(a, b) for i, a in enumerate(blocks) for b in blocks[i:]]
    return _fill_blocks(jnp.zeros((P, P), x_PxD.dtype), jobs, write)


@functools.partial(jax.jit, static_argnames=("act", "depth", "block"))
def _cross_kernel(x1_AxD, x2_BxD, sw2, sb2, *, act: Activation, depth: int, block: int):
    q1, q2 = _diag_layers(x1_AxD, sw2, sb2, act, depth), _diag_layers(x2_BxD, sw2, sb2, act, depth)

    def write(out, s_a, s_b, shape):
        n_a, n_b = shape
        c = _pair_chain(
            lax.dynamic_slice_in_dim(x1_AxD, s_a, n_a),
            lax.dynamic_slice_in_dim(x2_BxD, s_b, n_b),
            lax.dynamic_slice_in_dim(q1, s_a, n_a, 1),
            lax.dynamic_slice_in_dim(q2, s_b, n_b, 1),
            sw2,
            sb2,
            act,
            depth,
        )
        return lax.dynamic_update_slice(out, c, (s_a, s_b))

    jobs = [(a, b) for a in _blocks(x1_AxD.shape[0], block) for b in _blocks(x2_BxD.shape[0], block)]
    return _fill_blocks(jnp.zeros((x1_AxD.shape[0], x2_BxD.shape[0]), x1_AxD.dtype), jobs, write)


@data_map
def nngp_kernel(
    x1,
    x2=None,
    *,
    activation: str | Callable,
    depth: int,
    weight_var: float | Sequence[float] = 1.0,
    bias_var: float | Sequence[float] = 0.0,
    block_size: int | None = None,
    quad_points: int | None = None,
):
    """Covariance Cov[f(x1_i), f(x2_j)] of the readout of an infinitely wide MLP (module docstring).

    Lee et al., ICLR 2018, eq. 4 in the standard parameterisation; σ_w² = 1/λ in Pacelli et al.
    (2023); docs/nngp_and_renormalization.md, eqs. (R-1)–(R-7).

    Args:
      x1: (P1, d) inputs.
      x2: (P2, d) inputs, or None for x1 against itself (then the result is exactly symmetric, its
        diagonal comes from the O(P) variance recursion, and only blocks on or above the
        diagonal are computed).
      activation: "linear", "relu", "erf", "gelu" (exact zΦ(z)), "tanh", or a jnp callable.
      depth: number of hidden layers L >= 0 (0: the linear readout of the inputs).
      weight_var: σ_w², a scalar or one value per layer (length depth + 1, input layer first, the
        readout last). Per-layer values may be traced, e.g. σ_wl² = Q_l/λ_l for the "nested" kernel
        renormalisation.
      bias_var: σ_b², same shapes as `weight_var`.
      block_size: side of the output blocks computed at once (memory: output + a few blocks);
        None: `DEFAULT_BLOCK_SIZE`.
      quad_points: force Gauss–Hermite quadrature with this many nodes per dimension (see
        `get_activation`).

    Returns:
      (P1, P2) array in the inputs' floating dtype (float64 inputs give float64 even if the global
      x64 flag is off; integer inputs give the default float dtype).

    Raises:
      ValueError: on a bad shape, a negative or non-finite variance, depth < 0, or an unknown activation.
    """
    depth = _check_depth(depth)
    act = get_activation(activation, quad_points)
    x1 = _as_points(x1, "x1")
    block = DEFAULT_BLOCK_SIZE if block_size is None else block_size
    if isinstance(block, bool) or not isinstance(block, int | np.integer) or block < 1:
        raise ValueError(f"block_size must be a positive integer or None; got {block_size!r}")
    if x2 is not None:
        x2 = _as_points(x2, "x2")
        if x2.shape[1] != x1.shape[1]:
            raise ValueError(
                f"x1 and x2 must have the same number of features; got x1 {x1.shape} and x2 {x2.shape}"
            )
    dtype = working_dtype(x1, x2)
    sw2 = _layer_values(weight_var, depth, "weight_var", dtype)
    sb2 = _layer_values(bias_var, depth, "bias_var", dtype)
    x1 = x1.astype(dtype)
    if x2 is None:
        if x1.shape[0] == 0:
            return jnp.zeros((0, 0), dtype)
        return _finite_result(_symmetric_kernel(x1, sw2, sb2, act=act, depth=depth, block=int(block)))
    x2 = x2.astype(dtype)
    if x1.shape[0] == 0 or x2.shape[0] == 0:
        return jnp.zeros((x1.shape[0], x2.shape[0]), dtype)
    return _finite_result(_cross_kernel(x1, x2, sw2, sb2, act=act, depth=depth, block=int(block)))


@data_map
def nngp_diag(
    x,
    *,
    activation: str | Callable,
    depth: int,
    weight_var: float | Sequence[float] = 1.0,
    bias_var: float | Sequence[float] = 0.0,
    quad_points: int | None = None,
):
    """Var[f(x_i)] = K^depth(x_i, x_i) for each row of x, in O(P · depth), without any P×P array.

    Same recursion and arguments as `nngp_kernel` (Lee et al. 2018, eq. 4, on the diagonal);
    equal to `jnp.diag(nngp_kernel(x, ...))` up to rounding. Returns shape (P,).
    """
    depth = _check_depth(depth)
    act = get_activation(activation, quad_points)
    x = _as_points(x, "x")
    dtype = working_dtype(x)
    sw2 = _layer_values(weight_var, depth, "weight_var", dtype)
    sb2 = _layer_values(bias_var, depth, "bias_var", dtype)
    return _finite_result(_diag_layers(x.astype(dtype), sw2, sb2, act, depth)[depth])


@data_map
def covariance_chain(K0_AxB, k0_A, k0_B, *, activation: str | Callable | Activation, layer_weight_var, layer_bias_var=0.0,
                     quad_points: int | None = None):
    """Layers 1..L of the NNGP recursion applied to a given layer-0 covariance (all arrays, any shapes).

    K^l = σ_wl² F_φ(K^{l-1}(x, x), K^{l-1}(x, x'), K^{l-1}(x', x')) + σ_bl²,  l = 1..L
    (Lee et al. 2018, eq. 4; docs/nngp_and_renormalization.md, eq. (R-2)). Used where the layer-0 covariance is not
    x·x'/d: patch covariances of convolutional networks (Aiudi et al. 2025) and the kernels whose
    per-layer variances carry order parameters (the "nested" renormalisation, σ_wl² = Q_l/λ_l).

    Args:
      K0_AxB: layer-0 covariances K^0(x_a, x_b), any shape broadcasting with k0_A[..., :, None] and
        k0_B[..., None, :] (e.g. (P1, P2), or (n, n, P1, P2) for patch pairs).
      k0_A, k0_B: layer-0 variances K^0(x_a, x_a), K^0(x_b, x_b); shapes (..., P1) and (..., P2).
      activation: name, callable, or an `Activation`.
      layer_weight_var: σ_wl² for l = 1..L, shape (L,), may be traced (L = 0 returns the inputs).
      layer_bias_var: σ_bl², a scalar or shape (L,).
      quad_points: see `get_activation`.

    Returns:
      (K^L_AxB, k^L_A, k^L_B): the layer-L covariances and variances; the variances come from the
      exact diagonal map F_φ(q, q, q), so the diagonal of a square K^L equals k^L when K^0's does.
    """
    act = activation if isinstance(activation, Activation) else get_activation(activation, quad_points)
    K0_AxB = as_array(K0_AxB, "K0_AxB", allow_empty=True)
    k0_A = as_array(k0_A, "k0_A", allow_empty=True)
    k0_B = as_array(k0_B, "k0_B", allow_empty=True)
    if k0_A.ndim < 1 or k0_B.ndim < 1:
        raise ValueError(f"k0_A and k0_B must be variances of shape (..., P1) and (..., P2); got {k0_A.shape}, {k0_B.shape}")
    try:
        jnp.broadcast_shapes(K0_AxB.shape, k0_A.shape + (1,), k0_B.shape[:-1] + (1, k0_B.shape[-1]))
    except ValueError as err:
        raise ValueError(
            f"K0_AxB {K0_AxB.shape} does not broadcast with k0_A[..., :, None] {k0_A.shape + (1,)} and "
            f"k0_B[..., None, :] {k0_B.shape[:-1] + (1, k0_B.shape[-1])}"
        ) from err
    dtype = working_dtype(K0_AxB, k0_A, k0_B)
    sw2 = jnp.atleast_1d(jnp.asarray(layer_weight_var)).astype(dtype)
    if sw2.ndim != 1:
        raise ValueError(f"layer_weight_var must be a scalar or a vector (one per layer); got shape {sw2.shape}")
    check_finite("layer_weight_var", sw2)
    sb2 = jnp.broadcast_to(jnp.asarray(layer_bias_var, dtype), sw2.shape)
    check_finite("layer_bias_var", sb2)
    K, a, b = K0_AxB.astype(dtype), k0_A.astype(dtype), k0_B.astype(dtype)
    for l in range(sw2.shape[0]):
        K = sw2[l] * act.pair(a[..., :, None], K, b[..., None, :]) + sb2[l]
        a = sw2[l] * act.diag(a) + sb2[l]
        b = sw2[l] * act.diag(b) + sb2[l]
    return _finite_result(K), _finite_result(a), _finite_result(b)


_ODD = ("linear", "erf", "tanh")


@data_map
def mean_activation(activation: str | Callable, q, quad_points: int | None = None):
    """μ(q) = E[φ(u)], u ~ N(0, q): the prior mean activation (non-central Wishart ansatz;
    docs/nngp_and_renormalization.md, eqs. (R-8) and (R-21)).

    Closed forms: 0 for odd φ (linear, erf, tanh); ReLU √(q/2π); exact GELU q/√(2π(1 + q)) (Stein's
    lemma: E[uΦ(u)] = q E[Φ'(u)] = q/√(2π(1 + q))). Any other callable: 1-D Gauss–Hermite.
    """
    q = as_array(q, "q", allow_empty=True)
    if fails(lambda q: q >= 0, q):
        raise ValueError("q (a pre-activation variance) must be >= 0")
    q = q.astype(working_dtype(q))
    if isinstance(activation, str) and quad_points is None:
        name = activation.lower()
        if name in _ODD:
            return jnp.zeros_like(q)
        if name == "relu":
            return jnp.sqrt(q / (2.0 * jnp.pi))
        if name == "gelu":
            return q / jnp.sqrt(2.0 * jnp.pi * (1.0 + q))
    fn = get_activation(activation, quad_points).fn
    z, w = _hermite_rule(quad_points or DEFAULT_QUAD_POINTS)
    z, w = jnp.asarray(z, q.dtype), jnp.asarray(w, q.dtype)
    return jnp.sum(w * fn(jnp.sqrt(q)[..., None] * z), axis=-1)


def _as_images(x, name: str):
    x = as_array(x, name, ndim=(3, 4), what="images of shape (P, H, W) or (P, H, W, channels)")
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ValueError(f"{name} must be images of shape (P, H, W) or (P, H, W, channels); got shape {x.shape}")
    return x


def _pool_pairs(C_YXYXpq, M: int):
    """Σ over aligned offsets p of a patch: C'[A, B] = Σ_p C[A_p, B_p] on (h, w, h, w, ...) position grids."""
    h, w = C_YXYXpq.shape[0], C_YXYXpq.shape[1]
    r = C_YXYXpq.reshape(h // M, M, w // M, M, h // M, M, w // M, M, *C_YXYXpq.shape[4:])
    return jnp.einsum("YaXbZaWb...->YXZW...", r)


@data_map
def conv_patch_kernels(x1, x2=None, *, activation: str | Callable, patches: Sequence[int], weight_var,
                       quad_points: int | None = None):
    """Kernels K^{ij}(x, x') between final-layer positions i, j of a stack of non-overlapping patch convolutions.

    Network (Aiudi et al., Nat. Commun. 2025, one layer; stacked: the 2026 paper's hierarchical version;
    docs/nngp_and_renormalization.md, eq. (R-22)): layer 1 applies N_c filters of size M_1×M_1 (× input channels) with stride
    M_1; layer l > 1 applies filters of size M_l×M_l (× N_c channels) with stride M_l to φ of the previous
    layer. With weight variances σ_l² = 1/λ_l, the pre-activation covariances are

        C_1^{ab}(x, x') = σ_0² x^(a)·x'^(b) / (M_1² c_in)
        C_{l+1}^{AB}    = σ_l² / M_{l+1}² · Σ_p F_φ(C_l^{A_p A_p}, C_l^{A_p B_p}, C_l^{B_p B_p})   (aligned offsets p)

    and K^{ij} = F_φ(C_L^{ii}, C_L^{ij}, C_L^{jj}) (without the readout variance: the readout decides how
    positions are combined — locally, pooled, or renormalized by a matrix Q).

    Args:
      x1, x2: (P, H, W) or (P, H, W, c_in) images; x2 None for x1 against itself.
      activation: as in `nngp_kernel`.
      patches: (M_1, …, M_L), the patch side of each convolutional layer; H and W must be divisible by
        their product.
      weight_var: (σ_0², …, σ_{L-1}²), one per convolutional layer (scalar: the same for all).

    Returns:
      (K_nxnxP1xP2, k1_nxP1, k2_nxP2): kernels between the n = H W / (Π M_l)² final positions (row-major)
      and the variances K^{ii}(x, x). Memory: n² P1 P2 numbers at the last layer (n_1² P1 P2 at the first).
    """
    act = get_activation(activation, quad_points)
    x1 = _as_images(x1, "x1")
    x2 = x1 if x2 is None else _as_images(x2, "x2")
    dtype = working_dtype(x1, x2)
    x1, x2 = x1.astype(dtype), x2.astype(dtype)
    if x1.shape[1:] != x2.shape[1:]:
        raise ValueError(f"x1 and x2 must have the same image shape; got {x1.shape[1:]} and {x2.shape[1:]}")
    patches = tuple(int(m) for m in patches)
    if not patches or any(m < 1 for m in patches):
        raise ValueError(f"patches must be a non-empty list of patch sides >= 1; got {patches!r}")
    _, H, W, c_in = x1.shape
    side = math.prod(patches)
    if H % side or W % side:
        raise ValueError(f"image size {H}x{W} is not divisible by the product of the patch sides {patches} = {side}")
    sw2 = jnp.broadcast_to(jnp.asarray(weight_var, x1.dtype), (len(patches),))
    check_finite("weight_var", sw2)
    if fails(lambda v: v >= 0, sw2):
        raise ValueError(f"weight_var must be >= 0 (a variance); got {weight_var!r}")

    def patchify(x):  # (P, H, W, c) → (h, w, P, M² c)
        M = patches[0]
        r = x.reshape(x.shape[0], H // M, M, W // M, M, c_in)
        return r.transpose(1, 3, 0, 2, 4, 5).reshape(H // M, W // M, x.shape[0], M * M * c_in)

    p1, p2 = patchify(x1), patchify(x2)
    norm = sw2[0] / (patches[0] ** 2 * c_in)
    C = jnp.einsum("ywpd,zvqd->ywzvpq", p1, p2) * norm
    v1, v2 = jnp.sum(p1 * p1, -1) * norm, jnp.sum(p2 * p2, -1) * norm
    for l, M in enumerate(patches[1:], start=1):
        K = act.pair(v1[:, :, None, None, :, None], C, v2[None, None, :, :, None, :])
        C = _pool_pairs(K, M) * sw2[l] / M**2
        h, w = v1.shape[0] // M, v1.shape[1] // M
        v1 = act.diag(v1).reshape(h, M, w, M, -1).sum((1, 3)) * sw2[l] / M**2
        v2 = act.diag(v2).reshape(h, M, w, M, -1).sum((1, 3)) * sw2[l] / M**2
    K = act.pair(v1[:, :, None, None, :, None], C, v2[None, None, :, :, None, :])
    n = v1.shape[0] * v1.shape[1]
    return tuple(_finite_result(a) for a in (K.reshape(n, n, K.shape[-2], K.shape[-1]), act.diag(v1).reshape(n, -1),
                                              act.diag(v2).reshape(n, -1)))
