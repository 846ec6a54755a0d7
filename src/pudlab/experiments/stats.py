"""The statistics of the claims: paired contrasts per repeat, a margin whose own uncertainty enters the
decision, equivalence tests (TOST), the combination of a claim's effects and its power.

**Paired contrasts.** Within a repeat every sigma shares the shuffle order and the noise draw, and the
series of an experiment share their reference, so an effect is computed *within* each repeat:
``d_r = sum_i c_i x_i[r]`` over the repeats where every point it needs is present. Its estimate is
``mean(d)``, its standard error ``sd(d) / sqrt(n)`` with ``n - 1`` degrees of freedom (a one-sample t).
Accuracies on ``N`` images move in steps of ``h = 1/N``: their rounding variance ``(sum |c_i|)^2 h^2 / 12``
is added to the squared standard error (not divided by n: tied repeats may share their rounding), so
no interval is narrower than about one step and tied repeats never give a zero-width interval. Without
such a floor a zero-variance contrast, or fewer than 2 repeats, gives an unbounded interval
(*inconclusive*).

**The margin** m is the smallest effect that counts. For a distance it is ``k`` standard deviations of
the noise floor, estimated from floor pairs with ``df`` degrees of freedom: m is itself uncertain. The
decision carries that uncertainty with generalized pivotal quantities (Weerahandi 1993): the effect's
pivot ``mean(d) - T se`` (``T ~ t(n - 1)``) minus the margin's pivot ``k s sqrt(df / V)``
(``V ~ chi2(df)``); the probabilities below are integrated over V on a fixed quantile grid, so every
decision is deterministic. A fixed margin (accuracy) has no pivot.

**Decisions** for an effect claimed to exceed m (``exceeds``): *reproduced* when
``P(effect - m <= 0) < ALPHA`` (the effect is above the margin with 97.5 % confidence, one-sided: the
lower end of a 95 % interval); *not reproduced* when ``P(effect - m >= 0) < ALPHA`` (the data rule out
an effect of that size, or show the opposite sign); else *inconclusive*. For an effect claimed to be
negligible (``equivalent``, TOST): *reproduced* when both ``P(effect >= m)`` and ``P(effect <= -m)``
are below ``TOST_ALPHA`` (its 90 % interval lies inside [-m, m]); *not reproduced* when the effect lies
beyond +-m with ``ALPHA``.

**A claim of several primary effects** (:func:`combine`) is reproduced when every one is (an
intersection-union test: each at its own level, no correction needed), not reproduced when Holm's
procedure over the "against" probabilities rejects at least one (for "any one" Holm equals Bonferroni:
``min p x k < ALPHA``). Secondary effects are reported and do not decide.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy import special
from scipy import stats as scipy_stats

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
NOT_EVALUATED = "not evaluated"
NOT_TESTABLE = "not testable here"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_TESTABLE, NOT_EVALUATED)

ALPHA = 0.025
"""One-sided level of every 'exceeds' decision and of every 'against' decision (a 95 % interval)."""
TOST_ALPHA = 0.05
"""One-sided level of each test of an equivalence (TOST: a 90 % interval inside [-m, m])."""
POWER = 0.8
"""Power at which the minimum detectable effect is stated."""
MARGIN_NODES = 2000
"""Quantile nodes of the margin's chi-square pivot (midpoints: a deterministic integral)."""

EXCEEDS = "exceeds"
EQUIVALENT = "equivalent"


def _r(value: float) -> float:
    return round(float(value), 4) if math.isfinite(value) else float(value)


# ------------------------------------------------------------------------------------------------ margin
@dataclass(frozen=True)
class Margin:
    """The smallest effect that counts: ``k x std`` of a noise floor estimated with ``df`` degrees of
    freedom (``df = inf``: a fixed margin, e.g. for accuracies)."""

    value: float
    k: float = 1.0
    std: float = math.nan
    df: float = math.inf
    pivots: np.ndarray = field(default_factory=lambda: np.zeros(0), compare=False, repr=False)
    """The margin's pivot at the quantile nodes (empty for a fixed margin)."""

    @classmethod
    def fixed(cls, value: float) -> Margin:
        """A margin stated before the run."""
        return cls(float(value))

    @classmethod
    def from_floor(cls, std: float, df: float, k: float, *, nodes: int = MARGIN_NODES) -> Margin:
        """``k x std`` with ``std`` a pooled standard deviation on ``df`` degrees of freedom."""
        if not (math.isfinite(std) and df >= 1):
            return cls(math.nan, k, std, df)
        return cls(k * std, k, std, df, k * std * _chi_factors(float(df), nodes))

    @property
    def uncertain(self) -> bool:
        return len(self.pivots) > 0

    def interval(self) -> tuple[float, float]:
        """95 % interval of the true margin (the value itself when fixed)."""
        if not self.uncertain:
            return self.value, self.value
        low = self.k * self.std * math.sqrt(self.df / special.chdtri(self.df, 0.025))
        high = self.k * self.std * math.sqrt(self.df / special.chdtri(self.df, 0.975))
        return low, high

    def variance(self) -> float:
        """Sampling variance of the margin's estimate (0 when fixed)."""
        if not self.uncertain:
            return 0.0
        df = self.df
        c4 = math.exp(0.5 * math.log(2 / df) + math.lgamma((df + 1) / 2) - math.lgamma(df / 2))
        return (self.k * self.std) ** 2 * (1 / c4 ** 2 - 1)

    def to_dict(self) -> dict:
        low, high = self.interval()
        return {"value": _r(self.value), "k": _r(self.k), "std": _r(self.std), "df": _r(self.df),
                "ci95": [_r(low), _r(high)]}


