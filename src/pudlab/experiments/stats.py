"""The statistics of the claims: Welch-type confidence intervals for contrasts of group means, and a
three-way decision against a margin.

A claim's effect is a contrast ``sum_i c_i * mean(group_i) + offset`` over independent groups of
repeats (e.g. D at sigma_max minus D at sigma_min). Its standard error is
``sqrt(sum_i c_i^2 s_i^2 / n_i)`` and its degrees of freedom come from Welch-Satterthwaite; the
confidence interval uses Student's t. For two groups this is Welch's t-test.

The decision for an effect the claim says is positive, with a margin m >= 0 (the smallest effect that
counts: a spread of the noise floor for distances, a fixed accuracy margin for accuracies):

* reproduced: the whole interval lies above m (the effect exceeds the noise, with confidence);
* not reproduced: the whole interval lies below m (the data rule out an effect of that size);
* inconclusive: the interval contains m, or fewer than 2 repeats make it unbounded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
NOT_EVALUATED = "not evaluated"

CONFIDENCE = 0.95
"""Two-sided confidence level of every interval."""


def _finite(values: Sequence[float | None]) -> np.ndarray:
    array = np.asarray([v for v in values if v is not None], dtype=np.float64)
    return array[np.isfinite(array)]


def _r(value: float) -> float:
    return round(float(value), 4) if math.isfinite(value) else float(value)


@dataclass(frozen=True)
class Effect:
    """A contrast of group means with its confidence interval and decision."""

    name: str
    estimate: float
    low: float
    high: float
    margin: float
    verdict: str
    n: tuple[int, ...]
    """Repeats per group."""
    df: float

    def to_dict(self) -> dict:
        return {"estimate": _r(self.estimate), "ci95": [_r(self.low), _r(self.high)], "margin": _r(self.margin),
                "verdict": self.verdict, "n": list(self.n), "df": _r(self.df)}

    def text(self) -> str:
        """``name +0.123 [0.05, 0.20]`` (the margin is stated once per claim)."""
        return f"{self.name} {self.estimate:+.3g} [{self.low:.3g}, {self.high:.3g}]"


def contrast(groups: Sequence[Sequence[float | None]], coefficients: Sequence[float], *, offset: float = 0.0,
             confidence: float = CONFIDENCE) -> tuple[float, float, float, float, tuple[int, ...]]:
    """(estimate, low, high, df, n) of ``sum c_i mean_i + offset``; the interval is unbounded when a group
    with a non-zero coefficient has fewer than 2 values."""
    arrays = [_finite(group) for group in groups]
    n = tuple(len(a) for a in arrays)
    used = [(a, c) for a, c in zip(arrays, coefficients, strict=True) if c != 0]
    if any(len(a) == 0 for a, _ in used):
        return math.nan, -math.inf, math.inf, math.nan, n
    estimate = float(sum(c * a.mean() for a, c in used)) + offset
    if any(len(a) < 2 for a, _ in used):
        return estimate, -math.inf, math.inf, math.nan, n
    parts = [c * c * a.var(ddof=1) / len(a) for a, c in used]
    variance = float(sum(parts))
    if variance == 0.0:
        return estimate, estimate, estimate, math.inf, n
    df = variance ** 2 / sum(p * p / (len(a) - 1) for p, (a, _) in zip(parts, used, strict=True) if p > 0)
    half = float(scipy_stats.t.ppf(0.5 + confidence / 2, df)) * math.sqrt(variance)
    return estimate, estimate - half, estimate + half, float(df), n


def decide(low: float, high: float, margin: float) -> str:
    """The three-way decision for an effect claimed to exceed ``margin`` (module docstring)."""
    if math.isnan(margin) or math.isnan(low) or math.isnan(high):
        return INCONCLUSIVE
    if low > margin:
        return REPRODUCED
    if high < margin:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def effect(name: str, groups: Sequence[Sequence[float | None]], coefficients: Sequence[float], margin: float, *,
           offset: float = 0.0) -> Effect:
    """The contrast, its interval and its decision against ``margin``."""
    estimate, low, high, df, n = contrast(groups, coefficients, offset=offset)
    return Effect(name, estimate, low, high, margin, decide(low, high, margin), n, df)


def difference(name: str, a: Sequence[float | None], b: Sequence[float | None], margin: float) -> Effect:
    """mean(a) - mean(b), Welch's interval."""
    return effect(name, [a, b], [1.0, -1.0], margin)


def equivalence(name: str, groups: Sequence[Sequence[float | None]], coefficients: Sequence[float],
                margin: float) -> Effect:
    """A contrast claimed to be negligible: reproduced when its interval lies inside [-margin, margin],
    not reproduced when it lies wholly outside, inconclusive otherwise."""
    estimate, low, high, df, n = contrast(groups, coefficients)
    if math.isnan(low) or math.isnan(margin) or not math.isfinite(low) or not math.isfinite(high):
        verdict = INCONCLUSIVE
    elif -margin <= low and high <= margin:
        verdict = REPRODUCED
    elif low > margin or high < -margin:
        verdict = NOT_REPRODUCED
    else:
        verdict = INCONCLUSIVE
    return Effect(name, estimate, low, high, margin, verdict, n, df)


def all_of(verdicts: Sequence[str]) -> str:
    """Reproduced when every part is, not reproduced when any part is not, else inconclusive."""
    if any(v == NOT_REPRODUCED for v in verdicts):
        return NOT_REPRODUCED
    if verdicts and all(v == REPRODUCED for v in verdicts):
        return REPRODUCED
    return INCONCLUSIVE


def share_of(verdicts: Sequence[str], share: float) -> str:
    """Reproduced when at least ``share`` of the parts are; not reproduced when that share is out of
    reach even if every inconclusive part were reproduced; else inconclusive."""
    needed = math.ceil(share * len(verdicts) - 1e-9)
    reproduced = sum(v == REPRODUCED for v in verdicts)
    possible = reproduced + sum(v == INCONCLUSIVE for v in verdicts)
    if reproduced >= needed:
        return REPRODUCED
    if possible < needed:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def spread(values: Sequence[float | None]) -> float:
    """Sample standard deviation (ddof = 1); nan with fewer than 2 values."""
    array = _finite(values)
    return float(array.std(ddof=1)) if len(array) >= 2 else math.nan


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties); nan when undefined."""
    if len(x) < 3:
        return math.nan
    rx, ry = _ranks(np.asarray(x, float)), _ranks(np.asarray(y, float))
    if rx.std() == 0 or ry.std() == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


def _ranks(values: np.ndarray) -> np.ndarray:
    order = values.argsort(kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values), dtype=float)
    for value in np.unique(values):
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks
