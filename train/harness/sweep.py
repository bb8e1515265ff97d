"""Sweeps: vmap a function over a leading parameter/seed axis and shard that axis across devices.

`sweep(fn, params, seed=s)` evaluates `fn(key_i, params_i)` for every i along the leading axis of
`params` with key_i = fold_in(PRNGKey(s), i): randomness is a function of (seed, index) alone, so a
result does not depend on the device count, the chunking, or which points ran before (big_vision).

The axis is padded to a multiple of the device count (padding repeats the last entry and is
dropped), placed with NamedSharding(mesh, P("sweep")), and `jax.jit(jax.vmap(fn))` partitions it with
no communication. Multi-host (after `jax.distributed.initialize()`): the mesh spans every process's
devices, inputs are built per process with `make_array_from_callback`, and results are gathered to
every process.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from deeptheory.train.harness.progress import progress

__all__ = ["sweep", "sweep_keys", "sweep_mesh", "from_host", "to_host"]


def sweep_mesh(devices=None) -> Mesh:
    """A 1-D mesh named "sweep" over all (global) devices."""
    return Mesh(np.asarray(jax.devices() if devices is None else devices), ("sweep",))


def sweep_keys(seed: int, indices) -> jax.Array:
    """fold_in(PRNGKey(seed), i) for each index: the key of sweep point i."""
    base = jax.random.key(seed)
    return jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.asarray(indices, jnp.uint32))


@functools.lru_cache(maxsize=32)
def _compiled(fn: Callable, sharding: NamedSharding):
    """jit(vmap(fn)) once per (function, sharding): a second sweep of the same function reuses the compilation."""
    return jax.jit(jax.vmap(fn), out_shardings=sharding)


def from_host(x, sharding: NamedSharding) -> jax.Array:
    """A host value, the same on every process, as a global array with `sharding`: each process places only
    its own shards (`jax.device_put` cannot reach another process's devices)."""
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


def to_host(tree):
    """Every leaf as a NumPy array of its global value, on every process. A leaf sharded over devices of other
    processes is all-gathered (a collective: every process must call this in the same order)."""

    def one(leaf):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            return multihost_utils.process_allgather(leaf, tiled=True)
        return np.asarray(leaf)

    return jax.tree.map(one, tree)


def sweep(
    fn: Callable,
    params=None,
    *,
    seed: int | None = None,
    keys=None,
    size: int | None = None,
    first_index: int = 0,
    chunk_size: int | None = None,
    mesh: Mesh | None = None,
    show_progress: bool = False,
    description: str = "sweep",
):
    """Evaluate fn(key_i, params_i) for i = 0..S−1, vmapped and sharded along the leading axis.

    Args:
      fn: pure function (key, params_slice) → pytree of arrays. Traced once per chunk shape.
      params: pytree whose leaves share a leading axis of size S (None: a pure seed sweep).
      seed: base seed; point i uses fold_in(PRNGKey(seed), first_index + i).
      keys: instead of `seed`, one key per point (typed keys or raw key data, leading axis S), e.g. from
        `train.harness.keys.derive_batch`, so that a point's randomness follows its configuration values.
      size: S when params is None.
      first_index: point i uses key index first_index + i (to split one long sweep into calls).
      chunk_size: evaluate at most this many points at once (rounded up to a multiple of the device
        count) to bound memory; None: all at once.
      mesh: a 1-D mesh with axis "sweep"; None: all devices.
      show_progress: a progress bar over chunks.

    Returns:
      The pytree of stacked outputs, leading axis S, as NumPy arrays on every process.
    """
    mesh = sweep_mesh() if mesh is None else mesh
    if (seed is None) == (keys is None):
        raise ValueError("give exactly one of `seed` (keys fold_in(seed, index)) or `keys` (one per point)")
    leaves = jax.tree.leaves(params)
    if leaves:
        sizes = {np.shape(leaf)[0] if np.ndim(leaf) else None for leaf in leaves}
        if len(sizes) != 1 or None in sizes:
            raise ValueError(f"every params leaf needs the same leading (sweep) axis; got sizes {sizes}")
        S = sizes.pop()
        if size is not None and size != S:
            raise ValueError(f"size={size} disagrees with the params' leading axis {S}")
    elif size is None:
        raise ValueError("give `params` with a leading sweep axis, or `size` for a pure seed sweep")
    else:
        S = size
    if S < 1:
        raise ValueError(f"the sweep is empty (size {S})")
    if keys is not None:
        keys = to_host(jax.random.key_data(keys) if jnp.issubdtype(keys.dtype, jax.dtypes.prng_key) else keys)
        if keys.shape[0] != S:
            raise ValueError(f"keys has {keys.shape[0]} entries for a sweep of {S} points")
    n_dev = mesh.devices.size
    chunk = S if chunk_size is None else max(1, min(chunk_size, S))
    chunk = -(-chunk // n_dev) * n_dev
    sharding = NamedSharding(mesh, P("sweep"))
    compiled = _compiled(fn, sharding)
    host_params = to_host(params)
    outputs = []
    for start in progress(range(0, S, chunk), desc=description, disable=not show_progress, unit="chunks"):
        index = np.minimum(np.arange(start, start + chunk), S - 1)  # pad by repeating the last point
        chunk_keys = keys[index] if keys is not None else jax.random.key_data(sweep_keys(seed, first_index + index))
        keys_dev = jax.random.wrap_key_data(from_host(np.asarray(chunk_keys), sharding))
        chunk_params = jax.tree.map(lambda leaf, index=index: from_host(leaf[index], sharding), host_params)
        out = compiled(keys_dev, chunk_params)
        valid = min(chunk, S - start)
        outputs.append(jax.tree.map(lambda a, valid=valid: a[:valid], to_host(out)))
    return jax.tree.map(lambda *parts: np.concatenate(parts), *outputs)
