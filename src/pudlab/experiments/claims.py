"""The paper's nine claims, each a stated test on the paired repeats of the stored series.

Input: ``tables[experiment][series] = {"x": [...], "mean": [...], "values": [[...], ...]}`` for one
dataset (the layout of :func:`pudlab.experiments.series.series_table`; ``values`` holds the repeats
at each x aligned by repeat index), the noise floors (``floor[...]`` series: D between a reference and
a training that differs only in shuffle order, one value per floor pair) and the dataset's
:class:`~pudlab.experiments.series.RunContext`.

Every effect is computed within each repeat and tested with a one-sample t on the per-repeat
contrasts (:mod:`pudlab.experiments.stats`); it is decided against a margin: for distances
``FLOOR_SPREAD_K`` standard deviations of the noise floor (pooled within references, its own
uncertainty carried into the decision), for accuracies ``ACCURACY_MARGIN``. A claim's verdict comes
from its primary effects (:func:`pudlab.experiments.stats.combine`); secondary effects are reported
and do not decide. Verdicts: *reproduced*, *not reproduced*, *inconclusive*, *not testable here* (this
run cannot decide the claim; the reason is given: :mod:`pudlab.experiments.testability`) and *not
evaluated* (a series it needs is missing). :func:`claims_by_dataset` judges them on every dataset of
a store (what the report and the exports show).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from pudlab.experiments.series import RunContext, store_tables
from pudlab.experiments.stats import (
    EQUIVALENT,
    INCONCLUSIVE,
    NOT_EVALUATED,
    NOT_REPRODUCED,
    NOT_TESTABLE,
    REPRODUCED,
    Effect,
    Margin,
    combine,
    judge_effect,
    paired,
    spearman,
)
from pudlab.experiments.store import Store
from pudlab.experiments.testability import (
    CONVERGED_SPREAD,
    CONVERGED_TAIL,
    Curve,
    MissingSeries,
    NotTestable,
    Run,
    Tables,
    near_chance,
    power_summary,
    schedule_too_short,
    sigma_star,
)

__all__ = ["CLAIMS", "INCONCLUSIVE", "NOT_EVALUATED", "NOT_REPRODUCED", "NOT_TESTABLE", "REPRODUCED",
           "ClaimResult", "claim_summary", "claim_verdict", "claims_by_dataset", "evaluate_claims", "run_warning",
           "spearman"]

ACCURACY_MARGIN = 0.01
"""An accuracy effect counts when it exceeds this (one point of accuracy): stated before any run."""
PAPER_SIGMA_STAR = 0.4
"""The paper's 'around sigma = 0.4' where the gaps of Exp-3 become indistinguishable."""
AROUND = 0.1
"""'Around 0.4' means within +-this: the gaps must have vanished at every grid sigma >= 0.5."""
MODERATE_SIGMA = 0.5
"""'Moderate sigma' for claim 8: 0 < sigma <= this."""
MNIST_ACCURACY = 0.8
"""Claim 8's accuracy bar."""


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


def _effects(items: list[Effect]) -> dict:
    return {item.name: item.to_dict() for item in items}


def _decide(primary: list[Effect], secondary: list[Effect], test: str, margin: Margin,
            text: str) -> tuple[str, str, dict]:
    power = power_summary(primary)
    evidence = {"test": test, "margin": margin.to_dict(), "primary": _effects(primary),
                "secondary": _effects(secondary), "power": power}
    return combine(primary), text + power["text"], evidence


def _acc(run: Run, name: str, points: list[np.ndarray], coefficients: list[float], *,
         role: str = "primary") -> Effect:
    return judge_effect(name, paired(points, coefficients), Margin.fixed(ACCURACY_MARGIN),
                        rounding=run.rounding(coefficients), role=role)


# ------------------------------------------------------------------------------------------------ claims
def claim1(run: Run) -> tuple[str, str, dict]:
    curves = [run.curve("exp1", f"A(W_1,{k})") for k in (1, 2, 3)] + [run.curve("exp2", f"A(W_2,{k})") for k in (1, 2, 3)]
    run.need_grid(*curves)
    share = 1 / len(curves)
    points = [p for c in curves for p in (c.first, c.last)]
    primary = _acc(run, "mean drop A(sigma_min) - A(sigma_max)", points, [share, -share] * len(curves))
    secondary = [_acc(run, f"drop {c.name}", [c.first, c.last], [1, -1], role="secondary") for c in curves]
    text = (f"{primary.text()} over the {len(curves)} series (margin {ACCURACY_MARGIN}); per series: "
            + ", ".join(f"{e.name[5:]} {e.estimate:+.3g}" for e in secondary))
    return _decide([primary], secondary, "per repeat, the mean over the six accuracy series of "
                   "A(sigma_min) - A(sigma_max); one-sample t", Margin.fixed(ACCURACY_MARGIN), text)


