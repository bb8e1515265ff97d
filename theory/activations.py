"""Activations φ and their Gaussian expectations: the registry, the closed forms, Gauss–Hermite quadrature.

Subject: F_φ(a, c, b) = E[φ(u) φ(v)] for (u, v) ~ N(0, [[a, c], [c, b]]) (`Activation.pair`), its diagonal
E[φ(u)²] (`.diag`), and the mean activation μ(q) = E[φ(u)], u ~ N(0, q) (`mean_activation`). These are the only
places where φ enters the infinite-width theory (docs/nngp_and_renormalization.md, eqs. (R-2), (R-5)–(R-8), (R-21)).

Closed forms of F_φ, each tested against quadrature and Monte Carlo (tests/test_nngp.py):
  linear  c
  relu    √(ab)/(2π) · [sin θ + (π − θ) cos θ],  cos θ = c/√(ab)      (Cho & Saul 2009, eq. 6, n = 1)
  erf     (2/π) arcsin(2c / √((1 + 2a)(1 + 2b)))                     (Williams 1997, eq. 11)
  gelu    exact GELU z·Φ(z), derived in `_gelu_pair`                  (cf. Tsuchida et al. 2021)
Any other activation (tanh, or any callable) uses 2-D Gauss–Hermite quadrature (`get_activation`).

Neighbours: `theory.nngp` (the fully connected recursion that applies F_φ layer by layer), `theory.conv_kernels`
(the same for patch convolutions), `theory.renormalization` (the non-central ansatz needs μ), `models.mlp` and
`models.cnn` (the finite networks take φ from `get_activation(...).fn`, so network and kernel share one φ).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from deeptheory.theory._checks import as_array, data_map, fails, working_dtype

__all__ = [
    "Activation",
    "get_activation",
    "mean_activation",
    "ACTIVATIONS",
    "ODD_ACTIVATIONS",
    "DEFAULT_QUAD_POINTS",
    "MAX_QUAD_POINTS",
]

# tanh, measured near ρ = 1 (the hard case): relative error ~1e-8 with 96 nodes at pre-activation variances
# ≲ 3, ~5e-6 at variance 4.6 (tanh's poles come closer to the real axis as √variance grows).
DEFAULT_QUAD_POINTS = 96
# NumPy's Gauss–Hermite weights overflow to NaN from ~370 nodes (the weights ∝ 1/He_{n-1}(z_i)² leave float64).
MAX_QUAD_POINTS = 360


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

# arcsin and arccos in float32 by Cephes' polynomial (S. L. Moshier, Cephes Math Library, asinf.c): on XLA CPU the
# built-in ones go through atan2 and were 60 % of the ReLU NNGP chain (P = 2048, depth 10: 1.37 s → 0.58 s with
# these). Largest error on 4·10⁶ float32 points of [−1, 1] against float64 (absolute, relative): arcsin 1.7e-7,
# 2.7e-7; arccos 3.0e-7, 1.4e-7 — XLA's own: 1.8e-7, 1.7e-7 and 2.7e-7, 1.8e-7 (measured once; tests/test_nngp.py
# holds every value to 3 ulps and the largest errors to 2× XLA's). Other dtypes use jnp.arcsin / jnp.arccos
# unchanged: float64 theory is not touched.
_ASIN_F32 = (4.2163199048e-2, 2.4181311049e-2, 4.5470025998e-2, 7.4953002686e-2, 1.6666752422e-1)


def _asin_half(z):
    """asin z for 0 ≤ z ≤ 1/2: z + z³ P(z²)."""
    z2 = z * z
    p = _ASIN_F32[0]
    for coefficient in _ASIN_F32[1:]:
        p = p * z2 + coefficient
    return z + z * z2 * p


def _reduced(x):
    """(|x| > 1/2, asin z) with z = √((1 − |x|)/2) above 1/2 and z = x below (signed: the polynomial is odd, and its
    derivative at 0 stays 1, which one through |x| would not)."""
    big = jnp.abs(x) > 0.5
    return big, _asin_half(jnp.where(big, jnp.sqrt(0.5 * (1.0 - jnp.abs(x))), x))


def _arcsin(x):
    """arcsin x; float32 by Cephes' reduction (asin |x| = π/2 − 2 asin √((1 − |x|)/2) above 1/2)."""
    x = jnp.asarray(x)
    if x.dtype != jnp.float32:
        return jnp.arcsin(x)
    return _arcsin_f32(x)


