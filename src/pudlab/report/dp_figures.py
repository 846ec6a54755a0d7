"""Figures and tables of ``pudlab compare-dp``: utility against empirical privacy (LiRA TPR at low FPR),
utility against formal epsilon, and the table of points and matched pairs (Markdown)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pudlab.report.figures import plt, save_figure

if TYPE_CHECKING:
    from pudlab.privacy.dp_results import ComparisonPoint, ComparisonReport

STYLE = {"obfuscation": ("tab:blue", "o", "obfuscation (train on O(T; σ))"),
         "dp-sgd": ("tab:red", "s", "DP-SGD (Opacus, raw T)")}


def _points(report: ComparisonReport, method: str) -> list[ComparisonPoint]:
    return sorted(report.method_points(method), key=lambda point: point.parameter)


def _parameter_label(point: ComparisonPoint) -> str:
    return f"σ={point.parameter:g}" if point.method == "obfuscation" else f"z={point.parameter:.3g}"


def _draw_leak(axis: Any, report: ComparisonReport, metric: str, fpr: float) -> None:
    """Per point: its mean, and its band over repeats as a box (x range by y range); a thin line joins a
    method's points in the order of their parameter (sigma or noise multiplier), not of the leak."""
    from matplotlib.patches import Rectangle

    for method, (colour, marker, label) in STYLE.items():
        rows = []
        for point in _points(report, method):
            x_band, y_band = point.band(metric), point.band("accuracy")
            if x_band is not None and y_band is not None:
                rows.append((point, x_band, y_band))
        if not rows:
            continue
        axis.plot([x.mean for _, x, _ in rows], [y.mean for _, _, y in rows], "-", color=colour, linewidth=0.8,
                  alpha=0.6, label=label)
        for point, x, y in rows:
            axis.add_patch(Rectangle((x.low, y.low), max(x.high - x.low, 1e-4), max(y.high - y.low, 1e-3),
                                     facecolor=colour, edgecolor=colour, alpha=0.15, linewidth=0.6))
            axis.plot(x.mean, y.mean, marker, color=colour, markersize=5,
                      markerfacecolor="white" if point.control else colour)
            axis.annotate(_parameter_label(point), (x.mean, y.mean), textcoords="offset points", xytext=(4, 3),
                          fontsize=6, color=colour)
    axis.axvline(fpr, color="0.5", linestyle=":", linewidth=0.8, label="a coin (TPR = FPR)")
    axis.set_xlabel(f"LiRA TPR at {fpr * 100:g} % FPR (stronger of offline / online)")
    axis.set_ylabel("accuracy on T_e")
    axis.grid(alpha=0.3)


def leak_figure(report: ComparisonReport) -> Any:
    """Accuracy against LiRA's TPR at 0.1 % and 1 % FPR, both methods, bands = range over repeats."""
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    _draw_leak(axes[0], report, "lira_tpr_at_1pct", 0.01)
    _draw_leak(axes[1], report, "lira_tpr_at_0_1pct", 0.001)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=8, frameon=False)
    repeats = report.config.repeats
    figure.suptitle(f"Utility vs empirical privacy: {report.dataset.description} ({repeats} repeats; "
                    "boxes: min..max over repeats; hollow: controls σ=0, z=0)", fontsize=9)
    return figure


def epsilon_figure(report: ComparisonReport) -> Any:
    """Accuracy against every formal epsilon(delta) of each point (log scale); controls (inf) not drawn."""
    figure, axis = plt.subplots(figsize=(6.5, 4))
    styles = [("-", None), ("--", "white")]  # the headline epsilon filled, the other hollow
    for method, (colour, marker, _) in STYLE.items():
        points = [p for p in _points(report, method) if not p.control]
        names = list(points[0].epsilons) if points else []
        for (style, face), name in zip(styles, names, strict=False):
            rows = [(p.epsilons.get(name), p.band("accuracy")) for p in points]
            finite = [(eps, band) for eps, band in rows
                      if eps is not None and math.isfinite(eps) and eps > 0 and band is not None]
            if not finite:
                continue
            finite.sort(key=lambda row: row[0])
            xs = [eps for eps, _ in finite]
            axis.fill_between(xs, [b.low for _, b in finite], [b.high for _, b in finite], color=colour, alpha=0.12,
                              linewidth=0)
            axis.plot(xs, [b.mean for _, b in finite], style, marker=marker, color=colour, markersize=5,
                      markerfacecolor=face or colour, label=name)
    clean = [p.band("accuracy") for p in report.method_points("obfuscation") if p.control]
    if clean and clean[0] is not None:
        axis.axhline(clean[0].mean, color="0.4", linestyle=":", linewidth=0.8, label="clean model (σ=0, ε=∞)")
    axis.set_xscale("log")
    axis.set_xlabel(f"formal ε at δ = {report.config.delta:g} (log scale)")
    axis.set_ylabel("accuracy on T_e")
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2, frameon=False)
    axis.set_title("Utility vs formal ε: the two ε protect different things (docs/privacy.md sec. 6)", fontsize=8)
    return figure


