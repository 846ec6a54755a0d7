#!/usr/bin/env python3
"""Calibration of the claim verdicts on simulated sweeps: how often does each claim come out
"reproduced" on null data, when every primary effect equals its margin, and at twice the margin?

Every sweep is simulated like the quick preset's design: the quick sigma grid, ``--floor-pairs``
floor pairs per reference, n repeats whose noise is shared within a repeat by every point of an
experiment with intra-class correlation ICC (the shuffle order and noise draw are common across sigma),
accuracies rounded to steps of 1/500 (T_e of mnist-5k), and Exp-1's accuracies share one draw of T_e's
binomial sampling error (claim 8's test allows for it). Each distance observation has the noise
floor's spread (``sigma_f``), so the distance margin is ``2 sigma_f``; accuracy observations have
``--accuracy-noise`` (default margin / 2, the same noise-to-margin ratio). The planted effects:

* null: no effect of sigma or of the setting (claim 8: accuracy 2 accuracy margins *below* its 80 % bar);
* margin: every primary effect of claims 1-8 equals its margin (claim 8, whose margin is 0: accuracy
  exactly at the bar; claim 5: a gap of one margin at small sigma that stays one margin at sigma >= 0.5);
* 2x: every primary effect is twice its margin (claim 8: 2 accuracy margins above the bar; claim 5: a
  gap of two margins that is 0 from 0.5 on).

Printed per n: the rate of "reproduced" per claim (the largest over the ICCs) under null and at the
margin, the largest per-decision rate at the margin (each primary effect's own decision), the rate of
"not reproduced" at the margin (a true effect of margin size called absent), and the power at 2x (the
smallest over the ICCs). Two extra checks: claim 5 with a gap that never closes (1.5 margins
at sigma >= 0.5), and sigma* for a gap that is 0 from sigma = 0.4 on (the true sigma* is 0.5 on this grid).

    python benchmarks/verdict_calibration.py --sweeps 1000 --processes 2

Claim 9 (convergence over epochs) is not simulated here: its unit tests plant settled, unsettled and
too-short curves.
"""

from __future__ import annotations

import argparse
import math
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from pudlab.experiments.claims import ACCURACY_MARGIN, MNIST_ACCURACY, evaluate_claims
from pudlab.experiments.series import RunContext
from pudlab.experiments.stats import NOT_REPRODUCED, REPRODUCED
from pudlab.experiments.testability import FLOOR_SPREAD_K, Curve, Run, sigma_star
from pudlab.seeding import derive_rng

SIGMAS = (0.0, 0.1, 0.2, 0.3, 0.5, 1.0)
EVAL_SIZE = 500
FLOOR = 2.7
CLAIMS = tuple(range(1, 9))
SCENARIOS = {"null": 0.0, "margin": 1.0, "2x": 2.0}


@dataclass(frozen=True)
class Design:
    repeats: int
    icc: float
    floor_std: float
    accuracy_noise: float
    floor_pairs: int


def _curve(kind: str, rows: list[list[float]]) -> dict:
    return {"kind": kind, "x": list(SIGMAS), "mean": [float(np.mean(r)) for r in rows],
            "std": [float(np.std(r, ddof=1)) for r in rows], "n": [len(r) for r in rows], "values": rows}