@lru_cache(maxsize=64)
def _chi_factors(df: float, nodes: int) -> np.ndarray:
    """``sqrt(df / V)`` at the midpoint quantiles of ``V ~ chi2(df)`` (read-only; memoized, a pure function)."""
    u = (np.arange(nodes) + 0.5) / nodes
    factors = np.sqrt(df / scipy_stats.chi2.ppf(u, df))
    factors.setflags(write=False)
    return factors


def pooled_std(groups: Sequence[Sequence[float] | np.ndarray]) -> tuple[float, float]:
    """(pooled within-group sample standard deviation, degrees of freedom) over groups of >= 2 values."""
    usable = [np.asarray(g, float) for g in groups if len(g) >= 2]
    df = sum(len(g) - 1 for g in usable)
    if df == 0:
        return math.nan, 0.0
    return math.sqrt(sum(float(((g - g.mean()) ** 2).sum()) for g in usable) / df), float(df)


# ------------------------------------------------------------------------------------------------ effects
@dataclass(frozen=True)
class Effect:
    """An effect estimated from per-repeat contrasts, its 95 % interval and its decision."""

    name: str
    estimate: float
    low: float
    high: float
    margin: Margin
    verdict: str
    n: int
    """Repeats the contrast was computed on."""
    df: float
    se: float
    p_support: float
    """Probability-like measure against the claim's support; small: the data support the claim."""
    p_against: float
    """Small: the data contradict the claim (the effect is below the margin, or beyond it for an equivalence)."""
    kind: str = EXCEEDS
    role: str = "primary"
    mde: float = math.nan
    """Smallest effect with ``POWER`` probability of 'reproduced' at this n (exceeds) / largest |effect|
    with that probability of 'equivalent' (equivalent)."""

    def to_dict(self) -> dict:
        return {"estimate": _r(self.estimate), "ci95": [_r(self.low), _r(self.high)],
                "margin": self.margin.to_dict(), "verdict": self.verdict, "n": self.n, "df": _r(self.df),
                "se": _r(self.se), "p_support": _r(self.p_support), "p_against": _r(self.p_against),
                "test": self.kind, "role": self.role, "mde": _r(self.mde)}

    def text(self) -> str:
        """``name +0.123 [0.05, 0.20]`` (the margin is stated once per claim)."""
        return f"{self.name} {self.estimate:+.3g} [{self.low:.3g}, {self.high:.3g}]"

    @property
    def mde_margins(self) -> float:
        """The minimum detectable effect in margins."""
        return self.mde / self.margin.value if self.margin.value > 0 else math.nan


def paired(points: Sequence[np.ndarray], coefficients: Sequence[float]) -> np.ndarray:
    """Per-repeat contrasts ``sum_i c_i x_i[r]`` over the repeats where every used point is finite
    (``points`` are aligned by repeat; missing repeats are NaN)."""
    used = [(np.asarray(p, float), c) for p, c in zip(points, coefficients, strict=True) if c != 0]
    if not used:
        return np.zeros(0)
    length = min(len(p) for p, _ in used)
    total = np.zeros(length)
    for p, c in used:
        total = total + c * p[:length]
    return total[np.isfinite(total)]


def _sf(center: float, se: float, df: float, pivots: np.ndarray) -> float:
    """P(center - T se <= pivot) averaged over the pivot's nodes, T ~ t(df)."""
    return float(np.mean(special.stdtr(df, (pivots - center) / se)))


def _pivots(margin: Margin) -> np.ndarray:
    return margin.pivots if margin.uncertain else np.asarray([margin.value])


