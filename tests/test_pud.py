"""PUD normalization, profiles, the recommender, figures, and the `pudlab pud` CLI."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from pudlab.cli import cli
from pudlab.errors import PudlabError, SpecError
from pudlab.pud import (
    PudPoint,
    builtin_profiles,
    delta_score,
    load_profile,
    parse_profile,
    points_from_json,
    privacy_components,
    privacy_score,
    pud_points,
    recommend,
    separability_score,
    utility_score,
)
from pudlab.report.privacy_figures import save_pud_figures

SIGMAS = [0.0, 0.1, 0.2, 0.4, 0.6, 1.0]
ACCURACY = [0.90, 0.89, 0.88, 0.86, 0.80, 0.50]
DELTAS = [4.0, 3.0, 2.0, 1.0, 0.4, 0.2]
PRIVACY = [0.0, 0.1, 0.3, 0.5, 0.7, 0.9]


def _points(**overrides):
    args = dict(sigmas=SIGMAS, accuracies=ACCURACY, accuracy_at_zero=None, deltas=DELTAS, delta_at_zero=None,
                privacy_by_sigma=PRIVACY)
    args.update(overrides)
    return pud_points(args.pop("sigmas"), args.pop("accuracies"), args.pop("accuracy_at_zero"), args.pop("deltas"),
                      args.pop("delta_at_zero"), args.pop("privacy_by_sigma"), **args)


def _profile(text: dict, source: str = "test.toml"):
    return parse_profile(text, source=source)


# ---------------------------------------------------------------------------------------- normalization
def test_scores_hand_values():
    assert utility_score(0.5, 0.9, chance_accuracy=0.1) == pytest.approx(0.5)
    assert utility_score(0.05, 0.9, chance_accuracy=0.1) == 0.0
    assert utility_score(0.95, 0.9, chance_accuracy=0.1) == 1.0
    assert delta_score(1.5, 3.0) == pytest.approx(0.5)
    assert delta_score(2.0, 4.0, delta_floor=1.0) == pytest.approx(1 / 3)
    assert delta_score(5.0, 4.0) == 1.0
    assert separability_score([1.0, 1.1], [2.0, 2.5]) == 1.0
    assert separability_score([1.0, 2.0], [1.0, 2.0]) == pytest.approx(0.0)
    assert separability_score([1.0, 3.0], [2.0, 4.0]) == pytest.approx(2 * 0.75 - 1)
    with pytest.raises(SpecError, match="must exceed chance"):
        utility_score(0.5, 0.1, chance_accuracy=0.1)


def test_privacy_components_and_combine():
    metrics = {"linkage": 0.6, "linkage_chance": 0.2, "best_ssim": 0.3, "mia_auc": 0.7}
    components = privacy_components(metrics)
    assert components == pytest.approx({"linkage": 0.5, "ssim": 0.7, "mia": 0.6})
    assert privacy_score(metrics)[0] == pytest.approx(0.5)
    assert privacy_score(metrics, combine="mean")[0] == pytest.approx(0.6)
    assert privacy_score({"linkage": 1.0, "linkage_chance": 0.001, "mia_auc": None})[0] == 0.0
    assert privacy_score(0.25) == (0.25, {})
    with pytest.raises(SpecError, match="no usable attack result"):
        privacy_score({"other": 1})
    with pytest.raises(SpecError, match="combine rule"):
        privacy_score(0.2, combine="max")


def test_pud_points_normalizes():
    points = _points()
    assert [p.sigma for p in points] == SIGMAS
    assert points[0].utility == 1.0 and points[0].distinguishability == 1.0
    assert points[3].utility == pytest.approx((0.86 - 0.1) / 0.8)
    assert points[3].distinguishability == pytest.approx(0.25)
    assert points[3].privacy == 0.5
    assert points[3].raw["d_method"] == "delta"
    by_sigma = _points(privacy_by_sigma={s: {"linkage": 1 - p, "linkage_chance": 0.0} for s, p in zip(SIGMAS, PRIVACY, strict=True)})
    assert [p.privacy for p in by_sigma] == pytest.approx(PRIVACY)


def test_pud_points_errors():
    with pytest.raises(SpecError, match="sigma = 0"):
        _points(sigmas=SIGMAS[1:], accuracies=ACCURACY[1:], deltas=DELTAS[1:], privacy_by_sigma=PRIVACY[1:])
    with pytest.raises(SpecError, match="accuracies"):
        _points(accuracies=ACCURACY[:-1])
    with pytest.raises(SpecError, match="repeats"):
        _points(sigmas=[0.0, 0.1, 0.1, 0.4, 0.6, 1.0])
    with pytest.raises(SpecError, match="no entry for sigma 0.4"):
        _points(privacy_by_sigma={0.0: 0.1, 0.1: 0.1, 0.2: 0.1, 0.3: 0.1, 0.6: 0.1, 1.0: 0.1})
    explicit = _points(sigmas=SIGMAS[1:], accuracies=ACCURACY[1:], deltas=DELTAS[1:], privacy_by_sigma=PRIVACY[1:],
                       accuracy_at_zero=0.9, delta_at_zero=4.0)
    assert explicit[0].utility == pytest.approx((0.89 - 0.1) / 0.8)


def test_separability_used_where_repeats_exist():
    honest = [[0.0, 0.0]] + [[1.0, 1.1]] * 5
    spoof = [[3.0, 3.1]] + [[2.0, 2.2]] * 4 + [[1.0, 1.05]]
    points = _points(deltas=None, honest_distances=honest, spoof_distances=spoof)
    assert all(p.raw["d_method"] == "separability" for p in points)
    assert points[1].distinguishability == 1.0
    assert points[-1].distinguishability == pytest.approx(0.0)
    with pytest.raises(SpecError, match="needs deltas"):
        _points(deltas=None, honest_distances=[[1.0]] * 6, spoof_distances=[[2.0]] * 6)


# ---------------------------------------------------------------------------------------- profiles
def test_builtin_profiles_load():
    assert {"outsourcing", "pol"} <= set(builtin_profiles())
    outsourcing = load_profile("outsourcing")
    assert outsourcing.source == "pudlab/specs/profiles/outsourcing.toml"
    assert outsourcing.objective_axis == "privacy" and outsourcing.objective_sense == "maximize"
    assert outsourcing.constraints[0].axis == "utility" and outsourcing.constraints[0].minimum == 0.9
    pol = load_profile("pol")
    assert {c.axis for c in pol.constraints} == {"distinguishability", "utility"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"objective": {"maximize": "privacy"}, "colour": 1}, r"unknown key\(s\) \['colour'\]"),
        ({"objective": {"maximize": "privacy"}, "constraints": {"fun": {"min": 0.1}}}, "constraints.fun: unknown axis; expected one of privacy"),
        ({"objective": {"maximize": "privacy"}, "constraints": {"utility": {"min": 1.5}}}, r"constraints.utility.min = 1.5; expected a number in \[0, 1\]"),
        ({"objective": {"maximize": "privacy"}, "constraints": {"utility": {"least": 0.5}}}, "constraints.utility = {'least': 0.5}; expected a table with min and/or max"),
        ({"objective": {"maximize": "privacy"}, "constraints": {"utility": {"min": 0.8, "max": 0.2}}}, "constraints.utility = .*; expected min <= max"),
        ({"objective": {"maximize": "privacy"}, "constraints": {"utility": 0.9}}, "constraints.utility = 0.9; expected a table with min and/or max"),
        ({}, "objective is missing; expected a table"),
        ({"objective": {"maximize": "privacy", "minimize": "utility"}}, "objective = .*; expected exactly one of maximize or minimize"),
        ({"objective": {"maximize": "speed"}}, "objective.maximize = 'speed'; expected one of privacy, utility"),
        ({"objective": {"maximize": "privacy", "weight": 1}}, r"\[objective\] has unknown key\(s\) \['weight'\]"),
        ({"objective": {"maximize": "privacy"}, "tie_break": "random"}, "tie_break = 'random'; expected one of larger_sigma"),
    ],
)
def test_profile_validation_errors(data, message):
    with pytest.raises(SpecError, match=message) as caught:
        _profile(data, source="my_profile.toml")
    assert str(caught.value).startswith("my_profile.toml: ")


def test_profile_file_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[objective\nmaximize = 1")
    with pytest.raises(SpecError, match="bad.toml: not valid TOML"):
        load_profile(bad)
    with pytest.raises(SpecError, match="missing.toml: no such profile file"):
        load_profile(tmp_path / "missing.toml")
    with pytest.raises(SpecError, match="nonsense: no such profile file; shipped profiles: outsourcing, pol"):
        load_profile("nonsense")
    good = tmp_path / "mine.toml"
    good.write_text('[constraints]\nprivacy = { min = 0.4 }\n[objective]\nmaximize = "utility"\n')
    profile = load_profile(good)
    assert profile.name == "mine" and profile.source == str(good)


# ---------------------------------------------------------------------------------------- recommender
def test_recommend_outsourcing_known_answer():
    # U = (A - 0.1) / 0.8: 1, .9875, .975, .95, .875, .5 -> U >= 0.9 holds up to sigma 0.4
    result = recommend(_points(), load_profile("outsourcing"))
    assert result.recommended is not None and result.recommended.sigma == 0.4
    assert result.below.sigma == 0.2 and result.above.sigma == 0.6
    assert result.feasible == (0.0, 0.1, 0.2, 0.4)
    assert result.failures[0.6] == ("U >= 0.9",)
    data = result.to_dict()
    assert data["recommended"]["sigma"] == 0.4 and data["neighbours"]["above"]["feasible"] is False


def test_recommend_pol_and_ties():
    # D = Delta / 4: 1, .75, .5, .25, .1, .05; U <= 0.5 only at sigma 1 -> with D >= 0.5 nothing fits
    pol = load_profile("pol")
    result = recommend(_points(), pol)
    assert result.recommended is None and result.feasible == ()
    assert "no sigma in the grid" in result.message and "satisfies profile 'pol'" in result.message
    assert result.to_dict()["recommended"] is None
    loose = _profile({"constraints": {"distinguishability": {"min": 0.5}, "utility": {"max": 0.99}},
                      "objective": {"maximize": "privacy"}})
    assert recommend(_points(), loose).recommended.sigma == 0.2
    flat = _points(privacy_by_sigma=[0.5] * 6)
    larger = _profile({"objective": {"maximize": "privacy"}})
    smaller = _profile({"objective": {"maximize": "privacy"}, "tie_break": "smaller_sigma"})
    assert recommend(flat, larger).recommended.sigma == 1.0
    assert recommend(flat, smaller).recommended.sigma == 0.0
    minimize = _profile({"objective": {"minimize": "utility"}})
    assert recommend(_points(), minimize).recommended.sigma == 1.0


# ---------------------------------------------------------------------------------------- json and figures
def _json_inputs(tmp_path, **extra):
    data = {"sigmas": SIGMAS, "accuracy": ACCURACY, "delta": DELTAS,
            "privacy": [{"linkage": 1 - p, "linkage_chance": 0.0} for p in PRIVACY], **extra}
    path = tmp_path / "inputs.json"
    path.write_text(json.dumps(data))
    return path, data


def test_points_from_json_and_privacy_report(tmp_path):
    path, data = _json_inputs(tmp_path)
    points = points_from_json(data, source=str(path))
    assert [p.privacy for p in points] == pytest.approx(PRIVACY)
    report = {"kind": "pudlab.privacy_report",
              "sigmas": [{"sigma": s, "pud_privacy": {"linkage": 0.5, "linkage_chance": 0.0, "best_ssim": 0.2,
                                                       "mia_auc": 0.5}} for s in SIGMAS]}
    (tmp_path / "privacy.json").write_text(json.dumps(report))
    linked = points_from_json({**data, "privacy_report": "privacy.json"}, source=str(path), base_dir=tmp_path)
    assert all(p.privacy == pytest.approx(0.5) for p in linked)
    report["sigmas"] = report["sigmas"][:3]
    with pytest.raises(SpecError, match="inputs.json: privacy: no entry for sigma 0.4"):
        points_from_json(data, source=str(path), privacy_report=report)
    with pytest.raises(SpecError, match="missing key 'accuracy'"):
        points_from_json({"sigmas": SIGMAS}, source="x.json")
    with pytest.raises(SpecError, match="key 'delta' must be a list of numbers"):
        points_from_json({**data, "delta": "big"}, source="x.json")


def test_figures_written(tmp_path):
    written = save_pud_figures(_points(), tmp_path, title="t", highlight=0.4, sigmas=[0.0, 0.4, 1.0])
    assert sorted(p.name for p in written) == sorted(
        f"pud_{kind}.{fmt}" for kind in ("triangles", "curves") for fmt in ("png", "svg"))
    assert all(p.stat().st_size > 0 for p in written)
    with pytest.raises(SpecError, match="not in the grid"):
        save_pud_figures(_points(), tmp_path, sigmas=[0.3])


def test_point_value_rejects_unknown_axis():
    with pytest.raises(SpecError, match="unknown PUD axis"):
        PudPoint(0.1, 0.2, 0.3, 0.4).value("speed")


def test_point_round_trip():
    point = _points()[3]
    assert PudPoint.from_dict(json.loads(json.dumps(point.to_dict()))) == point
    with pytest.raises(PudlabError, match=r"PudPoint: missing key\(s\) \['privacy', 'utility', 'distinguishability'\]; "
                                          "expected sigma, privacy, utility, distinguishability"):
        PudPoint.from_dict({"sigma": 0.1})
    with pytest.raises(PudlabError, match=r"point: unknown key\(s\) \['speed'\]"):
        PudPoint.from_dict({**point.to_dict(), "speed": 1.0}, where="point")
    with pytest.raises(PudlabError, match="point.utility: expected a number, got 'high'"):
        PudPoint.from_dict({**point.to_dict(), "utility": "high"}, where="point")


# ---------------------------------------------------------------------------------------- CLI
def _pudlab(*args, cwd):
    return subprocess.run([sys.executable, "-m", "pudlab.cli", *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd)


def test_pud_cli_smoke(tmp_path):
    path, _ = _json_inputs(tmp_path, title="synthetic")
    out = tmp_path / "figs"
    done = _pudlab("pud", "--from-json", str(path), "--profile", "outsourcing", "--json", "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["recommended"]["sigma"] == 0.4
    assert (out / "pud_triangles_outsourcing.svg").exists() and (out / "pud.json").exists()

    # The rest in-process (same entry point, without another interpreter start).
    runner = CliRunner()
    none = runner.invoke(cli, ["pud", "--from-json", str(path), "--profile", "pol", "--json"])
    assert none.exit_code == 0, none.output
    assert json.loads(none.stdout)["recommended"] is None

    text = runner.invoke(cli, ["pud", "--from-json", str(path), "--profile", "outsourcing", "--profile", "pol"])
    assert text.exit_code == 0, text.output
    assert "recommended sigma 0.4" in text.stdout and "no sigma in the grid" in text.stdout
    assert "below: sigma 0.2" in text.stdout

    bad_profile = tmp_path / "bad.toml"
    bad_profile.write_text('[objective]\nmaximize = "speed"\n')
    failed = runner.invoke(cli, ["pud", "--from-json", str(path), "--profile", str(bad_profile)])
    assert failed.exit_code == 1 and failed.stderr.startswith("error: ")
    assert failed.stderr.strip().count("\n") == 0 and "objective.maximize" in failed.stderr

    store = runner.invoke(cli, ["pud", str(tmp_path / "store")])
    assert store.exit_code == 1 and "not a pudlab store" in store.stderr
