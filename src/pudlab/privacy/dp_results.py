"""The records of ``pudlab compare-dp`` (obfuscation next to DP-SGD), their summaries over repeats and
the matched-points table. Each inherits :class:`~pudlab.records.Record`: ``to_dict`` / ``from_dict`` are
the JSON on disk (``dp_comparison.json``, an infinite epsilon stored as null and read back as None),
read back checked (an unknown, missing or mistyped key names the file and where it is).

Bands are the range (min..max) over repeats. A matched pair claims a winner only when the two ranges
of the compared metric do not overlap; with 3 repeats that is a plain, stated rule, not a test.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np

from pudlab.errors import PudlabError, SpecError
from pudlab.privacy.dpsgd import ACCOUNTANTS, DpSgdRecord
from pudlab.privacy.linkage import LinkageSummary
from pudlab.privacy.lira import LiraResult
from pudlab.privacy.similarity import SimilaritySummary
from pudlab.records import Record, record_from_dict

COMPARISON_KIND = "pudlab.dp_comparison"
"""The ``kind`` of a comparison's JSON."""
METHODS = ("obfuscation", "dp-sgd")
METRICS = ("accuracy", "loss_auc", "loss_tpr_at_1pct", "lira_auc", "lira_tpr_at_0_1pct", "lira_tpr_at_1pct",
           "distance_to_clean", "release_linkage", "release_psnr")
"""What :attr:`ComparisonPoint.summary` summarizes (LiRA: the stronger of offline and online, per repeat)."""
LEAK_METRIC = "lira_tpr_at_1pct"
"""The empirical leak the matched table and the main figure use (TPR at 0.1 % FPR is below one
non-member with 500 of them: reported, too noisy to match on)."""


@dataclass(frozen=True)
class ReleaseLeak(Record):
    """What the obfuscated release itself gives away (DP-SGD publishes no release)."""

    similarity: SimilaritySummary
    linkage: LinkageSummary


@dataclass(frozen=True)
class RepeatResult(Record):
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


@dataclass(frozen=True)
class Band(Record):
    """A metric over repeats: mean, sample std, and the range (the band drawn and compared)."""

    mean: float
    std: float
    low: float
    high: float
    count: int

    @classmethod
    def of(cls, values: Sequence[float | None]) -> Band | None:
        """The band of the finite ``values`` (None and NaN left out); None when none is finite."""
        finite = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
        if len(finite) == 0:
            return None
        std = float(finite.std(ddof=1)) if len(finite) > 1 else 0.0
        return cls(float(finite.mean()), std, float(finite.min()), float(finite.max()), len(finite))

    def overlaps(self, other: Band) -> bool:
        """Whether the two ranges share a value."""
        return self.low <= other.high and other.low <= self.high


@dataclass(frozen=True)
class ComparisonPoint(Record):
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

    DERIVED = ("label", "summary")

    @property
    def label(self) -> str:
        """``obfuscation sigma 0.5``, ``dp-sgd noise 1 (target eps 2.5)``: the point in tables and pairs."""
        name = "sigma" if self.method == "obfuscation" else "noise"
        target = f" (target eps {self.target_epsilon:g})" if self.target_epsilon is not None else ""
        return f"{self.method} {name} {self.parameter:g}{target}"

    def band(self, metric: str) -> Band | None:
        """``metric`` (one of :data:`METRICS`) over the repeats."""
        return Band.of([run.metric(metric) for run in self.repeats])

    @property
    def summary(self) -> dict[str, Band | None]:
        """Per metric of :data:`METRICS`, its :class:`Band` (None where it does not apply)."""
        return {name: self.band(name) for name in METRICS}


@dataclass(frozen=True)
class MatchedPair(Record):
    """An obfuscation point and the DP-SGD point closest to it on one metric, compared on another."""

    matched_on: str
    """``accuracy`` (then: which leaks less) or :data:`LEAK_METRIC` (then: which is more accurate)."""
    obfuscation: str
    dp_sgd: str
    matched_values: tuple[float, float]
    """The two means of ``matched_on`` (obfuscation, DP-SGD)."""
    compared: str
    obfuscation_band: Band
    """The obfuscation point's band of ``compared``."""
    dp_sgd_band: Band
    verdict: str


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
                                     mine_compared, theirs_compared,
                                     _verdict(compared, mine_compared, theirs_compared)))
    return pairs


