"""The records of ``pudlab compare-dp`` (obfuscation next to DP-SGD), their summaries over repeats and
the matched-points table; ``to_dict``/``from_dict`` are the JSON on disk (``dp_comparison.json``,
an infinite epsilon stored as null and read back as None).

Bands are the range (min..max) over repeats. A matched pair claims a winner only when the two ranges
of the compared metric do not overlap; with 3 repeats that is a plain, stated rule, not a test.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from pudlab.errors import SpecError
from pudlab.privacy._records import list_of, optional, plain_dict, record_from_dict, require_mapping
from pudlab.privacy.dpsgd import DpSgdRecord
from pudlab.privacy.linkage import LinkageSummary
from pudlab.privacy.lira import LiraResult
from pudlab.privacy.similarity import SimilaritySummary

COMPARISON_KIND = "pudlab.dp_comparison"
"""The ``kind`` of a comparison's JSON."""
METHODS = ("obfuscation", "dp-sgd")
METRICS = ("accuracy", "loss_auc", "loss_tpr_at_1pct", "lira_auc", "lira_tpr_at_0_1pct", "lira_tpr_at_1pct",
           "distance_to_clean", "release_linkage", "release_psnr")
"""What :func:`point_summary` summarizes (LiRA: the stronger of offline and online, per repeat)."""
LEAK_METRIC = "lira_tpr_at_1pct"
"""The empirical leak the matched table and the main figure use (TPR at 0.1 % FPR is below one
non-member with 500 of them: reported, too noisy to match on)."""


@dataclass(frozen=True)
class ReleaseLeak:
    """What the obfuscated release itself gives away (DP-SGD publishes no release)."""

    similarity: SimilaritySummary
    linkage: LinkageSummary

    def to_dict(self) -> dict[str, Any]:
        return {"similarity": self.similarity.to_dict(), "linkage": self.linkage.to_dict()}

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "release") -> ReleaseLeak:
        return record_from_dict(cls, data, where, similarity=SimilaritySummary.from_dict,
                                linkage=LinkageSummary.from_dict)


@dataclass(frozen=True)
class RepeatResult:
    """One trained model of one point: its utility and the attacks on it."""

    repeat: int
    accuracy: float
    """Accuracy on T_e."""
    loss_auc: float
    """Loss-threshold attack (Yeom et al. 2018) AUC."""
    loss_tpr_at_1pct: float
    lira: LiraResult | None
    distance_to_clean: float
    """D (Frobenius) to the clean model of the same repeat (same init; see ``distance_floor``)."""
    train_seconds: float
    seconds: float
    """Wall time of this repeat: training, attacks, and the shadows it trained."""
    release: ReleaseLeak | None = None
    """Obfuscation only: the release's own leak (linkage, PSNR, SSIM of O(members) to the members)."""

    def metric(self, name: str) -> float | None:
        """The value of one of :data:`METRICS` (None where it does not apply)."""
        lira = self.lira
        values: dict[str, float | None] = {
            "accuracy": self.accuracy, "loss_auc": self.loss_auc, "loss_tpr_at_1pct": self.loss_tpr_at_1pct,
            "lira_auc": lira.auc if lira else None,
            "lira_tpr_at_0_1pct": max(lira.offline_tpr_at_0_1pct, lira.online_tpr_at_0_1pct) if lira else None,
            "lira_tpr_at_1pct": max(lira.offline_tpr_at_1pct, lira.online_tpr_at_1pct) if lira else None,
            "distance_to_clean": self.distance_to_clean,
            "release_linkage": self.release.linkage.rate if self.release else None,
            "release_psnr": self.release.similarity.psnr_mean if self.release else None,
        }
        return values[name]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["lira"] = None if self.lira is None else self.lira.to_dict()
        data["release"] = None if self.release is None else self.release.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "repeat") -> RepeatResult:
        return record_from_dict(cls, data, where, lira=optional(LiraResult.from_dict),
                                release=optional(ReleaseLeak.from_dict))


