"""The types a federated round passes between its steps, and the round record it stores.

In memory only: :class:`Submission` (what a client hands in, and what it really did) and
:class:`ChallengeRequest` (everything one PoL challenge needs). Stored as ``record.json`` per round
(see :mod:`pudlab.fl.store`): :class:`RoundRecord`, made of :class:`ClientRecord`,
:class:`AggregationRecord`, :class:`PolSummary` (with every :class:`ChallengeOutcome`) and
:class:`ChallengerUtility`. Each stored type is a :class:`pudlab.records.Record`: ``to_dict()`` is
the JSON written, ``from_dict()`` reads it back, and ``from_dict(x).to_dict() == x``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Self

import torch

from pudlab.data.dataset import LabeledImages
from pudlab.fl.partition import ClientData
from pudlab.fl.spec import SimulationSpec
from pudlab.model import ModelConfig
from pudlab.records import Record, record_from_dict, require_mapping

Weights = dict[str, torch.Tensor]


# ----------------------------------------------------------------------------------- in memory
@dataclass
class Submission:
    """What one client hands in, and what it really did (the simulation knows; the server does not)."""

    client: int
    role: str
    """honest, or the adversary kind."""
    weights: Weights
    claimed_samples: int
    claimed_steps: int
    real_steps: int
    bundle: Path | None = None
    """The proof bundle the client answers a challenge with (PoL defences only)."""

    @property
    def cheater(self) -> bool:
        return self.role != "honest"


@dataclass(frozen=True, eq=False)
class ChallengeRequest:
    """Everything the challenge of one client in one round needs (see :mod:`pudlab.fl.challenge`)."""

    spec: SimulationSpec
    model_config: ModelConfig
    round: int
    global_weights: Weights
    client: ClientData
    submission: Submission
    shared_data: LabeledImages
    """O(T_k) at the client's sigma: what the client shares with the verifier."""
    sigma: float
    noise_seed: int


# ----------------------------------------------------------------------------------- stored
@dataclass(frozen=True)
class ChallengeOutcome(Record):
    """The verdict of one PoL challenge."""

    client: int
    accepted: bool
    reason: str
    """One line: why accepted / rejected."""
    distances: tuple[float, ...] = ()
    """F-norm between the claimed and the replayed checkpoint, per verified segment."""
    thresholds: tuple[float, ...] = ()
    """Acceptance threshold of each verified segment."""
    seconds: float = 0.0
    role: str | None = None
    """The challenged client's role (set by the round, which knows it; the verifier does not)."""

    OMIT_NONE = ("role",)
    DERIVED = ("max_distance", "max_score")

    @property
    def max_distance(self) -> float | None:
        return max(self.distances) if self.distances else None

    @property
    def max_score(self) -> float | None:
        """max over segments of distance / threshold (> 1 rejects; inf for a distance over threshold 0)."""
        if not self.distances:
            return None
        scores = [d / t if t > 0 else (0.0 if d == 0 else math.inf)
                  for d, t in zip(self.distances, self.thresholds, strict=True)]
        return max(scores)


Challenger = Callable[[ChallengeRequest], ChallengeOutcome]
"""A server's challenge procedure (default :func:`pudlab.fl.challenge.pol_challenge`)."""


@dataclass(frozen=True)
class ClientRecord(Record):
    """One client's submission in one round, as recorded."""

    client: int
    role: str
    claimed_samples: int
    claimed_steps: int
    real_steps: int
    distance_to_global: float
    accepted: bool
    """Passed its PoL challenge (or was not challenged)."""
    aggregated: bool
    """In the aggregate (accepted and kept by the aggregation rule)."""


@dataclass(frozen=True)
class AggregationRecord(Record):
    """How the server aggregated one round."""

    rule: str
    """fedavg, krum, multikrum, or none (every update rejected)."""
    reason: str | None = None
    """Why the rule differs from the defence's (every update rejected, too few for Krum)."""
    f: int | None = None
    """Krum's effective f (after PoL rejections)."""
    m: int | None = None
    """Multi-Krum's effective m."""
    selected_clients: tuple[int, ...] | None = None
    """Clients in the aggregate."""
    scores: dict[int, float] | None = None
    """Per client: its Krum score, or its FedAvg weight."""

    OMIT_NONE = ("reason", "f", "selected_clients", "scores")

    def to_dict(self) -> dict[str, Any]:
        """As written since the first version: ``m`` (null for the coordinate-wise rules) comes with ``f``."""
        data = super().to_dict()
        if self.f is None:
            del data["m"]
        return data


