"""A federated-learning simulation: clients, attacks, defences, round by round, resumable.

Data flows: source -> T_t / T_e split -> one S-X-Y-Z sample per client (disjoint) -> R rounds of
[local training from the global model -> (mis)behaviour -> PoL challenges -> aggregation ->
accuracy on T_e] -> the challenger's utility from the obfuscated data it received.

Determinism: every random choice derives from the spec's seeds with :func:`pudlab.seeding.derive_rng`
and a key naming what it is for (``("shuffle", round, client)``, ``("adversary", round, client)``,
``("challenge", round)``, ...), never from a running generator, so round r depends only on the
global model of round r - 1 and the spec. That is what makes a round resumable: the state to keep
is the global model (safetensors) and the round's record (JSON).

Store layout (``STORE/<defence>/``)::

    round_0000/global.safetensors        the initial model (round 0), record.json: its accuracy
    round_0001/global.safetensors        the global model after round 1
    round_0001/record.json               what happened in round 1 (written after the weights)
    progress.json                        {"completed_rounds": r, "spec_sha256": ...}, written last

Every file is written atomically (temporary name, fsync, rename). A run killed at any point
continues from the last round whose ``progress.json`` entry was written, with identical results.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.dataset import LabeledImages, SourceDataset, split_train_eval
from ..errors import PudlabError, StoreError
from ..metrics import model_distance
from ..model import ModelConfig, build_model, initial_state
from ..obfuscation import obfuscate
from ..sampling import draw_sample, label_window
from ..seeding import derive_rng, derive_seed
from ..storage import load_weights, read_json, save_weights, write_json
from ..training import TrainConfig, Trainer, epoch_batches, evaluate, torch_threads, train_model
from . import adversaries as adv
from .aggregation import AggregationResult, fedavg, krum, multi_krum, pairwise_squared_distances
from .spec import DEFENCES, SimulationSpec

Weights = dict[str, torch.Tensor]
STORE_FORMAT = "pudlab.fl.store/1"
PROGRESS_FILE = "progress.json"
Log = Callable[[str], None]


# ----------------------------------------------------------------------------------------- data
@dataclass(frozen=True, eq=False)
class ClientData:
    """One client's local data T_k and how it was drawn."""

    client: int
    labels: tuple[int, ...]
    """Labels the client covers."""
    data: LabeledImages
    """Raw local data T_k (never leaves the client; only O(T_k) is shared in a PoL bundle)."""


def client_label_sets(spec: SimulationSpec, num_classes: int) -> list[tuple[int, ...]]:
    """Each client's covered labels: all (iid), the explicit lists, or the chained window rule."""
    sampling, clients = spec.sampling, spec.simulation.clients
    if sampling.mode == "iid":
        return [tuple(range(num_classes))] * clients
    if sampling.labels:
        for client, labels in enumerate(sampling.labels):
            bad = [label for label in labels if label >= num_classes]
            if bad:
                raise PudlabError(f"{spec.source}: [sampling] labels of client {client}: {bad} outside 0..{num_classes - 1}")
        return [tuple(labels) for labels in sampling.labels]
    setting = sampling.sampling_setting
    windows: list[tuple[int, ...]] = []
    for _ in range(clients):
        reference = windows[-1] if windows else None
        windows.append(label_window(setting, num_classes, reference_labels=reference))
    return windows


def partition_clients(spec: SimulationSpec, train_set: LabeledImages, num_classes: int) -> list[ClientData]:
    """Draw every client's sample of T_t (S-X-Y-Z per client; disjoint when ``sampling.disjoint``)."""
    ratio = spec.sampling.sampling_setting.sampling_ratio
    taken: np.ndarray | None = None
    result = []
    for client, labels in enumerate(client_label_sets(spec, num_classes)):
        positions = draw_sample(train_set.labels, labels, ratio, seed=derive_seed(spec.simulation.seed, "client", client),
                                exclude=taken if spec.sampling.disjoint else None)
        if len(positions) == 0:
            raise PudlabError(f"{spec.source}: client {client} gets no data (labels {list(labels)}, Z={ratio:g})")
        taken = positions if taken is None else np.concatenate([taken, positions])
        result.append(ClientData(client, tuple(labels), train_set.take(positions)))
    return result