def _grid_mean(run: Run, first: Curve, second: Curve, name: str, margin: Margin | None = None,
               role: str = "primary") -> Effect:
    grid = run.same_grid(first, second)
    points = [first.at[x] for x in grid] + [second.at[x] for x in grid]
    coefficients = [1 / len(grid)] * len(grid) + [-1 / len(grid)] * len(grid)
    if margin is None:
        return _acc(run, name, points, coefficients, role=role)
    return judge_effect(name, paired(points, coefficients), margin, role=role)


def claim2(run: Run) -> tuple[str, str, dict]:
    curves = [run.curve("exp1", f"A(W_1,{k})") for k in (1, 2, 3)]
    run.need_grid(*curves)
    primary = [_grid_mean(run, curves[0], curves[1], "A(W_1,1) - A(W_1,2)"),
               _grid_mean(run, curves[1], curves[2], "A(W_1,2) - A(W_1,3)")]
    text = "mean accuracy over sigma: " + "; ".join(i.text() for i in primary) + f" (margin {ACCURACY_MARGIN})"
    return _decide(primary, [], "per repeat, the difference of mean accuracy over the sigma grid; "
                   "one-sample t; both must exceed the margin", Margin.fixed(ACCURACY_MARGIN), text)


def claim3(run: Run) -> tuple[str, str, dict]:
    curves = [run.curve("exp2", f"A(W_2,{k})") for k in (1, 2, 3)]  # 0.8, 0.4, 0.08 |T_t|
    run.need_grid(*curves)
    primary = [_acc(run, f"drop {small.name} - drop {large.name}", [small.first, small.last, large.first, large.last],
                    [1, -1, -1, 1]) for small, large in ((curves[1], curves[0]), (curves[2], curves[1]))]
    drops = [_acc(run, f"drop {c.name}", [c.first, c.last], [1, -1], role="secondary") for c in curves]
    text = ("drops " + ", ".join(f"{d.name[5:]} {d.estimate:+.3g}" for d in drops) + "; "
            + "; ".join(i.text() for i in primary) + f" (margin {ACCURACY_MARGIN})")
    return _decide(primary, drops, "per repeat, the difference of drops A(sigma_min) - A(sigma_max), smaller "
                   "set minus larger; one-sample t; both must exceed the margin", Margin.fixed(ACCURACY_MARGIN), text)


CLAIM4_SERIES = (("exp3", "D_3,1"), ("exp3", "D_3,3"), ("exp4", "D_4,1"), ("exp5", "D_5,1"))


def claim4(run: Run) -> tuple[str, str, dict]:
    curves: list[Curve] = []
    experiments: list[str] = []
    shared: list[str] = []
    for experiment, name in CLAIM4_SERIES:
        curve = run.curve(experiment, name)
        if any(curve.same_values(other) for other in curves):
            shared.append(name)  # the same trainings under another name (e.g. D_4,1 = D_3,3)
            continue
        curves.append(curve)
        experiments.append(experiment)
    run.need_grid(*curves)
    margin = run.margin(*experiments)
    share = 1 / len(curves)
    points = [p for c in curves for p in (c.last, c.first)]
    primary = judge_effect("mean rise D(sigma_max) - D(sigma_min)", paired(points, [share, -share] * len(curves)),
                           margin)
    secondary = [judge_effect(f"rise {c.name}", paired([c.last, c.first], [1, -1]), margin, role="secondary")
                 for c in curves]
    parts = [f"{e.name[5:]} {e.estimate:+.3g} (rho {spearman(*c.pairs()):.2f})" for e, c in zip(secondary, curves,
                                                                                               strict=True)]
    text = (f"{primary.text()} over {', '.join(c.name for c in curves)} (margin {margin.value:.3g}); "
            f"per series: {', '.join(parts)}" + (f"; {', '.join(shared)} not counted again (same trainings)"
                                                  if shared else ""))
    return _decide([primary], secondary, f"per repeat, the mean over the distinct series of D(sigma_max) - "
                   f"D(sigma_min); one-sample t against {run.floor_k:g} x the floor std", margin, text)


