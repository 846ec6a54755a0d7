"""Privacy metrics (pudlab.privacy) on tiny synthetic arrays, the typed report, and the `pudlab privacy` CLI."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from scipy.stats import norm
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from pudlab.cli import cli
from pudlab.errors import PudlabError, SpecError
from pudlab.io import replace_non_finite
from pudlab.metrics import roc_auc, tpr_at_fpr
from pudlab.model import ModelConfig, build_model, initial_state
from pudlab.obfuscation import obfuscate
from pudlab.privacy import (
    PSNR_CAP_DB,
    DenoiseGrid,
    PrivacyConfig,
    PrivacyReport,
    SigmaPrivacy,
    analytic_gaussian_epsilon,
    averaging_attack,
    classic_gaussian_epsilon,
    composed_epsilon,
    denoise,
    denoising_attack,
    dp_accounting,
    gaussian_delta,
    l2_sensitivity,
    linkage_rate,
    loss_threshold_attack,
    membership_inference,
    nearest_indices,
    privacy_report,
    psnr_per_sample,
    pud_privacy_by_sigma,
    ssim_per_sample,
    zcdp_epsilon,
)
from pudlab.privacy.learned import LearnedDenoiserConfig
from pudlab.train.trainer import TrainConfig, train_model

from .conftest import make_images, make_source

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data():
    return make_images(240, (1, 12, 12), seed=3)


# ---------------------------------------------------------------------------------------- similarity
def test_psnr_hand_value_and_skimage():
    reference = np.zeros((1, 1, 4, 4))
    estimate = np.full((1, 1, 4, 4), 0.1)
    assert psnr_per_sample(reference, estimate, data_range=1.0)[0] == pytest.approx(20.0)
    assert psnr_per_sample(reference, estimate, data_range=2.0)[0] == pytest.approx(20.0 + 20 * math.log10(2))
    rng = np.random.default_rng(0)
    first = rng.random((3, 1, 8, 8))
    second = first + rng.normal(0, 0.2, first.shape)
    ours = psnr_per_sample(first, second, data_range=1.0)
    for index in range(3):
        assert ours[index] == pytest.approx(peak_signal_noise_ratio(first[index], second[index], data_range=1.0))
    assert psnr_per_sample(first, first, data_range=1.0)[0] == PSNR_CAP_DB


def test_ssim_matches_skimage(data):
    noisy = obfuscate(data, sigma=0.2, seed=1).images[:4]
    ours = ssim_per_sample(data.images[:4], noisy, data_range=1.0)
    for index in range(4):
        expected = structural_similarity(data.images[index, 0].astype(np.float64), noisy[index, 0].astype(np.float64),
                                         data_range=1.0, win_size=7)
        assert ours[index] == pytest.approx(expected)
    assert ssim_per_sample(data.images[:2], data.images[:2], data_range=1.0) == pytest.approx([1.0, 1.0])
    colour = np.random.default_rng(1).random((2, 3, 9, 9)).astype(np.float32)
    assert ssim_per_sample(colour, colour, data_range=1.0) == pytest.approx([1.0, 1.0])


# ---------------------------------------------------------------------------------------- linkage
def test_nearest_indices_brute_force():
    rng = np.random.default_rng(2)
    pool = rng.random((50, 1, 3, 3))
    queries = rng.random((17, 1, 3, 3))
    expected = np.argmin(((queries.reshape(17, 1, -1) - pool.reshape(1, 50, -1)) ** 2).sum(-1), axis=1)
    assert np.array_equal(nearest_indices(queries, pool, chunk_size=4), expected)


def test_linkage_is_one_at_sigma_zero_and_falls(data):
    pool, pool_ids = data.images, data.ids
    queries = data.take(np.arange(0, 240, 3))
    rates = [linkage_rate(obfuscate(queries, sigma=sigma, seed=4).images, queries.ids, pool, pool_ids)
             for sigma in (0.0, 0.3, 1.0, 3.0)]
    assert rates[0] == 1.0
    assert all(later <= earlier + 0.05 for earlier, later in zip(rates, rates[1:], strict=False))
    assert rates[-1] < 0.3


def test_linkage_needs_sources_in_pool(data):
    with pytest.raises(PudlabError, match="pool must contain"):
        linkage_rate(data.images[:3], np.array([0, 1, 999]), data.images, data.ids)


# ---------------------------------------------------------------------------------------- denoising
def test_denoisers_clip_and_help(data):
    raw = data.images[:20]
    released = obfuscate(data.take(np.arange(20)), sigma=0.3, seed=5).images
    for method in ("clip", "gaussian", "tv", "nlm"):
        out = denoise(released, method, strength=1.0, sigma=0.3)
        assert out.shape == released.shape and out.min() >= 0 and out.max() <= 1
    with pytest.raises(PudlabError, match="unknown denoiser"):
        denoise(released, "median", strength=1.0, sigma=0.3)
    result = denoising_attack(raw, released, sigma=0.3, query_ids=data.ids[:20], pool=data.images, pool_ids=data.ids,
                              grid=DenoiseGrid(gaussian_widths=(1.0,), tv_weights=(1.0,), nlm_strengths=(0.8,)))
    assert set(result.methods) == {"clip", "gaussian", "tv", "nlm"}
    assert result.best.psnr > result.released.psnr + 3  # denoising recovers several dB
    assert result.best.ssim >= result.released.ssim
    assert 0 <= result.best.linkage <= 1
    at_zero = denoising_attack(raw, raw, sigma=0.0)
    assert at_zero.methods == {} and at_zero.best.psnr == PSNR_CAP_DB
    assert "linkage" not in at_zero.to_dict()["best"] and at_zero.best.psnr_by == "released"


# ---------------------------------------------------------------------------------------- decline
@pytest.mark.parametrize("sigma", [0.2, 0.5])
def test_fresh_noise_error_follows_sigma_over_sqrt_n(data, sigma):
    rows = averaging_attack(data, sigma=sigma, disclosures=8, scheme="fresh", noise_seed=1,
                            pool=data.images, pool_ids=data.ids)
    for row in rows:
        # 240 * 144 noise values per release: relative std of the RMSE ~ 0.3 %
        assert row.rmse == pytest.approx(sigma / math.sqrt(row.n), rel=0.03)
        assert row.psnr == pytest.approx(rows[0].psnr + 10 * math.log10(row.n), abs=0.3)
        assert row.exposed_fraction == 1.0
    assert rows[-1].linkage >= rows[0].linkage


def test_keyed_noise_does_not_improve(data):
    rows = averaging_attack(data, sigma=0.5, disclosures=6, scheme="keyed", noise_seed=1,
                            pool=data.images, pool_ids=data.ids)
    assert len({row.rmse for row in rows}) == 1
    assert len({row.linkage for row in rows}) == 1
    assert [row.n for row in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[0].rmse == pytest.approx(0.5, rel=0.03)


def test_disjoint_subsets_disclose_each_sample_once(data):
    rows = averaging_attack(data, sigma=0.5, disclosures=4, scheme="disjoint", noise_seed=1, partition_seed=2)
    assert [row.exposed_fraction for row in rows] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    for row in rows:
        assert row.rmse == pytest.approx(0.5, rel=0.05)
        assert "linkage" not in row.to_dict()  # no pool, no linkage
    with pytest.raises(PudlabError, match="unknown disclosure scheme"):
        averaging_attack(data, sigma=0.5, disclosures=2, scheme="iid")


# ---------------------------------------------------------------------------------------- membership
def test_auc_and_tpr_hand_values():
    # pudlab.metrics serves the membership attack: members are the positives
    assert roc_auc(positives=np.array([3.0, 2.0]), negatives=np.array([1.0, 2.0])) == pytest.approx(0.875)
    assert roc_auc(positives=np.array([1.0]), negatives=np.array([2.0])) == 0.0
    members, others = np.array([5.0, 4.0, 1.0]), np.array([3.0, 2.0, 0.0])
    assert tpr_at_fpr(positives=members, negatives=others, max_fpr=0.0) == pytest.approx(2 / 3)
    assert tpr_at_fpr(positives=members, negatives=others, max_fpr=1 / 3) == pytest.approx(2 / 3)
    assert tpr_at_fpr(positives=members, negatives=others, max_fpr=2 / 3) == pytest.approx(1.0)
    perfect = loss_threshold_attack(np.array([0.1, 0.2, 0.3]), np.array([0.4, 0.5]))
    assert perfect.auc == 1.0 and perfect.tpr_at_fpr == 1.0
    assert perfect.member_loss == pytest.approx(0.2)
    inverted = loss_threshold_attack(np.array([0.4, 0.5]), np.array([0.1, 0.2, 0.3]))  # members' loss higher
    assert inverted.auc == 0.0 and inverted.tpr_at_fpr == 0.0
    ties = loss_threshold_attack(np.array([0.1, 0.2]), np.array([0.2, 0.3]), fpr=0.5)
    assert ties.auc == pytest.approx(0.875) and ties.tpr_at_fpr == 1.0
    with pytest.raises(PudlabError, match="at least one positive and one negative"):
        loss_threshold_attack(np.array([]), np.array([0.1]))


def test_membership_auc_half_for_unseen_sets():
    train, members, nonmembers = (make_images(200, (1, 12, 12), seed=s) for s in (10, 11, 12))
    config = ModelConfig((1, 12, 12), (4, 4, 8), 16)
    result = train_model(train, None, config, initial_state(config, init_seed=0),
                         TrainConfig(epochs=3, batch_size=32, lr=3e-3))
    attack = membership_inference(build_model(config, result.weights), members, nonmembers)
    assert abs(attack.auc - 0.5) < 4 * attack.auc_stderr + 0.02
    assert 0.0 < attack.auc_stderr < 0.05


# ---------------------------------------------------------------------------------------- DP
def _bisect_epsilon(mu: float, delta: float) -> float:
    low, high = 0.0, 200.0
    for _ in range(200):
        middle = (low + high) / 2
        value = norm.cdf(mu / 2 - middle / mu) - math.exp(middle) * norm.cdf(-mu / 2 - middle / mu)
        low, high = (middle, high) if value > delta else (low, middle)
    return low


@pytest.mark.parametrize(("sigma", "sensitivity"), [(1.0, 1.0), (0.5, 1.0), (2.0, 3.0)])
def test_analytic_gaussian_epsilon(sigma, sensitivity):
    epsilon = analytic_gaussian_epsilon(sigma=sigma, sensitivity=sensitivity, delta=1e-5)
    assert epsilon == pytest.approx(_bisect_epsilon(sensitivity / sigma, 1e-5), rel=1e-6)
    assert gaussian_delta(epsilon, sigma=sigma, sensitivity=sensitivity) == pytest.approx(1e-5, rel=1e-5)
    assert epsilon <= zcdp_epsilon(sigma=sigma, sensitivity=sensitivity, delta=1e-5)


def test_epsilon_trends_and_edge_cases():
    assert analytic_gaussian_epsilon(sigma=1.0, sensitivity=1.0, delta=1e-5) == pytest.approx(4.3772, abs=1e-4)
    assert analytic_gaussian_epsilon(sigma=0.0, sensitivity=1.0, delta=1e-5) == math.inf
    assert analytic_gaussian_epsilon(sigma=100.0, sensitivity=1.0, delta=0.5) == 0.0
    assert l2_sensitivity((1, 28, 28), "image") == pytest.approx(28.0)
    assert l2_sensitivity((3, 32, 32), "pixel") == 1.0
    huge = analytic_gaussian_epsilon(sigma=0.1, sensitivity=28.0, delta=1e-5)
    assert 3e4 < huge < zcdp_epsilon(sigma=0.1, sensitivity=28.0, delta=1e-5)
    fresh = [composed_epsilon(sigma=2.0, sensitivity=1.0, delta=1e-5, releases=n, scheme="fresh") for n in (1, 4, 16)]
    assert fresh[0] < fresh[1] < fresh[2]
    assert fresh[1] == pytest.approx(analytic_gaussian_epsilon(sigma=1.0, sensitivity=1.0, delta=1e-5))
    for scheme in ("keyed", "disjoint"):
        assert composed_epsilon(sigma=2.0, sensitivity=1.0, delta=1e-5, releases=16, scheme=scheme) == fresh[0]
    classic, valid = classic_gaussian_epsilon(sigma=10.0, sensitivity=1.0, delta=1e-5)
    assert valid and classic == pytest.approx(math.sqrt(2 * math.log(1.25e5)) / 10)
    accounting = dp_accounting(0.5, (1, 4, 4), delta=1e-5, releases=3)
    assert [row.n for row in accounting.by_sensitivity["image"].composition] == [1, 2, 3]
    assert list(accounting.to_dict()["by_sensitivity"]["pixel"]["composition"][0]) == [
        "n", "fresh", "keyed", "disjoint", "fresh_zcdp_bound"]


# ---------------------------------------------------------------------------------------- end to end
TINY = PrivacyConfig(queries=60, pool_size=200, denoise_samples=12, disclosures=3, mia_members=120,
                     mia_nonmembers=40, mia_epochs=2, mia_widths=(4, 4, 8), mia_hidden=16,
                     denoise=DenoiseGrid(gaussian_widths=(1.0,), tv_weights=(1.0,), nlm_strengths=(0.8,)),
                     learned_denoiser=LearnedDenoiserConfig(depth=3, channels=8, steps=60, batch_size=16),
                     label_epochs=2, lira_shadows=2)


def test_privacy_report_structure():
    source = make_source(400, (1, 12, 12), seed=5)
    report = privacy_report(source, [0.0, 0.5], TINY)
    assert isinstance(report, PrivacyReport)
    zero, half = report.entries
    assert zero.linkage.rate == 1.0 and zero.linkage.pool_size == 200
    assert zero.pud_privacy.linkage == 1.0 and zero.pud_privacy.best_ssim == pytest.approx(1.0)
    assert half.similarity.psnr_mean == pytest.approx(20 * math.log10(1 / 0.5), abs=0.5)
    assert set(half.decline) == {"fresh", "keyed", "disjoint"}
    assert 0 <= half.membership.attack.auc <= 1
    assert half.pud_privacy.mia_auc == half.membership.attack.auc
    assert half.dp.by_sensitivity["image"].sensitivity == pytest.approx(12.0)
    assert zero.dp.by_sensitivity["image"].epsilon == math.inf
    again = privacy_report(source, [0.5], TINY)
    assert again.entries[0].decline == half.decline  # every random choice is seeded

    # The JSON layout on disk (read by stored reports, `pud --privacy-json` and the store report; written
    # key-sorted, so only the keys matter; every record's exact JSON: tests/test_records.py).
    data = report.to_dict()
    assert data["kind"] == "pudlab.privacy_report"
    assert sorted(data) == ["config", "created", "dataset", "environment", "kind", "sigmas", "version",
                            "wall_seconds"]
    assert sorted(data["sigmas"][1]) == ["decline", "denoising", "dp", "learned", "linkage", "lira", "membership",
                                         "pud_privacy", "seconds", "sigma", "similarity", "threat_models"]
    assert list(data["sigmas"][1]["pud_privacy"]) == ["linkage", "linkage_chance", "best_ssim", "mia_auc",
                                                      "release_ssim", "label_accuracy", "label_chance", "lira_auc"]
    assert data["sigmas"][1]["threat_models"]["attacks"]["membership_lira"] == "model"
    assert half.pud_privacy.lira_auc == half.lira.auc and half.lira.shadows == 2
    assert half.pud_privacy.best_ssim >= half.pud_privacy.release_ssim
    assert list(data["sigmas"][1]["denoising"]["best"]) == ["psnr", "psnr_by", "ssim", "ssim_by", "linkage",
                                                           "linkage_by"]
    assert list(data["sigmas"][1]["decline"]["fresh"][0]) == ["n", "psnr", "rmse", "exposed_fraction", "linkage",
                                                             "reidentified_fraction"]
    assert {"auc", "auc_stderr", "tpr_at_fpr", "eval_accuracy", "members_seen_as"} <= set(
        data["sigmas"][1]["membership"])
    assert data["config"]["mia_widths"] == [4, 4, 8] and data["config"]["denoise"]["tv_weights"] == [1.0]

    # JSON round trip: an infinite epsilon is stored as null and reads back as None.
    stored = json.loads(json.dumps(replace_non_finite(data)))
    loaded = PrivacyReport.from_dict(stored)
    assert loaded.to_dict() == stored
    assert loaded.entries[0].dp.by_sensitivity["image"].epsilon is None
    assert loaded.entries[1] == PrivacyReport.from_dict(json.loads(json.dumps(data))).entries[1]
    assert pud_privacy_by_sigma(stored) == pud_privacy_by_sigma(report) == {0.0: zero.pud_privacy,
                                                                            0.5: half.pud_privacy}


def test_privacy_report_from_dict_errors():
    entry = {"sigma": 0.5, "pud_privacy": {"linkage": 0.5, "linkage_chance": 0.0, "best_ssim": 0.2, "mia_auc": None}}
    trimmed = {"kind": "pudlab.privacy_report", "sigmas": [entry]}
    assert pud_privacy_by_sigma(trimmed)[0.5].best_ssim == 0.2  # the P axis needs no more than this
    with pytest.raises(PudlabError, match=r"x.json: missing key\(s\) \['version', 'dataset', 'config'"):
        PrivacyReport.from_dict(trimmed, where="x.json")
    with pytest.raises(PudlabError, match=r"x.json: sigmas\[0\]: missing key\(s\) \['similarity', 'linkage'"):
        SigmaPrivacy.from_dict(entry, where="x.json: sigmas[0]")
    with pytest.raises(PudlabError, match=r"x.json: config.denoise.tv_weights: expected a list of numbers"):
        PrivacyConfig.from_dict({"denoise": {"tv_weights": 1.0}}, where="x.json: config")
    assert PrivacyConfig.from_dict(TINY.to_dict()) == TINY
    with pytest.raises(SpecError, match="x.json: not a pudlab privacy report"):
        PrivacyReport.from_dict({"kind": "pudlab.pud", "sigmas": []}, where="x.json")
    with pytest.raises(PudlabError, match=r"x.json: sigmas\[0\].pud_privacy: unknown key\(s\) \['extra'\]"):
        pud_privacy_by_sigma({**trimmed, "sigmas": [{**entry, "pud_privacy": {**entry["pud_privacy"], "extra": 1}}]},
                             source="x.json")


def test_privacy_cli_smoke(tmp_path):
    images = make_images(300, (1, 12, 12), seed=6)
    dataset = tmp_path / "tiny.npz"
    np.savez(dataset, x=images.images, y=images.labels)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "pudlab.cli", "privacy", str(dataset), "--sigma", "0", "--sigma", "0.5",
               "--queries", "40", "--pool-size", "120", "--denoise-samples", "8", "--disclosures", "2",
               "--mia-members", "60", "--mia-nonmembers", "20", "--mia-epochs", "1", "--mia-widths", "4,4,4",
               "--threads", "1", "--out", str(out), "--json", "--no-progress"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [entry["sigma"] for entry in report["sigmas"]] == [0.0, 0.5]
    assert report["sigmas"][0]["dp"]["by_sensitivity"]["image"]["epsilon"] is None  # infinite at sigma 0
    for name in ("privacy.json", "privacy_decline.png", "privacy_decline.svg"):
        assert (out / name).stat().st_size > 0
    # The rest in-process (same entry point, without another interpreter start).
    runner = CliRunner()
    text = runner.invoke(cli, [arg for arg in command[3:] if arg not in ("--json", "--out", str(out))] + ["--no-mia"])
    assert text.exit_code == 0, text.output
    assert "privacy decline" in text.stdout and "(b) keyed" in text.stdout and "(c) disjoint" in text.stdout
    bad = runner.invoke(cli, ["privacy", str(dataset), "--sigma", "-1"])
    assert bad.exit_code == 1 and bad.stderr.startswith("error:") and "Traceback" not in bad.output
