"""Strict test environment, in the equinox style.

- 4 simulated CPU devices, so sharded sweeps and chains are tested without a GPU;
- rank promotion raises (a silent (P,) + (P, 1) broadcast is a classic kernel bug);
- strict dtype promotion: float32 and float64 arrays never mix implicitly, so a theory function
  cannot quietly drop to float32 or an experiment quietly rise to float64;
- float64 enabled, as inside an experiment's run and analyse (theory runs in float64; models ask for float32);
- no persistent compilation cache for the commands tests start (DEEPTHEORY_JAX_CACHE=off), so every test
  compiles what it runs and writes nothing outside its tmp_path;
- the XLA:CPU features that hang on some jaxlib versions (ynn fusion, concurrency-optimised scheduler) off
  and OpenBLAS's idle threads quiet (`cli.process_defaults`), as in every command;
- warnings are errors (pyproject.toml `filterwarnings`), with narrow exceptions listed there.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("DEEPTHEORY_JAX_CACHE", "off")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_num_cpu_devices", 4)
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")

from deeptheory.train.harness.cli import process_defaults  # noqa: E402

process_defaults()  # before the first computation, as the command line does (`cli.init_runtime`)

FASHION_DIR = "/usr/share/datasets/fashion-mnist"


@pytest.fixture
def compiles():
    """The backend compilations during the test, from JAX's compile events: `compiles.clear()` before the part that
    must compile nothing, then `assert not compiles`."""
    events = []

    def listen(event, duration, **_):
        if event == "/jax/core/compile/backend_compile_duration":
            events.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listen)
    yield events
    jax.monitoring.unregister_event_duration_listener(listen)


@pytest.fixture(scope="session")
def fashion_dir():
    if not os.path.isdir(FASHION_DIR):
        pytest.skip(f"Fashion-MNIST not installed at {FASHION_DIR} (apt-get install dataset-fashion-mnist)")
    return FASHION_DIR


@pytest.fixture(scope="session", autouse=True)
def _one_import_path():
    """The package is imported as `deeptheory.*` only: a stray `import train...` (possible from the repository root)
    would load a second copy of a module, with its own globals, and tests patching one copy would miss the other."""
    yield
    import sys

    stray = sorted(m for m in sys.modules if m.split(".")[0] in ("theory", "models", "train", "benchmarks"))
    assert not stray, f"modules imported outside the deeptheory namespace: {stray}"
