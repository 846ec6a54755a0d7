"""Fig. 1-5 from a result store alone, each with a caption that says what is plotted.

One row of panels per dataset; a band is +-1 standard deviation over the repeats (drawn when repeats > 1);
every distance figure shows the noise floor (two clean trainings that differ only in batch order).
Series kinds other than the paper's (e.g. per-layer distances or Delta) get panels of their own.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pudlab.experiments.series import series_table
from pudlab.experiments.store import Store
from pudlab.report.figures import plt, sample_grid, save_figure

FIGURES = {  # experiment -> (file stem, paper figure)
    "fig2": ("fig2_epochs", "Fig. 2"),
    "exp1": ("fig3ab_accuracy_label_degree", "Fig. 3a,b"),
    "exp2": ("fig3cd_accuracy_dataset_size", "Fig. 3c,d"),
    "exp3": ("fig4ab_distance_label_degree", "Fig. 4a,b"),
    "exp4": ("fig4cd_distance_label_overlap", "Fig. 4c,d"),
    "exp5": ("fig5_distance_dataset_size", "Fig. 5"),
}
MAIN_KINDS = ("accuracy", "distance", "floor", "epoch_accuracy", "epoch_distance")
"""Series kinds drawn on a figure's first panel; any other kind gets a panel of its own."""
PLOTTED_KINDS = ("accuracy", "distance", "epoch_accuracy", "epoch_distance")
LAYER_KIND = "layer_distance"
"""Per-layer distances ``<series>[<layer>]``: drawn for the first distance series of a panel only."""


def _extra_rows(tables: list[dict]) -> list[str]:
    kinds = {e["kind"] for table in tables for e in table.values() if e["kind"] not in MAIN_KINDS}
    return sorted(kinds - {LAYER_KIND}) + ([LAYER_KIND] if LAYER_KIND in kinds else [])


def _first_distance(table: dict) -> str | None:
    return next((name for name, entry in table.items() if entry["kind"] == "distance"), None)


def _draw_extra(axis, table: dict, kind: str) -> str:
    """Draw one extra row's panel; returns its y label."""
    if kind == LAYER_KIND:
        base = _first_distance(table) or ""
        layers = {name: entry for name, entry in table.items()
                  if entry["kind"] == LAYER_KIND and name.startswith(f"{base}[")}
        for name, entry in layers.items():
            _band(axis, entry["x"], entry["mean"], entry["std"], name[len(base):])
        return f"per-layer D of {base}"
    _draw_curves(axis, table, (kind,))
    return "Delta (Eq. 4)" if kind == "delta" else kind


@dataclass(frozen=True)
class FigureFile:
    """A drawn figure: its PNG and SVG and a caption (what is plotted, n, what the band is)."""

    png: Path
    svg: Path
    title: str
    caption: str


def _plans_by_experiment(store: Store) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = defaultdict(list)
    for plan in store.plans():
        grouped[plan["experiment"]].append(plan)
    return grouped


def _band(axis, xs, means, stds, label, **style) -> None:
    xs, means, stds = np.asarray(xs, float), np.asarray(means, float), np.asarray(stds, float)
    line = axis.plot(xs, means, marker="o", markersize=3, label=label, **style)[0]
    if np.nanmax(np.nan_to_num(stds, nan=0.0), initial=0.0) > 0:
        axis.fill_between(xs, means - stds, means + stds, color=line.get_color(), alpha=0.2, linewidth=0)


def _draw_curves(axis, table: dict, kinds: tuple[str, ...]) -> None:
    for name, entry in table.items():
        if entry["kind"] in kinds:
            _band(axis, entry["x"], entry["mean"], entry["std"], name)


