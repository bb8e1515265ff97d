"""One process of tests/test_multihost.py (not collected: no `test_` prefix).

    python tests/_multihost_worker.py PORT NUM_PROCESSES PROCESS_ID WORKDIR

Sets up JAX like tests/conftest.py (CPU, 2 simulated devices per process, float64, strict promotion, warnings
are errors), joins the coordinator on 127.0.0.1:PORT, runs `compute` (a sharded sweep, sharded MCMC chains
checkpointed into WORKDIR/chains, results.json into WORKDIR/results) and saves its gathered NumPy results to
WORKDIR/dump/process<ID>.npz. The test imports `compute` to run the same calls in a single process.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import numpy as np

SWEEP_SIZE = 7  # not a multiple of the 4 global devices: exercises padding
N_CHAINS = 6  # 3 per process: the chain mesh takes one device of each process (2 devices in a single process)


def _point(key, p):
    import jax
    import jax.numpy as jnp

    noise = jax.random.normal(key, (3,))
    return {"value": p["scale"] * noise + p["shift"], "norm": jnp.sum(noise**2)}


def _log_density(theta):
    import jax.numpy as jnp

    precision = jnp.asarray([1.0, 4.0, 0.25])
    return -0.5 * jnp.sum(precision * jnp.square(theta["x"] - 1.0)) - 0.5 * jnp.square(theta["y"])


def _measure(theta):
    import jax.numpy as jnp

    x = theta["x"]
    return {"x0": x[0], "y": theta["y"]}, {"x": x, "xx": x * x}, {"outer": jnp.outer(x, x)}


def compute(workdir: Path) -> dict[str, np.ndarray]:
    """The calls under test; every result as a flat dict of NumPy arrays."""
    import jax
    import jax.numpy as jnp

    from deeptheory.train.harness import results
    from deeptheory.train.harness.sweep import from_host, sweep, sweep_mesh
    from deeptheory.train.inference.chains import run_chains
    from deeptheory.train.inference.samplers import baoab

    workdir = Path(workdir)
    out: dict[str, np.ndarray] = {}

    # (a) sharded sweeps: seeded, and with explicit per-point keys; chunked, with padding
    params = {"scale": np.linspace(0.5, 2.0, SWEEP_SIZE), "shift": np.arange(SWEEP_SIZE, dtype=np.float64)}
    seeded = sweep(_point, params, seed=11, chunk_size=3)
    mesh = sweep_mesh()
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())  # on every device of every process
    keys = from_host(jax.random.key_data(jax.random.split(jax.random.key(5), SWEEP_SIZE)), replicated)
    keyed = sweep(_point, params, keys=keys)  # a global array as input: gathered to the host first
    for name, tree in (("sweep_seed", seeded), ("sweep_keys", keyed)):
        for k, v in tree.items():
            assert isinstance(v, np.ndarray), (name, k, type(v))
            out[f"{name}/{k}"] = v

    # (b) sharded chains, checkpointed; the second call restores the finished checkpoint and recomputes nothing
    theta0 = {"x": jnp.zeros((N_CHAINS, 3)), "y": jnp.linspace(-1.0, 1.0, N_CHAINS)}
    sampler = baoab(_log_density, step_size=0.1, friction=1.0)
    kwargs = dict(seed=3, n_steps=40, every=10, burn_in=10, measure=_measure, checkpoint_every=2,
                  checkpoint_dir=workdir / "chains")
    first = run_chains(sampler, theta0, **kwargs)
    again = run_chains(sampler, theta0, **kwargs)
    for name, result in (("chains", first), ("chains_restored", again)):
        flat = {"trace_steps": result.trace_steps, "acceptance": result.acceptance,
                "n_kept": np.asarray(result.n_kept)}
        flat |= {f"trace/{k}": v for k, v in result.trace.items()}
        flat |= {f"accum/{k}": v for k, v in result.accum.items()}
        flat |= {f"pooled/{k}": v for k, v in result.pooled.items()}
        flat |= {f"final/{i}": v for i, v in enumerate(jax.tree.leaves(result.final))}
        for k, v in flat.items():
            assert isinstance(v, np.ndarray), (name, k, type(v))
            out[f"{name}/{k}"] = v

    # (c) results.json, written by process 0 only: into a shared folder, then into a folder of each process's
    # own (where process 1 must leave nothing). A metric sharded across processes is gathered by write_results.
    sharded = from_host(np.arange(4.0), jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("sweep")))
    metrics = {"sweep_norm": seeded["norm"], "chain_x": first.accum["x"] / first.n_kept,
               "pooled_outer": first.pooled["outer"], "log_density": first.trace["log_density"],
               "sharded": sharded, "written_by": jax.process_index()}
    for folder in ("results", f"results_process{jax.process_index()}"):
        path = results.write_results(workdir / folder, name="multihost", config={"seed": 3}, metrics=metrics,
                                     wall_time_s=0.0)
        assert path == workdir / folder / "results.json"
    return out


def main(port: int, num_processes: int, process_id: int, workdir: Path) -> None:
    warnings.simplefilter("error")  # as pyproject.toml's filterwarnings
    warnings.filterwarnings("ignore", message=".*Creating directory.*", category=UserWarning)
    os.environ["JAX_PLATFORMS"] = "cpu"
    import jax

    jax.config.update("jax_num_cpu_devices", 2)
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_numpy_rank_promotion", "raise")
    jax.config.update("jax_numpy_dtype_promotion", "strict")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # cross-process collectives on CPU
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", coordinator_bind_address=f"127.0.0.1:{port}",
                               num_processes=num_processes, process_id=process_id,
                               cluster_detection_method="deactivate", initialization_timeout=60)
    assert jax.process_count() == num_processes and jax.process_index() == process_id
    assert jax.device_count() == 2 * num_processes and jax.local_device_count() == 2
    out = compute(workdir)
    dump = workdir / "dump"
    dump.mkdir(exist_ok=True)
    np.savez(dump / f"process{process_id}.npz", **out)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))
