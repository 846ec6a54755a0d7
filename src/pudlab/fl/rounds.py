"""One federated round: collect the submissions, challenge clients, aggregate, evaluate.

Round r depends only on the global model of round r - 1 and the spec: every random choice derives
from the spec's seeds with a key naming its round (``("challenge", round)``, ...).
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from pudlab.fl import adversaries as adv
from pudlab.fl.aggregation import (
    AggregationResult,
    bulyan,
    coordinate_median,
    fedavg,
    krum,
    multi_krum,
    pairwise_squared_distances,
    trimmed_mean,
)
from pudlab.fl.challenge import forge_byzantine
from pudlab.fl.clients import ClientPool
from pudlab.fl.records import (
    AggregationRecord,
    ChallengeOutcome,
    Challenger,
    ChallengeRequest,
    ClientRecord,
    PolSummary,
    RoundRecord,
    Submission,
    Weights,
)
from pudlab.fl.spec import SimulationSpec
from pudlab.metrics import model_distance
from pudlab.seeding import derive_rng

Evaluate = Callable[[Weights], tuple[float, float]]
"""(loss, accuracy) of a model on T_e."""


def uses_pol(defence: str) -> bool:
    """Whether ``defence`` challenges clients (pol, both)."""
    return defence in ("pol", "both")


def effective_krum(accepted: int, spec: SimulationSpec) -> tuple[int, int] | None:
    """(f, m) for Multi-Krum over ``accepted`` updates: f shrunk so that n > 2f + 2, m <= n - f.

    None when fewer than 3 updates are left (Krum is undefined; the server falls back to FedAvg).
    """
    if accepted < 3:
        return None
    f = min(spec.aggregation.f, (accepted - 3) // 2)
    wanted = spec.aggregation.m if spec.aggregation.m is not None else spec.simulation.clients - spec.aggregation.f
    return f, max(1, min(wanted, accepted - f))


def aggregate_round(spec: SimulationSpec, defence: str, submissions: Sequence[Submission],
                    accepted: Sequence[int]) -> tuple[AggregationResult | None, AggregationRecord]:
    """The server's aggregation over the accepted submissions (indices into ``submissions``)."""
    if not accepted:
        return None, AggregationRecord("none", reason="every update was rejected: the global model is kept")
    updates = [submissions[i].weights for i in accepted]
    counts = [submissions[i].claimed_samples for i in accepted]
    rule = "multikrum" if defence in ("multikrum", "both") else spec.aggregation.rule
    reason = f = m = None
    coordinate = _coordinate_rule(rule, updates, spec.aggregation.f)
    if coordinate is not None:
        result, f = coordinate
        if result.rule != rule:
            rule, reason = result.rule, f"only {len(updates)} updates left for {rule}: {result.rule} used"
    elif rule == "fedavg":
        result = fedavg(updates, counts)
    elif (params := effective_krum(len(updates), spec)) is None:
        rule, reason = "fedavg", f"only {len(updates)} updates left: Krum needs n > 2f + 2, FedAvg used"
        result = fedavg(updates, counts)
    else:
        f, m = params
        if rule == "krum":
            result = krum(updates, f=f)
        else:
            result = multi_krum(updates, f=f, m=m, sample_counts=counts if spec.aggregation.weighted else None)
    record = AggregationRecord(
        rule, reason, f, m,
        selected_clients=tuple(submissions[accepted[i]].client for i in result.selected),
        scores={submissions[accepted[i]].client: float(score) for i, score in enumerate(result.scores)},
    )
    return result, record


