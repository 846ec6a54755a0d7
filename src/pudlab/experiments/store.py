"""The result store: a directory with a SQLite database (WAL) and safetensors weights beside it.

Layout::

    STORE/pudlab.sqlite                      jobs, per-epoch metrics, plans, roles, series
    STORE/weights/<job key>.safetensors      final weights of each finished job
    STORE/snapshots/<job key>/e<N>.safetensors   per-epoch snapshots (Fig. 2)
    STORE/inits/<sha256>.safetensors         the shared initial weight sets

Crash safety: weight files are written to a temporary name and renamed; a job becomes ``done``
only in the transaction that also stores its epochs, after its files are complete. A job whose
process died is still ``pending``/``running`` and is trained again (overwriting its files with
identical content). Only one process (the driver) writes the database.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from pudlab.data.dataset import SourceDataset
from pudlab.errors import StoreError
from pudlab.model import ModelConfig, check_state, initial_state
from pudlab.io import atomic_path, load_weights, save_weights, weights_sha256
from pudlab.experiments.jobs import Expansion, Job, Role

if TYPE_CHECKING:
    from pudlab.experiments.worker import JobOutcome

DB_FILE = "pudlab.sqlite"
SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sources (
    fingerprint TEXT PRIMARY KEY, name TEXT NOT NULL, description TEXT NOT NULL, origin TEXT NOT NULL,
    train_size INTEGER NOT NULL, test_size INTEGER, sample_shape TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS inits (
    sha256 TEXT PRIMARY KEY, model TEXT NOT NULL, seed INTEGER NOT NULL, path TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    key TEXT PRIMARY KEY, spec TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'pending',
    error TEXT, final_accuracy REAL, weights_sha256 TEXT, wall_seconds REAL, environment TEXT,
    unit TEXT, attempts INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL, finished REAL);
CREATE TABLE IF NOT EXISTS epochs (
    job TEXT NOT NULL, epoch INTEGER NOT NULL, train_loss REAL, eval_loss REAL, eval_accuracy REAL,
    seconds REAL, PRIMARY KEY (job, epoch));
CREATE TABLE IF NOT EXISTS snapshots (
    job TEXT NOT NULL, epoch INTEGER NOT NULL, sha256 TEXT NOT NULL, PRIMARY KEY (job, epoch));
CREATE TABLE IF NOT EXISTS plans (
    id TEXT PRIMARY KEY, experiment TEXT NOT NULL, dataset TEXT NOT NULL, spec TEXT NOT NULL,
    preset TEXT NOT NULL, source TEXT NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS roles (
    plan TEXT NOT NULL, model TEXT NOT NULL, sigma REAL NOT NULL, repeat INTEGER NOT NULL,
    stream TEXT NOT NULL, job TEXT NOT NULL, PRIMARY KEY (plan, model, sigma, repeat, stream));
CREATE TABLE IF NOT EXISTS distances (
    a TEXT NOT NULL, b TEXT NOT NULL, epoch INTEGER NOT NULL, distance REAL NOT NULL,
    PRIMARY KEY (a, b, epoch));
CREATE TABLE IF NOT EXISTS series (
    plan TEXT NOT NULL, series TEXT NOT NULL, kind TEXT NOT NULL, x REAL NOT NULL, mean REAL,
    std REAL, n INTEGER NOT NULL, vals TEXT NOT NULL, PRIMARY KEY (plan, series, x));
CREATE TABLE IF NOT EXISTS timings (
    id INTEGER PRIMARY KEY AUTOINCREMENT, command TEXT NOT NULL, started REAL NOT NULL,
    seconds REAL NOT NULL, jobs_trained INTEGER NOT NULL, detail TEXT);
"""


def open_store(root: str | os.PathLike, *, create: bool = False) -> Store:
    """Open the result store at ``root`` (a folder holding ``pudlab.sqlite``); ``create`` makes a new one."""
    return Store(root, create=create)


