"""Figures and the claims report, from a result store alone.

``draw_figures`` writes Fig. 1-5 (PNG and SVG, one panel per dataset, error bands when repeats > 1,
the shuffle-seed noise floor on every distance figure). ``write_report`` writes ``report.md`` and a
self-contained ``report.html`` (figures embedded) with the configuration, versions, timings, the
claims table and a table of every series. Both documents are rendered from one list of blocks.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pudlab import __version__
from pudlab.experiments.claims import CLAIMS, evaluate_claims
from pudlab.experiments.series import series_table
from pudlab.experiments.spec import parse_experiment
from pudlab.experiments.store import Store
from pudlab.privacy.decline import DECLINE_SCHEMES
from pudlab.privacy.report import PrivacyReport
from pudlab.pud.scores import PudPoint
from pudlab.report.figures import plt, sample_grid, save_figure
from pudlab.io import write_bytes_atomic

FIGURES = {  # experiment -> (file stem, paper figure)
    "fig2": ("fig2_epochs", "Fig. 2"),
    "exp1": ("fig3ab_accuracy_label_degree", "Fig. 3a,b"),
    "exp2": ("fig3cd_accuracy_dataset_size", "Fig. 3c,d"),
    "exp3": ("fig4ab_distance_label_degree", "Fig. 4a,b"),
    "exp4": ("fig4cd_distance_label_overlap", "Fig. 4c,d"),
    "exp5": ("fig5_distance_dataset_size", "Fig. 5"),
}


def _plans_by_experiment(store: Store) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = defaultdict(list)
    for plan in store.plans():
        grouped[plan["experiment"]].append(plan)
    return grouped


def _band(axis, xs, means, stds, label, **style) -> None:  # noqa: ANN001, ANN003
    xs, means, stds = np.asarray(xs, float), np.asarray(means, float), np.asarray(stds, float)
    line = axis.plot(xs, means, marker="o", markersize=3, label=label, **style)[0]
    if np.nanmax(np.nan_to_num(stds, nan=0.0), initial=0.0) > 0:
        axis.fill_between(xs, means - stds, means + stds, color=line.get_color(), alpha=0.2, linewidth=0)


def _draw_curves(axis, table: dict, kinds: tuple[str, ...]) -> None:  # noqa: ANN001
    for name, entry in table.items():
        if entry["kind"] in kinds:
            _band(axis, entry["x"], entry["mean"], entry["std"], name)


def _draw_floor(axis, table: dict) -> None:  # noqa: ANN001
    floors = [(name, entry) for name, entry in table.items() if entry["kind"] == "floor"]
    for index, (name, entry) in enumerate(floors):
        value, std = entry["mean"][0], entry["std"][0]
        label = f"noise floor {name[6:-1]}" if len(floors) > 1 else "noise floor (shuffle seed only)"
        axis.axhline(value, color="gray", linestyle=("--", ":", "-.")[index % 3], linewidth=1, label=label)
        if std and std > 0:
            axis.axhspan(value - std, value + std, color="gray", alpha=0.12)


def draw_figures(store: Store, out: str | os.PathLike | None = None) -> list[Path]:
    """Draw every figure the store has data for; returns the written files."""
    out_dir = Path(out) if out else store.root / "figures"
    written: list[Path] = []
    written += _draw_fig1(store, out_dir)
    for experiment, plans in sorted(_plans_by_experiment(store).items()):
        stem, figure_name = FIGURES.get(experiment, (experiment, experiment))
        plans = sorted(plans, key=lambda p: p["dataset"])
        if experiment == "fig2":
            figure, axes = plt.subplots(2, len(plans), figsize=(5.2 * len(plans), 7), squeeze=False)
            for column, plan in enumerate(plans):
                table = series_table(store, plan["id"])
                _draw_curves(axes[0][column], table, ("epoch_distance",))
                _draw_curves(axes[1][column], table, ("epoch_accuracy",))
                axes[0][column].set_title(f"{plan['dataset']}: D(W_r, W_i) per epoch")
                axes[1][column].set_title(f"{plan['dataset']}: A(W_i) on T_e per epoch")
                axes[1][column].set_xlabel("epoch")
                axes[0][column].set_ylabel("F-norm distance")
                axes[1][column].set_ylabel("accuracy")
                for axis in axes[:, column]:
                    axis.grid(alpha=0.3)
                    axis.legend(fontsize=7)
        else:
            figure, axes = plt.subplots(1, len(plans), figsize=(5.2 * len(plans), 4), squeeze=False)
            for column, plan in enumerate(plans):
                axis = axes[0][column]
                table = series_table(store, plan["id"])
                is_accuracy = any(entry["kind"] == "accuracy" for entry in table.values())
                _draw_curves(axis, table, ("accuracy", "distance"))
                if not is_accuracy:
                    _draw_floor(axis, table)
                axis.set_title(f"({chr(97 + column)}) {plan['dataset']}")
                axis.set_xlabel("sigma")
                axis.set_ylabel("accuracy on T_e" if is_accuracy else "F-norm distance D(W_r, W_o)")
                axis.grid(alpha=0.3)
                axis.legend(fontsize=7)
        spec_title = plans[0]["spec"].get("title", experiment)
        figure.suptitle(f"{figure_name}: {spec_title}", fontsize=10)
        png, svg = out_dir / f"{stem}.png", out_dir / f"{stem}.svg"
        save_figure(figure, png, svg)
        written += [png, svg]
    return written


def _draw_fig1(store: Store, out_dir: Path) -> list[Path]:
    from pudlab.data.dataset import LabeledImages
    from pudlab.obfuscation import obfuscate

    written = []
    for name, (images, ids, seed, sigmas) in store.previews().items():
        clean = LabeledImages(images.astype(np.float32), np.zeros(len(ids), np.int64), ids.astype(np.int64))
        rows = [(f"σ={sigma:g}", obfuscate(clean, sigma=sigma, seed=seed).images) for sigma in sigmas]
        png, svg = out_dir / f"fig1_samples_{name}.png", out_dir / f"fig1_samples_{name}.svg"
        sample_grid(rows, png, svg, title=f"Fig. 1: obfuscated samples of {name}")
        written += [png, svg]
    return written


# ------------------------------------------------------------------------------------------------ report
@dataclass
class Block:
    kind: str  # heading | text | table | image | code
    content: object
    level: int = 2


def _cell_text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.4g}"
    return str(value)


def _render_markdown(blocks: list[Block]) -> str:
    lines: list[str] = []
    for block in blocks:
        if block.kind == "heading":
            lines += ["#" * block.level + " " + str(block.content), ""]
        elif block.kind == "text":
            lines += [str(block.content), ""]
        elif block.kind == "code":
            lines += ["```", str(block.content), "```", ""]
        elif block.kind == "table":
            header, rows = block.content  # type: ignore[misc]
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "---|" * len(header))
            lines += ["| " + " | ".join(_cell_text(cell).replace("|", "\\|") for cell in row) + " |" for row in rows]
            lines.append("")
        elif block.kind == "image":
            path, caption = block.content  # type: ignore[misc]
            lines += [f"![{caption}]({path})", ""]
    return "\n".join(lines)


def _render_html(blocks: list[Block], root: Path, title: str) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.4}"
             "table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:0.85em}"
             "td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}th{background:#f3f3f3}"
             "img{max-width:100%}pre{background:#f6f6f6;padding:0.6em;overflow:auto;font-size:0.8em}"
             ".reproduced{color:#1a7f37;font-weight:bold}.not-reproduced{color:#b42318;font-weight:bold}"
             ".not-evaluated{color:#777}</style></head><body>"]
    for block in blocks:
        if block.kind == "heading":
            parts.append(f"<h{block.level}>{html.escape(str(block.content))}</h{block.level}>")
        elif block.kind == "text":
            parts.append(f"<p>{html.escape(str(block.content))}</p>")
        elif block.kind == "code":
            parts.append(f"<pre>{html.escape(str(block.content))}</pre>")
        elif block.kind == "table":
            header, rows = block.content  # type: ignore[misc]
            parts.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
            for row in rows:
                cells = []
                for cell in row:
                    text = html.escape(_cell_text(cell))
                    css = {"reproduced": "reproduced", "not reproduced": "not-reproduced",
                           "not evaluated": "not-evaluated"}.get(str(cell))
                    cells.append(f"<td class='{css}'>{text}</td>" if css else f"<td>{text}</td>")
                parts.append("<tr>" + "".join(cells) + "</tr>")
            parts.append("</table>")
        elif block.kind == "image":
            path, caption = block.content  # type: ignore[misc]
            data = base64.b64encode((root / path).read_bytes()).decode()
            parts.append(f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


def claims_by_dataset(store: Store) -> dict[str, list]:
    """Evaluate the nine claims for every dataset in the store."""
    tables: dict[str, dict[str, dict]] = defaultdict(dict)
    for plan in store.plans():
        tables[plan["dataset"]][plan["experiment"]] = series_table(store, plan["id"])
    sources = {row["name"]: row for row in store.sources()}
    result = {}
    for dataset, table in sorted(tables.items()):
        shape = json.loads(sources[dataset]["sample_shape"]) if dataset in sources else [1]
        result[dataset] = evaluate_claims(table, mnist_family=shape[0] == 1 and "cifar" not in dataset.lower())
    return result


def _environment_summary(store: Store) -> list[tuple[str, str]]:
    envs = [json.loads(row["environment"]) for row in store.job_rows() if row["environment"]]
    summary: dict[str, set[str]] = defaultdict(set)
    for env in envs:
        for key in ("pudlab", "torch", "numpy", "python", "platform", "device", "device_name", "torch_threads",
                    "precision", "trainer"):
            if key in env:
                summary[key].add(str(env[key]))
    return [(key, ", ".join(sorted(values))) for key, values in summary.items()]


# long: the report's sections in reading order, one after another; splitting them would scatter the layout
def build_blocks(store: Store, figure_files: list[Path]) -> list[Block]:
    """The report's content."""
    blocks = [Block("heading", "pudlab reproduction report", 1),
              Block("text", f"Generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} by pudlab {__version__} from the store "
                            f"{store.root}. Every number and figure below comes from that store.")]
    plans = store.plans()
    counts = store.status_counts()
    blocks.append(Block("text", f"Jobs: {counts['done']} done, {counts['pending'] + counts['running']} not finished, "
                                f"{counts['failed']} failed."))
    # datasets
    blocks.append(Block("heading", "Datasets"))
    blocks.append(Block("table", (["name", "description", "fingerprint (SHA-256)", "train", "test", "origin"],
                                  [[s["name"], s["description"], s["fingerprint"][:20] + "...", s["train_size"],
                                    s["test_size"], s["origin"]] for s in store.sources()])))
    # configuration
    blocks.append(Block("heading", "Configuration"))
    presets = {json.dumps(p["preset"], sort_keys=True) for p in plans}
    for preset_json in sorted(presets):
        preset = json.loads(preset_json)
        blocks.append(Block("text", f"Preset {preset['name']}: {preset.get('description', '')}"))
        deviations = preset.get("deviations") or []
        if deviations:
            blocks.append(Block("table", (["deviation from the paper"], [[d] for d in deviations])))
        blocks.append(Block("code", json.dumps(preset, indent=2, sort_keys=True)))
    blocks.append(Block("heading", "Environment and timings"))
    blocks.append(Block("table", (["item", "value"], _environment_summary(store))))
    timings = store.timings()
    if timings:
        rows = []
        for timing in timings:
            detail = json.loads(timing["detail"])
            rows.append([timing["command"], time.strftime("%Y-%m-%d %H:%M", time.localtime(timing["started"])),
                         f"{timing['seconds']:.1f} s", timing["jobs_trained"], detail.get("jobs_total"),
                         detail.get("device"), detail.get("workers"), detail.get("ensemble_size")])
        blocks.append(Block("table", (["command", "started", "wall time", "jobs trained", "jobs in plan", "device",
                                       "workers", "ensemble size"], rows)))
    # claims
    blocks.append(Block("heading", "Claims (SPEC.md sec. 4)"))
    blocks.append(Block("text", "Each claim is judged on the stored series by the stated criterion; thresholds are "
                                "constants of pudlab.experiments.claims. 'not evaluated' means a series it needs is "
                                "missing."))
    for dataset, results in claims_by_dataset(store).items():
        blocks.append(Block("heading", f"Claims on {dataset}", 3))
        blocks.append(Block("table", (["#", "claim", "criterion", "verdict", "numbers that decided it"],
                                      [[r.number, r.claim, r.criterion, r.status,
                                        json.dumps(r.evidence, sort_keys=True)] for r in results])))
    blocks += privacy_blocks(store)
    blocks += pud_blocks(store)
    # figures
    blocks.append(Block("heading", "Figures"))
    for path in figure_files:
        if path.suffix == ".png":
            blocks.append(Block("image", (str(path.relative_to(store.root)), path.stem)))
    # series tables
    blocks.append(Block("heading", "Series"))
    for plan in plans:
        spec = parse_experiment(plan["spec"], plan["id"])
        blocks.append(Block("heading", f"{plan['id']}: {spec.title}", 3))
        table = series_table(store, plan["id"])
        rows = []
        for name, entry in table.items():
            for x, mean, std, n in zip(entry["x"], entry["mean"], entry["std"], entry["n"], strict=True):
                rows.append([name, entry["kind"], x, mean, std, n])
        x_name = "epoch" if spec.name == "fig2" else "sigma"
        blocks.append(Block("table", (["series", "kind", x_name, "mean", "std", "n"], rows)))
    blocks.append(Block("heading", "How to read this"))
    blocks.append(Block("text", "D is the Frobenius norm of the difference of all trainable parameters (Eq. 3), "
                                "accuracy is top-1 on T_e. The noise floor is D between two clean trainings that "
                                "differ only in batch order: a distance at or below it carries no information "
                                "about the data."))
    return blocks