# ----------------------------------------------------------------------------------------- local training
@dataclass
class LocalTraining:
    """The result of one client's local training in one round."""

    weights: Weights
    """Model after ``steps_done`` steps."""
    steps_done: int
    schedule: list[np.ndarray]
    """Batch positions (into the client's data) of every step of the full claimed schedule."""
    states: list | None = None
    """PoL ``TrainingState`` (weights and Adam moments) after each real step (``[0]`` the start), when asked for."""


def local_schedule(num_samples: int, spec: SimulationSpec, *, shuffle_seed: int) -> list[np.ndarray]:
    """The batches of all local epochs (epoch order from ``(shuffle_seed, "shuffle", epoch)``)."""
    batches: list[np.ndarray] = []
    for epoch in range(spec.training.local_epochs):
        batches.extend(epoch_batches(num_samples, spec.training.batch_size, shuffle_seed=shuffle_seed, epoch=epoch))
    return batches


def local_train_config(spec: SimulationSpec, shuffle_seed: int) -> TrainConfig:
    return TrainConfig(epochs=spec.training.local_epochs, batch_size=spec.training.batch_size, lr=spec.training.lr,
                       shuffle_seed=shuffle_seed)


def train_local(model_config: ModelConfig, start: Weights, data: LabeledImages, spec: SimulationSpec, *,
                shuffle_seed: int, max_steps: int | None = None, keep_states: bool = False) -> LocalTraining:
    """Adam from ``start`` (fresh optimizer state) over the local schedule, stopping after ``max_steps``.

    The steps are :meth:`pudlab.training.Trainer.step` in the order of
    :func:`pudlab.training.epoch_batches`, the loop :func:`pudlab.pol.prove` runs: a client that
    logs a proof ends with the same bits as one that does not.
    """
    schedule = local_schedule(len(data), spec, shuffle_seed=shuffle_seed)
    trainer = Trainer(model_config, start, data, local_train_config(spec, shuffle_seed))
    steps = len(schedule) if max_steps is None else min(max_steps, len(schedule))
    states = None
    if keep_states:
        from ..pol.replay import capture_state

        states = [capture_state(trainer, 0)]
    trainer.model.train()
    for step, positions in enumerate(schedule[:steps], start=1):
        trainer.step(positions)
        if states is not None:
            states.append(capture_state(trainer, step))
    return LocalTraining(trainer.weights(), steps, schedule, states)


# ----------------------------------------------------------------------------------------- round records
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

    @property
    def max_distance(self) -> float | None:
        return max(self.distances) if self.distances else None

    @property
    def max_score(self) -> float | None:
        """max over segments of distance / threshold (> 1 rejects; inf for a distance over threshold 0)."""
        if not self.distances:
            return None
        scores = [d / t if t > 0 else (0.0 if d == 0 else math.inf) for d, t in zip(self.distances, self.thresholds, strict=True)]
        return max(scores)

    def to_dict(self) -> dict:
        return {"client": self.client, "accepted": self.accepted, "reason": self.reason,
                "distances": list(self.distances), "thresholds": list(self.thresholds),
                "max_distance": self.max_distance, "max_score": self.max_score, "seconds": self.seconds}


Challenger = Callable[["ChallengeRequest"], ChallengeOutcome]


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


def spec_sha256(spec: SimulationSpec) -> str:
    """Hash of everything in the spec that changes a round's result (not rounds, defence, name, workers)."""
    data = spec.to_dict()
    for key in ("rounds", "defence", "name", "workers"):
        data["simulation"].pop(key, None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _round_dir(defence_dir: Path, round_index: int) -> Path:
    return defence_dir / f"round_{round_index:04d}"


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
                    accepted: Sequence[int]) -> tuple[AggregationResult | None, dict]:
    """The server's aggregation over the accepted submissions (indices into ``submissions``)."""
    if not accepted:
        return None, {"rule": "none", "reason": "every update was rejected: the global model is kept"}
    updates = [submissions[i].weights for i in accepted]
    counts = [submissions[i].claimed_samples for i in accepted]
    rule = "multikrum" if defence in ("multikrum", "both") else spec.aggregation.rule
    info: dict = {"rule": rule}
    if rule == "fedavg":
        result = fedavg(updates, counts)
    else:
        params = effective_krum(len(updates), spec)
        if params is None:
            info.update(rule="fedavg", reason=f"only {len(updates)} updates left: Krum needs n > 2f + 2, FedAvg used")
            result = fedavg(updates, counts)
        else:
            f, m = params
            info.update(f=f, m=m)
            if rule == "krum":
                result = krum(updates, f=f)
            else:
                result = multi_krum(updates, f=f, m=m, sample_counts=counts if spec.aggregation.weighted else None)
    info["selected_clients"] = [submissions[accepted[i]].client for i in result.selected]
    info["scores"] = {str(submissions[accepted[i]].client): float(score) for i, score in enumerate(result.scores)}
    return result, info


