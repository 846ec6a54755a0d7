"""Figures of the privacy attacks and the PUD triangle (matplotlib, Agg backend)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pudlab.errors import SpecError
from pudlab.pud.scores import AXES, AXIS_LETTERS, SIGMA_TOLERANCE, PudPoint, select_points
from pudlab.report.figures import plt, save_figure

if TYPE_CHECKING:
    from pudlab.privacy.report import PrivacyReport


# ---------------------------------------------------------------------------------------- privacy
def decline_figure(report: PrivacyReport) -> Any:
    """PSNR and re-identified fraction vs number of disclosures, per scheme and sigma."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    colours = plt.cm.viridis(np.linspace(0, 0.85, len(report.entries)))
    styles = {"fresh": "-", "keyed": "--", "disjoint": ":", "releases": "-."}
    labels = {"fresh": "(a) fresh", "keyed": "(b) keyed", "disjoint": "(c) disjoint", "releases": "named releases"}
    for colour, entry in zip(colours, report.entries, strict=True):
        for scheme, rows in entry.decline.items():
            n = [row.n for row in rows]
            left.plot(n, [row.psnr for row in rows], styles.get(scheme, "-"), color=colour, marker=".",
                      label=f"σ={entry.sigma:g} {labels.get(scheme, scheme)}")
            right.plot(n, [row.reidentified_fraction for row in rows], styles.get(scheme, "-"), color=colour,
                       marker=".")
        if "fresh" in entry.decline:  # the sigma/sqrt(n) law of fresh noise (an audit combines real releases)
            first = entry.decline["fresh"][0].psnr
            counts = np.arange(1, len(entry.decline["fresh"]) + 1)
            left.plot(counts, first + 10 * np.log10(counts), color="0.6", linewidth=0.8, zorder=0)
    left.plot([], [], color="0.6", linewidth=0.8, label="σ/√n law")
    left.set_xlabel("disclosures n")
    left.set_ylabel("attacker PSNR, dB (mean of n releases)")
    right.set_xlabel("disclosures n")
    right.set_ylabel("re-identified fraction of T")
    right.set_ylim(-0.02, 1.02)
    for axis in (left, right):
        axis.grid(alpha=0.3)
    handles, labels_ = left.get_legend_handles_labels()
    figure.legend(handles, labels_, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4, fontsize=7, frameon=False)
    figure.suptitle(f"Privacy decline (Sec. 5.1): {report.dataset.description}", fontsize=10)
    return figure


def save_decline_figures(report: PrivacyReport, out_dir: str | os.PathLike,
                         formats: Sequence[str] = ("png", "svg")) -> list[Path]:
    """Write :func:`decline_figure` as ``privacy_decline.<format>`` to ``out_dir``."""
    return [save_figure(decline_figure(report), Path(out_dir) / f"privacy_decline.{fmt}") for fmt in formats]


# ---------------------------------------------------------------------------------------- PUD
def _triangle_vertices() -> np.ndarray:
    """Unit-radius vertices P (top), U (bottom left), D (bottom right)."""
    angles = np.deg2rad([90.0, 210.0, 330.0])
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def triangle_figure(points: Sequence[PudPoint], *, title: str | None = None, highlight: float | None = None) -> Any:
    """Fig. 6-style PUD triangles, one per point, side by side.

    Each outline has vertices P, U, D at distance 1 from its centre; the filled triangle's corner
    on the centre-to-vertex axis of X lies at distance value(X) from the centre (1 = the vertex).
    ``highlight``: the sigma drawn in another colour (e.g. a recommendation).
    """
    if not points:
        raise SpecError("PUD triangles: no points to draw")
    vertices = _triangle_vertices()
    columns = min(len(points), 6)
    rows = math.ceil(len(points) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(2.3 * columns, 2.5 * rows), squeeze=False)
    for axis in axes.ravel():
        axis.axis("off")
    for index, point in enumerate(points):
        axis = axes[index // columns][index % columns]
        axis.set_aspect("equal")
        outline = np.vstack([vertices, vertices[:1]])
        for level in (0.25, 0.5, 0.75):
            axis.plot(*(level * outline).T, color="0.85", linewidth=0.6)
        for vertex in vertices:
            axis.plot([0, vertex[0]], [0, vertex[1]], color="0.85", linewidth=0.6)
        axis.plot(*outline.T, color="0.3", linewidth=1.0)
        values = np.array([point.privacy, point.utility, point.distinguishability])
        inner = vertices * values[:, None]
        special = highlight is not None and abs(point.sigma - highlight) <= SIGMA_TOLERANCE
        color = "tab:red" if special else "tab:blue"
        axis.fill(*inner.T, color=color, alpha=0.45, linewidth=1.2, edgecolor=color)
        offsets = [(0, 0.13), (-0.1, -0.12), (0.1, -0.12)]
        for letter, vertex, value, (dx, dy) in zip("PUD", vertices, values, offsets, strict=True):
            axis.text(vertex[0] + dx, vertex[1] + dy, f"{letter} {value:.2f}", ha="center", va="center", fontsize=8)
        axis.set_title(f"σ = {point.sigma:g}" + (" ★" if special else ""), fontsize=9)
        axis.set_xlim(-1.25, 1.25)
        axis.set_ylim(-0.85, 1.3)
    if title:
        figure.suptitle(title, fontsize=10)
    return figure


def curves_figure(points: Sequence[PudPoint], *, title: str | None = None, highlight: float | None = None) -> Any:
    """Privacy, Utility and Distinguishability vs sigma, three curves on one axis."""
    ordered = sorted(points, key=lambda p: p.sigma)
    sigmas = [p.sigma for p in ordered]
    figure, axis = plt.subplots(figsize=(5.5, 3.6))
    for axis_name, marker in zip(AXES, "os^", strict=True):
        axis.plot(sigmas, [p.value(axis_name) for p in ordered], marker=marker,
                  label=f"{AXIS_LETTERS[axis_name]}: {axis_name}")
    if highlight is not None:
        axis.axvline(highlight, color="tab:red", linestyle=":", label=f"recommended σ = {highlight:g}")
    axis.set_xlabel("σ (noise std, [0, 1] pixel units)")
    axis.set_ylabel("normalized value (1 = more)")
    axis.set_ylim(-0.03, 1.03)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    if title:
        axis.set_title(title, fontsize=10)
    return figure


def save_pud_figures(points: Sequence[PudPoint], out_dir: str | os.PathLike, *, title: str | None = None,
                     highlight: float | None = None, sigmas: Sequence[float] | None = None,
                     formats: Sequence[str] = ("png", "svg")) -> list[Path]:
    """Write ``pud_triangles.<fmt>`` (the chosen sigmas) and ``pud_curves.<fmt>`` (all) to ``out_dir``."""
    out = Path(out_dir)
    shown = select_points(points, sigmas)
    written = []
    for fmt in formats:
        written.append(save_figure(triangle_figure(shown, title=title, highlight=highlight), out / f"pud_triangles.{fmt}"))
        written.append(save_figure(curves_figure(points, title=title, highlight=highlight), out / f"pud_curves.{fmt}"))
    return written


__all__ = ["curves_figure", "decline_figure", "save_decline_figures", "save_pud_figures", "triangle_figure"]
