"""Random keys as a function of (seed, path): the same experiment point gets the same randomness in any run.

    key = derive(seed, "denoise", "prompts", prior, dim, sigma2)          # one key
    keys = derive_batch(seed, ("denoise", "prompts", prior, dim, sigma2), range(R))   # (R,) keys, one per index

Each path element is folded in with `jax.random.fold_in` (big_vision): a non-negative integer below 2³¹ as
itself, anything else (a name, a float such as a noise variance, a negative integer) by the CRC-32 of its
canonical text (`repr(float(x))` for numbers; config fields have fixed types, so a value always arrives as the
same type). Keys therefore depend on the
*values* a configuration holds, not on their positions in a list: `--s-values 1.0` alone draws exactly the
features that s = 1.0 draws inside the full sweep.
"""

from __future__ import annotations

import numbers
import zlib
from collections.abc import Iterable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["derive", "derive_batch", "derive_seed", "tag"]

_SMALL = 2**31


def tag(element) -> int:
    """The uint32 folded in for one path element (module docstring)."""
    if isinstance(element, bool | np.bool_):
        element = int(element)
    if isinstance(element, numbers.Integral) and 0 <= int(element) < _SMALL:
        return int(element)
    if isinstance(element, numbers.Real):
        text = "f:" + repr(float(element))
    elif isinstance(element, str):
        text = "s:" + element
    else:
        raise TypeError(f"a key path holds names and numbers; got {element!r} ({type(element).__name__})")
    return zlib.crc32(text.encode()) | _SMALL  # the high bit keeps hashed tags apart from plain indices


@jax.jit
def _fold_all(key, tags_T):
    return jax.lax.fori_loop(0, tags_T.shape[0], lambda i, k: jax.random.fold_in(k, tags_T[i]), key)


def derive(seed: int, *path) -> jax.Array:
    """The key of `path` under `seed`: fold_in of every path element's tag in order."""
    tags = jnp.asarray(np.asarray([tag(p) for p in path], np.uint32).reshape(-1))
    return _fold_all(jax.random.key(int(seed)), tags)


@jax.jit
def _fold_indices(key, indices_S):
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(indices_S)


def derive_batch(seed: int, path: Iterable, indices: Iterable[int]) -> jax.Array:
    """(S,) keys: derive(seed, *path, i) for each index i (one jitted call)."""
    indices = np.asarray(list(indices), np.int64)
    if indices.ndim != 1 or np.any(indices < 0) or np.any(indices >= _SMALL):
        raise ValueError(f"indices must be integers in [0, 2^31); got {indices!r}")
    return _fold_indices(derive(seed, *path), jnp.asarray(indices.astype(np.uint32)))


def derive_seed(seed: int, *path) -> int:
    """An integer seed in [0, 2³¹) drawn from derive(seed, *path), for APIs that take an int seed (run_chains)."""
    return int(np.asarray(jax.random.key_data(derive(seed, *path)))[-1] & (_SMALL - 1))