# ----------------------------------------------------------------------------------------- the simulation
class Simulation:
    """One spec on one source dataset; :meth:`run` runs (or resumes) one defence into ``store``."""

    def __init__(self, spec: SimulationSpec, store: str | Path, *, source: SourceDataset | None = None,
                 data_dir: str | None = None, log: Log | None = None,
                 challenger: Challenger | None = None) -> None:
        self.spec = spec
        self.store = Path(store)
        self.log = log or (lambda message: None)
        if source is None:
            from ..data.sources import load_source

            source = load_source(spec.simulation.dataset, data_dir)
        self.source = source
        split = split_train_eval(source, eval_fraction=spec.simulation.eval_fraction, seed=spec.simulation.split_seed)
        self.eval_set = split.eval
        self.clients = partition_clients(spec, split.train, source.num_classes)
        self.model_config = ModelConfig(source.sample_shape, tuple(spec.model.widths), spec.model.hidden,  # type: ignore[arg-type]
                                        source.num_classes)
        self.initial_weights = initial_state(self.model_config, init_seed=spec.simulation.init_seed)
        self._shared: dict[int, LabeledImages] = {}
        self._challenger = challenger

    # ----------------------------------------------------------------- helpers
    def shared_data(self, client: int) -> LabeledImages:
        """O(T_k) at the client's sigma (keyed noise from ``(seed, "pol-noise", client)``)."""
        if client not in self._shared:
            self._shared[client] = obfuscate(self.clients[client].data, sigma=self.spec.pol.sigma_of(client),
                                             seed=self.noise_seed(client))
        return self._shared[client]

    def noise_seed(self, client: int) -> int:
        return derive_seed(self.spec.simulation.seed, "pol-noise", client)

    def evaluate(self, weights: Weights) -> tuple[float, float]:
        """(loss, accuracy) of ``weights`` on T_e."""
        return evaluate(build_model(self.model_config, weights), self.eval_set)

    def describe(self) -> dict:
        return {
            "dataset": {"name": self.source.name, "description": self.source.description,
                        "fingerprint": self.source.fingerprint, "eval_size": len(self.eval_set)},
            "clients": [{"client": c.client, "labels": list(c.labels), "samples": len(c.data),
                         "role": self.role(c.client, self.spec.simulation.rounds or 1),
                         "sigma": self.spec.pol.sigma_of(c.client)} for c in self.clients],
            "model": self.model_config.to_dict(),
        }

    def role(self, client: int, round_index: int) -> str:
        adversary = self.spec.adversary_of(client)
        if adversary is None or round_index < adversary.start_round:
            return "honest"
        return adversary.kind

    # ----------------------------------------------------------------- one round
    def client_submissions(self, round_index: int, global_weights: Weights, *,
                           proof_dir: Path | None = None) -> list[Submission]:
        """Every client's submission of round ``round_index`` (1-based).

        With ``proof_dir`` (PoL defences), every client logs its training as a proof bundle there
        (cheaters: the forged bundle they would answer a challenge with).
        """
        spec, seed = self.spec, self.spec.simulation.seed
        submissions: dict[int, Submission] = {}
        thieves = []
        for client in self.clients:
            role = self.role(client.client, round_index)
            if role == "thief":
                thieves.append(client)
                continue
            shuffle_seed = derive_seed(seed, "shuffle", round_index, client.client)
            claimed = len(local_schedule(len(client.data), spec, shuffle_seed=shuffle_seed))
            adversary = spec.adversary_of(client.client)
            bundle: Path | None = None
            if role == "lazy":
                assert adversary is not None
                local = train_local(self.model_config, global_weights, client.data, spec, shuffle_seed=shuffle_seed,
                                    max_steps=adv.lazy_steps(claimed, adversary.step_fraction),
                                    keep_states=proof_dir is not None)
                weights, real_steps = local.weights, local.steps_done
                if proof_dir is not None:
                    from .challenge import forge_lazy

                    full = self._prove(client.client, round_index, global_weights, shuffle_seed,
                                       proof_dir / f"client_{client.client:03d}_full")
                    bundle = forge_lazy(full.path, proof_dir / f"client_{client.client:03d}", local.states or [],
                                        claimed_steps=claimed)
            elif proof_dir is not None:
                proof = self._prove(client.client, round_index, global_weights, shuffle_seed,
                                    proof_dir / f"client_{client.client:03d}")
                weights, real_steps, bundle = proof.final_weights, proof.num_steps, proof.path
            else:
                local = train_local(self.model_config, global_weights, client.data, spec, shuffle_seed=shuffle_seed)
                weights, real_steps = local.weights, local.steps_done
            if role in adv.BYZANTINE_ROLES:
                assert adversary is not None
                weights = adv.corrupt(adversary, global_weights, weights,
                                      rng=derive_rng(seed, "adversary", round_index, client.client))
                if bundle is not None:
                    from .challenge import forge_byzantine

                    honest = bundle.rename(bundle.with_name(bundle.name + "_real"))
                    bundle = forge_byzantine(honest, proof_dir / f"client_{client.client:03d}", weights)  # type: ignore[operator]
            submissions[client.client] = Submission(client.client, role, weights, len(client.data), claimed,
                                                    real_steps, bundle)
        for client in thieves:
            adversary = spec.adversary_of(client.client)
            assert adversary is not None
            rng = derive_rng(seed, "adversary", round_index, client.client)
            if adversary.copy == "global":
                stolen = adv.copied_model(global_weights, noise_std=adversary.noise_std, rng=rng)
            else:
                victim = adversary.victim if adversary.victim is not None else self.default_victim()
                stolen = adv.copied_model(submissions[victim].weights, noise_std=adversary.noise_std, rng=rng)
            shuffle_seed = derive_seed(seed, "shuffle", round_index, client.client)
            claimed = len(local_schedule(len(client.data), spec, shuffle_seed=shuffle_seed))
            bundle = None
            if proof_dir is not None:
                from .challenge import forge_thief

                own = self._prove(client.client, round_index, global_weights, shuffle_seed,
                                  proof_dir / f"client_{client.client:03d}_own")
                bundle = forge_thief(own.path, proof_dir / f"client_{client.client:03d}", stolen)
            submissions[client.client] = Submission(client.client, "thief", stolen, len(client.data), claimed, 0,
                                                    bundle)
        return [submissions[c.client] for c in self.clients]

    def _prove(self, client: int, round_index: int, global_weights: Weights, shuffle_seed: int, out: Path):
        """Local training of ``client`` logged as a proof bundle at ``out`` (O(T_k) shared)."""
        from .challenge import prove_local

        return prove_local(self.clients[client].data, self.shared_data(client), self.model_config,
                           local_train_config(self.spec, shuffle_seed), global_weights=global_weights,
                           sigma=self.spec.pol.sigma_of(client), checkpoint_every=self.spec.pol.checkpoint_every,
                           out=out)

    def default_victim(self) -> int:
        """The client a thief copies when its spec names none: the lowest-index honest client."""
        return self.spec.honest_clients[0]

    def challenged(self, round_index: int) -> list[int]:
        """Clients the server challenges in this round."""
        count = self.spec.simulation.clients
        if self.spec.pol.challenge == "all":
            return list(range(count))
        wanted = max(1, int(round(self.spec.pol.challenge_fraction * count)))
        order = derive_rng(self.spec.simulation.seed, "challenge", round_index).permutation(count)
        return sorted(int(c) for c in order[:wanted])

    def challenge(self, request: ChallengeRequest) -> ChallengeOutcome:
        if self._challenger is None:
            from .challenge import pol_challenge

            self._challenger = pol_challenge
        return self._challenger(request)

    def run_round(self, defence: str, round_index: int, global_weights: Weights, work_dir: Path) -> tuple[Weights, dict]:
        """One round: returns the new global model and the round's record."""
        started = time.perf_counter()
        uses_pol = defence in ("pol", "both")
        proof_dir = work_dir / f"round_{round_index:04d}" if uses_pol else None
        if proof_dir is not None and proof_dir.exists():
            shutil.rmtree(proof_dir)  # left by an interrupted run
        submissions = self.client_submissions(round_index, global_weights, proof_dir=proof_dir)
        accepted = list(range(len(submissions)))
        challenges: list[ChallengeOutcome] = []
        if uses_pol:
            for client in self.challenged(round_index):
                request = ChallengeRequest(self.spec, self.model_config, round_index, global_weights,
                                           self.clients[client], submissions[client], self.shared_data(client),
                                           self.spec.pol.sigma_of(client), self.noise_seed(client))
                outcome = self.challenge(request)
                challenges.append(outcome)
                if not outcome.accepted:
                    accepted.remove(client)
        if proof_dir is not None:
            shutil.rmtree(proof_dir, ignore_errors=True)
        result, aggregation = aggregate_round(self.spec, defence, submissions, accepted)
        new_global = global_weights if result is None else result.aggregate
        loss, accuracy = self.evaluate(new_global)  # type: ignore[arg-type]
        distances = pairwise_squared_distances([s.weights for s in submissions])
        accepted_clients = {submissions[i].client for i in accepted}
        record = {
            "round": round_index,
            "defence": defence,
            "accuracy": accuracy,
            "loss": loss,
            "clients": [
                {"client": s.client, "role": s.role, "claimed_samples": s.claimed_samples,
                 "claimed_steps": s.claimed_steps, "real_steps": s.real_steps,
                 "distance_to_global": model_distance(s.weights, global_weights),
                 "accepted": s.client in accepted_clients,
                 "aggregated": s.client in aggregation.get("selected_clients", [])}
                for s in submissions
            ],
            "aggregation": aggregation,
            "pairwise_distances": np.sqrt(distances).tolist(),
            "pol": self._pol_summary(submissions, challenges) if uses_pol else None,
            "seconds": time.perf_counter() - started,
        }
        return {name: value.clone() for name, value in new_global.items()}, record  # type: ignore[union-attr]

    @staticmethod
    def _pol_summary(submissions: Sequence[Submission], challenges: Sequence[ChallengeOutcome]) -> dict:
        by_client = {s.client: s for s in submissions}
        honest = [c for c in challenges if not by_client[c.client].cheater]
        cheaters = [c for c in challenges if by_client[c.client].cheater]
        return {
            "challenges_issued": len(challenges),
            "challenged": [c.client for c in challenges],
            "rejected": [c.client for c in challenges if not c.accepted],
            "honest_challenged": len(honest),
            "honest_wrongly_rejected": sum(not c.accepted for c in honest),
            "cheaters_challenged": len(cheaters),
            "cheaters_caught": sum(not c.accepted for c in cheaters),
            "outcomes": [dict(c.to_dict(), role=by_client[c.client].role) for c in challenges],
        }

    # ----------------------------------------------------------------- the loop
    def defence_dir(self, defence: str) -> Path:
        return self.store / defence

    def completed_rounds(self, defence: str) -> int:
        """Rounds already finished in the store for ``defence`` (0: only the initial model; -1: nothing)."""
        progress_path = self.defence_dir(defence) / PROGRESS_FILE
        if not progress_path.exists():
            return -1
        progress = read_json(progress_path)
        if progress.get("format") != STORE_FORMAT:
            raise StoreError(f"{progress_path}: not a pudlab FL store (format {progress.get('format')!r})")
        if progress.get("spec_sha256") != spec_sha256(self.spec):
            raise StoreError(
                f"{progress_path}: this store was made by another spec (only rounds and defence may change on "
                "resume); use another --store or the original spec"
            )
        return int(progress["completed_rounds"])

    def _save_round(self, defence: str, round_index: int, weights: Weights, record: dict) -> None:
        directory = _round_dir(self.defence_dir(defence), round_index)
        save_weights(directory / "global.safetensors", weights, {"format": "pudlab.weights/1"})
        write_json(directory / "record.json", record)
        write_json(self.defence_dir(defence) / PROGRESS_FILE,
                   {"format": STORE_FORMAT, "completed_rounds": round_index, "spec_sha256": spec_sha256(self.spec)})

    def load_global(self, defence: str, round_index: int) -> Weights:
        path = _round_dir(self.defence_dir(defence), round_index) / "global.safetensors"
        return {name: value.to(torch.float32) for name, value in load_weights(path).items()}

    def load_records(self, defence: str) -> list[dict]:
        """The records of rounds 0..completed, in order."""
        completed = self.completed_rounds(defence)
        return [read_json(_round_dir(self.defence_dir(defence), r) / "record.json") for r in range(completed + 1)]

    def run(self, defence: str, *, rounds: int | None = None, max_new_rounds: int | None = None) -> list[dict]:
        """Run (or resume) ``defence`` up to ``rounds`` (default: the spec's); returns every round's record.

        ``max_new_rounds`` stops after that many newly finished rounds (as if the run were killed).
        """
        if defence not in DEFENCES:
            raise PudlabError(f"unknown defence {defence!r}; known: {', '.join(DEFENCES)}")
        with torch_threads(self.spec.simulation.threads):
            return self._run(defence, rounds=rounds, max_new_rounds=max_new_rounds)

    def _run(self, defence: str, *, rounds: int | None, max_new_rounds: int | None) -> list[dict]:
        target = self.spec.simulation.rounds if rounds is None else rounds
        directory = self.defence_dir(defence)
        directory.mkdir(parents=True, exist_ok=True)
        write_json(self.store / "spec.json", {"spec": self.spec.to_dict(), "spec_sha256": spec_sha256(self.spec),
                                              "source": self.spec.source, "setup": self.describe()})
        completed = self.completed_rounds(defence)
        if completed < 0:
            loss, accuracy = self.evaluate(self.initial_weights)
            self._save_round(defence, 0, self.initial_weights,
                             {"round": 0, "defence": defence, "accuracy": accuracy, "loss": loss})
            completed = 0
        elif completed > 0:
            self.log(f"[{defence}] resuming after round {completed}")
        global_weights = self.load_global(defence, completed)
        new_rounds = 0
        for round_index in range(completed + 1, target + 1):
            if max_new_rounds is not None and new_rounds >= max_new_rounds:
                break
            global_weights, record = self.run_round(defence, round_index, global_weights, directory / "work")
            if self._utility_due(round_index, target):
                record["utility"] = self.challenger_utility(defence, round_index, extra_records=[record])
            self._save_round(defence, round_index, global_weights, record)
            new_rounds += 1
            self.log(self._round_line(record))
        return self.load_records(defence)

    def _utility_due(self, round_index: int, target: int) -> bool:
        every = self.spec.pol.utility_every
        return (every > 0 and round_index % every == 0) or round_index == target

    @staticmethod
    def _round_line(record: dict) -> str:
        line = f"[{record['defence']}] round {record['round']}: accuracy {record['accuracy']:.4f}"
        pol = record.get("pol")
        if pol:
            line += (f", PoL caught {pol['cheaters_caught']}/{pol['cheaters_challenged']} cheaters, "
                     f"rejected {pol['honest_wrongly_rejected']}/{pol['honest_challenged']} honest")
        selected = record["aggregation"].get("selected_clients")
        if selected is not None:
            line += f", aggregated {selected}"
        return line + f" ({record['seconds']:.1f} s)"

    # ----------------------------------------------------------------- challenger utility
    def received_clients(self, defence: str, up_to_round: int, extra_records: Sequence[dict] = ()) -> list[int]:
        """Clients whose O(T_k) the challenger has received by ``up_to_round`` (challenged at least once)."""
        seen: set[int] = set()
        records = [r for r in self.load_records(defence) if 0 < r["round"] <= up_to_round] + list(extra_records)
        for record in records:
            if record.get("pol"):
                seen.update(record["pol"]["challenged"])
        return sorted(seen)

    def challenger_utility(self, defence: str, round_index: int, *, extra_records: Sequence[dict] = ()) -> dict | None:
        """Accuracy on T_e of a model the challenger trains on the obfuscated data it received.

        Challenger ``server``: gain over chance (1/C). Challenger = client k: gain of training on
        T_k plus the received O(T_j), j != k, over training on T_k alone (the paper's worry: a peer
        that challenges at will enriches its local data). Also reported: the same model trained on
        the raw versions of the received data (the utility obfuscation took away).
        """
        if defence not in ("pol", "both") or self.spec.pol.utility_epochs == 0:
            return None
        received = self.received_clients(defence, round_index, extra_records)
        challenger = self.spec.pol.challenger
        own: LabeledImages | None = None
        if challenger != "server":
            own = self.clients[int(challenger)].data
            received = [c for c in received if c != int(challenger)]
        if not received and own is None:
            return {"received_clients": [], "received_samples": 0}
        obfuscated = _concat([self.shared_data(c) for c in received] + ([own] if own is not None else []))
        clean = _concat([self.clients[c].data for c in received] + ([own] if own is not None else []))
        privacy = None
        if received:
            shared = _concat([self.shared_data(c) for c in received])
            raw = _concat([self.clients[c].data for c in received])
            mse = float(np.mean((shared.images.astype(np.float64) - raw.images) ** 2))
            privacy = {"psnr_db": 10 * math.log10(1.0 / mse) if mse > 0 else None,
                       "noise_to_signal": math.sqrt(mse) / float(np.std(raw.images, dtype=np.float64))}
        result = {"challenger": challenger, "received_clients": received, "privacy": privacy,
                  "received_samples": sum(len(self.clients[c].data) for c in received),
                  "sigma": sorted({self.spec.pol.sigma_of(c) for c in received}),
                  "accuracy_obfuscated": self._utility_accuracy(obfuscated, "obfuscated"),
                  "accuracy_clean": self._utility_accuracy(clean, "clean")}
        if own is None:
            result["baseline"] = "chance"
            result["baseline_accuracy"] = 1.0 / self.source.num_classes
        else:
            result["baseline"] = f"client {challenger}'s own data"
            result["baseline_accuracy"] = self._utility_accuracy(own, "own")
        result["gain"] = result["accuracy_obfuscated"] - result["baseline_accuracy"]
        return result

    def _utility_accuracy(self, data: LabeledImages, what: str) -> float:
        config = TrainConfig(epochs=self.spec.pol.utility_epochs, batch_size=self.spec.training.batch_size,
                             lr=self.spec.training.lr,
                             shuffle_seed=derive_seed(self.spec.simulation.seed, "utility", what))
        trained = train_model(data, None, self.model_config, self.initial_weights, config)
        return self.evaluate(trained.weights)[1]


