"""Controls for the claim tests: a negative control that must not reproduce, a positive one that must.

* :func:`null_control` replaces the obfuscation by sigma = 0 at every grid point, using the stored
  sigma = 0 trainings: at the i-th grid point each sweep series gets its sigma = 0 repeats rotated by
  i (so every grid point holds the same repeats, in a different pairing across repeats). Any effect of
  sigma is then exactly 0, and claims 1 and 4-7 must come out *not reproduced* or *inconclusive*.
* :func:`permuted_control` permutes the sigma labels within each repeat (one seeded permutation per
  experiment and repeat, shared by the experiment's series so that their pairing is kept): a trend
  survives only by chance.
* :func:`planted_tables` builds synthetic series with planted effects of a given size (and a noise
  floor with a given spread) from a seed: with ``effect`` well above the floor every claim must be
  *reproduced*, with ``effect = 0`` none of claims 1 and 4-7 may be.
* :func:`control_claims` runs a control over the series of a real store.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import numpy as np

from pudlab.experiments.claims import ClaimResult, Tables, evaluate_claims
from pudlab.experiments.series import store_tables
from pudlab.experiments.store import Store
from pudlab.seeding import derive_rng

SWEEP_KINDS = ("accuracy", "distance")


def _set(entry: dict, values: list[list[float]]) -> None:
    entry["values"] = values
    entry["mean"] = [float(np.mean(v)) if v else math.nan for v in values]
    entry["std"] = [float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for v in values]
    entry["n"] = [len(v) for v in values]


def _values(entry: dict) -> list[list[float]]:
    return [list(v) for v in entry.get("values") or [[m] for m in entry["mean"]]]


def null_control(tables: Tables) -> Tables:
    """The tables with every sweep series' values replaced by its sigma_min repeats, rotated by grid index."""
    result = copy.deepcopy(tables)
    for experiment in result.values():
        for entry in experiment.values():
            if entry["kind"] not in SWEEP_KINDS or len(entry["x"]) < 2:
                continue
            order = np.argsort(entry["x"], kind="stable")
            base = _values(entry)[int(order[0])]
            rotated: list[list[float]] = [[] for _ in entry["x"]]
            for rank, position in enumerate(order):
                shift = rank % max(1, len(base))
                rotated[int(position)] = base[shift:] + base[:shift]
            _set(entry, rotated)
    return result


def permuted_control(tables: Tables, seed: int) -> Tables:
    """The tables with the sigma labels permuted within each repeat (seeded, per experiment and repeat)."""
    result = copy.deepcopy(tables)
    for name, experiment in result.items():
        sweeps = [e for e in experiment.values() if e["kind"] in SWEEP_KINDS and len(e["x"]) >= 2]
        if not sweeps:
            continue
        size = len(sweeps[0]["x"])
        repeats = max(len(v) for e in sweeps for v in _values(e))
        perms = [derive_rng(seed, "permuted-control", name, r).permutation(size) for r in range(repeats)]
        for entry in sweeps:
            if len(entry["x"]) != size:
                continue
            values = _values(entry)
            shuffled: list[list[float]] = [[] for _ in values]
            for r, perm in enumerate(perms):
                for target, source in enumerate(perm):
                    if r < len(values[source]):
                        shuffled[target].append(values[source][r])
            _set(entry, shuffled)
    return result


def _curve(kind: str, xs: Sequence[float], rows: list[list[float]]) -> dict:
    entry = {"kind": kind, "x": list(xs)}
    _set(entry, rows)
    return entry


def planted_tables(seed: int, *, effect: float = 1.0, repeats: int = 3, floor_std: float = 0.05,
                   accuracy_noise: float = 0.005,
                   sigmas: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)) -> Tables:
    """Synthetic series with the paper's effects planted at size ``effect`` (0 = no effect of sigma or of
    the setting), repeat noise of ``floor_std`` on distances and ``accuracy_noise`` on accuracies."""
    rng = derive_rng(seed, "planted-control")
    xs = list(sigmas)
    top = max(xs)

    def rows(mean_of, noise: float) -> list[list[float]]:
        return [[float(mean_of(x) + rng.normal(0, noise)) for _ in range(repeats)] for x in xs]

    def acc(level: float, fall: float):
        return lambda x: level - effect * fall * x / top

    def dist(base: float, rise: float, gap0: float = 0.0, vanish_at: float = 0.4):
        return lambda x: base + effect * (rise * x / top + gap0 * max(0.0, 1 - x / vanish_at))

    floor = 2.7

    def floor_curve() -> dict:
        return _curve("floor", [0.0], [[float(floor + rng.normal(0, floor_std)) for _ in range(repeats)]])

    epochs = list(range(1, 13))
    settle = [1 - 0.5 ** e for e in epochs]
    tables: Tables = {
        "exp1": {f"A(W_1,{k})": _curve("accuracy", xs, rows(acc(0.95 - effect * 0.1 * (k - 1), 0.1), accuracy_noise))
                 for k in (1, 2, 3)},
        "exp2": {f"A(W_2,{k})": _curve("accuracy", xs, rows(acc(0.95, 0.05 * k), accuracy_noise)) for k in (1, 2, 3)},
        "exp3": {"D_3,1": _curve("distance", xs, rows(dist(floor, 1.5), floor_std)),
                 "D_3,2": _curve("distance", xs, rows(dist(floor, 1.5, 1.0), floor_std)),
                 "D_3,3": _curve("distance", xs, rows(dist(floor, 1.5), floor_std)),
                 "D_3,4": _curve("distance", xs, rows(dist(floor, 1.5, 1.0), floor_std)),
                 "floor[Wr31]": floor_curve(), "floor[Wr32]": floor_curve()},
        "exp4": {"D_4,1": _curve("distance", xs, rows(dist(floor, 1.5), floor_std)),
                 "D_4,2": _curve("distance", xs, rows(dist(floor + effect * 1.0, 1.0, 1.0, 2.0), floor_std)),
                 "D_4,3": _curve("distance", xs, rows(dist(floor + effect * 1.5, 1.0, 1.0, 2.0), floor_std)),
                 "floor[Wr41]": floor_curve()},
        "exp5": {"D_5,1": _curve("distance", xs, rows(dist(floor, 1.5), floor_std)),
                 "D_5,2": _curve("distance", xs, rows(dist(floor, 1.0), floor_std)),
                 "D_5,3": _curve("distance", xs, rows(dist(floor, 0.5), floor_std)),
                 "floor[Wr51]": floor_curve()},
        "fig2": {**{f"D_{k}": _curve("epoch_distance", epochs, [[k * s + rng.normal(0, 1e-3) for _ in range(repeats)]
                                                                for s in settle]) for k in (1, 2, 3, 4)},
                 **{f"A(W_{k})": _curve("epoch_accuracy", epochs, [[0.9 * s + rng.normal(0, 1e-3)
                                                                    for _ in range(repeats)] for s in settle])
                    for k in (1, 2, 3, 4)}},
    }
    return tables


def control_claims(store: Store, control: str = "null", *, seed: int = 0) -> dict[str, list[ClaimResult]]:
    """The claims of every dataset in ``store`` under a
    control: ``null`` (:func:`null_control`) or ``permuted`` (:func:`permuted_control` with ``seed``)."""
    if control not in ("null", "permuted"):
        raise ValueError(f"control {control!r}: expected 'null' or 'permuted'")
    result = {}
    for dataset, (tables, mnist_family) in store_tables(store).items():
        changed = null_control(tables) if control == "null" else permuted_control(tables, seed)
        result[dataset] = evaluate_claims(changed, mnist_family=mnist_family)
    return result
