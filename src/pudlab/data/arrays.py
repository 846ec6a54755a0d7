"""The arrays every reader returns, and the checks all readers share.

:class:`ImageArrays` is what a reader hands back: images float32 (N, C, H, W) in [0, 1]
(uint8 / 255), labels int64. :class:`RawImages` is the same before the division by 255 (uint8),
which is what the decoded-array cache stores.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from pudlab.errors import DatasetError

PathLike = str | os.PathLike[str]


class ImageArrays(NamedTuple):
    """A labelled image set as read from files (unpacks like a 5-tuple)."""

    train_images: np.ndarray
    """float32 (N, C, H, W), pixel scale [0, 1]."""
    train_labels: np.ndarray
    """int64 (N,)."""
    test_images: np.ndarray | None
    """float32 (M, C, H, W), or None when the files hold no test set."""
    test_labels: np.ndarray | None
    """int64 (M,), or None."""
    class_names: tuple[str, ...]
    """Label names in label order."""


def to_unit_float(images: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32 in [0, 1] (exact division by 255)."""
    out = images.astype(np.float32)
    out /= np.float32(255.0)
    return out


@dataclass(frozen=True)
class RawImages:
    """Decoded uint8 arrays (what the cache stores); ``formats`` lists image file types seen."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray | None
    test_labels: np.ndarray | None
    class_names: tuple[str, ...]
    formats: tuple[str, ...] = ()

    def to_arrays(self) -> ImageArrays:
        """The float32 [0, 1] :class:`ImageArrays` of these pixels."""
        return ImageArrays(
            to_unit_float(self.train_images),
            self.train_labels,
            None if self.test_images is None else to_unit_float(self.test_images),
            self.test_labels,
            self.class_names,
        )


def check_label_range(labels: np.ndarray, num_classes: int, where: PathLike) -> None:
    """DatasetError naming the first label outside 0..num_classes-1 (and how many are bad)."""
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        index = int(bad[0])
        raise DatasetError(
            f"{where}: label {int(labels[index])} at index {index} is out of range 0..{num_classes - 1}"
            + (f" ({bad.size} bad labels in all)" if bad.size > 1 else "")
        )


def as_text(value: Any) -> str:
    """A class name as ``str`` (bytes are decoded as UTF-8)."""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
