"""The figures of a federated-learning simulation's report (PNG + SVG under ``STORE/figures/``):

* ``fl_accuracy``: global accuracy on T_e per round, one line per defence, the same attack;
* ``fl_detection``: per defence and per client role, the fraction of submissions kept out of the
  aggregate (rejected by PoL or dropped by Multi-Krum): high for cheaters, low for honest clients
  is what a defence should show;
* ``fl_pud``: the PUD trade-off of the clients' sigma: Utility of the obfuscated data to the
  challenger (with its Privacy, PSNR of O(T) against T) and Distinguishability (every challenge's
  largest replay distance / threshold, honest against each cheating role; > 1 rejects).

The numbers come from :mod:`pudlab.fl.summary`; the document around them is
:mod:`pudlab.report.fl_document`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.ticker import MaxNLocator

from pudlab.fl.records import ChallengerUtility, RoundRecord
from pudlab.fl.summary import (
    DetectionSummary,
    detection_summary,
    latest_utility,
    pol_challenge_scores,
)
from pudlab.report.figures import LEGEND_PT, plt, save_figure

DEFENCE_LABELS = {"none": "no defence (FedAvg)", "multikrum": "Multi-Krum", "pol": "PoL challenges",
                  "both": "PoL + Multi-Krum"}
DEFENCE_COLOURS = {"none": "tab:red", "multikrum": "tab:orange", "pol": "tab:blue", "both": "tab:green"}
FIGURES = ("accuracy", "detection", "pud")
"""The figures, drawn to ``figures/fl_<name>.png`` and ``.svg``."""


def defence_label(defence: str) -> str:
    """How the report names a defence."""
    return DEFENCE_LABELS.get(defence, defence)


def roles_seen(summaries: Mapping[str, DetectionSummary]) -> list[str]:
    """Every client role in ``summaries``, honest first."""
    return sorted({role for s in summaries.values() for role in s.excluded}, key=lambda r: (r != "honest", r))


def _save_both(draw: Callable[[], plt.Figure], path: Path) -> list[Path]:
    """PNG and SVG of the figure ``draw()`` makes, each through :func:`pudlab.report.figures.save_figure`."""
    return [save_figure(draw(), path.with_suffix(suffix)) for suffix in (".png", ".svg")]


def accuracy_figure(results: Mapping[str, Sequence[RoundRecord]], path: Path, *, title: str) -> list[Path]:
    """Global accuracy on T_e per round, one line per defence."""

    def draw() -> plt.Figure:
        figure, axis = plt.subplots(figsize=(6.4, 4.0))
        for defence, records in results.items():
            axis.plot([r.round for r in records], [r.accuracy for r in records], marker="o", markersize=3,
                      label=defence_label(defence), color=DEFENCE_COLOURS.get(defence))
        axis.set_xlabel("round")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # rounds are whole numbers
        axis.set_ylabel("global accuracy on T_e")
        axis.set_ylim(0, 1)
        axis.grid(alpha=0.3)
        axis.legend(loc="lower right", fontsize=LEGEND_PT)
        axis.set_title(title, fontsize=10)
        return figure

    return _save_both(draw, path)


def detection_figure(summaries: Mapping[str, DetectionSummary], path: Path) -> list[Path]:
    """Per role and defence: the fraction of submissions kept out of the aggregate."""
    roles = roles_seen(summaries)
    defences = list(summaries)

    def draw() -> plt.Figure:
        figure, axis = plt.subplots(figsize=(max(6.4, 1.1 * len(roles) + 2), 3.8))
        width = 0.8 / max(len(defences), 1)
        for index, defence in enumerate(defences):
            values = [summaries[defence].excluded.get(role, np.nan) for role in roles]
            axis.bar(np.arange(len(roles)) + (index - (len(defences) - 1) / 2) * width, values, width,
                     label=defence_label(defence), color=DEFENCE_COLOURS.get(defence))
        axis.set_xticks(np.arange(len(roles)), roles)
        axis.set_ylabel("fraction of submissions\nkept out of the aggregate")
        axis.set_ylim(0, 1.05)
        axis.grid(axis="y", alpha=0.3)
        axis.legend(fontsize=LEGEND_PT, loc="upper left")
        axis.set_title("Detection: honest clients should stay in, cheaters out", fontsize=10)
        return figure

    return _save_both(draw, path)


def pud_figure(utility: ChallengerUtility | None, scores: Mapping[str, Sequence[float]], path: Path) -> list[Path]:
    """Utility of the shared data to the challenger (with its privacy) and every challenge's score."""
    roles = sorted(scores, key=lambda r: (r != "honest", r))
    finite = [s for values in scores.values() for s in values if math.isfinite(s) and s > 0]
    ceiling = max(finite) * 3 if finite else 10.0

    bars = _utility_bars(utility)

    def draw() -> plt.Figure:
        figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [1, 1.6]})
        if utility is not None and bars is not None:
            names = [f"baseline\n({utility.baseline})", "received O(T)\n(obfuscated)", "same data\nclean"]
            values = bars
            left.bar(names, values, color=["0.6", "tab:blue", "0.3"])
            for x, value in enumerate(values):
                left.text(x, value + 0.02, f"{value:.3f}", ha="center", fontsize=8)
            left.set_ylim(0, 1.1)
        else:
            left.text(0.5, 0.5, "no utility measured", ha="center", va="center", transform=left.transAxes)
        subtitle = ""
        privacy = utility.privacy if utility is not None else None
        if privacy is not None and privacy.psnr_db is not None:
            subtitle = f"\nPrivacy: PSNR(T, O(T)) = {privacy.psnr_db:.1f} dB"
        left.set_title(f"Utility of the shared data to the challenger{subtitle}", fontsize=9)
        left.set_ylabel("accuracy on T_e")
        for x, role in enumerate(roles):
            shown = np.array([ceiling if not math.isfinite(s) else s for s in scores[role]], dtype=float)
            shown = shown[~np.isnan(shown)]
            jitter = np.linspace(-0.15, 0.15, len(shown)) if len(shown) > 1 else np.zeros(len(shown))
            right.scatter(x + jitter, np.maximum(shown, 1e-3), s=12, alpha=0.7,
                          color="tab:green" if role == "honest" else "tab:red")
        right.axhline(1.0, color="k", linestyle="--", linewidth=1, label="threshold (score 1)")
        right.set_yscale("log")
        right.set_xticks(np.arange(len(roles)), roles)
        right.set_ylabel("largest replay distance / threshold")
        right.set_title("Distinguishability: every PoL challenge", fontsize=9)
        right.legend(fontsize=LEGEND_PT)
        return figure

    return _save_both(draw, path)


