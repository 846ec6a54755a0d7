"""In-memory labelled image sets, the source-dataset record, fingerprints and the paper's split."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from pudlab.errors import DatasetError
from pudlab.seeding import derive_rng


def fingerprint_arrays(*arrays: np.ndarray) -> str:
    """SHA-256 over dtype, shape and C-order bytes of each array, in order (hex)."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        if array.size:  # (a memoryview with a 0 in its shape cannot be cast to bytes)
            digest.update(array.data.cast("B"))  # the buffer itself, no copy
    return digest.hexdigest()


@dataclass(frozen=True, eq=False)
class LabeledImages:
    """Images and labels of one set, with each sample's id in its source dataset.

    ``images``: float32 (N, C, H, W), pixel scale [0, 1] (obfuscated copies may leave it).
    ``labels``: int64 (N,), 0..C-1. ``ids``: int64 (N,), the sample's position in the source's
    official training set (test samples: ``len(train) + position``); keyed noise uses it.
    """

    images: np.ndarray
    labels: np.ndarray
    ids: np.ndarray

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise DatasetError(f"images must be (N, C, H, W), got shape {self.images.shape}")
        if self.images.dtype != np.float32:
            raise DatasetError(f"images must be float32, got {self.images.dtype}")
        if self.labels.shape != (len(self.images),) or self.ids.shape != (len(self.images),):
            raise DatasetError(
                f"{len(self.images)} images but labels {self.labels.shape} and ids {self.ids.shape}"
            )
        if self.labels.dtype != np.int64 or self.ids.dtype != np.int64:
            raise DatasetError(f"labels and ids must be int64, got {self.labels.dtype}, {self.ids.dtype}")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        c, h, w = self.images.shape[1:]
        return (int(c), int(h), int(w))

    def take(self, positions: np.ndarray) -> LabeledImages:
        """The samples at ``positions`` (indices into this set), in that order."""
        positions = np.asarray(positions, dtype=np.int64)
        return LabeledImages(self.images[positions], self.labels[positions], self.ids[positions])

    def with_images(self, images: np.ndarray) -> LabeledImages:
        """The same samples with other pixel values (e.g. obfuscated)."""
        return LabeledImages(np.ascontiguousarray(images, dtype=np.float32), self.labels, self.ids)

    def fingerprint(self) -> str:
        """SHA-256 of images, labels and ids."""
        return fingerprint_arrays(self.images, self.labels, self.ids)


@dataclass(frozen=True, eq=False)
class SourceDataset:
    """A dataset as loaded from its files: the official training set and, if any, the test set."""

    name: str
    """Name it was asked for (``mnist``, ``mnist-5k``, or the path)."""
    description: str
    """Human label for reports, e.g. ``MNIST (IDX)`` or ``CIFAR-10 (JPEG re-encode)``."""
    train: LabeledImages
    test: LabeledImages | None
    classes: tuple[str, ...]
    origin: str
    """Where the files were read from."""
    fingerprint: str = field(default="")
    """SHA-256 of the content (train then test); computed when not given."""

    def __post_init__(self) -> None:
        if not self.fingerprint:
            parts = [self.train.images, self.train.labels]
            if self.test is not None:
                parts += [self.test.images, self.test.labels]
            object.__setattr__(self, "fingerprint", fingerprint_arrays(*parts))
        for part_name, part in (("train", self.train), ("test", self.test)):
            if part is None or len(part) == 0:
                continue
            low, high = int(part.labels.min()), int(part.labels.max())
            if low < 0 or high >= len(self.classes):
                raise DatasetError(
                    f"{self.origin}: {part_name} labels span {low}..{high}, expected 0..{len(self.classes) - 1}"
                )

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        return self.train.sample_shape


@dataclass(frozen=True, eq=False)
class Split:
    """The paper's split of the official training set: T_t (train) and T_e (eval)."""

    train: LabeledImages
    eval: LabeledImages
    seed: int
    eval_fraction: float


def split_train_eval(source: SourceDataset, *, eval_fraction: float = 0.1, seed: int = 0) -> Split:
    """Seeded random split of ``source.train`` into T_t (1 - eval_fraction) and T_e (eval_fraction).

    The paper uses 90 % / 10 % of the official training set; the official test set is not used.
    Both parts keep the source order of their samples.
    """
    if not 0.0 < eval_fraction < 1.0:
        raise DatasetError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
    n = len(source.train)
    n_eval = int(round(n * eval_fraction))
    if n_eval == 0 or n_eval == n:
        raise DatasetError(f"{source.name}: {n} samples cannot be split with eval_fraction {eval_fraction}")
    order = derive_rng(seed, "split").permutation(n)
    eval_positions = np.sort(order[:n_eval])
    train_positions = np.sort(order[n_eval:])
    return Split(source.train.take(train_positions), source.train.take(eval_positions), seed, eval_fraction)