def claim5(run: Run) -> tuple[str, str, dict]:
    margin = run.margin("exp3")
    vanish_from = PAPER_SIGMA_STAR + AROUND
    primary, details, parts = [], {}, []
    for first_name, second_name in (("D_3,1", "D_3,2"), ("D_3,3", "D_3,4")):
        first, second = run.curve("exp3", first_name), run.curve("exp3", second_name)
        grid = run.same_grid(first, second)
        late = [x for x in grid if x >= vanish_from - 1e-9]
        if not late:
            raise NotTestable(f"the sigma grid ends at {grid[-1]:g}: the paper's vanishing around "
                              f"{PAPER_SIGMA_STAR} needs a sigma >= {vanish_from:g}",
                              f"add sigmas above {vanish_from:g} (e.g. --sigmas ...,{vanish_from:g},1)")
        label = f"{second_name} - {first_name}"
        present = judge_effect(f"{label} at sigma_min", paired([second.first, first.first], [1, -1]), margin)
        gone = [judge_effect(f"{label} at {x:g}", paired([second.at[x], first.at[x]], [1, -1]), margin,
                             kind=EQUIVALENT) for x in late]
        primary += [present, *gone]
        star = sigma_star(run, first, second, margin, bootstrap=present.verdict == REPRODUCED,
                          paper=PAPER_SIGMA_STAR, around=AROUND)
        details[label] = {"gap at sigma_min": present.to_dict(), "vanished": _effects(gone), **star.to_dict()}
        parts.append(f"{label}: gap(sigma_min) {present.estimate:+.3g} [{present.low:.3g}, {present.high:.3g}], "
                     f"at sigma >= {vanish_from:g}: " + ", ".join(f"{g.estimate:+.3g} [{g.low:.3g}, {g.high:.3g}]"
                                                                  for g in gone) + f"; {star.text(present)}")
    test = (f"per pair: the gap (second minus first) exceeds the margin at sigma_min, and its 90% interval lies "
            f"inside +-margin (TOST) at every sigma >= {vanish_from:g}; sigma* with a bootstrap interval against "
            f"the paper's {PAPER_SIGMA_STAR}")
    verdict, text, evidence = _decide(primary, [], test, margin, f"margin {margin.value:.3g}; " + "; ".join(parts))
    evidence["pairs"] = details
    evidence["paper sigma*"] = PAPER_SIGMA_STAR
    return verdict, text, evidence


def claim6(run: Run) -> tuple[str, str, dict]:
    margin = run.margin("exp4")
    base, near, far = (run.curve("exp4", f"D_4,{k}") for k in (1, 2, 3))
    run.same_grid(base, near, far)
    run.need_grid(base)
    present = judge_effect("mean gap D_4,k - D_4,1 at sigma_min", paired([near.first, far.first, base.first],
                                                                         [0.5, 0.5, -1]), margin)
    shrink = judge_effect("mean shrink of D_4,k - D_4,1 from sigma_min to sigma_max",
                          paired([near.first, far.first, base.first, near.last, far.last, base.last],
                                 [0.5, 0.5, -1, -0.5, -0.5, 1]), margin)
    further = _grid_mean(run, far, near, "mean over sigma of D_4,3 - D_4,2", margin)
    secondary = [judge_effect(f"shrink of {c.name} - D_4,1", paired([c.first, base.first, c.last, base.last],
                                                                    [1, -1, -1, 1]), margin, role="secondary")
                 for c in (near, far)]
    primary = [present, shrink, further]
    text = f"margin {margin.value:.3g}; " + "; ".join(e.text() for e in primary)
    return _decide(primary, secondary, "per repeat: the gaps of D_4,2 and D_4,3 to D_4,1 (mean over k) exceed the "
                   "margin at sigma_min and shrink by more than it by sigma_max; the mean over sigma of "
                   "D_4,3 - D_4,2 exceeds it; one-sample t each", margin, text)


def claim7(run: Run) -> tuple[str, str, dict]:
    margin = run.margin("exp5")
    curves = [run.curve("exp5", f"D_5,{k}") for k in (1, 2, 3)]  # Z = 0.5, 0.25, 0.05
    run.need_grid(*curves)
    primary, secondary = [], []
    for larger, smaller in ((curves[0], curves[1]), (curves[1], curves[2])):
        primary.append(judge_effect(f"{larger.name} - {smaller.name} at sigma_max",
                                    paired([larger.last, smaller.last], [1, -1]), margin))
        secondary.append(judge_effect(f"rise {larger.name} - rise {smaller.name}", paired(
            [larger.last, larger.first, smaller.last, smaller.first], [1, -1, -1, 1]), margin, role="secondary"))
    text = f"margin {margin.value:.3g}; " + "; ".join(i.text() for i in primary)
    return _decide(primary, secondary, "per repeat, at sigma_max: D_5,1 - D_5,2 and D_5,2 - D_5,3 each exceed the "
                   "margin; one-sample t (the differences of rises are secondary)", margin, text)


