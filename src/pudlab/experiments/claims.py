"""The paper's nine claims, each a stated test on the repeats of the stored series.

Input: ``tables[experiment][series] = {"x": [...], "mean": [...], "values": [[...], ...]}`` for one
dataset (the layout of :func:`pudlab.experiments.series.series_table`; ``values`` holds the repeats
at each x), plus the noise floors (``floor[...]`` series: D between a reference and a training that
differs only in shuffle order, one value per repeat).

Every effect is a contrast of group means with a 95 % Welch interval (:mod:`pudlab.experiments.stats`)
and is decided against a margin: for distances, ``FLOOR_SPREAD_K`` standard deviations of the noise
floor (the pooled within-reference spread of the floor pairs); for accuracies, ``ACCURACY_MARGIN``.
Verdicts: *reproduced* (the interval clears the margin), *not reproduced* (the data contradict the
claim), *inconclusive* (the effect is within the noise, or fewer than 2 repeats), *not evaluated*
(a series it needs is missing). Thresholds are the module constants below, printed with each claim.
:func:`claims_by_dataset` judges them on every dataset of a store (what the report and the exports show).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from pudlab.experiments.series import store_tables
from pudlab.experiments.stats import (
    INCONCLUSIVE,
    NOT_EVALUATED,
    NOT_REPRODUCED,
    REPRODUCED,
    Effect,
    all_of,
    difference,
    effect,
    equivalence,
    share_of,
    spearman,
)
from pudlab.experiments.store import Store

__all__ = ["CLAIMS", "INCONCLUSIVE", "NOT_EVALUATED", "NOT_REPRODUCED", "REPRODUCED", "ClaimResult",
           "claim_summary", "claim_verdict", "claims_by_dataset", "evaluate_claims", "floor_margin", "sigma_star",
           "spearman"]

FLOOR_SPREAD_K = 2.0
"""A distance effect counts when it exceeds this many standard deviations of the noise floor."""
ACCURACY_MARGIN = 0.01
"""An accuracy effect counts when it exceeds this (one point of accuracy)."""
SERIES_SHARE = 2 / 3
"""Share of the series that must show the effect for a claim about several series (claims 1, 4)."""
PAPER_SIGMA_STAR = 0.4
"""The paper's 'around sigma = 0.4' where the gaps of Exp-3 become indistinguishable."""
MODERATE_SIGMA = 0.5
"""'Moderate sigma' for claim 8: 0 < sigma <= this."""
MNIST_ACCURACY = 0.8
"""Claim 8's accuracy bar."""
CONVERGED_TAIL = 0.25
"""Claim 9: the last share of the epoch span (ceil(share x span) epochs back from the last) must be flat."""
CONVERGED_SPREAD = 0.1
"""Claim 9: the change over the tail must stay within this share of the series' whole range."""

Tables = dict[str, dict[str, dict]]


@dataclass
class ClaimResult:
    """One claim's verdict: ``summary`` is one readable line (effects with 95 % intervals), ``evidence``
    the numbers behind it (JSON-ready)."""

    number: int
    claim: str
    criterion: str
    verdict: str
    summary: str = ""
    evidence: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"number": self.number, "claim": self.claim, "criterion": self.criterion, "verdict": self.verdict,
                "summary": self.summary, "evidence": self.evidence}

    @classmethod
    def from_dict(cls, data: dict) -> ClaimResult:
        return cls(int(data["number"]), data["claim"], data["criterion"], data["verdict"], data.get("summary", ""),
                   dict(data.get("evidence", {})))


class MissingSeries(Exception):
    """A series the test needs is not in the store."""


