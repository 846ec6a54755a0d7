"""The paper's nine claims (SPEC.md sec. 4), each judged on stored series by a stated criterion.

Input: ``tables[experiment][series] = {"x": [...], "mean": [...]}`` for one dataset (the layout of
:func:`pudlab.experiments.series.series_table`), plus the noise floors (``floor[...]`` series).
A claim is *reproduced* when its criterion holds, *not reproduced* when it does not, and *not
evaluated* when a series it needs is missing. Thresholds are module constants, named and printed
in the report; a claim that does not hold is reported as such.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
NOT_EVALUATED = "not evaluated"

TREND_RHO = 0.5
"""|Spearman rho| a series needs over sigma to count as falling / rising."""
SERIES_SHARE = 2 / 3
"""Share of the series that must show a trend for a claim about several series."""
HIGH_SIGMA = 0.4
"""'High noise' / 'as sigma grows' means sigma >= this (the paper's turning point)."""
GAP_VANISH_RATIO = 0.5
"""A gap 'vanishes' when its mean at sigma >= HIGH_SIGMA is below this share of its sigma = 0 value."""
GAP_NARROW_RATIO = 0.75
"""A gap 'narrows' when its mean at sigma >= HIGH_SIGMA is below this share of its sigma = 0 value."""
RISE_FLOOR_SHARE = 0.1
"""D must rise over sigma > 0 by at least this share of the noise floor (a rise within the floor is noise)."""
MODERATE_SIGMA = 0.5
"""'Moderate sigma' for claim 8: 0 < sigma <= this."""
MNIST_ACCURACY = 0.8
"""Claim 8's accuracy bar."""
CONVERGED_TAIL = 0.25
"""Claim 9: the last share of the epoch span that must be flat (ceil(share x span) epochs back from the last,
both ends included: epochs 6-8 of 8)."""
CONVERGED_SPREAD = 0.1
"""Claim 9: the tail's max - min must be below this share of the series' whole range."""


@dataclass
class ClaimResult:
    number: int
    claim: str
    criterion: str
    status: str
    evidence: dict = field(default_factory=dict)


Tables = dict[str, dict[str, dict]]


class MissingSeries(Exception):
    """A series the criterion needs is not in the store."""


def spearman(x: list[float], y: list[float]) -> float:
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


def _curve(tables: Tables, experiment: str, series: str) -> tuple[list[float], list[float]]:
    entry = tables.get(experiment, {}).get(series)
    if entry is None:
        raise MissingSeries(f"{experiment}/{series}")
    pairs = [(x, m) for x, m in zip(entry["x"], entry["mean"], strict=True) if m is not None and not math.isnan(m)]
    if not pairs:
        raise MissingSeries(f"{experiment}/{series} has no values")
    xs, ms = zip(*sorted(pairs), strict=True)
    return list(xs), list(ms)


def _at(xs: list[float], ys: list[float], predicate: Callable[[float], bool]) -> list[float]:
    return [y for x, y in zip(xs, ys, strict=True) if predicate(x)]


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def _floor(tables: Tables, experiment: str) -> float:
    floors = [m for name, entry in tables.get(experiment, {}).items() if name.startswith("floor[")
              for m in entry["mean"] if m is not None and not math.isnan(m)]
    if not floors:
        raise MissingSeries(f"{experiment}/floor")
    return float(np.mean(floors))


def _r(value: float) -> float:
    return round(value, 4) if isinstance(value, float) and math.isfinite(value) else value


# ------------------------------------------------------------------------------------------------ claims
def claim1(t: Tables) -> tuple[bool, dict]:
    names = [("exp1", f"A(W_1,{k})") for k in (1, 2, 3)] + [("exp2", f"A(W_2,{k})") for k in (1, 2, 3)]
    evidence, holds = {}, 0
    for experiment, name in names:
        xs, ys = _curve(t, experiment, name)
        rho = spearman(xs, ys)
        ok = rho <= -TREND_RHO and ys[-1] < ys[0]
        holds += ok
        evidence[name] = {"rho": _r(rho), "A(sigma_min)": _r(ys[0]), "A(sigma_max)": _r(ys[-1]), "holds": ok}
    evidence["share"] = _r(holds / len(names))
    return holds / len(names) >= SERIES_SHARE, evidence


def claim2(t: Tables) -> tuple[bool, dict]:
    means = {name: _mean(_curve(t, "exp1", name)[1]) for name in ("A(W_1,1)", "A(W_1,2)", "A(W_1,3)")}
    values = list(means.values())
    return values[0] > values[1] > values[2], {f"mean {k} over sigma": _r(v) for k, v in means.items()}


def claim3(t: Tables) -> tuple[bool, dict]:
    evidence, highs = {}, []
    for name in ("A(W_2,1)", "A(W_2,2)", "A(W_2,3)"):
        xs, ys = _curve(t, "exp2", name)
        high = _mean(_at(xs, ys, lambda x: x >= HIGH_SIGMA))
        highs.append(high)
        evidence[f"mean {name} at sigma >= {HIGH_SIGMA}"] = _r(high)
        evidence[f"drop {name} sigma_min->max"] = _r(ys[0] - ys[-1])
    return highs[0] > highs[1] > highs[2], evidence


def claim4(t: Tables) -> tuple[bool, dict]:
    # a raw dataset vs its own obfuscated version: the series where W_o is trained on O(T_r)
    names = [("exp3", "D_3,1"), ("exp3", "D_3,3"), ("exp4", "D_4,1"), ("exp5", "D_5,1")]
    evidence, holds = {}, 0
    for experiment, name in names:
        xs, ys = _curve(t, experiment, name)
        floor = _floor(t, experiment)
        positive_x = [x for x in xs if x > 0]
        positive_y = _at(xs, ys, lambda x: x > 0)
        rho = spearman(positive_x, positive_y)
        rise = positive_y[-1] - positive_y[0] if positive_y else math.nan
        ok = rho >= TREND_RHO and rise > RISE_FLOOR_SHARE * floor
        holds += ok
        evidence[name] = {"rho(sigma>0)": _r(rho), "rise": _r(rise), "floor": _r(floor), "holds": ok}
    evidence["share"] = _r(holds / len(names))
    return holds / len(names) >= SERIES_SHARE, evidence


def _gap_ratio(t: Tables, experiment: str, first: str, second: str) -> tuple[float, dict]:
    xs, a = _curve(t, experiment, first)
    xs_b, b = _curve(t, experiment, second)
    if xs != xs_b:
        raise MissingSeries(f"{experiment}: {first} and {second} cover different sigmas")
    gaps = [abs(u - v) for u, v in zip(a, b, strict=True)]
    at_zero = gaps[0] if xs[0] == 0 else math.nan
    high = _mean(_at(xs, gaps, lambda x: x >= HIGH_SIGMA))
    ratio = high / at_zero if at_zero and at_zero > 0 else math.nan
    return ratio, {"gap(0)": _r(at_zero), f"mean gap(sigma>={HIGH_SIGMA})": _r(high), "ratio": _r(ratio),
                   "gaps": {str(x): _r(g) for x, g in zip(xs, gaps, strict=True)}}


def claim5(t: Tables) -> tuple[bool, dict]:
    evidence, oks = {}, []
    for first, second in (("D_3,1", "D_3,2"), ("D_3,3", "D_3,4")):
        ratio, detail = _gap_ratio(t, "exp3", first, second)
        oks.append(ratio < GAP_VANISH_RATIO)
        evidence[f"{first} vs {second}"] = detail
    return all(oks), evidence


def claim6(t: Tables) -> tuple[bool, dict]:
    evidence, oks = {}, []
    for other in ("D_4,2", "D_4,3"):
        ratio, detail = _gap_ratio(t, "exp4", "D_4,1", other)
        oks.append(ratio < GAP_NARROW_RATIO)
        evidence[f"D_4,1 vs {other}"] = detail
    xs, d41 = _curve(t, "exp4", "D_4,1")
    _, d42 = _curve(t, "exp4", "D_4,2")
    _, d43 = _curve(t, "exp4", "D_4,3")
    further = [abs(c - a) > abs(b - a) for a, b, c in zip(d41, d42, d43, strict=True)]
    share = sum(further) / len(further)
    evidence["share of sigmas with |D_4,3 - D_4,1| > |D_4,2 - D_4,1|"] = _r(share)
    return all(oks) and share >= SERIES_SHARE, evidence


def claim7(t: Tables) -> tuple[bool, dict]:
    highs = {}
    for name in ("D_5,1", "D_5,2", "D_5,3"):
        xs, ys = _curve(t, "exp5", name)
        highs[name] = _mean(_at(xs, ys, lambda x: x >= HIGH_SIGMA))
    values = list(highs.values())  # Z = 0.5, 0.25, 0.05
    return values[0] > values[1] > values[2], {f"mean {k} at sigma >= {HIGH_SIGMA}": _r(v) for k, v in highs.items()}


def claim8(t: Tables) -> tuple[bool, dict]:
    xs, ys = _curve(t, "exp1", "A(W_1,1)")
    moderate = {str(x): _r(y) for x, y in zip(xs, ys, strict=True) if 0 < x <= MODERATE_SIGMA}
    if not moderate:
        raise MissingSeries(f"exp1/A(W_1,1) has no sigma in (0, {MODERATE_SIGMA}]")
    return min(moderate.values()) >= MNIST_ACCURACY, {"A(W_1,1) at moderate sigma": moderate}


def claim9(t: Tables) -> tuple[bool, dict]:
    evidence, oks = {}, []
    names = [f"D_{k}" for k in (1, 2, 3, 4)] + [f"A(W_{k})" for k in (1, 2, 3, 4)]
    for name in names:
        xs, ys = _curve(t, "fig2", name)
        if len(ys) < 4:
            raise MissingSeries(f"fig2/{name} has fewer than 4 epochs")
        window = math.ceil(CONVERGED_TAIL * (xs[-1] - xs[0]))  # epochs, counted back from the last one
        tail = [y for x, y in zip(xs, ys, strict=True) if x >= xs[-1] - window]
        spread, whole = max(tail) - min(tail), max(ys) - min(ys)
        ok = whole == 0 or spread <= CONVERGED_SPREAD * whole
        oks.append(ok)
        evidence[name] = {"tail spread": _r(spread), "range": _r(whole), "holds": ok}
    return all(oks), evidence


CLAIMS: list[tuple[int, str, str, Callable[[Tables], tuple[bool, dict]]]] = [
    (1, "Accuracy falls as sigma rises (Fig. 3).",
     f"each of the 6 accuracy series of exp1/exp2: Spearman rho(sigma, A) <= -{TREND_RHO} and A(sigma_max) < "
     f"A(sigma_min); at least {SERIES_SHARE:.0%} of the series", claim1),
    (2, "Fewer labels (smaller X) give lower accuracy on the full-label test set (Fig. 3a,b).",
     "mean accuracy over the sigma grid: A(W_1,1) (X=1) > A(W_1,2) (X=0.8) > A(W_1,3) (X=0.5)", claim2),
    (3, "More samples per covered label resist noise better (Fig. 3c,d).",
     f"mean accuracy at sigma >= {HIGH_SIGMA}: A(W_2,1) > A(W_2,2) > A(W_2,3) (0.8, 0.4, 0.08 |T_t|)", claim3),
    (4, "D(W_r, W_o) rises with sigma (Figs. 4, 5).",
     "each series of a raw dataset vs its own obfuscated version (D_3,1, D_3,3, D_4,1, D_5,1), over sigma > 0: "
     f"Spearman rho >= {TREND_RHO} and a rise "
     f"D(sigma_max) - D(sigma_min>0) above {RISE_FLOOR_SHARE:.0%} of the shuffle-seed noise floor; "
     f"at least {SERIES_SHARE:.0%} of the series", claim4),
    (5, "The gaps D_3,1 vs D_3,2 and D_3,3 vs D_3,4 vanish as sigma grows, around sigma = 0.4.",
     f"for both pairs: mean |gap| at sigma >= {HIGH_SIGMA} < {GAP_VANISH_RATIO} x |gap| at sigma = 0", claim5),
    (6, "Exp-4: the gaps between D_4,1, D_4,2, D_4,3 narrow as sigma grows; D_4,3 stays further from D_4,1 "
        "than D_4,2 does.",
     f"mean |D_4,k - D_4,1| at sigma >= {HIGH_SIGMA} < {GAP_NARROW_RATIO} x its sigma = 0 value (k = 2, 3), and "
     f"|D_4,3 - D_4,1| > |D_4,2 - D_4,1| at >= {SERIES_SHARE:.0%} of the sigmas", claim6),
    (7, "Exp-5: smaller Z gives smaller D at high noise.",
     f"mean D at sigma >= {HIGH_SIGMA}: D_5,1 (Z=0.5) > D_5,2 (Z=0.25) > D_5,3 (Z=0.05)", claim7),
    (8, "MNIST accuracy stays above 80 % with every sample obfuscated (moderate sigma).",
     f"MNIST family only: A(W_1,1) >= {MNIST_ACCURACY} at every sigma in (0, {MODERATE_SIGMA}]", claim8),
    (9, "Fig. 2: D and A converge over the epochs.",
     f"each fig2 series: max - min over the last {CONVERGED_TAIL:.0%} of the epoch span (both ends included) <= "
     f"{CONVERGED_SPREAD} x its range over all epochs", claim9),
]


def evaluate_claims(tables: Tables, *, mnist_family: bool) -> list[ClaimResult]:
    """Judge the nine claims on one dataset's series tables."""
    results = []
    for number, claim, criterion, judge in CLAIMS:
        if number == 8 and not mnist_family:
            results.append(ClaimResult(number, claim, criterion, NOT_EVALUATED, {"why": "not an MNIST-family dataset"}))
            continue
        try:
            holds, evidence = judge(tables)
        except MissingSeries as exc:
            results.append(ClaimResult(number, claim, criterion, NOT_EVALUATED, {"missing": str(exc)}))
            continue
        results.append(ClaimResult(number, claim, criterion, REPRODUCED if holds else NOT_REPRODUCED, evidence))
    return results