@jax.custom_jvp
def _arcsin_f32(x):
    big, s = _reduced(x)
    return jnp.where(big, jnp.where(x < 0, -1.0, 1.0) * (0.5 * jnp.pi - 2.0 * s), s)


@_arcsin_f32.defjvp
def _arcsin_f32_jvp(primals, tangents):
    # d asin x = dx/√(1 − x²), as jnp.arcsin's rule: differentiating the reduction instead would carry both branches'
    # sqrt and polynomial derivatives through every select
    (x,), (t,) = primals, tangents
    return _arcsin_f32(x), t * lax.rsqrt((1.0 - x) * (1.0 + x))


def _arccos(x):
    """arccos x; float32 by Cephes' reduction (acos |x| = 2 asin √((1 − |x|)/2) above 1/2, exact near |x| = 1)."""
    x = jnp.asarray(x)
    if x.dtype != jnp.float32:
        return jnp.arccos(x)
    big, s = _reduced(x)
    return jnp.where(big, jnp.where(x < 0, jnp.pi - 2.0 * s, 2.0 * s), 0.5 * jnp.pi - s)


@jax.custom_jvp
def _arccos_j1(rho):
    """J_1(ρ) = sin θ + (π − θ) cos θ with cos θ = ρ (Cho & Saul 2009, eq. 6).

    Written as √(1−ρ²) + (π − arccos ρ)ρ. Its derivative is π − arccos ρ, finite on [−1, 1],
    whereas autodiff through arccos and the square root gives ∞·0 = NaN at ρ = ±1 (the diagonal).
    """
    return jnp.sqrt((1.0 - rho) * (1.0 + rho)) + (jnp.pi - _arccos(rho)) * rho


@_arccos_j1.defjvp
def _arccos_j1_jvp(primals, tangents):
    (rho,), (t,) = primals, tangents
    return _arccos_j1(rho), (jnp.pi - _arccos(rho)) * t


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
    return (2.0 / jnp.pi) * _arcsin(jnp.clip(arg, -1.0, 1.0))


def _erf_prepare(q):
    return 1.0 / jnp.sqrt(1.0 + 2.0 * q)


def _erf_pair_prepared(pa, c, pb):
    return (2.0 / jnp.pi) * _arcsin(jnp.clip(2.0 * c * pa * pb, -1.0, 1.0))


def _erf_diag(q):
    return (2.0 / jnp.pi) * _arcsin(2.0 * q / (1.0 + 2.0 * q))


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
    orthant = 0.25 + _arcsin(r) / (2.0 * jnp.pi)
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


# The activations with φ(−z) = −φ(z): their mean activation vanishes, and the "nested" renormalization is the
# recommended variant for them (`theory.renormalization.recommended_variant`).
ODD_ACTIVATIONS = ("linear", "erf", "tanh")


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
        if name in ODD_ACTIVATIONS:
            return jnp.zeros_like(q)
        if name == "relu":
            return jnp.sqrt(q / (2.0 * jnp.pi))
        if name == "gelu":
            return q / jnp.sqrt(2.0 * jnp.pi * (1.0 + q))
    fn = get_activation(activation, quad_points).fn
    z, w = _hermite_rule(quad_points or DEFAULT_QUAD_POINTS)
    z, w = jnp.asarray(z, q.dtype), jnp.asarray(w, q.dtype)
    return fn(jnp.sqrt(q)[..., None] * z.reshape((1,) * q.ndim + (-1,))) @ w  # explicit ranks (promotion may raise)