def claim8(run: Run) -> tuple[str, str, dict]:
    if not run.context.is_mnist:
        raise NotTestable(f"claim 8 is about MNIST; this source is {run.context.source or run.context.dataset}",
                          "run on MNIST (--datasets mnist or mnist-5k)", run_level=False)
    curve = run.curve("exp1", "A(W_1,1)")
    moderate = [x for x in curve.xs if 0 < x <= MODERATE_SIGMA]
    if not moderate:
        raise MissingSeries(f"exp1/A(W_1,1) has no sigma in (0, {MODERATE_SIGMA}]")
    items = []
    for x in moderate:
        accuracy = float(np.nanmean(curve.at[x]))
        sampling = accuracy * (1 - accuracy) / run.context.eval_size if run.context.eval_size else 0.0
        items.append(judge_effect(f"A(W_1,1)({x:g}) - {MNIST_ACCURACY}", paired([curve.at[x]], [1.0]), Margin.fixed(0.0),
                                  offset=-MNIST_ACCURACY, rounding=run.rounding([1.0]), extra=sampling))
    text = "; ".join(i.text() for i in items)
    return _decide(items, [], f"at each sigma in (0, {MODERATE_SIGMA}]: the 95% t interval of A(W_1,1) - "
                   f"{MNIST_ACCURACY} (repeats, plus the test set's binomial sampling) lies above 0",
                   Margin.fixed(0.0), text)


def claim9(run: Run) -> tuple[str, str, dict]:
    curves = [run.curve("fig2", name) for name in [f"D_{k}" for k in (1, 2, 3, 4)] + [f"A(W_{k})" for k in (1, 2, 3, 4)]]
    schedule_too_short(run, curves)
    items = []
    for curve in curves:
        window = math.ceil(CONVERGED_TAIL * (curve.xs[-1] - curve.xs[0]))
        start = min(x for x in curve.xs if x >= curve.xs[-1] - window)
        means = [curve.mean(x) for x in curve.xs]
        margin = Margin.fixed(CONVERGED_SPREAD * (max(means) - min(means)))
        rounding = run.rounding([1, -1]) if curve.name.startswith("A(") else 0.0
        items.append(judge_effect(f"{curve.name} change over epochs {start:g}-{curve.xs[-1]:g}",
                                  paired([curve.last, curve.at[start]], [1, -1]), margin, kind=EQUIVALENT,
                                  rounding=rounding))
    text = (f"{sum(i.verdict == REPRODUCED for i in items)}/{len(items)} flat within {CONVERGED_SPREAD:.0%} of "
            "their range: " + "; ".join(i.text() for i in items))
    return _decide(items, [], f"per repeat, the change over the last {CONVERGED_TAIL:.0%} of the epochs; its 90% "
                   f"interval inside +-{CONVERGED_SPREAD} x the series' range (TOST), every series",
                   Margin.fixed(math.nan), text)