@dataclass(frozen=True)
class PolSummary(Record):
    """The PoL challenges of one round."""

    challenges_issued: int
    challenged: tuple[int, ...]
    rejected: tuple[int, ...]
    honest_challenged: int
    honest_wrongly_rejected: int
    cheaters_challenged: int
    cheaters_caught: int
    outcomes: tuple[ChallengeOutcome, ...]
    """Every challenge's outcome, with the client's role."""

    @classmethod
    def of(cls, submissions: Sequence[Submission], challenges: Sequence[ChallengeOutcome]) -> PolSummary:
        """The summary of ``challenges`` (outcomes without roles) over the round's ``submissions``."""
        by_client = {s.client: s for s in submissions}
        honest = [c for c in challenges if not by_client[c.client].cheater]
        cheaters = [c for c in challenges if by_client[c.client].cheater]
        return cls(
            challenges_issued=len(challenges),
            challenged=tuple(c.client for c in challenges),
            rejected=tuple(c.client for c in challenges if not c.accepted),
            honest_challenged=len(honest),
            honest_wrongly_rejected=sum(not c.accepted for c in honest),
            cheaters_challenged=len(cheaters),
            cheaters_caught=sum(not c.accepted for c in cheaters),
            outcomes=tuple(replace(c, role=by_client[c.client].role) for c in challenges),
        )


@dataclass(frozen=True)
class SharedDataPrivacy(Record):
    """How much the obfuscated data O(T) a challenger received reveals of T."""

    psnr_db: float | None
    """PSNR of O(T) against T (None: no noise, infinite)."""
    noise_to_signal: float
    """Noise std / pixel std of T."""


@dataclass(frozen=True)
class ChallengerUtility(Record):
    """What the challenger learns from the obfuscated data it received (accuracy on T_e).

    Not :attr:`measured` when the challenger has received nothing and has no data of its own.
    """

    received_clients: tuple[int, ...]
    received_samples: int
    challenger: str | int | None = None
    """server, or a client index (from ``[pol] challenger``)."""
    privacy: SharedDataPrivacy | None = None
    """Of the received data (None when nothing was received)."""
    sigma: tuple[float, ...] = ()
    """The received clients' sigmas."""
    accuracy_obfuscated: float | None = None
    """A model trained on the received O(T) (plus the challenger's own data)."""
    accuracy_clean: float | None = None
    """The same model trained on the same data, clean."""
    baseline: str | None = None
    """What the gain is over: chance (server), or the client's own data."""
    baseline_accuracy: float | None = None
    gain: float | None = None
    """accuracy_obfuscated - baseline_accuracy."""

    @property
    def measured(self) -> bool:
        return self.accuracy_obfuscated is not None

    def to_dict(self) -> dict[str, Any]:
        """Every field; only what was received when nothing was :attr:`measured`."""
        data = super().to_dict()
        return data if self.measured else {key: data[key] for key in ("received_clients", "received_samples")}


@dataclass(frozen=True)
class RoundRecord(Record):
    """What happened in one round of one defence (round 0: the initial model's accuracy only)."""

    round: int
    defence: str
    accuracy: float
    """Of the new global model on T_e."""
    loss: float
    clients: tuple[ClientRecord, ...] | None = None
    """Every client's submission (None in round 0)."""
    aggregation: AggregationRecord | None = None
    pairwise_distances: tuple[tuple[float, ...], ...] | None = None
    """F-norm between every two submissions."""
    pol: PolSummary | None = None
    """The round's PoL challenges (None without the PoL defence)."""
    seconds: float | None = None
    utility: ChallengerUtility | None = None
    utility_measured: bool = False
    """The challenger's utility was due this round (``utility`` is then None for a defence without PoL)."""

    @property
    def initial(self) -> bool:
        """Round 0: the initial model, nothing submitted."""
        return self.clients is None

    def to_dict(self) -> dict[str, Any]:
        """Round 0: round, defence, accuracy and loss only; ``utility`` only when it was due
        (``utility_measured`` is whether the key is there)."""
        data = super().to_dict()
        del data["utility_measured"]
        if self.initial:
            data = {key: data[key] for key in ("round", "defence", "accuracy", "loss", "utility")}
        elif self.pairwise_distances is None:
            data["pairwise_distances"] = []
        if not self.utility_measured:
            del data["utility"]
        return data

    @classmethod
    def from_dict(cls, data: object, *, where: str | None = None) -> Self:
        """Read a stored ``record.json``."""
        where = cls.__name__ if where is None else where
        stored = require_mapping(data, where)
        return record_from_dict(cls, {**stored, "utility_measured": "utility" in stored}, where)


__all__ = [
    "AggregationRecord",
    "ChallengeOutcome",
    "ChallengeRequest",
    "Challenger",
    "ChallengerUtility",
    "ClientRecord",
    "PolSummary",
    "RoundRecord",
    "SharedDataPrivacy",
    "Submission",
    "Weights",
]
