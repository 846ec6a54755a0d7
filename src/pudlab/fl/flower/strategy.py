"""A Flower ``Strategy`` that aggregates with pudlab's rules and challenges clients with its PoL verifier.

One round (:meth:`PudlabStrategy.configure_train`, then :meth:`PudlabStrategy.aggregate_train`):

1. ``train`` to every node with the global model (``prove`` set under a PoL defence: every client
   logs its training, not knowing whether it will be challenged);
2. ``train.adapt`` to the clients that replied ``pending`` (thieves, adaptive attackers), with the
   other submissions of the round: the omniscient attacker of pudlab's threat model, made explicit
   as a message (pudlab's own engine hands them over in memory);
3. under a PoL defence, ``query.pol`` to the clients :func:`pudlab.fl.rounds.challenged` selects;
   each bundle is written to the server's work folder and judged by the challenger
   (:func:`pudlab.fl.challenge.pol_challenge`: the FL checks, then
   :func:`pudlab.pol.verify_bundle`);
4. :func:`pudlab.fl.rounds.conclude_round` aggregates the accepted updates with the spec's rule
   (Multi-Krum under the multikrum / both defences) and records the round.

The round's ``MetricRecord``: ``accepted``, ``rejected``, ``rejected-clients``, ``rejection-codes``
(:data:`REJECTION_CODES`), ``aggregated-clients``, ``bytes-down`` / ``bytes-up``. Each rejection's
one-line reason is logged and kept, with the whole round, in :attr:`PudlabStrategy.records`.
Evaluation is central (the caller's ``evaluate_fn``); ``configure_evaluate`` sends nothing.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from pudlab.data.dataset import LabeledImages
from pudlab.fl.challenge import pol_challenge
from pudlab.fl.flower import FlowerError
from pudlab.fl.flower.transport import (
    ADAPT,
    CHALLENGE,
    TRAIN,
    array_record,
    content_submission,
    oracle_content,
    payload_bytes,
    record_weights,
    weights_record,
    write_bundle,
)
from pudlab.fl.partition import ClientData
from pudlab.fl.records import (
    ChallengeOutcome,
    Challenger,
    ChallengeRequest,
    RoundRecord,
    Submission,
    Weights,
)
from pudlab.fl.rounds import challenged, conclude_round, uses_pol
from pudlab.fl.spec import DEFENCES, SimulationSpec
from pudlab.model import ModelConfig

LOG = logging.getLogger("flwr")
REJECTION_CODES = {
    1: "no proof bundle, or a malformed one",
    2: "FL check: the bundle does not start from the round's global model, or claims other local "
       "hyper-parameters or another sample count than the client claimed",
    3: "verifier claim or history check failed (policy, schedule, Adam step bound, moments)",
    4: "replayed segments do not reproduce their checkpoints",
}
"""``rejection-codes`` in a round's metrics."""


def rejection_code(reason: str) -> int:
    """The :data:`REJECTION_CODES` entry of a rejected challenge's reason (0: none of them)."""
    if reason.startswith(("no proof bundle", "malformed bundle")):
        return 1
    if reason.startswith(("the bundle does not start", "the bundle claims", "the bundle shares")):
        return 2
    if " check failed: " in reason:
        return 3
    if "do not reproduce" in reason:
        return 4
    return 0


@dataclass
class RoundCost:
    """Payload bytes of one round by phase (:func:`pudlab.fl.flower.transport.payload_bytes`)."""

    bytes: dict[str, int] = field(default_factory=dict)
    """``model-down``, ``model-up``, ``oracle-down``, ``oracle-up``, ``pol-down``, ``pol-up``."""
    messages: int = 0

    def add(self, phase: str, count: int) -> None:
        self.bytes[phase] = self.bytes.get(phase, 0) + count

    @property
    def total(self) -> int:
        return sum(self.bytes.values())


