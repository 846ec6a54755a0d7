"""The figure of a PoL detection evaluation (``pudlab pol evaluate``): rates and replay distances
against sigma, and every attack's detection rate (the numbers: :mod:`pudlab.pol.evaluation_results`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pudlab.pol.evaluation_results import AttackOutcome, SigmaRow, attack_matrix
from pudlab.report.figures import LEGEND_PT, plt, save_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def plot_evaluation(rows: Sequence[SigmaRow], path: str | os.PathLike, *more_paths: str | os.PathLike,
                    title: str | None = None, attacks: Sequence[AttackOutcome] = ()) -> Path:
    """Panels vs sigma: detection rates (honest acceptance, spoof rejection, AUC, TPR at 1 %
    FPR, thief rejection), the replay distances (honest, spoof, threshold, Delta) and, with
    ``attacks``, the detection rate of every attack x sigma; saved to ``path`` and ``more_paths``
    (format from each suffix). Returns ``path``."""
    sigmas = [r.sigma for r in rows]
    figure, axes = plt.subplots(1, 3 if attacks else 2, figsize=(17 if attacks else 11, 4.6))
    rates, distances = axes[0], axes[1]
    if attacks:
        _plot_attacks(axes[2], attacks)
    for key, label, style in (("honest_acceptance", "honest acceptance (1 - FRR)", "o-"),
                              ("spoof_rejection", "spoof rejection", "s-"), ("auc", "ROC AUC honest vs spoof", "^--"),
                              ("tpr_at_1pct_fpr", "TPR at 1% FPR", "v:"), ("thief_rejection", "thief rejection", "x-.")):
        values = [getattr(r, key) for r in rows]
        if all(v is None for v in values):
            continue
        rates.plot(sigmas, [np.nan if v is None else v for v in values], style, label=label)
    rates.set_xlabel("sigma (noise std, [0, 1] pixel units)")
    rates.set_ylabel("rate")
    rates.set_ylim(-0.05, 1.05)
    rates.legend(fontsize=LEGEND_PT)
    rates.grid(alpha=0.3)
    for prefix, label in (("honest_distance", "honest replay D"), ("spoof_distance", "spoof replay D"),
                          ("delta", "Delta (Eq. 4)")):
        means = np.array([getattr(r, f"{prefix}_mean") for r in rows])
        stds = np.array([getattr(r, f"{prefix}_std") for r in rows])
        distances.errorbar(sigmas, means, yerr=stds, marker="o", capsize=3, label=f"{label} (mean ± std)")
    distances.plot(sigmas, [r.threshold_mean for r in rows], "k--", label="auto threshold (mean)")
    distances.set_xlabel("sigma (noise std, [0, 1] pixel units)")
    distances.set_ylabel("F-norm distance per replayed segment")
    distances.legend(fontsize=LEGEND_PT)
    distances.grid(alpha=0.3)
    if title:
        figure.suptitle(title)
    return save_figure(figure, path, *more_paths)


def _plot_attacks(axis: Axes, attacks: Sequence[AttackOutcome]) -> None:
    names, sigmas, rates = attack_matrix(attacks)
    grid = np.array([[rates.get((n, s), np.nan) for s in sigmas] for n in names])
    axis.imshow(grid, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
    axis.set_xticks(range(len(sigmas)), [f"{s:g}" for s in sigmas])
    axis.set_yticks(range(len(names)), names, fontsize=7)
    for (i, j), value in np.ndenumerate(grid):
        if np.isfinite(value):
            axis.text(j, i, f"{value:.0%}", ha="center", va="center", fontsize=6)
    axis.set_xlabel("sigma")
    axis.set_title("attacks detected (exit != 0)", fontsize=9)


__all__ = ["plot_evaluation"]
