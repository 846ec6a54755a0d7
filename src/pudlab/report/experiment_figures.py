"""Fig. 1-5 from a result store alone, each with a caption that says what is plotted.

One row of panels per dataset (a narrow variant stacks every panel in one column, for a phone); a band
is +-1 standard deviation over the repeats (drawn when repeats > 1), cut to the values the series can take;
every distance figure shows the noise floor (two clean trainings that differ only in batch order).
Series kinds other than the paper's (e.g. per-layer distances or Delta) get panels of their own.
"""

from __future__ import annotations

import functools
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.ticker import MaxNLocator

from pudlab.experiments.series import series_table
from pudlab.experiments.store import Store
from pudlab.report.figures import (
    NARROW_PANEL,
    add_legend,
    plt,
    sample_grid_figure,
    save_responsive,
    wrapped,
)

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
            _band(axis, entry["x"], entry["mean"], entry["std"], name[len(base):], LAYER_KIND)
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
    narrow: Path | None = None
    """The figure drawn for a narrow screen (panels stacked), when there is one."""


def _plans_by_experiment(store: Store) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = defaultdict(list)
    for plan in store.plans():
        grouped[plan["experiment"]].append(plan)
    return grouped


NONNEGATIVE_KINDS = ("distance", "floor", "delta", LAYER_KIND, "epoch_distance")
"""Series kinds that cannot be negative (a norm, or |...|): their +-1 std band is cut at 0."""
UNIT_KINDS = ("accuracy", "epoch_accuracy")
"""Series kinds in [0, 1]: their band is cut to [0, 1]."""


def _band(axis, xs, means, stds, label, kind: str = "", **style) -> None:
    """A mean line with its +-1 std band, the band cut to the values ``kind`` can take."""
    xs, means, stds = np.asarray(xs, float), np.asarray(means, float), np.asarray(stds, float)
    line = axis.plot(xs, means, marker="o", markersize=3, label=label, **style)[0]
    if np.nanmax(np.nan_to_num(stds, nan=0.0), initial=0.0) > 0:
        low, high = means - stds, means + stds
        if kind in NONNEGATIVE_KINDS or kind in UNIT_KINDS:
            low = np.maximum(low, 0.0)
        if kind in UNIT_KINDS:
            high = np.minimum(high, 1.0)
        axis.fill_between(xs, low, high, color=line.get_color(), alpha=0.2, linewidth=0)


def _draw_curves(axis, table: dict, kinds: tuple[str, ...]) -> None:
    for name, entry in table.items():
        if entry["kind"] in kinds:
            _band(axis, entry["x"], entry["mean"], entry["std"], name, entry["kind"])


def _model_label(spec: dict, model: str) -> str:
    """How the spec names a model (``Wr31`` -> ``W_r,3,1``)."""
    return str(spec.get("models", {}).get(model, {}).get("label", model))


def _draw_floor(axis, table: dict, spec: dict) -> None:
    floors = [(name, entry) for name, entry in table.items() if entry["kind"] == "floor"]
    for index, (name, entry) in enumerate(floors):
        value, std = entry["mean"][0], entry["std"][0]
        label = (f"noise floor of {_model_label(spec, name[6:-1])}" if len(floors) > 1
                 else "noise floor (batch order only)")
        axis.axhline(value, color="gray", linestyle=("--", ":", "-.")[index % 3], linewidth=1, label=label)
        if std and std > 0:
            axis.axhspan(max(value - std, 0.0), value + std, color="gray", alpha=0.12)


def _draw_epoch_floor(axis, table: dict) -> None:
    """Fig. 2: D_1 compares W_r with a training on the same data in another batch order: the noise floor."""
    entry = table.get("D_1")
    if entry is not None and entry["x"]:
        axis.fill_between(np.asarray(entry["x"], float), 0, np.asarray(entry["mean"], float), color="gray",
                          alpha=0.15, linewidth=0, label="noise floor (D_1: batch order only)")


def panel_letters(figure_name: str, count: int) -> list[str]:
    """The paper's panel letters of a figure's dataset rows: ``Fig. 3c,d`` -> ``(c) ``, ``(d) ``; none
    for a figure without letters (``Fig. 5``).

    >>> panel_letters("Fig. 3c,d", 2), panel_letters("Fig. 4a,b", 3), panel_letters("Fig. 5", 2)
    (['(c) ', '(d) '], ['(a) ', '(b) ', '(c) '], ['', ''])
    """
    match = re.search(r"\d([a-z])(?:,[a-z])*$", figure_name.strip())
    if match is None:
        return [""] * count
    return [f"({chr(ord(match.group(1)) + index)}) " for index in range(count)]


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


def _figure_title(experiment: str, plans: list[dict]) -> str:
    figure_name = FIGURES.get(experiment, (experiment, experiment))[1]
    title = str(plans[0]["spec"].get("title", experiment))
    return title if title.startswith(figure_name) else f"{figure_name}: {title}"  # a title may name its figure


