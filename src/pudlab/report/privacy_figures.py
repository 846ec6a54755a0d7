"""Figures of the privacy attacks and the PUD triangle (matplotlib, Agg backend)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.ticker import MaxNLocator

from pudlab.errors import SpecError
from pudlab.pud.scores import AXES, AXIS_LETTERS, SIGMA_TOLERANCE, PudPoint, select_points
from pudlab.report.figures import LEGEND_PT, NARROW_PANEL, add_legend, plt, save_figure, wrapped

if TYPE_CHECKING:
    from pudlab.privacy.report import PrivacyReport


# ---------------------------------------------------------------------------------------- privacy
SCHEME_TITLES = {"fresh": "(a) fresh noise each time", "keyed": "(b) keyed: the same noise again",
                 "disjoint": "(c) disjoint subsets", "releases": "(d) the named releases together"}
SIGMA_MARKERS = "osD^vP*X"
DODGE = 0.24
"""Total sideways spread (in disclosures) of the sigmas' points at one n, so that equal values stay visible."""


def decline_figure(report: PrivacyReport, narrow: bool = False) -> Any:
    """PSNR and re-identified fraction vs number of disclosures: one panel per scheme and quantity (a row
    per quantity; ``narrow``: every panel in one column), one line per sigma, each sigma with its own colour
    and marker and shifted a little sideways so that lines with equal values do not hide each other."""
    schemes = [scheme for scheme in SCHEME_TITLES if any(scheme in e.decline for e in report.entries)]
    quantities = (("psnr", "attacker PSNR, dB\n(mean of n releases)"), ("reidentified_fraction",
                                                                      "re-identified\nfraction of T"))
    if narrow:
        figure, grid = plt.subplots(len(quantities) * len(schemes), 1, figsize=(NARROW_PANEL[0], 3.0 * 2 * len(schemes)),
                                    squeeze=False, layout="constrained")
        axes = grid.reshape(len(schemes), len(quantities)).T  # scheme by scheme: PSNR, then re-identified
    else:
        figure, axes = plt.subplots(len(quantities), len(schemes), figsize=(4.2 * len(schemes), 6.4), squeeze=False,
                                    layout="constrained")
    colours = plt.cm.viridis(np.linspace(0, 0.85, len(report.entries)))
    count = len(report.entries)
    for index, (colour, entry) in enumerate(zip(colours, report.entries, strict=True)):
        shift = (index - (count - 1) / 2) * (DODGE / max(count - 1, 1))
        marker = SIGMA_MARKERS[index % len(SIGMA_MARKERS)]
        for column, scheme in enumerate(schemes):
            rows = entry.decline.get(scheme, [])
            n = np.array([row.n for row in rows], float) + shift
            for row_index, (key, _) in enumerate(quantities):
                axes[row_index][column].plot(n, [getattr(row, key) for row in rows], "-", color=colour, marker=marker,
                                             markersize=5, markerfacecolor="none" if index % 2 else colour,
                                             label=f"σ={entry.sigma:g}")
        if "fresh" in schemes and entry.decline.get("fresh"):
            first = entry.decline["fresh"][0].psnr
            counts = np.arange(1, len(entry.decline["fresh"]) + 1)
            axes[0][schemes.index("fresh")].plot(counts, first + 10 * np.log10(counts), color="0.6", linewidth=0.8,
                                                 zorder=0, label="σ/√n law" if index == 0 else None)
    for column, scheme in enumerate(schemes):
        for row_index, (key, label) in enumerate(quantities):
            axis = axes[row_index][column]
            axis.set_title(SCHEME_TITLES[scheme], fontsize=10)
            axis.set_ylabel(label)
            axis.set_xlabel("disclosures n")
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
            axis.grid(alpha=0.3)
            if key == "reidentified_fraction":
                axis.set_ylim(-0.04, 1.04)
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", frameon=False,
                  ncol=min(len(labels), 3 if narrow else 8), fontsize=LEGEND_PT)
    figure.suptitle(wrapped(f"Privacy decline (Sec. 5.1): {report.dataset.description}", narrow), fontsize=11)
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
    figure, axis = plt.subplots(figsize=(4.2, 3.4), layout="constrained")
    for axis_name, marker in zip(AXES, "os^", strict=True):
        axis.plot(sigmas, [p.value(axis_name) for p in ordered], marker=marker,
                  label=f"{AXIS_LETTERS[axis_name]}: {axis_name}")
    if highlight is not None:
        axis.axvline(highlight, color="tab:red", linestyle=":", label=f"recommended σ = {highlight:g}")
    axis.set_xlabel("σ (noise std, [0, 1] pixel units)")
    axis.set_ylabel("normalized value (1 = more)")
    axis.set_ylim(-0.03, 1.03)
    axis.grid(alpha=0.3)
    add_legend(axis, below=True, width_chars=40)
    if title:
        axis.set_title(wrapped(title, True, 48), fontsize=10)
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
