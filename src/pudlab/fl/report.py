"""The report of a federated-learning simulation: a markdown section and its figures.

Reads a store (:class:`pudlab.fl.store.SimulationStore`: ``spec.json`` and every defence's round
records) and writes ``STORE/report.md``, the same as a self-contained ``STORE/report.html``
(figures embedded) and, under ``STORE/figures/``, PNG + SVG of:

* ``fl_accuracy``: global accuracy on T_e per round, one line per defence, the same attack;
* ``fl_detection``: per defence and per client role, the fraction of submissions kept out of the
  aggregate (rejected by PoL or dropped by Multi-Krum): high for cheaters, low for honest clients
  is what a defence should show;
* ``fl_pud``: the PUD trade-off of the clients' sigma: Privacy (PSNR of O(T) against T),
  Utility (accuracy of a model the challenger trains on the obfuscated data it received, against
  the same data clean and the baseline) and Distinguishability (every challenge's largest
  replay distance / threshold, honest against each cheating role; > 1 rejects).

The numbers come from :mod:`pudlab.fl.summary`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from pudlab.fl.records import ChallengerUtility, RoundRecord
from pudlab.fl.store import SimulationStore
from pudlab.fl.summary import (
    DetectionSummary,
    detection_auc,
    detection_summary,
    latest_utility,
    pol_challenge_scores,
)
from pudlab.io import write_bytes_atomic
from pudlab.report.figures import plt, save_figure

DEFENCE_LABELS = {"none": "no defence (FedAvg)", "multikrum": "Multi-Krum", "pol": "PoL challenges",
                  "both": "PoL + Multi-Krum"}
DEFENCE_COLOURS = {"none": "tab:red", "multikrum": "tab:orange", "pol": "tab:blue", "both": "tab:green"}


def load_store(store: str | Path) -> tuple[dict, dict[str, list[RoundRecord]]]:
    """(spec.json, {defence: round records 0..completed}) of a simulation store."""
    simulation_store = SimulationStore(store)
    return simulation_store.read_meta(), simulation_store.load_all()


def _display_number(value: float | None, digits: int = 3) -> str:
    """A table cell: fixed digits, "–" for a missing or NaN value, "∞" for an infinite one."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float) and math.isinf(value):
        return "∞"
    return f"{value:.{digits}f}"


def _roles(summaries: Mapping[str, DetectionSummary]) -> list[str]:
    """Every role seen, honest first."""
    return sorted({role for s in summaries.values() for role in s.excluded}, key=lambda r: (r != "honest", r))


def _label(defence: str) -> str:
    return DEFENCE_LABELS.get(defence, defence)


# ------------------------------------------------------------------------------------ figures
def _save_both(draw: Callable[[], plt.Figure], path: Path) -> list[Path]:
    """PNG and SVG of the figure ``draw()`` makes, each through :func:`pudlab.report.figures.save_figure`."""
    return [save_figure(draw(), path.with_suffix(suffix)) for suffix in (".png", ".svg")]


def accuracy_figure(results: Mapping[str, Sequence[RoundRecord]], path: Path, *, title: str) -> list[Path]:
    """Global accuracy on T_e per round, one line per defence."""

    def draw() -> plt.Figure:
        figure, axis = plt.subplots(figsize=(6.4, 4.0))
        for defence, records in results.items():
            axis.plot([r.round for r in records], [r.accuracy for r in records], marker="o", markersize=3,
                      label=_label(defence), color=DEFENCE_COLOURS.get(defence))
        axis.set_xlabel("round")
        axis.set_ylabel("global accuracy on T_e")
        axis.set_ylim(0, 1)
        axis.grid(alpha=0.3)
        axis.legend(loc="lower right", fontsize=8)
        axis.set_title(title, fontsize=10)
        return figure

    return _save_both(draw, path)


