"""The on-disk layout of a simulation store, written by the simulation and read by the report.

Layout::

    STORE/spec.json                               the validated spec, its hash, the client setup
    STORE/<defence>/round_0000/global.safetensors the initial model; record.json: its accuracy
    STORE/<defence>/round_0001/global.safetensors the global model after round 1
    STORE/<defence>/round_0001/record.json        what happened in round 1 (written after the weights)
    STORE/<defence>/progress.json                 {"completed_rounds": r, "spec_sha256": ...}, written last

Every file is written atomically (temporary name, fsync, rename). A run killed at any point
continues from the last round whose ``progress.json`` entry was written, with identical results.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from pudlab.errors import StoreError
from pudlab.fl.records import RoundRecord, Weights
from pudlab.fl.spec import DEFENCES, SimulationSpec
from pudlab.io import load_weights, read_json, save_weights, write_json

STORE_FORMAT = "pudlab.fl.store/1"
PROGRESS_FILE = "progress.json"
META_FILE = "spec.json"
RECORD_FILE = "record.json"
WEIGHTS_FILE = "global.safetensors"


def spec_sha256(spec: SimulationSpec) -> str:
    """Hash of everything in the spec that changes a round's result (not rounds, defence, name, workers)."""
    data = spec.to_dict()
    for key in ("rounds", "defence", "name", "workers"):
        data["simulation"].pop(key, None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


class SimulationStore:
    """A simulation folder: per defence, the global model and the record of every finished round."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def defence_dir(self, defence: str) -> Path:
        """``STORE/<defence>/``."""
        return self.root / defence

    def round_dir(self, defence: str, round_index: int) -> Path:
        """``STORE/<defence>/round_NNNN/``."""
        return self.defence_dir(defence) / f"round_{round_index:04d}"

    # ----------------------------------------------------------------- progress
    def completed_rounds(self, defence: str, *, spec_hash: str | None = None) -> int:
        """Rounds finished for ``defence`` (0: only the initial model; -1: nothing).

        With ``spec_hash``, a store made by another spec is refused (resume must not mix specs).
        """
        progress_path = self.defence_dir(defence) / PROGRESS_FILE
        if not progress_path.exists():
            return -1
        progress = read_json(progress_path)
        if progress.get("format") != STORE_FORMAT:
            raise StoreError(f"{progress_path}: not a pudlab FL store (format {progress.get('format')!r})")
        if spec_hash is not None and progress.get("spec_sha256") != spec_hash:
            raise StoreError(
                f"{progress_path}: this store was made by another spec (only rounds and defence may change on "
                "resume); use another --store or the original spec"
            )
        return int(progress["completed_rounds"])

    def save_round(self, defence: str, round_index: int, weights: Weights, record: RoundRecord, *,
                   spec_hash: str) -> None:
        """Write a finished round: weights, then record, then progress (so a kill never leaves a half round)."""
        directory = self.round_dir(defence, round_index)
        save_weights(directory / WEIGHTS_FILE, weights, {"format": "pudlab.weights/1"})
        write_json(directory / RECORD_FILE, record.to_dict())
        write_json(self.defence_dir(defence) / PROGRESS_FILE,
                   {"format": STORE_FORMAT, "completed_rounds": round_index, "spec_sha256": spec_hash})

    # ----------------------------------------------------------------- reading
    def load_global(self, defence: str, round_index: int) -> Weights:
        """The global model after round ``round_index`` (float32)."""
        path = self.round_dir(defence, round_index) / WEIGHTS_FILE
        return {name: value.to(torch.float32) for name, value in load_weights(path).items()}

    def load_records(self, defence: str, *, spec_hash: str | None = None) -> list[RoundRecord]:
        """The records of rounds 0..completed, in order."""
        completed = self.completed_rounds(defence, spec_hash=spec_hash)
        paths = [self.round_dir(defence, r) / RECORD_FILE for r in range(completed + 1)]
        return [RoundRecord.from_dict(read_json(path), where=str(path)) for path in paths]

    def write_meta(self, meta: dict) -> None:
        """``spec.json``: the spec (``to_dict``), its hash, its source and the client setup."""
        write_json(self.root / META_FILE, meta)

    def read_meta(self) -> dict:
        """``spec.json`` (a :class:`pudlab.errors.StoreError` when nothing has run yet)."""
        if not (self.root / META_FILE).exists():
            raise StoreError(f"{self.root}: no spec.json (not a pudlab FL store, or nothing has run yet)")
        return read_json(self.root / META_FILE)

    def load_all(self) -> dict[str, list[RoundRecord]]:
        """Every defence's records (defences in :data:`pudlab.fl.spec.DEFENCES` order, those that ran)."""
        results = {defence: self.load_records(defence) for defence in DEFENCES
                   if (self.defence_dir(defence) / PROGRESS_FILE).exists()}
        if not results:
            raise StoreError(f"{self.root}: no finished round of any defence")
        return results


__all__ = ["PROGRESS_FILE", "STORE_FORMAT", "SimulationStore", "spec_sha256"]