@dataclass(frozen=True)
class ComparisonConfig(Record):
    """The two grids and the shared recipe (defaults: the privacy report's attacked model)."""

    sigmas: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0)
    """Release noise std of (a); 0 is the clean model (a control, epsilon infinite)."""
    noise_multipliers: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0)
    """DP-SGD noise multipliers of (b); 0 is clipping only (a control, epsilon infinite)."""
    target_epsilons: tuple[float, ...] = ()
    """More DP-SGD points, each at the noise multiplier that reaches this epsilon(delta)."""
    max_grad_norm: float = 1.0
    """DP-SGD per-sample clip bound C."""
    accountant: str = "rdp"
    repeats: int = 3
    members: int = 1000
    nonmembers: int = 500
    epochs: int = 20
    batch_size: int = 128
    """Both methods; DP-SGD's sampling rate is batch_size / members."""
    lr: float = 1e-3
    widths: tuple[int, int, int] = (8, 16, 32)
    hidden: int = 32
    lira_shadows: int = 8
    fresh_shadows: bool = False
    """Train LiRA's shadows anew for every repeat (default: one set per point, shared by its repeats)."""
    delta: float = 1e-5
    pool_size: int = 5000
    """Candidate pool of the release's linkage attack (the members' sources plus others)."""
    clip: bool = False
    """Release clipped to [0, 1]."""
    seed: int = 0
    split_seed: int = 0
    eval_fraction: float = 0.1
    accuracy_tolerance: float = 0.02
    """Matched on accuracy when the means differ by at most this."""
    leak_tolerance: float = 0.01
    """Matched on LiRA TPR at 1 % FPR when the means differ by at most this."""

    def __post_init__(self) -> None:
        for name in ("sigmas", "noise_multipliers", "target_epsilons"):
            values = tuple(float(v) for v in getattr(self, name))
            object.__setattr__(self, name, values)
            if any(not math.isfinite(v) or v < 0 for v in values):
                raise PudlabError(f"compare-dp: {name} must be finite and >= 0, got {list(values)}")
        object.__setattr__(self, "widths", tuple(int(v) for v in self.widths))
        if any(v <= 0 for v in self.target_epsilons):
            raise PudlabError(f"compare-dp: target epsilons must be > 0, got {list(self.target_epsilons)}")
        if not self.sigmas or not (self.noise_multipliers or self.target_epsilons):
            raise PudlabError("compare-dp: give at least one sigma and one noise multiplier or target epsilon")
        for name in ("repeats", "members", "nonmembers", "epochs", "batch_size", "hidden", "pool_size"):
            if getattr(self, name) < 1:
                raise PudlabError(f"compare-dp: {name} must be >= 1, got {getattr(self, name)}")
        if self.lira_shadows < 0 or self.lira_shadows % 2:
            raise PudlabError(f"compare-dp: lira_shadows must be an even number >= 0, got {self.lira_shadows}")
        if self.accountant not in ACCOUNTANTS:
            raise PudlabError(f"compare-dp: accountant must be one of {', '.join(ACCOUNTANTS)}, got {self.accountant!r}")
        if not (math.isfinite(self.max_grad_norm) and self.max_grad_norm > 0):
            raise PudlabError(f"compare-dp: max_grad_norm must be > 0, got {self.max_grad_norm}")
        if not 0 < self.delta < 1 or not 0 < self.lr:
            raise PudlabError(f"compare-dp: delta must be in (0, 1) and lr > 0, got {self.delta}, {self.lr}")


@dataclass(frozen=True)
class ComparisonDataset(Record):
    """The dataset a comparison ran on, and the sizes of its attack sets."""

    name: str
    description: str
    fingerprint: str
    sample_shape: tuple[int, ...]
    members: int
    nonmembers: int
    eval_size: int
    """Images in T_e (accuracy is measured on all of them)."""


@dataclass(frozen=True)
class ComparisonReport(Record):
    """What :func:`pudlab.privacy.dp_comparison.compare_dp` returns."""

    version: str
    dataset: ComparisonDataset
    config: ComparisonConfig
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

    OMIT_NONE = ("label_prior_auc", "command_wall_seconds", "torch_threads")
    DERIVED = ("kind",)

    @property
    def kind(self) -> str:
        """The JSON's ``kind``: :data:`COMPARISON_KIND`."""
        return COMPARISON_KIND

    @classmethod
    def from_dict(cls, data: object, *, where: str | None = None) -> Self:
        """Read :meth:`to_dict`'s output (e.g. a ``dp_comparison.json``) back; errors name ``where`` (the
        file) and the key (``dp_comparison.json: points[0].repeats[1].accuracy``)."""
        source = "comparison" if where is None else where
        if not isinstance(data, Mapping) or data.get("kind") != COMPARISON_KIND:
            raise SpecError(f"{source}: not a pudlab DP comparison (expected kind '{COMPARISON_KIND}')")
        return record_from_dict(cls, data, source, prefix=f"{source}: ")

    def method_points(self, method: str) -> list[ComparisonPoint]:
        """The points of one of :data:`METHODS`, in grid order."""
        return [point for point in self.points if point.method == method]


__all__ = ["COMPARISON_KIND", "LEAK_METRIC", "METHODS", "METRICS", "Band", "ComparisonConfig", "ComparisonDataset",
           "ComparisonPoint", "ComparisonReport", "MatchedPair", "ReleaseLeak", "RepeatResult", "match_points"]