def detection_figure(summaries: Mapping[str, DetectionSummary], path: Path) -> list[Path]:
    """Per role and defence: the fraction of submissions kept out of the aggregate."""
    roles = _roles(summaries)
    defences = list(summaries)

    def draw() -> plt.Figure:
        figure, axis = plt.subplots(figsize=(max(6.4, 1.1 * len(roles) + 2), 3.8))
        width = 0.8 / max(len(defences), 1)
        for index, defence in enumerate(defences):
            values = [summaries[defence].excluded.get(role, np.nan) for role in roles]
            axis.bar(np.arange(len(roles)) + (index - (len(defences) - 1) / 2) * width, values, width,
                     label=_label(defence), color=DEFENCE_COLOURS.get(defence))
        axis.set_xticks(np.arange(len(roles)), roles)
        axis.set_ylabel("fraction of submissions\nkept out of the aggregate")
        axis.set_ylim(0, 1.05)
        axis.grid(axis="y", alpha=0.3)
        axis.legend(fontsize=8, loc="upper left")
        axis.set_title("Detection: honest clients should stay in, cheaters out", fontsize=10)
        return figure

    return _save_both(draw, path)


def pud_figure(utility: ChallengerUtility | None, scores: Mapping[str, Sequence[float]], path: Path) -> list[Path]:
    """Utility of the shared data to the challenger (with its privacy) and every challenge's score."""
    roles = sorted(scores, key=lambda r: (r != "honest", r))
    finite = [s for values in scores.values() for s in values if math.isfinite(s) and s > 0]
    ceiling = max(finite) * 3 if finite else 10.0

    def draw() -> plt.Figure:
        figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [1, 1.6]})
        if utility is not None and utility.measured:
            names = [f"baseline\n({utility.baseline})", "received O(T)\n(obfuscated)", "same data\nclean"]
            values = [utility.baseline_accuracy, utility.accuracy_obfuscated, utility.accuracy_clean]
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
            values = np.array([ceiling if not math.isfinite(s) else s for s in scores[role]], dtype=float)
            values = values[~np.isnan(values)]
            jitter = np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 else np.zeros(len(values))
            right.scatter(x + jitter, np.maximum(values, 1e-3), s=12, alpha=0.7,
                          color="tab:green" if role == "honest" else "tab:red")
        right.axhline(1.0, color="k", linestyle="--", linewidth=1, label="threshold (score 1)")
        right.set_yscale("log")
        right.set_xticks(np.arange(len(roles)), roles)
        right.set_ylabel("largest replay distance / threshold")
        right.set_title("Distinguishability: every PoL challenge", fontsize=9)
        right.legend(fontsize=8)
        return figure

    return _save_both(draw, path)


# ------------------------------------------------------------------------------------ markdown
def _setup_lines(meta: dict) -> list[str]:
    """Title, the setup paragraph and the clients table."""
    spec = meta["spec"]
    setup = meta.get("setup", {})
    sim, pol, training, aggregation = spec["simulation"], spec["pol"], spec["training"], spec["aggregation"]
    name = sim.get("name") or Path(meta.get("source", "simulation")).stem
    dataset = setup.get("dataset", {})
    lines = [
        f"## Federated learning: {name}",
        "",
        f"{sim['clients']} clients on {dataset.get('description', sim['dataset'])} "
        f"({spec['sampling']['mode']}, {spec['sampling']['setting']} per client), "
        f"{training['local_epochs']} local epoch(s) per round, batch {training['batch_size']}, Adam lr {training['lr']:g}, "
        f"M_cnn widths {spec['model']['widths']}; accuracy on T_e ({dataset.get('eval_size', '?')} samples). "
        f"Multi-Krum f = {aggregation['f']}, m = {aggregation.get('m', 'n - f')}. PoL: challenge {pol['challenge']}, "
        f"checkpoint every {pol['checkpoint_every']} steps, top-Q {pol['top_q']} (0 = every segment), "
        f"threshold {pol['threshold']}.",
        "",
        "| client | labels | samples | role | sigma |",
        "|---|---|---|---|---|",
    ]
    for client in setup.get("clients", []):
        lines.append(f"| {client['client']} | {','.join(map(str, client['labels']))} | {client['samples']} | "
                     f"{client['role']} | {client['sigma']:g} |")
    return lines


