"""A federated-learning simulation: clients, attacks, defences, round by round, resumable.

Data flows: source -> T_t / T_e split -> one S-X-Y-Z sample per client (:mod:`.partition`) -> R
rounds of [local training from the global model -> (mis)behaviour (:mod:`.clients`) -> PoL
challenges -> aggregation -> accuracy on T_e (:mod:`.rounds`)] -> the challenger's utility from
the obfuscated data it received.

Determinism: every random choice derives from the spec's seeds with :func:`pudlab.seeding.derive_rng`
and a key naming what it is for (``("shuffle", round, client)``, ``("adversary", round, client)``,
``("challenge", round)``, ...), never from a running generator, so round r depends only on the
global model of round r - 1 and the spec. That is what makes a round resumable: the state to keep
is the global model and the round's record (:mod:`.store`).
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from pudlab.data.dataset import LabeledImages, SourceDataset, split_train_eval
from pudlab.errors import PudlabError
from pudlab.fl.challenge import pol_challenge
from pudlab.fl.clients import ClientPool
from pudlab.fl.partition import partition_clients
from pudlab.fl.records import Challenger, ChallengerUtility, RoundRecord, SharedDataPrivacy, Weights
from pudlab.fl.rounds import round_line, run_round, uses_pol
from pudlab.fl.spec import DEFENCES, SimulationSpec
from pudlab.fl.store import SimulationStore, spec_sha256
from pudlab.model import ModelConfig, build_model, initial_state
from pudlab.seeding import derive_seed
from pudlab.train.trainer import TrainConfig, evaluate, torch_threads, train_model

Log = Callable[[str], None]
RoundRunner = Callable[..., tuple[Weights, RoundRecord]]
"""``run_round``'s signature: (pool, defence, round, global weights, work dir, *, challenger, evaluate)."""


class Simulation:
    """One spec on one source dataset; :meth:`run` runs (or resumes) one defence into ``store``."""

    def __init__(self, spec: SimulationSpec, store: str | Path, *, source: SourceDataset | None = None,
                 data_dir: str | None = None, log: Log | None = None,
                 challenger: Challenger | None = None, round_runner: RoundRunner | None = None) -> None:
        self.spec = spec
        self.store = SimulationStore(store)
        self.spec_hash = spec_sha256(spec)
        self.log = log or (lambda message: None)
        if source is None:
            from pudlab.data.sources import load_source  # reads files: only when no source is given

            source = load_source(spec.simulation.dataset, data_dir)
        self.source = source
        split = split_train_eval(source, eval_fraction=spec.simulation.eval_fraction, seed=spec.simulation.split_seed)
        self.eval_set = split.eval
        self.model_config = ModelConfig(source.sample_shape, tuple(spec.model.widths), spec.model.hidden,  # type: ignore[arg-type]
                                        source.num_classes)
        self.pool = ClientPool(spec, self.model_config, partition_clients(spec, split.train, source.num_classes))
        self.initial_weights = initial_state(self.model_config, init_seed=spec.simulation.init_seed)
        self.challenger: Challenger = challenger or pol_challenge
        self.round_runner: RoundRunner = round_runner or run_round
        """Runs one round (default :func:`pudlab.fl.rounds.run_round`; the Flower engine passes its own)."""

    def evaluate(self, weights: Weights) -> tuple[float, float]:
        """(loss, accuracy) of ``weights`` on T_e."""
        return evaluate(build_model(self.model_config, weights), self.eval_set)

    def describe(self) -> dict:
        """The setup stored in ``spec.json``: dataset, every client's labels, samples, role and sigma."""
        return {
            "dataset": {"name": self.source.name, "description": self.source.description,
                        "fingerprint": self.source.fingerprint, "eval_size": len(self.eval_set)},
            "clients": [{"client": c.client, "labels": list(c.labels), "samples": len(c.data),
                         "role": self.pool.role(c.client, self.spec.simulation.rounds or 1),
                         "sigma": self.spec.pol.sigma_of(c.client)} for c in self.pool.members],
            "model": self.model_config.to_dict(),
        }

    # ----------------------------------------------------------------- the store
    def completed_rounds(self, defence: str) -> int:
        """Rounds already finished in the store for ``defence`` (0: only the initial model; -1: nothing)."""
        return self.store.completed_rounds(defence, spec_hash=self.spec_hash)

    def load_global(self, defence: str, round_index: int) -> Weights:
        """The stored global model after round ``round_index``."""
        return self.store.load_global(defence, round_index)

    def load_records(self, defence: str) -> list[RoundRecord]:
        """The records of rounds 0..completed, in order."""
        return self.store.load_records(defence, spec_hash=self.spec_hash)

    # ----------------------------------------------------------------- the loop
    def run(self, defence: str, *, rounds: int | None = None, max_new_rounds: int | None = None) -> list[RoundRecord]:
        """Run (or resume) ``defence`` up to ``rounds`` (default: the spec's); returns every round's record.

        ``max_new_rounds`` stops after that many newly finished rounds (as if the run were killed).
        """
        if defence not in DEFENCES:
            raise PudlabError(f"unknown defence {defence!r}; known: {', '.join(DEFENCES)}")
        with torch_threads(self.spec.simulation.threads):
            return self._run(defence, rounds=rounds, max_new_rounds=max_new_rounds)

    def _run(self, defence: str, *, rounds: int | None, max_new_rounds: int | None) -> list[RoundRecord]:
        target = self.spec.simulation.rounds if rounds is None else rounds
        self.store.defence_dir(defence).mkdir(parents=True, exist_ok=True)
        self.store.write_meta({"spec": self.spec.to_dict(), "spec_sha256": self.spec_hash, "source": self.spec.source,
                               "setup": self.describe()})
        completed = self.completed_rounds(defence)
        if completed < 0:
            loss, accuracy = self.evaluate(self.initial_weights)
            self.store.save_round(defence, 0, self.initial_weights, RoundRecord(0, defence, accuracy, loss),
                                  spec_hash=self.spec_hash)
            completed = 0
        elif completed > 0:
            self.log(f"[{defence}] resuming after round {completed}")
        global_weights = self.load_global(defence, completed)
        new_rounds = 0
        for round_index in range(completed + 1, target + 1):
            if max_new_rounds is not None and new_rounds >= max_new_rounds:
                break
            global_weights, record = self.round_runner(self.pool, defence, round_index, global_weights,
                                               self.store.defence_dir(defence) / "work",
                                               challenger=self.challenger, evaluate=self.evaluate)
            if self._utility_due(round_index, target):
                utility = self.challenger_utility(defence, round_index, extra_records=[record])
                record = dataclasses.replace(record, utility=utility, utility_measured=True)
            self.store.save_round(defence, round_index, global_weights, record, spec_hash=self.spec_hash)
            new_rounds += 1
            self.log(round_line(record))
        return self.load_records(defence)

    def _utility_due(self, round_index: int, target: int) -> bool:
        every = self.spec.pol.utility_every
        return (every > 0 and round_index % every == 0) or round_index == target

    # ----------------------------------------------------------------- challenger utility
    def received_clients(self, defence: str, up_to_round: int, extra_records: Sequence[RoundRecord] = ()) -> list[int]:
        """Clients whose O(T_k) the challenger has received by ``up_to_round`` (challenged at least once)."""
        seen: set[int] = set()
        records = [r for r in self.load_records(defence) if 0 < r.round <= up_to_round] + list(extra_records)
        for record in records:
            if record.pol:
                seen.update(record.pol.challenged)
        return sorted(seen)

    def challenger_utility(self, defence: str, round_index: int, *,
                           extra_records: Sequence[RoundRecord] = ()) -> ChallengerUtility | None:
        """Accuracy on T_e of a model the challenger trains on the obfuscated data it received.

        Challenger ``server``: gain over chance (1/C). Challenger = client k: gain of training on
        T_k plus the received O(T_j), j != k, over training on T_k alone (the paper's worry: a peer
        that challenges at will enriches its local data). Also reported: the same model trained on
        the raw versions of the received data (the utility obfuscation took away).
        """
        if not uses_pol(defence) or self.spec.pol.utility_epochs == 0:
            return None
        received = self.received_clients(defence, round_index, extra_records)
        challenger = self.spec.pol.challenger
        own: LabeledImages | None = None
        if challenger != "server":
            own = self.pool.members[int(challenger)].data
            received = [c for c in received if c != int(challenger)]
        if not received and own is None:
            return ChallengerUtility(received_clients=(), received_samples=0)
        own_part = [own] if own is not None else []
        obfuscated = _concat([self.pool.shared_data(c) for c in received] + own_part)
        clean = _concat([self.pool.members[c].data for c in received] + own_part)
        privacy = self._received_privacy(received)
        accuracy_obfuscated = self._utility_accuracy(obfuscated, "obfuscated")
        accuracy_clean = self._utility_accuracy(clean, "clean")
        if own is None:
            baseline, baseline_accuracy = "chance", 1.0 / self.source.num_classes
        else:
            baseline, baseline_accuracy = f"client {challenger}'s own data", self._utility_accuracy(own, "own")
        return ChallengerUtility(
            received_clients=tuple(received), received_samples=sum(len(self.pool.members[c].data) for c in received),
            challenger=challenger, privacy=privacy, sigma=tuple(sorted({self.spec.pol.sigma_of(c) for c in received})),
            accuracy_obfuscated=accuracy_obfuscated, accuracy_clean=accuracy_clean, baseline=baseline,
            baseline_accuracy=baseline_accuracy, gain=accuracy_obfuscated - baseline_accuracy,
        )

    def _received_privacy(self, received: Sequence[int]) -> SharedDataPrivacy | None:
        """PSNR and noise-to-signal of the received O(T) against T (None when nothing was received)."""
        if not received:
            return None
        shared = _concat([self.pool.shared_data(c) for c in received])
        raw = _concat([self.pool.members[c].data for c in received])
        mse = float(np.mean((shared.images.astype(np.float64) - raw.images) ** 2))
        return SharedDataPrivacy(psnr_db=10 * math.log10(1.0 / mse) if mse > 0 else None,
                                 noise_to_signal=math.sqrt(mse) / float(np.std(raw.images, dtype=np.float64)))

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
                 data_dir: str | None, verbose: bool) -> tuple[str, list[RoundRecord]]:
    """One defence in a worker process (spawned: it re-imports pudlab and re-draws the clients)."""
    log = (lambda message: print(message, file=sys.stderr, flush=True)) if verbose else None
    simulation = Simulation(spec, store, source=source, data_dir=data_dir, log=log)
    return defence, simulation.run(defence, rounds=rounds)


def _die_with_simulation(parent_pid: int) -> None:
    """Initializer of a defence worker: exit when the simulating process dies, whatever kills it."""
    from pudlab.processes import die_with_parent

    die_with_parent(parent_pid, detach=False, stop_on_sigint=False)


def run_simulation(spec: SimulationSpec, store: str | Path, *, defences: Sequence[str] | None = None,
                   rounds: int | None = None, source: SourceDataset | None = None, data_dir: str | None = None,
                   log: Log | None = None, challenger: Challenger | None = None,
                   workers: int | None = None) -> dict[str, list[RoundRecord]]:
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
    heavy_first = sorted(chosen, key=lambda d: not uses_pol(d))
    results: dict[str, list[RoundRecord]] = {}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(chosen)), mp_context=context,
                             initializer=_die_with_simulation, initargs=(os.getpid(),)) as pool:
        futures = [pool.submit(_defence_job, spec, str(store), defence, rounds, source, data_dir, log is not None)
                   for defence in heavy_first]
        for future in futures:
            defence, records = future.result()
            results[defence] = records
    return {defence: results[defence] for defence in chosen}


def final_accuracy(records: Sequence[RoundRecord]) -> float:
    """The last round's global accuracy (NaN without records)."""
    return float(records[-1].accuracy) if records else math.nan


__all__ = ["Log", "RoundRunner", "Simulation", "final_accuracy", "run_simulation"]
