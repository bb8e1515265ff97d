"""The committed random-feature results (results/rf_scaling): the phase diagram was computed with its current settings,
its markdown is what its JSON gives, and one of its points is recomputed to the digit."""

import json
import pathlib

import numpy as np
import pytest

from deeptheory.train.experiments.rf_scaling import phases

RESULTS = pathlib.Path(__file__).resolve().parent.parent / "results" / "rf_scaling"
RECORD = json.loads((RESULTS / "phases.json").read_text())


def test_phase_diagram_matches_its_current_settings():
    preset = phases.BASE
    assert RECORD["config"] == {"dim": preset.dim, "widths": list(preset.widths), "target_shift": preset.target_shift,
                                "lr_multipliers": list(preset.lr_multipliers), "damping": preset.damping}, \
        "results/rf_scaling/phases.json was computed with other settings: rerun " \
        "python -m deeptheory.train.experiments.rf_scaling.phases"
    assert RECORD["steps"] == preset.steps
    assert (RECORD["budgets"], RECORD["s_values"], RECORD["shifts"], RECORD["dampings"]) == (
        list(phases.BUDGETS), list(phases.S_VALUES), list(phases.SHIFTS), list(phases.DAMPINGS))
    assert phases.main(["--out", str(RESULTS), "--check"]) == 0


@pytest.mark.slow
def test_one_point_of_the_phase_diagram_recomputes():
    """GD's α at s = 1.5 and the preset's target, every budget: deterministic (no draw), so to 1e-9."""
    import jax

    with jax.enable_x64(True):
        config = phases.BASE
        alpha = phases._alpha("gd", phases._spectra(config, 1.5, config.target_shift), config)
    np.testing.assert_allclose(alpha, RECORD["shift_vs_s"]["1.5"]["gd"], rtol=1e-9, atol=1e-12)


CLAIMS = json.loads((RESULTS / "claims" / "results.json").read_text())


def test_committed_claims_run_is_the_current_preset():
    import dataclasses

    from deeptheory.train.experiments.rf_scaling.config import PRESETS
    from deeptheory.train.harness.results import to_jsonable

    assert CLAIMS["config"] == to_jsonable(dataclasses.asdict(PRESETS["claims"])), \
        "results/rf_scaling/claims was produced by another claims preset: rerun python -m deeptheory.train " \
        "rf_scaling --preset claims --out results/rf_scaling/claims"


@pytest.mark.slow
def test_one_claims_point_reproduces(tmp_path):
    """GD and natural gradient at s = 1 on the first two seeds, at the multiplier the committed run chose at every N
    (1): the features are drawn by (s, seed) value, training is deterministic, so the per-seed losses agree to float32
    training precision."""
    import subprocess
    import sys

    rows = {r["optimizer"]: r for r in CLAIMS["metrics"]["rows"] if r["s"] == 1.0}
    assert all(rows[name]["lr_multiplier"] == [1.0] * len(CLAIMS["config"]["widths"]) for name in ("gd", "natural"))
    done = subprocess.run([sys.executable, "-m", "deeptheory.train", "rf_scaling", "--preset", "claims", "--out",
                           str(tmp_path), "--s-values", "1", "--seeds", "2", "--optimizers", "gd,natural",
                           "--lr-multipliers", "1"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    again = {r["optimizer"]: r for r in json.loads((tmp_path / "results.json").read_text())["metrics"]["rows"]}
    for name in ("gd", "natural"):
        np.testing.assert_allclose(again[name]["loss_per_seed"], rows[name]["loss_per_seed"][:2], rtol=1e-5)
