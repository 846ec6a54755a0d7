"""What a detection evaluation (:func:`pudlab.pol.evaluation.evaluate_detection`) measured, as
typed records, and the per-sigma summary as a table and a CSV (the figure:
:mod:`pudlab.report.pol_figures`).

Statistics of detection (higher = more suspicious): the mean replay distance of a verdict and its
max distance/threshold score; positives are the spoofed bundles, negatives the honest ones.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from pudlab.metrics import roc_auc, tpr_at_fpr
from pudlab.pol.verdict import SegmentResult, Verdict
from pudlab.records import Record


@dataclass(frozen=True)
class VerdictSummary(Record):
    """What the evaluation keeps of one :class:`~pudlab.pol.verdict.Verdict`."""

    accepted: bool
    reason: str
    mean_distance: float
    max_distance: float
    max_score: float | None
    """max distance/threshold over the replayed segments; None when infinite (JSON has no infinity)."""
    segments: tuple[SegmentResult, ...]
    seconds: float
    decision: str | None = None
    """``accept``, ``reject`` or ``undecidable`` (None in files written before undecidable verdicts)."""

    OMIT_NONE = ("decision",)

    @classmethod
    def of(cls, verdict: Verdict) -> VerdictSummary:
        score = verdict.max_score
        return cls(verdict.accepted, verdict.reason, verdict.mean_distance, verdict.max_distance,
                   score if math.isfinite(score) else None, tuple(verdict.segments), verdict.seconds, verdict.decision)

    @property
    def rejected(self) -> bool:
        """Rejected (not accepted and not undecidable)."""
        return not self.accepted and self.decision != "undecidable"

    @property
    def undecidable(self) -> bool:
        return self.decision == "undecidable"

    @property
    def score(self) -> float:
        """``max_score`` with None read as infinity (the detection statistic)."""
        return math.inf if self.max_score is None else self.max_score


@dataclass(frozen=True)
class TrialOutcome(Record):
    """The honest and the spoofed bundle of one (trial, sigma), verified."""

    trial: int
    sigma: float
    honest: VerdictSummary
    spoof: VerdictSummary
    delta: float
    """Delta (Eq. 4) = |D_honest - D_spoof| of the mean replay distances."""


@dataclass(frozen=True)
class AttackOutcome(Record):
    """One thief or tampered bundle, verified."""

    sigma: float
    attack: str
    """One of :data:`pudlab.pol.evaluation.ATTACK_NAMES`."""
    expected_status: int
    status: int
    """Exit status of ``pudlab pol verify``: 0 accept, 1 reject, 2 malformed, 4 undecidable."""
    reason: str
    max_distance: float | None
    """None when the bundle was malformed (nothing replayed)."""
    seconds: float | None = None
    """Verification time (None: malformed)."""
    replayed_segments: int | None = None

    OMIT_NONE = ("seconds", "replayed_segments")
    DERIVED = ("caught",)

    @property
    def caught(self) -> bool:
        """Not accepted: rejected, malformed or undecidable (exit status != 0)."""
        return self.status != 0

    @property
    def undecidable(self) -> bool:
        return self.status == 4

    @property
    def as_expected(self) -> bool:
        """The expected status, or "undecidable" where a rejection was expected (not accepted either way)."""
        return self.status == self.expected_status or (self.expected_status == 1 and self.undecidable)

    @property
    def is_thief(self) -> bool:
        """A model thief (claims a model it did not train) rather than a tamper of an honest bundle."""
        return self.attack.startswith(("thief", "moment-forgery", "stolen-init", "fake-trajectory", "drift"))


@dataclass(frozen=True)
class SigmaRow(Record):
    """Detection at one sigma, over every trial (one row of the table, the CSV and the figure)."""

    sigma: float
    trials: int
    honest_acceptance: float
    false_reject_rate: float
    segment_false_reject_rate: float
    spoof_rejection: float
    auc: float
    """ROC AUC of the mean replay distance, spoofed (positives) vs honest (negatives)."""
    tpr_at_1pct_fpr: float
    auc_score: float
    """ROC AUC of the max distance/threshold score."""
    delta_mean: float
    delta_std: float
    honest_distance_mean: float
    honest_distance_std: float
    spoof_distance_mean: float
    spoof_distance_std: float
    threshold_mean: float
    honest_max_score: float | None
    spoof_min_score: float | None
    thief_rejection: float | None
    tamper_rejection: float | None
    attacks_as_expected: bool | None
    honest_undecidable: float | None = None
    """Share of honest bundles answered "undecidable" (exit 4; not counted as false rejects)."""
    verify_segments_mean: float | None = None
    """Mean replayed segments of an honest verification (the cost at these settings)."""
    verify_seconds_mean: float | None = None
    """Mean seconds of an honest verification."""
    attacks_accepted: int | None = None
    """Attack attempts accepted (exit 0)."""

    OMIT_NONE = ("honest_undecidable", "verify_segments_mean", "verify_seconds_mean", "attacks_accepted")


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=np.float64)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


def _finite_or_none(values: Sequence[float], pick: Callable) -> float | None:
    """``pick`` (max or min) of scores; None when that is infinite (JSON has no infinity)."""
    chosen = pick(values, default=0.0)
    return chosen if math.isfinite(chosen) else None


def _rate(flags: Sequence[bool]) -> float | None:
    return float(np.mean(flags)) if flags else None


def summarise_sigma(sigma: float, outcomes: Sequence[TrialOutcome], attacks: Sequence[AttackOutcome]) -> SigmaRow:
    """The row of one sigma from its trials and (trial 0's) attacks."""
    honest = [outcome.honest for outcome in outcomes]
    spoof = [outcome.spoof for outcome in outcomes]
    honest_distances = [h.mean_distance for h in honest]
    spoof_distances = [s.mean_distance for s in spoof]
    honest_segments = [segment for h in honest for segment in h.segments]
    thresholds = [segment.threshold for segment in honest_segments]
    delta_mean, delta_std = _mean_std([outcome.delta for outcome in outcomes])
    honest_mean, honest_std = _mean_std(honest_distances)
    spoof_mean, spoof_std = _mean_std(spoof_distances)
    return SigmaRow(
        sigma=sigma,
        trials=len(outcomes),
        honest_acceptance=float(np.mean([h.accepted for h in honest])),
        false_reject_rate=float(np.mean([h.rejected for h in honest])),
        segment_false_reject_rate=(float(np.mean([not segment.passed for segment in honest_segments]))
                                   if honest_segments else 0.0),
        spoof_rejection=float(np.mean([not s.accepted for s in spoof])),
        auc=roc_auc(positives=spoof_distances, negatives=honest_distances),
        tpr_at_1pct_fpr=tpr_at_fpr(positives=spoof_distances, negatives=honest_distances, max_fpr=0.01),
        auc_score=roc_auc(positives=[s.score for s in spoof], negatives=[h.score for h in honest]),
        delta_mean=delta_mean, delta_std=delta_std,
        honest_distance_mean=honest_mean, honest_distance_std=honest_std,
        spoof_distance_mean=spoof_mean, spoof_distance_std=spoof_std,
        threshold_mean=float(np.mean(thresholds)) if thresholds else 0.0,
        honest_max_score=_finite_or_none([h.score for h in honest], max),
        spoof_min_score=_finite_or_none([s.score for s in spoof], min),
        thief_rejection=_rate([a.caught for a in attacks if a.is_thief]),
        tamper_rejection=_rate([a.caught for a in attacks if not a.is_thief]),
        attacks_as_expected=all(a.as_expected for a in attacks) if attacks else None,
        honest_undecidable=float(np.mean([h.undecidable for h in honest])),
        verify_segments_mean=float(np.mean([len(h.segments) for h in honest])),
        verify_seconds_mean=float(np.mean([h.seconds for h in honest])),
        attacks_accepted=sum(not a.caught for a in attacks) if attacks else None,
    )


# ----------------------------------------------------------------------------------- outputs
CSV_COLUMNS = ("sigma", "trials", "honest_acceptance", "false_reject_rate", "honest_undecidable",
               "segment_false_reject_rate", "verify_segments_mean", "verify_seconds_mean", "attacks_accepted",
               "spoof_rejection", "auc", "tpr_at_1pct_fpr", "auc_score", "delta_mean", "delta_std",
               "honest_distance_mean", "honest_distance_std", "spoof_distance_mean", "spoof_distance_std",
               "threshold_mean", "honest_max_score", "spoof_min_score", "thief_rejection", "tamper_rejection")


def rows_csv(rows: Sequence[SigmaRow]) -> str:
    """The rows as CSV text (:data:`CSV_COLUMNS`; floats with 6 significant digits, None empty)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        data = row.to_dict()  # fields in OMIT_NONE are absent when None: an empty cell, as for other Nones
        cells = {k: data.get(k) for k in CSV_COLUMNS}
        writer.writerow({k: "" if v is None else f"{v:.6g}" if isinstance(v, float) else v for k, v in cells.items()})
    return buffer.getvalue()


def attack_matrix(attacks: Sequence[AttackOutcome]) -> tuple[list[str], list[float], dict[tuple[str, float], float]]:
    """(attack names in first-seen order, sigmas, detection rate per (attack, sigma))."""
    names = list(dict.fromkeys(a.attack for a in attacks))
    sigmas = sorted({a.sigma for a in attacks})
    rates = {}
    for name in names:
        for sigma in sigmas:
            flags = [a.caught for a in attacks if a.attack == name and a.sigma == sigma]
            if flags:
                rates[(name, sigma)] = float(np.mean(flags))
    return names, sigmas, rates


def attack_cell(found: Sequence[AttackOutcome]) -> str:
    """``rejected/attempts``, then ``U<n>`` for undecidable answers and ``A<n>`` for accepted ones.

    >>> attack_cell([AttackOutcome(0.1, "x", 1, status, "", None) for status in (1, 4, 0)])
    '1/3 U1 A1'
    """
    if not found:
        return "-"
    rejected = sum(a.caught and not a.undecidable for a in found)
    undecidable = sum(a.undecidable for a in found)
    accepted = sum(not a.caught for a in found)
    return f"{rejected}/{len(found)}" + (f" U{undecidable}" if undecidable else "") + (f" A{accepted}" if accepted else "")


def format_attack_table(attacks: Sequence[AttackOutcome]) -> str:
    """Attack x sigma as fixed-width text: per cell, rejected/attempts (exit 1 or 2), ``U<n>`` undecidable
    (exit 4), ``A<n>`` accepted (exit 0)."""
    names, sigmas, _ = attack_matrix(attacks)
    width = max((len(n) for n in names), default=6) + 1
    lines = [f"{'attack':<{width}}" + "".join(f"{f'sigma {s:g}':>14}" for s in sigmas)]
    for name in names:
        cells = [attack_cell([a for a in attacks if a.attack == name and a.sigma == sigma]) for sigma in sigmas]
        lines.append(f"{name:<{width}}" + "".join(f"{c:>14}" for c in cells))
    return "\n".join(lines)


def format_table(rows: Sequence[SigmaRow]) -> str:
    """The per-sigma table as fixed-width text."""

    def fmt(value: float | None, spec: str = ".2f") -> str:
        return "-" if value is None else format(value, spec)

    lines = [f"{'sigma':>6} {'honest acc':>10} {'FRR':>5} {'undec':>5} {'segs':>5} {'sec':>6} {'spoof rej':>9} "
             f"{'AUC':>5} {'TPR@1%':>6} {'Delta':>17} "
             f"{'D honest':>9} {'D spoof':>9} {'thresh':>8} {'thief rej':>9} {'tamper rej':>10}"]
    for r in rows:
        lines.append(f"{r.sigma:>6g} {fmt(r.honest_acceptance):>10} {fmt(r.false_reject_rate):>5} "
                     f"{fmt(r.honest_undecidable):>5} {fmt(r.verify_segments_mean, '.1f'):>5} "
                     f"{fmt(r.verify_seconds_mean, '.1f'):>6} {fmt(r.spoof_rejection):>9} "
                     f"{fmt(r.auc):>5} {fmt(r.tpr_at_1pct_fpr):>6} "
                     f"{r.delta_mean:>8.4f} ± {r.delta_std:<6.4f} {r.honest_distance_mean:>9.4f} "
                     f"{r.spoof_distance_mean:>9.4f} {r.threshold_mean:>8.4f} {fmt(r.thief_rejection):>9} "
                     f"{fmt(r.tamper_rejection):>10}")
    return "\n".join(lines)


__all__ = [
    "CSV_COLUMNS",
    "AttackOutcome",
    "SigmaRow",
    "TrialOutcome",
    "VerdictSummary",
    "attack_cell",
    "attack_matrix",
    "format_attack_table",
    "format_table",
    "rows_csv",
    "summarise_sigma",
]
