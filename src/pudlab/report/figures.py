"""Figures. Matplotlib with the Agg backend (no screen needed); every figure saved atomically."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from pudlab.io import atomic_path


def save_figure(figure: plt.Figure, path: str | os.PathLike, *more_paths: str | os.PathLike) -> Path:
    """Save ``figure`` to ``path`` (and ``more_paths``; format from each suffix) atomically, then close it.

    Returns the first path.
    """
    for target in (Path(path), *(Path(p) for p in more_paths)):
        with atomic_path(target) as temp:
            figure.savefig(temp, format=target.suffix.lstrip(".") or "png", dpi=120, bbox_inches="tight")
    plt.close(figure)
    return Path(path)


def _displayable(image: np.ndarray) -> np.ndarray:
    """(C, H, W) float -> (H, W) or (H, W, 3) clipped to [0, 1] for imshow."""
    image = np.clip(image, 0.0, 1.0)
    if image.shape[0] == 1:
        return image[0]
    return np.transpose(image, (1, 2, 0))


def sample_grid(rows: Sequence[tuple[str, np.ndarray]], path: str | os.PathLike, *more_paths: str | os.PathLike,
                title: str | None = None) -> Path:
    """A Fig. 1-style grid: one row per (label, images (N, C, H, W)), one column per sample."""
    if not rows:
        raise ValueError("sample_grid needs at least one row")
    columns = max(len(images) for _, images in rows)
    figure, axes = plt.subplots(len(rows), columns, figsize=(1.1 * columns + 1.0, 1.15 * len(rows)), squeeze=False)
    for row_index, (label, images) in enumerate(rows):
        for column in range(columns):
            axis = axes[row_index][column]
            axis.set_xticks([])
            axis.set_yticks([])
            if column < len(images):
                shown = _displayable(images[column])
                axis.imshow(shown, cmap="gray" if shown.ndim == 2 else None, vmin=0.0, vmax=1.0)
            else:
                axis.axis("off")
        axes[row_index][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    if title:
        figure.suptitle(title)
    return save_figure(figure, path, *more_paths)