def _utility_bars(utility: ChallengerUtility | None) -> list[float] | None:
    """Baseline, obfuscated and clean accuracy of a measured utility (None when any is missing)."""
    if utility is None:
        return None
    baseline, obfuscated, clean = utility.baseline_accuracy, utility.accuracy_obfuscated, utility.accuracy_clean
    return None if baseline is None or obfuscated is None or clean is None else [baseline, obfuscated, clean]


def draw_fl_figures(results: Mapping[str, Sequence[RoundRecord]], figures_dir: Path, *, name: str) -> dict[str, Path]:
    """Every figure of :data:`FIGURES` into ``figures_dir``: figure name -> its PNG."""
    figures_dir.mkdir(parents=True, exist_ok=True)
    accuracy_figure(results, figures_dir / "fl_accuracy", title=f"{name}: global accuracy per round")
    detection_figure({defence: detection_summary(records) for defence, records in results.items()},
                     figures_dir / "fl_detection")
    pud_figure(latest_utility(results), pol_challenge_scores(results), figures_dir / "fl_pud")
    return {figure: figures_dir / f"fl_{figure}.png" for figure in FIGURES}


__all__ = ["DEFENCE_COLOURS", "DEFENCE_LABELS", "FIGURES", "accuracy_figure", "defence_label", "detection_figure",
           "draw_fl_figures", "pud_figure", "roles_seen"]