def _draw_floor(axis, table: dict) -> None:
    floors = [(name, entry) for name, entry in table.items() if entry["kind"] == "floor"]
    for index, (name, entry) in enumerate(floors):
        value, std = entry["mean"][0], entry["std"][0]
        label = f"noise floor {name[6:-1]}" if len(floors) > 1 else "noise floor (batch order only)"
        axis.axhline(value, color="gray", linestyle=("--", ":", "-.")[index % 3], linewidth=1, label=label)
        if std and std > 0:
            axis.axhspan(value - std, value + std, color="gray", alpha=0.12)


def _draw_epoch_floor(axis, table: dict) -> None:
    """Fig. 2: D_1 compares W_r with a training on the same data in another batch order: the noise floor."""
    entry = table.get("D_1")
    if entry is not None and entry["x"]:
        axis.fill_between(np.asarray(entry["x"], float), 0, np.asarray(entry["mean"], float), color="gray",
                          alpha=0.15, linewidth=0, label="noise floor (D_1: batch order only)")


def _max_n(tables: list[dict]) -> int:
    return max((n for table in tables for entry in table.values() for n in entry["n"]), default=0)


def _band_text(n: int) -> str:
    if n > 1:
        return f"Each point is the mean over n = {n} repeats (shuffle and noise seeds); the band is +-1 std."
    return "One training per point (n = 1): no band; rerun with --repeats 3 or more for +-1 std bands."


def _caption(experiment: str, plans: list[dict], tables: list[dict], extra_kinds: list[str]) -> str:
    spec = plans[0]["spec"]
    datasets = ", ".join(plan["dataset"] for plan in plans)
    n = _max_n(tables)
    names = sorted({name for table in tables for name, e in table.items() if e["kind"] in PLOTTED_KINDS})
    if experiment == "fig2":
        text = (f"Left: D(W_r, W_i) per epoch (F-norm of the weight difference); right: accuracy A(W_i) on T_e "
                f"per epoch. Series {', '.join(names)} on {datasets}. D_1 compares W_r with a training on the "
                f"same data in another batch order, so the grey area under D_1 is the noise floor.")
    else:
        is_accuracy = any(e["kind"] == "accuracy" for table in tables for e in table.values())
        what = "accuracy on T_e" if is_accuracy else "F-norm distance D(W_r, W_o)"
        text = f"{what} against the noise level sigma, series {', '.join(names)}, on {datasets}."
        if not is_accuracy:
            text += (" Dashed grey line: the noise floor, D between two clean trainings that differ only in batch "
                     "order (grey band: its +-1 std); a distance at or below it says nothing about the data.")
    for kind in extra_kinds:
        if kind == "delta":
            text += (" Delta panel: distinguishability |D(W_r, W_o on another dataset) - D(W_r, W_o on its own "
                     "data)| per sigma (Eq. 4).")
        elif kind == LAYER_KIND:
            text += (" Per-layer panel: the F-norm of the weight difference of each layer (weights and bias) for the "
                     "first distance series of each panel.")
        else:
            text += f" Panel '{kind}': that series kind against x."
    description = spec.get("description")
    return f"{text} {_band_text(n)}" + (f" Datasets: {description}" if description else "")


