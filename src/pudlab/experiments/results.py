"""The store-read API: a store's results as rows, pandas DataFrames and files, and two stores compared.

``open_store(path)`` (also ``pudlab.open_store``) opens a store for reading, never writing (no lock,
works on read-only media), and returns :class:`Results`: ``series()``, ``jobs()``, ``roles()`` and
``claims()`` give pandas DataFrames (pandas is the optional ``pandas`` extra), ``*_rows()`` the same
as plain dicts, and ``store`` the opened :class:`~pudlab.experiments.store.Store` itself.
``export_store`` writes the tables as CSV (standard library) or Parquet (pandas + pyarrow);
``compare_stores`` puts two stores side by side. The tables' columns are documented in ``docs/store.md``.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

from pudlab.errors import PudlabError, StoreError
from pudlab.experiments.claims import claim_summary, claim_verdict, claims_by_dataset
from pudlab.experiments.store import Store
from pudlab.io import atomic_path

TABLES = ("series", "jobs", "roles", "claims")
"""The tables ``export_store`` writes, one file each."""
FORMATS = ("csv", "parquet")
PANDAS_HINT = "pandas is not installed: pip install 'pudlab[pandas]' (or pip install pandas pyarrow)"


def _pandas() -> Any:
    try:
        import pandas
    except ImportError as exc:
        raise PudlabError(PANDAS_HINT) from exc
    return pandas


def _flatten(data: dict, prefix: str = "") -> dict:
    flat: dict = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            flat[name] = json.dumps(value)
        else:
            flat[name] = value
    return flat


class Results:
    """The results of a store opened for reading (:func:`open_store`): rows or DataFrames. A context manager."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.store = Store(root, create=False, read_only=True)
        """The store, read-only: derived tables it computes (series, distances) stay in memory."""
        self.root = self.store.root

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Results:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ rows
    def series_rows(self) -> list[dict]:
        """One row per (plan, series, x): mean, std, n and the values behind them, one number column per
        repeat (``value_1`` .. ``value_<most repeats>``, None where a point has fewer)."""
        plans = [(plan, self.store.series(plan["id"])) for plan in self.store.plans()]
        most = max((row["n"] for _, series in plans for row in series), default=0)
        rows = []
        for plan, series in plans:
            for row in series:
                values = list(row["values"]) + [None] * (most - len(row["values"]))
                rows.append({"plan": plan["id"], "experiment": plan["experiment"], "dataset": plan["dataset"],
                             "series": row["series"], "kind": row["kind"], "x": row["x"], "mean": row["mean"],
                             "std": row["std"], "n": row["n"],
                             **{f"value_{index}": value for index, value in enumerate(values, start=1)}})
        return rows

    def job_rows(self) -> list[dict]:
        """One row per job: status and metrics, then every parameter of its key as a dotted column."""
        status = {row["key"]: row for row in self.store.job_rows()}
        keys = [key for (key,) in self.store.db.execute("SELECT key FROM jobs ORDER BY key")]
        rows = []
        for key in keys:
            info = status[key]
            spec = self.store.job(key).to_dict()
            spec.pop("key", None)
            environment = json.loads(info["environment"]) if info["environment"] else {}
            rows.append({"key": key, "status": info["status"], "final_accuracy": info["final_accuracy"],
                         "wall_seconds": info["wall_seconds"], "attempts": info["attempts"],
                         "finished": info["finished"], "error": info["error"],
                         "device": environment.get("device"), "torch_threads": environment.get("torch_threads"),
                         **_flatten(spec)})
        return rows

    def role_rows(self) -> list[dict]:
        """Which job plays which part in which plan: (plan, model, sigma, repeat, stream) -> job."""
        rows = []
        for plan in self.store.plans():
            for role in sorted(self.store.roles(plan["id"]), key=lambda r: (r.model, r.sigma, r.repeat, r.stream)):
                rows.append({"plan": plan["id"], "experiment": plan["experiment"], "dataset": plan["dataset"],
                             "model": role.model, "sigma": role.sigma, "repeat": role.repeat,
                             "stream": role.stream, "job": role.job})
        return rows

    def claim_rows(self) -> list[dict]:
        """One row per (dataset, claim): verdict, the readable line of evidence, criterion, evidence (JSON)."""
        rows = []
        for dataset, results in claims_by_dataset(self.store).items():
            for result in results:
                rows.append({"dataset": dataset, "number": result.number, "claim": result.claim,
                             "verdict": claim_verdict(result), "summary": claim_summary(result),
                             "criterion": result.criterion,
                             "evidence": json.dumps(result.evidence, sort_keys=True, default=str)})
        return rows

    def rows(self, table: str) -> list[dict]:
        """The rows of one of ``TABLES``."""
        if table not in TABLES:
            raise PudlabError(f"unknown table {table!r}: expected one of {', '.join(TABLES)}")
        return {"series": self.series_rows, "jobs": self.job_rows, "roles": self.role_rows,
                "claims": self.claim_rows}[table]()

    # ------------------------------------------------------------------ DataFrames
    def series(self) -> Any:
        """The series as a pandas DataFrame (columns: plan, experiment, dataset, series, kind, x, mean, std, n,
        value_1 .. value_<repeats>)."""
        return _pandas().DataFrame(self.series_rows())

    def jobs(self) -> Any:
        """The jobs as a pandas DataFrame (status, metrics, one column per parameter)."""
        return _pandas().DataFrame(self.job_rows())

    def roles(self) -> Any:
        """The roles as a pandas DataFrame."""
        return _pandas().DataFrame(self.role_rows())

    def claims(self) -> Any:
        """The claims and their verdicts as a pandas DataFrame."""
        return _pandas().DataFrame(self.claim_rows())


