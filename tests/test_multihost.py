"""Multi-host (jax.distributed) on one machine: 2 processes × 2 simulated CPU devices give the same results as
this process alone with its 4 devices.

Each process (tests/_multihost_worker.py) joins a coordinator on 127.0.0.1 (cross-process CPU collectives: gloo),
runs a sharded sweep, sharded and checkpointed MCMC chains, and write_results. Results are a function of
(seed, index/chain, step), not of the device layout, so both processes must end with identical, fully gathered
NumPy results equal to a single-process run of the same calls; only process 0 may write results.json.
"""

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np

WORKER_PATH = Path(__file__).with_name("_multihost_worker.py")
N_PROCESSES = 2
TIMEOUT_S = 60  # both processes, start to exit; a hung collective is killed after this


def _worker_module():
    spec = importlib.util.spec_from_file_location("_multihost_worker", WORKER_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(workdir: Path) -> list[tuple[subprocess.Popen, Path]]:
    port = _free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
    started = []
    for i in range(N_PROCESSES):
        log = workdir / f"process{i}.log"
        with open(log, "w") as out:
            cmd = [sys.executable, str(WORKER_PATH), str(port), str(N_PROCESSES), str(i), str(workdir)]
            started.append((subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT), log))
    return started


def _wait(started, deadline: float) -> str | None:
    """None when every process exited with status 0; otherwise what went wrong, with every log. A process that
    fails (or the deadline) kills the others at once: they would wait in a collective until their timeouts."""
    procs = [p for p, _ in started]
    problem = None
    try:
        while None in (codes := [p.poll() for p in procs]):  # poll every process (any() would stop early)
            if any(code not in (None, 0) for code in codes):
                problem = "a process failed"
                break
            if time.monotonic() > deadline:
                problem = f"timed out after {TIMEOUT_S} s"
                break
            time.sleep(0.05)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    if problem is None and all(p.returncode == 0 for p in procs):
        return None
    problem = problem or "a process failed"
    logs = "\n".join(f"--- process {i} (exit status {p.returncode}):\n{log.read_text()[-4000:]}"
                     for i, (p, log) in enumerate(started))
    return f"{problem}\n{logs}"


def _steps(checkpoint_dir: Path) -> list[str]:
    return sorted(p.name for p in checkpoint_dir.iterdir() if p.is_dir())


def test_two_processes_match_one(tmp_path):
    worker = _worker_module()
    multi, single = tmp_path / "multi", tmp_path / "single"
    multi.mkdir()
    single.mkdir()
    started = _start(multi)
    deadline = time.monotonic() + TIMEOUT_S
    try:  # the single-process reference runs meanwhile, here, on this process's 4 devices (tests/conftest.py)
        assert jax.process_count() == 1 and jax.device_count() == 4
        reference = worker.compute(single)
    finally:
        problem = _wait(started, deadline)
    assert problem is None, problem

    runs = [dict(np.load(multi / "dump" / f"process{i}.npz")) for i in range(N_PROCESSES)]
    assert set(runs[0]) == set(runs[1]) == set(reference)
    for name, expected in reference.items():
        for i, run in enumerate(runs):
            assert run[name].dtype == expected.dtype and run[name].shape == expected.shape, (i, name)
            # identical on both processes: one gathered result, not two local views
            np.testing.assert_array_equal(run[name], runs[0][name], err_msg=f"process {i} vs 0: {name}")
        # = the single-process run up to float rounding (only the device layout differs)
        np.testing.assert_allclose(runs[0][name], expected, rtol=1e-13, atol=1e-15, err_msg=name)
    for prefix in ("chains", "sweep_seed"):  # sanity: results are not trivially equal
        assert len(np.unique(runs[0][f"{prefix}/" + ("final/0" if prefix == "chains" else "norm")])) > 1
    for name in reference:  # a restored, finished run returns the same result on every process
        if name.startswith("chains/"):
            np.testing.assert_array_equal(runs[0][name], runs[0][name.replace("chains/", "chains_restored/")])

    # checkpoints: one shared folder, the same steps as a single-process run
    assert _steps(multi / "chains") == _steps(single / "chains") == ["2", "4"]

    # results.json: process 0 wrote it, process 1 wrote nothing; its metrics are the single-process ones
    assert sorted(p.name for p in (multi / "results").iterdir()) == ["results.json"]
    written = json.loads((multi / "results" / "results.json").read_text())
    assert written["metrics"]["written_by"] == 0
    assert written["environment"]["process_count"] == 2 and written["environment"]["device_count"] == 4
    assert (multi / "results_process0" / "results.json").is_file()
    assert not (multi / "results_process1").exists()
    expected = json.loads((single / "results" / "results.json").read_text())
    assert written["metrics"].keys() == expected["metrics"].keys()
    for key, value in expected["metrics"].items():
        np.testing.assert_allclose(written["metrics"][key], value, rtol=1e-13, atol=1e-15, err_msg=key)
    np.testing.assert_array_equal(written["metrics"]["sharded"], np.arange(4.0))
