"""Configs, the command line, resume, and the registered experiments end to end (tiny sizes)."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from deeptheory.train import cli, nngp_convergence, reproduce
from deeptheory.train.data import write_idx

TINY = dict(n_train=10, n_test=6, widths=(16, 64), draws=4, chunk=2, depths=(1,), activations=("erf",))


@pytest.fixture
def fake_fashion(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    for split, n in (("train", 60), ("t10k", 30)):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8))
    monkeypatch.setenv("DEEPTHEORY_DATA_DIR", str(tmp_path))
    return tmp_path


def test_every_preset_is_valid():
    for name, module_name in reproduce.EXPERIMENTS.items():
        module = __import__(module_name, fromlist=["PRESETS"])
        assert set(module.PRESETS) == {"quick", "paper"}, name
        for config in module.PRESETS.values():
            config.validate()


def test_overrides_and_clear_errors(capsys):
    C, presets = nngp_convergence.Config, nngp_convergence.PRESETS
    config, args = cli.parse_config(C, presets, ["--preset", "paper", "--widths", "8,16,32", "--noise", "0.5"])
    assert config.widths == (8, 16, 32) and config.noise == 0.5 and config.n_train == presets["paper"].n_train
    for argv, message in [
        (["--noise", "-1"], "noise"),
        (["--widths", "32,16"], "widths must be"),
        (["--draws", "many"], "cannot read 'many' as int"),
        (["--activations", "relu,swish"], "activations must be among"),
    ]:
        with pytest.raises(SystemExit):
            cli.parse_config(C, presets, argv)
        assert message in capsys.readouterr().err


def test_experiment_runs_resumes_and_refuses_a_different_config(fake_fashion, tmp_path):
    config = dataclasses.replace(nngp_convergence.Config(), **TINY)
    out = tmp_path / "run"
    first = cli.execute("nngp_convergence", config, nngp_convergence.run, out)
    assert {p for p in first["plots"]} == {"kernel_error_vs_width.png", "kernel_error_collapse.png",
                                           "gp_test_loss_vs_width.png"}
    assert all((out / p).stat().st_size > 1000 for p in first["plots"])
    assert first["environment"]["packages"]["jax"] and first["config"]["draws"] == 4
    row = first["metrics"]["rows"][0]
    assert set(row["kernel_error"]) == {"1", "2", "4"} and row["kernel_error"]["4"] > 0
    # A rerun on the same folder resumes from the finished checkpoint: same numbers, nothing redone.
    again = cli.execute("nngp_convergence", config, nngp_convergence.run, out)
    assert again["metrics"] == first["metrics"]
    with pytest.raises(cli.ConfigError, match="different config .*draws"):
        cli.execute("nngp_convergence", dataclasses.replace(config, draws=8), nngp_convergence.run, out)


def test_interrupted_run_resumes_to_identical_results(fake_fashion, tmp_path):
    config = dataclasses.replace(nngp_convergence.Config(), **{**TINY, "widths": (8, 16, 32)})
    whole = cli.execute("nngp_convergence", config, nngp_convergence.run, tmp_path / "whole")
    # Interrupt after the first unit by making the second one fail, then resume.
    calls = {"n": 0}
    original = nngp_convergence._ensemble_errors

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    nngp_convergence._ensemble_errors = failing
    try:
        with pytest.raises(KeyboardInterrupt):
            cli.execute("nngp_convergence", config, nngp_convergence.run, tmp_path / "cut")
    finally:
        nngp_convergence._ensemble_errors = original
    resumed = cli.execute("nngp_convergence", config, nngp_convergence.run, tmp_path / "cut")
    assert resumed["metrics"] == whole["metrics"]


def test_command_line_and_report(fake_fashion, tmp_path):
    flags = [f"--{k.replace('_', '-')}={','.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in TINY.items()]
    cmd = [sys.executable, "-m", "deeptheory.train.nngp_convergence", "--out", str(tmp_path / "cli"), *flags]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "results in" in done.stdout and json.loads((tmp_path / "cli" / "results.json").read_text())
    bad = subprocess.run([*cmd, "--n-train", "0"], capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "n_train >= 2" in bad.stderr


@pytest.mark.slow
def test_reproduce_quick_preset_writes_report(tmp_path):
    """The full `make demo` path: every registered experiment's quick preset and the report."""
    done = subprocess.run([sys.executable, "-m", "deeptheory.train.reproduce", "--preset", "quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    report = (tmp_path / "report.md").read_text()
    for name in reproduce.EXPERIMENTS:
        record = json.loads((tmp_path / name / "results.json").read_text())
        for plot in record["plots"]:
            assert f"]({name}/{plot})" in report and (tmp_path / name / plot).exists()
