"""Stage 1 + Stage 2 of the two-stage denoiser (`theory.particle_flow.two_stage_denoise`) at scale.

    python -m deeptheory.benchmarks.particles                          # N = 8192, d = 16, 100 layers; then N = 10⁵, 2 layers
    python -m deeptheory.benchmarks.particles --n 2048 --layers 20 --large-n 0      # quick

Three implementations of the same computation, float32, in the same run:
- ours, chunked: the online-softmax attention over key chunks and query blocks (`chunk_size`), memory
  O(chunk² + N d) per layer;
- dense: the same function with chunk_size=None, one (N, N) logit matrix per layer;
- NumPy: a straightforward NumPy implementation (the (N, N) logits, max-subtracted softmax) — the baseline.
Each runs in its own subprocess. Printed: wall time (median of `--repeats` after a warm-up, compilation
excluded; NumPy once), ratios, the largest difference between the outputs, and peak memory (peak RSS minus the
RSS before the computation: XLA's `memory_analysis` reports no temp buffer for the dense program on CPU, so we
measure). Then N = `--large-n` with the chunked version only (the dense one would need an (N, N) matrix).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from deeptheory.benchmarks.timing import median_time
from deeptheory.theory.particle_flow import two_stage_denoise


def numpy_two_stage(y, *, sigma2, eps, step, depth):
    def attend(q, k, bandwidth):
        logits = (q @ k.T - 0.5 * np.sum(k * k, axis=1)[None, :]) / bandwidth
        logits -= logits.max(axis=1, keepdims=True)
        w = np.exp(logits)
        return (w @ k) / w.sum(axis=1, keepdims=True)

    x = y.copy()
    for _ in range(depth):
        x = x + step * (attend(x, x, eps) - x)
    return attend(y, x, sigma2)


def _worker(kind: str, n: int, d: int, layers: int, chunk: int, repeats: int) -> dict:
    """Time one implementation in this (fresh) process; peak memory = peak RSS − RSS before the computation."""
    params = dict(sigma2=1.0, eps=0.5, step=0.1)
    y = np.asarray(jax.random.normal(jax.random.key(0), (n, d), jnp.float32)) * np.float32(np.sqrt(2.0))
    base = _rss_mb()
    if kind == "numpy":
        start = time.perf_counter()
        out = numpy_two_stage(y, depth=layers, **params)
        seconds = time.perf_counter() - start
    else:
        fn = jax.jit(lambda y: two_stage_denoise(y, chunk_size=chunk if kind == "chunked" else None, depth=layers,
                                                 **params))
        y_dev = jnp.asarray(y)
        seconds = median_time(lambda: fn(y_dev), repeats)
        out = np.asarray(fn(y_dev))
    return {"seconds": seconds, "peak_mb": _peak_rss_mb() - base, "out": out}


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _run(kind, n, d, layers, chunk, repeats, tmp) -> dict:
    """One implementation in a subprocess (so each peak RSS is its own); outputs come back through an .npy."""
    path = os.path.join(tmp, f"{kind}.npy")
    cmd = [sys.executable, "-m", "deeptheory.benchmarks.particles", "--worker", kind, "--n", str(n), "--d", str(d),
           "--layers", str(layers), "--chunk", str(chunk), "--repeats", str(repeats), "--save", path]
    line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    record = json.loads(line)
    record["out"] = np.load(path)
    return record


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=8192)
    parser.add_argument("--d", type=int, default=16)
    parser.add_argument("--layers", type=int, default=100)
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--large-n", type=int, default=100_000, help="0 skips the large run")
    parser.add_argument("--large-layers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", choices=("chunked", "dense", "numpy"), help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        record = _worker(args.worker, args.n, args.d, args.layers, args.chunk, args.repeats)
        np.save(args.save, record.pop("out"))
        print(json.dumps(record))
        return
    n, d, L = args.n, args.d, args.layers
    print(f"device: {jax.devices()[0].device_kind} × {jax.device_count()}, N = {n}, d = {d}, {L} layers, "
          f"chunk {args.chunk}, float32")
    with tempfile.TemporaryDirectory() as tmp:
        runs = {kind: _run(kind, n, d, L, args.chunk, args.repeats, tmp) for kind in ("chunked", "dense", "numpy")}
        print(f"{'':16s}{'time':>10s}{'peak memory':>16s}")
        for kind, label in (("chunked", "ours, chunked"), ("dense", "dense (jax)"), ("numpy", "NumPy (once)")):
            print(f"{label:16s}{runs[kind]['seconds']:9.2f}s{runs[kind]['peak_mb']:13.0f} MB")
        c, dn, nu = runs["chunked"], runs["dense"], runs["numpy"]
        print(f"chunked vs dense: ×{dn['seconds'] / c['seconds']:.2f} faster, ×{dn['peak_mb'] / max(c['peak_mb'], 1):.1f} "
              f"less memory; chunked vs NumPy: ×{nu['seconds'] / c['seconds']:.2f} faster")
        print(f"max |chunked − dense| = {np.max(np.abs(c['out'] - dn['out'])):.2e}, max |chunked − NumPy| = "
              f"{np.max(np.abs(c['out'] - nu['out'])):.2e} (float32; outputs are O(1))")
        if args.large_n:
            N, Ll = args.large_n, args.large_layers
            big = _run("chunked", N, d, Ll, args.chunk, 1, tmp)
            dense_gb = N * N * 4 / 2**30
            print(f"N = {N}, {Ll} layers + readout, chunked: {big['seconds']:.1f} s, peak memory {big['peak_mb']:.0f} MB "
                  f"(one (N, N) float32 logit matrix alone would be {dense_gb:.1f} GB); output finite: "
                  f"{bool(np.all(np.isfinite(big['out'])))}")


if __name__ == "__main__":
    main()