def _coordinate_rule(rule: str, updates: list, f: int) -> tuple[AggregationResult, int | None] | None:
    """(result, f used) of the median / trimmed-mean / Bulyan rules, f shrunk to what the accepted
    updates allow (Bulyan needs n >= 4f + 3, the trimmed mean n > 2f; Bulyan over fewer than 3
    updates is the median); None for other rules."""
    count = len(updates)
    if rule == "bulyan" and count >= 3:
        used = min(f, (count - 3) // 4)
        return bulyan(updates, f=used), used
    if rule == "trimmed_mean":
        used = min(f, (count - 1) // 2)
        return trimmed_mean(updates, f=used), used
    if rule in ("median", "bulyan"):
        return coordinate_median(updates), None
    return None


def adapt_submissions(pool: ClientPool, round_index: int, global_weights: Weights,
                      submissions: list[Submission]) -> list[Submission]:
    """Adaptive adversaries (:data:`pudlab.fl.adversaries.ADAPTIVE_ROLES`) replace their honest models
    with what the round's honest updates and the rule allow; their PoL answer, if any, is their real
    checkpoints with the crafted model last (as a Byzantine client's)."""
    spec = pool.spec
    honest = [s.weights for s in submissions if s.role == "honest"]
    result = list(submissions)
    for adversary in spec.adversaries:
        if adversary.kind not in adv.ADAPTIVE_ROLES:
            continue
        colluders = [i for i, s in enumerate(submissions) if s.client in adversary.clients and s.role == adversary.kind]
        if not colluders:
            continue
        crafted = adv.adaptive_models(adversary, global_weights, honest, [submissions[i].weights for i in colluders],
                                      clients=spec.simulation.clients, f=spec.aggregation.f,
                                      rng=derive_rng(spec.simulation.seed, "adversary", round_index, adversary.kind))
        for index, weights in zip(colluders, crafted, strict=True):
            old = submissions[index]
            bundle = old.bundle
            if bundle is not None:
                real = bundle.rename(bundle.with_name(bundle.name + "_real"))
                bundle = forge_byzantine(real, old.bundle, weights)  # type: ignore[arg-type]
            claimed = int(round(old.claimed_samples * adversary.factor)) if adversary.kind == "inflate" \
                else old.claimed_samples
            result[index] = dataclasses.replace(old, weights=weights, claimed_samples=claimed, bundle=bundle)
    return result


def challenged(spec: SimulationSpec, round_index: int) -> list[int]:
    """Clients the server challenges in this round (all, or a fraction drawn from ``("challenge", round)``)."""
    count = spec.simulation.clients
    if spec.pol.challenge == "all":
        return list(range(count))
    wanted = max(1, int(round(spec.pol.challenge_fraction * count)))
    order = derive_rng(spec.simulation.seed, "challenge", round_index).permutation(count)
    return sorted(int(c) for c in order[:wanted])


def challenge_clients(pool: ClientPool, round_index: int, global_weights: Weights,
                      submissions: Sequence[Submission], challenger: Challenger) -> list[ChallengeOutcome]:
    """Challenge this round's clients, in client order; the outcomes (without roles)."""
    outcomes = []
    for client in challenged(pool.spec, round_index):
        request = ChallengeRequest(pool.spec, pool.model_config, round_index, global_weights, pool.members[client],
                                   submissions[client], pool.shared_data(client), pool.spec.pol.sigma_of(client),
                                   pool.noise_seed(client))
        outcomes.append(challenger(request))
    return outcomes


def run_round(pool: ClientPool, defence: str, round_index: int, global_weights: Weights, work_dir: Path, *,
              challenger: Challenger, evaluate: Evaluate) -> tuple[Weights, RoundRecord]:
    """One round of ``defence``: returns the new global model and the round's record.

    Proof bundles live under ``work_dir`` during the round only.
    """
    started = time.perf_counter()
    proof_dir = work_dir / f"round_{round_index:04d}" if uses_pol(defence) else None
    if proof_dir is not None and proof_dir.exists():
        shutil.rmtree(proof_dir)  # left by an interrupted run
    submissions = adapt_submissions(pool, round_index, global_weights,
                                    pool.submissions(round_index, global_weights, proof_dir=proof_dir))
    challenges: list[ChallengeOutcome] = []
    if uses_pol(defence):
        challenges = challenge_clients(pool, round_index, global_weights, submissions, challenger)
    if proof_dir is not None:
        shutil.rmtree(proof_dir, ignore_errors=True)
    new_global, record = conclude_round(pool.spec, defence, round_index, global_weights, submissions, challenges)
    loss, accuracy = evaluate(new_global)
    return new_global, dataclasses.replace(record, accuracy=accuracy, loss=loss,
                                           seconds=time.perf_counter() - started)


def conclude_round(spec: SimulationSpec, defence: str, round_index: int, global_weights: Weights,
                   submissions: Sequence[Submission],
                   challenges: Sequence[ChallengeOutcome]) -> tuple[Weights, RoundRecord]:
    """The server's part after the challenges: aggregate the accepted submissions, record the round.

    The record's accuracy and loss are NaN and its seconds None: the caller evaluates the new
    global model (any engine: :func:`run_round`, :mod:`pudlab.fl.flower`).
    """
    rejected = {outcome.client for outcome in challenges if not outcome.accepted}
    accepted = [index for index in range(len(submissions)) if index not in rejected]
    result, aggregation = aggregate_round(spec, defence, submissions, accepted)
    new_global = global_weights if result is None else result.aggregate
    distances = pairwise_squared_distances([s.weights for s in submissions])
    accepted_clients = {submissions[i].client for i in accepted}
    record = RoundRecord(
        round=round_index, defence=defence, accuracy=math.nan, loss=math.nan,
        clients=tuple(
            ClientRecord(s.client, s.role, s.claimed_samples, s.claimed_steps, s.real_steps,
                         model_distance(s.weights, global_weights), s.client in accepted_clients,
                         s.client in (aggregation.selected_clients or ()))
            for s in submissions
        ),
        aggregation=aggregation,
        pairwise_distances=tuple(tuple(row) for row in np.sqrt(distances).tolist()),
        pol=PolSummary.of(submissions, challenges) if uses_pol(defence) else None,
    )
    return {name: value.clone() for name, value in new_global.items()}, record  # type: ignore[union-attr]


def round_line(record: RoundRecord) -> str:
    """The one-line log of a finished round."""
    line = f"[{record.defence}] round {record.round}: accuracy {record.accuracy:.4f}"
    pol = record.pol
    if pol:
        line += (f", PoL caught {pol.cheaters_caught}/{pol.cheaters_challenged} cheaters, "
                 f"rejected {pol.honest_wrongly_rejected}/{pol.honest_challenged} honest")
    selected = record.aggregation.selected_clients if record.aggregation else None
    if selected is not None:
        line += f", aggregated {list(selected)}"
    return line + f" ({record.seconds:.1f} s)"


__all__ = [
    "adapt_submissions",
    "aggregate_round",
    "challenge_clients",
    "challenged",
    "conclude_round",
    "effective_krum",
    "round_line",
    "run_round",
    "uses_pol",
]
