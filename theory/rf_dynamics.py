"""The learning curve of a random-feature readout predicted without drawing features: a deterministic equivalent of
Σ_N's spectral measure weighted by the target, and the training dynamics integrated against it.

Sources: the deterministic equivalent of a sample covariance (Silverstein & Bai 1995; Couillet & Liao,
"Random Matrix Methods for Machine Learning", 2022, Thm. 2.6) in the effective-ridge form of Atanasov,
Zavatone-Veth & Pehlevan 2024 (arXiv 2405.00592, §6, eqs. 6.5–6.9), the support parametrisation of Silverstein &
Choi (J. Multivariate Anal. 1995); the same contour/Stieltjes-inversion idea for SGD curves: Paquette, Paquette,
Xiao & Pennington 2024 ("4+3 phases of compute-optimal neural scaling laws", §3). Derivation, conventions and the
tests that hold it: docs/random_features.md, §6b, eqs. (RF-20)–(RF-24).

Setting (as `theory.random_features`): inputs with covariance Λ = diag(λ_k), k ≤ D, task power v_k² = λ_k w̄_k²,
features z = Fx with F ∈ R^{N×D} i.i.d. N(0, 1/N). A readout trained on the population loss has Hessian
Σ_N = FΛFᵀ and linear term b = FΛw̄ (eq. RF-10); in Σ_N's eigenbasis (μ_j, u_j) any optimizer whose update is a
function of Σ_N moves mode j alone (eq. RF-11), so with e_j(t) the mode's error factor

    L(t) = σ² + Σ_k v_k² − ∫ ν(dμ)/μ + ∫ ν(dμ) e(μ, t)²/μ,        ν = Σ_j (u_jᵀb)² δ_{μ_j}            (RF-20)

and everything about the draw F enters through the measure ν. Its Stieltjes transform has the deterministic
equivalent (RF-21)

    bᵀ(Σ_N − z)⁻¹b ≃ Σ_k v_k² λ_k/(λ_k + κ(z)),     κ (1 − Df1(κ)/N) = −z,    Df1(κ) = Σ λ_k/(λ_k + κ),

(κ(0) is `effective_ridge` at P = ∞, ridge 0), and tr(Σ_N − z)⁻¹ ≃ (Df1(κ(z)) − N)/z for the eigenvalue count.
On the real axis κ = p − iq with (RF-22)

    Σ_k λ_k²/((λ_k + p)² + q²) = N,     μ(p) = −p + (1/N) Σ_k λ_k [1 − λ_k (λ_k + p)/((λ_k + p)² + q²)],

so the support is {μ(p) : g(p) = Σ λ_k²/(λ_k + p)² > N}, a union of p-intervals around the poles p = −λ_k with
edges where g = N, and the densities are explicit (RF-23):

    ν(dμ) = (1/π) q Σ_k v_k² λ_k/|λ_k + κ|² |μ'(p)| dp,     count(dμ) = (1/π) (q/μ) Σ_k λ_k/|λ_k + κ|² |μ'(p)| dp.

`rf_spectral_measure` integrates these by Gauss–Legendre on the p-intervals cut at the poles and the edges (the
edges mapped by p = edge ± width·u², which makes the square-root edge smooth), and returns the nodes with the
masses of ν and of the count; `rf_learning_curve` hands them to `random_features.learning_curve`, which evolves each
node like a mode (RF-24). Three identities hold the quadrature (tests): the count has mass N, ν has mass Σ v_k²λ_k
(= E|b|²), and ∫ν/μ equals the static equivalent Σ v_k²λ_k/(λ_k + κ(0)) — so the t → ∞ loss is `rf_risk` at
P = ∞, ridge 0 to quadrature precision.

Neighbours: `theory.random_features` (the eigenbasis recurrence, the ridge equivalent), `train.experiments.rf_scaling`
(the sampled features it predicts).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from deeptheory.theory._checks import check_integer, check_scalar, check_spectrum, float64_theory
from deeptheory.theory._solvers import bisect
from deeptheory.theory.random_features import learning_curve, preconditioner

__all__ = ["SpectralMeasure", "rf_spectral_measure", "rf_learning_curve", "rf_top_eigenvalue"]

_F64 = jnp.float64
_TAIL_PIECES = 12  # over the p-interval holding the poles beyond the first 2N: widths doubling from its left end,
# where the tail's largest poles sit (a cluster of equal small eigenvalues there needs the fine pieces)
_NEWTON_STEPS = 100  # at most, for q² at each node (about 20 from the lower bound); `SpectralMeasure.residual`
_CHUNK_ENTRIES = 1 << 20  # nodes × D entries per chunk of the node computation (8 MB per float64 temporary)
_HALVINGS = 100  # of every bracket of an edge or a gap's minimum (widths ≤ √(Σλ²/N); float64 resolution by ~60)


class SpectralMeasure(NamedTuple):
    """The deterministic equivalent of Σ_N's spectrum as a quadrature: ∫ h dν ≈ Σ_i target_mass_i h(eigenvalues_i)."""

    eigenvalues: jax.Array  # (n_nodes,) nodes μ_i on the support of Σ_N's limiting spectrum
    target_mass: jax.Array  # (n_nodes,) ν's mass at μ_i, ν = Σ_j (u_jᵀb)² δ_{μ_j} (sum: Σ v_k² λ_k)
    count: jax.Array  # (n_nodes,) the eigenvalue count's mass at μ_i (sum: N)
    floor: jax.Array  # Σ v_k² − ∫ν/μ: the population loss no readout of N features removes (noise excluded)
    residual: jax.Array  # max relative residual of the per-node equation for q² (eq. RF-22); ≲ 1e-13 when solved
    mass_error: jax.Array  # |Σ count / N − 1|: the quadrature's own check (eq. RF-23); ~1e-13 on power laws


