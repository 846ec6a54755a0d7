"""The clients of a federation and what each role submits in a round.

Roles: ``honest`` (trains its local epochs from the global model), Byzantine (trains, then submits
a corrupted model: :func:`pudlab.fl.adversaries.corrupt`), ``lazy`` (trains only a fraction of
the steps it claims) and ``thief`` (trains nothing, submits a copy of another client's model or of
the global model). With a PoL defence every client also logs a proof bundle; cheaters replace it
by the forgery they would answer a challenge with (:mod:`pudlab.fl.challenge`).

Local training is Adam with a fresh optimizer state each round, over batches in the order of
``(seed, "shuffle", round, client)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pudlab.data.dataset import LabeledImages
from pudlab.fl import adversaries as adv
from pudlab.fl.challenge import forge_byzantine, forge_lazy, forge_thief, prove_local
from pudlab.fl.partition import ClientData
from pudlab.fl.records import Submission, Weights
from pudlab.fl.spec import SimulationSpec
from pudlab.model import ModelConfig
from pudlab.obfuscation import obfuscate
from pudlab.pol.forgers import forge_moments
from pudlab.pol.prover import ProofResult
from pudlab.pol.replay import capture_state
from pudlab.seeding import derive_rng, derive_seed
from pudlab.train.trainer import TrainConfig, Trainer, epoch_batches


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
    """The local training of one client in one round as a :class:`pudlab.train.trainer.TrainConfig`."""
    return TrainConfig(epochs=spec.training.local_epochs, batch_size=spec.training.batch_size, lr=spec.training.lr,
                       shuffle_seed=shuffle_seed)


def train_local(model_config: ModelConfig, start: Weights, data: LabeledImages, spec: SimulationSpec, *,
                shuffle_seed: int, max_steps: int | None = None, keep_states: bool = False) -> LocalTraining:
    """Adam from ``start`` (fresh optimizer state) over the local schedule, stopping after ``max_steps``.

    The steps are :meth:`pudlab.train.trainer.Trainer.step` in the order of
    :func:`pudlab.train.trainer.epoch_batches`, the loop :func:`pudlab.pol.prove` runs: a client that
    logs a proof ends with the same bits as one that does not.
    """
    schedule = local_schedule(len(data), spec, shuffle_seed=shuffle_seed)
    trainer = Trainer(model_config, start, data, local_train_config(spec, shuffle_seed))
    steps = len(schedule) if max_steps is None else min(max_steps, len(schedule))
    states = [capture_state(trainer, 0)] if keep_states else None
    trainer.model.train()
    for step, positions in enumerate(schedule[:steps], start=1):
        trainer.step(positions)
        if states is not None:
            states.append(capture_state(trainer, step))
    return LocalTraining(trainer.weights(), steps, schedule, states)


# ----------------------------------------------------------------------------------------- the clients
class ClientPool:
    """The n clients of one spec: their local data, their role per round, what they submit."""

    def __init__(self, spec: SimulationSpec, model_config: ModelConfig, members: Sequence[ClientData]) -> None:
        self.spec = spec
        self.model_config = model_config
        self.members = list(members)
        """Client k's data is ``members[k]``."""
        self._shared: dict[int, LabeledImages] = {}

    def role(self, client: int, round_index: int) -> str:
        """honest, or the client's adversary kind from its ``start_round`` on."""
        adversary = self.spec.adversary_of(client)
        if adversary is None or round_index < adversary.start_round:
            return "honest"
        return adversary.kind

    def noise_seed(self, client: int) -> int:
        """The seed of the client's obfuscation noise, ``(seed, "pol-noise", client)``."""
        return derive_seed(self.spec.simulation.seed, "pol-noise", client)

    def shared_data(self, client: int) -> LabeledImages:
        """O(T_k) at the client's sigma (keyed noise from ``(seed, "pol-noise", client)``)."""
        if client not in self._shared:
            self._shared[client] = obfuscate(self.members[client].data, sigma=self.spec.pol.sigma_of(client),
                                             seed=self.noise_seed(client))
        return self._shared[client]

    def default_victim(self) -> int:
        """The client a thief copies when its spec names none: the lowest-index honest client."""
        return self.spec.honest_clients[0]

    def submissions(self, round_index: int, global_weights: Weights, *,
                    proof_dir: Path | None = None) -> list[Submission]:
        """Every client's submission of round ``round_index`` (1-based), in client order.

        With ``proof_dir`` (PoL defences), every client logs its training as a proof bundle there
        (cheaters: the forged bundle they would answer a challenge with). Thieves go last: they
        copy what the others submitted.
        """
        by_client: dict[int, Submission] = {}
        thieves = [c for c in self.members if self.role(c.client, round_index) == "thief"]
        for client in self.members:
            if client not in thieves:
                by_client[client.client] = self._trained(client, round_index, global_weights, proof_dir)
        for client in thieves:
            by_client[client.client] = self._stolen(client, round_index, global_weights, proof_dir, by_client)
        return [by_client[c.client] for c in self.members]

    def submission(self, client: int, round_index: int, global_weights: Weights, *, proof_dir: Path | None = None,
                   others: dict[int, Submission] | None = None) -> Submission:
        """Client ``client``'s submission alone (what :meth:`submissions` computes for it).

        A thief needs ``others``: the round's other submissions by client (its victim's at least).
        """
        member = self.members[client]
        if self.role(client, round_index) == "thief":
            return self._stolen(member, round_index, global_weights, proof_dir, others or {})
        return self._trained(member, round_index, global_weights, proof_dir)

    def _shuffle_seed(self, client: int, round_index: int) -> int:
        return derive_seed(self.spec.simulation.seed, "shuffle", round_index, client)

    def _claimed_steps(self, client: ClientData, round_index: int) -> int:
        """The full local schedule's length: what every client claims to have trained."""
        return len(local_schedule(len(client.data), self.spec, shuffle_seed=self._shuffle_seed(client.client,
                                                                                              round_index)))

    def _trained(self, client: ClientData, round_index: int, global_weights: Weights,
                 proof_dir: Path | None) -> Submission:
        """An honest, lazy or Byzantine client's submission (all of them train)."""
        role = self.role(client.client, round_index)
        shuffle_seed = self._shuffle_seed(client.client, round_index)
        claimed = self._claimed_steps(client, round_index)
        adversary = self.spec.adversary_of(client.client)
        bundle: Path | None = None
        if role == "lazy":
            assert adversary is not None
            local = train_local(self.model_config, global_weights, client.data, self.spec, shuffle_seed=shuffle_seed,
                                max_steps=adv.lazy_steps(claimed, adversary.step_fraction),
                                keep_states=proof_dir is not None)
            weights, real_steps = local.weights, local.steps_done
            if proof_dir is not None:
                full = self._prove(client.client, global_weights, shuffle_seed, _bundle_path(proof_dir, client, "_full"))
                bundle = forge_lazy(full.path, _bundle_path(proof_dir, client), local.states or [],
                                    claimed_steps=claimed)
        elif proof_dir is not None:
            proof = self._prove(client.client, global_weights, shuffle_seed, _bundle_path(proof_dir, client))
            weights, real_steps, bundle = proof.final_weights, proof.num_steps, proof.path
        else:
            local = train_local(self.model_config, global_weights, client.data, self.spec, shuffle_seed=shuffle_seed)
            weights, real_steps = local.weights, local.steps_done
        if role in adv.BYZANTINE_ROLES:
            assert adversary is not None
            weights = adv.corrupt(adversary, global_weights, weights,
                                  rng=derive_rng(self.spec.simulation.seed, "adversary", round_index, client.client))
            if bundle is not None:
                assert proof_dir is not None
                honest = bundle.rename(bundle.with_name(bundle.name + "_real"))
                bundle = forge_byzantine(honest, _bundle_path(proof_dir, client), weights)
        return Submission(client.client, role, weights, len(client.data), claimed, real_steps, bundle)

    def _stolen(self, client: ClientData, round_index: int, global_weights: Weights, proof_dir: Path | None,
                others: dict[int, Submission]) -> Submission:
        """A thief's submission: a copy of the victim's model of this round (or the global model), plus noise."""
        adversary = self.spec.adversary_of(client.client)
        assert adversary is not None
        rng = derive_rng(self.spec.simulation.seed, "adversary", round_index, client.client)
        if adversary.copy == "global":
            stolen = adv.copied_model(global_weights, noise_std=adversary.noise_std, rng=rng)
        else:
            victim = adversary.victim if adversary.victim is not None else self.default_victim()
            stolen = adv.copied_model(others[victim].weights, noise_std=adversary.noise_std, rng=rng)
        bundle = None
        if proof_dir is not None:
            own = self._prove(client.client, global_weights, self._shuffle_seed(client.client, round_index),
                              _bundle_path(proof_dir, client, "_own"))
            if adversary.forgery == "moments":  # Adam moments crafted so the last segment replays onto it
                stolen = forge_moments(own.path, _bundle_path(proof_dir, client), stolen)
                bundle = _bundle_path(proof_dir, client)
            else:
                bundle = forge_thief(own.path, _bundle_path(proof_dir, client), stolen)
        return Submission(client.client, "thief", stolen, len(client.data), self._claimed_steps(client, round_index),
                          0, bundle)

    def _prove(self, client: int, global_weights: Weights, shuffle_seed: int, out: Path) -> ProofResult:
        """Local training of ``client`` logged as a proof bundle at ``out`` (O(T_k) shared)."""
        return prove_local(self.members[client].data, self.shared_data(client), self.model_config,
                           local_train_config(self.spec, shuffle_seed), global_weights=global_weights,
                           sigma=self.spec.pol.sigma_of(client), checkpoint_every=self.spec.pol.checkpoint_every,
                           out=out)


def _bundle_path(proof_dir: Path, client: ClientData, suffix: str = "") -> Path:
    return proof_dir / f"client_{client.client:03d}{suffix}"


__all__ = ["ClientPool", "LocalTraining", "local_schedule", "local_train_config", "train_local"]