def privacy_blocks(store: Store) -> list[Block]:
    """The Privacy section: attack results per sigma and the privacy decline (when measured)."""
    reports = sorted((store.root / "privacy").glob("*.json"))
    if not reports:
        return []
    blocks = [Block("heading", "Privacy (pudlab privacy)"),
              Block("text", "Attacks on the released O(T_t): similarity to the source, re-identification by "
                            "nearest raw sample, the best denoiser, membership inference against a model trained "
                            "on the release, and the Gaussian-mechanism epsilon (docs/privacy.md).")]
    for path in reports:
        report = PrivacyReport.from_dict(json.loads(path.read_text()), source=str(path))
        rows, decline = [], []
        for entry in report.entries:
            best = entry.denoising.best
            attack = entry.membership.attack if entry.membership is not None else None
            rows.append([entry.sigma, entry.similarity.psnr_mean, entry.similarity.ssim_mean, entry.linkage.rate,
                         f"{best.psnr:.2f} ({best.psnr_by})", best.linkage, attack.auc if attack else None,
                         attack.tpr_at_fpr if attack else None, entry.dp.by_sensitivity["image"].epsilon])
            for scheme in DECLINE_SCHEMES:
                by_n = entry.decline[scheme]
                decline.append([entry.sigma, scheme, " ".join(f"{row.psnr:.1f}" for row in by_n),
                                " ".join(f"{row.reidentified_fraction:.2f}" for row in by_n)])
        blocks.append(Block("heading", f"Privacy of {path.stem}", 3))
        blocks.append(Block("table", (["sigma", "PSNR dB", "SSIM", "re-identified", "best denoised PSNR",
                                       "re-identified after denoising", "membership AUC", "TPR at 1% FPR",
                                       "epsilon (image, delta 1e-5)"], rows)))
        blocks.append(Block("text", "Privacy decline: the averaging attack over n = 1..N disclosures "
                                    "(fresh noise each time, keyed noise, disjoint subsets)."))
        blocks.append(Block("table", (["sigma", "scheme", "PSNR dB for n = 1..N", "re-identified fraction"], decline)))
    return blocks


