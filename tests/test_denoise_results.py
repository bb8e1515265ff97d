"""The committed denoise study (results/denoise): produced by the current presets, shown in the README as generated,
and one of its cells reproducible within its error bar."""

import dataclasses
import pathlib

import numpy as np
import pytest

from deeptheory.train.experiments import denoise
from deeptheory.train.experiments.denoise import analysis, study
from deeptheory.train.experiments.denoise.config import PRESETS, cases
from deeptheory.train.harness import cli
from deeptheory.train.harness.results import to_jsonable

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results" / "denoise"
PARTS = study.load_parts(RESULTS)
# The cheapest cell with a T*(ε) law: the Gaussian at the two smallest σ², which need fewer layers than the part
# (the depth grid ends at horizon × T*(ε) of the largest σ² in the config), so the rerun takes seconds.
REPRODUCED = ("study-d1", "gaussian", (0.1, 0.25))


def test_there_are_committed_parts():
    assert PARTS, f"no part of the denoise study is committed under {RESULTS}"


def test_every_committed_folder_is_a_current_part():
    folders = {p.name for p in RESULTS.iterdir() if p.is_dir() and (p / "results.json").exists()}
    assert folders <= set(study.PARTS), f"folders whose preset no longer exists: {sorted(folders - set(study.PARTS))}"


def test_the_study_trains_every_prior_in_every_d_like_its_d_part():
    """Issue 16's goal: learned Stage-1 times for every (prior, d) of the depth curves. The study-trained-* parts
    add the priors the d-parts do not train, with the d-part's training settings (only the priors differ)."""
    main = [p for p in study.PARTS if p not in study.PROBES]
    curves = {case for p in main for case in cases(PRESETS[p])}
    trained = {(prior, min(PRESETS[p].dims)) for p in main for prior in PRESETS[p].train_priors}
    assert curves <= trained, f"(prior, d) without trained models: {sorted(curves - trained)}"
    for part in (p for p in main if not PRESETS[p].priors):
        d_part = next((p for p in main if PRESETS[p].priors and PRESETS[p].dims == PRESETS[part].dims), None)
        assert d_part is not None, f"{part} trains in d = {PRESETS[part].dims} where no part draws depth curves"
        # every field but the priors and the depth curves' prompts count (the analytic comparator at the training
        # N depends on the flow grid, ε, α, the horizon and the chunk size too)
        d = PRESETS[d_part]
        assert dataclasses.replace(PRESETS[part], priors=d.priors, train_priors=d.train_priors,
                                   prompts=d.prompts) == d, (part, d_part)


@pytest.mark.parametrize("part", list(PARTS))
def test_committed_part_was_produced_by_its_current_preset(part):
    """A changed preset makes its committed results stale: rerun the part (README: the denoise study)."""
    record = PARTS[part]
    assert record["experiment"] == "denoise"
    assert record["config"] == to_jsonable(PRESETS[part]), f"results/denoise/{part} is stale: rerun it"
    rows = record["metrics"]["depth_curves"]
    assert [(r["prior"], r["dim"], r["sigma2"]) for r in rows] == \
        [(p, d, s) for p, d in cases(PRESETS[part]) for s in PRESETS[part].sigma2s], "rows are not the preset's cells"


@pytest.mark.parametrize("part", list(PARTS))
def test_every_reported_ratio_has_an_error_bar(part):
    """The issue's bar: every ratio of a cell carries a finite bootstrap SE, every N of the MSE-vs-N study with at
    least MIN_PROMPTS_FOR_SE prompts and every fitted rate too (the N with fewer are shown without one and not
    fitted), every trained quantity an SE over seeds."""
    m = PARTS[part]["metrics"]
    finite = lambda se: se is not None and np.isfinite(se)  # noqa: E731
    for r in m["depth_curves"]:
        for key in ("t_best", "t_best_over_half_sigma2", "excess_over_bayes_realised", "gain_over_depth0",
                    "gain_over_kde_best", "gain_over_blurring", "oracle_particles_excess"):
            assert finite(r[f"{key}_se"]), (part, r["prior"], r["sigma2"], key)
        if r["t_star_theory"] is not None:
            assert finite(r["t_best_over_t_star_se"]), (part, r["prior"], r["sigma2"])
    for c in m["convergence"]:
        for n, prompts, se in zip(c["context_sizes"], c["prompts"], c["excess_over_bayes_realised_se"], strict=True):
            assert finite(se) == (prompts >= analysis.MIN_PROMPTS_FOR_SE), (part, c["prior"], n)
            assert (n in c["excess_decay_fitted_n"]) <= (prompts >= analysis.MIN_PROMPTS_FOR_SE), (part, c["prior"], n)
        if part not in study.PROBES:  # the probes' two-point MSE-vs-N study is not reported
            assert finite(c["excess_decay_exponent_se"]), (part, c["prior"])
    for t in m["trained"]:
        for key in ("effective_time_over_half_sigma2", "learned_excess_over_bayes", "readout_over_sigma2"):
            assert finite(t[f"{key}_se"]), (part, t["prior"], t["attention"], t["readout"], t["sigma2"], key)