def _accuracy_lines(results: Mapping[str, Sequence[RoundRecord]], figure: str) -> list[str]:
    lines = ["", "### Global accuracy per defence (same attack)", "",
             "| defence | rounds | final accuracy | best accuracy |", "|---|---|---|---|"]
    for defence, records in results.items():
        accuracies = [r.accuracy for r in records[1:]] or [records[0].accuracy]
        lines.append(f"| {_label(defence)} | {records[-1].round} | {records[-1].accuracy:.4f} | {max(accuracies):.4f} |")
    return lines + ["", f"![accuracy per round]({figure})", ""]


def _detection_lines(summaries: Mapping[str, DetectionSummary], figure: str) -> list[str]:
    roles = _roles(summaries)
    lines = ["### Detection", "",
             "Fraction of each role's submissions kept out of the aggregate (PoL rejection or Multi-Krum):", "",
             "| defence | " + " | ".join(roles) + " |", "|---|" + "---|" * len(roles)]
    for defence, summary in summaries.items():
        lines.append(f"| {_label(defence)} | "
                     + " | ".join(_display_number(summary.excluded.get(role)) for role in roles) + " |")
    pol_rows = [(d, s.pol) for d, s in summaries.items() if s.pol is not None]
    if pol_rows:
        lines += ["", "PoL challenges over all rounds:", "",
                  "| defence | challenges | cheaters caught | honest wrongly rejected |", "|---|---|---|---|"]
        for defence, totals in pol_rows:
            lines.append(
                f"| {_label(defence)} | {totals.challenges_issued} | "
                f"{totals.cheaters_caught}/{totals.cheaters_challenged} ({_display_number(totals.caught_rate)}) | "
                f"{totals.honest_wrongly_rejected}/{totals.honest_challenged} "
                f"({_display_number(totals.false_reject_rate)}) |")
    return lines + ["", f"![detection]({figure})", ""]


def _pud_lines(meta: dict, results: Mapping[str, Sequence[RoundRecord]], figure: str) -> list[str]:
    """The PUD trade-off at the clients' sigma (nothing without PoL challenges or utility)."""
    scores = pol_challenge_scores(results)
    utility = latest_utility(results)
    if not scores and not utility:
        return []
    sigmas = sorted({c["sigma"] for c in meta.get("setup", {}).get("clients", [])})
    lines = [f"### PUD trade-off at client sigma {', '.join(f'{s:g}' for s in sigmas)}", ""]
    privacy = utility.privacy if utility is not None else None
    if privacy:
        psnr = "∞ (no noise)" if privacy.psnr_db is None else f"{privacy.psnr_db:.1f} dB"
        lines.append(f"- **Privacy**: the shared O(T) is T plus N(0, sigma^2) per pixel: PSNR(T, O(T)) = "
                     f"{psnr}, noise std / pixel std of T = {privacy.noise_to_signal:.2f}.")
    if utility is not None and utility.measured:
        lines.append(
            f"- **Utility** to the challenger ({utility.challenger}, {utility.received_samples} obfuscated "
            f"samples of clients {list(utility.received_clients)}): a model trained on them reaches "
            f"{utility.accuracy_obfuscated:.3f} on T_e (the same data clean: {utility.accuracy_clean:.3f}; "
            f"baseline, {utility.baseline}: {utility.baseline_accuracy:.3f}); gain "
            f"**{utility.gain:+.3f}**.")
    if scores:
        auc = detection_auc(scores)
        lines.append(
            f"- **Distinguishability**: honest challenges' largest distance/threshold "
            f"{_display_number(auc.honest_max_score)}, cheaters' smallest {_display_number(auc.cheater_min_score)}; "
            f"ROC AUC honest vs cheaters {_display_number(auc.auc)} (1 = perfectly separated).")
    return lines + ["", f"![PUD trade-off]({figure})", ""]


