"""What travels in Flower's messages: weights, submissions, proof bundles and the spec as records.

Every payload is one of Flower's record types inside a ``Message``'s ``RecordDict``:

* weights: an ``ArrayRecord`` keyed by parameter name (float32 arrays, bit for bit);
* a client's submission: ``arrays`` (its model), ``metrics`` (``client``, ``num-examples`` = the
  claimed sample count, ``claimed-steps``, ``real-steps``) and ``config`` (``role``: the
  simulation's ground truth, for the records only; ``pending``: the client waits for the round's
  other submissions, as a thief or an adaptive attacker does);
* a proof bundle: an ``ArrayRecord`` with one uint8 array per file of the bundle directory, keyed
  by its relative path (``manifest.json``, ``initial.safetensors``, ``checkpoints/...``,
  ``batches.npy``, ``shared/x.npy``, ``shared/y.npy``). The receiver writes them under a fresh
  directory, refusing any path that is not a plain relative name, and
  :func:`pudlab.pol.bundle.open_bundle` then checks every byte against the manifest's SHA-256
  table.

:func:`payload_bytes` is the size of a message's records (Flower's ``count_bytes``: array data
with its NumPy headers, config and metric values), what the cost tables report.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

from pudlab.errors import BundleError
from pudlab.fl.flower import FlowerError
from pudlab.fl.records import Submission, Weights
from pudlab.fl.spec import AdversarySpec, SimulationSpec
from pudlab.fl.spec_reader import spec_from_dict
from pudlab.io import write_bytes_atomic
from pudlab.pol.manifest import check_relative_path

SPEC_KEY = "pudlab-spec"
"""Run-config keys of the Flower App (``[tool.flwr.app.config]``)."""
STORE_KEY = "pudlab-store"
DEFENCES_KEY = "pudlab-defences"
ROUNDS_KEY = "pudlab-rounds"
DATA_DIR_KEY = "pudlab-data-dir"
RUN_CONFIG_KEYS = (SPEC_KEY, STORE_KEY, DEFENCES_KEY, ROUNDS_KEY, DATA_DIR_KEY)

TRAIN = "train"
"""Local training from the round's global model (Flower's ``train`` category)."""
ADAPT = "train.adapt"
"""The round's other submissions, sent to the clients that wait for them (thieves, adaptive attackers)."""
CHALLENGE = "query.pol"
"""A PoL challenge: the client answers with its proof bundle of the round."""
FINISH = "query.finish"
"""The run is over: the client removes its working folder."""


# ----------------------------------------------------------------------------------- spec
def spec_to_json(spec: SimulationSpec) -> str:
    """The validated spec and its source as one JSON string (a run-config value).

    Adversary tables keep ``kind``, ``clients`` and the values that differ from the defaults
    (the reader accepts only the keys of each kind; the others are at their defaults).
    """
    data = spec.to_dict()
    defaults = {item.name: item.default for item in dataclasses.fields(AdversarySpec)}
    data["adversaries"] = [{key: value for key, value in table.items()
                            if key in ("kind", "clients") or value != defaults.get(key)}
                           for table in data["adversaries"]]
    return json.dumps({"spec": data, "source": spec.source}, sort_keys=True)


def spec_from_json(text: str) -> SimulationSpec:
    """:func:`spec_to_json`'s inverse (validated again)."""
    data = json.loads(text)
    return spec_from_dict(data["spec"], data["source"])


# ----------------------------------------------------------------------------------- record values
def as_int(value: object, what: str) -> int:
    """A config / metric value as an int (a :class:`~pudlab.fl.flower.FlowerError` naming ``what`` if it is none)."""
    if isinstance(value, bool | int | float | str):
        try:
            return int(value)
        except ValueError:
            pass
    raise FlowerError(f"{what} = {value!r:.60}; expected an integer")


def array_record(content: RecordDict, key: str) -> ArrayRecord:
    """``content[key]``, which must be an ``ArrayRecord``."""
    record = content.get(key)
    if not isinstance(record, ArrayRecord):
        raise FlowerError(f"message record {key!r} is missing or not an ArrayRecord")
    return record


def config_record(content: RecordDict, key: str) -> ConfigRecord:
    """``content[key]``, which must be a ``ConfigRecord``."""
    record = content.get(key)
    if not isinstance(record, ConfigRecord):
        raise FlowerError(f"message record {key!r} is missing or not a ConfigRecord")
    return record


def metric_record(content: RecordDict, key: str) -> MetricRecord:
    """``content[key]``, which must be a ``MetricRecord``."""
    record = content.get(key)
    if not isinstance(record, MetricRecord):
        raise FlowerError(f"message record {key!r} is missing or not a MetricRecord")
    return record


# ----------------------------------------------------------------------------------- weights
def weights_record(weights: Mapping[str, torch.Tensor]) -> ArrayRecord:
    """A model as an ``ArrayRecord`` (names and order kept, arrays bit for bit)."""
    return ArrayRecord({name: Array(np.ascontiguousarray(value.detach().cpu().numpy()))
                        for name, value in weights.items()})


