"""The numbers of a finished simulation, from its round records: detection per role, challenge
scores, their detection AUC, the challenger's latest utility.

Used by the report (:mod:`pudlab.report.fl_document`) and the ``pudlab fl simulate`` summary.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pudlab.fl.records import ChallengerUtility, RoundRecord
from pudlab.metrics import roc_auc
from pudlab.records import Record


@dataclass(frozen=True)
class PolTotals(Record):
    """PoL challenges of one defence summed over all rounds."""

    challenges_issued: int
    cheaters_challenged: int
    cheaters_caught: int
    honest_challenged: int
    honest_wrongly_rejected: int
    caught_rate: float | None
    """cheaters_caught / cheaters_challenged (None: no cheater challenged)."""
    false_reject_rate: float | None
    """honest_wrongly_rejected / honest_challenged (None: no honest client challenged)."""
    rejected_by_role: dict[str, float]
    """Per role: fraction of its challenges that rejected."""


@dataclass(frozen=True)
class DetectionSummary(Record):
    """Detection numbers of one defence over all rounds."""

    excluded: dict[str, float]
    """Per role: fraction of its submissions not in the aggregate (PoL rejection or Multi-Krum)."""
    pol: PolTotals | None = None
    """PoL totals (None without PoL challenges)."""

    OMIT_NONE = ("pol",)


def _rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def detection_summary(records: Sequence[RoundRecord]) -> DetectionSummary:
    """Detection numbers of one defence over all its rounds (round 0 has none)."""
    kept: dict[str, list[bool]] = {}
    pol_roles: dict[str, list[bool]] = {}
    totals = dict.fromkeys(("challenges_issued", "cheaters_challenged", "cheaters_caught", "honest_challenged",
                            "honest_wrongly_rejected"), 0)
    any_pol = False
    for record in records:
        if record.initial:
            continue
        for client in record.clients or ():
            kept.setdefault(client.role, []).append(bool(client.aggregated))
        if record.pol:
            any_pol = True
            for key in totals:
                totals[key] += int(getattr(record.pol, key))
            for outcome in record.pol.outcomes:
                pol_roles.setdefault(outcome.role or "", []).append(not outcome.accepted)
    excluded = {role: 1.0 - float(np.mean(values)) for role, values in sorted(kept.items())}
    if not any_pol:
        return DetectionSummary(excluded)
    return DetectionSummary(excluded, PolTotals(
        **totals,
        caught_rate=_rate(totals["cheaters_caught"], totals["cheaters_challenged"]),
        false_reject_rate=_rate(totals["honest_wrongly_rejected"], totals["honest_challenged"]),
        rejected_by_role={role: float(np.mean(values)) for role, values in sorted(pol_roles.items())},
    ))


def challenge_scores(records: Sequence[RoundRecord]) -> dict[str, list[float]]:
    """Every challenge's largest replay distance / threshold, by the challenged client's role.

    A challenge rejected by a claim check (no replay) scores inf; one with no segment at all, NaN.
    """
    scores: dict[str, list[float]] = {}
    for record in records:
        if not record.pol:
            continue
        for outcome in record.pol.outcomes:
            score = outcome.max_score
            if score is None:
                score = math.inf if outcome.distances else math.nan  # claim check failed: no replay
            scores.setdefault(outcome.role or "", []).append(float(score))
    return scores


def pol_challenge_scores(results: Mapping[str, Sequence[RoundRecord]]) -> dict[str, list[float]]:
    """:func:`challenge_scores` of the PoL defences (pol, both) together."""
    scores: dict[str, list[float]] = {}
    for defence in ("pol", "both"):
        for role, values in challenge_scores(results.get(defence, [])).items():
            scores.setdefault(role, []).extend(values)
    return scores


@dataclass(frozen=True)
class DetectionAuc(Record):
    """How well the challenge scores separate honest clients from cheaters."""

    auc: float | None
    """ROC AUC, cheaters as positives (1 = perfectly separated; None: a side is empty)."""
    honest_max_score: float | None
    cheater_min_score: float | None


def detection_auc(scores: Mapping[str, Sequence[float]]) -> DetectionAuc:
    """ROC AUC of the honest-vs-cheater challenge scores (cheaters that failed a claim check count as inf).

    Not the paper's distinguishability Delta (:func:`pudlab.metrics.distinguishability`): this is
    how well a threshold on the score tells cheaters from honest clients.
    """
    honest = [s for s in scores.get("honest", []) if not math.isnan(s)]
    cheaters = [math.inf if math.isnan(s) else s for role, values in scores.items() if role != "honest" for s in values]
    return DetectionAuc(
        auc=roc_auc(positives=cheaters, negatives=honest) if honest and cheaters else None,
        honest_max_score=max(honest) if honest else None,
        cheater_min_score=min(cheaters) if cheaters else None,
    )


def latest_utility(results: Mapping[str, Sequence[RoundRecord]]) -> ChallengerUtility | None:
    """The challenger's utility last measured under pol (else both)."""
    for defence in ("pol", "both"):
        for record in reversed(results.get(defence, [])):
            if record.utility:
                return record.utility
    return None


__all__ = [
    "DetectionAuc",
    "DetectionSummary",
    "PolTotals",
    "challenge_scores",
    "detection_auc",
    "detection_summary",
    "latest_utility",
    "pol_challenge_scores",
]
