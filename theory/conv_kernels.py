"""Kernels between positions of a stack of non-overlapping patch convolutions (the conv analogue of the NNGP).

Subject: the layer-by-layer covariances C_l^{ab}(x, x') between patch positions a, b of a CNN whose layers apply
filters of side M_l with stride M_l (no overlap, no pooling), and the final position-resolved kernels K^{ij}
(`conv_patch_kernels`; Aiudi et al., Nat. Commun. 2025, one layer; Baglioni et al. 2026, stacked;
docs/nngp_and_renormalization.md, eq. (R-22)). `patchify` is the one patch extraction of the repository: the
finite network `models.cnn.PatchCNN` uses it too, so network and kernel cut images the same way.

Neighbours: `theory.activations` (F_φ), `theory.nngp` (the fully connected recursion), `theory.conv_renormalization`
(the finite-width theory built on K^{ij}), `models.cnn` (the finite network).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from deeptheory.theory._checks import as_array, check_finite, data_map, fails, finite_kernel, working_dtype
from deeptheory.theory.activations import get_activation

__all__ = ["patchify", "conv_patch_kernels"]


def patchify(x_BxHxWxC, side: int, *, positions_first: bool = False):
    """(B, H, W, C) → (B, H/side, W/side, side² C): each non-overlapping side×side patch flattened row-major (its
    rows, then its columns, then the channels). H and W must be divisible by `side`. Pure data movement (no
    arithmetic), so x's dtype is kept; `models.cnn.PatchCNN` calls it inside its float32 forward pass.

    positions_first: return (H/side, W/side, B, side² C) instead, the layout the kernels contract over, in one
    transpose (a second transpose after the first changed XLA's summation order under jit in the last bits).
    """
    B, H, W, C = x_BxHxWxC.shape
    h = x_BxHxWxC.reshape(B, H // side, side, W // side, side, C)
    if positions_first:
        return h.transpose(1, 3, 0, 2, 4, 5).reshape(H // side, W // side, B, side * side * C)
    return h.transpose(0, 1, 3, 2, 4, 5).reshape(B, H // side, W // side, side * side * C)


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
      activation: as in `theory.nngp.nngp_kernel`.
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

    K, k1, k2 = _patch_kernels(x1, x2, sw2, act=act, patches=patches)
    return finite_kernel(K), finite_kernel(k1), finite_kernel(k2)


# One program per (shapes, φ, patch sides): run op by op, the (n, n, P, P) kernel took ~10 passes over memory
# (the einsum's transpose, F_φ's pieces, the reshape), 1.3 s at P = 300 against 0.5 s compiled.
@functools.partial(jax.jit, static_argnames=("act", "patches"))
def _patch_kernels(x1, x2, sw2, *, act, patches: tuple[int, ...]):
    c_in = x1.shape[-1]
    p1, p2 = (patchify(x, patches[0], positions_first=True) for x in (x1, x2))  # (h, w, P, M² c)
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
    return K.reshape(n, n, K.shape[-2], K.shape[-1]), act.diag(v1).reshape(n, -1), act.diag(v2).reshape(n, -1)