# ------------------------------------------------------------------------------------------------ access
class Curve:
    """One series: its x values and the repeats at each."""

    def __init__(self, tables: Tables, experiment: str, name: str) -> None:
        entry = tables.get(experiment, {}).get(name)
        if entry is None:
            raise MissingSeries(f"{experiment}/{name}")
        points: dict[float, list[float]] = {}
        values = entry.get("values") or [[m] for m in entry["mean"]]
        for x, repeats in zip(entry["x"], values, strict=True):
            clean = [float(v) for v in repeats if v is not None and math.isfinite(v)]
            if clean:
                points[float(x)] = clean
        if not points:
            raise MissingSeries(f"{experiment}/{name} has no values")
        self.name = name
        self.xs = sorted(points)
        self.at = points

    def mean(self, x: float) -> float:
        return float(np.mean(self.at[x]))

    @property
    def first(self) -> list[float]:
        return self.at[self.xs[0]]

    @property
    def last(self) -> list[float]:
        return self.at[self.xs[-1]]


def _same_grid(*curves: Curve) -> list[float]:
    grids = {tuple(c.xs) for c in curves}
    if len(grids) != 1:
        raise MissingSeries(f"{', '.join(c.name for c in curves)} cover different sigmas")
    return curves[0].xs


def floor_margin(tables: Tables, experiment: str) -> tuple[float, dict]:
    """``FLOOR_SPREAD_K`` x the pooled within-reference standard deviation of the experiment's floors."""
    floors = {name: [v for row in entry.get("values") or [entry["mean"]] for v in row if v is not None]
              for name, entry in tables.get(experiment, {}).items() if name.startswith("floor[")}
    if not floors:
        raise MissingSeries(f"{experiment}/floor")
    usable = [np.asarray(v, float) for v in floors.values() if len(v) >= 2]
    if usable:
        pooled = sum(float(((v - v.mean()) ** 2).sum()) for v in usable) / sum(len(v) - 1 for v in usable)
        std = math.sqrt(pooled)
    else:
        std = math.nan
    every = [v for values in floors.values() for v in values]
    info = {"mean": _r(float(np.mean(every))), "std": _r(std), "n": len(every), "k": FLOOR_SPREAD_K,
            "margin": _r(FLOOR_SPREAD_K * std)}
    return FLOOR_SPREAD_K * std, info


def _floor_values(tables: Tables, experiment: str, name: str) -> list[float]:
    entry = tables.get(experiment, {}).get(name)
    if entry is None:
        raise MissingSeries(f"{experiment}/{name}")
    return [v for row in entry.get("values") or [entry["mean"]] for v in row if v is not None]


def _r(value: float) -> float:
    return round(value, 4) if isinstance(value, float) and math.isfinite(value) else value


def _effects(items: list[Effect]) -> dict:
    return {item.name: item.to_dict() for item in items}


def _count(items: list[Effect] | list[str], verdict: str = REPRODUCED) -> int:
    return sum((item.verdict if isinstance(item, Effect) else item) == verdict for item in items)


# ------------------------------------------------------------------------------------------------ claims
def claim1(t: Tables) -> tuple[str, str, dict]:
    names = [("exp1", f"A(W_1,{k})") for k in (1, 2, 3)] + [("exp2", f"A(W_2,{k})") for k in (1, 2, 3)]
    drops = []
    for experiment, name in names:
        curve = Curve(t, experiment, name)
        drops.append(difference(f"drop {name}", curve.first, curve.last, ACCURACY_MARGIN))
    verdict = share_of([d.verdict for d in drops], SERIES_SHARE)
    summary = (f"{_count(drops)}/{len(drops)} series drop by more than {ACCURACY_MARGIN} from sigma_min to sigma_max: "
               + "; ".join(d.text() for d in drops))
    return verdict, summary, {"test": "Welch 95% CI of A(sigma_min) - A(sigma_max) per series",
                              "margin": ACCURACY_MARGIN, "effects": _effects(drops)}


def _mean_over_grid(first: Curve, second: Curve, name: str, margin: float) -> Effect:
    grid = _same_grid(first, second)
    groups = [first.at[x] for x in grid] + [second.at[x] for x in grid]
    coefficients = [1 / len(grid)] * len(grid) + [-1 / len(grid)] * len(grid)
    return effect(name, groups, coefficients, margin)