@dataclass(frozen=True)
class Band:
    """A metric over repeats: mean, sample std, and the range (the band drawn and compared)."""

    mean: float
    std: float
    low: float
    high: float
    count: int

    @classmethod
    def of(cls, values: Sequence[float | None]) -> Band | None:
        finite = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
        if len(finite) == 0:
            return None
        std = float(finite.std(ddof=1)) if len(finite) > 1 else 0.0
        return cls(float(finite.mean()), std, float(finite.min()), float(finite.max()), len(finite))

    def overlaps(self, other: Band) -> bool:
        return self.low <= other.high and other.low <= self.high

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ComparisonPoint:
    """One grid point of one method (a sigma, or a noise multiplier), over its repeats."""

    method: str
    """``obfuscation`` or ``dp-sgd``."""
    parameter: float
    """sigma of the release, or the DP-SGD noise multiplier."""
    control: bool
    """sigma 0 (the clean model) or noise 0 (clipping only): a negative control with epsilon = inf."""
    epsilon: float | None
    """The headline formal epsilon(delta): the release's at image-level sensitivity (replace-one), or the
    accountant's (add/remove). None: infinite (or not covered)."""
    epsilons: dict[str, float | None]
    """Every formal epsilon of the point, named by sensitivity / neighbouring relation."""
    repeats: list[RepeatResult]
    seconds: float
    """Wall time of the point (all repeats, shadows included)."""
    dp_sgd: DpSgdRecord | None = None
    target_epsilon: float | None = None
    """The target the noise multiplier was solved for, when the grid was given as target epsilons."""

    @property
    def label(self) -> str:
        name = "sigma" if self.method == "obfuscation" else "noise"
        target = f" (target eps {self.target_epsilon:g})" if self.target_epsilon is not None else ""
        return f"{self.method} {name} {self.parameter:g}{target}"

    def band(self, metric: str) -> Band | None:
        return Band.of([run.metric(metric) for run in self.repeats])

    def summary(self) -> dict[str, dict[str, Any] | None]:
        """Per metric of :data:`METRICS`, its :class:`Band` as a dict (None where it does not apply)."""
        return {name: (band.to_dict() if (band := self.band(name)) is not None else None) for name in METRICS}

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "parameter": self.parameter, "control": self.control, "label": self.label,
                "epsilon": self.epsilon, "epsilons": dict(self.epsilons),
                "dp_sgd": None if self.dp_sgd is None else self.dp_sgd.to_dict(), "target_epsilon": self.target_epsilon,
                "repeats": [run.to_dict() for run in self.repeats], "summary": self.summary(), "seconds": self.seconds}

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "point") -> ComparisonPoint:
        data = {key: value for key, value in require_mapping(data, where).items() if key not in ("label", "summary")}
        return record_from_dict(cls, data, where, epsilons=plain_dict, repeats=list_of(RepeatResult.from_dict),
                                dp_sgd=optional(DpSgdRecord.from_dict))


@dataclass(frozen=True)
class MatchedPair:
    """An obfuscation point and the DP-SGD point closest to it on one metric, compared on another."""

    matched_on: str
    """``accuracy`` (then: which leaks less) or :data:`LEAK_METRIC` (then: which is more accurate)."""
    obfuscation: str
    dp_sgd: str
    matched_values: tuple[float, float]
    """The two means of ``matched_on`` (obfuscation, DP-SGD)."""
    compared: str
    obfuscation_band: dict[str, Any]
    dp_sgd_band: dict[str, Any]
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "matched_values": list(self.matched_values)}

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "match") -> MatchedPair:
        pair = record_from_dict(cls, data, where)
        return cls(**{**asdict(pair), "matched_values": tuple(pair.matched_values)})


def _verdict(compared: str, obfuscation: Band, dp_sgd: Band) -> str:
    if obfuscation.overlaps(dp_sgd):
        return "no clear difference (ranges over repeats overlap)"
    obfuscation_lower = obfuscation.high < dp_sgd.low
    if compared == "accuracy":
        return "obfuscation more accurate" if not obfuscation_lower else "DP-SGD more accurate"
    return "obfuscation leaks less" if obfuscation_lower else "DP-SGD leaks less"


