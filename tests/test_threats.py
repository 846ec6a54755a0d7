"""Threat models, the learned denoiser, LiRA's scoring and the PoL-measured Distinguishability."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pudlab.errors import SpecError
from pudlab.obfuscation import obfuscate
from pudlab.privacy.learned import LearnedDenoiserConfig, apply_denoiser, train_denoiser
from pudlab.privacy.lira import balanced_membership, lira_scores, logit_confidence
from pudlab.privacy.similarity import psnr_per_sample
from pudlab.privacy.threats import THREAT_MODELS, metrics_for, threat_model
from pudlab.pud.pol_inputs import detection_at, detection_by_sigma, with_pol_detection
from pudlab.pud.profiles import load_profile, parse_profile, recommend
from pudlab.pud.scores import PudPoint, privacy_by_threat, privacy_score

from .conftest import make_source

METRICS = {"linkage": 1.0, "linkage_chance": 0.001, "best_ssim": 0.9, "release_ssim": 0.6, "mia_auc": 0.55,
           "lira_auc": 0.7, "label_accuracy": 0.82, "label_chance": 0.1}


def test_threat_models_nest_and_each_counts_only_its_attacks():
    assert metrics_for(METRICS, "release") == {"best_ssim": 0.6}
    assert metrics_for(METRICS, "public") == {"best_ssim": 0.9, "label_accuracy": 0.82, "label_chance": 0.1}
    assert set(metrics_for(METRICS, "pool")) == {"best_ssim", "label_accuracy", "label_chance", "linkage",
                                                  "linkage_chance"}
    assert metrics_for(METRICS, "model")["mia_auc"] == 0.7  # the stronger of loss threshold and LiRA
    by_threat = privacy_by_threat(METRICS)
    assert by_threat["release"] == pytest.approx(0.4) and by_threat["public"] == pytest.approx(0.1)
    assert by_threat["pool"] == pytest.approx(0.0, abs=1e-3)
    values = [by_threat[name] for name in THREAT_MODELS]
    assert values == sorted(values, reverse=True)  # a stronger attacker never leaves more privacy
    assert privacy_score(METRICS, threat_model="release")[0] == pytest.approx(0.4)
    with pytest.raises(SpecError, match="unknown threat model 'god'"):
        threat_model("god")


def test_profiles_name_their_threat_model():
    assert load_profile("outsourcing").threat_model == "public"
    assert load_profile("pol").distinguishability == "pol_detection"
    with pytest.raises(SpecError, match="threat_model"):
        parse_profile({"objective": {"maximize": "privacy"}, "threat_model": "god"}, source="x.toml")


@pytest.mark.slow
def test_learned_denoiser_beats_the_release_and_an_untrained_net_does_not():
    source = make_source(500, (1, 12, 12), seed=2)
    public, target = source.train.take(np.arange(400)), source.train.take(np.arange(400, 500))
    released = obfuscate(target, sigma=0.4, seed=1).images
    noisy_psnr = psnr_per_sample(target.images, released, data_range=1.0).mean()
    trained, _ = train_denoiser(public.images, 0.4, LearnedDenoiserConfig(depth=3, channels=8, steps=300), seed=0)
    untrained, _ = train_denoiser(public.images, 0.4, LearnedDenoiserConfig(depth=3, channels=8, steps=0), seed=0)
    gain = psnr_per_sample(target.images, apply_denoiser(trained, released), data_range=1.0).mean() - noisy_psnr
    control = psnr_per_sample(target.images, apply_denoiser(untrained, released), data_range=1.0).mean() - noisy_psnr
    assert gain > 3.0  # dB
    assert control < gain - 2.0


def test_lira_scores_separate_members_and_balanced_assignment():
    inside = balanced_membership(100, 8, seed=0)
    assert (inside.sum(axis=0) == 4).all()
    rng = np.random.default_rng(0)
    base = rng.normal(0, 1, 100)
    shadow = base[None] + rng.normal(0, 0.3, (8, 100)) + 2.0 * inside  # IN models are more confident
    member = np.arange(100) < 50
    target = base + rng.normal(0, 0.3, 100) + 2.0 * member
    offline, online = lira_scores(target, shadow, inside, global_variance=True)
    assert offline[member].mean() > offline[~member].mean() + 1
    assert online[member].mean() > online[~member].mean() + 1
    # negative control: a target that saw no one scores like the OUT shadows
    offline_null, _ = lira_scores(base + rng.normal(0, 0.3, 100), shadow, inside, global_variance=True)
    assert abs(offline_null[member].mean() - offline_null[~member].mean()) < 0.5
    assert logit_confidence(np.array([[2.0, 0.0, 0.0]]), np.array([0]))[0] == pytest.approx(2 - np.log(2))


POL_JSON = {"kind": "pudlab.pol_evaluation", "rows": [
    {"sigma": 0.0, "false_reject_rate": 0.0, "spoof_rejection": 1.0, "thief_rejection": 1.0, "tamper_rejection": None},
    {"sigma": 0.1, "false_reject_rate": 0.0, "spoof_rejection": 1.0, "thief_rejection": None, "tamper_rejection": None},
    {"sigma": 0.2, "false_reject_rate": 0.1, "spoof_rejection": 0.2, "thief_rejection": 0.0, "tamper_rejection": None},
]}


def test_pol_detection_handles_absent_attacks_and_interpolates():
    by_sigma = detection_by_sigma(json.loads(json.dumps(POL_JSON)))
    assert by_sigma[0.1]["rejections"] == {"spoof": 1.0}
    assert by_sigma[0.2]["detection"] == 0.0
    assert detection_at(by_sigma, 0.15) == pytest.approx(0.5)
    assert detection_at(by_sigma, 0.5) is None
    with pytest.raises(SpecError, match="not a PoL evaluation"):
        detection_by_sigma({"kind": "pudlab.pud"})


def test_pol_recommendation_follows_the_measured_detection():
    # Delta-based D stays high up to 0.4 while the verifier loses detection after 0.1.
    points = [PudPoint(s, p, u, d, {}) for s, p, u, d in
              [(0.0, 0.0, 1.0, 1.0), (0.1, 0.2, 0.45, 0.9), (0.2, 0.4, 0.3, 0.8), (0.4, 0.6, 0.1, 0.6)]]
    profile = load_profile("pol")
    assert recommend(points, profile).recommended.sigma == 0.4  # what Delta alone would pick
    measured = with_pol_detection(points, POL_JSON)
    assert recommend(measured, profile).recommended.sigma == 0.1
    assert measured[-1].raw["pol_detection"] is None and measured[-1].distinguishability == 0.0


def test_pud_cli_adds_profiles_warns_on_negligible_privacy_and_reads_pol_detection(tmp_path):
    from .test_pud import _json_inputs, _pudlab

    path, data = _json_inputs(tmp_path)
    out = tmp_path / "pud"
    first = _pudlab("pud", "--from-json", str(path), "--profile", "outsourcing", "--out", str(out), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    pol_path = tmp_path / "pol.json"
    pol_path.write_text(json.dumps({**POL_JSON, "rows": [{**row, "sigma": s} for row, s in
                                                          zip(POL_JSON["rows"] * 2, data["sigmas"], strict=False)]}))
    second = _pudlab("pud", "--from-json", str(path), "--profile", "pol", "--pol-evaluation", str(pol_path), "--out",
                     str(out), cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    stored = json.loads((out / "pud.json").read_text())
    assert [r["profile"]["name"] for r in stored["recommendations"]] == ["outsourcing", "pol"]
    # the pol profile now uses the measured detection: only sigmas where the verifier still detects are feasible
    pol = stored["recommendations"][1]
    assert pol["recommended"] is None or pol["recommended"]["distinguishability"] >= 0.5
    low = {**data, "privacy": [{"linkage": 1.0, "linkage_chance": 0.0}] * len(data["sigmas"])}
    (tmp_path / "low.json").write_text(json.dumps(low))
    warned = _pudlab("pud", "--from-json", str(tmp_path / "low.json"), "--profile", "outsourcing", cwd=tmp_path)
    assert warned.returncode == 0 and "privacy is negligible" in warned.stderr
    assert "negligible" not in first.stderr