def _moments(d: np.ndarray, shared: float) -> tuple[float, float, float]:
    """(estimate, standard error, df) of per-repeat contrasts ``d`` plus a variance ``shared`` by every
    repeat; se nan when unbounded (fewer than 2 repeats, or no variance at all)."""
    n = len(d)
    if n == 0:
        return math.nan, math.nan, math.nan
    estimate = float(d.mean())
    if n < 2:
        return estimate, math.nan, math.nan
    spread = float(d.var(ddof=1))
    if spread <= (1e-9 * float(np.abs(d).max())) ** 2:  # tied up to float rounding
        spread = 0.0
    variance = spread / n + shared
    if not variance > 0:
        return estimate, math.nan, math.nan
    return estimate, math.sqrt(variance), float(n - 1)


def judge_effect(name: str, d: np.ndarray, margin: Margin, *, kind: str = EXCEEDS, offset: float = 0.0,
                rounding: float = 0.0, extra: float = 0.0, role: str = "primary") -> Effect:
    """Decide ``mean(d) + offset`` against ``margin``. ``rounding`` is the rounding variance of the
    contrast (``(sum |c_i|)^2 h^2 / 12``) and ``extra`` another variance shared by every repeat (e.g. the
    test set's sampling): neither shrinks with more repeats, since tied repeats can share their rounding."""
    estimate, se, df = _moments(np.asarray(d, float), rounding + extra)
    estimate += offset
    n = len(d)
    if not math.isfinite(se) or math.isnan(margin.value):
        verdict = INCONCLUSIVE if n else NOT_EVALUATED
        return Effect(name, estimate, -math.inf, math.inf, margin, verdict, n, df, se, 1.0, 1.0, kind, role,
                      math.inf)
    half = float(special.stdtrit(df, 1 - ALPHA)) * se
    pivots = _pivots(margin)
    below = _sf(estimate, se, df, pivots)  # P(effect <= m)
    if kind == EXCEEDS:
        p_support, p_against = below, 1 - below
        verdict = REPRODUCED if p_support < ALPHA else NOT_REPRODUCED if p_against < ALPHA else INCONCLUSIVE
    else:
        above_neg = 1 - _sf(estimate, se, df, -pivots)  # P(effect >= -m)
        p_support = max(1 - below, 1 - above_neg)  # TOST: P(effect >= m), P(effect <= -m)
        p_against = min(below, above_neg)  # effect beyond +m, or beyond -m
        verdict = (REPRODUCED if p_support < TOST_ALPHA else NOT_REPRODUCED if p_against < ALPHA
                   else INCONCLUSIVE)
    mde = minimum_detectable(se, df, margin, kind)
    return Effect(name, estimate, estimate - half, estimate + half, margin, verdict, n, df, se, p_support,
                  p_against, kind, role, mde)


def minimum_detectable(se: float, df: float, margin: Margin, kind: str = EXCEEDS) -> float:
    """The effect with ``POWER`` probability of 'reproduced' at this standard error (normal
    approximation with the margin's sampling variance): ``m + (t_(1-a) + t_power) x sqrt(se^2 + var m)``
    for an 'exceeds' test; for an equivalence the largest |effect| still declared equivalent with that
    probability, ``m - (t_(1-a) + t_(power)) x ...`` (negative: not reachable at this n)."""
    if not (math.isfinite(se) and df > 0 and math.isfinite(margin.value)):
        return math.inf
    spread = math.sqrt(se ** 2 + margin.variance())
    power = float(special.stdtrit(df, POWER))
    if kind == EXCEEDS:
        return margin.value + (float(special.stdtrit(df, 1 - ALPHA)) + power) * spread
    return margin.value - (float(special.stdtrit(df, 1 - TOST_ALPHA)) + power) * spread


def repeats_needed(sd: float, margin: Margin, target: float, *, limit: int = 200) -> int | None:
    """The fewest repeats (2..limit) whose minimum detectable effect is at most ``target``, for per-repeat
    contrasts with standard deviation ``sd``; None when even ``limit`` repeats are not enough."""
    if not (math.isfinite(sd) and math.isfinite(margin.value)):
        return None
    for n in range(2, limit + 1):
        if minimum_detectable(sd / math.sqrt(n), n - 1, margin) <= target:
            return n
    return None


# ------------------------------------------------------------------------------------------------ claims
def combine(effects: Sequence[Effect]) -> str:
    """A claim's verdict from its primary effects: reproduced when every one is (intersection-union),
    not reproduced when Holm rejects one of the 'against' hypotheses (``min p x k < ALPHA``)."""
    primary = [e for e in effects if e.role == "primary"]
    if not primary or any(e.verdict == NOT_EVALUATED for e in primary):
        return NOT_EVALUATED
    if all(e.verdict == REPRODUCED for e in primary):
        return REPRODUCED
    if min(e.p_against for e in primary) * len(primary) < ALPHA:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def spread(values: Sequence[float | None]) -> float:
    """Sample standard deviation (ddof = 1) of the finite values; nan with fewer than 2."""
    array = np.asarray([v for v in values if v is not None], dtype=np.float64)
    array = array[np.isfinite(array)]
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
