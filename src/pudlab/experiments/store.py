"""The result store: a directory with a SQLite database (WAL) and safetensors weights beside it.

Layout::

    STORE/pudlab.sqlite                      jobs, per-epoch metrics, plans, roles, series
    STORE/weights/<job key>.safetensors      final weights of each finished job
    STORE/snapshots/<job key>/e<N>.safetensors   per-epoch snapshots (Fig. 2)
    STORE/inits/<sha256>.safetensors         the shared initial weight sets
    STORE/checkpoints/<name>.pt              training state of unfinished units (removed when committed)
    STORE/pudlab.lock                        the writer lock (PID and start time of its holder)

Crash safety: weight files are written to a temporary name and renamed; a job becomes ``done``
only in the transaction that also stores its epochs, after its files are complete. A job whose
process died is still ``pending``/``running`` (abandoned: :func:`writer_holder` finds no writer) and is
trained again (from its checkpoint).

One writer per store: a writer holds an exclusive ``flock`` on ``pudlab.lock`` while open (the OS
releases it when the holder dies, so a killed run never leaves a stale lock); a second writer is
refused with the holder's PID and start time, or waits (``wait=True``). Readers
(``read_only=True``) take no lock and never write: they open the database read-only (``mode=ro``,
or ``immutable=1`` on a read-only medium) and work on an in-memory copy, so derived tables they
compute (series, distances) never reach the disk. The store-read API on top of this class is
:func:`pudlab.experiments.results.open_store` (``pudlab.open_store``).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
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
from pudlab.experiments.jobs import Expansion, Job, Role
from pudlab.io import NOT_WRITABLE, atomic_path, load_weights, save_weights, weights_sha256
from pudlab.model import ModelDefinition, check_state, initial_state

if TYPE_CHECKING:
    from pudlab.experiments.worker import JobOutcome

DB_FILE = "pudlab.sqlite"
LOCK_FILE = "pudlab.lock"
CHECKPOINT_DIR = "checkpoints"
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


_HELD: dict[str, list] = {}
"""Writer locks this process holds: resolved root -> [fd, open Store count]."""


def _acquire_lock(root: Path, wait: bool) -> str:
    """Take the writer lock of ``root`` (re-entrant within this process); return its key."""
    key = str(root.resolve())
    if key in _HELD:
        _HELD[key][1] += 1
        return key
    path = root / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        if exc.errno not in NOT_WRITABLE:
            raise
        raise StoreError(f"{root}: cannot write the store there ({exc.strerror}); choose a writable --store") from exc
    try:  # retried briefly: a reader probing the lock (writer_holder) holds it for microseconds
        for attempt in range(4):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == 3:
                    raise
                time.sleep(0.05)
    except BlockingIOError:
        holder = _lock_holder(path)
        if not wait:
            os.close(fd)
            raise StoreError(f"{root}: in use by another writer ({holder}); wait for it to finish, "
                             "or pass --wait to queue behind it") from None
        os.write(2, f"{root}: waiting for the writer holding it ({holder})\n".encode())
        fcntl.flock(fd, fcntl.LOCK_EX)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"pid": os.getpid(), "started": stamp, "host": socket.gethostname()}).encode(), 0)
    _HELD[key] = [fd, 1]
    return key


def writer_holder(root: str | os.PathLike) -> str | None:
    """Who holds the writer lock of ``root`` (PID, host, start time); None when no writer runs."""
    root = Path(root)
    if str(root.resolve()) in _HELD:
        return f"this process, pid {os.getpid()}"
    try:
        fd = os.open(root / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return None  # no lock file: no writer ever held it
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # released when fd closes
        return None
    except BlockingIOError:
        return _lock_holder(root / LOCK_FILE)
    finally:
        os.close(fd)


def _release_lock(key: str) -> None:
    held = _HELD.get(key)
    if held is None:
        return
    held[1] -= 1
    if held[1] == 0:
        del _HELD[key]
        os.close(held[0])  # closing the descriptor releases the flock


def _lock_holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
        return f"pid {info['pid']} on {info.get('host', '?')}, started {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"


def _connect_read_only(db_path: Path) -> sqlite3.Connection:
    """An in-memory copy of the database, read without writing anything (works on read-only media)."""
    uri = db_path.resolve().as_uri()
    errors = []
    # no WAL file: the last writer closed cleanly, and immutable reading creates no -wal/-shm files;
    # a WAL file (a writer is open, or died): read-only mode, which reads the WAL too
    wal = db_path.with_name(db_path.name + "-wal").exists()
    for query in (("mode=ro", "immutable=1") if wal else ("immutable=1", "mode=ro")):
        try:
            source = sqlite3.connect(f"{uri}?{query}", uri=True)
            try:
                memory = sqlite3.connect(":memory:", isolation_level=None)
                source.backup(memory)
                return memory
            finally:
                source.close()
        except sqlite3.DatabaseError as exc:
            errors.append(f"{query}: {exc}")
    raise StoreError(f"{db_path}: cannot read the database ({'; '.join(errors)})")


def remove_temp_files(root: Path) -> int:
    """Delete the temporary files of writes that a killed writer left behind; return how many."""
    count = 0
    for folder in (root / "weights", root / "inits", root / "previews", root / CHECKPOINT_DIR):
        for temp in folder.glob(".*.tmp") if folder.is_dir() else ():
            temp.unlink(missing_ok=True)
            count += 1
    for temp in (root / "snapshots").glob("*/.*.tmp") if (root / "snapshots").is_dir() else ():
        temp.unlink(missing_ok=True)
        count += 1
    return count


class Store:
    """A result store directory (see the module docstring). Use as a context manager."""

    def __init__(self, root: str | os.PathLike, *, create: bool = True, read_only: bool = False,
                 wait: bool = False) -> None:
        self.root = Path(root)
        self.read_only = read_only
        self._lock: str | None = None
        db_path = self.root / DB_FILE
        if not db_path.exists() and (not create or read_only):
            raise StoreError(f"{self.root}: not a pudlab store (no {DB_FILE}); run `pudlab run` or `pudlab reproduce` first")
        if read_only:
            self.db = _connect_read_only(db_path)
        else:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                if exc.errno not in NOT_WRITABLE:
                    raise
                raise StoreError(f"{self.root}: cannot create the store ({exc.strerror}); choose a writable --store") from exc
            self._lock = _acquire_lock(self.root, wait)
            try:
                self.db = sqlite3.connect(db_path, timeout=60, isolation_level=None)
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=FULL")
                self.db.executescript(_SCHEMA)
            except sqlite3.DatabaseError as exc:
                self.close()
                raise StoreError(f"{db_path}: not a usable SQLite database ({exc})") from exc
            remove_temp_files(self.root)
        try:
            version = self.meta("schema_version")
        except sqlite3.DatabaseError as exc:
            self.close()
            raise StoreError(f"{db_path}: not a pudlab store database ({exc})") from exc
        if version is None and not read_only:
            self.set_meta("schema_version", SCHEMA_VERSION)
        elif version != SCHEMA_VERSION:
            self.close()
            newer = version is not None and version.isdigit() and int(version) > int(SCHEMA_VERSION)
            raise StoreError(f"{db_path}: store schema {version}, this pudlab reads schema {SCHEMA_VERSION}: " + (
                "written by a newer pudlab; upgrade pudlab (pip install -U pudlab) to read it" if newer else
                "written by an older pudlab; run the experiments again into a new --store (the old store stays "
                "readable by the pudlab that wrote it)"))

    # ------------------------------------------------------------------ basics
    def close(self) -> None:
        if getattr(self, "db", None) is not None:
            self.db.close()
            self.db = None  # type: ignore[assignment]
        if self._lock is not None:
            _release_lock(self._lock)
            self._lock = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
            self.db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            if "full" in str(exc) or "disk" in str(exc):
                raise StoreError(f"{self.root / DB_FILE}: {exc}; nothing of this transaction was stored: "
                                 "free space and rerun the same command") from exc
            raise
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise

    def checkpoint_dir(self) -> Path:
        """Where units keep their training state until committed."""
        return self.root / CHECKPOINT_DIR

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

    def ensure_init(self, model: ModelDefinition, seed: int) -> str:
        """Save the seeded initial weights for ``model`` once; return their SHA-256."""
        weights = initial_state(model, init_seed=seed)
        sha = weights_sha256(weights)
        path = self.root / "inits" / f"{sha}.safetensors"
        if not path.exists():
            save_weights(path, weights, {"format": "pudlab.weights/1", "kind": "initial"})
        self.db.execute("INSERT OR IGNORE INTO inits VALUES (?, ?, ?, ?)",
                        (sha, json.dumps(model.to_dict(), sort_keys=True), seed, str(path.relative_to(self.root))))
        return sha

    def load_init(self, sha: str, model: ModelDefinition) -> dict[str, torch.Tensor]:
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

    def complete_jobs(self, outcomes: Iterable[JobOutcome]) -> None:
        """Record finished jobs in one transaction (their files must already be in place)."""
        with self.transaction() as db:
            for outcome in outcomes:
                self._complete(db, outcome)

    def _complete(self, db: sqlite3.Connection, outcome: JobOutcome) -> None:
        key = outcome.key
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


def load_verified(path: Path, sha: str, model: ModelDefinition) -> dict[str, torch.Tensor]:
    """Load weights and check their SHA-256 and their fit to ``model``."""
    weights = load_weights(path)
    actual = weights_sha256(weights)
    if actual != sha:
        raise StoreError(f"{path}: content hash {actual[:16]}... does not match the store's {sha[:16]}...")
    check_state(model, weights)
    return weights
