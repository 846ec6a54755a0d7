"""Datasets: file formats, named sources, the paper's train/eval split.

Modules, from the bottom up: ``arrays`` (what every reader returns), ``archive`` (gzip and safe
tar reading), ``cache`` (decoded-array cache), one reader module per format (``idx``, ``cifar``,
``images`` for class-folder trees, ``.npz`` and the MNIST CSV), ``registry`` (the known sources
and the data dir), ``sources`` (locating and loading a source), ``fetch`` (verified downloads),
``dataset`` (in-memory sets and the train/eval split).
"""

from pudlab.data.arrays import ImageArrays
from pudlab.data.cifar import CIFAR10_CLASSES, read_cifar10
from pudlab.data.dataset import (
    LabeledImages,
    SourceDataset,
    Split,
    fingerprint_arrays,
    split_train_eval,
)
from pudlab.data.fetch import fetch_source
from pudlab.data.idx import read_idx, read_idx_header, read_idx_pair
from pudlab.data.images import read_image_tree, read_mnist_csv, read_npz
from pudlab.data.registry import KNOWN_SOURCES, KnownSource, SourceFile, resolve_data_dir
from pudlab.data.sources import load_source, source_status

__all__ = [
    "CIFAR10_CLASSES",
    "KNOWN_SOURCES",
    "ImageArrays",
    "KnownSource",
    "LabeledImages",
    "SourceDataset",
    "SourceFile",
    "Split",
    "fetch_source",
    "fingerprint_arrays",
    "load_source",
    "read_cifar10",
    "read_idx",
    "read_idx_header",
    "read_idx_pair",
    "read_image_tree",
    "read_mnist_csv",
    "read_npz",
    "resolve_data_dir",
    "source_status",
    "split_train_eval",
]