def claim2(t: Tables) -> tuple[str, str, dict]:
    curves = [Curve(t, "exp1", f"A(W_1,{k})") for k in (1, 2, 3)]
    items = [_mean_over_grid(curves[0], curves[1], "A(W_1,1) - A(W_1,2)", ACCURACY_MARGIN),
             _mean_over_grid(curves[1], curves[2], "A(W_1,2) - A(W_1,3)", ACCURACY_MARGIN)]
    summary = "mean accuracy over sigma: " + "; ".join(i.text() for i in items)
    return all_of([i.verdict for i in items]), summary, {
        "test": "Welch 95% CI of the difference of mean accuracy over the sigma grid", "margin": ACCURACY_MARGIN,
        "effects": _effects(items)}


def _drop_difference(small: Curve, large: Curve, name: str, margin: float) -> Effect:
    return effect(name, [small.first, small.last, large.first, large.last], [1, -1, -1, 1], margin)


def claim3(t: Tables) -> tuple[str, str, dict]:
    curves = [Curve(t, "exp2", f"A(W_2,{k})") for k in (1, 2, 3)]  # 0.8, 0.4, 0.08 |T_t|
    items = [_drop_difference(curves[1], curves[0], "drop A(W_2,2) - drop A(W_2,1)", ACCURACY_MARGIN),
             _drop_difference(curves[2], curves[1], "drop A(W_2,3) - drop A(W_2,2)", ACCURACY_MARGIN)]
    drops = [difference(f"drop {c.name}", c.first, c.last, math.nan) for c in curves]
    summary = "drops " + ", ".join(f"{d.name[5:]} {d.estimate:+.3g}" for d in drops) + "; " + "; ".join(
        i.text() for i in items)
    return all_of([i.verdict for i in items]), summary, {
        "test": "Welch 95% CI of the difference of drops A(sigma_min) - A(sigma_max), smaller set minus larger",
        "margin": ACCURACY_MARGIN, "effects": _effects(items), "drops": _effects(drops)}


CLAIM4_SERIES = [("exp3", "D_3,1", "floor[Wr31]"), ("exp3", "D_3,3", "floor[Wr32]"), ("exp4", "D_4,1", "floor[Wr41]"),
                 ("exp5", "D_5,1", "floor[Wr51]")]


def claim4(t: Tables) -> tuple[str, str, dict]:
    verdicts, items, floors, parts = [], [], {}, []
    for experiment, name, floor_name in CLAIM4_SERIES:
        curve = Curve(t, experiment, name)
        margin, floors[experiment] = floor_margin(t, experiment)
        rise = difference(f"rise {name}", curve.last, curve.first, margin)
        above = difference(f"{name}(sigma_max) - floor", curve.last, _floor_values(t, experiment, floor_name), margin)
        items += [rise, above]
        verdicts.append(all_of([rise.verdict, above.verdict]))
        rho = spearman([x for x in curve.xs for _ in curve.at[x]], [v for x in curve.xs for v in curve.at[x]])
        parts.append(f"{name} rise {rise.estimate:+.3g} [{rise.low:.3g}, {rise.high:.3g}] (margin {margin:.3g}, "
                     f"rho {rho:.2f})")
    verdict = share_of(verdicts, SERIES_SHARE)
    summary = f"{_count(verdicts)}/{len(verdicts)} series rise beyond the floor: " + "; ".join(parts)
    return verdict, summary, {"test": f"Welch 95% CI of D(sigma_max) - D(sigma_min) and of D(sigma_max) - floor, "
                                      f"margin {FLOOR_SPREAD_K} x floor std", "floors": floors,
                              "effects": _effects(items), "series verdicts": dict(zip(
                                  [s for _, s, _ in CLAIM4_SERIES], verdicts, strict=True))}


def _distinguishable(gap: Effect) -> bool:
    return gap.low > gap.margin or gap.high < -gap.margin


def sigma_star(first: Curve, second: Curve, margin: float) -> tuple[float | None, list[Effect]]:
    """The smallest sigma from which on the gap ``second - first`` is not distinguishable from the floor
    (its interval reaches into [-margin, margin]) at every larger sigma; None if it still is at the top."""
    grid = _same_grid(first, second)
    gaps = [difference(f"gap({x:g})", second.at[x], first.at[x], margin) for x in grid]
    star = None
    for x, gap in reversed(list(zip(grid, gaps, strict=True))):
        if _distinguishable(gap):
            break
        star = x
    return star, gaps


