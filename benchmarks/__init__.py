"""Benchmarks: each script times our code against a baseline in the same run (figures in benchmarks/RESULTS.md)."""

from deeptheory.train.harness.cli import process_defaults

# before any benchmark computes: XLA reads XLA_FLAGS when JAX first computes, OpenBLAS its timeout when JAX loads it
process_defaults()