Judge = Callable[[Run], tuple[str, str, dict]]
_M = "2 x the noise floor's std (its uncertainty carried)"
CLAIMS: list[tuple[int, str, str, Judge]] = [
    (1, "Accuracy falls as sigma rises (Fig. 3).",
     f"per repeat, the mean over the 6 accuracy series of exp1/exp2 of A(sigma_min) - A(sigma_max) > "
     f"{ACCURACY_MARGIN} (one-sample t, 95%)", claim1),
    (2, "Fewer labels (smaller X) give lower accuracy on the full-label test set (Fig. 3a,b).",
     f"per repeat, mean accuracy over the sigma grid: A(W_1,1) - A(W_1,2) and A(W_1,2) - A(W_1,3) each > "
     f"{ACCURACY_MARGIN}", claim2),
    (3, "More samples per covered label resist noise better (Fig. 3c,d).",
     f"per repeat, drop A(sigma_min) - A(sigma_max): drop(0.4|T_t|) - drop(0.8|T_t|) and drop(0.08|T_t|) - "
     f"drop(0.4|T_t|) each > {ACCURACY_MARGIN}", claim3),
    (4, "D(W_r, W_o) rises with sigma (Figs. 4, 5).",
     f"per repeat, the mean over the distinct series D_3,1, D_3,3 (= D_4,1), D_5,1 of D(sigma_max) - D(sigma_min) > "
     f"{_M}", claim4),
    (5, "The gaps D_3,1 vs D_3,2 and D_3,3 vs D_3,4 vanish as sigma grows, around sigma = 0.4.",
     f"per pair, margin {_M}: the gap D_3,2 - D_3,1 (D_3,4 - D_3,3) exceeds the margin at sigma_min and is "
     f"equivalent to 0 (90% interval inside +-margin) at every sigma >= {PAPER_SIGMA_STAR + AROUND:g}; sigma* "
     f"and its bootstrap interval are reported next to the paper's {PAPER_SIGMA_STAR}", claim5),
    (6, "Exp-4: the gaps between D_4,1, D_4,2, D_4,3 narrow as sigma grows; D_4,3 stays further from D_4,1 "
        "than D_4,2 does.",
     f"per repeat, margin {_M}: the mean gap D_4,k - D_4,1 (k = 2, 3) exceeds the margin at sigma_min and shrinks "
     "by more than it by sigma_max; the mean over sigma of D_4,3 - D_4,2 exceeds it", claim6),
    (7, "Exp-5: smaller Z gives smaller D at high noise.",
     f"per repeat, margin {_M}: D_5,1 - D_5,2 and D_5,2 - D_5,3 at sigma_max each exceed the margin", claim7),
    (8, "MNIST accuracy stays above 80 % with every sample obfuscated (moderate sigma).",
     f"MNIST only (by the source's identity): the 95% t interval of A(W_1,1) lies above {MNIST_ACCURACY} at every "
     f"sigma in (0, {MODERATE_SIGMA}]", claim8),
    (9, "Fig. 2: D and A converge over the epochs.",
     f"each fig2 series: the 90% interval of its per-repeat change over the last {CONVERGED_TAIL:.0%} of the "
     f"epochs lies within +-{CONVERGED_SPREAD} x its range (TOST); not testable when the curves show the "
     "schedule is too short to settle", claim9),
]


def evaluate_claims(tables: Tables, context: RunContext | None = None, *, bootstrap: int = 200) -> list[ClaimResult]:
    """Judge the nine claims on one dataset's series tables (``bootstrap``: resamples of sigma*'s interval)."""
    run = Run(tables, context or RunContext(), bootstrap)
    chance = near_chance(run)
    results = []
    for number, claim, criterion, judge in CLAIMS:
        try:
            if chance is not None:
                raise chance
            verdict, summary, evidence = judge(run)
        except MissingSeries as exc:
            results.append(ClaimResult(number, claim, criterion, NOT_EVALUATED, f"missing {exc}", {"missing": str(exc)}))
            continue
        except NotTestable as exc:
            results.append(ClaimResult(number, claim, criterion, NOT_TESTABLE, exc.summary(), exc.to_dict()))
            continue
        results.append(ClaimResult(number, claim, criterion, verdict, summary, evidence))
    return results


def claims_by_dataset(store: Store) -> dict[str, list[ClaimResult]]:
    """The nine claims judged on the series of every dataset in ``store``."""
    return {dataset: evaluate_claims(tables, context) for dataset, (tables, context) in store_tables(store).items()}


def _numbers(numbers: list[int]) -> str:
    runs: list[list[int]] = []
    for number in sorted(numbers):
        if runs and number == runs[-1][-1] + 1:
            runs[-1].append(number)
        else:
            runs.append([number])
    text = ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 2 else ", ".join(map(str, r)) for r in runs)
    return ("claim " if len(numbers) == 1 else "claims ") + text


def run_warning(claims: dict[str, list[ClaimResult]]) -> str | None:
    """One line naming every cause that left claims *not testable here* and its fix (None when none did)."""
    parts = []
    for dataset, results in claims.items():
        causes: dict[tuple[str, str], list[int]] = {}
        for result in results:
            if result.verdict == NOT_TESTABLE:
                key = (str(result.evidence.get("not testable", "")), str(result.evidence.get("fix", "")))
                causes.setdefault(key, []).append(result.number)
        parts += [f"{_numbers(numbers)} not testable here on {dataset}: {reason} (fix: {fix})"
                  for (reason, fix), numbers in causes.items()]
    return "WARNING: " + "; ".join(parts) if parts else None


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