def _gap_tests(t: Tables, experiment: str, first_name: str, second_name: str, margin: float,
               *, vanish: bool) -> tuple[str, list[Effect], dict]:
    first, second = Curve(t, experiment, first_name), Curve(t, experiment, second_name)
    star, gaps = sigma_star(first, second, margin)
    g0, gmax = gaps[0], gaps[-1]
    if _distinguishable(g0):
        present = REPRODUCED
    elif -margin <= g0.low and g0.high <= margin:
        present = NOT_REPRODUCED
    else:
        present = INCONCLUSIVE
    o = 1.0 if g0.estimate >= 0 else -1.0
    shrink = effect(f"{second_name} vs {first_name}: gap(sigma_min) - gap(sigma_max)",
                    [second.first, first.first, second.last, first.last], [o, -o, -o, o], margin)
    parts = [present, shrink.verdict]
    if vanish:
        parts.append(REPRODUCED if star is not None else NOT_REPRODUCED)
    detail = {"gap at sigma_min": g0.to_dict(), "gap at sigma_max": gmax.to_dict(), "shrink": shrink.to_dict(),
              "gap present at sigma_min": present, "sigma*": star,
              "gaps": {f"{x:g}": g.to_dict() for x, g in zip(first.xs, gaps, strict=True)}}
    return all_of(parts), [g0, shrink], detail


def claim5(t: Tables) -> tuple[str, str, dict]:
    margin, floor = floor_margin(t, "exp3")
    verdicts, details, parts = [], {}, []
    for first, second in (("D_3,1", "D_3,2"), ("D_3,3", "D_3,4")):
        verdict, (g0, shrink), detail = _gap_tests(t, "exp3", first, second, margin, vanish=True)
        verdicts.append(verdict)
        details[f"{first} vs {second}"] = detail
        star = detail["sigma*"]
        parts.append(f"{second}-{first}: gap(0) {g0.estimate:+.3g} [{g0.low:.3g}, {g0.high:.3g}], shrink "
                     f"{shrink.estimate:+.3g} [{shrink.low:.3g}, {shrink.high:.3g}], sigma* "
                     f"{'> grid' if star is None else f'{star:g}'}")
    summary = f"margin {margin:.3g} (floor std x {FLOOR_SPREAD_K}); " + "; ".join(parts) + \
        f"; paper: sigma* around {PAPER_SIGMA_STAR}"
    return all_of(verdicts), summary, {"test": "per sigma, Welch 95% CI of the gap; gap at sigma_min beyond the "
                                               "margin, gap shrinks by more than the margin, and sigma* exists",
                                       "floor": floor, "pairs": details, "paper sigma*": PAPER_SIGMA_STAR}


def claim6(t: Tables) -> tuple[str, str, dict]:
    margin, floor = floor_margin(t, "exp4")
    verdicts, details, parts = [], {}, []
    for other in ("D_4,2", "D_4,3"):
        verdict, (g0, shrink), detail = _gap_tests(t, "exp4", "D_4,1", other, margin, vanish=False)
        verdicts.append(verdict)
        details[f"D_4,1 vs {other}"] = detail
        star = detail["sigma*"]
        parts.append(f"{other}-D_4,1 shrink {shrink.estimate:+.3g} [{shrink.low:.3g}, {shrink.high:.3g}], sigma* "
                     f"{'> grid' if star is None else f'{star:g}'}")
    further = _mean_over_grid(Curve(t, "exp4", "D_4,3"), Curve(t, "exp4", "D_4,2"), "mean D_4,3 - D_4,2", margin)
    verdicts.append(further.verdict)
    summary = f"margin {margin:.3g}; " + "; ".join(parts) + f"; {further.text()}"
    return all_of(verdicts), summary, {"test": "Welch 95% CIs: each gap to D_4,1 present at sigma_min and shrinking "
                                               "by more than the margin; D_4,3 above D_4,2 on average over sigma",
                                       "floor": floor, "pairs": details, "further": further.to_dict()}


