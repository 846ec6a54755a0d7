"""``pudlab datasets fetch`` end to end: downloads from a loopback HTTP mirror, checksums verified."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pytest
from click.testing import CliRunner

import pudlab.data.fetch as fetch_module
from pudlab.cli import cli
from pudlab.data import KNOWN_SOURCES, KnownSource, SourceFile, load_source
from pudlab.data.fetch import mirror_env_var
from pudlab.data.registry import DATA_DIR_ENV

from .test_data_formats import write_mnist_files


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    for name in (*KNOWN_SOURCES, "tiny"):
        monkeypatch.delenv(mirror_env_var(name), raising=False)


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch, http_root: tuple[Path, str]) -> tuple[Path, str, dict[str, np.ndarray]]:
    """A known source ``tiny`` whose published files (MNIST IDX format, gzipped) and MD5s are those the
    loopback mirror serves: (served folder, mirror URL, the arrays in the files)."""
    served, url = http_root
    arrays = write_mnist_files(served, n_train=30, n_test=10)
    files = tuple(SourceFile(p.name, hashlib.md5(p.read_bytes()).hexdigest(), raw_name=p.name[:-3])
                  for p in sorted(served.iterdir()))
    source = KnownSource(name="tiny", description="tiny", layout="idx", classes=tuple("0123456789"), files=files)
    monkeypatch.setattr(fetch_module, "KNOWN_SOURCES", MappingProxyType({**KNOWN_SOURCES, "tiny": source}))
    return served, url, arrays


def _fetch(data_dir: Path, *options: str, env: dict[str, str] | None = None):
    return CliRunner(env=env).invoke(cli, ["--data-dir", str(data_dir), "datasets", "fetch", "tiny", *options])


def test_fetch_downloads_verified_files_that_load(tmp_path: Path, tiny) -> None:
    served, url, arrays = tiny
    result = _fetch(tmp_path / "data", "--mirror", url)
    folder = tmp_path / "data" / "tiny"
    assert result.exit_code == 0, result.output
    assert result.stdout == f"tiny: ready in {folder}\n"
    assert f"tiny: downloading {url}train-images-idx3-ubyte.gz" in result.stderr
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in served.iterdir())  # no temp files
    assert all((folder / p.name).read_bytes() == p.read_bytes() for p in served.iterdir())
    loaded = load_source(folder, tmp_path / "data")
    np.testing.assert_array_equal(loaded.train.images[:, 0] * 255, arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(loaded.test.labels, arrays["t10k-labels-idx1-ubyte"])
    # present and valid: nothing downloaded again (the mirror may be gone)
    again = _fetch(tmp_path / "data", "--mirror", "http://127.0.0.1:9/")
    assert again.exit_code == 0 and "present and valid" in again.stderr and "downloading" not in again.stderr


def test_fetch_mirror_from_the_environment(tmp_path: Path, tiny) -> None:
    _, url, _ = tiny
    result = _fetch(tmp_path / "data", env={"PUDLAB_MIRROR_TINY": url})
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "data" / "tiny").iterdir())) == 4


def test_fetch_rejects_a_file_that_fails_its_checksum(tmp_path: Path, tiny) -> None:
    served, url, _ = tiny
    target = served / "train-images-idx3-ubyte.gz"
    expected = hashlib.md5(target.read_bytes()).hexdigest()
    write_mnist_files(tmp_path / "other", seed=1)  # same name and format, other pixels: not the published file
    target.write_bytes((tmp_path / "other" / target.name).read_bytes())
    got = hashlib.md5(target.read_bytes()).hexdigest()
    result = _fetch(tmp_path / "data", "--mirror", url)
    assert result.exit_code == 1
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith(f"error: tiny: {url}{target.name}: ") and "Traceback" not in result.output
    assert f"checksum mismatch: expected MD5 {expected}, got {got}; the download was deleted" in error
    # the files fetched before it were verified and stay; the bad one is gone, and no temp file is left
    assert sorted(p.name for p in (tmp_path / "data" / "tiny").iterdir()) == [
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


def test_fetch_command_checks_the_published_checksums(tmp_path: Path, http_root: tuple[Path, str]) -> None:
    """As a user runs it (a subprocess, the real registry): files in MNIST's format and names from a
    mirror that are not MNIST's published files are refused, naming MNIST's published MD5."""
    served, url = http_root
    write_mnist_files(served)
    got = hashlib.md5((served / "train-images-idx3-ubyte.gz").read_bytes()).hexdigest()
    result = subprocess.run([sys.executable, "-m", "pudlab.cli", "--data-dir", str(tmp_path / "data"), "datasets",
                             "fetch", "mnist"], capture_output=True, text=True,
                            env={**os.environ, mirror_env_var("mnist"): url})
    assert result.returncode == 1
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: mnist: ") and "Traceback" not in result.stderr
    assert f"expected MD5 f68b3c2dcbeaaa9fbdd348bbdeb94873, got {got}" in error
    assert not (tmp_path / "data" / "mnist").exists()  # nothing kept, not even the folder the fetch made
