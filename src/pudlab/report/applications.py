"""The Privacy and PUD sections of the report, with their plots, from what ``pudlab privacy`` and
``pudlab pud`` left in the store (``STORE/privacy/*.json``, ``STORE/pud/<dataset>/pud.json``)."""

from __future__ import annotations

import functools
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from pudlab.experiments.store import Store
from pudlab.privacy.report import PrivacyReport
from pudlab.pud.scores import PudPoint
from pudlab.report.figures import NARROW_PANEL, add_legend, plt, save_responsive, wrapped
from pudlab.report.privacy_figures import decline_figure
from pudlab.report.render import Block, fmt


def _privacy_panels(report: PrivacyReport, stem: str, narrow: bool) -> Any:
    """Similarity, re-identification and (when measured) membership AUC against sigma: a row of panels
    (``narrow``: a column)."""
    sigmas = [entry.sigma for entry in report.entries]
    aucs = [e.membership.attack.auc if e.membership is not None else np.nan for e in report.entries]
    count = 3 if not all(np.isnan(aucs)) else 2
    shape, size = ((count, 1), (NARROW_PANEL[0], 3.6 * count)) if narrow else ((1, count), (4.2 * count, 4.0))
    figure, grid = plt.subplots(*shape, figsize=size, squeeze=False, layout="constrained")
    axes = list(grid.ravel())
    left, middle = axes[0], axes[1]
    left.plot(sigmas, [e.similarity.psnr_mean for e in report.entries], marker="o", label="release vs raw")
    left.plot(sigmas, [e.denoising.best.psnr for e in report.entries], marker="s", label="best denoised vs raw")
    left.set_ylabel("PSNR, dB (higher: closer to raw)")
    middle.plot(sigmas, [e.linkage.rate for e in report.entries], marker="o", label="release")
    middle.plot(sigmas, [e.denoising.best.linkage for e in report.entries], marker="s", label="after denoising")
    middle.set_ylabel("re-identified fraction")
    middle.set_ylim(-0.02, 1.02)
    if count == 3:
        axes[2].plot(sigmas, aucs, marker="o", label="membership attack")
        axes[2].axhline(0.5, color="gray", linestyle="--", linewidth=1, label="chance (0.5)")
        axes[2].set_ylabel("membership AUC")
    for axis in axes:
        axis.set_xlabel("sigma")
        axis.grid(alpha=0.3)
        add_legend(axis, below=True, width_chars=30 if narrow else 40)
    figure.suptitle(wrapped(f"Privacy of {stem} against sigma", narrow), fontsize=11)
    return figure


def privacy_figure(report: PrivacyReport, out_dir: Path, stem: str) -> tuple[Path, str, str, Path]:
    """Similarity, re-identification and membership AUC against sigma; returns (png, title, caption,
    narrow png)."""
    png = out_dir / f"privacy_{stem}.png"
    narrow = save_responsive(lambda narrow: _privacy_panels(report, stem, narrow), png, png.with_suffix(".svg"))
    measured_membership = any(e.membership is not None for e in report.entries)
    caption = ("Attacks on the released O(T_t) at each sigma. Left: mean PSNR of the release and of the best "
               "denoiser's output against the raw images. Middle: share of released samples matched to their raw "
               "image by nearest neighbour, before and after denoising. "
               + ("Right: ROC AUC of membership inference against a model trained on the release (0.5 = chance). "
                  if measured_membership else "Membership inference was not measured. ")
               + "One measurement per sigma, no band.")
    return png, f"Privacy of {stem} against sigma", caption, narrow


def _epsilon(value: float | None) -> float:
    """The stored epsilon; JSON keeps an infinite epsilon (no noise) as null."""
    return math.inf if value is None else value