# long: one planted table per experiment, each effect set to its multiple of the margin
def simulate(design: Design, scale: float, rng: np.random.Generator, *, residual: float | None = None) -> dict:
    """One sweep's tables with every primary effect of claims 1-8 at ``scale`` x its margin (``residual``:
    claim 5's gap at sigma >= 0.5 in margins; default: ``scale`` <= 1 keeps it, larger scales close it)."""
    n, top = design.repeats, max(SIGMAS)
    m_acc, m_dist = ACCURACY_MARGIN, FLOOR_SPREAD_K * design.floor_std
    c_acc, c_dist = scale * m_acc, scale * m_dist

    def shared(noise: float) -> np.ndarray:
        return rng.normal(0, noise * math.sqrt(design.icc), n)

    def rows(mean_of, noise: float, common: np.ndarray, step: int = 0) -> list[list[float]]:
        own = noise * math.sqrt(1 - design.icc)
        values = [[mean_of(x) + common[r] + rng.normal(0, own) for r in range(n)] for x in SIGMAS]
        return [[round(v * step) / step if step else float(v) for v in row] for row in values]

    def accuracy(mean_of, common) -> dict:
        return _curve("accuracy", rows(mean_of, design.accuracy_noise, common, EVAL_SIZE))

    # claims 1-3, 8: W_1,k fall by c at sigma_max, sit at the claim-8 level on (0, 0.5]; W_2,k drop 0, c, 2c
    level8 = MNIST_ACCURACY + 2 * (scale - 1) * m_acc  # null: 2 margins below the bar, margin: at it, 2x: above
    u1, u2 = shared(design.accuracy_noise), shared(design.accuracy_noise)
    test_set = rng.normal(0, math.sqrt(level8 * (1 - level8) / EVAL_SIZE))  # T_e's draw, shared by every repeat
    exp1 = {f"A(W_1,{k})": accuracy(lambda x, k=k: level8 + test_set - (k - 1) * c_acc - (c_acc if x > 0.5 else 0.0),
                                    u1) for k in (1, 2, 3)}
    exp2 = {f"A(W_2,{k})": accuracy(lambda x, k=k: 0.9 - (k - 1) * c_acc * x / top, u2) for k in (1, 2, 3)}

    # claims 4-7: D rises by c; claim 5's gap; claim 6's gaps (present c, shrink c, further c); claim 7 at top
    u3, u5 = shared(design.floor_std), shared(design.floor_std)
    rest = (scale if scale <= 1 else 0.0) if residual is None else residual

    def rise(x: float) -> float:
        return FLOOR + c_dist * x / top

    def gap(x: float) -> float:
        return c_dist if x < 0.4 else (rest * m_dist if x >= 0.5 else 0.0)

    def distance(mean_of, common) -> dict:
        return _curve("distance", rows(mean_of, design.floor_std, common))

    def floor() -> dict:
        return {"kind": "floor", "x": [0.0], "mean": [FLOOR], "std": [design.floor_std], "n": [design.floor_pairs],
                "values": [[float(FLOOR + rng.normal(0, design.floor_std)) for _ in range(design.floor_pairs)]]}

    exp3 = {"D_3,1": distance(rise, u3), "D_3,2": distance(lambda x: rise(x) + gap(x), u3),
            "D_3,3": distance(rise, u3), "D_3,4": distance(lambda x: rise(x) + gap(x), u3),
            "floor[Wr31]": floor(), "floor[Wr32]": floor()}
    exp4 = {"D_4,1": exp3["D_3,3"], "floor[Wr41]": exp3["floor[Wr32]"],
            "D_4,2": distance(lambda x: rise(x) + c_dist / 2 - c_dist * x / top, u3),
            "D_4,3": distance(lambda x: rise(x) + 3 * c_dist / 2 - c_dist * x / top, u3)}
    exp5 = {"D_5,1": distance(rise, u5), "D_5,2": distance(lambda x: rise(x) - c_dist * x / top, u5),
            "D_5,3": distance(lambda x: rise(x) - 2 * c_dist * x / top, u5), "floor[Wr51]": floor()}
    return {"exp1": exp1, "exp2": exp2, "exp3": exp3, "exp4": exp4, "exp5": exp5}


CONTEXT = RunContext(dataset="simulated", source="simulated MNIST", is_mnist=True, eval_size=EVAL_SIZE)


def run_scenario(task: tuple[Design, str, int, int]) -> dict:
    """Counts of 'reproduced' per claim (and the largest per-decision count) over ``sweeps`` sweeps."""
    design, scenario, sweeps, seed = task
    claims = dict.fromkeys(CLAIMS, 0)
    against = dict.fromkeys(CLAIMS, 0)
    decisions: dict[str, int] = {}
    for sweep in range(sweeps):
        rng = derive_rng(seed, "calibration", design.repeats, int(design.icc * 100), scenario, sweep)
        results = evaluate_claims(simulate(design, SCENARIOS[scenario], rng), CONTEXT, bootstrap=0)
        for result in results:
            if result.number not in claims:
                continue
            claims[result.number] += result.verdict == REPRODUCED
            against[result.number] += result.verdict == NOT_REPRODUCED
            for name, effect in result.evidence.get("primary", {}).items():
                key = f"{result.number}:{name}"
                decisions[key] = decisions.get(key, 0) + (effect["verdict"] == REPRODUCED)
    return {"design": design, "scenario": scenario, "sweeps": sweeps, "claims": claims, "against": against,
            "decisions": decisions}