def match_points(points: Sequence[ComparisonPoint], *, accuracy_tolerance: float,
                 leak_tolerance: float) -> list[MatchedPair]:
    """For each non-control obfuscation point, the non-control DP-SGD point with the closest mean accuracy
    (within ``accuracy_tolerance``: which leaks less, by :data:`LEAK_METRIC`), and the one with the
    closest mean leak (within ``leak_tolerance``: which is more accurate). No match, no row."""
    obfuscated = [p for p in points if p.method == "obfuscation" and not p.control]
    private = [p for p in points if p.method == "dp-sgd" and not p.control]
    pairs = []
    for matched_on, compared, tolerance in (("accuracy", LEAK_METRIC, accuracy_tolerance),
                                            (LEAK_METRIC, "accuracy", leak_tolerance)):
        for point in obfuscated:
            mine, mine_compared = point.band(matched_on), point.band(compared)
            if mine is None or mine_compared is None:
                continue
            candidates = [(abs(band.mean - mine.mean), other, band) for other in private
                          if (band := other.band(matched_on)) is not None and abs(band.mean - mine.mean) <= tolerance]
            if not candidates:
                continue
            _, other, theirs = min(candidates, key=lambda item: item[0])
            theirs_compared = other.band(compared)
            if theirs_compared is None:
                continue
            pairs.append(MatchedPair(matched_on, point.label, other.label, (mine.mean, theirs.mean), compared,
                                     mine_compared.to_dict(), theirs_compared.to_dict(),
                                     _verdict(compared, mine_compared, theirs_compared)))
    return pairs


@dataclass(frozen=True)
class ComparisonReport:
    """What :func:`pudlab.privacy.dp_comparison.compare_dp` returns."""

    version: str
    dataset: dict[str, Any]
    config: dict[str, Any]
    """The :class:`~pudlab.privacy.dp_comparison.ComparisonConfig` as a dict."""
    environment: dict[str, Any]
    points: list[ComparisonPoint]
    distance_floor: list[float]
    """Per repeat: D between the clean model and one trained with another shuffle seed (same data and
    init), the floor that a D to the clean model is read against."""
    matches: list[MatchedPair]
    wall_seconds: float
    notes: list[str] = field(default_factory=list)
    label_prior_auc: float | None = None
    """The membership AUC of an attack that knows only the members' label frequencies (score: log of the
    frequency of a record's label): the floor that a loss-threshold or LiRA AUC is read against, above
    0.5 when members and non-members happen to differ in label mix (a model that learned nothing but
    the label prior reaches it)."""
    command_wall_seconds: float | None = None
    """Set by ``pudlab compare-dp``: the whole command, dataset loading included."""
    torch_threads: int | None = None
    """Set by ``pudlab compare-dp``."""

    def to_dict(self) -> dict[str, Any]:
        data = {"kind": COMPARISON_KIND, "version": self.version, "dataset": dict(self.dataset),
                "config": dict(self.config), "environment": dict(self.environment),
                "points": [point.to_dict() for point in self.points], "distance_floor": list(self.distance_floor),
                "matches": [pair.to_dict() for pair in self.matches], "wall_seconds": self.wall_seconds,
                "notes": list(self.notes)}
        for key in ("label_prior_auc", "command_wall_seconds", "torch_threads"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        return data

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "comparison") -> ComparisonReport:
        """Read :meth:`to_dict`'s output back; errors name ``source`` and the key."""
        if not isinstance(data, dict) or data.get("kind") != COMPARISON_KIND:
            raise SpecError(f"{source}: not a pudlab DP comparison (expected kind '{COMPARISON_KIND}')")
        fields = {key: value for key, value in data.items() if key != "kind"}
        return record_from_dict(cls, fields, source, prefix=f"{source}: ", dataset=plain_dict, config=plain_dict,
                                environment=plain_dict, points=list_of(ComparisonPoint.from_dict),
                                matches=list_of(MatchedPair.from_dict))

    def method_points(self, method: str) -> list[ComparisonPoint]:
        return [point for point in self.points if point.method == method]


__all__ = ["COMPARISON_KIND", "LEAK_METRIC", "METHODS", "METRICS", "Band", "ComparisonPoint", "ComparisonReport",
           "MatchedPair", "ReleaseLeak", "RepeatResult", "match_points"]