def wait_for_nodes(grid: Grid, count: int, timeout: float) -> list[int]:
    """The ids of the ``count`` connected nodes (waits for them to connect, at most ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) > count:
            raise FlowerError(f"{len(nodes)} SuperNodes are connected, the spec has {count} clients")
        if len(nodes) == count:
            return nodes
        if time.monotonic() > deadline:
            raise FlowerError(f"only {len(nodes)} of {count} SuperNodes connected within {timeout:.0f} s")
        time.sleep(0.2)


class PudlabStrategy(Strategy):
    """pudlab's aggregation and PoL defence of one spec as a Flower strategy (see the module doc).

    ``defence``: none (the spec's rule), multikrum, pol (the rule over the updates that pass a
    challenge) or both. ``work_dir``: where received bundles are verified (removed after each round).
    """

    def __init__(self, spec: SimulationSpec, defence: str, model_config: ModelConfig, *, work_dir: str | Path,
                 challenger: Challenger = pol_challenge, timeout: float = 3600.0) -> None:
        if defence not in DEFENCES:
            raise FlowerError(f"unknown defence {defence!r}; known: {', '.join(DEFENCES)}")
        self.spec = spec
        self.defence = defence
        self.model_config = model_config
        self.work_dir = Path(work_dir)
        self.challenger = challenger
        self.timeout = timeout
        self.records: dict[int, RoundRecord] = {}
        """Every aggregated round's record (accuracy and loss NaN: evaluation is the caller's)."""
        self.costs: dict[int, RoundCost] = {}
        self._grid: Grid | None = None
        self._global: Weights | None = None
        self._nodes: dict[int, int] = {}
        """Client index -> node id, learnt from the replies."""

    # ----------------------------------------------------------------- Flower's interface
    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        """``train`` to every node (all clients train every round)."""
        self._grid = grid
        self._global = record_weights(arrays)
        cost = self.costs.setdefault(server_round, RoundCost())
        messages = []
        for node in wait_for_nodes(grid, self.spec.simulation.clients, self.timeout):
            settings = ConfigRecord({**config, "round": server_round, "prove": uses_pol(self.defence)})
            message = Message(RecordDict({"arrays": weights_record(self._global), "config": settings}),
                              dst_node_id=node, message_type=TRAIN)
            cost.add("model-down", payload_bytes(message))
            messages.append(message)
        cost.messages += len(messages)
        return messages

    def aggregate_train(self, server_round: int,
                        replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Relay to pending clients, challenge, aggregate; the new global model and the round's metrics."""
        if self._grid is None or self._global is None:
            raise FlowerError("aggregate_train before configure_train")
        cost = self.costs.setdefault(server_round, RoundCost())
        submissions, pending = self._collect(server_round, replies, "model-up", cost)
        if pending:
            submissions = self._adapt(server_round, submissions, pending, cost)
        challenges = self._challenge(server_round, submissions, cost) if uses_pol(self.defence) else []
        new_global, record = conclude_round(self.spec, self.defence, server_round, self._global, submissions,
                                            challenges)
        self.records[server_round] = record
        for outcome in challenges:
            if not outcome.accepted:
                LOG.info("pudlab: round %d, client %d rejected: %s", server_round, outcome.client, outcome.reason)
        return weights_record(new_global), self.round_metrics(record, cost)

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        """No client-side evaluation: the global model is evaluated centrally."""
        return []

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return None

    def summary(self) -> None:
        LOG.info("\t├──> pudlab: %d clients, defence %s, rule %s", self.spec.simulation.clients, self.defence,
                 "multikrum" if self.defence in ("multikrum", "both") else self.spec.aggregation.rule)
        LOG.info("\t└──> PoL challenges: %s", "on" if uses_pol(self.defence) else "off")

    # ----------------------------------------------------------------- the phases
    def _exchange(self, messages: list[Message], phase: str, cost: RoundCost) -> list[Message]:
        """Send ``messages``, return the replies (every one of them, or a :class:`FlowerError`)."""
        assert self._grid is not None
        for message in messages:
            cost.add(f"{phase}-down", payload_bytes(message))
        cost.messages += 2 * len(messages)
        replies = list(self._grid.send_and_receive(messages, timeout=self.timeout))
        if len(replies) != len(messages):
            raise FlowerError(f"{phase}: {len(replies)} of {len(messages)} replies within {self.timeout:.0f} s")
        for reply in replies:
            if reply.has_error():
                raise FlowerError(f"{phase}: node {reply.metadata.src_node_id} failed: {reply.error.reason}")
            cost.add(f"{phase}-up", payload_bytes(reply))
        return replies

    def _collect(self, server_round: int, replies: Iterable[Message], phase: str,
                 cost: RoundCost) -> tuple[list[Submission], list[int]]:
        """The submissions in client order and the pending clients, from the ``train`` replies."""
        by_client: dict[int, Submission] = {}
        pending = []
        for reply in replies:
            if reply.has_error():
                raise FlowerError(f"round {server_round}: node {reply.metadata.src_node_id} failed: "
                                  f"{reply.error.reason}")
            cost.add(phase, payload_bytes(reply))
            cost.messages += 1
            submission, waiting = content_submission(reply.content)
            if submission.client in by_client:
                raise FlowerError(f"round {server_round}: two nodes claim to be client {submission.client}")
            by_client[submission.client] = submission
            self._nodes[submission.client] = reply.metadata.src_node_id
            if waiting:
                pending.append(submission.client)
        expected = list(range(self.spec.simulation.clients))
        if sorted(by_client) != expected:
            raise FlowerError(f"round {server_round}: replies from clients {sorted(by_client)}, expected {expected}")
        return [by_client[c] for c in expected], sorted(pending)

    def _adapt(self, server_round: int, submissions: list[Submission], pending: list[int],
               cost: RoundCost) -> list[Submission]:
        """The pending clients' final submissions, given the others (``train.adapt``)."""
        assert self._global is not None
        known = [s for s in submissions if s.weights]  # all but the thieves, who have nothing to show yet
        messages = []
        for client in pending:
            content = oracle_content(self._global, known)
            content["config"] = ConfigRecord({"round": server_round, "prove": uses_pol(self.defence)})
            messages.append(Message(content, dst_node_id=self._nodes[client], message_type=ADAPT))
        result = list(submissions)
        for reply in self._exchange(messages, "oracle", cost):
            submission, _ = content_submission(reply.content)
            result[submission.client] = submission
        return result

    def _challenge(self, server_round: int, submissions: Sequence[Submission], cost: RoundCost) -> list[ChallengeOutcome]:
        """Challenge the selected clients: ask for their bundles, judge each (client order)."""
        assert self._global is not None
        chosen = challenged(self.spec, server_round)
        messages = [Message(RecordDict({"config": ConfigRecord({"round": server_round})}),
                            dst_node_id=self._nodes[client], message_type=CHALLENGE) for client in chosen]
        replies = {self._client_of(reply): reply for reply in self._exchange(messages, "pol", cost)}
        round_dir = self.work_dir / f"round_{server_round:04d}"
        shutil.rmtree(round_dir, ignore_errors=True)
        outcomes = []
        try:
            for client in chosen:
                submission = submissions[client]
                content = replies[client].content
                submission.bundle = (write_bundle(array_record(content, "bundle"), round_dir / f"client_{client:03d}")
                                     if "bundle" in content else None)
                outcomes.append(self.challenger(self._request(server_round, submission)))
        finally:
            shutil.rmtree(round_dir, ignore_errors=True)
        return outcomes

    def _client_of(self, reply: Message) -> int:
        node = reply.metadata.src_node_id
        return next(client for client, known in self._nodes.items() if known == node)

    def _request(self, server_round: int, submission: Submission) -> ChallengeRequest:
        """The challenge of one client as the server sees it: no T_k, no noise key (the bundle holds O(T_k))."""
        assert self._global is not None
        empty = LabeledImages(np.zeros((0, *self.model_config.input_shape), np.float32), np.zeros(0, np.int64),
                              np.zeros(0, np.int64))
        return ChallengeRequest(self.spec, self.model_config, server_round, self._global,
                                ClientData(submission.client, (), empty), submission, empty,
                                self.spec.pol.sigma_of(submission.client), -1)

    @staticmethod
    def round_metrics(record: RoundRecord, cost: RoundCost) -> MetricRecord:
        """The round's ``MetricRecord`` (see the module doc)."""
        outcomes = record.pol.outcomes if record.pol else ()
        rejected = [o for o in outcomes if not o.accepted]
        clients = record.clients or ()
        return MetricRecord({
            "accepted": sum(c.accepted for c in clients),
            "rejected": len(rejected),
            "rejected-clients": [o.client for o in rejected],
            "rejection-codes": [rejection_code(o.reason) for o in rejected],
            "aggregated-clients": [c.client for c in clients if c.aggregated],
            "bytes-down": sum(v for k, v in cost.bytes.items() if k.endswith("-down")),
            "bytes-up": sum(v for k, v in cost.bytes.items() if k.endswith("-up")),
        })


__all__ = ["REJECTION_CODES", "PudlabStrategy", "RoundCost", "rejection_code", "wait_for_nodes"]