def test_readme_and_study_are_generated_from_the_committed_results():
    assert study.main(["--results", str(RESULTS), "--readme", str(ROOT / "README.md"), "--check"]) == 0, \
        "README.md or results/denoise/study.md differs from what the committed results give: run " \
        "python -m deeptheory.train.experiments.denoise.study"


def test_readme_block_markers_are_required():
    with pytest.raises(ValueError, match="no generated denoise-study block"):
        study.replace_block("# README without markers\n", study.readme_block({}))


def test_stage1_pace_is_one_on_the_mean_field_curve_and_zero_when_frozen():
    """The pace column: a variance curve that follows the mean-field flow (A-8) has pace 1, a frozen one 0, and one
    that has lost half the mean field's variance by the layer nearest T*(ε) has 1/2; other priors have none."""
    from deeptheory.theory.particle_flow import gaussian_flow_variance

    row = dict(prior="gaussian", sigma2=1.0, eps=0.2, step=0.1, mode_variance=0.25, t_star_theory=0.569)
    mean_field = np.asarray(gaussian_flow_variance(2.0, eps=0.2, step=0.1, depth=60))
    assert study._pace(dict(row, variance_curve=list(mean_field))) == pytest.approx(1.0, abs=1e-12)
    assert study._pace(dict(row, variance_curve=[2.0] * 61)) == 0.0
    assert study._pace(dict(row, variance_curve=list(2.0 - (2.0 - mean_field) / 2))) == pytest.approx(0.5, abs=1e-12)
    assert study._pace(dict(row, prior="two_mode", variance_curve=list(mean_field))) is None


def test_study_figure_draws(tmp_path):
    assert study.figure(PARTS, tmp_path / "study.png").exists()


@pytest.mark.slow
def test_one_committed_cell_reproduces_within_its_error_bar(tmp_path):
    """Rerun the Gaussian cells at the two smallest σ² of study-d1 from scratch. Prompts are keyed by (prior, d, σ²,
    prompt index), so the rerun draws the committed prompts; on other hardware float32 rounding moves each MSE by
    ~1e-6 relative, far inside the error bars. T_best and the excess must agree within 1 bootstrap SE, the MSE curve
    (a prefix of the committed one: fewer layers) to 1e-4."""
    part, prior, sigma2s = REPRODUCED
    if part not in PARTS:
        pytest.skip(f"{part} is not committed")
    base = PRESETS[part]
    config = dataclasses.replace(base, priors=(prior,), sigma2s=sigma2s, context_sizes=base.context_sizes[:2],
                                 convergence_tokens=2 * base.context_sizes[1], train_priors=())
    rows = cli.execute(denoise.EXPERIMENT, config, tmp_path / "cell")["metrics"]["depth_curves"]
    committed = {r["sigma2"]: r for r in PARTS[part]["metrics"]["depth_curves"] if r["prior"] == prior}
    for row in rows:
        ref = committed[row["sigma2"]]
        assert set(row) == set(ref), "the committed row holds other metrics than the current analysis gives"
        curve = np.asarray(row["mse_curve"])
        np.testing.assert_allclose(curve, ref["mse_curve"][:len(curve)], rtol=1e-4)
        assert not row["t_best_at_grid_end"]
        assert abs(row["t_best"] - ref["t_best"]) <= ref["t_best_se"], (row["t_best"], ref["t_best"])
        assert abs(row["excess_over_bayes_realised"] - ref["excess_over_bayes_realised"]) <= \
            ref["excess_over_bayes_realised_se"]
        assert row["bayes_mse"] == pytest.approx(ref["bayes_mse"], rel=1e-6)