def _draw_experiment(experiment: str, plans: list[dict], store: Store, out_dir: Path) -> FigureFile:
    stem, figure_name = FIGURES.get(experiment, (experiment, experiment))
    tables = [series_table(store, plan["id"]) for plan in plans]
    extra_kinds = _extra_rows(tables)
    main_panels = 2 if experiment == "fig2" else 1
    columns = main_panels + len(extra_kinds)
    figure, axes = plt.subplots(len(plans), columns, figsize=(4.6 * columns, 3.5 * len(plans)), squeeze=False,
                                layout="constrained")
    for row, (plan, table) in enumerate(zip(plans, tables, strict=True)):
        panels = axes[row]
        if experiment == "fig2":
            _draw_epoch_floor(panels[0], table)
            _draw_curves(panels[0], table, ("epoch_distance",))
            _draw_curves(panels[1], table, ("epoch_accuracy",))
            panels[0].set_title(f"{plan['dataset']}: D(W_r, W_i) per epoch", fontsize=9)
            panels[1].set_title(f"{plan['dataset']}: A(W_i) on T_e per epoch", fontsize=9)
            panels[0].set_ylabel("F-norm distance")
            panels[1].set_ylabel("accuracy")
        else:
            is_accuracy = any(entry["kind"] == "accuracy" for entry in table.values())
            _draw_curves(panels[0], table, ("accuracy", "distance"))
            if not is_accuracy:
                _draw_floor(panels[0], table)
            panels[0].set_title(f"({chr(97 + row)}) {plan['dataset']}", fontsize=9)
            panels[0].set_ylabel("accuracy on T_e" if is_accuracy else "F-norm distance D(W_r, W_o)")
        for offset, kind in enumerate(extra_kinds):
            panels[main_panels + offset].set_ylabel(_draw_extra(panels[main_panels + offset], table, kind))
            panels[main_panels + offset].set_title(f"{plan['dataset']}", fontsize=9)
        for axis in panels:
            axis.set_xlabel("epoch" if experiment == "fig2" else "sigma")
    for axis in axes.ravel():
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            crowded = len(axis.get_legend_handles_labels()[0]) > 5
            axis.legend(fontsize=6 if crowded else 7, ncol=2 if crowded else 1)
    title = str(plans[0]["spec"].get("title", experiment))
    if not title.startswith(figure_name):  # a spec title may already name its figure
        title = f"{figure_name}: {title}"
    figure.suptitle(title, fontsize=10)
    png, svg = out_dir / f"{stem}.png", out_dir / f"{stem}.svg"
    save_figure(figure, png, svg)
    return FigureFile(png, svg, title, _caption(experiment, plans, tables, extra_kinds))


def _draw_fig1(store: Store, out_dir: Path) -> list[FigureFile]:
    from pudlab.data.dataset import LabeledImages
    from pudlab.obfuscation import obfuscate

    written = []
    for name, (images, ids, seed, sigmas) in store.previews().items():
        clean = LabeledImages(images.astype(np.float32), np.zeros(len(ids), np.int64), ids.astype(np.int64))
        rows = [(f"σ={sigma:g}", obfuscate(clean, sigma=sigma, seed=seed).images) for sigma in sigmas]
        png, svg = out_dir / f"fig1_samples_{name}.png", out_dir / f"fig1_samples_{name}.svg"
        title = f"Fig. 1: obfuscated samples of {name}"
        sample_grid(rows, png, svg, title=title)
        caption = (f"{len(ids)} training images of {name} (the first of each class), one row per "
                   f"noise level sigma ({', '.join(f'{s:g}' for s in sigmas)}); pixel values in [0, 1], noise "
                   f"keyed by the preset's noise seed {seed}, shown clipped to [0, 1].")
        written.append(FigureFile(png, svg, title, caption))
    return written


def draw_figure_files(store: Store, out: str | os.PathLike | None = None) -> list[FigureFile]:
    """Draw every figure the store has data for; returns them with their captions."""
    out_dir = Path(out) if out else store.root / "figures"
    written = _draw_fig1(store, out_dir)
    order = list(FIGURES)
    grouped = _plans_by_experiment(store)
    for experiment in sorted(grouped, key=lambda e: (order.index(e) if e in order else len(order), e)):
        plans = grouped[experiment]
        written.append(_draw_experiment(experiment, sorted(plans, key=lambda p: p["dataset"]), store, out_dir))
    return written


def draw_figures(store: Store, out: str | os.PathLike | None = None) -> list[Path]:
    """Draw every figure the store has data for; returns the written files (PNG and SVG)."""
    return [path for item in draw_figure_files(store, out) for path in (item.png, item.svg)]


__all__ = ["FIGURES", "FigureFile", "draw_figure_files", "draw_figures"]
