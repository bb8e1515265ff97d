"""Many MCMC chains at once: vmapped over chains, sharded across devices, checkpointed, resumable bit for bit.

    result = run_chains(sampler, positions_C, seed=0, n_steps=20_000, every=50, burn_in=5_000,
                        measure=measure, checkpoint_dir=out / "chains")

Chain c's step t draws its randomness from fold_in(fold_in(key(seed), c), t), so a trajectory is a function of
(seed, chain, step) only: it does not depend on the device count, on where a run was interrupted, or on the
other chains. One jitted block advances every chain by `every` steps (`lax.scan`) and then measures each chain
once; the host accumulates, and every `checkpoint_every` blocks the whole state (chains, traces, sums) goes to
an orbax checkpoint. Rerunning the same call after a kill restores the latest checkpoint and continues; the
result is bitwise identical to an uninterrupted run.

`measure(position) -> (trace, accum, pooled)`, three dicts of arrays for one chain:
- trace: scalars recorded at every measurement (diagnostics: R̂, ESS, burn-in);
- accum: arrays summed over the measurements after burn-in, per chain (e.g. test predictions f and f²);
- pooled: arrays summed over the measurements after burn-in and over chains (e.g. a P×P kernel).
Sums are kept in float64 on the host.

Multi-host (after `jax.distributed.initialize()`): every process makes the same call; the chains are shared
evenly by the processes (C must be a multiple of the process count), each block's outputs are all-gathered,
so every process holds the same NumPy results, and the checkpoint folder must be one shared path (orbax: the
host-side state is written by process 0, read by all).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from deeptheory.train.harness.checkpoint import Checkpointer
from deeptheory.train.harness.progress import progress
from deeptheory.train.harness.sweep import from_host, to_host
from deeptheory.train.inference.samplers import Sampler, SamplerState

__all__ = ["ChainResult", "SamplerDivergence", "run_chains", "chain_mesh"]


class SamplerDivergence(RuntimeError):
    """A chain produced a non-finite log density or measurement; the message says where and what to do."""


class ChainResult(NamedTuple):
    trace: dict  # name → (C, n_measurements) float64, every measurement (burn-in included)
    trace_steps: np.ndarray  # (n_measurements,) the step after which each measurement was taken
    accum: dict  # name → (C, ...) sums over the measurements after burn-in
    pooled: dict  # name → (...) sums over chains and measurements after burn-in
    n_kept: int  # measurements per chain in accum/pooled
    acceptance: np.ndarray  # (C, n_blocks) mean acceptance probability per block
    final: SamplerState  # chain-stacked, as NumPy


def chain_mesh(n_chains: int, devices=None) -> Mesh:
    """A 1-D mesh "chains" over as many devices as divide the chain count evenly.

    Multi-host (devices=None): the same number of devices on every process, so that each process runs
    C / (process count) chains; the chain count must then be a multiple of the process count."""
    if devices is None and jax.process_count() > 1:
        n_proc = jax.process_count()
        if n_chains % n_proc:
            raise ValueError(f"{n_chains} chains cannot be shared evenly by {n_proc} processes; run a multiple "
                             f"of {n_proc} chains")
        per_process = [[d for d in jax.devices() if d.process_index == p] for p in range(n_proc)]
        n_local = math.gcd(n_chains // n_proc, min(map(len, per_process)))
        return Mesh(np.asarray([d for local in per_process for d in local[:n_local]]), ("chains",))
    devices = list(jax.devices() if devices is None else devices)
    return Mesh(np.asarray(devices[: math.gcd(n_chains, len(devices))]), ("chains",))


def _check(n_steps: int, every: int, burn_in: int, checkpoint_every: int) -> None:
    if every < 1 or n_steps < every or n_steps % every:
        raise ValueError(f"n_steps ({n_steps}) must be a positive multiple of the measurement interval every ({every})")
    if burn_in < 0 or burn_in % every or burn_in >= n_steps:
        raise ValueError(f"burn_in ({burn_in}) must be a multiple of every ({every}) in [0, n_steps = {n_steps})")
    if checkpoint_every < 1:
        raise ValueError(f"checkpoint_every (in blocks of `every` steps) must be >= 1; got {checkpoint_every}")


def run_chains(
    sampler: Sampler,
    positions,
    *,
    seed: int,
    n_steps: int,
    every: int,
    measure,
    burn_in: int = 0,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 10,
    devices=None,
    description: str = "chains",
) -> ChainResult:
    """Run C chains from `positions` (a pytree with a leading chain axis C) for n_steps (module docstring).

    Raises:
      SamplerDivergence: a chain's log density or measurement became NaN/inf; the checkpoint on disk is the
        last good state, and the message names the chains and the step window.
    """
    _check(n_steps, every, burn_in, checkpoint_every)
    n_chains = {np.shape(leaf)[0] for leaf in jax.tree.leaves(positions)}
    if len(n_chains) != 1:
        raise ValueError(f"every leaf of positions needs the same leading (chain) axis; got {n_chains}")
    C = n_chains.pop()
    n_blocks = n_steps // every
    sharding = NamedSharding(chain_mesh(C, devices), P("chains"))
    if sharding.is_fully_addressable:
        place = lambda tree: jax.device_put(tree, sharding)  # noqa: E731
    else:  # multi-host: each process places its own shards of the (identical) host values
        place = lambda tree: jax.tree.map(lambda leaf: from_host(leaf, sharding), to_host(tree))  # noqa: E731

    base = jax.random.key(seed)
    chain_keys = place(jax.random.key_data(jax.vmap(lambda c: jax.random.fold_in(base, c))(jnp.arange(C))))

    @jax.jit
    def block(states: SamplerState, keys, first_step):
        def one_chain(state, key_data):
            key = jax.random.wrap_key_data(key_data)

            def body(s, t):
                s, info = sampler.step(jax.random.fold_in(key, t), s)
                return s, info.acceptance

            state, acceptance = jax.lax.scan(body, state, first_step + jnp.arange(every, dtype=first_step.dtype))
            return state, jnp.mean(acceptance)

        states, acceptance = jax.vmap(one_chain)(states, keys)
        trace, accum, pooled = jax.vmap(measure)(states.position)
        trace = dict(trace, log_density=states.log_density)
        return states, acceptance, trace, accum, jax.tree.map(lambda a: jnp.sum(a, axis=0), pooled)

    states = jax.jit(jax.vmap(sampler.init))(place(positions))
    shapes = jax.eval_shape(block, states, chain_keys, jnp.uint32(0))
    _, _, trace_shape, accum_shape, pooled_shape = shapes
    host = {
        "states": to_host(jax.tree.leaves(states)),
        "trace": {k: np.full((n_blocks, C), np.nan) for k in trace_shape},
        "acceptance": np.full((n_blocks, C), np.nan),
        "accum": {k: np.zeros(v.shape, np.float64) for k, v in accum_shape.items()},
        "pooled": {k: np.zeros(v.shape, np.float64) for k, v in pooled_shape.items()},
        "n_kept": np.zeros((), np.int64),
    }
    treedef = jax.tree.structure(states)
    ckpt = Checkpointer(checkpoint_dir, every=checkpoint_every) if checkpoint_dir is not None else None
    try:
        done = 0
        if ckpt is not None:
            done, host = ckpt.restore(host)
            states = place(treedef.unflatten([jnp.asarray(x) for x in host["states"]]))
        for b in progress(range(done, n_blocks), desc=description, total=n_blocks, initial=done,
                          unit=f"blocks of {every} steps"):
            states, *outputs = block(states, chain_keys, jnp.uint32(b * every))
            states_host, acceptance, trace, accum, pooled = to_host((states, *outputs))  # NumPy, every process
            trace = {k: np.asarray(v, np.float64) for k, v in trace.items()}
            bad = ~np.isfinite(states_host.log_density)
            for v in trace.values():
                bad |= ~np.isfinite(v)
            if bad.any():
                raise SamplerDivergence(
                    f"{description}: chain(s) {np.flatnonzero(bad).tolist()} gave a non-finite log density or "
                    f"measurement between steps {b * every} and {(b + 1) * every}; lower the step size. "
                    + (f"The last good state is in {ckpt.directory} (step {ckpt.latest_step()} blocks)."
                       if ckpt is not None else "")
                )
            host = dict(host, states=jax.tree.leaves(states_host),
                        trace={k: v.copy() for k, v in host["trace"].items()}, acceptance=host["acceptance"].copy())
            for k, v in trace.items():
                host["trace"][k][b] = v
            host["acceptance"][b] = np.asarray(acceptance)
            if (b + 1) * every > burn_in:
                host["accum"] = {k: host["accum"][k] + np.asarray(v, np.float64) for k, v in accum.items()}
                host["pooled"] = {k: host["pooled"][k] + np.asarray(v, np.float64) for k, v in pooled.items()}
                host["n_kept"] = host["n_kept"] + 1
            if ckpt is not None:
                ckpt.save(b + 1, host, force=b + 1 == n_blocks)
    finally:
        if ckpt is not None:
            ckpt.close()
    return ChainResult(
        trace={k: v.T.copy() for k, v in host["trace"].items()},
        trace_steps=(np.arange(n_blocks) + 1) * every,
        accum=host["accum"],
        pooled=host["pooled"],
        n_kept=int(host["n_kept"]),
        acceptance=host["acceptance"].T.copy(),
        final=treedef.unflatten(host["states"]),
    )
