"""Your own release: commands recognise a release, `pudlab audit` attacks a release file as it is against
its raw data, the near-chance and sigma-range warnings, and `pudlab pud` naming the threat model it uses."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from pudlab.cli import cli
from pudlab.data.sources import load_source
from pudlab.errors import DatasetError, PudlabError
from pudlab.io import replace_non_finite
from pudlab.privacy import (
    PrivacyConfig,
    PrivacyReport,
    privacy_report,
    psnr_per_sample,
    pud_privacy_by_sigma,
)
from pudlab.privacy.audit import audit_release
from pudlab.privacy.learned import LearnedDenoiserConfig
from pudlab.privacy.membership import near_chance_warning
from pudlab.releases import read_release, release_marker

from .conftest import write_npz_dataset

SMALL = PrivacyConfig(queries=40, pool_size=200, denoise_samples=8, disclosures=2, mia_members=80, mia_nonmembers=40,
                      mia_epochs=2, mia_widths=(4, 4, 8), mia_hidden=8, lira_shadows=2, label_epochs=1,
                      learned_denoiser=LearnedDenoiserConfig(steps=5))
SMALL_OPTIONS = ["--queries", "40", "--pool-size", "200", "--denoise-samples", "8", "--disclosures", "2",
                 "--mia-members", "80", "--mia-nonmembers", "40", "--mia-epochs", "1", "--mia-widths", "4,4,4",
                 "--lira-shadows", "0", "--no-learned", "--threads", "1"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def released(tmp_path):
    """tiny.npz (600 samples, 16x16) and its releases at sigma 0.1 and 0.5 under one kept key."""
    raw = write_npz_dataset(tmp_path / "tiny.npz")
    result = CliRunner().invoke(cli, ["obfuscate", str(raw), "--sigma", "0.1,0.5", "--key-out", str(tmp_path / "key"),
                                      "--out", str(tmp_path / "rel.npz")])
    assert result.exit_code == 0, result.output
    return raw, tmp_path / "rel_sigma0.1.npz", tmp_path / "rel_sigma0.5.npz"


# ---------------------------------------------------------------------------------------- defect 1
def test_commands_that_add_noise_refuse_a_release(released):
    """Issue 24: `privacy` and `train` took a release for raw data and added noise again, silently."""
    raw, _, release = released
    runner = CliRunner()
    for command in (["privacy", str(release), "--sigma", "0.5"], ["train", str(release), "--sigma", "0.3", "--out", "x"],
                    ["obfuscate", str(release), "--sigma", "0.5", "--out", "again.npz"],
                    ["compare-dp", str(release), "--sigma", "0.5"]):
        result = runner.invoke(cli, command)
        assert result.exit_code == 1, (command, result.output)
        assert result.stderr.startswith("error: ") and result.stderr.strip().count("\n") == 0
        assert "is a release (obfuscated at sigma 0.5" in result.stderr and "--as-raw" in result.stderr
    assert "pudlab audit" in runner.invoke(cli, ["privacy", str(release), "--sigma", "0.5"]).stderr
    assert release_marker(raw) is None and release_marker(release) is not None
    # told explicitly: noise on noise, as asked
    asked = runner.invoke(cli, ["privacy", str(release), "--sigma", "0.5", "--as-raw", "--no-mia", *SMALL_OPTIONS[:8],
                                "--no-learned", "--json", "--no-progress"])
    assert asked.exit_code == 0, asked.output


def test_fl_simulate_refuses_a_release_as_its_dataset(released, tmp_path):
    """The clients obfuscate [simulation] dataset for their PoL bundles: a release would be noised again."""
    _, _, release = released
    spec = tmp_path / "fl.toml"
    spec.write_text(f'[simulation]\ndataset = "{release}"\n')
    runner = CliRunner()
    refused = runner.invoke(cli, ["fl", "simulate", str(spec), "--store", str(tmp_path / "store")])
    assert refused.exit_code == 1, refused.output
    assert refused.stderr.startswith("error: fl simulate: ") and refused.stderr.strip().count("\n") == 0
    assert "is a release (obfuscated at sigma 0.5" in refused.stderr and "--as-raw" in refused.stderr
    assert not (tmp_path / "store").exists()


def test_train_on_a_release_says_its_accuracy_is_on_obfuscated_data(released, tmp_path):
    _, _, release = released
    small = ["--epochs", "1", "--widths", "2,2,4", "--hidden", "8", "--no-progress"]
    result = CliRunner().invoke(cli, ["train", str(release), *small, "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "accuracy is on obfuscated data" in result.stderr
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert any("obfuscated data" in note for note in record["notes"])


# ---------------------------------------------------------------------------------------- defect 5, warnings
def test_near_chance_warning():
    assert "near chance" in near_chance_warning(0.112, 10)
    assert near_chance_warning(0.9, 10) is None and near_chance_warning(0.52, 2) is not None


def test_privacy_warns_when_the_attacked_model_is_near_chance(tmp_path):
    """Issue 24: a membership AUC on a model at chance accuracy was reported without a word."""
    raw = write_npz_dataset(tmp_path / "tiny.npz", num=300)
    result = CliRunner().invoke(cli, ["privacy", str(raw), "--sigma", "0.5", *SMALL_OPTIONS, "--mia-lr", "1e-6",
                                      "--json", "--no-progress"])
    assert result.exit_code == 0, result.output
    membership = json.loads(result.stdout)["sigmas"][0]["membership"]
    assert membership["eval_accuracy"] < 0.19 and "near chance" in membership["warning"]
    assert "warning: sigma 0.5: the attacked model's accuracy" in result.stderr


def test_obfuscate_warns_when_sigma_exceeds_the_pixel_range(tmp_path):
    raw = write_npz_dataset(tmp_path / "tiny.npz", num=100)
    runner = CliRunner()
    wide = runner.invoke(cli, ["obfuscate", str(raw), "--sigma", "1.5", "--insecure-seed", "1", "--out",
                               str(tmp_path / "w.npz")])
    assert wide.exit_code == 0 and "warning: sigma 1.5 exceeds the [0, 1] pixel range" in wide.stderr
    fine = runner.invoke(cli, ["obfuscate", str(raw), "--sigma", "0.5", "--insecure-seed", "1", "--out",
                               str(tmp_path / "f.npz")])
    assert fine.exit_code == 0 and "pixel range" not in fine.stderr


# ---------------------------------------------------------------------------------------- the audit
def test_read_release_checks_hashes_and_keeps_ids(released, tmp_path):
    _, _, release = released
    loaded = read_release(release)
    assert loaded.sigma == 0.5 and loaded.obfuscated and len(loaded.data) == 540
    assert np.all(np.diff(loaded.data.ids) > 0) and loaded.data.ids.max() < 600  # source positions, not 0..539
    with np.load(release) as npz:
        arrays = {key: npz[key] for key in npz.files}
    arrays["x"][0, 0, 0, 0] += 0.25
    tampered = tmp_path / "tampered.npz"
    np.savez(tampered, **arrays)
    tampered.with_suffix(".json").write_text(release.with_suffix(".json").read_text())
    with pytest.raises(DatasetError, match="array 'x' does not match the SHA-256"):
        read_release(tampered)
    extra = json.loads(release.with_suffix(".json").read_text())
    extra["owner_mac"] = "later manifests may add fields"
    release.with_suffix(".json").write_text(json.dumps(extra))
    assert read_release(release).sigma == 0.5


@pytest.mark.slow
def test_audit_attacks_the_file_as_it_is(released):
    raw_path, low, high = released
    raw = load_source(raw_path)
    report = audit_release([low, high], raw, SMALL, train_model=True)
    assert [entry.sigma for entry in report.entries] == [0.1, 0.5]
    for entry, checked, path in zip(report.entries, report.audit or [], (low, high), strict=True):
        assert checked.hashes_verified and checked.matched == 540 and checked.held_out == 60
        assert abs(checked.measured_noise_std - entry.sigma) < 0.05 * entry.sigma
        release = read_release(path)  # the file's own pixels: about -20 log10(sigma) dB over all its samples
        expected = psnr_per_sample(raw.train.images[release.data.ids], release.data.images, data_range=1.0)
        assert entry.similarity.psnr_mean == pytest.approx(float(np.mean(expected)), abs=1.0)
        assert [row.n for row in entry.decline["releases"]] == [1, 2]
        assert entry.membership is not None and entry.lira is not None
    assert report.entries[0].linkage.rate == 1.0  # sigma 0.1: every released image matched to its source
    # n = 2 combines both releases: better than the sigma 0.5 file alone
    assert report.entries[1].decline["releases"][1].psnr > report.entries[1].decline["releases"][0].psnr + 5
    data = replace_non_finite(report.to_dict())
    again = PrivacyReport.from_dict(json.loads(json.dumps(data)))
    assert again.to_dict() == data and set(pud_privacy_by_sigma(data)) == {0.1, 0.5}
    # the same kind of release, measured by `pudlab privacy` on seeded noise: close, not equal
    measured = privacy_report(raw, [0.5], SMALL)
    assert measured.entries[0].similarity.psnr_mean == pytest.approx(report.entries[1].similarity.psnr_mean, abs=0.3)


def test_audit_psnr_is_the_release_own(released):
    raw_path, _, high = released
    raw = load_source(raw_path)
    config = PrivacyConfig(queries=30, pool_size=100, denoise_samples=4, membership=False, learned=False)
    report = audit_release([high], raw, config)
    release = read_release(high)
    from pudlab.seeding import derive_rng

    # never noised again: the queries (the privacy report's seeded stream) scored on the file's own pixels
    positions = derive_rng(config.seed, "privacy-queries").permutation(len(release.data))[: config.queries]
    expected = psnr_per_sample(raw.train.images[release.data.ids[positions]], release.data.images[positions],
                               data_range=1.0).mean()
    assert report.entries[0].similarity.psnr_mean == pytest.approx(float(expected), rel=1e-12)
    assert report.entries[0].membership is None and report.audit[0].model is None


def test_audit_refuses_the_wrong_raw_data(released, tmp_path):
    _, _, high = released
    other = load_source(write_npz_dataset(tmp_path / "other.npz", seed=5))
    with pytest.raises(DatasetError, match="labels differ"):
        audit_release([high], other, PrivacyConfig(membership=False, learned=False))
    smaller = load_source(write_npz_dataset(tmp_path / "small.npz", num=100))
    with pytest.raises(DatasetError, match="sample ids are not in"):
        audit_release([high], smaller, PrivacyConfig(membership=False, learned=False))
    with pytest.raises(PudlabError, match="not both"):
        audit_release([high], other, model="x", train_model=True)


def test_audit_cli_writes_a_privacy_report_pud_reads(released, tmp_path):
    raw, low, high = released
    out = tmp_path / "audit"
    result = CliRunner().invoke(cli, ["audit", str(low), str(high), "--raw", str(raw), *SMALL_OPTIONS, "--no-mia",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "SHA-256 of x, y, ids verified" in result.stdout and "named releases" in result.stdout
    data = json.loads((out / "privacy.json").read_text())
    assert data["kind"] == "pudlab.privacy_report" and data["command"].startswith("pudlab audit")
    assert [item["sigma"] for item in data["audit"]] == [0.1, 0.5] and data["created"].endswith("Z")
    assert (out / "privacy_decline.png").exists()
    bad = CliRunner().invoke(cli, ["audit", str(high), "--raw", str(high)])
    assert bad.exit_code == 2 and "is itself a release" in bad.stderr


# ---------------------------------------------------------------------------------------- defect 3: pud
def _pud_inputs(tmp_path):
    """Three sigmas; privacy where the public attacker (label inference) and the model attacker
    (linkage) disagree: P|public > 0 while P|model = 0."""
    entry = {"linkage": 1.0, "linkage_chance": 0.01, "best_ssim": 0.3, "release_ssim": 0.3, "mia_auc": 0.6,
             "label_accuracy": 0.5, "label_chance": 0.1, "lira_auc": 0.6}
    report = {"kind": "pudlab.privacy_report", "command": "pudlab privacy tiny --sigma 0,0.5,1",
              "created": "2024-05-01T12:00:00Z",
              "sigmas": [{"sigma": s, "pud_privacy": {**entry, "best_ssim": 0.9 - 0.4 * s, "release_ssim": 0.9 - 0.4 * s}}
                         for s in (0.0, 0.5, 1.0)]}
    privacy = tmp_path / "privacy.json"
    privacy.write_text(json.dumps(report))
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps({"title": "t", "sigmas": [0.0, 0.5, 1.0], "accuracy": [0.95, 0.94, 0.93],
                                  "delta": [3.0, 2.0, 1.0]}))
    return inputs, privacy


def test_pud_shows_the_p_it_uses(tmp_path):
    """Issue 24: the profile recommended with P under 'public' while the table and plots showed P under 'model'."""
    inputs, privacy = _pud_inputs(tmp_path)
    out = tmp_path / "pud"
    runner = CliRunner()
    done = runner.invoke(cli, ["pud", "--from-json", str(inputs), "--privacy-json", str(privacy), "--profile",
                               "outsourcing", "--json", "--out", str(out)])
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    chosen = result["recommended"]
    shown = {point["sigma"]: point["privacy"] for point in result["points"]}
    assert chosen["privacy"] > 0 and shown[chosen["sigma"]] == chosen["privacy"]  # the P shown is the P used
    view = result["views"]["outsourcing"]
    assert view["threat_model"] == "public" and "threat model 'public'" in view["recommendation"]["message"]
    assert all(point["raw"]["threat_model"] == "public" for point in view["points"])
    assert result["privacy_source"]["command"].startswith("pudlab privacy")
    assert result["privacy_source"]["date"] == "2024-05-01T12:00:00Z"
    assert (out / "pud_triangles_outsourcing.png").exists() and (out / "pud_curves_outsourcing.svg").exists()
    # a second profile is added to the same pud.json; the first stays
    runner.invoke(cli, ["pud", "--from-json", str(inputs), "--privacy-json", str(privacy), "--profile", "pol",
                        "--out", str(out)])
    kept = json.loads((out / "pud.json").read_text())
    assert set(kept["views"]) == {"outsourcing", "pol"} and len(kept["recommendations"]) == 2
    assert kept["views"]["outsourcing"]["recommendation"]["recommended"]["sigma"] == chosen["sigma"]
    text = runner.invoke(cli, ["pud", "--from-json", str(inputs), "--privacy-json", str(privacy)])
    assert text.exit_code == 0, text.output
    rows = [line for line in text.stdout.splitlines() if line.strip().startswith(("0 ", "0.5 ", "1 "))]
    assert len(rows) == 3 and all(" model " in row for row in rows)  # every row names its threat model
    assert "P under threat model 'model'" in text.stdout and "measured 2024-05-01" in text.stdout


@pytest.mark.slow
def test_audit_attacks_the_model_trained_on_the_release(released, tmp_path):
    """Membership inference against a model the recipient trained on the release (here a factory model):
    LiRA's shadows copy its run.json recipe."""
    raw, _, high = released
    factory = f"{__file__.rsplit('/', 1)[0]}/model_factories.py:small_mlp"
    trained = CliRunner().invoke(cli, ["train", str(high), "--sigma", "0", "--epochs", "3", "--lr", "3e-3", "--model",
                                       factory, "--eval", str(raw), "--no-progress", "--out", str(tmp_path / "run")])
    assert trained.exit_code == 0, trained.output
    report = audit_release([high], load_source(raw), SMALL, model=tmp_path / "run")
    entry, checked = report.entries[0], (report.audit or [])[0]
    assert checked.model == str(tmp_path / "run") and entry.lira is not None and entry.lira.shadows == 2
    assert entry.membership is not None and "trained on 540 samples of the release" in entry.membership.members_seen_as
    assert entry.membership.warning is None or "near chance" in entry.membership.warning
