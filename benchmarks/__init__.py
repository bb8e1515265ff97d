"""Benchmarks: each script times our code against a baseline in the same run (figures in benchmarks/RESULTS.md)."""

from deeptheory.train.harness.cli import avoid_known_xla_hangs, quiet_idle_blas_threads

# before any benchmark computes: XLA reads XLA_FLAGS when JAX first computes, OpenBLAS its timeout when JAX loads it
avoid_known_xla_hangs()
quiet_idle_blas_threads()