def claim7(t: Tables) -> tuple[str, str, dict]:
    margin, floor = floor_margin(t, "exp5")
    curves = [Curve(t, "exp5", f"D_5,{k}") for k in (1, 2, 3)]  # Z = 0.5, 0.25, 0.05
    items = []
    for larger, smaller in ((curves[0], curves[1]), (curves[1], curves[2])):
        items.append(difference(f"{larger.name} - {smaller.name} at sigma_max", larger.last, smaller.last, margin))
        items.append(effect(f"rise {larger.name} - rise {smaller.name}",
                            [larger.last, larger.first, smaller.last, smaller.first], [1, -1, -1, 1], margin))
    summary = f"margin {margin:.3g}; " + "; ".join(i.text() for i in items)
    return all_of([i.verdict for i in items]), summary, {
        "test": "Welch 95% CIs: at sigma_max the larger set's D exceeds the smaller's, and obfuscation raises it "
                "more (rise = D(sigma_max) - D(sigma_min))", "floor": floor, "effects": _effects(items)}


def claim8(t: Tables) -> tuple[str, str, dict]:
    curve = Curve(t, "exp1", "A(W_1,1)")
    moderate = [x for x in curve.xs if 0 < x <= MODERATE_SIGMA]
    if not moderate:
        raise MissingSeries(f"exp1/A(W_1,1) has no sigma in (0, {MODERATE_SIGMA}]")
    items = [effect(f"A(W_1,1)({x:g}) - {MNIST_ACCURACY}", [curve.at[x]], [1.0], 0.0, offset=-MNIST_ACCURACY)
             for x in moderate]
    summary = "; ".join(i.text() for i in items)
    return all_of([i.verdict for i in items]), summary, {
        "test": f"95% t interval of A(W_1,1) - {MNIST_ACCURACY} at each sigma in (0, {MODERATE_SIGMA}]",
        "effects": _effects(items)}


def claim9(t: Tables) -> tuple[str, str, dict]:
    items = []
    for name in [f"D_{k}" for k in (1, 2, 3, 4)] + [f"A(W_{k})" for k in (1, 2, 3, 4)]:
        curve = Curve(t, "fig2", name)
        if len(curve.xs) < 4:
            raise MissingSeries(f"fig2/{name} has fewer than 4 epochs")
        window = math.ceil(CONVERGED_TAIL * (curve.xs[-1] - curve.xs[0]))
        start = min(x for x in curve.xs if x >= curve.xs[-1] - window)
        means = [curve.mean(x) for x in curve.xs]
        margin = CONVERGED_SPREAD * (max(means) - min(means))
        items.append(equivalence(f"{name} change over epochs {start:g}-{curve.xs[-1]:g}",
                                 [curve.last, curve.at[start]], [1, -1], margin))
    summary = f"{_count(items)}/{len(items)} flat within {CONVERGED_SPREAD:.0%} of their range: " + "; ".join(
        i.text() for i in items)
    return all_of([i.verdict for i in items]), summary, {
        "test": f"Welch 95% CI of the change over the last {CONVERGED_TAIL:.0%} of the epochs inside "
                f"+-{CONVERGED_SPREAD} x the series' range", "effects": _effects(items)}