def _concat(parts: Sequence[LabeledImages]) -> LabeledImages:
    return LabeledImages(np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts]),
                         np.concatenate([p.ids for p in parts]))


def _defence_job(spec: SimulationSpec, store: str, defence: str, rounds: int | None, source: SourceDataset | None,
                 data_dir: str | None, verbose: bool) -> tuple[str, list[dict]]:
    """One defence in a worker process (spawned: it re-imports pudlab and re-draws the clients)."""
    log = (lambda message: print(message, file=sys.stderr, flush=True)) if verbose else None
    simulation = Simulation(spec, store, source=source, data_dir=data_dir, log=log)
    return defence, simulation.run(defence, rounds=rounds)


def run_simulation(spec: SimulationSpec, store: str | Path, *, defences: Sequence[str] | None = None,
                   rounds: int | None = None, source: SourceDataset | None = None, data_dir: str | None = None,
                   log: Log | None = None, challenger: Challenger | None = None,
                   workers: int | None = None) -> dict[str, list[dict]]:
    """Run (or resume) each defence of ``spec`` (default: the spec's) into ``store``; records per defence.

    ``workers`` (default: the spec's) > 1 runs the defences in parallel processes; each defence is
    deterministic on its own, so the results do not depend on it. A custom ``challenger`` runs in
    this process only.
    """
    chosen = list(defences or spec.defences)
    workers = spec.simulation.workers if workers is None else workers
    if workers <= 1 or len(chosen) == 1 or challenger is not None:
        simulation = Simulation(spec, store, source=source, data_dir=data_dir, log=log, challenger=challenger)
        return {defence: simulation.run(defence, rounds=rounds) for defence in chosen}
    heavy_first = sorted(chosen, key=lambda d: d not in ("pol", "both"))
    results: dict[str, list[dict]] = {}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(chosen)), mp_context=context) as pool:
        futures = [pool.submit(_defence_job, spec, str(store), defence, rounds, source, data_dir, log is not None)
                   for defence in heavy_first]
        for future in futures:
            defence, records = future.result()
            results[defence] = records
    return {defence: results[defence] for defence in chosen}


def final_accuracy(records: Sequence[dict]) -> float:
    return float(records[-1]["accuracy"]) if records else math.nan


__all__ = [
    "ChallengeOutcome",
    "ChallengeRequest",
    "ClientData",
    "LocalTraining",
    "Simulation",
    "Submission",
    "aggregate_round",
    "client_label_sets",
    "effective_krum",
    "final_accuracy",
    "local_schedule",
    "partition_clients",
    "run_simulation",
    "spec_sha256",
    "train_local",
]
