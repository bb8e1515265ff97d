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
Derivations and the tests that hold them: docs/nngp_and_renormalization.md, eqs. (R-1)–(R-8).

Neighbours: `theory.activations` (F_φ, its closed forms and quadrature), `theory.conv_kernels` (the same recursion
for patch convolutions), `theory.gp` (GP regression with these kernels), `theory.renormalization` (their
finite-width renormalization); the finite network is `models.mlp.MLP`.


Performance: the P×P work is one fused elementwise chain per block of the output, fed by one
matmul; per-point variances K^l(x, x) are propagated separately in O(P · depth), so no layer's
P×P matrix is ever materialised, and the symmetric case computes only blocks on or above the
diagonal. Memory is the output plus one block.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from deeptheory.theory._checks import (
    as_array,
    check_depth,
    check_finite,
    data_map,
    finite_kernel,
    is_concrete,
    working_dtype,
)
from deeptheory.theory.activations import Activation, get_activation

__all__ = [
    "nngp_kernel",
    "nngp_diag",
    "covariance_chain",
    "DEFAULT_BLOCK_SIZE",
]

DEFAULT_BLOCK_SIZE = 512  # measured best of {256, 512, 1024, 2048, 4096} on CPU: benchmarks/RESULTS.md


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


def _block_chain(x_AxD, x_BxD, q_LxA, q_LxB, s_a, s_b, shape, sw2, sb2, act: Activation, depth: int):
    """`_pair_chain` on the block of rows s_a … s_a + n_a of x_AxD and s_b … s_b + n_b of x_BxD."""
    n_a, n_b = shape
    return _pair_chain(
        lax.dynamic_slice_in_dim(x_AxD, s_a, n_a),
        lax.dynamic_slice_in_dim(x_BxD, s_b, n_b),
        lax.dynamic_slice_in_dim(q_LxA, s_a, n_a, 1),
        lax.dynamic_slice_in_dim(q_LxB, s_b, n_b, 1),
        sw2,
        sb2,
        act,
        depth,
    )


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

    def write_diagonal(out, s, _, shape):
        n = shape[0]
        out = lax.dynamic_update_slice(
            out, _block_chain(x_PxD, x_PxD, q_LxP, q_LxP, s, s, shape, sw2, sb2, act, depth), (s, s))
        # The diagonal K(x, x) comes from the O(P) recursion, so it is exact and bitwise reproducible; the block is
        # symmetrised so that the whole matrix is exactly symmetric. The block is read back from `out` first: with
        # the transpose of the chain's expression XLA CPU fuses the chain a second time with transposed (strided)
        # reads, and the 8 diagonal blocks of P = 4096 took 3× as long as the 28 others (measured).
        c = lax.dynamic_slice(out, (s, s), shape)
        c = jnp.where(jnp.eye(n, dtype=bool), lax.dynamic_slice_in_dim(q_LxP[depth], s, n)[:, None], 0.5 * (c + c.T))
        return lax.dynamic_update_slice(out, c, (s, s))

    def write_off_diagonal(out, s_a, s_b, shape):
        # strictly above the diagonal: no select, no symmetrisation (under a fori_loop over block starts both would
        # be computed for every square block and discarded for all but the diagonal ones)
        out = lax.dynamic_update_slice(
            out, _block_chain(x_PxD, x_PxD, q_LxP, q_LxP, s_a, s_b, shape, sw2, sb2, act, depth), (s_a, s_b))
        # the transpose is read back from `out`: transposing the block's expression instead lets XLA fuse the chain
        # twice, and the two copies may round differently (measured: gelu, 3e-17), breaking exact symmetry
        return lax.dynamic_update_slice(out, lax.dynamic_slice(out, (s_a, s_b), shape).T, (s_b, s_a))

    # Blocks on and above the diagonal only; each off-diagonal one is written with its transpose, and blocks do not
    # overlap, so the result is exactly symmetric.
    out = _fill_blocks(jnp.zeros((P, P), x_PxD.dtype), [(a, a) for a in blocks], write_diagonal)
    return _fill_blocks(out, [(a, b) for i, a in enumerate(blocks) for b in blocks[i + 1:]], write_off_diagonal)


@functools.partial(jax.jit, static_argnames=("act", "depth", "block"))
def _cross_kernel(x1_AxD, x2_BxD, sw2, sb2, *, act: Activation, depth: int, block: int):
    q1, q2 = _diag_layers(x1_AxD, sw2, sb2, act, depth), _diag_layers(x2_BxD, sw2, sb2, act, depth)

    def write(out, s_a, s_b, shape):
        c = _block_chain(x1_AxD, x2_BxD, q1, q2, s_a, s_b, shape, sw2, sb2, act, depth)
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
    depth = check_depth(depth)
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
        return finite_kernel(_symmetric_kernel(x1, sw2, sb2, act=act, depth=depth, block=int(block)))
    x2 = x2.astype(dtype)
    if x1.shape[0] == 0 or x2.shape[0] == 0:
        return jnp.zeros((x1.shape[0], x2.shape[0]), dtype)
    return finite_kernel(_cross_kernel(x1, x2, sw2, sb2, act=act, depth=depth, block=int(block)))


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
    depth = check_depth(depth)
    act = get_activation(activation, quad_points)
    x = _as_points(x, "x")
    dtype = working_dtype(x)
    sw2 = _layer_values(weight_var, depth, "weight_var", dtype)
    sb2 = _layer_values(bias_var, depth, "bias_var", dtype)
    return finite_kernel(_diag_layers(x.astype(dtype), sw2, sb2, act, depth)[depth])


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
    return finite_kernel(K), finite_kernel(a), finite_kernel(b)


_MOVED = {"Activation": "activations", "get_activation": "activations", "mean_activation": "activations",
          "ACTIVATIONS": "activations", "DEFAULT_QUAD_POINTS": "activations", "conv_patch_kernels": "conv_kernels"}


def __getattr__(name: str):
    """Names that moved out of this module (issue 18): still importable from here for one release, with a
    DeprecationWarning naming the new home."""
    if name in _MOVED:
        import importlib
        import warnings

        home = f"deeptheory.theory.{_MOVED[name]}"
        warnings.warn(f"{name} moved from deeptheory.theory.nngp to {home}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(home), name)
    raise AttributeError(f"module 'deeptheory.theory.nngp' has no attribute {name!r}")
