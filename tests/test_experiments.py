"""Configs, the command line, the data record, resume, timing, reports, and the registered experiments end to end."""

import dataclasses
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from deeptheory.train.data import write_idx
from deeptheory.train.experiments import bayes_networks, nngp_convergence
from deeptheory.train.harness import cli, registry, report

TINY = dict(n_train=10, n_test=6, widths=(16, 64), draws=4, chunk=2, depths=(1,), activations=("erf",))
QUICK_FLAGS = {"nngp_convergence": dict(widths=(32, 64), draws=8, chunk=8, depths=(1,)),
               "bayes_networks": dict(widths=(32,), depths=(1,), chains=4, burn_in_time=1.0, sample_time=4.0,
                                      measure_time=0.5)}


def _fashion_dir(path, n_train=60, n_test=30):
    rng = np.random.default_rng(0)
    path.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        write_idx(path / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(path / f"{split}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8))
    return path


@pytest.fixture
def fake_fashion(tmp_path, monkeypatch):
    directory = _fashion_dir(tmp_path / "fashion")
    monkeypatch.setenv("DEEPTHEORY_DATA_DIR", str(directory))
    return directory


@pytest.fixture
def no_fashion(monkeypatch):
    """A machine without the Debian package and without a data folder: the newcomer's machine."""
    monkeypatch.setattr("deeptheory.train.data.FASHION_MNIST_DIRS", ("/nonexistent/fashion-mnist",))
    monkeypatch.delenv("DEEPTHEORY_DATA_DIR", raising=False)


def test_every_preset_is_valid_and_every_field_documented():
    for name in registry.EXPERIMENTS:
        experiment = registry.get(name)
        assert experiment.name == name and {"quick", "paper"} <= set(experiment.presets), name
        # beyond quick and paper only presets with committed results that a test checks: the study's parts
        # (tests/test_study_results.py) and rf_scaling's claims (tests/test_rf_results.py)
        assert all(p.startswith("study-") or (name, p) == ("rf_scaling", "claims")
                   for p in set(experiment.presets) - {"quick", "paper"}), name
        for config in experiment.presets.values():
            config.validate()
        for field in dataclasses.fields(experiment.Config):
            assert field.metadata.get("help"), f"{name}.{field.name} has no help text"
            if field.type not in ("str", str) and not field.metadata.get("choices"):  # numbers: their valid range
                assert field.metadata.get("valid"), f"{name}.{field.name} does not state its valid range"


def test_help_names_meaning_choices_and_preset_values(capsys):
    with pytest.raises(SystemExit):
        cli.parse_config(nngp_convergence.Config, nngp_convergence.PRESETS, ["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--n-train VALUE training points P; integer, ≥ 2; quick: 64, paper: 512" in text
    assert "among linear, relu, erf, gelu, tanh" in text and "every preset: 0.01" in text


def test_overrides_and_clear_errors(capsys):
    C, presets = nngp_convergence.Config, nngp_convergence.PRESETS
    config, args = cli.parse_config(C, presets, ["--preset", "paper", "--widths", "8,16,32", "--temperature", "0.5"])
    assert config.widths == (8, 16, 32) and config.temperature == 0.5 and config.n_train == presets["paper"].n_train
    for argv, message in [
        (["--temperature", "-1"], "--temperature must be > 0"),  # a negative number is a value, not a flag
        (["--temperature=-1e-3"], "--temperature must be > 0"),
        (["--widths", "32,16"], "widths must be"),
        (["--draws", "many"], "cannot read 'many' as integer"),
        (["--activations", "relu,swish"], "activations must be among"),
        (["--width", "32"], "unknown flag --width; did you mean --widths?"),  # never a silent prefix match
        (["--dataset", "mnist"], "dataset must be one of"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            cli.parse_config(C, presets, argv)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and message in err, (argv, err)
        assert len(err.strip().splitlines()) == 1, err  # one line, not the usage of 17 flags
    rf = registry.get("rf_scaling")
    with pytest.raises(SystemExit):
        cli.parse_config(rf.Config, rf.presets, ["--s-values", "-0.5,1"])  # a list starting with a minus sign
    assert "--s-values must be > 0" in capsys.readouterr().err
    config, _ = cli.parse_config(rf.Config, rf.presets, ["--target-shift", "-0.5"])  # the README's example
    assert config.target_shift == -0.5
    with pytest.raises(SystemExit):
        cli.parse_config(rf.Config, rf.presets, ["--target-shift", "-0.8"])  # a = 0.75 - 0.8 < 0: no decay
    assert "--target-shift -0.8 gives a task power k^-a with a = s + shift = -0.05" in capsys.readouterr().err


def test_experiment_runs_resumes_keeps_its_wall_time_and_refuses_a_different_config(fake_fashion, tmp_path, monkeypatch):
    config = dataclasses.replace(nngp_convergence.Config(), **TINY)
    out = tmp_path / "run"
    first = cli.execute(nngp_convergence.EXPERIMENT, config, out)
    assert set(first["plots"]) == {"kernel_error_vs_width.png", "kernel_error_collapse.png", "gp_test_loss_vs_width.png"}
    assert all((out / p).stat().st_size > 1000 for p in first["plots"])
    assert first["environment"]["packages"]["jax"] and first["config"]["draws"] == 4
    assert first["data"]["dataset"] == "fashion-mnist" and first["data"]["source"] == str(fake_fashion)
    assert first["data"]["n_train"] == 10 and first["data"]["input_dim"] == 784 and first["data"]["fingerprint"]
    assert first["timing"]["last"] == "fresh" and first["wall_time_s"] == first["timing"]["compute_s"] > 0
    row = first["metrics"]["rows"][0]
    assert set(row["kernel_error"]) == {"1", "2", "4"} and row["kernel_error"]["4"] > 0
    # A rerun on the same folder with the same code reuses the finished metrics (nothing recomputed); with other
    # code it re-analyses the finished checkpoints. Either way the same numbers, and the wall time of the run that
    # did the work is kept (the reuse and the re-analysis are recorded as such).
    again = cli.execute(nngp_convergence.EXPERIMENT, config, out)
    assert again["metrics"] == first["metrics"] and again["wall_time_s"] == first["wall_time_s"]
    assert again["timing"]["last"] == "reused" and len(again["timing"]["invocations"]) == 2
    monkeypatch.setattr(cli, "code_fingerprint", lambda: "other code")
    analysed = cli.execute(nngp_convergence.EXPERIMENT, config, out)
    assert analysed["metrics"] == first["metrics"] and analysed["wall_time_s"] == first["wall_time_s"]
    assert analysed["timing"]["last"] == "reanalysed" and len(analysed["timing"]["invocations"]) == 3
    # Another config: refused, every difference on a line of its own, a fresh folder suggested.
    other = dataclasses.replace(config, draws=8, chunk=4, temperature=0.1, weight_var=2.0, bias_var=0.5, seed=3, depths=(2,))
    with pytest.raises(cli.ConfigError) as refused:
        cli.execute(nngp_convergence.EXPERIMENT, other, out)
    lines = str(refused.value).splitlines()
    assert "different config or data:" in lines[0] and "  --draws: 4 → 8" in lines and "  --depths: 1 → 2" in lines
    assert len([line for line in lines if line.startswith("  --")]) == 7 and "more" not in str(refused.value)
    assert f"--out {out}-2" in lines[-1]


def test_other_data_in_the_same_folder_is_refused_never_mixed(fake_fashion, tmp_path, monkeypatch):
    """The issue's scenario: a run on the MNIST-1D fallback, then Fashion-MNIST appears, same --out."""
    config = dataclasses.replace(nngp_convergence.Config(), **TINY)
    out = tmp_path / "run"
    monkeypatch.delenv("DEEPTHEORY_DATA_DIR")
    monkeypatch.setattr("deeptheory.train.data.FASHION_MNIST_DIRS", ())
    fallback = cli.execute(nngp_convergence.EXPERIMENT, config, out)
    assert fallback["data"]["dataset"] == "mnist1d" and "not installed" in fallback["data"]["note"]
    monkeypatch.setattr("deeptheory.train.data.FASHION_MNIST_DIRS", (str(fake_fashion),))  # now "installed"
    with pytest.raises(cli.ConfigError, match="data.dataset: 'mnist1d' → 'fashion-mnist'"):
        cli.execute(nngp_convergence.EXPERIMENT, config, out)
    assert json.loads((out / "results.json").read_text())["data"]["dataset"] == "mnist1d"  # untouched


def test_bad_data_is_an_error_and_does_not_claim_the_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("DEEPTHEORY_DATA_DIR", raising=False)
    out = tmp_path / "run"
    base = dataclasses.replace(nngp_convergence.Config(), **TINY)
    for data_dir, message in [(tmp_path / "missing", "--data-dir .*missing does not exist"),
                              (tmp_path, "holds no complete set of IDX files")]:
        with pytest.raises(cli.ConfigError, match=message):
            cli.execute(nngp_convergence.EXPERIMENT, dataclasses.replace(base, data_dir=str(data_dir)), out)
        assert not out.exists()  # the corrected command must not be refused as "a different config"
    monkeypatch.setenv("DEEPTHEORY_DATA_DIR", str(tmp_path / "also-missing"))
    with pytest.raises(cli.ConfigError, match=r"\$DEEPTHEORY_DATA_DIR .*also-missing does not exist"):
        cli.execute(nngp_convergence.EXPERIMENT, base, out)
    monkeypatch.setenv("DEEPTHEORY_DATA_DIR", str(_fashion_dir(tmp_path / "fashion")))
    with pytest.raises(cli.ConfigError, match="class 12 does not occur .* its classes are 0 = T-shirt/top"):
        cli.execute(nngp_convergence.EXPERIMENT, dataclasses.replace(base, classes=(0, 12)), out)
    assert not out.exists()
    assert cli.execute(nngp_convergence.EXPERIMENT, base, out)["data"]["dataset"] == "fashion-mnist"


def test_code_fingerprint_covers_every_module_that_computes_results():
    """A change in any .py file of theory/, models/ or train/ — subpackages included — must change the fingerprint,
    or a finished run of older code would be reused instead of re-analysed."""
    from deeptheory.train.harness.results import fingerprinted_files

    names = {name for name, _ in fingerprinted_files()}
    root = pathlib.Path(nngp_convergence.__file__).resolve().parents[3]
    on_disk = {f"deeptheory.{top}/{path.relative_to(root / top).as_posix()}"
               for top in ("theory", "models", "train") for path in (root / top).rglob("*.py")}
    assert names == on_disk and "deeptheory.train/experiments/nngp_convergence/analysis.py" in names


def test_interrupted_run_resumes_to_identical_results(fake_fashion, tmp_path):
    config = dataclasses.replace(nngp_convergence.Config(), **{**TINY, "widths": (8, 16, 32)})
    whole = cli.execute(nngp_convergence.EXPERIMENT, config, tmp_path / "whole")
    # Interrupt after the first unit by making the second one fail, then resume.
    calls = {"n": 0}
    measure = sys.modules["deeptheory.train.experiments.nngp_convergence.measure"]
    original = measure._ensemble_errors

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    measure._ensemble_errors = failing
    try:
        with pytest.raises(KeyboardInterrupt):
            cli.execute(nngp_convergence.EXPERIMENT, config, tmp_path / "cut")
    finally:
        measure._ensemble_errors = original
    resumed = cli.execute(nngp_convergence.EXPERIMENT, config, tmp_path / "cut")
    assert resumed["metrics"] == whole["metrics"]
    kinds = [e["kind"] for e in resumed["timing"]["invocations"]]
    assert kinds == ["interrupted", "resumed"] and resumed["timing"]["last"] == "resumed"


def test_randomness_follows_values_not_positions(fake_fashion, tmp_path):
    """The same (activation, depth, width) point draws the same networks whatever else is in the lists."""
    config = dataclasses.replace(nngp_convergence.Config(), **{**TINY, "activations": ("relu", "erf")})
    both = cli.execute(nngp_convergence.EXPERIMENT, config, tmp_path / "both")["metrics"]["rows"]
    alone = cli.execute(nngp_convergence.EXPERIMENT, dataclasses.replace(config, activations=("erf",), widths=(64, 128)),
                        tmp_path / "alone")["metrics"]["rows"]
    pick = [r for r in both if r["activation"] == "erf" and r["width"] == 64]
    assert pick[0]["kernel_error"] == alone[0]["kernel_error"]


def test_command_line_and_report(fake_fashion, tmp_path):
    flags = [f"--{k.replace('_', '-')}={','.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in TINY.items()]
    cmd = [sys.executable, "-m", "deeptheory.train", "nngp_convergence", "--out", str(tmp_path / "cli"), *flags]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "results in" in done.stdout and json.loads((tmp_path / "cli" / "results.json").read_text())
    # output to a file, not a terminal: periodic progress lines, not silence
    assert "[nngp_convergence] starting: 2 units" in done.stderr and "2/2 units (100 %)" in done.stderr
    assert "— done" in done.stderr
    page = (tmp_path / "cli" / "report.md").read_text()
    assert "**Question.**" in page and "| activation |" in page and "```json" not in page
    assert (tmp_path / "cli" / "report.html").read_text().count("<img") == 3
    for argv, message in [(["--n-train", "0"], "--n-train must be >= 2"),
                          (["--classes", "0,12"], "--classes: class 12 does not occur"),
                          (["--n-test", "100"], "--n-test 100: the test split of fashion-mnist holds 3 and 3 points")]:
        bad = subprocess.run([*cmd, *argv, "--out", str(tmp_path / "bad")], capture_output=True, text=True, timeout=600)
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr  # one line, no traceback
        assert not (tmp_path / "bad").exists()


def test_compilation_cache_location(monkeypatch, tmp_path):
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.setenv("DEEPTHEORY_JAX_CACHE", "off")
    assert cli.compilation_cache_dir() is None
    monkeypatch.setenv("DEEPTHEORY_JAX_CACHE", str(tmp_path / "c"))
    assert cli.compilation_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("DEEPTHEORY_JAX_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cli.compilation_cache_dir() == tmp_path / "xdg" / "deeptheory" / "jax"
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "users"))  # the user's own choice wins
    assert cli.compilation_cache_dir() is None


def test_second_command_loads_compiled_programs_with_the_same_results(fake_fashion, tmp_path):
    """The command line fills the persistent compilation cache; a second run of the same command reads it and
    gives bitwise the same metrics."""
    flags = [f"--{k.replace('_', '-')}={','.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in TINY.items()]
    env = dict(os.environ, DEEPTHEORY_JAX_CACHE=str(tmp_path / "cache"))
    metrics = []
    for run in ("first", "second"):
        cmd = [sys.executable, "-m", "deeptheory.train", "nngp_convergence", "--out", str(tmp_path / run), *flags]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
        assert done.returncode == 0, done.stderr
        metrics.append(json.loads((tmp_path / run / "results.json").read_text())["metrics"])
        if run == "first":
            cached = {p.name for p in (tmp_path / "cache").iterdir()}
            assert cached, "the first run wrote no compiled programs"
    assert metrics[0] == metrics[1]
    assert {p.name for p in (tmp_path / "cache").iterdir()} == cached  # nothing new compiled the second time


def test_report_is_redrawn_from_results_alone(fake_fashion, tmp_path):
    out = tmp_path / "run"
    cli.execute(nngp_convergence.EXPERIMENT, dataclasses.replace(nngp_convergence.Config(), **TINY), out)
    for png in out.glob("*.png"):
        png.unlink()
    (out / "report.md").unlink(missing_ok=True)
    report.main([str(out)])
    assert len(list(out.glob("*.png"))) == 3 and "NNGP kernels of finite networks" in (out / "report.md").read_text()


def test_agreement_wording():
    assert report.agreement(1.0, 0.1, 1.05) == "inside error bar"
    assert report.agreement(1.0, 0.01, 1.02) == "within 3 %"
    assert report.agreement(1.0, 0.01, 1.10) == "deviates +10.0 % (10.0 SE)"
    assert report.inside_interval(0.5, (0.4, 0.6)) == "inside CI" and report.inside_interval(0.7, (0.4, 0.6)).startswith(
        "outside CI by +0.1")


def test_report_text_subscripts_stars_and_titles():
    assert report._md("T_{best} vs T*(ε) and N*(T); **Fallback:**") == (
        "T<sub>best</sub> vs T\\*(ε) and N\\*(T); **Fallback:**")  # two lone stars never italicise what lies between
    assert report._html_inline("T_{eff} & `code`") == "T<sub>eff</sub> &amp; <code>code</code>"
    assert report._plain("deeptheory report — preset `quick`, T_{best}") == "deeptheory report — preset quick, Tbest"
    assert report.dataset_label(None) == "synthetic"
    assert report.dataset_label({"dataset": "mnist1d", "requested": "auto", "note": "not installed"}) == (
        "MNIST-1D (fallback: Fashion-MNIST not found)")
    assert report.dataset_label({"dataset": "fashion-mnist", "requested": "auto", "note": ""}) == "Fashion-MNIST"


@pytest.mark.parametrize("lo, hi", [(0.012, 0.08), (0.2, 0.6), (0.009, 0.075), (0.01, 10.0), (0.31, 0.39)])
def test_every_log_axis_has_three_labelled_ticks(lo, hi):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.set_yscale("log")
    ax.set_ylim(lo, hi)
    report._plain_log_labels(ax.yaxis, lo, hi)
    fig.canvas.draw()
    labelled = [t for t in ax.yaxis.get_majorticklabels() + ax.yaxis.get_minorticklabels()
                if t.get_text() and lo <= t.get_position()[1] <= hi]
    plt.close(fig)
    assert len(labelled) >= 3, [t.get_text() for t in labelled]


def test_quick_presets_on_the_fallback_data(no_fashion, tmp_path):
    """What a newcomer without Fashion-MNIST runs: every data experiment's quick preset (fewer widths/draws/steps
    for time, but the quick preset's data sizes, which exceed what a default MNIST-1D holds per class) falls back to
    MNIST-1D, says so, and reports."""
    records = {}
    for name, flags in QUICK_FLAGS.items():
        experiment = registry.get(name)
        config = dataclasses.replace(experiment.presets["quick"], **flags)
        records[name] = cli.execute(experiment, config, tmp_path / name)
        data = records[name]["data"]
        assert data["dataset"] == "mnist1d" and data["requested"] == "auto" and "not installed" in data["note"]
        assert data["n_test"] == experiment.presets["quick"].n_test and data["input_dim"] == 40
    assert records["bayes_networks"]["data"]["n_test"] == 256  # more than the 102 a default MNIST-1D has per class
    path = report.write_report(tmp_path, records, preset="quick")
    assert path.read_text().count("**Fallback:**") == 2


def test_cnn_needs_images(no_fashion, tmp_path):
    config = dataclasses.replace(bayes_networks.Config(), architecture="cnn", depths=(1,))
    with pytest.raises(cli.ConfigError, match="the CNN needs images; mnist1d has 40-d inputs"):
        cli.execute(bayes_networks.EXPERIMENT, config, tmp_path / "run")


@pytest.mark.slow
def test_reproduce_quick_preset_writes_report(tmp_path, monkeypatch):
    """The full `make demo` path: every registered experiment's quick preset and the report — on the data a
    newcomer without data packages has (MNIST-1D): the same code path at a fraction of the cost of full-resolution
    Fashion-MNIST inputs (5.4 min alone against 17.6 min of a CI worker). Fashion-MNIST itself is exercised by the
    bayes_networks and study tests, its quick presets by `make demo`."""
    env = dict(os.environ, DEEPTHEORY_PROGRESS_SECONDS="30")
    done = subprocess.run([sys.executable, "-m", "deeptheory.train", "reproduce", "--preset", "quick", "--out",
                           str(tmp_path), "--dataset", "mnist1d"], capture_output=True, text=True, timeout=1500,
                          env=env)
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "report.md").read_text()
    for name in registry.EXPERIMENTS:
        record = json.loads((tmp_path / name / "results.json").read_text())
        assert record["timing"]["last"] == "fresh"
        for plot in record["plots"]:
            assert f"]({name}/{plot})" in page and (tmp_path / name / plot).exists()
    # the same command again: nothing recomputed (the metrics reused), the report rewritten, the wall times kept
    again = subprocess.run([sys.executable, "-m", "deeptheory.train", "reproduce", "--preset", "quick", "--out",
                            str(tmp_path), "--only", "rf_scaling"], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    record = json.loads((tmp_path / "rf_scaling" / "results.json").read_text())
    assert record["timing"]["last"] == "reused" and record["wall_time_s"] == record["timing"]["invocations"][0][
        "wall_s"]
    # every experiment re-plotted and re-reported from its results.json alone: nothing may run or analyse
    def forbidden(*args, **kwargs):
        raise AssertionError("redrawing a report must not run or analyse an experiment")

    get = registry.get
    monkeypatch.setattr(registry, "get", lambda name: dataclasses.replace(get(name), run=forbidden, analyse=forbidden))
    monkeypatch.setattr(cli, "execute", forbidden)
    for name in registry.EXPERIMENTS:
        for png in (tmp_path / name).glob("*.png"):
            png.unlink()
    (tmp_path / "report.md").unlink()
    report.main([str(tmp_path)])
    for name in registry.EXPERIMENTS:
        record = json.loads((tmp_path / name / "results.json").read_text())
        assert record["plots"] and all((tmp_path / name / plot).exists() for plot in record["plots"]), name
        assert registry.get(name).title in (tmp_path / "report.md").read_text()


def test_the_hang_workarounds_are_set_once_and_never_override(monkeypatch):
    import jaxlib

    ynn, scheduler = cli.HANG_WORKAROUNDS["0.10.2"]
    monkeypatch.setattr(jaxlib, "__version__", "0.10.2")
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    assert cli.avoid_known_xla_hangs() == [ynn, scheduler]
    assert os.environ["XLA_FLAGS"] == f"--xla_force_host_platform_device_count=2 {ynn} {scheduler}"
    assert cli.avoid_known_xla_hangs() == []  # already there: not twice
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=ynn")  # the user's choice stands
    assert cli.avoid_known_xla_hangs() == [scheduler] and "ynn_fusion_type=ynn " in os.environ["XLA_FLAGS"]
    monkeypatch.delenv("XLA_FLAGS")
    monkeypatch.setattr(jaxlib, "__version__", "0.12.0")  # a fixed jaxlib: nothing set
    assert cli.avoid_known_xla_hangs() == [] and "XLA_FLAGS" not in os.environ


def test_idle_blas_threads_are_quieted_unless_the_user_chose(monkeypatch):
    """OPENBLAS_THREAD_TIMEOUT is set when absent and a user's value stands; and in a fresh process SciPy's OpenBLAS
    runs with it when it is set before JAX's first linear algebra, and not when after (then the call says so)."""
    name, value = cli.BLAS_THREAD_TIMEOUT
    monkeypatch.setenv(name, "7")
    cli.quiet_idle_blas_threads()
    assert os.environ[name] == "7"
    env = {k: v for k, v in os.environ.items() if k != name}
    script = ("import jax.numpy as jnp\n"
              "from deeptheory.train.harness import cli\n"
              "{before}jnp.linalg.cholesky(jnp.eye(3)).block_until_ready()\n{after}"
              "print(quiet, cli.openblas_thread_timeout())\n")
    runs = {}
    for order, (before, after) in {"early": ("quiet = cli.quiet_idle_blas_threads()\n", ""),
                                   "late": ("", "quiet = cli.quiet_idle_blas_threads()\n")}.items():
        done = subprocess.run([sys.executable, "-c", script.format(before=before, after=after)], env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        runs[order] = done.stdout.split()
    if runs["early"][1] == "None":
        pytest.skip("this OpenBLAS cannot be asked for its thread timeout")
    assert runs["early"] == ["True", value]
    assert runs["late"] == ["False", "0"]  # OpenBLAS kept its default
