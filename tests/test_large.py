"""The blocked kernel at P = 50 000 in float32: memory stays at the output plus blocks (slow)."""

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import resource, jax, jax.numpy as jnp, numpy as np
    from deeptheory.theory.nngp import nngp_kernel
    P, d = 50_000, 16
    x = jax.random.normal(jax.random.key(0), (P, d), jnp.float32)
    K = nngp_kernel(x, activation="relu", depth=2, weight_var=2.0)
    K.block_until_ready()
    rows = np.asarray(K[::9973])           # a few full rows, checked against a small exact kernel
    idx = np.arange(0, P, 9973)
    ref = np.asarray(nngp_kernel(np.asarray(x, np.float64)[idx], np.asarray(x, np.float64), activation="relu",
                                 depth=2, weight_var=2.0))
    err = float(np.max(np.abs(rows - ref)) / np.max(np.abs(ref)))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(K.dtype, K.shape, err, peak)
    """
)


@pytest.mark.slow
def test_fifty_thousand_points_in_bounded_memory():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=1200,
                          env={"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    dtype, _, err, peak = done.stdout.split()[0], None, float(done.stdout.split()[-2]), int(done.stdout.split()[-1])
    output_bytes = 50_000**2 * 4  # 10 GB
    assert dtype == "float32"
    assert err < 1e-5  # float32 against float64: rounding only
    # The output plus blocks, the inputs and the runtime (~1 GB); a second full copy would be 20 GB.
    assert peak < output_bytes + 2 * 2**30, peak / 2**30
