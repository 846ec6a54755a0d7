"""What a run can and cannot test, and the claims' access to its series.

:class:`Run` wraps one dataset's series tables and :class:`~pudlab.experiments.series.RunContext`:
its curves (repeats aligned by index), the accuracy resolution and the noise-floor margin. A claim this
run cannot decide raises :class:`NotTestable` with the reason and the fix; the verdict is then *not
testable here*:

* every claim when the models sit near chance accuracy (:func:`near_chance`);
* every distance claim when the noise floor is degenerate: its mean or std is 0 or below the metric's
  resolution (``FLOOR_RESOLUTION`` of the experiment's distances), e.g. when the references train on
  one batch per epoch so the batch order changes only float rounding (:meth:`Run.margin`);
* claim 9 (Fig. 2 converges) when the curves show the schedule is too short to settle
  (:func:`schedule_too_short`: a saturating curve ``a + b r^epoch`` fitted to each mean curve says how
  many epochs would);
* claim 8 on any source that is not MNIST (by its identity: ``pudlab.experiments.claims``).

A series that is missing, NaN floor values and a one-sigma grid raise :class:`MissingSeries`
(*not evaluated*). :func:`sigma_star` is where the Exp-3 gaps vanish, with a bootstrap interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pudlab.experiments.series import RunContext
from pudlab.experiments.stats import (
    EQUIVALENT,
    EXCEEDS,
    REPRODUCED,
    Effect,
    Margin,
    judge_effect,
    minimum_detectable,
    paired,
    pooled_std,
    repeats_needed,
)
from pudlab.seeding import derive_rng

FLOOR_SPREAD_K = 2.0
"""A distance effect counts when it exceeds this many standard deviations of the noise floor."""
FLOOR_RESOLUTION = 1e-4
"""A floor whose mean or std is at most this share of the experiment's largest distance is degenerate:
float32 weights resolve D only to about 1e-7 of the weights' norm, so such a floor is rounding (e.g.
one batch per epoch, where the batch order changes only the order of a sum), not training noise."""
NEAR_CHANCE = 0.25
"""Models sit near chance when the best clean accuracy is below chance + this share of (1 - chance)."""
CONVERGED_TAIL = 0.25
"""Claim 9: the last share of the epoch span (ceil(share x span) epochs back from the last) must be flat."""
CONVERGED_SPREAD = 0.1
"""Claim 9: the change over the tail must stay within this share of the series' whole range."""
MIN_EPOCHS = 4
"""Claim 9 needs at least this many epochs."""
SLOWEST_RATE = 0.98
"""Claim 9: a fitted per-epoch decay ratio at or above this shows no slowing (no epoch count is projected)."""
BOOTSTRAP_NODES = 200
"""Quantile nodes of the margin's pivot inside sigma*'s bootstrap."""

Tables = dict[str, dict[str, dict]]


class MissingSeries(Exception):
    """A series the test needs is not in the store (or cannot be used): *not evaluated*."""