def _draw_panels(experiment: str, plans: list[dict], tables: list[dict], extra_kinds: list[str], narrow: bool):
    """The figure of one experiment: a row of panels per dataset (``narrow``: every panel in one column)."""
    figure_name = FIGURES.get(experiment, (experiment, experiment))[1]
    main_panels = 2 if experiment == "fig2" else 1
    columns = main_panels + len(extra_kinds)
    if narrow:
        size = (NARROW_PANEL[0], (NARROW_PANEL[1] + 0.9) * len(plans) * columns)
        figure, grid = plt.subplots(len(plans) * columns, 1, figsize=size, squeeze=False, layout="constrained")
    else:
        figure, grid = plt.subplots(len(plans), columns, figsize=(4.6 * columns, 4.3 * len(plans)), squeeze=False,
                                    layout="constrained")
    axes = grid.reshape(len(plans), columns)  # the same panel order in both layouts
    letters = panel_letters(figure_name, len(plans))
    width = 44 if narrow else 60  # characters of a panel title's line (a dataset given by path is long)
    for row, (plan, table) in enumerate(zip(plans, tables, strict=True)):
        panels = axes[row]
        if experiment == "fig2":
            _draw_epoch_floor(panels[0], table)
            _draw_curves(panels[0], table, ("epoch_distance",))
            _draw_curves(panels[1], table, ("epoch_accuracy",))
            panels[0].set_title(wrapped(f"{letters[row]}{plan['dataset']}: D(W_r, W_i) per epoch", True, width),
                                fontsize=10)
            panels[1].set_title(wrapped(f"{letters[row]}{plan['dataset']}: A(W_i) on T_e per epoch", True, width),
                                fontsize=10)
            panels[0].set_ylabel("F-norm distance")
            panels[1].set_ylabel("accuracy")
        else:
            is_accuracy = any(entry["kind"] == "accuracy" for entry in table.values())
            _draw_curves(panels[0], table, ("accuracy", "distance"))
            if not is_accuracy:
                _draw_floor(panels[0], table, plan["spec"])
            panels[0].set_title(wrapped(f"{letters[row]}{plan['dataset']}", True, width), fontsize=10)
            panels[0].set_ylabel("accuracy on T_e" if is_accuracy else "F-norm distance D(W_r, W_o)")
        for offset, kind in enumerate(extra_kinds):
            panels[main_panels + offset].set_ylabel(_draw_extra(panels[main_panels + offset], table, kind))
            panels[main_panels + offset].set_title(wrapped(f"{letters[row]}{plan['dataset']}", True, width),
                                                   fontsize=10)
        for axis in panels:
            axis.set_xlabel("epoch" if experiment == "fig2" else "sigma")
            if experiment == "fig2":
                axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    for axis in axes.ravel():
        axis.grid(alpha=0.3)
        add_legend(axis, below=True, width_chars=30 if narrow else 46)
    figure.suptitle(wrapped(_figure_title(experiment, plans), narrow), fontsize=11)
    return figure


def _draw_experiment(experiment: str, plans: list[dict], store: Store, out_dir: Path) -> FigureFile:
    stem = FIGURES.get(experiment, (experiment, experiment))[0]
    tables = [series_table(store, plan["id"]) for plan in plans]
    extra_kinds = _extra_rows(tables)
    png, svg = out_dir / f"{stem}.png", out_dir / f"{stem}.svg"
    narrow = save_responsive(lambda narrow: _draw_panels(experiment, plans, tables, extra_kinds, narrow), png, svg)
    return FigureFile(png, svg, _figure_title(experiment, plans), _caption(experiment, plans, tables, extra_kinds),
                      narrow)


def _fig1_figure(rows: list, title: str, narrow: bool) -> plt.Figure:
    return sample_grid_figure(rows, title=title, narrow=narrow)


def _draw_fig1(store: Store, out_dir: Path) -> list[FigureFile]:
    from pudlab.data.dataset import LabeledImages
    from pudlab.obfuscation import obfuscate

    written = []
    for name, (images, ids, seed, sigmas) in store.previews().items():
        clean = LabeledImages(images.astype(np.float32), np.zeros(len(ids), np.int64), ids.astype(np.int64))
        rows = [(f"σ={sigma:g}", obfuscate(clean, sigma=sigma, seed=seed).images) for sigma in sigmas]
        png, svg = out_dir / f"fig1_samples_{name}.png", out_dir / f"fig1_samples_{name}.svg"
        title = f"Fig. 1: obfuscated samples of {name}"
        narrow = save_responsive(functools.partial(_fig1_figure, rows, title), png, svg)
        caption = (f"{len(ids)} training images of {name} (the first of each class), one row (on a narrow "
                   f"screen: one column) per noise level sigma ({', '.join(f'{s:g}' for s in sigmas)}); pixel values in [0, 1], noise "
                   f"keyed by the preset's noise seed {seed}, shown clipped to [0, 1].")
        written.append(FigureFile(png, svg, title, caption, narrow))
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
    """Draw every figure the store has data for; returns the written files (PNG, SVG, narrow PNG)."""
    return [path for item in draw_figure_files(store, out) for path in (item.png, item.svg, item.narrow)
            if path is not None]


__all__ = ["FIGURES", "FigureFile", "draw_figure_files", "draw_figures"]
