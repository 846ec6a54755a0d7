"""``pudlab compare-dp`` on tiny data, and the matched-points rule of its table."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from pudlab.cli import cli
from pudlab.errors import PudlabError, SpecError
from pudlab.privacy.dp_results import (
    Band,
    ComparisonConfig,
    ComparisonDataset,
    ComparisonPoint,
    ComparisonReport,
    RepeatResult,
    match_points,
)
from tests.conftest import make_images


def _point(method: str, parameter: float, accuracy: list[float], leak: list[float]) -> ComparisonPoint:
    """A point whose LiRA TPR at 1 % FPR is ``leak`` (through a stand-in LiRA record)."""
    from pudlab.privacy.lira import LiraResult

    runs = [RepeatResult(index, acc, 0.5, 0.01, LiraResult(2, 0.5, 0.0, tpr, 0.5, 0.0, tpr / 2, 10, 10, True, 0.0),
                         1.0, 0.0, 0.0) for index, (acc, tpr) in enumerate(zip(accuracy, leak, strict=True))]
    return ComparisonPoint(method, parameter, parameter == 0, math.inf if parameter == 0 else 1.0, {}, runs, 0.0)


def test_matched_points_claim_a_winner_only_when_ranges_do_not_overlap():
    points = [
        _point("obfuscation", 0.0, [0.95, 0.95], [0.9, 0.9]),  # control: never matched
        _point("obfuscation", 0.5, [0.90, 0.91], [0.05, 0.06]),
        _point("obfuscation", 1.0, [0.70, 0.72], [0.02, 0.03]),
        _point("dp-sgd", 0.0, [0.90, 0.90], [0.9, 0.9]),  # control: never matched
        _point("dp-sgd", 1.0, [0.89, 0.92], [0.01, 0.02]),  # same accuracy as sigma 0.5, leaks less
        _point("dp-sgd", 2.0, [0.50, 0.55], [0.02, 0.04]),  # same leak as sigma 1.0, less accurate
    ]
    pairs = match_points(points, accuracy_tolerance=0.02, leak_tolerance=0.01)
    by_key = {(pair.matched_on, pair.obfuscation): pair for pair in pairs}
    assert by_key[("accuracy", "obfuscation sigma 0.5")].dp_sgd == "dp-sgd noise 1"
    assert by_key[("accuracy", "obfuscation sigma 0.5")].verdict == "DP-SGD leaks less"
    assert ("accuracy", "obfuscation sigma 1") not in by_key  # no DP-SGD point within 0.02 of 0.71
    leak = by_key[("lira_tpr_at_1pct", "obfuscation sigma 1")]
    assert leak.dp_sgd == "dp-sgd noise 2" and leak.verdict == "obfuscation more accurate"
    assert all("sigma 0 " not in pair.obfuscation and pair.dp_sgd != "dp-sgd noise 0" for pair in pairs)
    overlapping = match_points([_point("obfuscation", 0.5, [0.9, 0.9], [0.02, 0.05]),
                                _point("dp-sgd", 1.0, [0.9, 0.9], [0.04, 0.08])], accuracy_tolerance=0.01,
                               leak_tolerance=0.0)
    assert [pair.verdict for pair in overlapping] == ["no clear difference (ranges over repeats overlap)"]
    from pudlab.data.dataset import LabeledImages
    from pudlab.privacy.dp_comparison import label_prior_auc

    def labelled(labels):
        return LabeledImages(np.zeros((len(labels), 1, 8, 8), np.float32), np.array(labels), np.arange(len(labels)))

    assert label_prior_auc(labelled([0, 1, 0, 1]), labelled([1, 0])) == 0.5  # same label mix: a coin
    # members favour label 0: 3 of 4 members outscore both non-members, the fourth ties: 3/4 + 1/8
    assert label_prior_auc(labelled([0, 0, 0, 1]), labelled([1, 1])) == 0.875
    band = Band.of([1.0, None, 3.0, math.nan])
    assert band is not None and (band.mean, band.low, band.high, band.count) == (2.0, 1.0, 3.0, 2)


@pytest.mark.timeout(300)
def test_compare_dp_command_on_tiny_data(tmp_path):
    pytest.importorskip("opacus")
    images = make_images(300, (1, 12, 12), seed=6)
    dataset = tmp_path / "tiny.npz"
    np.savez(dataset, x=images.images, y=images.labels)
    out = tmp_path / "out"
    args = ["compare-dp", str(dataset), "--sigma", "0,0.5", "--noise-multiplier", "0", "--noise-multiplier", "1",
            "--repeats", "2", "--members", "40", "--nonmembers", "20", "--epochs", "1", "--batch-size", "10",
            "--widths", "4,4,4", "--lira-shadows", "2", "--threads", "1", "--quiet"]
    done = CliRunner().invoke(cli, [*args, "--out", str(out), "--json"])
    assert done.exit_code == 0, done.output
    data = json.loads(done.stdout)
    assert data["kind"] == "pudlab.dp_comparison"
    assert [(p["method"], p["parameter"], p["control"]) for p in data["points"]] == [
        ("obfuscation", 0.0, True), ("obfuscation", 0.5, False), ("dp-sgd", 0.0, True), ("dp-sgd", 1.0, False)]
    clean, obfuscated, clipped, private = data["points"]
    assert clean["epsilon"] is None and clipped["epsilon"] is None  # the controls: epsilon = inf
    from pudlab.privacy.accounting import analytic_gaussian_epsilon
    from pudlab.privacy.dpsgd import dpsgd_epsilon

    assert obfuscated["epsilon"] == pytest.approx(analytic_gaussian_epsilon(sigma=0.5, sensitivity=12.0, delta=1e-5))
    record = private["dp_sgd"]
    assert (record["sample_rate"], record["steps"]) == (0.25, 4)  # batch 10 of 40 members, 4 steps per epoch
    assert private["epsilon"] == pytest.approx(dpsgd_epsilon(noise_multiplier=1.0, sample_rate=0.25, steps=4,
                                                             delta=1e-5))
    assert private["epsilon"] < record["epsilon_replace_one"]
    for point in data["points"]:
        assert len(point["repeats"]) == 2 and point["summary"]["accuracy"]["count"] == 2
        assert (point["repeats"][0]["release"] is not None) == (point["method"] == "obfuscation")
    assert [run["distance_to_clean"] for run in clean["repeats"]] == [0.0, 0.0]  # sigma 0 is the clean model
    assert all(run["distance_to_clean"] > 0 for run in private["repeats"])
    assert 0 <= data["label_prior_auc"] <= 1 and data["environment"]["dp_sgd_memory_format"] == "contiguous_format"
    assert len(data["distance_floor"]) == 2 and all(d > 0 for d in data["distance_floor"])
    for name in ("dp_comparison.json", "dp_comparison.md", "dp_vs_obfuscation.png", "dp_vs_obfuscation.svg",
                 "dp_utility_epsilon.png", "dp_utility_epsilon.svg"):
        assert (out / name).stat().st_size > 0
    # redraw from the JSON (no training): the same table
    redrawn = CliRunner().invoke(cli, ["compare-dp", "--from-json", str(out / "dp_comparison.json")])
    assert redrawn.exit_code == 0, redrawn.output
    assert redrawn.stdout.startswith("| point |") and "dp-sgd noise 1 |" in redrawn.stdout
    assert (out / "dp_comparison.md").read_text().strip() in redrawn.stdout
    bad = CliRunner().invoke(cli, ["compare-dp", str(dataset), "--sigma", "-1"])
    assert bad.exit_code == 1 and bad.stderr.startswith("error:") and "Traceback" not in bad.output


def test_comparison_json_is_read_strictly(tmp_path):
    with pytest.raises(SpecError, match="x.json: not a pudlab DP comparison"):
        ComparisonReport.from_dict({"kind": "pudlab.privacy_report"}, where="x.json")
    dataset = ComparisonDataset("tiny", "tiny bars", "ab" * 32, (1, 12, 12), 1, 1, 1)
    report = ComparisonReport("0", dataset, ComparisonConfig(), {}, [_point("obfuscation", 0.5, [0.9], [0.1])], [1.0],
                              [], 1.0)
    data = json.loads(json.dumps(report.to_dict()))
    assert ComparisonReport.from_dict(data).to_dict() == report.to_dict()
    assert data["config"]["widths"] == [8, 16, 32] and data["dataset"]["sample_shape"] == [1, 12, 12]
    for change, message in [
        (lambda d: d["points"][0]["repeats"][0].update(surprise=1),
         r"^x.json: points\[0\].repeats\[0\]: unknown key\(s\) \['surprise'\]"),
        (lambda d: d["points"][0]["repeats"][0].update(accuracy="high"),
         r"^x.json: points\[0\].repeats\[0\].accuracy: expected a number, got 'high'$"),
        (lambda d: d["config"].update(widths=[8, 16]), r"^x.json: config.widths: expected a list of 3 integers"),
        (lambda d: d["config"].update(sigmas=[-1.0]), r"compare-dp: sigmas must be finite and >= 0"),
    ]:
        broken = json.loads(json.dumps(report.to_dict()))
        change(broken)
        with pytest.raises(PudlabError, match=message):
            ComparisonReport.from_dict(broken, where="x.json")
    runner = CliRunner()
    both = runner.invoke(cli, ["compare-dp", "data", "--from-json", __file__])
    assert both.exit_code == 1 and "not both" in both.stderr