def pud_blocks(store: Store) -> list[Block]:
    """The PUD section: normalized Privacy, Utility, Distinguishability and recommendations (when computed)."""
    results = sorted((store.root / "pud").glob("*/pud.json"))
    if not results:
        return []
    blocks = [Block("heading", "PUD triangle (pudlab pud)")]
    for path in results:
        result = json.loads(path.read_text())
        points = [PudPoint.from_dict(point) for point in result["points"]]
        blocks.append(Block("heading", f"PUD of {path.parent.name}", 3))
        blocks.append(Block("table", (["sigma", "Privacy", "Utility", "Distinguishability"],
                                      [[p.sigma, p.privacy, p.utility, p.distinguishability] for p in points])))
        for recommendation in result.get("recommendations", []):
            blocks.append(Block("text", recommendation.get("message", "")))
        for figure in ("pud_triangles.png", "pud_curves.png"):
            if (path.parent / figure).exists():
                blocks.append(Block("image", (str((path.parent / figure).relative_to(store.root)), figure[:-4])))
    return blocks


def write_report(store: Store) -> dict:
    """Draw the figures, then write ``report.md`` and ``report.html`` into the store."""
    figure_files = draw_figures(store)
    blocks = build_blocks(store, figure_files)
    markdown_path, html_path = store.root / "report.md", store.root / "report.html"
    write_bytes_atomic(markdown_path, _render_markdown(blocks).encode())
    write_bytes_atomic(html_path, _render_html(blocks, store.root, "pudlab report").encode())
    return {"markdown": markdown_path, "html": html_path, "figures": figure_files, "claims": len(CLAIMS)}


__all__ = ["claims_by_dataset", "draw_figures", "write_report"]