def _g(lam, p):
    """g(p) = Σ λ²/(λ + p)² at each p of a 1-d array."""
    return jnp.sum(lam[None, :] ** 2 / (lam[None, :] + p[:, None]) ** 2, axis=1)


def _pieces(lam, N: int):
    """(lo, hi, edge) of the p-intervals (edge: −1 square-root end at lo, +1 at hi, 0 none), fixed in number."""
    D = lam.shape[0]
    K = min(D, 2 * N)
    poles = -lam[:K]
    Nf = jnp.asarray(N, _F64)
    # left of −λ₁ g rises from 0 to ∞; g ≤ Σλ²/δ² below −λ₁ − δ, so the edge lies within δ = √(Σλ²/N)
    delta = jnp.sqrt(jnp.sum(lam ** 2) / Nf)
    left = bisect(lambda p: _g(lam, p) - Nf, (-lam[0] - 1.01 * delta)[None], poles[:1], iterations=_HALVINGS)
    # each gap between consecutive poles: g convex, infinite at both ends; its minimum p* splits it in two pieces,
    # which end at the two edges where g = N when g(p*) < N (a gap in the support) and at p* otherwise
    left_poles, right_poles = poles[:-1], poles[1:]
    p_star = bisect(lambda p: -jnp.sum(lam[None, :] ** 2 / (lam[None, :] + p[:, None]) ** 3, axis=1), left_poles,
                    right_poles, iterations=_HALVINGS)
    split = _g(lam, p_star) < Nf
    gap_starts = bisect(lambda p: Nf - _g(lam, p), left_poles, p_star, iterations=_HALVINGS)
    gap_ends = bisect(lambda p: _g(lam, p) - Nf, p_star, right_poles, iterations=_HALVINGS)
    first_ends = jnp.where(split, gap_starts, p_star)
    second_starts = jnp.where(split, gap_ends, p_star)
    # beyond the first K poles g > N everywhere up to the right edge (in gap k every term j ≤ k exceeds 1, so
    # g > k ≥ N: a gap can open only for k < N), and right of −λ_D g falls from ∞ to 0, below N once p > √(Σλ²/N)
    right = bisect(lambda p: Nf - _g(lam, p), -lam[-1:], delta[None], iterations=_HALVINGS)
    fractions = jnp.asarray(np.concatenate([[0.0], 2.0 ** np.arange(-_TAIL_PIECES + 1, 1)]))
    tail = poles[-1] + (right[0] - poles[-1]) * fractions
    lo = jnp.concatenate([left, left_poles, second_starts, tail[:-1]])
    hi = jnp.concatenate([poles[:1], first_ends, right_poles, tail[1:]])
    edge = np.concatenate([[-1], np.ones(K - 1), -np.ones(K - 1), np.zeros(_TAIL_PIECES - 1), [1]]).astype(np.int8)
    return lo, hi, edge


