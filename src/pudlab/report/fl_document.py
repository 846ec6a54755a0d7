"""The report of a federated-learning simulation: ``STORE/report.md``, the same as a self-contained
``STORE/report.html`` (figures embedded), and the figures (:mod:`pudlab.report.fl_figures`).

Reads a store (:class:`pudlab.fl.store.SimulationStore`: ``spec.json`` and every defence's round
records): the setup and clients, the global accuracy per defence, detection per client role and PoL
challenge, and the PUD trade-off at the clients' sigma. The numbers come from :mod:`pudlab.fl.summary`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from pudlab.fl.records import RoundRecord
from pudlab.fl.store import SimulationStore
from pudlab.fl.summary import (
    DetectionSummary,
    detection_auc,
    detection_summary,
    latest_utility,
    pol_challenge_scores,
)
from pudlab.io import write_bytes_atomic
from pudlab.report.fl_figures import defence_label, draw_fl_figures, roles_seen


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
        lines.append(f"| {defence_label(defence)} | {records[-1].round} | {records[-1].accuracy:.4f} | {max(accuracies):.4f} |")
    return lines + ["", f"![accuracy per round]({figure})", ""]


def _detection_lines(summaries: Mapping[str, DetectionSummary], figure: str) -> list[str]:
    roles = roles_seen(summaries)
    lines = ["### Detection", "",
             "Fraction of each role's submissions kept out of the aggregate (PoL rejection or Multi-Krum):", "",
             "| defence | " + " | ".join(roles) + " |", "|---|" + "---|" * len(roles)]
    for defence, summary in summaries.items():
        lines.append(f"| {defence_label(defence)} | "
                     + " | ".join(_display_number(summary.excluded.get(role)) for role in roles) + " |")
    pol_rows = [(d, s.pol) for d, s in summaries.items() if s.pol is not None]
    if pol_rows:
        lines += ["", "PoL challenges over all rounds:", "",
                  "| defence | challenges | cheaters caught | honest wrongly rejected |", "|---|---|---|---|"]
        for defence, totals in pol_rows:
            lines.append(
                f"| {defence_label(defence)} | {totals.challenges_issued} | "
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
    """Write ``STORE/report.md``, ``STORE/report.html`` and the figures; returns the markdown's path."""
    store = Path(store)
    meta, results = load_store(store)
    name = meta["spec"]["simulation"].get("name") or Path(meta.get("source", "simulation")).stem
    figures = draw_fl_figures(results, store / "figures", name=name)
    links = {figure: path.relative_to(store).as_posix() for figure, path in figures.items()}
    text = "# pudlab federated-learning simulation\n\n" + report_section(meta, results, links)
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

    out: list[str] = []
    table: list[str] = []
    items: list[str] = []

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


__all__ = ["load_store", "markdown_html", "report_section", "write_fl_report"]
