"""The committed study (results/bayes_networks): produced by the current presets, on the data they name, shown in the
README as generated, and one of its points reproducible within its error bar."""

import dataclasses
import math
import pathlib

import pytest

from deeptheory.train.data import DataError
from deeptheory.train.experiments import bayes_networks
from deeptheory.train.experiments.bayes_networks import study
from deeptheory.train.experiments.bayes_networks.analysis import METRICS_VERSION
from deeptheory.train.experiments.bayes_networks.config import PRESETS
from deeptheory.train.experiments.bayes_networks.measure import points
from deeptheory.train.harness import cli
from deeptheory.train.harness.results import to_jsonable

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results" / "bayes_networks"
PARTS = study.load_parts(RESULTS)
REPRODUCED = ("study-pm1", ("erf", 1, 125, 0.01))  # cheap (about a minute on 2 cores) and well mixed (R̂ 1.02)


def _data_or_skip(config):
    """The preset's data, or a skip where Fashion-MNIST is not installed (the fallback is other data)."""
    try:
        data = cli.load_data(bayes_networks.EXPERIMENT, config)
    except (DataError, cli.ConfigError, ValueError) as e:
        pytest.skip(f"the committed study ran on Fashion-MNIST, which this machine cannot load ({e})")
    if data.info["dataset"] != "fashion-mnist":
        pytest.skip(f"the committed study ran on Fashion-MNIST; this machine has {data.info['dataset']}")
    return data


def test_there_are_committed_parts():
    assert PARTS, f"no part of the study is committed under {RESULTS}"


def test_every_committed_folder_is_a_current_part():
    """A renamed or removed preset would leave its folder out of the map without a word."""
    folders = {p.name for p in RESULTS.iterdir() if p.is_dir() and (p / "results.json").exists()}
    assert folders <= set(study.PARTS), f"folders whose preset no longer exists: {sorted(folders - set(study.PARTS))}"


@pytest.mark.parametrize("part", list(PARTS))
def test_committed_part_was_analysed_by_the_current_metrics(part):
    """A changed formula bumps analysis.METRICS_VERSION; the parts must then be rerun (README: the map)."""
    assert PARTS[part]["metrics"].get("metrics_version") == METRICS_VERSION, \
        f"results/bayes_networks/{part} was analysed by another version of the metrics: rerun it"


@pytest.mark.parametrize("part", list(PARTS))
def test_committed_part_was_produced_by_its_current_preset(part):
    """A changed preset makes its committed results stale: rerun the part (README: the map) and commit it."""
    record = PARTS[part]
    assert record["experiment"] == "bayes_networks"
    assert record["config"] == to_jsonable(PRESETS[part]), f"results/bayes_networks/{part} is stale: rerun it"
    claim = cli.claim_record(bayes_networks.EXPERIMENT, PRESETS[part], None)
    assert claim["config"] == record["config"]
    assert [(r["activation"], r["depth"], r["width"], r["temperature"]) for r in record["metrics"]["rows"]] == \
        [tuple(p) for p in points(PRESETS[part])], "the committed rows are not the preset's points, in its order"


@pytest.mark.parametrize("part", list(PARTS))
def test_committed_part_used_the_data_its_preset_loads(part):
    record = PARTS[part]
    data = _data_or_skip(PRESETS[part])
    assert record["data"]["dataset"] == "fashion-mnist"
    assert data.info["fingerprint"] == record["data"]["fingerprint"], "the data subset changed since the run"


def test_readme_and_map_are_generated_from_the_committed_results():
    assert study.main(["--results", str(RESULTS), "--readme", str(ROOT / "README.md"), "--check"]) == 0, \
        "README.md or results/bayes_networks/map.md differs from what the committed results give: run " \
        "python -m deeptheory.train.experiments.bayes_networks.study"


def test_readme_block_markers_are_required(tmp_path):
    with pytest.raises(ValueError, match="no generated map block"):
        study.replace_block("# README without markers\n", study.readme_block({}))


def test_cnn_points_are_a_series_of_their_own_with_both_nngps(tmp_path):
    """A CNN point with the MLP's activation, depth and load must neither join the MLP's curve nor lose its local and
    pooled NNGP: built from a committed MLP point relabelled as the CNN's record would carry it."""
    part, record = next(iter(PARTS.items()))
    mlp_row = record["metrics"]["rows"][0]
    cnn_row = dict(mlp_row, theory_variant="conv", relative_deviation=0.25,
                   theory_variants={"conv": {"test_loss": 0.3, "relative_deviation": 0.25},
                                    "local_nngp": {"test_loss": 0.2, "relative_deviation": -0.125},
                                    "pooled_nngp": {"test_loss": 0.1, "relative_deviation": -0.5}},
                   kernel={"Q_rel_distance_to_theory": 0.123, "Q_rel_distance_to_identity": 0.456})
    cnn = dict(record, config=dict(record["config"], architecture="cnn", patches=[7, 2]),
               metrics=dict(record["metrics"], rows=[cnn_row]))
    records = {part: record, "study-cnn2": cnn}
    series = study._series(study._rows(records))
    assert [len(at) for key, at in series.items() if key[-1] == "cnn 7×2"] == [1]
    assert sum(len(at) for at in series.values()) == len(record["metrics"]["rows"]) + 1
    text = study.markdown(records)
    assert "patches 7×2" in text and "+25.0 % / -12.5 % / -50.0 %; Q̂ 0.123 (0.456)" in text
    assert study.figure(records, tmp_path / "map.png").exists()


@pytest.mark.slow
def test_one_committed_point_reproduces_within_its_error_bar(tmp_path):
    """Rerun one committed point from scratch. Its chains are keyed by the point, not by its position in the
    sweep, so the one-point config draws the same chains; on the same machine and libraries the numbers repeat,
    elsewhere float rounding makes the chains independent, hence the tolerance: 3 combined standard errors
    (a false alarm at 0.3 %). The theory is deterministic float64: 1e-8."""
    part, point = REPRODUCED
    if part not in PARTS:
        pytest.skip(f"{part} is not committed")
    activation, depth, width, T = point
    config = dataclasses.replace(PRESETS[part], activations=(activation,), depths=(depth,), widths=(width,),
                                 temperatures=(T,))
    data = _data_or_skip(config)
    committed = next(r for r in PARTS[part]["metrics"]["rows"]
                     if (r["activation"], r["depth"], r["width"], r["temperature"]) == point)
    row = cli.execute(bayes_networks.EXPERIMENT, config, tmp_path / "point", data=data)["metrics"]["rows"][0]
    assert _keys(row) == _keys(committed), "the committed row holds other metrics than the current analysis gives"
    assert row["theory"] == pytest.approx(committed["theory"], rel=1e-8)
    assert row["nngp"] == pytest.approx(committed["nngp"], rel=1e-8)
    tolerance = 3 * math.hypot(row["error"], committed["error"])
    assert abs(row["sampled"] - committed["sampled"]) <= tolerance, (row["sampled"], committed["sampled"], tolerance)


def _keys(tree, prefix=""):
    """Every key path of a nested dict."""
    if not isinstance(tree, dict):
        return set()
    return {f"{prefix}{k}" for k in tree} | {p for k, v in tree.items() for p in _keys(v, f"{prefix}{k}.")}