def _at_nodes(lam, v2, p, dp, N: int):
    """(μ, ν mass, count mass, residual) at a chunk of nodes p with quadrature weights dp (eqs. RF-22, RF-23).

    q² solves Σ λ²/(c + Q) = N, c = (λ + p)², by Newton from the lower bound max_k(λ_k²/N − c_k) (one term alone):
    the left side is convex and decreasing in Q, so the iterates rise monotonically (about 20 steps)."""
    L, V2 = lam[None, :], v2[None, :]
    s = L + p[:, None]
    c = s ** 2

    def h_and_slope(Q):
        r = L ** 2 / (c + Q[:, None])
        return jnp.sum(r, axis=1), jnp.sum(r / (c + Q[:, None]), axis=1)

    def residual(value):
        return jnp.max(jnp.abs(value / N - 1.0))

    def step(state):
        Q, value, slope, i = state
        Q = Q + (value - N) / slope
        return (Q, *h_and_slope(Q), i + 1)

    def unsolved(state):
        return (residual(state[1]) > 1e-13) & (state[3] < _NEWTON_STEPS)

    Q0 = jnp.maximum(jnp.max(L ** 2 / N - c, axis=1), 0.0)
    Q, value, _, _ = lax.while_loop(unsolved, step, (Q0, *h_and_slope(Q0), 0))
    d = c + Q[:, None]
    lam2_d2 = L ** 2 / d ** 2
    mu = -p + (jnp.sum(lam) - jnp.sum(L ** 2 * s / d, axis=1)) / N
    dQ = -jnp.sum(2.0 * s * lam2_d2, axis=1) / jnp.sum(lam2_d2, axis=1)  # implicit derivative of q² in p
    dmu = -1.0 - jnp.sum(lam2_d2 * (d - s * (2.0 * s + dQ[:, None])), axis=1) / N
    density = jnp.sqrt(Q) * jnp.abs(dmu) * dp / jnp.pi
    return mu, density * jnp.sum(V2 * L / d, axis=1), density * jnp.sum(L / d, axis=1) / mu, residual(value)


@float64_theory
def rf_spectral_measure(eigenvalues, target_power, n_features: int, *, nodes: int = 16) -> SpectralMeasure:
    """The deterministic equivalent of the target-weighted spectral measure of Σ_N = FΛFᵀ (docs eqs. RF-21–RF-23).

    Args:
      eigenvalues: (D,) input-covariance eigenvalues λ_k > 0. target_power: (D,) v_k² = λ_k w̄_k².
      n_features: N, a Python int below D (the quadrature's size depends on it: 4N − 1 + 12 pieces when D ≥ 2N).
      nodes: Gauss–Legendre nodes per piece (16 reproduces the identities to ~1e-13 on power laws; 8 to ~1e-7).

    Returns `SpectralMeasure`; check its `mass_error` (and `residual`) on spectra unlike power laws. Float64; one
    compiled computation per (D, N, nodes), reused across calls; vmap over spectra of one length.
    """
    lam, v2 = check_spectrum(eigenvalues, target_power)
    check_integer("nodes", nodes, minimum=2)
    D = lam.shape[0]
    check_integer("n_features", n_features, minimum=1)
    if n_features >= D:
        raise ValueError(f"n_features (N = {n_features}) must be below the input dimension D = {D}: with N ≥ D the "
                         "feature covariance is singular and this equivalent (no atom at 0) does not apply")
    return _measure(lam, v2, N=int(n_features), nodes=int(nodes))