class Store:
    """A result store directory (see the module docstring). Use as a context manager."""

    def __init__(self, root: str | os.PathLike, *, create: bool = True) -> None:
        self.root = Path(root)
        db_path = self.root / DB_FILE
        if not db_path.exists() and not create:
            raise StoreError(f"{self.root}: not a pudlab store (no {DB_FILE}); run `pudlab run` or `pudlab reproduce` first")
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(db_path, timeout=60, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{db_path}: not a usable SQLite database ({exc})") from exc
        version = self.meta("schema_version")
        if version is None:
            self.set_meta("schema_version", SCHEMA_VERSION)
        elif version != SCHEMA_VERSION:
            raise StoreError(f"{db_path}: store schema {version}, this pudlab reads schema {SCHEMA_VERSION}")

    # ------------------------------------------------------------------ basics
    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def weights_path(self, key: str) -> Path:
        return self.root / "weights" / f"{key}.safetensors"

    def snapshot_path(self, key: str, epoch: int) -> Path:
        return self.root / "snapshots" / key / f"e{epoch}.safetensors"

    # ------------------------------------------------------------------ sources and inits
    def register_source(self, source: SourceDataset) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO sources VALUES (?, ?, ?, ?, ?, ?, ?)",
            (source.fingerprint, source.name, source.description, source.origin, len(source.train),
             len(source.test) if source.test is not None else None, json.dumps(list(source.sample_shape))),
        )

    def sources(self) -> list[dict]:
        rows = self.db.execute("SELECT fingerprint, name, description, origin, train_size, test_size, sample_shape "
                               "FROM sources ORDER BY name").fetchall()
        keys = ("fingerprint", "name", "description", "origin", "train_size", "test_size", "sample_shape")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def ensure_init(self, model: ModelConfig, seed: int) -> str:
        """Save the seeded initial weights for ``model`` once; return their SHA-256."""
        weights = initial_state(model, init_seed=seed)
        sha = weights_sha256(weights)
        path = self.root / "inits" / f"{sha}.safetensors"
        if not path.exists():
            save_weights(path, weights, {"format": "pudlab.weights/1", "kind": "initial"})
        self.db.execute("INSERT OR IGNORE INTO inits VALUES (?, ?, ?, ?)",
                        (sha, json.dumps(model.to_dict(), sort_keys=True), seed, str(path.relative_to(self.root))))
        return sha

    def load_init(self, sha: str, model: ModelConfig) -> dict[str, torch.Tensor]:
        """The stored initial weights with SHA-256 ``sha`` (verified)."""
        return load_verified(self.root / "inits" / f"{sha}.safetensors", sha, model)

    def save_preview(self, dataset: str, images: np.ndarray, ids: np.ndarray, noise_seed: int,
                     sigmas: tuple[float, ...]) -> None:
        """Keep a few raw T_t samples, so that Fig. 1 can be drawn from the store alone."""
        path = self.root / "previews" / f"{Path(dataset).stem or 'dataset'}.npz"
        with atomic_path(path) as temp, open(temp, "wb") as handle:
            np.savez(handle, images=images, ids=ids, noise_seed=noise_seed, sigmas=np.asarray(sigmas, float))

    def previews(self) -> dict[str, tuple[np.ndarray, np.ndarray, int, list[float]]]:
        """``{dataset: (images, ids, noise_seed, sigmas)}`` of the stored previews."""
        result = {}
        for path in sorted((self.root / "previews").glob("*.npz")):
            with np.load(path, allow_pickle=False) as data:
                result[path.stem] = (data["images"], data["ids"], int(data["noise_seed"]),
                                     [float(s) for s in data["sigmas"]])
        return result

    # ------------------------------------------------------------------ plans, jobs
    def save_plan(self, plan_id: str, experiment: str, dataset: str, spec: dict, preset: dict, source: str,
                  expansion: Expansion) -> None:
        """Record a plan, its jobs (merging snapshot requests) and its roles (replacing old roles)."""
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO plans VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (plan_id, experiment, dataset, json.dumps(spec, sort_keys=True),
                        json.dumps(preset, sort_keys=True), source, time.time()))
            db.execute("DELETE FROM roles WHERE plan = ?", (plan_id,))
            for role in expansion.roles:
                if role.plan != plan_id:
                    continue
                db.execute("INSERT OR REPLACE INTO roles VALUES (?, ?, ?, ?, ?, ?)",
                           (role.plan, role.model, role.sigma, role.repeat, role.stream, role.job))
            for key in {role.job for role in expansion.roles if role.plan == plan_id}:
                self._upsert_job(db, expansion.jobs[key])

    def _upsert_job(self, db: sqlite3.Connection, job: Job) -> None:
        row = db.execute("SELECT spec, status FROM jobs WHERE key = ?", (job.key,)).fetchone()
        if row is None:
            db.execute("INSERT INTO jobs (key, spec, status, created) VALUES (?, ?, 'pending', ?)",
                       (job.key, json.dumps(job.to_dict(), sort_keys=True), time.time()))
            return
        stored = Job.from_dict(json.loads(row[0]))
        wanted = set(job.snapshot_epochs) | set(stored.snapshot_epochs)
        if wanted != set(stored.snapshot_epochs):
            merged = Job.from_dict({**job.to_dict(), "snapshot_epochs": sorted(wanted)})
            status = row[1]
            have = {e for (e,) in db.execute("SELECT epoch FROM snapshots WHERE job = ?", (job.key,))}
            if status == "done" and not wanted <= have:
                status = "pending"  # needs the snapshots: train again
            db.execute("UPDATE jobs SET spec = ?, status = ? WHERE key = ?",
                       (json.dumps(merged.to_dict(), sort_keys=True), status, job.key))

    def job(self, key: str) -> Job:
        row = self.db.execute("SELECT spec FROM jobs WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise StoreError(f"{self.root}: no job {key}")
        return Job.from_dict(json.loads(row[0]))

    def jobs_to_run(self, keys: Iterable[str] | None = None, *, retry_failed: bool = True) -> list[Job]:
        """Jobs not done (or done but with a missing weight file), in key order."""
        statuses = ("pending", "running", "failed") if retry_failed else ("pending", "running")
        rows = self.db.execute("SELECT key, spec, status FROM jobs ORDER BY key").fetchall()
        wanted = set(keys) if keys is not None else None
        result = []
        for key, spec, status in rows:
            if wanted is not None and key not in wanted:
                continue
            if status in statuses or (status == "done" and not self.weights_path(key).exists()):
                result.append(Job.from_dict(json.loads(spec)))
        return result

    def mark_running(self, keys: Iterable[str], unit: str) -> None:
        with self.transaction() as db:
            for key in keys:
                db.execute("UPDATE jobs SET status = 'running', unit = ?, attempts = attempts + 1 WHERE key = ?",
                           (unit, key))

    def complete_job(self, outcome: JobOutcome) -> None:
        """Record a finished job (its weight/snapshot files must already be in place)."""
        key = outcome.key
        with self.transaction() as db:
            db.execute("DELETE FROM epochs WHERE job = ?", (key,))
            db.execute("DELETE FROM snapshots WHERE job = ?", (key,))
            db.execute("DELETE FROM distances WHERE a = ? OR b = ?", (key, key))
            for record in outcome.history:
                db.execute("INSERT INTO epochs VALUES (?, ?, ?, ?, ?, ?)",
                           (key, record["epoch"], record["train_loss"], record["eval_loss"],
                            record["eval_accuracy"], record["seconds"]))
            for epoch, sha in outcome.snapshot_sha256.items():
                db.execute("INSERT INTO snapshots VALUES (?, ?, ?)", (key, int(epoch), sha))
            db.execute(
                "UPDATE jobs SET status = 'done', error = NULL, final_accuracy = ?, weights_sha256 = ?, "
                "wall_seconds = ?, environment = ?, finished = ? WHERE key = ?",
                (outcome.final_accuracy, outcome.weights_sha256, outcome.wall_seconds,
                 json.dumps(outcome.environment, sort_keys=True), time.time(), key),
            )

    def fail_job(self, key: str, error: str) -> None:
        self.db.execute("UPDATE jobs SET status = 'failed', error = ? WHERE key = ?", (error, key))

    def status_counts(self) -> dict[str, int]:
        counts = {"pending": 0, "running": 0, "done": 0, "failed": 0}
        for status, count in self.db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status"):
            counts[status] = count
        return counts

    def job_rows(self) -> list[dict]:
        keys = ("key", "status", "error", "final_accuracy", "wall_seconds", "attempts", "finished", "environment")
        rows = self.db.execute(f"SELECT {', '.join(keys)} FROM jobs ORDER BY key").fetchall()
        return [dict(zip(keys, row, strict=True)) for row in rows]

    # ------------------------------------------------------------------ results
    def final_weights(self, key: str) -> dict[str, torch.Tensor]:
        row = self.db.execute("SELECT status, weights_sha256 FROM jobs WHERE key = ?", (key,)).fetchone()
        if row is None or row[0] != "done":
            raise StoreError(f"{self.root}: job {key} has no finished weights")
        return load_verified(self.weights_path(key), row[1], self.job(key).model)

    def snapshot_weights(self, key: str, epoch: int) -> dict[str, torch.Tensor]:
        row = self.db.execute("SELECT sha256 FROM snapshots WHERE job = ? AND epoch = ?", (key, epoch)).fetchone()
        if row is None:
            raise StoreError(f"{self.root}: job {key} has no snapshot at epoch {epoch}")
        return load_verified(self.snapshot_path(key, epoch), row[0], self.job(key).model)

    def snapshot_epochs(self, key: str) -> list[int]:
        return [e for (e,) in self.db.execute("SELECT epoch FROM snapshots WHERE job = ? ORDER BY epoch", (key,))]

    def history(self, key: str) -> list[dict]:
        keys = ("epoch", "train_loss", "eval_loss", "eval_accuracy", "seconds")
        rows = self.db.execute(f"SELECT {', '.join(keys)} FROM epochs WHERE job = ? ORDER BY epoch", (key,))
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def final_accuracy(self, key: str) -> float | None:
        row = self.db.execute("SELECT final_accuracy FROM jobs WHERE key = ? AND status = 'done'", (key,)).fetchone()
        return None if row is None else row[0]

    def cached_distance(self, a: str, b: str, epoch: int) -> float | None:
        row = self.db.execute("SELECT distance FROM distances WHERE a = ? AND b = ? AND epoch = ?",
                              (a, b, epoch)).fetchone()
        return None if row is None else row[0]

    def cache_distance(self, a: str, b: str, epoch: int, value: float) -> None:
        self.db.execute("INSERT OR REPLACE INTO distances VALUES (?, ?, ?, ?)", (a, b, epoch, value))

    def plans(self) -> list[dict]:
        keys = ("id", "experiment", "dataset", "spec", "preset", "source", "updated")
        rows = self.db.execute(f"SELECT {', '.join(keys)} FROM plans ORDER BY experiment, dataset").fetchall()
        result = []
        for row in rows:
            item = dict(zip(keys, row, strict=True))
            item["spec"], item["preset"] = json.loads(item["spec"]), json.loads(item["preset"])
            result.append(item)
        return result

    def roles(self, plan: str) -> list[Role]:
        rows = self.db.execute("SELECT plan, model, sigma, repeat, stream, job FROM roles WHERE plan = ?", (plan,))
        return [Role(*row) for row in rows]

    def replace_series(self, plan: str, rows: list[dict]) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM series WHERE plan = ?", (plan,))
            for row in rows:
                db.execute("INSERT INTO series VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           (plan, row["series"], row["kind"], row["x"], row["mean"], row["std"], row["n"],
                            json.dumps(row["values"])))

    def series(self, plan: str) -> list[dict]:
        keys = ("series", "kind", "x", "mean", "std", "n", "vals")
        rows = self.db.execute(f"SELECT {', '.join(keys)} FROM series WHERE plan = ? ORDER BY series, x", (plan,))
        result = []
        for row in rows:
            item = dict(zip(keys, row, strict=True))
            item["values"] = json.loads(item.pop("vals"))
            result.append(item)
        return result

    def record_timing(self, command: str, started: float, seconds: float, jobs_trained: int, detail: dict) -> None:
        self.db.execute("INSERT INTO timings (command, started, seconds, jobs_trained, detail) VALUES (?, ?, ?, ?, ?)",
                        (command, started, seconds, jobs_trained, json.dumps(detail, sort_keys=True)))

    def timings(self) -> list[dict]:
        keys = ("command", "started", "seconds", "jobs_trained", "detail")
        rows = self.db.execute(f"SELECT {', '.join(keys)} FROM timings ORDER BY id").fetchall()
        return [dict(zip(keys, row, strict=True)) for row in rows]


def load_verified(path: Path, sha: str, model: ModelConfig) -> dict[str, torch.Tensor]:
    """Load weights and check their SHA-256 and their fit to ``model``."""
    weights = load_weights(path)
    actual = weights_sha256(weights)
    if actual != sha:
        raise StoreError(f"{path}: content hash {actual[:16]}... does not match the store's {sha[:16]}...")
    check_state(model, weights)
    return weights
