"""train.harness.checkpoint: an interrupted loop resumes to the bitwise-identical result."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deeptheory.train.harness.checkpoint import Checkpointer


def _loop(directory, n_steps, stop_after=None, every=3):
    state = {"x": jnp.zeros(4), "history": np.zeros(n_steps)}
    base = jax.random.key(7)
    with Checkpointer(directory, every=every) as ckpt:
        start, state = ckpt.restore(state)
        for step in range(start, n_steps):
            if stop_after is not None and step == stop_after:
                return None, start
            noise = jax.random.normal(jax.random.fold_in(base, step), (4,))
            x = 0.9 * state["x"] + noise
            history = state["history"].copy()
            history[step] = float(jnp.sum(x))
            state = {"x": x, "history": history}
            ckpt.save(step + 1, state, force=step + 1 == n_steps)
    return state, start


def test_resume_is_bitwise_identical(tmp_path):
    reference, _ = _loop(tmp_path / "a", 10)
    interrupted, _ = _loop(tmp_path / "b", 10, stop_after=7)
    assert interrupted is None
    resumed, start = _loop(tmp_path / "b", 10)
    assert start == 6  # latest multiple of every=3 before the interruption at step 7
    np.testing.assert_array_equal(resumed["x"], reference["x"])
    np.testing.assert_array_equal(resumed["history"], reference["history"])
    assert isinstance(resumed["history"], np.ndarray)
    done, start = _loop(tmp_path / "b", 10)  # already complete: nothing recomputed
    assert start == 10
    np.testing.assert_array_equal(done["x"], reference["x"])


def test_bad_interval(tmp_path):
    with pytest.raises(ValueError, match="every"):
        Checkpointer(tmp_path, every=0)


def test_a_checkpoint_of_another_structure_is_a_clear_error(tmp_path):
    with Checkpointer(tmp_path / "ck") as ckpt:
        ckpt.save(1, {"a": np.zeros(3), "b": np.ones(2)}, force=True)
    with Checkpointer(tmp_path / "ck") as ckpt, pytest.raises(ValueError, match="delete that folder"):
        ckpt.restore({"a": np.zeros(3)})