def record_weights(record: ArrayRecord) -> Weights:
    """:func:`weights_record`'s inverse: float32 tensors that own their memory."""
    return {name: torch.from_numpy(np.array(array.numpy(), copy=True)) for name, array in record.items()}


# ----------------------------------------------------------------------------------- submissions
def submission_content(submission: Submission | None, *, client: int, role: str, claimed_samples: int,
                       pending: bool) -> RecordDict:
    """A client's reply to ``train`` / ``train.adapt`` (``submission`` None: a pending thief)."""
    arrays = ArrayRecord() if submission is None else weights_record(submission.weights)
    metrics = MetricRecord({
        "client": client,
        "num-examples": claimed_samples if submission is None else submission.claimed_samples,
        "claimed-steps": 0 if submission is None else submission.claimed_steps,
        "real-steps": 0 if submission is None else submission.real_steps,
    })
    return RecordDict({"arrays": arrays, "metrics": metrics,
                       "config": ConfigRecord({"role": role, "pending": pending})})


def content_submission(content: RecordDict) -> tuple[Submission, bool]:
    """(the submission, pending) of a ``train`` / ``train.adapt`` reply (bundle: None)."""
    metrics = metric_record(content, "metrics")
    config = config_record(content, "config")
    submission = Submission(as_int(metrics["client"], "client"), str(config["role"]),
                            record_weights(array_record(content, "arrays")),
                            as_int(metrics["num-examples"], "num-examples"),
                            as_int(metrics["claimed-steps"], "claimed-steps"), as_int(metrics["real-steps"], "real-steps"))
    return submission, bool(config["pending"])


def oracle_content(global_weights: Weights, submissions: Sequence[Submission]) -> RecordDict:
    """``train.adapt``'s content: the global model and every submission already made this round."""
    content = RecordDict({"arrays": weights_record(global_weights)})
    for submission in submissions:
        content[f"client-{submission.client}"] = weights_record(submission.weights)
    content["oracle"] = ConfigRecord({
        "clients": [s.client for s in submissions], "roles": [s.role for s in submissions],
        "claimed-samples": [s.claimed_samples for s in submissions],
        "claimed-steps": [s.claimed_steps for s in submissions], "real-steps": [s.real_steps for s in submissions],
    })
    return content


def oracle_submissions(content: RecordDict) -> dict[int, Submission]:
    """:func:`oracle_content`'s submissions by client (bundles: None)."""
    oracle = config_record(content, "oracle")
    columns = []
    for key in ("clients", "roles", "claimed-samples", "claimed-steps", "real-steps"):
        value = oracle[key]
        if not isinstance(value, list):
            raise FlowerError(f"oracle record {key!r} is not a list")
        columns.append(value)
    result = {}
    for client, role, samples, claimed, real in zip(*columns, strict=True):
        index = as_int(client, "oracle client")
        result[index] = Submission(index, str(role), record_weights(array_record(content, f"client-{index}")),
                                   as_int(samples, "claimed-samples"), as_int(claimed, "claimed-steps"),
                                   as_int(real, "real-steps"))
    return result


# ----------------------------------------------------------------------------------- proof bundles
def bundle_record(bundle: Path) -> ArrayRecord:
    """Every file of the bundle directory as a uint8 array keyed by its relative path (sorted)."""
    files = sorted(path for path in bundle.rglob("*") if path.is_file())
    return ArrayRecord({path.relative_to(bundle).as_posix(): Array(np.frombuffer(path.read_bytes(), dtype=np.uint8))
                        for path in files})


def write_bundle(record: ArrayRecord, out: Path) -> Path:
    """Write a received bundle under ``out`` (which must not exist); paths are checked first."""
    names = list(record.keys())
    for name in names:
        check_relative_path(name, "received bundle")
    if out.exists():
        raise BundleError(f"{out}: a received bundle's folder must be new")
    for name in names:
        array = record[name].numpy()
        if array.dtype != np.uint8 or array.ndim != 1:
            raise BundleError(f"received bundle: {name} is not a byte array ({array.dtype}, {array.shape})")
        write_bytes_atomic(out / name, array.tobytes())
    return out


# ----------------------------------------------------------------------------------- sizes
def payload_bytes(message: Message) -> int:
    """Bytes of a message's records (arrays with their headers, config and metric values)."""
    if message.has_error() or not message.has_content():
        return 0
    return sum(record.count_bytes() for record in message.content.values())


__all__ = [
    "ADAPT",
    "array_record",
    "as_int",
    "config_record",
    "metric_record",
    "CHALLENGE",
    "DATA_DIR_KEY",
    "DEFENCES_KEY",
    "FINISH",
    "ROUNDS_KEY",
    "RUN_CONFIG_KEYS",
    "SPEC_KEY",
    "STORE_KEY",
    "TRAIN",
    "bundle_record",
    "content_submission",
    "oracle_content",
    "oracle_submissions",
    "payload_bytes",
    "record_weights",
    "spec_from_json",
    "spec_to_json",
    "submission_content",
    "weights_record",
    "write_bundle",
]