def report_section(meta: dict, results: Mapping[str, Sequence[RoundRecord]], figures: Mapping[str, str]) -> str:
    """The markdown section of one simulation (figure paths relative to where the markdown lives)."""
    summaries = {defence: detection_summary(records) for defence, records in results.items()}
    lines = (_setup_lines(meta) + _accuracy_lines(results, figures["accuracy"])
             + _detection_lines(summaries, figures["detection"]) + _pud_lines(meta, results, figures["pud"]))
    return "\n".join(lines) + "\n"


def write_fl_report(store: str | Path) -> Path:
    """Write ``STORE/report.md`` and its figures; returns the markdown's path."""
    store = Path(store)
    meta, results = load_store(store)
    name = meta["spec"]["simulation"].get("name") or Path(meta.get("source", "simulation")).stem
    figures_dir = store / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    accuracy_figure(results, figures_dir / "fl_accuracy", title=f"{name}: global accuracy per round")
    detection_figure({defence: detection_summary(records) for defence, records in results.items()},
                     figures_dir / "fl_detection")
    pud_figure(latest_utility(results), pol_challenge_scores(results), figures_dir / "fl_pud")
    figures = {key: f"figures/fl_{key}.png" for key in ("accuracy", "detection", "pud")}
    text = "# pudlab federated-learning simulation\n\n" + report_section(meta, results, figures)
    path = store / "report.md"
    write_bytes_atomic(path, text.encode())
    write_bytes_atomic(store / "report.html", markdown_html(text, store, title=f"pudlab FL: {name}").encode())
    return path


def _inline(text: str, base: Path) -> str:
    """Escape, then render images (embedded as data URIs), bold and code of one markdown line."""
    import base64
    import html
    import re

    def image(match: re.Match) -> str:
        target = base / match.group(2)
        if target.exists():
            data = base64.b64encode(target.read_bytes()).decode()
            return f'<img alt="{match.group(1)}" src="data:image/png;base64,{data}">'
        return f"[missing figure {match.group(2)}]"

    escaped = html.escape(text, quote=False)
    escaped = re.sub(r"!\[([^\]]*)\]\(([^)]+)\)", image, escaped)
    escaped = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", escaped)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)


def markdown_html(text: str, base: Path, *, title: str) -> str:
    """A self-contained HTML page of the report's markdown (headings, paragraphs, lists, tables,
    images embedded): no external file, no script."""
    import html

    out, table, items = [], [], []

    def flush() -> None:
        if table:
            rows = [row for row in table if not set(row.replace("|", "").strip()) <= set("-: ")]
            cells = [[_inline(c.strip(), base) for c in row.strip().strip("|").split("|")] for row in rows]
            head = "".join(f"<th>{c}</th>" for c in cells[0])
            body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in cells[1:])
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            table.clear()
        if items:
            out.append("<ul>" + "".join(f"<li>{item}</li>" for item in items) + "</ul>")
            items.clear()

    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|"):
            table.append(stripped)
            continue
        if stripped.startswith(("- ", "* ")):
            items.append(_inline(stripped[2:], base))
            continue
        flush()
        if stripped.startswith("#"):
            level = min(len(stripped) - len(stripped.lstrip("#")), 6)
            out.append(f"<h{level}>{_inline(stripped[level:].strip(), base)}</h{level}>")
        elif stripped:
            out.append(f"<p>{_inline(stripped, base)}</p>")
    flush()
    style = ("body{font-family:sans-serif;max-width:1100px;margin:1em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;"
             "text-align:right}img{max-width:100%}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(out)}</body></html>\n")


__all__ = [
    "DEFENCE_COLOURS",
    "DEFENCE_LABELS",
    "accuracy_figure",
    "detection_figure",
    "load_store",
    "markdown_html",
    "pud_figure",
    "report_section",
    "write_fl_report",
]
