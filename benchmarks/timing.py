"""The one timing rule every benchmark uses: warm up (compile) once, then the median of `repeats` calls."""

from __future__ import annotations

import time

import jax
import numpy as np

__all__ = ["median_time"]


def median_time(fn, repeats: int) -> float:
    """Median wall time of `fn()` in seconds over `repeats` calls after one warm-up call (compilation excluded)."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return float(np.median(times))
