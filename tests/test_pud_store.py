"""`pudlab pud STORE`: PUD inputs from a stored Exp-3 sweep, privacy kept in the store, report sections."""

import json
import subprocess
import sys

import pytest

from pudlab.data.sources import load_source
from pudlab.experiments.options import RunOptions
from pudlab.experiments.store import Store
from pudlab.experiments.sweep import prepare_sweep, run_sweep
from pudlab.io import replace_non_finite, write_json
from pudlab.privacy import PrivacyConfig, PrivacyReport, privacy_report
from pudlab.pud.store_inputs import privacy_path, pud_inputs, stored_privacy

from .test_experiments import tiny_preset


@pytest.fixture
def exp3_store(tmp_path, npz_dataset):
    preset = tiny_preset(repeats=2, sigmas=(0.0, 0.5, 1.0))
    with Store(tmp_path / "store") as store:
        options = RunOptions(workers=1, threads=1, progress=False, ensemble_size=8)
        run_sweep(store, prepare_sweep(["exp3"], [npz_dataset], preset, options), options)
    return tmp_path / "store", npz_dataset


def test_pud_inputs_from_store(exp3_store):
    root, dataset = exp3_store
    with Store(root, create=False) as store:
        data = pud_inputs(store, dataset)
    assert data["sigmas"] == [0.0, 0.5, 1.0]
    assert len(data["accuracy"]) == 3 and all(0 <= a <= 1 for a in data["accuracy"])
    # Delta at sigma 0: W_o,3,1(0) is an independent training of T_3,1 (own shuffle stream), so D_3,1(0) > 0
    honest, spoof = data["honest_distances"][0], data["spoof_distances"][0]
    assert data["delta"][0] == pytest.approx(abs(sum(spoof) / 2 - sum(honest) / 2))
    assert all(value > 0 for value in honest)
    assert all(len(values) == 2 for values in data["spoof_distances"])


def test_pud_command_on_store_and_report(exp3_store):
    root, dataset = exp3_store
    config = PrivacyConfig(queries=40, pool_size=200, denoise_samples=8, disclosures=3, membership=False,
                           learned=False)
    report = replace_non_finite(privacy_report(load_source(dataset), [0.0, 0.5, 1.0], config).to_dict())
    with Store(root, create=False) as store:
        write_json(privacy_path(store, dataset), report)
        stored = stored_privacy(store, dataset, [0.0, 0.5, 1.0], compute=False)
        assert isinstance(stored, PrivacyReport) and stored.to_dict() == report
        assert [entry.sigma for entry in stored.entries] == [0.0, 0.5, 1.0]
        # per-sigma entries are independent of the other sigmas: kept ones serve any subset; a missing one is None
        subset = stored_privacy(store, dataset, [0.0, 0.5], compute=False)
        assert subset is not None and subset.entries == stored.entries[:2]
        assert stored_privacy(store, dataset, [0.0, 0.25], compute=False) is None
    result = subprocess.run([sys.executable, "-m", "pudlab.cli", "pud", str(root), "--profile", "outsourcing",
                             "--json"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [p["sigma"] for p in data["points"]] == [0.0, 0.5, 1.0]
    assert data["points"][0]["utility"] == pytest.approx(1.0)
    assert (root / "pud" / "tiny" / "pud.json").exists() and (root / "pud" / "tiny" / "pud_triangles_outsourcing.png").exists()
    subprocess.run([sys.executable, "-m", "pudlab.cli", "report", str(root)], check=True, capture_output=True)
    markdown = (root / "report.md").read_text()
    assert "## Privacy (pudlab privacy)" in markdown and "## PUD triangle (pudlab pud)" in markdown


def test_pud_store_without_exp3_is_a_clear_error(tmp_path, npz_dataset):
    with Store(tmp_path / "s") as store:
        options = RunOptions(workers=1, threads=1, progress=False, ensemble_size=1)
        run_sweep(store, prepare_sweep(["exp4"], [npz_dataset], tiny_preset(), options), options)
    result = subprocess.run([sys.executable, "-m", "pudlab.cli", "pud", str(tmp_path / "s")], capture_output=True,
                            text=True)
    assert result.returncode != 0 and "no Exp-3 sweep" in result.stderr


def test_store_privacy_keeps_each_sigma_and_resumes(tmp_path, npz_dataset, monkeypatch):
    """Issue 24: `pud STORE` kept nothing when interrupted, took no attack sizes, and guessed its time."""
    import pudlab.pud.store_inputs as store_inputs
    from pudlab.pud.store_inputs import measured_seconds_per_sigma

    config = PrivacyConfig(queries=30, pool_size=100, denoise_samples=4, disclosures=2, membership=False,
                           learned=False)
    calls = []
    real = store_inputs.privacy_report

    def interrupted_after_one(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    with Store(tmp_path / "s") as store:
        monkeypatch.setattr(store_inputs, "privacy_report", interrupted_after_one)
        with pytest.raises(KeyboardInterrupt):
            stored_privacy(store, npz_dataset, [0.0, 0.5, 1.0], config=config)
        kept = PrivacyReport.from_dict(json.loads(privacy_path(store, npz_dataset).read_text()))
        assert [entry.sigma for entry in kept.entries] == [0.0]  # the finished sigma was kept
        assert measured_seconds_per_sigma(store, npz_dataset, config) == pytest.approx(sum(kept.entries[0].seconds.values()))
        monkeypatch.setattr(store_inputs, "privacy_report", real)
        lines: list[str] = []
        report = stored_privacy(store, npz_dataset, [0.0, 0.5, 1.0], config=config, log=lines.append)
        assert report is not None and [entry.sigma for entry in report.entries] == [0.0, 0.5, 1.0]
        assert report.entries[0] == kept.entries[0]  # resumed: sigma 0 was not measured again
        assert len(lines) == 2 and "min left for 1 sigma" in lines[0]
        other = PrivacyConfig(queries=20, pool_size=100, denoise_samples=4, membership=False, learned=False)
        assert stored_privacy(store, npz_dataset, [0.0], config=other, compute=False) is None  # other attack sizes
    result = subprocess.run([sys.executable, "-m", "pudlab.cli", "pud", "--help"], capture_output=True, text=True)
    assert all(option in result.stdout for option in ("--queries", "--mia-members", "--lira-shadows", "--threat-model"))
