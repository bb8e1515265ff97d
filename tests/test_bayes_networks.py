"""train.experiments.bayes_networks end to end at tiny sizes: rows, diagnostics, resume after a kill from outside, errors."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from deeptheory.train.experiments import bayes_networks
from deeptheory.train.harness import cli

TINY = dict(n_train=12, n_test=10, image_side=7, widths=(8,), depths=(1,), chains=4, sample_time=4.0,
            burn_in_time=1.0, measure_time=0.25, checkpoint_every=2)


def test_rows_hold_sampled_theory_and_nngp(fashion_dir, tmp_path):
    config = dataclasses.replace(bayes_networks.Config(), **{**TINY, "activations": ("erf", "relu"), "depths": (1, 2)})
    record = cli.execute(bayes_networks.EXPERIMENT, config, tmp_path / "run")
    rows, summary = record["metrics"]["rows"], record["metrics"]["summary"]
    assert len(rows) == 4 and {r["theory_variant"] for r in rows} == {"nested", "noncentral"}
    for r in rows:
        for key in ("width", "depth", "sampled", "error", "theory", "nngp"):
            assert np.isfinite(r[key]), key
        assert r["error"] > 0 and r["diagnostics"]["ess"] > 0 and r["kernel"]["scale_theory"] > 0
        assert np.isclose(r["bias2"]["sampled"] + r["variance"]["sampled"], r["sampled"])
        # every applicable variant: the resolved one is the row's theory; erf's nested has vanilla beside it
        variants = r["theory_variants"]
        assert variants[r["theory_variant"]]["test_loss"] == r["theory"]
        assert set(variants) == ({"nested", "vanilla"} if r["activation"] == "erf" else {"noncentral", "vanilla"})
        assert np.isfinite(r["diagnostics"]["drift_z"]) and np.isfinite(r["kernel"]["target_alignment"])
        # one agreement test (analysis): inside the 1-SE error bar or within 3 %
        assert r["meets"]["theory"] == (abs(r["theory"] - r["sampled"]) <= r["error"]
                                        or abs(r["theory"] / r["sampled"] - 1) <= 0.03)
        q = r["readout_q"]
        assert r["meets"]["readout_q"] == (abs(q["theory"] - q["sampled"]) <= q["error"]
                                           or abs(q["relative_deviation"]) <= 0.03)
    assert summary["points"] == 4 and summary["kernel_points"] == 4
    for key in ("theory", "nngp", "readout_q"):
        assert summary[f"{key}_meets"] == sum(r["meets"][key] for r in rows)
    assert summary["kernel_closer_to_K_R"] == sum(r["kernel"]["closer_to_K_R"] for r in rows)
    assert all((tmp_path / "run" / p).stat().st_size > 1000 for p in record["plots"])


def test_cnn_rows(fashion_dir, tmp_path):
    config = dataclasses.replace(bayes_networks.Config(), **{**TINY, "architecture": "cnn", "patches": (7,)})
    rows = cli.execute(bayes_networks.EXPERIMENT, config, tmp_path / "run")["metrics"]["rows"]
    assert rows[0]["theory_variant"] == "conv" and np.isfinite(rows[0]["kernel"]["Q_rel_distance_to_theory"])
    assert set(rows[0]["theory_variants"]) == {"conv", "local_nngp", "pooled_nngp"}


def _cmd(out: Path, **overrides):
    args = [sys.executable, "-m", "deeptheory.train", "bayes_networks", "--out", str(out)]
    for key, value in {**TINY, **overrides}.items():
        text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
        args += [f"--{key.replace('_', '-')}", text]
    return args


@pytest.mark.slow
def test_killed_run_resumes_bitwise(fashion_dir, tmp_path):
    """Kill the process from outside once a checkpoint is on disk (SIGKILL: no cleanup), rerun the same
    command, and compare every measured number with an uninterrupted run: identical to the last bit."""
    overrides = dict(sample_time=60.0, widths=(8, 16))
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    clean = subprocess.run(_cmd(tmp_path / "clean", **overrides), capture_output=True, text=True, env=env,
                           timeout=600)
    assert clean.returncode == 0, clean.stderr
    out = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(out, **overrides), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        steps = list((out / "checkpoints").glob("*/[0-9]*")) if (out / "checkpoints").exists() else []
        if len(steps) >= 1:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed; make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "results.json").exists()
    resumed = subprocess.run(_cmd(out, **overrides), capture_output=True, text=True, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    a = json.loads((tmp_path / "clean" / "results.json").read_text())["metrics"]
    b = json.loads((out / "results.json").read_text())["metrics"]
    assert a == b


@pytest.mark.parametrize(("argv", "message"), [
    (["--temperatures", "0"], "--temperatures must be > 0"),
    (["--step", "-1"], "--step must be >= 0"),
    (["--chains", "1"], "--chains must be >= 2"),
    (["--image-side", "5"], "--image-side must divide 28"),
    (["--sampler", "hmc"], "--sampler must be one of"),
    (["--weight-var", "0"], "--weight-var (the weight variance σ²) must be > 0"),
    (["--architecture", "cnn", "--patches", "2,2"], "for the CNN the depth is the number of --patches, 2"),
])
def test_bad_config_is_refused(argv, message, capsys):
    with pytest.raises(SystemExit):
        cli.parse_config(bayes_networks.Config, bayes_networks.PRESETS, argv)
    assert message in capsys.readouterr().err


def test_more_points_than_the_data_holds_is_a_clear_error(fashion_dir, tmp_path):
    config = dataclasses.replace(bayes_networks.Config(), **{**TINY, "n_train": 10**6})
    with pytest.raises(cli.ConfigError, match="--n-train 1000000: .* enough for a balanced --n-train of at most"):
        cli.execute(bayes_networks.EXPERIMENT, config, tmp_path / "run")


def test_readout_norm_is_measured_on_the_readout_at_depth_ten():
    """Flax orders parameters as strings (W10 before W2): the readout is picked by name, not position — sampled
    (q̂ = |v|²/N) and collapsed (E[q̂ | θ_h] from the readout's exact conditional law)."""
    import jax
    import jax.numpy as jnp

    from deeptheory.models.collapsed import readout_posterior, split_readout
    from deeptheory.train.experiments.bayes_networks.architectures import Data

    mlp = bayes_networks.ARCHITECTURES["mlp"]
    x = jnp.asarray(np.random.default_rng(0).normal(size=(5, 49)), jnp.float32)
    y = jnp.asarray(np.random.default_rng(1).normal(size=5), jnp.float32)
    data = Data(x, y, x, jnp.zeros(5, jnp.float32))
    config = dataclasses.replace(bayes_networks.Config(), **TINY, collapsed=False)
    model = mlp.model(config, "erf", 10, 8)
    params = model.init(jax.random.key(0), x)
    trace, _, pooled = mlp.measure(config, model, data, 10, 8, 0.01)(params)
    v = params["params"]["W10"]
    assert v.shape == (8, 1)
    np.testing.assert_allclose(trace["readout_q"], jnp.sum(v**2) / 8, rtol=1e-6)
    hidden, _ = split_readout(params, "W10")
    trace, _, _ = mlp.measure(dataclasses.replace(config, collapsed=True), model, data, 10, 8, 0.01)(hidden)
    _, phi = model.apply(params, x, return_features=True)
    post = readout_posterior(phi, y, phi, 0.01, config.weight_var)
    np.testing.assert_allclose(trace["readout_q"], post.sq_norm / 8, rtol=1e-6)


def test_kernel_shape_residual_and_target_alignment():
    """A posterior kernel that is a scalar multiple of K (the depth-1 ansatz) has no shape residual and K's
    alignment; adding the targets' direction (a kernel that learnt the task) raises the alignment, and the
    residual is the norm of the added part orthogonal to K, relative to the kernel's. A constant added to the
    kernel (what learning the 0/1 offset alone does) leaves the centred alignment as it was."""
    from deeptheory.train.experiments.bayes_networks.architectures import ARCHITECTURES, UnitTheory

    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 5))
    K = X @ X.T / 5
    y = (rng.random(20) > 0.5).astype(float)
    theory = UnitTheory(None, None, 1.3, "nested", {"K_R": 1.3 * K, "K": K}, {})
    compare = ARCHITECTURES["mlp"].compare_kernel
    scaled, _ = compare({"qK": 2.0 * K}, theory, 0.03, y)
    assert scaled["shape_residual"] == pytest.approx(0, abs=1e-12)
    assert scaled["scale_fit"] == pytest.approx(2.0)
    assert scaled["target_alignment"] == pytest.approx(scaled["target_alignment_nngp"], rel=1e-12)
    assert scaled["target_alignment_theory"] == pytest.approx(scaled["target_alignment_nngp"], rel=1e-12)  # K_R = 1.3K
    learnt = 2.0 * K + 0.5 * np.outer(y, y)
    m, _ = compare({"qK": learnt}, theory, 0.03, y)
    assert m["target_alignment"] > m["target_alignment_nngp"]
    yy = np.outer(y, y)
    orthogonal = 0.5 * (yy - np.sum(yy * K) / np.sum(K * K) * K)
    assert m["shape_residual"] == pytest.approx(np.linalg.norm(orthogonal) / np.linalg.norm(learnt), rel=1e-10)
    offset, _ = compare({"qK": 2.0 * K + 0.5}, theory, 0.03, y)
    assert offset["target_alignment"] == pytest.approx(scaled["target_alignment"], rel=1e-10)
    y_c = y - y.mean()
    K_c = K - K.mean(0) - K.mean(1)[:, None] + K.mean()
    assert scaled["target_alignment"] == pytest.approx(y_c @ K_c @ y_c / (np.linalg.norm(K_c) * (y_c @ y_c)))