class NotTestable(Exception):
    """This run cannot decide the claim: ``reason`` says why, ``fix`` what would."""

    def __init__(self, reason: str, fix: str, *, run_level: bool = True, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.fix = fix
        self.run_level = run_level
        self.detail = detail
        """The numbers behind the reason (shown with the claim, left out of the run's one warning line)."""

    def summary(self) -> str:
        return f"{self.reason}" + (f" ({self.detail})" if self.detail else "") + f"; {self.fix}"

    def to_dict(self) -> dict:
        return {"not testable": self.reason, "detail": self.detail, "fix": self.fix, "run level": self.run_level}


def _finite(values: Sequence[float | None] | None) -> np.ndarray:
    return np.asarray([math.nan if v is None else float(v) for v in values or []], dtype=np.float64)


class Curve:
    """One series: its x values and the repeats at each (aligned by repeat index, NaN where missing)."""

    def __init__(self, tables: Tables, experiment: str, name: str) -> None:
        entry = tables.get(experiment, {}).get(name)
        if entry is None:
            raise MissingSeries(f"{experiment}/{name}")
        values = entry.get("values") or [[m] for m in entry["mean"]]
        self.at = {float(x): _finite(row) for x, row in zip(entry["x"], values, strict=True)
                   if np.isfinite(_finite(row)).any()}
        if not self.at:
            raise MissingSeries(f"{experiment}/{name} has no values")
        self.name = name
        self.kind = str(entry.get("kind", ""))
        self.xs = sorted(self.at)

    def mean(self, x: float) -> float:
        return float(np.nanmean(self.at[x]))

    @property
    def first(self) -> np.ndarray:
        return self.at[self.xs[0]]

    @property
    def last(self) -> np.ndarray:
        return self.at[self.xs[-1]]

    def same_values(self, other: Curve) -> bool:
        """The same numbers at every point: the same trainings under another name."""
        return self.xs == other.xs and all(np.array_equal(self.at[x], other.at[x], equal_nan=True) for x in self.xs)

    def pairs(self) -> tuple[list[float], list[float]]:
        """(x, value) of every finite repeat, for a rank correlation."""
        xs = [x for x in self.xs for v in self.at[x] if math.isfinite(v)]
        return xs, [float(v) for x in self.xs for v in self.at[x] if math.isfinite(v)]


@dataclass
class Run:
    """One dataset's series and context, as the claims read them."""

    tables: Tables
    context: RunContext
    bootstrap: int = 200
    floor_k: float = FLOOR_SPREAD_K

    def curve(self, experiment: str, name: str) -> Curve:
        return Curve(self.tables, experiment, name)

    def rounding(self, coefficients: Sequence[float]) -> float:
        """Rounding variance of an accuracy contrast: accuracies on N images move in steps of h = 1/N, and
        tied points may share their rounding, so the contrast's error is uniform on +-sum|c_i| h / 2 at
        worst: variance ``(sum |c_i|)^2 h^2 / 12``."""
        if not self.context.eval_size:
            return 0.0
        return sum(abs(c) for c in coefficients) ** 2 / (12 * self.context.eval_size ** 2)

    @staticmethod
    def same_grid(*curves: Curve) -> list[float]:
        if len({tuple(c.xs) for c in curves}) != 1:
            raise MissingSeries(f"{', '.join(c.name for c in curves)} cover different sigmas")
        return curves[0].xs

    @staticmethod
    def need_grid(*curves: Curve) -> None:
        """A sweep claim needs at least two sigmas."""
        for curve in curves:
            if len(curve.xs) < 2:
                raise MissingSeries(f"{curve.name} has a one-sigma grid ({curve.xs[0]:g})")

    def floor_groups(self, *experiments: str) -> dict[str, np.ndarray]:
        """Finite floor values per reference of ``experiments``, each set of trainings once."""
        groups: dict[str, np.ndarray] = {}
        for experiment in experiments:
            for name, entry in self.tables.get(experiment, {}).items():
                if not name.startswith("floor["):
                    continue
                raw = [v for row in entry.get("values") or [entry["mean"]] for v in row]
                if any(v is not None and not math.isfinite(v) for v in raw):
                    raise MissingSeries(f"{experiment}/{name} has NaN values (a training diverged)")
                values = np.asarray([v for v in raw if v is not None], float)
                if not any(np.array_equal(values, seen) for seen in groups.values()):
                    groups[f"{experiment}/{name}"] = values
        if not groups:
            raise MissingSeries(f"{'/'.join(experiments)}/floor")
        return groups

    def margin(self, *experiments: str) -> Margin:
        """``floor_k`` x the pooled within-reference std of the floors (not testable when degenerate)."""
        groups = self.floor_groups(*experiments)
        std, df = pooled_std(list(groups.values()))
        if not math.isfinite(std):
            raise MissingSeries(f"{', '.join(groups)}: fewer than 2 floor pairs per reference")
        mean = float(np.mean(np.concatenate(list(groups.values()))))
        scale = max([mean] + [float(np.nanmax(np.asarray(entry["mean"], float))) for experiment in experiments
                              for entry in self.tables.get(experiment, {}).values()
                              if entry["kind"] == "distance" and np.isfinite(np.asarray(entry["mean"], float)).any()])
        if mean <= FLOOR_RESOLUTION * scale or std <= FLOOR_RESOLUTION * scale:
            cause = "the noise floor is degenerate, float rounding rather than training noise"
            if self.context.reference_batches == 1:
                cause += " (its references train on one batch per epoch, so the batch order changes only a sum's order)"
            raise NotTestable(cause, "give the references more than one batch per epoch (a larger --max-train-size "
                                     "or a smaller --batch-size)",
                              detail=f"D {mean:.2g} +- {std:.1g} against distances up to {scale:.3g} in "
                                     f"{', '.join(groups)}")
        return Margin.from_floor(std, df, self.floor_k)


def near_chance(run: Run) -> NotTestable | None:
    """Not testable when the best clean model sits near chance accuracy (reason names any other cause)."""
    chance = 1 / max(2, run.context.num_classes)
    best = []
    for experiment, table in run.tables.items():
        for name, entry in table.items():
            if entry["kind"] not in ("accuracy", "epoch_accuracy"):
                continue
            try:
                curve = Curve(run.tables, experiment, name)
            except MissingSeries:
                continue
            best.append(curve.mean(curve.xs[0] if entry["kind"] == "accuracy" else curve.xs[-1]))
    best = [b for b in best if math.isfinite(b)]
    if not best or max(best) >= chance + NEAR_CHANCE * (1 - chance):
        return None
    reason = f"the models sit near chance: the best clean accuracy is {max(best):.3f} (chance {chance:.3f})"
    ran = ", ".join(f"{key} {value}" for key, value in run.context.configuration
                    if key in ("epochs", "max_train_size", "repeats"))
    fix = "train longer or on more data" + (f" (this run: {ran})" if ran else "")
    for experiment in ("exp3", "exp4", "exp5"):
        try:
            run.margin(experiment)
        except NotTestable as exc:
            reason += f"; also {exc.reason}"
            fix += f"; {exc.fix}"
            break
        except MissingSeries:
            continue
    return NotTestable(reason, fix)


# ------------------------------------------------------------------------------------------------ power
def power_summary(primary: list[Effect]) -> dict:
    """What this run could see: the largest minimum detectable effect of the primary 'exceeds' effects (in
    margins where the margin is > 0) and the repeats that would detect twice the margin at 80 % power."""
    exceeds = [e for e in primary if e.kind == EXCEEDS]
    if not exceeds:
        return {"text": ""}
    worst = max(exceeds, key=lambda e: (e.mde_margins if e.margin.value > 0 else e.mde))
    info: dict = {"n": worst.n, "effect": worst.name, "mde": worst.mde}
    if not math.isfinite(worst.mde):
        info["text"] = f"; too few repeats (n = {worst.n}) to detect any effect"
        return info
    if worst.margin.value > 0:
        needed = repeats_needed(worst.se * math.sqrt(worst.n), worst.margin, 2 * worst.margin.value)
        info.update(mde_margins=worst.mde_margins, repeats_for_2x_margin=needed)
        floor_bound = minimum_detectable(0.0, math.inf, worst.margin) if worst.margin.uncertain else 0.0
        reach = (f"2 x the margin needs n = {needed}" if needed is not None else
                 "2 x the margin needs more floor pairs (its own uncertainty)" if floor_bound > 2 * worst.margin.value
                 else "2 x the margin needs n > 200")
        info["text"] = f"; could detect {worst.mde_margins:.2g} x the margin at n = {worst.n} (80% power); {reach}"
    else:
        info["text"] = f"; could detect {worst.mde:+.3g} at n = {worst.n} (80% power)"
    return info


# ------------------------------------------------------------------------------------------------ schedule
def settling_epochs(xs: Sequence[float], means: Sequence[float]) -> float:
    """Epochs after which ``a + b r^x`` fitted to the curve changes over the last ``CONVERGED_TAIL`` of the
    epochs by at most half of ``CONVERGED_SPREAD`` x its range; inf when the fit shows no slowing."""
    x, y = np.asarray(xs, float), np.asarray(means, float)
    rates = np.linspace(0.02, SLOWEST_RATE, 97)
    z = rates[:, None] ** (x - x[0])[None, :]  # one row per rate: least squares of y on (1, z)
    zc, yc = z - z.mean(axis=1, keepdims=True), y - y.mean()
    szz = (zc * zc).sum(axis=1)
    szy = zc @ yc
    error = float(yc @ yc) - np.where(szz > 0, szy * szy / np.where(szz > 0, szz, 1.0), 0.0)
    best_rate = float(rates[int(np.argmin(error))])
    if best_rate >= SLOWEST_RATE:
        return math.inf
    span = np.arange(x[-1] - x[0], 10000.0)
    window = np.ceil(CONVERGED_TAIL * span)
    change = best_rate ** (span - window) - best_rate ** span
    whole = 1 - best_rate ** span
    settled = np.nonzero(change <= 0.5 * CONVERGED_SPREAD * whole)[0]
    return float(x[0] + span[settled[0]]) if len(settled) else math.inf


def _settled_before(curve: Curve, window: float, tolerance: float) -> bool:
    """Whether the curve was flat (within ``tolerance``) over some earlier window of the tail's length: then
    the schedule was long enough for it to settle, and a later move is a failure to stay converged."""
    xs = curve.xs[:-1]
    return any(abs(curve.mean(b) - curve.mean(a)) <= tolerance
               for a in xs for b in xs if b - a >= window and b - a <= window + 1e-9)


def schedule_too_short(run: Run, curves: list[Curve]) -> None:
    """Raise :class:`NotTestable` when a Fig. 2 curve still moves over the tail, never was flat before, and
    its fitted shape says the schedule ended before it could settle (or shows no slowing at all)."""
    epochs = max(c.xs[-1] for c in curves)
    if min(len(c.xs) for c in curves) < MIN_EPOCHS:
        raise NotTestable(f"Fig. 2 has {min(len(c.xs) for c in curves)} epoch(s); its convergence test needs at least "
                          f"{MIN_EPOCHS}", "run more epochs (--epochs 20 or more)")
    needs = {}
    for curve in curves:
        means = [curve.mean(x) for x in curve.xs]
        window = math.ceil(CONVERGED_TAIL * (curve.xs[-1] - curve.xs[0]))
        start = min(x for x in curve.xs if x >= curve.xs[-1] - window)
        tolerance = CONVERGED_SPREAD * (max(means) - min(means))
        moving = abs(curve.mean(curve.xs[-1]) - curve.mean(start)) > tolerance
        need = settling_epochs(curve.xs, means)
        if moving and need > curve.xs[-1] and not _settled_before(curve, window, tolerance):
            needs[curve.name] = need
    if not needs:
        return
    finite = [v for v in needs.values() if math.isfinite(v)]
    names = ", ".join(needs)
    if finite and len(finite) == len(needs):
        reason = (f"at {epochs:g} epochs the Fig. 2 curves {names} still move; fitted, they settle after about "
                  f"{max(finite):.0f} epochs")
        fix = f"run --epochs {math.ceil(max(finite))} or more"
    else:
        reason = f"at {epochs:g} epochs the Fig. 2 curves {names} still move and show no slowing yet"
        fix = f"run several times more epochs (e.g. --epochs {int(4 * epochs)})"
    raise NotTestable(reason + ": the schedule is too short to test convergence", fix)


# ------------------------------------------------------------------------------------------------ sigma*
@dataclass(frozen=True)
class SigmaStar:
    """Where a gap vanishes: the smallest grid sigma from which on its 90 % interval lies inside
    +-margin at every larger sigma (None: not even at the largest), with a bootstrap interval."""

    value: float | None
    low: float | None
    high: float | None
    established: bool
    """Whether the gap was established at sigma_min (else sigma* means nothing)."""
    paper: float
    around: float

    def text(self, present: Effect) -> str:
        if not self.established:
            return (f"no gap established at sigma_min ({present.estimate:+.3g} [{present.low:.3g}, {present.high:.3g}] "
                    "against the margin), so there is no sigma* to compare with the paper's "
                    f"{self.paper:g}")
        value = "> grid" if self.value is None else f"{self.value:g}"
        low = "-" if self.low is None else f"{self.low:g}"
        high = "> grid" if self.high is None else f"{self.high:g}"
        return f"sigma* {value} (95% bootstrap [{low}, {high}]): {self.paper_test()}"

    def paper_test(self) -> str:
        """The paper's 'around 0.4' against sigma*'s bootstrap interval."""
        if not self.established:
            return "not tested (no gap)"
        low = -math.inf if self.low is None else self.low
        high = math.inf if self.high is None else self.high
        if high < self.paper - self.around:
            return f"earlier than the paper's {self.paper:g}"
        if low > self.paper + self.around:
            return f"later than the paper's {self.paper:g}"
        return f"consistent with the paper's around {self.paper:g}"

    def to_dict(self) -> dict:
        return {"sigma*": self.value, "sigma* 95% bootstrap": [self.low, self.high], "gap established": self.established,
                "paper sigma* test": self.paper_test()}


def _star(grid: list[float], first: dict, second: dict, margin: Margin) -> float | None:
    star = None
    for x in reversed(grid):
        gap = judge_effect("gap", paired([second[x], first[x]], [1, -1]), margin, kind=EQUIVALENT)
        if gap.verdict != REPRODUCED:
            break
        star = x
    return star


def sigma_star(run: Run, first: Curve, second: Curve, margin: Margin, *, bootstrap: bool, paper: float,
               around: float) -> SigmaStar:
    """sigma* of the gap ``second - first`` and (when ``bootstrap`` and the gap is established) its 95 %
    percentile interval over ``run.bootstrap`` seeded resamples of the repeats and of the floor pairs."""
    grid = Run.same_grid(first, second)
    star = _star(grid, first.at, second.at, margin)
    if not bootstrap or run.bootstrap < 1:
        return SigmaStar(star, None, None, bootstrap, paper, around)
    rng = derive_rng(0, "sigma-star", first.name, second.name)
    groups = list(run.floor_groups("exp3").values())
    repeats = min(len(first.at[x]) for x in grid)
    stars = []
    for _ in range(run.bootstrap):
        pick = rng.integers(0, repeats, repeats)
        resampled = [g[rng.integers(0, len(g), len(g))] for g in groups]
        std, df = pooled_std(resampled)
        again = Margin.from_floor(std, df, margin.k, nodes=BOOTSTRAP_NODES)
        value = _star(grid, {x: first.at[x][pick] for x in grid}, {x: second.at[x][pick] for x in grid}, again)
        stars.append(math.inf if value is None else value)
    ordered = np.sort(np.asarray(stars))
    low = float(np.quantile(ordered, 0.025, method="lower"))
    high = float(np.quantile(ordered, 0.975, method="higher"))
    return SigmaStar(star, None if math.isinf(low) else low, None if math.isinf(high) else high, True, paper, around)
