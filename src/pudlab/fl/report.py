"""The report of a federated-learning simulation: a markdown section and its figures.

Reads a store written by :mod:`pudlab.fl.simulation` (``spec.json`` and every defence's round
records) and writes ``STORE/report.md`` and, under ``STORE/figures/``, PNG + SVG of:

* ``fl_accuracy``: global accuracy on T_e per round, one line per defence, the same attack;
* ``fl_detection``: per defence and per client role, the fraction of submissions kept out of the
  aggregate (rejected by PoL or dropped by Multi-Krum): high for cheaters, low for honest clients
  is what a defence should show;
* ``fl_pud``: the PUD trade-off of the clients' sigma: Privacy (PSNR of O(T) against T),
  Utility (accuracy of a model the challenger trains on the obfuscated data it received, against
  the same data clean and the baseline) and Distinguishability (every challenge's largest
  replay distance / threshold, honest against each cheating role; > 1 rejects).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from ..errors import StoreError
from ..plots import plt, save_figure
from ..storage import read_json, write_bytes_atomic
from .simulation import PROGRESS_FILE
from .spec import DEFENCES

DEFENCE_LABELS = {"none": "no defence (FedAvg)", "multikrum": "Multi-Krum", "pol": "PoL challenges",
                  "both": "PoL + Multi-Krum"}
DEFENCE_COLOURS = {"none": "tab:red", "multikrum": "tab:orange", "pol": "tab:blue", "both": "tab:green"}


# ------------------------------------------------------------------------------------ loading
def load_store(store: str | Path) -> tuple[dict, dict[str, list[dict]]]:
    """(spec.json, {defence: round records 0..completed}) of a simulation store."""
    store = Path(store)
    if not (store / "spec.json").exists():
        raise StoreError(f"{store}: no spec.json (not a pudlab FL store, or nothing has run yet)")
    meta = read_json(store / "spec.json")
    results: dict[str, list[dict]] = {}
    for defence in DEFENCES:
        progress_path = store / defence / PROGRESS_FILE
        if not progress_path.exists():
            continue
        completed = int(read_json(progress_path)["completed_rounds"])
        results[defence] = [read_json(store / defence / f"round_{r:04d}" / "record.json") for r in range(completed + 1)]
    if not results:
        raise StoreError(f"{store}: no finished round of any defence")
    return meta, results


# ------------------------------------------------------------------------------------ numbers
def detection_summary(records: Sequence[dict]) -> dict:
    """Detection numbers of one defence over all rounds.

    ``excluded[role]``: fraction of that role's submissions not in the aggregate (PoL rejection or
    Multi-Krum); ``pol``: challenges, cheaters caught, honest wrongly rejected, per role.
    """
    kept: dict[str, list[bool]] = {}
    pol_roles: dict[str, list[bool]] = {}
    totals = {"challenges_issued": 0, "cheaters_challenged": 0, "cheaters_caught": 0, "honest_challenged": 0,
              "honest_wrongly_rejected": 0}
    any_pol = False
    for record in records:
        if record.get("round", 0) == 0:
            continue
        for client in record["clients"]:
            kept.setdefault(client["role"], []).append(bool(client["aggregated"]))
        pol = record.get("pol")
        if pol:
            any_pol = True
            for key in totals:
                totals[key] += int(pol[key])
            for outcome in pol["outcomes"]:
                pol_roles.setdefault(outcome["role"], []).append(not outcome["accepted"])
    summary: dict = {"excluded": {role: 1.0 - float(np.mean(values)) for role, values in sorted(kept.items())}}
    if any_pol:
        summary["pol"] = dict(
            totals,
            caught_rate=_rate(totals["cheaters_caught"], totals["cheaters_challenged"]),
            false_reject_rate=_rate(totals["honest_wrongly_rejected"], totals["honest_challenged"]),
            rejected_by_role={role: float(np.mean(values)) for role, values in sorted(pol_roles.items())},
        )
    return summary


def _rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def challenge_scores(records: Sequence[dict]) -> dict[str, list[float]]:
    """Every challenge's largest replay distance / threshold, by the challenged client's role."""
    scores: dict[str, list[float]] = {}
    for record in records:
        pol = record.get("pol")
        if not pol:
            continue
        for outcome in pol["outcomes"]:
            score = outcome.get("max_score")
            if score is None:
                score = math.inf if outcome.get("distances") else math.nan  # claim check failed: no replay
            scores.setdefault(outcome["role"], []).append(float(score))
    return scores


def distinguishability(scores: Mapping[str, Sequence[float]]) -> dict:
    """ROC AUC of the honest-vs-cheater challenge scores (cheaters that failed a claim check count as inf)."""
    from ..pol.roc import roc_auc

    honest = [s for s in scores.get("honest", []) if not math.isnan(s)]
    cheaters = [math.inf if math.isnan(s) else s for role, values in scores.items() if role != "honest" for s in values]
    return {
        "auc": roc_auc(honest, cheaters) if honest and cheaters else None,
        "honest_max_score": max(honest) if honest else None,
        "cheater_min_score": min(cheaters) if cheaters else None,
    }


def _utility(results: Mapping[str, Sequence[dict]]) -> dict | None:
    for defence in ("pol", "both"):
        for record in reversed(results.get(defence, [])):
            if record.get("utility"):
                return record["utility"]
    return None


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float) and math.isinf(value):
        return "∞"
    return f"{value:.{digits}f}"


# ------------------------------------------------------------------------------------ figures
def _save_both(draw: Callable[[], plt.Figure], path: Path) -> list[Path]:
    """PNG and SVG of the figure ``draw()`` makes, each through :func:`pudlab.plots.save_figure`."""
    return [save_figure(draw(), path.with_suffix(suffix)) for suffix in (".png", ".svg")]


def accuracy_figure(results: Mapping[str, Sequence[dict]], path: Path, *, title: str) -> list[Path]:
    """Global accuracy on T_e per round, one line per defence."""

    def draw() -> plt.Figure:
        figure, axis = plt.subplots(figsize=(6.4, 4.0))
        for defence, records in results.items():
            axis.plot([r["round"] for r in records], [r["accuracy"] for r in records], marker="o", markersize=3,
                      label=DEFENCE_LABELS.get(defence, defence), color=DEFENCE_COLOURS.get(defence))
        axis.set_xlabel("round")
        axis.set_ylabel("global accuracy on T_e")
        axis.set_ylim(0, 1)
        axis.grid(alpha=0.3)
        axis.legend(loc="lower right", fontsize=8)
        axis.set_title(title, fontsize=10)
        return figure

    return _save_both(draw, path)


def detection_figure(summaries: Mapping[str, dict], path: Path) -> list[Path]:
    """Per role and defence: the fraction of submissions kept out of the aggregate."""
    roles = sorted({role for s in summaries.values() for role in s["excluded"]}, key=lambda r: (r != "honest", r))
    defences = list(summaries)

    def draw() -> plt.Figure:
        figure, axis = plt.subplots(figsize=(max(6.4, 1.1 * len(roles) + 2), 3.8))
        width = 0.8 / max(len(defences), 1)
        for index, defence in enumerate(defences):
            values = [summaries[defence]["excluded"].get(role, np.nan) for role in roles]
            axis.bar(np.arange(len(roles)) + (index - (len(defences) - 1) / 2) * width, values, width,
                     label=DEFENCE_LABELS.get(defence, defence), color=DEFENCE_COLOURS.get(defence))
        axis.set_xticks(np.arange(len(roles)), roles)
        axis.set_ylabel("fraction of submissions\nkept out of the aggregate")
        axis.set_ylim(0, 1.05)
        axis.grid(axis="y", alpha=0.3)
        axis.legend(fontsize=8, loc="upper left")
        axis.set_title("Detection: honest clients should stay in, cheaters out", fontsize=10)
        return figure

    return _save_both(draw, path)


def pud_figure(utility: dict | None, scores: Mapping[str, Sequence[float]], privacy: dict | None,
               path: Path) -> list[Path]:
    """Utility of the shared data to the challenger (with its privacy) and every challenge's score."""
    roles = sorted(scores, key=lambda r: (r != "honest", r))
    finite = [s for values in scores.values() for s in values if math.isfinite(s) and s > 0]
    ceiling = max(finite) * 3 if finite else 10.0

    def draw() -> plt.Figure:
        figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [1, 1.6]})
        if utility and "accuracy_obfuscated" in utility:
            names = [f"baseline\n({utility['baseline']})", "received O(T)\n(obfuscated)", "same data\nclean"]
            values = [utility["baseline_accuracy"], utility["accuracy_obfuscated"], utility["accuracy_clean"]]
            left.bar(names, values, color=["0.6", "tab:blue", "0.3"])
            for x, value in enumerate(values):
                left.text(x, value + 0.02, f"{value:.3f}", ha="center", fontsize=8)
            left.set_ylim(0, 1.1)
        else:
            left.text(0.5, 0.5, "no utility measured", ha="center", va="center", transform=left.transAxes)
        subtitle = ""
        if privacy and privacy.get("psnr_db") is not None:
            subtitle = f"\nPrivacy: PSNR(T, O(T)) = {privacy['psnr_db']:.1f} dB"
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
def report_section(meta: dict, results: Mapping[str, Sequence[dict]], figures: Mapping[str, str]) -> str:
    """The markdown section of one simulation (figure paths relative to where the markdown lives)."""
    spec = meta["spec"]
    setup = meta.get("setup", {})
    sim, pol, training, aggregation = spec["simulation"], spec["pol"], spec["training"], spec["aggregation"]
    name = sim.get("name") or Path(meta.get("source", "simulation")).stem
    lines = [f"## Federated learning: {name}", ""]
    dataset = setup.get("dataset", {})
    lines += [
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
    lines += ["", "### Global accuracy per defence (same attack)", "",
              "| defence | rounds | final accuracy | best accuracy |", "|---|---|---|---|"]
    for defence, records in results.items():
        accuracies = [r["accuracy"] for r in records[1:]] or [records[0]["accuracy"]]
        lines.append(f"| {DEFENCE_LABELS.get(defence, defence)} | {records[-1]['round']} | "
                     f"{records[-1]['accuracy']:.4f} | {max(accuracies):.4f} |")
    lines += ["", f"![accuracy per round]({figures['accuracy']})", ""]
    summaries = {defence: detection_summary(records) for defence, records in results.items()}
    roles = sorted({role for s in summaries.values() for role in s["excluded"]}, key=lambda r: (r != "honest", r))
    lines += ["### Detection", "",
              "Fraction of each role's submissions kept out of the aggregate (PoL rejection or Multi-Krum):", "",
              "| defence | " + " | ".join(roles) + " |", "|---|" + "---|" * len(roles)]
    for defence, summary in summaries.items():
        lines.append(f"| {DEFENCE_LABELS.get(defence, defence)} | "
                     + " | ".join(_fmt(summary["excluded"].get(role)) for role in roles) + " |")
    pol_rows = [(d, s["pol"]) for d, s in summaries.items() if "pol" in s]
    if pol_rows:
        lines += ["", "PoL challenges over all rounds:", "",
                  "| defence | challenges | cheaters caught | honest wrongly rejected |", "|---|---|---|---|"]
        for defence, numbers in pol_rows:
            lines.append(
                f"| {DEFENCE_LABELS.get(defence, defence)} | {numbers['challenges_issued']} | "
                f"{numbers['cheaters_caught']}/{numbers['cheaters_challenged']} ({_fmt(numbers['caught_rate'])}) | "
                f"{numbers['honest_wrongly_rejected']}/{numbers['honest_challenged']} ({_fmt(numbers['false_reject_rate'])}) |")
    lines += ["", f"![detection]({figures['detection']})", ""]
    scores: dict[str, list[float]] = {}
    for defence in ("pol", "both"):
        for role, values in challenge_scores(results.get(defence, [])).items():
            scores.setdefault(role, []).extend(values)
    utility = _utility(results)
    if scores or utility:
        sigmas = sorted({c["sigma"] for c in setup.get("clients", [])})
        lines += [f"### PUD trade-off at client sigma {', '.join(f'{s:g}' for s in sigmas)}", ""]
        privacy = (utility or {}).get("privacy")
        if privacy:
            psnr = "∞ (no noise)" if privacy.get("psnr_db") is None else f"{privacy['psnr_db']:.1f} dB"
            lines.append(f"- **Privacy**: the shared O(T) is T plus N(0, sigma^2) per pixel: PSNR(T, O(T)) = "
                         f"{psnr}, noise std / pixel std of T = {privacy['noise_to_signal']:.2f}.")
        if utility and "accuracy_obfuscated" in utility:
            lines.append(
                f"- **Utility** to the challenger ({utility['challenger']}, {utility['received_samples']} obfuscated "
                f"samples of clients {utility['received_clients']}): a model trained on them reaches "
                f"{utility['accuracy_obfuscated']:.3f} on T_e (the same data clean: {utility['accuracy_clean']:.3f}; "
                f"baseline, {utility['baseline']}: {utility['baseline_accuracy']:.3f}); gain "
                f"**{utility['gain']:+.3f}**.")
        if scores:
            numbers = distinguishability(scores)
            lines.append(
                f"- **Distinguishability**: honest challenges' largest distance/threshold {_fmt(numbers['honest_max_score'])}, "
                f"cheaters' smallest {_fmt(numbers['cheater_min_score'])}; ROC AUC honest vs cheaters "
                f"{_fmt(numbers['auc'])} (1 = perfectly separated).")
        lines += ["", f"![PUD trade-off]({figures['pud']})", ""]
    return "\n".join(lines) + "\n"


def write_report(store: str | Path) -> Path:
    """Write ``STORE/report.md`` and its figures; returns the markdown's path."""
    store = Path(store)
    meta, results = load_store(store)
    name = meta["spec"]["simulation"].get("name") or Path(meta.get("source", "simulation")).stem
    figures_dir = store / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    accuracy_figure(results, figures_dir / "fl_accuracy", title=f"{name}: global accuracy per round")
    summaries = {defence: detection_summary(records) for defence, records in results.items()}
    detection_figure(summaries, figures_dir / "fl_detection")
    scores: dict[str, list[float]] = {}
    for defence in ("pol", "both"):
        for role, values in challenge_scores(results.get(defence, [])).items():
            scores.setdefault(role, []).extend(values)
    utility = _utility(results)
    pud_figure(utility, scores, (utility or {}).get("privacy"), figures_dir / "fl_pud")
    figures = {key: f"figures/fl_{key}.png" for key in ("accuracy", "detection", "pud")}
    text = "# pudlab federated-learning simulation\n\n" + report_section(meta, results, figures)
    path = store / "report.md"
    write_bytes_atomic(path, text.encode())
    return path


__all__ = [
    "challenge_scores",
    "detection_summary",
    "distinguishability",
    "load_store",
    "report_section",
    "write_report",
]