def privacy_blocks(store: Store, figure_dir: Path | None = None, base: Path | None = None) -> list[Block]:
    """The Privacy section: attack results per sigma, their plot and the privacy decline (when measured);
    figures drawn into ``figure_dir``, linked relative to ``base`` (default: the store)."""
    reports = sorted((store.root / "privacy").glob("*.json"))
    if not reports:
        return []
    figure_dir = figure_dir or store.root / "figures"
    base = base or store.root
    blocks = [Block("heading", "Privacy (pudlab privacy)"),
              Block("text", "Attacks on the released O(T_t): similarity to the source, re-identification by "
                            "nearest raw sample, the best denoiser, membership inference against a model trained "
                            "on the release, and the Gaussian-mechanism epsilon (docs/privacy.md).")]
    for path in reports:
        report = PrivacyReport.from_dict(json.loads(path.read_text()), where=str(path))
        rows, decline = [], []
        for entry in report.entries:
            best = entry.denoising.best
            attack = entry.membership.attack if entry.membership is not None else None
            rows.append([f"{entry.sigma:g}", entry.similarity.psnr_mean, entry.similarity.ssim_mean, entry.linkage.rate,
                         f"{fmt(best.psnr)} ({best.psnr_by})", best.linkage, attack.auc if attack else None,
                         attack.tpr_at_fpr if attack else None, _epsilon(entry.dp.by_sensitivity["image"].epsilon)])
            for scheme, by_n in entry.decline.items():  # the three schemes, or an audit's named releases
                decline.append([f"{entry.sigma:g}", scheme, " ".join(fmt(row.psnr) for row in by_n),
                                " ".join(fmt(row.reidentified_fraction) for row in by_n)])
        blocks.append(Block("heading", f"Privacy of {path.stem}", 3))
        figures = [privacy_figure(report, figure_dir, path.stem)]
        decline_png = figure_dir / f"privacy_decline_{path.stem}.png"
        decline_narrow = save_responsive(functools.partial(decline_figure, report), decline_png,
                                         decline_png.with_suffix(".svg"))
        figures.append((decline_png, f"Privacy decline of {path.stem}",
                        "The averaging attack over n = 1..N disclosures of the same data: attacker PSNR (top) and "
                        "re-identified fraction (bottom) per sigma, with (a) fresh noise each time, (b) keyed noise "
                        "(the same noise again) or (c) disjoint subsets, one panel each; the grey lines are the "
                        "sigma/sqrt(n) law for fresh noise. Each sigma has its own colour and marker, and its points "
                        "are shifted sideways by a few hundredths of a disclosure so that equal values stay visible.",
                        decline_narrow))
        blocks.append(Block("figures", [(os.path.relpath(png, base), title, caption, os.path.relpath(narrow, base))
                                        for png, title, caption, narrow in figures]))
        blocks.append(Block("table", (["sigma", "PSNR dB", "SSIM", "re-identified", "best denoised PSNR dB",
                                       "re-identified after denoising", "membership AUC", "TPR at 1% FPR",
                                       "epsilon (image, delta 1e-5)"], rows)))
        blocks.append(Block("details", [Block("table", (["sigma", "scheme", "PSNR dB for n = 1..N",
                                                         "re-identified fraction for n = 1..N"], decline))],
                            title="Privacy decline over n disclosures (fresh noise, keyed noise, disjoint subsets)"))
    return blocks


def pud_blocks(store: Store, base: Path | None = None) -> list[Block]:
    """The PUD section: for every view kept in each ``pud.json`` (a profile, or a threat model), its
    threat model, privacy source, recommendation, P/U/D table and figures (linked relative to ``base``,
    default: the store)."""
    results = sorted((store.root / "pud").glob("*/pud.json"))
    if not results:
        return []
    blocks = [Block("heading", "PUD triangle (pudlab pud)")]
    for path in results:
        result = json.loads(path.read_text())
        blocks.append(Block("heading", f"PUD of {path.parent.name}", 3))
        views = result.get("views") if isinstance(result.get("views"), dict) else None
        if views is None:  # a pud.json of format 1: one table, every recommendation
            views = {"": {"points": result["points"], "recommendation": None, "threat_model": None}}
            blocks.extend(Block("text", item["message"]) for item in result.get("recommendations", [])
                          if item.get("message"))
        for name, view in views.items():
            blocks.extend(_pud_view_blocks(path, name, view, base or store.root))
    return blocks


def _pud_view_blocks(path: Path, name: str, view: dict, base: Path) -> list[Block]:
    """One kept view of ``path``: what P is for, where it came from, the recommendation, table, figures."""
    from pudlab.pud.views import describe_source

    points = [PudPoint.from_dict(point, where=f"{path}: views.{name}.points[{index}]")
              for index, point in enumerate(view["points"])]
    threat = view.get("threat_model")
    blocks = []
    if name:
        profile = f"profile '{name}'" if view.get("profile") else f"threat model '{threat}'"
        blocks.append(Block("text", f"{profile}: P under threat model '{threat}' (the attacker holds "
                                    f"{view.get('threat_description', '?')}); "
                                    f"{describe_source(view.get('privacy_source') or {})}."))
    if view.get("recommendation"):
        blocks.append(Block("text", view["recommendation"]["message"]))
    column = f"P (Privacy, threat model {threat})" if threat else "P (Privacy)"
    blocks.append(Block("table", (["sigma", column, "U (Utility)", "D (Distinguishability)"],
                                  [[f"{p.sigma:g}", p.privacy, p.utility, p.distinguishability] for p in points])))
    pattern = f"*_{name}.png" if name else "*.png"
    figures = [(os.path.relpath(png, base), png.stem.replace("_", " "),
                "P, U and D of each sigma, scaled to [0, 1] (docs/notation.md); the recommended sigma is "
                "highlighted." + (f" P under threat model '{threat}'." if threat else ""))
               for png in sorted(path.parent.glob(pattern)) if not png.name.endswith(".narrow.png")]
    if figures:
        blocks.append(Block("figures", figures))
    return blocks


__all__ = ["privacy_blocks", "privacy_figure", "pud_blocks"]