Judge = Callable[[Tables], tuple[str, str, dict]]
_M = f"{FLOOR_SPREAD_K:g} x the noise floor's std"
CLAIMS: list[tuple[int, str, str, Judge]] = [
    (1, "Accuracy falls as sigma rises (Fig. 3).",
     f"each of the 6 accuracy series of exp1/exp2: A(sigma_min) - A(sigma_max) > {ACCURACY_MARGIN} (Welch 95% CI "
     f"above the margin); at least {SERIES_SHARE:.0%} of the series", claim1),
    (2, "Fewer labels (smaller X) give lower accuracy on the full-label test set (Fig. 3a,b).",
     f"mean accuracy over the sigma grid: A(W_1,1) - A(W_1,2) and A(W_1,2) - A(W_1,3) each > {ACCURACY_MARGIN} "
     "(Welch 95% CI)", claim2),
    (3, "More samples per covered label resist noise better (Fig. 3c,d).",
     f"drop A(sigma_min) - A(sigma_max): drop(0.4|T_t|) - drop(0.8|T_t|) and drop(0.08|T_t|) - drop(0.4|T_t|) "
     f"each > {ACCURACY_MARGIN} (Welch 95% CI)", claim3),
    (4, "D(W_r, W_o) rises with sigma (Figs. 4, 5).",
     f"each of D_3,1, D_3,3, D_4,1, D_5,1: D(sigma_max) - D(sigma_min) and D(sigma_max) - noise floor both > {_M} "
     f"(Welch 95% CI); at least {SERIES_SHARE:.0%} of the series", claim4),
    (5, "The gaps D_3,1 vs D_3,2 and D_3,3 vs D_3,4 vanish as sigma grows, around sigma = 0.4.",
     f"for both pairs (Welch 95% CIs, margin {_M}): the gap at sigma_min exceeds the margin, it shrinks by more "
     "than the margin by sigma_max, and sigma* (the smallest sigma from which on the gap's CI reaches into "
     "+-margin) exists; sigma* is reported next to the paper's 0.4", claim5),
    (6, "Exp-4: the gaps between D_4,1, D_4,2, D_4,3 narrow as sigma grows; D_4,3 stays further from D_4,1 "
        "than D_4,2 does.",
     f"Welch 95% CIs, margin {_M}: for k = 2, 3 the gap D_4,k - D_4,1 exceeds the margin at sigma_min and shrinks "
     "by more than the margin by sigma_max; mean over sigma of D_4,3 - D_4,2 exceeds the margin", claim6),
    (7, "Exp-5: smaller Z gives smaller D at high noise.",
     f"Welch 95% CIs, margin {_M}: D_5,1 > D_5,2 > D_5,3 at sigma_max, and each larger set's rise "
     "D(sigma_max) - D(sigma_min) exceeds the next smaller set's", claim7),
    (8, "MNIST accuracy stays above 80 % with every sample obfuscated (moderate sigma).",
     f"MNIST family only: the 95% t interval of A(W_1,1) lies above {MNIST_ACCURACY} at every sigma in "
     f"(0, {MODERATE_SIGMA}]", claim8),
    (9, "Fig. 2: D and A converge over the epochs.",
     f"each fig2 series: the Welch 95% CI of its change over the last {CONVERGED_TAIL:.0%} of the epochs lies "
     f"within +-{CONVERGED_SPREAD} x its range over all epochs", claim9),
]


def evaluate_claims(tables: Tables, *, mnist_family: bool) -> list[ClaimResult]:
    """Judge the nine claims on one dataset's series tables."""
    results = []
    for number, claim, criterion, judge in CLAIMS:
        if number == 8 and not mnist_family:
            results.append(ClaimResult(number, claim, criterion, NOT_EVALUATED, "not an MNIST-family dataset",
                                       {"why": "not an MNIST-family dataset"}))
            continue
        try:
            verdict, summary, evidence = judge(tables)
        except MissingSeries as exc:
            results.append(ClaimResult(number, claim, criterion, NOT_EVALUATED, f"missing {exc}",
                                       {"missing": str(exc)}))
            continue
        results.append(ClaimResult(number, claim, criterion, verdict, summary, evidence))
    return results


def claims_by_dataset(store: Store) -> dict[str, list[ClaimResult]]:
    """The nine claims judged on the series of every dataset in ``store``."""
    return {dataset: evaluate_claims(tables, mnist_family=mnist_family)
            for dataset, (tables, mnist_family) in store_tables(store).items()}


def claim_verdict(result: ClaimResult) -> str:
    """A claim's verdict."""
    return result.verdict


def claim_summary(result: ClaimResult) -> str:
    """The claim's one readable line of evidence; a compact rendering of its evidence when it has none."""
    if result.summary:
        return result.summary
    return "; ".join(f"{key}: {_compact(value)}" for key, value in result.evidence.items())


def _compact(value: object) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.3g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} {_compact(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_compact(v) for v in value) + "]"
    return str(value)
