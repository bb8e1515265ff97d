"""Resumable loops on top of orbax: every orbax call in the project lives here.

Most loops are one call:

    state = resume_loop(out / "checkpoints", initial_state, n_steps, step_fn, desc="training")

runs state = step_fn(k, state) for k = (last saved step) … n_steps − 1, with a progress line, saving after every
step (or every `every` steps, and always the last); a finished loop returns its final state without calling
step_fn. A piece computed in one go (a finished case restores instead of recomputing):

    result = compute_once(out / "checkpoints" / "case_a", template, lambda: expensive(...))

By hand:

    ckpt = Checkpointer(out / "checkpoints", every=10)
    step, state = ckpt.restore(initial_state)        # (0, initial_state) on a fresh directory
    for step in range(step, n_steps):
        state = update(state, fold_in(key, step))    # randomness from (seed, step): resume is exact
        ckpt.save(step + 1, state)                   # kept every `every` steps (and when forced)
    ckpt.close()

`state` is any pytree of arrays; restore uses `initial_state` as the template (structure, shapes,
dtypes), so a restored state is interchangeable with a fresh one.

Multi-host: every process constructs, saves, restores and closes with the same (shared) directory, in the
same order (orbax synchronises them); NumPy leaves must be identical on every process (process 0 writes them,
every process reads them), jax.Array leaves must be global arrays (each process writes its own shards).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from deeptheory.train.harness.progress import progress

__all__ = ["Checkpointer", "compute_once", "resume_loop"]

logging.getLogger("absl").setLevel(logging.WARNING)


class Checkpointer:
    """Save a pytree every `every` steps (asynchronously) and resume from the latest step."""

    def __init__(self, directory: str | Path, *, every: int = 1, max_to_keep: int = 2):
        if every < 1:
            raise ValueError(f"checkpoint interval `every` must be >= 1; got {every}")
        self.directory = Path(directory).absolute()
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, save_interval_steps=every, create=True),
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def restore(self, initial_state):
        """(latest step, its state), or (0, initial_state) when nothing was saved yet."""
        step = self._manager.latest_step()
        if step is None:
            return 0, initial_state
        template = jax.tree.map(ocp.utils.to_shape_dtype_struct, initial_state)
        try:
            restored = self._manager.restore(step, args=ocp.args.StandardRestore(template))
        except ValueError as e:  # orbax reports a tree mismatch as a long diff
            raise ValueError(
                f"the checkpoint in {self.directory} (step {step}) does not match the state this run needs — it "
                "was probably written by another version of the code; delete that folder (or choose another "
                f"--out) to start over. orbax said: {str(e).splitlines()[0]}"
            ) from None
        as_numpy = jax.tree.map(lambda leaf: isinstance(leaf, np.ndarray), initial_state)
        restored = jax.tree.map(lambda r, np_leaf: np.asarray(r) if np_leaf else r, restored, as_numpy)
        return step, restored

    def save(self, step: int, state, *, force: bool = False) -> bool:
        """Save if `step` is on the interval (or `force`); returns whether it saved."""
        return self._manager.save(step, args=ocp.args.StandardSave(state), force=force)

    def close(self) -> None:
        """Wait for pending asynchronous saves and release the manager."""
        self._manager.wait_until_finished()
        self._manager.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def resume_loop(directory: str | Path, initial_state, n_steps: int, step_fn: Callable, *, every: int = 1,
                desc: str = "", unit: str = "steps"):
    """The final state of state_{k+1} = step_fn(k, state_k), k = 0 … n_steps − 1, resumed from `directory`.

    Saves after every `every`-th step and after the last; a restored state is the template's pytree (NumPy leaves
    stay NumPy), so step_fn sees the same types fresh or resumed. Randomness inside step_fn should be a function of
    (seed, k) (`train.harness.keys`), so that a resumed loop ends in the bitwise-identical state."""
    with Checkpointer(directory, every=every) as ckpt:
        start, state = ckpt.restore(initial_state)
        for k in progress(range(start, n_steps), desc=desc, total=n_steps, initial=start, unit=unit):
            state = step_fn(k, state)
            ckpt.save(k + 1, state, force=k + 1 == n_steps)
    return state


def compute_once(directory: str | Path, template, compute: Callable):
    """compute(), saved under `directory`; a rerun restores it instead (template: its pytree structure, shapes and
    dtypes — the one-step case of `resume_loop`)."""
    with Checkpointer(directory) as ckpt:
        done, state = ckpt.restore(template)
        if not done:
            state = compute()
            ckpt.save(1, state, force=True)
    return state