def extra_checks(design: Design, sweeps: int, seed: int) -> dict:
    """Claim 5 with a gap that never closes, and sigma* of a gap that is 0 from 0.4 on."""
    never, stars = 0, []
    for sweep in range(sweeps):
        rng = derive_rng(seed, "calibration-extra", design.repeats, sweep)
        tables = simulate(design, 3.0, rng, residual=1.5)
        never += evaluate_claims(tables, CONTEXT, bootstrap=0)[4].verdict == REPRODUCED
        tables = simulate(design, 2.0, rng, residual=0.0)
        run = Run(tables, CONTEXT, bootstrap=0)
        star = sigma_star(run, Curve(tables, "exp3", "D_3,1"), Curve(tables, "exp3", "D_3,2"), run.margin("exp3"),
                          bootstrap=False, paper=0.4, around=0.1)
        stars.append(math.inf if star.value is None else star.value)
    values, counts = np.unique(np.asarray(stars), return_counts=True)
    return {"never_closes_reproduced": never / sweeps,
            "sigma_star": {("> grid" if math.isinf(v) else f"{v:g}"): round(c / sweeps, 3)
                           for v, c in zip(values, counts, strict=True)}}


def _pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweeps", type=int, default=400, help="simulated sweeps per scenario [400]")
    parser.add_argument("--repeats", default="3,5,10", help="values of n [3,5,10]")
    parser.add_argument("--iccs", default="0,0.35,0.7", help="intra-class correlations [0,0.35,0.7]")
    parser.add_argument("--floor-pairs", type=int, default=10, help="floor pairs per reference [10]")
    parser.add_argument("--floor-std", type=float, default=0.1, help="noise floor std sigma_f [0.1]")
    parser.add_argument("--accuracy-noise", type=float, default=ACCURACY_MARGIN / FLOOR_SPREAD_K,
                        help="accuracy noise per observation [margin / 2]")
    parser.add_argument("--processes", type=int, default=1, help="worker processes [1]")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    ns = [int(v) for v in args.repeats.split(",")]
    iccs = [float(v) for v in args.iccs.split(",")]
    designs = [Design(n, icc, args.floor_std, args.accuracy_noise, args.floor_pairs) for n in ns for icc in iccs]
    tasks = [(d, s, args.sweeps, args.seed) for d in designs for s in SCENARIOS]
    with ProcessPoolExecutor(args.processes) as pool:
        results = list(pool.map(run_scenario, tasks))
        extras = dict(zip(ns, pool.map(extra_checks, [Design(n, 0.0, args.floor_std, args.accuracy_noise,
                                                                args.floor_pairs) for n in ns],
                                       [args.sweeps] * len(ns), [args.seed] * len(ns)), strict=True))
    print(f"# verdict calibration: {args.sweeps} sweeps per scenario, ICC {args.iccs}, {args.floor_pairs} floor "
          f"pairs, sigma_f {args.floor_std}, accuracy noise {args.accuracy_noise:g}, grid {SIGMAS}")
    for n in ns:
        rows = [r for r in results if r["design"].repeats == n]
        print(f"\n## n = {n}\n")
        print("| claim | null: reproduced (max over ICC) | effect = margin: reproduced (max) | effect = margin: "
              "largest single decision (max) | effect = margin: not reproduced (max) | power at 2x margin (min over "
              "ICC) | power per ICC |")
        print("|---|---|---|---|---|---|---|")
        for claim in CLAIMS:
            def rate(scenario: str, claim: int = claim, rows: list[dict] = rows) -> list[float]:
                return [r["claims"][claim] / r["sweeps"] for r in rows if r["scenario"] == scenario]
            single = max(count / r["sweeps"] for r in rows if r["scenario"] == "margin"
                         for key, count in r["decisions"].items() if key.startswith(f"{claim}:"))
            power = rate("2x")
            wrong = max(r["against"][claim] / r["sweeps"] for r in rows if r["scenario"] == "margin")
            print(f"| {claim} | {_pct(max(rate('null')))} | {_pct(max(rate('margin')))} | {_pct(single)} | "
                  f"{_pct(wrong)} | {_pct(min(power))} | {', '.join(_pct(p) for p in power)} |")
        extra = extras[n]
        print(f"\nclaim 5, a gap of 3 margins that never closes (1.5 margins at sigma >= 0.5), ICC 0: reproduced "
              f"{_pct(extra['never_closes_reproduced'])}; sigma* of a gap that is 0 from 0.4 on (true 0.5): "
              f"{extra['sigma_star']}")
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
