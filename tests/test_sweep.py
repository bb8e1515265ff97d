"""train.harness.sweep on 4 simulated CPU devices: sharded = unsharded, independent of chunking."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from deeptheory.train.harness.sweep import sweep, sweep_keys, sweep_mesh


def _point(key, p):
    noise = jax.random.normal(key, (3,))
    return {"value": p["scale"] * noise + p["shift"], "norm": jnp.sum(noise**2)}


def test_four_simulated_devices_are_present():
    assert jax.device_count() == 4


@pytest.mark.parametrize("chunk_size", [None, 3, 8])
def test_sharded_sweep_equals_unsharded_loop(chunk_size):
    S = 7  # not a multiple of the 4 devices: exercises the padding
    params = {"scale": np.linspace(0.5, 2.0, S), "shift": np.arange(S, dtype=np.float64)}
    out = sweep(_point, params, seed=11, chunk_size=chunk_size)
    one_device = sweep(_point, params, seed=11, mesh=sweep_mesh(jax.devices()[:1]))
    for name in ("value", "norm"):
        np.testing.assert_array_equal(out[name], one_device[name])  # bitwise: same program per point
    # A plain Python loop over points, each compiled on its own: the same randomness; arithmetic
    # may differ in the last bit (XLA may contract a*b + c into an FMA in one program, not the other).
    keys = sweep_keys(11, np.arange(S))
    point = jax.jit(_point)
    expected = [point(keys[i], {"scale": params["scale"][i], "shift": params["shift"][i]}) for i in range(S)]
    np.testing.assert_allclose(out["value"], np.stack([e["value"] for e in expected]), rtol=1e-14)
    np.testing.assert_allclose(out["norm"], np.stack([e["norm"] for e in expected]), rtol=1e-14)


def test_inputs_are_really_sharded():
    def record(key, p):
        return p * 2.0

    params = np.arange(8.0)
    mesh = sweep_mesh()
    out = jax.jit(jax.vmap(record), out_shardings=jax.sharding.NamedSharding(mesh, PartitionSpec("sweep")))(
        jax.random.split(jax.random.key(0), 8), jnp.asarray(params)
    )
    starts = {s.index[0].start for s in out.addressable_shards}
    assert len(out.addressable_shards) == 4 and starts == {0, 2, 4, 6}
    np.testing.assert_array_equal(sweep(record, params, seed=0), 2 * params)


def test_seed_only_sweep_and_errors():
    out = sweep(lambda k, _: jax.random.uniform(k), seed=3, size=5)
    assert out.shape == (5,) and len(np.unique(out)) == 5
    with pytest.raises(ValueError, match="same leading"):
        sweep(_point, {"scale": np.ones(3), "shift": np.ones(4)}, seed=0)
    with pytest.raises(ValueError, match="`size`"):
        sweep(_point, seed=0)
