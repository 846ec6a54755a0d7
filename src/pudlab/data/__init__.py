"""Datasets: file formats, named sources, the paper's train/eval split."""

from .dataset import LabeledImages, SourceDataset, Split, fingerprint_arrays, split_train_eval

__all__ = ["LabeledImages", "SourceDataset", "Split", "fingerprint_arrays", "split_train_eval"]