def save_comparison_figures(report: ComparisonReport, out_dir: str | os.PathLike,
                            formats: Sequence[str] = ("png", "svg")) -> list[Path]:
    """Write ``dp_vs_obfuscation.<format>`` (:func:`leak_figure`) and ``dp_utility_epsilon.<format>``."""
    out = Path(out_dir)
    written = [save_figure(leak_figure(report), out / f"dp_vs_obfuscation.{fmt}") for fmt in formats]
    return written + [save_figure(epsilon_figure(report), out / f"dp_utility_epsilon.{fmt}") for fmt in formats]


def _cell(band: Any, spec: str = ".3f", *, spread: bool = True) -> str:
    if band is None:
        return "-"
    if not spread or band.count < 2:
        return format(band.mean, spec)
    return f"{band.mean:{spec}} [{band.low:{spec}}, {band.high:{spec}}]"


def _epsilon(value: float | None) -> str:
    return "inf" if value is None or not math.isfinite(value) else f"{value:.4g}"


def comparison_markdown(report: ComparisonReport) -> str:
    """The points (mean [min, max] over repeats) and the matched pairs, as Markdown tables."""
    lines = ["| point | ε (headline) | ε (pixel / replace-one bound) | accuracy | loss AUC | LiRA AUC | LiRA TPR@0.1% | LiRA TPR@1% | "
             "D to clean | release linkage | wall s |", "|" + "---|" * 11]
    for point in report.points:
        others = [_epsilon(value) for value in list(point.epsilons.values())[1:]]
        lines.append(
            f"| {point.label}{' (control)' if point.control else ''} | {_epsilon(point.epsilon)} | "
            f"{', '.join(others) or '-'} | {_cell(point.band('accuracy'))} | {_cell(point.band('loss_auc'))} | "
            f"{_cell(point.band('lira_auc'))} | {_cell(point.band('lira_tpr_at_0_1pct'))} | "
            f"{_cell(point.band('lira_tpr_at_1pct'))} | {_cell(point.band('distance_to_clean'), '.2f', spread=False)} | "
            f"{_cell(point.band('release_linkage'), '.3f', spread=False)} | {point.seconds:.0f} |")
    floor = np.mean(report.distance_floor) if report.distance_floor else math.nan
    prior = ("" if report.label_prior_auc is None else
             f"; membership AUC of the label-frequency attack (the floor of the AUCs): {report.label_prior_auc:.3f}")
    lines += ["", f"D floor (clean model vs another shuffle seed): {floor:.2f}{prior}; total wall time "
              f"{report.wall_seconds:.0f} s.", ""]
    if not report.matches:
        lines.append("No matched pairs: no DP-SGD point lies within the tolerances of an obfuscation point.")
        return "\n".join(lines)
    lines += ["| matched on | obfuscation | DP-SGD | matched means | compared | obfuscation [min, max] | "
              "DP-SGD [min, max] | verdict |", "|" + "---|" * 8]
    for pair in report.matches:
        first, second = pair.obfuscation_band, pair.dp_sgd_band
        lines.append(f"| {pair.matched_on} | {pair.obfuscation} | {pair.dp_sgd} | "
                     f"{pair.matched_values[0]:.3f} / {pair.matched_values[1]:.3f} | {pair.compared} | "
                     f"{first.mean:.3f} [{first.low:.3f}, {first.high:.3f}] | "
                     f"{second.mean:.3f} [{second.low:.3f}, {second.high:.3f}] | {pair.verdict} |")
    return "\n".join(lines)


__all__ = ["comparison_markdown", "epsilon_figure", "leak_figure", "save_comparison_figures"]
