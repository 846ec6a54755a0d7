"""The types a federated round passes between its steps, and the round record it stores.

In memory only: :class:`Submission` (what a client hands in, and what it really did) and
:class:`ChallengeRequest` (everything one PoL challenge needs). Stored as ``record.json`` per round
(see :mod:`pudlab.fl.store`): :class:`RoundRecord`, made of :class:`ClientRecord`,
:class:`AggregationRecord`, :class:`PolSummary` (with every :class:`ChallengeOutcome`) and
:class:`ChallengerUtility`. Each stored type has ``to_dict()`` (the JSON written) and
``from_dict()`` (reads it back): ``from_dict(x).to_dict() == x`` for every stored record.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pudlab.data.dataset import LabeledImages
from pudlab.fl.partition import ClientData
from pudlab.fl.spec import SimulationSpec
from pudlab.model import ModelConfig

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
class ChallengeOutcome:
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

    def to_dict(self) -> dict:
        data = {"client": self.client, "accepted": self.accepted, "reason": self.reason,
                "distances": list(self.distances), "thresholds": list(self.thresholds),
                "max_distance": self.max_distance, "max_score": self.max_score, "seconds": self.seconds}
        if self.role is not None:
            data["role"] = self.role
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChallengeOutcome:
        """Read :meth:`to_dict`'s output (``max_distance`` and ``max_score`` are recomputed)."""
        return cls(data["client"], data["accepted"], data["reason"], tuple(data.get("distances", ())),
                   tuple(data.get("thresholds", ())), data.get("seconds", 0.0), data.get("role"))


Challenger = Callable[[ChallengeRequest], ChallengeOutcome]
"""A server's challenge procedure (default :func:`pudlab.fl.challenge.pol_challenge`)."""


@dataclass(frozen=True)
class ClientRecord:
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

    def to_dict(self) -> dict:
        return {"client": self.client, "role": self.role, "claimed_samples": self.claimed_samples,
                "claimed_steps": self.claimed_steps, "real_steps": self.real_steps,
                "distance_to_global": self.distance_to_global, "accepted": self.accepted,
                "aggregated": self.aggregated}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClientRecord:
        return cls(data["client"], data["role"], data["claimed_samples"], data["claimed_steps"], data["real_steps"],
                   data["distance_to_global"], data["accepted"], data["aggregated"])


@dataclass(frozen=True)
class AggregationRecord:
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

    def to_dict(self) -> dict:
        data: dict[str, Any] = {"rule": self.rule}
        if self.reason is not None:
            data["reason"] = self.reason
        if self.f is not None:
            data.update(f=self.f, m=self.m)
        if self.selected_clients is not None:
            data["selected_clients"] = list(self.selected_clients)
        if self.scores is not None:
            data["scores"] = {str(client): score for client, score in self.scores.items()}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AggregationRecord:
        selected = data.get("selected_clients")
        scores = data.get("scores")
        return cls(data["rule"], data.get("reason"), data.get("f"), data.get("m"),
                   None if selected is None else tuple(selected),
                   None if scores is None else {int(client): score for client, score in scores.items()})


@dataclass(frozen=True)
class PolSummary:
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
            outcomes=tuple(_with_role(c, by_client[c.client].role) for c in challenges),
        )

    def to_dict(self) -> dict:
        return {"challenges_issued": self.challenges_issued, "challenged": list(self.challenged),
                "rejected": list(self.rejected), "honest_challenged": self.honest_challenged,
                "honest_wrongly_rejected": self.honest_wrongly_rejected,
                "cheaters_challenged": self.cheaters_challenged, "cheaters_caught": self.cheaters_caught,
                "outcomes": [outcome.to_dict() for outcome in self.outcomes]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PolSummary:
        return cls(data["challenges_issued"], tuple(data["challenged"]), tuple(data["rejected"]),
                   data["honest_challenged"], data["honest_wrongly_rejected"], data["cheaters_challenged"],
                   data["cheaters_caught"], tuple(ChallengeOutcome.from_dict(o) for o in data["outcomes"]))


def _with_role(outcome: ChallengeOutcome, role: str) -> ChallengeOutcome:
    return ChallengeOutcome(outcome.client, outcome.accepted, outcome.reason, outcome.distances, outcome.thresholds,
                            outcome.seconds, role)


@dataclass(frozen=True)
class SharedDataPrivacy:
    """How much the obfuscated data O(T) a challenger received reveals of T."""

    psnr_db: float | None
    """PSNR of O(T) against T (None: no noise, infinite)."""
    noise_to_signal: float
    """Noise std / pixel std of T."""

    def to_dict(self) -> dict:
        return {"psnr_db": self.psnr_db, "noise_to_signal": self.noise_to_signal}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SharedDataPrivacy:
        return cls(data.get("psnr_db"), data["noise_to_signal"])


@dataclass(frozen=True)
class ChallengerUtility:
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

    def to_dict(self) -> dict:
        if not self.measured:
            return {"received_clients": list(self.received_clients), "received_samples": self.received_samples}
        return {"challenger": self.challenger, "received_clients": list(self.received_clients),
                "privacy": None if self.privacy is None else self.privacy.to_dict(),
                "received_samples": self.received_samples, "sigma": list(self.sigma),
                "accuracy_obfuscated": self.accuracy_obfuscated, "accuracy_clean": self.accuracy_clean,
                "baseline": self.baseline, "baseline_accuracy": self.baseline_accuracy, "gain": self.gain}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChallengerUtility:
        privacy = data.get("privacy")
        return cls(tuple(data["received_clients"]), data["received_samples"], data.get("challenger"),
                   None if privacy is None else SharedDataPrivacy.from_dict(privacy), tuple(data.get("sigma", ())),
                   data.get("accuracy_obfuscated"), data.get("accuracy_clean"), data.get("baseline"),
                   data.get("baseline_accuracy"), data.get("gain"))


@dataclass(frozen=True)
class RoundRecord:
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

    def to_dict(self) -> dict:
        data: dict[str, Any] = {"round": self.round, "defence": self.defence, "accuracy": self.accuracy,
                                "loss": self.loss}
        if not self.initial:
            data.update(
                clients=[client.to_dict() for client in self.clients or ()],
                aggregation=None if self.aggregation is None else self.aggregation.to_dict(),
                pairwise_distances=[list(row) for row in self.pairwise_distances or ()],
                pol=None if self.pol is None else self.pol.to_dict(),
                seconds=self.seconds,
            )
        if self.utility_measured:
            data["utility"] = None if self.utility is None else self.utility.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RoundRecord:
        """Read a stored ``record.json``."""
        clients = data.get("clients")
        aggregation, pol, utility = data.get("aggregation"), data.get("pol"), data.get("utility")
        return cls(
            round=data["round"], defence=data["defence"], accuracy=data["accuracy"], loss=data["loss"],
            clients=None if clients is None else tuple(ClientRecord.from_dict(c) for c in clients),
            aggregation=None if aggregation is None else AggregationRecord.from_dict(aggregation),
            pairwise_distances=None if clients is None else tuple(tuple(r) for r in data["pairwise_distances"]),
            pol=None if pol is None else PolSummary.from_dict(pol),
            seconds=data.get("seconds"),
            utility=None if utility is None else ChallengerUtility.from_dict(utility),
            utility_measured="utility" in data,
        )


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
