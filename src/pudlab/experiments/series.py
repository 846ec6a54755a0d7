"""Derived series: the numbers the figures and claims are made of, computed from the store.

* ``accuracy``: A(W) on T_e of a model, per sigma (mean +- std over repeats).
* ``distance``: D(W_a, W_b) per sigma, the two models of the same repeat.
* ``floor``: D between a distance reference and its shuffle-seed partner (the noise floor):
  two clean trainings that differ only in batch order, one independent pair per repeat.
* ``layer_distance``: D per layer (weights and bias together) of every distance series, named
  ``<series>[<layer>]``.
* ``delta``: Delta (Eq. 4) per repeat, ``|D(W_r, W_o on another draw) - D(W_r, W_o on the
  reference's own data)|`` for every pair of distance series that share a reference and where one
  compares the reference with a model of its own dataset; named ``Delta(<own>,<other>)``.
* ``epoch_accuracy`` / ``epoch_distance``: the same per epoch (Fig. 2), from snapshots.

``values`` keeps the repeats of a point in repeat order (missing jobs are skipped).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict

import numpy as np

from pudlab.experiments.jobs import Role
from pudlab.experiments.spec import ExperimentSpec, parse_experiment
from pudlab.experiments.store import Store
from pudlab.metrics import model_distance, per_layer_distance

FINAL_EPOCH = -1


def _stats(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    array = np.asarray(values, dtype=np.float64)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


def _row(series: str, kind: str, x: float, values: list[float]) -> dict:
    mean, std = _stats(values)
    return {"series": series, "kind": kind, "x": float(x), "mean": mean, "std": std, "n": len(values),
            "values": values}


def distance_between(store: Store, a: str, b: str, epoch: int = FINAL_EPOCH) -> float:
    """D between two stored jobs (final weights, or the snapshots of ``epoch``), cached in the store."""
    if a == b:
        return 0.0
    first, second = sorted((a, b))
    cached = store.cached_distance(first, second, epoch)
    if cached is not None:
        return cached
    if epoch == FINAL_EPOCH:
        value = model_distance(store.final_weights(first), store.final_weights(second))
    else:
        value = model_distance(store.snapshot_weights(first, epoch), store.snapshot_weights(second, epoch))
    store.cache_distance(first, second, epoch, value)
    return value


class RoleIndex:
    """Look up the finished job of (model, sigma, repeat, stream) in one plan."""

    def __init__(self, roles: list[Role], done: set[str]) -> None:
        self.done = done
        """Keys of the finished jobs."""
        self.jobs: dict[tuple[str, float, int, str], str] = {}
        self.sigmas: dict[str, set[float]] = defaultdict(set)
        self.repeats = 0
        for role in roles:
            self.jobs[(role.model, role.sigma, role.repeat, role.stream)] = role.job
            if role.stream == "model":
                self.sigmas[role.model].add(role.sigma)
            self.repeats = max(self.repeats, role.repeat + 1)

    def finished(self, model: str, sigma: float, repeat: int, stream: str = "model") -> str | None:
        """The key of the job in that role, if it is finished (else None)."""
        job = self.jobs.get((model, sigma, repeat, stream))
        return job if job in self.done else None

    def only_sigma(self, model: str) -> float:
        return min(self.sigmas[model])


def _layer_rows(store: Store, series_id: str, sigma: float, pairs: list[tuple[str, str]]) -> list[dict]:
    per_layer: dict[str, list[float]] = defaultdict(list)
    for job_a, job_b in pairs:
        if job_a == job_b:
            continue
        for layer, value in per_layer_distance(store.final_weights(job_a), store.final_weights(job_b)).items():
            per_layer[layer].append(value)
    return [_row(f"{series_id}[{layer}]", "layer_distance", sigma, values) for layer, values in per_layer.items()]


def _delta_rows(spec: ExperimentSpec, by_repeat: dict[str, dict[float, dict[int, float]]]) -> list[dict]:
    rows = []
    distance = [s for s in spec.series if s.kind == "distance" and s.id in by_repeat]
    for own in distance:
        if spec.models[own.compared or ""].dataset != spec.models[own.reference or ""].dataset:
            continue
        for other in distance:
            if other.reference != own.reference or other.id == own.id:
                continue
            for sigma in sorted(set(by_repeat[own.id]) & set(by_repeat[other.id])):
                a, b = by_repeat[own.id][sigma], by_repeat[other.id][sigma]
                values = [abs(b[r] - a[r]) for r in sorted(set(a) & set(b))]
                rows.append(_row(f"Delta({own.id},{other.id})", "delta", sigma, values))
    return rows


# long: one branch per series kind, each a few lines over the same role index
def compute_series(store: Store, plan_id: str, spec: ExperimentSpec) -> list[dict]:
    """Every series of ``spec`` for the plan, from finished jobs (missing jobs are skipped)."""
    index = RoleIndex(store.roles(plan_id), {row["key"] for row in store.job_rows() if row["status"] == "done"})
    rows: list[dict] = []
    floors_done: set[str] = set()
    by_repeat: dict[str, dict[float, dict[int, float]]] = defaultdict(dict)
    for series in spec.series:
        if series.kind == "accuracy":
            model = series.model or ""
            for sigma in sorted(index.sigmas[model]):
                accuracies = [store.final_accuracy(job) for r in range(index.repeats)
                              if (job := index.finished(model, sigma, r)) is not None]
                rows.append(_row(series.id, "accuracy", sigma, [v for v in accuracies if v is not None]))
        elif series.kind == "distance":
            a, b = series.reference or "", series.compared or ""
            a_sweeps = spec.models[a].sweep
            for sigma in sorted(index.sigmas[b]):
                sigma_a = sigma if a_sweeps else index.only_sigma(a)
                found: dict[int, float] = {}
                pairs = []
                for r in range(index.repeats):
                    job_a, job_b = index.finished(a, sigma_a, r), index.finished(b, sigma, r)
                    if job_a is not None and job_b is not None:
                        found[r] = distance_between(store, job_a, job_b)
                        pairs.append((job_a, job_b))
                by_repeat[series.id][sigma] = found
                rows.append(_row(series.id, "distance", sigma, list(found.values())))
                rows.extend(_layer_rows(store, series.id, sigma, pairs))
            if not a_sweeps and a not in floors_done:
                floors_done.add(a)
                sigma_a = index.only_sigma(a)
                floors: list[float] = []
                for r in range(index.repeats):
                    job_a, partner = index.finished(a, sigma_a, r), index.finished(a, sigma_a, r, "floor")
                    if job_a is not None and partner is not None:
                        floors.append(distance_between(store, job_a, partner))
                if floors:
                    rows.append(_row(f"floor[{a}]", "floor", sigma_a, floors))
        elif series.kind == "epoch_accuracy":
            model = series.model or ""
            sigma = index.only_sigma(model)
            per_epoch: dict[int, list[float]] = defaultdict(list)
            for r in range(index.repeats):
                job = index.finished(model, sigma, r)
                if job is not None:
                    for record in store.history(job):
                        if record["eval_accuracy"] is not None:
                            per_epoch[record["epoch"]].append(record["eval_accuracy"])
            rows.extend(_row(series.id, "epoch_accuracy", epoch, values) for epoch, values in sorted(per_epoch.items()))
        elif series.kind == "epoch_distance":
            a, b = series.reference or "", series.compared or ""
            per_epoch = defaultdict(list)
            for r in range(index.repeats):
                job_a, job_b = index.finished(a, index.only_sigma(a), r), index.finished(b, index.only_sigma(b), r)
                if job_a is None or job_b is None:
                    continue
                common = sorted(set(store.snapshot_epochs(job_a)) & set(store.snapshot_epochs(job_b)))
                for epoch in common:
                    per_epoch[epoch].append(distance_between(store, job_a, job_b, epoch))
            rows.extend(_row(series.id, "epoch_distance", epoch, values) for epoch, values in sorted(per_epoch.items()))
    rows.extend(_delta_rows(spec, by_repeat))
    return rows


def refresh_series(store: Store) -> int:
    """Recompute and store the series of every plan; returns the number of rows."""
    total = 0
    for plan in store.plans():
        spec = parse_experiment(plan["spec"], f"store plan {plan['id']}")
        rows = compute_series(store, plan["id"], spec)
        store.replace_series(plan["id"], rows)
        total += len(rows)
    return total


def series_table(store: Store, plan_id: str) -> dict[str, dict]:
    """Stored series of a plan as ``{series: {"kind", "x": [...], "mean": [...], "std": [...], "n": [...]}}``."""
    table: dict[str, dict] = {}
    for row in store.series(plan_id):
        entry = table.setdefault(row["series"], {"kind": row["kind"], "x": [], "mean": [], "std": [], "n": [],
                                                 "values": []})
        entry["x"].append(row["x"])
        entry["mean"].append(math.nan if row["mean"] is None else row["mean"])
        entry["std"].append(math.nan if row["std"] is None else row["std"])
        entry["n"].append(row["n"])
        entry["values"].append(row["values"])
    return table


def store_tables(store: Store) -> dict[str, tuple[dict[str, dict[str, dict]], bool]]:
    """Per dataset: ``(tables[experiment][series], mnist_family)``, the input of the claims."""
    tables: dict[str, dict[str, dict]] = defaultdict(dict)
    for plan in store.plans():
        tables[plan["dataset"]][plan["experiment"]] = series_table(store, plan["id"])
    sources = {row["name"]: row for row in store.sources()}
    result = {}
    for dataset, table in sorted(tables.items()):
        shape = json.loads(sources[dataset]["sample_shape"]) if dataset in sources else [1]
        result[dataset] = (dict(table), shape[0] == 1 and "cifar" not in dataset.lower())
    return result