def open_store(path: str | os.PathLike) -> Results:
    """Open the result store at ``path`` for reading its results (see :class:`Results`); nothing is written."""
    return Results(path)


def _write_csv(path: Path, rows: list[dict]) -> None:
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    with atomic_path(path) as temp, open(temp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _write_parquet(path: Path, rows: list[dict]) -> None:
    pandas = _pandas()
    try:
        import pyarrow  # noqa: F401
    except ImportError as exc:
        raise PudlabError("Parquet needs pyarrow: pip install 'pudlab[pandas]' (or pip install pyarrow)") from exc
    frame = pandas.DataFrame(rows)
    with atomic_path(path) as temp:
        frame.to_parquet(temp, index=False)


def export_store(root: str | os.PathLike, out: str | os.PathLike | None = None, fmt: str = "csv",
                 tables: tuple[str, ...] = TABLES) -> list[Path]:
    """Write ``tables`` of the store at ``root`` as ``OUT/<table>.<fmt>`` (default OUT: ``STORE/export``)."""
    if fmt not in FORMATS:
        raise PudlabError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    written = []
    with open_store(root) as results:
        out_dir = Path(out) if out else results.root / "export"
        out_dir.mkdir(parents=True, exist_ok=True)
        for table in tables:
            path = out_dir / f"{table}.{fmt}"
            (_write_csv if fmt == "csv" else _write_parquet)(path, results.rows(table))
            written.append(path)
    return written


# ------------------------------------------------------------------------------------------ compare
def _weights_distance(a: Store, b: Store, key: str) -> float | None:
    from pudlab.metrics import model_distance

    try:
        return model_distance(a.final_weights(key), b.final_weights(key))
    except StoreError:
        return None


def _diff(first: float | None, second: float | None) -> float | None:
    if first is None or second is None or (isinstance(first, float) and math.isnan(first)) \
            or (isinstance(second, float) and math.isnan(second)):
        return None
    return second - first


IGNORED_SETTINGS = ("description", "deviations")
"""Preset fields that describe a run rather than configure it: not compared."""


def _configuration_differences(plans_a: list[dict], plans_b: list[dict]) -> list[dict]:
    """Every preset setting (and the set of plans) on which two stores' runs differ: ``{"setting", "a", "b"}``
    with each store's values (a list when its plans disagree among themselves)."""

    def settings(plans: list[dict]) -> dict[str, list]:
        found: dict[str, list] = {}
        for plan in plans:
            for key, value in plan["preset"].items():
                if key not in IGNORED_SETTINGS and value not in found.setdefault(key, []):
                    found[key].append(value)
        return found

    first, second = settings(plans_a), settings(plans_b)
    differences = [{"setting": key, "a": _one(first.get(key)), "b": _one(second.get(key))}
                   for key in sorted(set(first) | set(second)) if first.get(key) != second.get(key)]
    ids_a, ids_b = sorted(plan["id"] for plan in plans_a), sorted(plan["id"] for plan in plans_b)
    if ids_a != ids_b:
        differences.append({"setting": "plans", "a": ids_a, "b": ids_b})
    return differences


def _one(values: list | None) -> object:
    """A setting's value in one store: the value itself when all its plans agree, else the list."""
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def compare_stores(first: str | os.PathLike, second: str | os.PathLike, *, weights: bool = True) -> dict:
    """Two stores side by side.

    ``jobs``: the jobs both stores know (by key): status, accuracy in each and, when ``weights``, D
    between their final weights (0 for a bit-identical rerun). ``only_a`` / ``only_b``: job keys in
    one store only. ``series``: every (plan, series, x) in either store with both means and
    ``b - a``. ``claims``: every (dataset, claim) with both verdicts and ``changed``. ``configuration``:
    the preset settings (and plans) on which the two runs differ (empty: the same configuration).
    """
    with open_store(first) as a, open_store(second) as b:
        jobs_a = {row["key"]: row for row in a.store.job_rows()}
        jobs_b = {row["key"]: row for row in b.store.job_rows()}
        common = sorted(set(jobs_a) & set(jobs_b))
        jobs = []
        for key in common:
            row_a, row_b = jobs_a[key], jobs_b[key]
            both_done = row_a["status"] == row_b["status"] == "done"
            jobs.append({"key": key, "status_a": row_a["status"], "status_b": row_b["status"],
                         "accuracy_a": row_a["final_accuracy"], "accuracy_b": row_b["final_accuracy"],
                         "accuracy_diff": _diff(row_a["final_accuracy"], row_b["final_accuracy"]),
                         "weights_distance": _weights_distance(a.store, b.store, key)
                         if weights and both_done else None})
        series_a = {(r["plan"], r["series"], r["x"]): r for r in a.series_rows()}
        series_b = {(r["plan"], r["series"], r["x"]): r for r in b.series_rows()}
        series = []
        for plan, name, x in sorted(set(series_a) | set(series_b)):
            mean_a = series_a.get((plan, name, x), {}).get("mean")
            mean_b = series_b.get((plan, name, x), {}).get("mean")
            series.append({"plan": plan, "series": name, "x": x, "mean_a": mean_a, "mean_b": mean_b,
                           "diff": _diff(mean_a, mean_b)})
        configuration = _configuration_differences(a.store.plans(), b.store.plans())
        claims_a = {(r["dataset"], r["number"]): r for r in a.claim_rows()}
        claims_b = {(r["dataset"], r["number"]): r for r in b.claim_rows()}
        claims = []
        for dataset, number in sorted(set(claims_a) | set(claims_b)):
            verdict_a = claims_a.get((dataset, number), {}).get("verdict")
            verdict_b = claims_b.get((dataset, number), {}).get("verdict")
            claims.append({"dataset": dataset, "number": number, "verdict_a": verdict_a, "verdict_b": verdict_b,
                           "changed": verdict_a != verdict_b})
    distances = [row["weights_distance"] for row in jobs if row["weights_distance"] is not None]
    return {"a": str(first), "b": str(second), "jobs": jobs,
            "only_a": sorted(set(jobs_a) - set(jobs_b)), "only_b": sorted(set(jobs_b) - set(jobs_a)),
            "series": series, "claims": claims, "configuration": configuration,
            "summary": {"common_jobs": len(common), "only_a": len(set(jobs_a) - set(jobs_b)),
                        "only_b": len(set(jobs_b) - set(jobs_a)), "weights_compared": len(distances),
                        "weights_identical": sum(1 for d in distances if d == 0.0),
                        "max_weights_distance": max(distances) if distances else None,
                        "max_series_diff": max((abs(r["diff"]) for r in series if r["diff"] is not None),
                                               default=None),
                        "claims_changed": sum(1 for r in claims if r["changed"])}}


__all__ = ["FORMATS", "TABLES", "Results", "compare_stores", "export_store", "open_store"]