@functools.partial(jax.jit, static_argnames=("N", "nodes"))
def _measure(lam, v2, N: int, nodes: int) -> SpectralMeasure:
    D = lam.shape[0]
    order = jnp.argsort(-lam)
    lam, v2 = lam[order], v2[order]
    lo, hi, edge = _pieces(lam, N)
    u, w = np.polynomial.legendre.leggauss(nodes)
    u, w = jnp.asarray(0.5 * (u + 1.0))[None, :], jnp.asarray(0.5 * w)[None, :]
    width = (hi - lo)[:, None]
    edge_side = jnp.asarray(edge)[:, None]
    p = jnp.where(edge_side == 0, lo[:, None] + width * u,
                  jnp.where(edge_side < 0, lo[:, None] + width * u ** 2, hi[:, None] - width * u ** 2)).ravel()
    dp = jnp.where(edge_side == 0, width * w, 2.0 * width * u * w).ravel()
    # chunks of nodes keep the (nodes × D) temporaries near _CHUNK_ENTRIES (a node count × D array at N = 1024,
    # D = 4096 would be 2 GB); padded nodes carry weight 0
    chunk = max(1, _CHUNK_ENTRIES // D)
    pad = -p.shape[0] % chunk
    p_chunks = jnp.concatenate([p, jnp.full(pad, p[0])]).reshape(-1, chunk)
    dp_chunks = jnp.concatenate([dp, jnp.zeros(pad)]).reshape(-1, chunk)
    mu, target_mass, count, residual = lax.map(lambda xs: _at_nodes(lam, v2, xs[0], xs[1], N), (p_chunks, dp_chunks))
    n_nodes = p.shape[0]
    mu, target_mass, count = (x.ravel()[:n_nodes] for x in (mu, target_mass, count))
    residual = jnp.max(residual)
    floor = jnp.sum(v2) - jnp.sum(target_mass / mu)
    return SpectralMeasure(mu, target_mass, count, floor, residual, jnp.abs(jnp.sum(count) / N - 1.0))


@float64_theory
def rf_top_eigenvalue(measure: SpectralMeasure):
    """The top eigenvalue of Σ_N the equivalent predicts: the median of the top unit of eigenvalue count (the
    μ above which the count is ½). Where the top mode is an isolated bump (λ₁ ≫ λ₂ on the N scale) this is the
    median of λ_max; merged into the bulk it lies half an eigenvalue below the edge."""
    order = jnp.argsort(-measure.eigenvalues)
    above = jnp.cumsum(measure.count[order])
    return measure.eigenvalues[order][jnp.searchsorted(above, 0.5)]


@float64_theory
def rf_learning_curve(eigenvalues, target_power, n_features: int, n_steps: int, *, learning_rate, kind: str = "gd",
                      damping=0.0, power=0.0, momentum=0.0, noise=0.0, nodes: int = 16):
    """Expected population loss L(t), t = 0..n_steps, of a random-feature readout (zero at t = 0) trained with a
    spectral optimizer on ½·(population MSE), with no feature draw (docs eq. RF-24).

    The update is preconditioned gradient descent with heavy-ball momentum β, f(Σ_N) of `preconditioner` (kind
    "gd", "natural" with `damping`, "power" with `power`): `random_features.learning_curve` evolves each node of
    `rf_spectral_measure` as a mode with excess power ν_i/μ_i, over the floor σ² + Σv² − ∫ν/μ. A diagonal
    preconditioner diag(Σ_N) + ε concentrates on (Σ_k λ_k/N + ε)·I (docs RF-24): pass "gd" with the rescaled rate.
    Adam's update is not a function of Σ_N and has no such equivalent.

    Args: eigenvalues, target_power, n_features as `rf_spectral_measure`; n_steps ≥ 0; learning_rate η > 0 (for
    the experiments' step rule η = c/μ_max use `rf_top_eigenvalue`); momentum β ∈ [0, 1); noise σ² ≥ 0.
    Returns (n_steps + 1,) float64 losses.
    """
    check_integer("n_steps", n_steps, minimum=0)
    check_scalar("learning_rate", learning_rate, minimum=0, strict=True)
    check_scalar("noise", noise, minimum=0, strict=False, hint=" (label-noise variance σ²)")
    measure = rf_spectral_measure(eigenvalues, target_power, n_features, nodes=nodes)
    f = preconditioner(measure.eigenvalues, kind, damping=damping, power=power)
    return learning_curve(measure.eigenvalues, measure.target_mass / measure.eigenvalues, n_steps,
                          learning_rate=learning_rate, preconditioner_values=f, momentum=momentum,
                          floor=measure.floor + jnp.asarray(noise, _F64))
