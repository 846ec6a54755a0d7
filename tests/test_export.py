"""Results as data: export to CSV / Parquet, DataFrames from pudlab.open_store, compare two stores."""

from __future__ import annotations

import csv
import json
import shutil
import sqlite3
import subprocess
import sys

import pytest

import pudlab
from pudlab.errors import PudlabError
from pudlab.experiments.results import compare_stores, export_store
from pudlab.io import load_weights, save_weights, weights_sha256
from tests._report_store import small_store


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    return small_store(tmp_path_factory.getbasetemp() / "shared_store")


def _pudlab(*args):
    return subprocess.run([sys.executable, "-m", "pudlab.cli", *args], capture_output=True, text=True)


def _db_count(store_dir, sql):
    with sqlite3.connect(store_dir / "pudlab.sqlite") as db:
        return db.execute(sql).fetchone()[0]


def test_export_csv_has_every_row_and_parameter(store_dir, tmp_path):
    result = _pudlab("export", str(store_dir), "--out", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    assert sorted(json.loads(result.stdout)["files"]) == sorted(str(tmp_path / f"{t}.csv")
                                                                 for t in ("series", "jobs", "roles", "claims"))
    tables = {name: list(csv.DictReader(open(tmp_path / f"{name}.csv"))) for name in ("series", "jobs", "roles", "claims")}
    assert len(tables["series"]) == _db_count(store_dir, "SELECT COUNT(*) FROM series")
    assert len(tables["jobs"]) == _db_count(store_dir, "SELECT COUNT(*) FROM jobs")
    assert len(tables["roles"]) == _db_count(store_dir, "SELECT COUNT(*) FROM roles")
    job = tables["jobs"][0]
    for column in ("key", "status", "final_accuracy", "obfuscation.sigma", "sampling.setting", "training.lr",
                   "model.widths"):
        assert column in job
    assert {row["obfuscation.sigma"] for row in tables["jobs"]} == {"0.0", "1.0"}
    assert len(tables["claims"]) == 9 and all(row["verdict"] and row["summary"] for row in tables["claims"])
    kinds = {row["kind"] for row in tables["series"]}
    assert {"accuracy", "distance", "floor", "epoch_distance"} <= kinds


def test_dataframes_and_parquet(store_dir, tmp_path):
    pandas = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    with pudlab.open_store(store_dir) as results:
        series, jobs, claims = results.series(), results.jobs(), results.claims()
    assert isinstance(series, pandas.DataFrame)
    assert list(series.columns[:6]) == ["plan", "experiment", "dataset", "series", "kind", "x"]
    accuracy = series[(series.series == "A(W_1,1)") & (series.x == 0.0)]
    assert len(accuracy) == 1 and accuracy.iloc[0]["n"] == 2
    assert set(jobs.status) == {"done"} and len(claims) == 9
    paths = export_store(store_dir, tmp_path, "parquet")
    assert pandas.read_parquet(tmp_path / "series.parquet").shape == series.shape
    assert len(paths) == 4


def test_missing_pandas_is_a_clear_error(store_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    with pudlab.open_store(store_dir) as results:
        assert results.series_rows()  # plain rows need no pandas
        with pytest.raises(PudlabError, match=r"pip install 'pudlab\[pandas\]'"):
            results.series()


def test_compare_identical_then_changed(store_dir, tmp_path):
    same = compare_stores(store_dir, store_dir)
    summary = same["summary"]
    assert summary["weights_compared"] == summary["common_jobs"] == summary["weights_identical"] > 0
    assert summary["max_series_diff"] == 0 and summary["claims_changed"] == 0

    # negative control: a copy in which one job's weights and one series point differ
    other = tmp_path / "other"
    shutil.copytree(store_dir, other)
    with sqlite3.connect(other / "pudlab.sqlite") as db:
        first, second = [k for (k,) in db.execute("SELECT key FROM jobs WHERE status = 'done' ORDER BY key LIMIT 2")]
        db.execute("UPDATE series SET mean = mean + 0.25 WHERE series = 'A(W_1,1)' AND x = 1.0")
    changed = load_weights(other / "weights" / f"{second}.safetensors")
    save_weights(other / "weights" / f"{first}.safetensors", changed)
    with sqlite3.connect(other / "pudlab.sqlite") as db:
        db.execute("UPDATE jobs SET weights_sha256 = ? WHERE key = ?", (weights_sha256(changed), first))
    result = _pudlab("compare", str(store_dir), str(other), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    by_key = {row["key"]: row for row in data["jobs"]}
    assert by_key[first]["weights_distance"] > 0 and by_key[second]["weights_distance"] == 0
    assert data["summary"]["weights_identical"] == data["summary"]["weights_compared"] - 1
    diffs = [row for row in data["series"] if row["diff"]]
    assert [(row["series"], row["x"]) for row in diffs] == [("A(W_1,1)", 1.0)]
    assert diffs[0]["diff"] == pytest.approx(0.25)
    text = _pudlab("compare", str(store_dir), str(other))
    assert text.returncode == 0 and f"job {first[:12]}" in text.stdout and "1 identical" not in text.stdout


def test_export_errors_are_one_line(tmp_path):
    result = _pudlab("export", str(tmp_path))
    assert result.returncode == 1 and result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
