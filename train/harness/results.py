"""results.json: what ran (config), on what (versions, commit, device), how long, and what it measured.

    write_results(out_dir, name=..., config=..., metrics=..., wall_time_s=..., plots=..., data=..., timing=...)
    record = read_results(out_dir)       # what `python -m deeptheory.train report` redraws from

Metrics pass through `to_jsonable` (dataclasses, NamedTuples, arrays → plain JSON; non-finite floats → null).
`code_fingerprint` hashes the package's .py files, so `train.harness.cli.execute` can tell a finished run of the
same code (metrics reused) from one of other code (checkpoints re-analysed). Multi-host: process 0 writes.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import hashlib
import importlib
import importlib.metadata
import json
import math
import platform
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
from jax.experimental import multihost_utils

__all__ = ["environment", "code_fingerprint", "package_versions", "to_jsonable", "write_results", "read_results"]

PACKAGES = ("jax", "jaxlib", "flax", "optax", "chex", "orbax-checkpoint", "numpy", "matplotlib", "tqdm", "mnist1d")


def _git_commit() -> str:
    try:
        root = Path(__file__).resolve().parent.parent
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, timeout=5)
        if commit.returncode != 0:
            return "unknown"
        return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


_CODE_PACKAGES = ("deeptheory.theory", "deeptheory.models", "deeptheory.train")


def fingerprinted_files() -> list[tuple[str, Path]]:
    """(name, path) of every .py file of the packages that compute results, subpackages included, sorted."""
    files = []
    for package in _CODE_PACKAGES:
        folder = Path(importlib.import_module(package).__path__[0])
        files += [(f"{package}/{path.relative_to(folder).as_posix()}", path) for path in sorted(folder.rglob("*.py"))]
    return files


@functools.cache
def code_fingerprint() -> str:
    """sha256 (16 hex digits) of every .py file of the packages that compute results (theory, models, train, with
    their subpackages): two runs with the same fingerprint, config, data and package versions compute the same
    metrics. Cached: the code a process imported is the code it runs."""
    digest = hashlib.sha256()
    for name, path in fingerprinted_files():
        digest.update(f"{name}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def package_versions() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def environment() -> dict:
    devices = jax.devices()
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "git_commit": _git_commit(),
        "code_fingerprint": code_fingerprint(),
        "backend": jax.default_backend(),
        "device_kind": devices[0].device_kind,
        "device_count": len(devices),
        "process_count": jax.process_count(),
    }


def to_jsonable(obj):
    """Dataclasses, NamedTuples, arrays and NumPy scalars → plain JSON; non-finite floats → None."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if hasattr(obj, "_asdict"):
        return to_jsonable(obj._asdict())
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray | jax.Array):
        return to_jsonable(np.asarray(obj).tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_results(out_dir, *, name: str, config, metrics: dict, wall_time_s: float, plots=(), data=None,
                  timing=None) -> Path:
    """Write <out_dir>/results.json (process 0 only) and return its path.

    `data`: the record of the data actually loaded (train.data's task.info); `timing`: the invocation ledger
    (train.harness.cli); `wall_time_s` is the compute time of the invocations that did the work.

    Multi-host: every process must call this (it is a collective): metrics sharded across processes are
    gathered first, and no process returns before process 0 has written the file."""
    out_dir = Path(out_dir)
    path = out_dir / "results.json"
    if jax.process_count() == 1:
        _write(path, out_dir, name, config, metrics, wall_time_s, plots, data, timing)
        return path
    metrics = _gathered(metrics)
    try:
        if jax.process_index() == 0:
            _write(path, out_dir, name, config, metrics, wall_time_s, plots, data, timing)
    finally:
        multihost_utils.sync_global_devices("deeptheory.train.harness.results.write_results")
    return path


def _gathered(obj):
    """`obj` with every array sharded across processes all-gathered to NumPy (a collective), containers walked
    as `to_jsonable` walks them (dataclasses and NamedTuples become dicts, key order kept)."""
    if isinstance(obj, jax.Array) and not obj.is_fully_addressable:
        return multihost_utils.process_allgather(obj, tiled=True)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _gathered(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if hasattr(obj, "_asdict"):
        return _gathered(obj._asdict())
    if isinstance(obj, dict):
        return {k: _gathered(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_gathered(v) for v in obj]
    return obj


def _write(path: Path, out_dir: Path, name, config, metrics, wall_time_s, plots, data, timing) -> None:
    record = {
        "experiment": name,
        "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "wall_time_s": wall_time_s,
        "config": config,
        "data": data,
        "timing": timing,
        "environment": environment(),
        "plots": [str(Path(p).relative_to(out_dir)) for p in plots],
        "metrics": metrics,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(to_jsonable(record), indent=2) + "\n")
    tmp.replace(path)  # atomic: a killed run never leaves half a results.json


def read_results(out_dir) -> dict:
    return json.loads((Path(out_dir) / "results.json").read_text())
