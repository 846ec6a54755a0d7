"""Datasets: file formats, named sources, the paper's train/eval split."""

from .dataset import LabeledImages, SourceDataset, Split, fingerprint_arrays, split_train_eval
from .formats import (
    CIFAR10_CLASSES,
    ImageArrays,
    read_cifar10,
    read_idx,
    read_idx_header,
    read_idx_pair,
    read_image_tree,
    read_mnist_csv,
    read_npz,
)
from .sources import (
    KNOWN_SOURCES,
    KnownSource,
    SourceFile,
    fetch_source,
    load_source,
    resolve_data_dir,
    source_status,
)

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
