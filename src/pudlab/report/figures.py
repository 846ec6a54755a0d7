"""Figures. Matplotlib with the Agg backend (no screen needed); every figure saved atomically.

A saved PNG records, in its text chunks, the smallest legend font size of the figure (``pudlab:legend_pt``)
and its resolution (``pudlab:dpi``), so that the report and its browser check can tell how large the
legend text appears at the size the figure is displayed (:func:`pudlab.report.render.png_text`). A figure can also be drawn
twice (:func:`save_responsive`): once wide (panels side by side, for a desktop) and once narrow (panels
stacked, for a phone), the report showing the one that fits the screen.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from pudlab.io import atomic_path
from pudlab.report.render import DPI_KEY, LEGEND_KEY

DPI = 120
"""Resolution of every saved raster figure, pixels per inch."""
LEGEND_PT = 10.0
"""Font size of legend text, in points: at least 8 pt once a figure is shown at the report's sizes."""
NARROW_PANEL = (3.6, 2.9)
"""Width and height (inches) of one panel of a figure's narrow (phone) variant."""


def legend_points(figure: plt.Figure) -> float | None:
    """The smallest font size (points) of any legend text in ``figure`` (axes and figure legends); None
    when it has no legend."""
    legends = [axis.get_legend() for axis in figure.axes] + list(figure.legends)
    sizes = [text.get_fontsize() for legend in legends if legend is not None
             for text in (*legend.get_texts(), legend.get_title()) if text.get_text()]
    return float(min(sizes)) if sizes else None


def save_figure(figure: plt.Figure, path: str | os.PathLike, *more_paths: str | os.PathLike) -> Path:
    """Save ``figure`` to ``path`` (and ``more_paths``; format from each suffix) atomically, then close it.

    A PNG carries the figure's smallest legend font size and its dpi as text chunks. Returns the first path.
    """
    legend = legend_points(figure)
    for target in (Path(path), *(Path(p) for p in more_paths)):
        fmt = target.suffix.lstrip(".") or "png"
        metadata = {DPI_KEY: str(DPI), **({LEGEND_KEY: f"{legend:g}"} if legend is not None else {})}
        with atomic_path(target) as temp:
            figure.savefig(temp, format=fmt, dpi=DPI, bbox_inches="tight",
                           metadata=metadata if fmt == "png" else None)
    plt.close(figure)
    return Path(path)


def narrow_path(png: str | os.PathLike) -> Path:
    """Where the narrow (phone) variant of the figure ``png`` is saved: ``<stem>.narrow.png`` beside it."""
    png = Path(png)
    return png.with_name(f"{png.stem}.narrow.png")


def save_responsive(draw: Callable[[bool], plt.Figure], png: str | os.PathLike, *more_paths: str | os.PathLike
                    ) -> Path:
    """Save ``draw(False)`` (the wide figure) to ``png`` and ``more_paths``, and ``draw(True)`` (panels
    stacked for a narrow screen) to :func:`narrow_path`; returns the narrow variant's path."""
    save_figure(draw(False), png, *more_paths)
    return save_figure(draw(True), narrow_path(png))


def add_legend(axis: plt.Axes, *, below: bool = False, width_chars: int = 46, fontsize: float = LEGEND_PT,
               **options: Any) -> None:
    """A legend at :data:`LEGEND_PT`: inside the axes where matplotlib finds room, or ``below`` the axes, in
    two columns when two labels fit in ``width_chars`` characters, so that it never hides a line."""
    handles, labels = axis.get_legend_handles_labels()
    if not handles:
        return
    if below:
        columns = 2 if len(labels) > 1 and 2 * max(len(label) for label in labels) <= width_chars else 1
        options = {"loc": "upper center", "bbox_to_anchor": (0.5, -0.22), "ncol": columns, "frameon": False,
                   **options}
    axis.legend(handles, labels, fontsize=fontsize, **options)


def wrapped(title: str, narrow: bool, width: int = 44) -> str:
    """``title`` broken into lines of at most ``width`` characters for a narrow figure (else unchanged)."""
    import textwrap

    return "\n".join(textwrap.wrap(title, width)) if narrow else title


def _displayable(image: np.ndarray) -> np.ndarray:
    """(C, H, W) float -> (H, W) or (H, W, 3) clipped to [0, 1] for imshow."""
    image = np.clip(image, 0.0, 1.0)
    if image.shape[0] == 1:
        return image[0]
    return np.transpose(image, (1, 2, 0))


def sample_grid_figure(rows: Sequence[tuple[str, np.ndarray]], *, title: str | None = None,
                       narrow: bool = False) -> plt.Figure:
    """A Fig. 1-style grid: one row per (label, images (N, C, H, W)), one column per sample; ``narrow``
    (for a phone): one column per label, one row per sample, smaller cells."""
    if not rows:
        raise ValueError("sample_grid needs at least one row")
    samples = max(len(images) for _, images in rows)
    shape = (samples, len(rows)) if narrow else (len(rows), samples)
    size = (0.55 * len(rows) + 0.3, 0.55 * samples + 0.9) if narrow else (1.1 * samples + 1.0, 1.15 * len(rows))
    figure, axes = plt.subplots(*shape, figsize=size, squeeze=False)
    for row_index, (label, images) in enumerate(rows):
        for column in range(samples):
            axis = axes[column][row_index] if narrow else axes[row_index][column]
            axis.set_xticks([])
            axis.set_yticks([])
            if column < len(images):
                shown = _displayable(images[column])
                axis.imshow(shown, cmap="gray" if shown.ndim == 2 else None, vmin=0.0, vmax=1.0)
            else:
                axis.axis("off")
        if narrow:
            axes[0][row_index].set_title(label, fontsize=9)
        else:
            axes[row_index][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=12)
    if title:
        figure.suptitle(wrapped(title, narrow, 36), fontsize=11 if narrow else 14)
    return figure


def sample_grid(rows: Sequence[tuple[str, np.ndarray]], path: str | os.PathLike, *more_paths: str | os.PathLike,
                title: str | None = None) -> Path:
    """Save :func:`sample_grid_figure` to ``path`` (and ``more_paths``)."""
    return save_figure(sample_grid_figure(rows, title=title), path, *more_paths)
