"""The attacks ``pudlab pol evaluate`` runs at every (trial, sigma): model thieves, adaptive thieves
(:mod:`pudlab.pol.thieves`), claims about O(T), and tampers of the honest bundle
(:mod:`pudlab.pol.forgers`), each verified by the verifier of its claimed data owner.

Every attack here must not be accepted (exit 0) by the default verifier; what stops it (or the
verifier's "undecidable") is recorded per attempt as an :class:`~pudlab.pol.evaluation_results.AttackOutcome`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from pudlab.data.dataset import LabeledImages
from pudlab.io import read_json, write_json
from pudlab.model import ModelConfig, initial_state
from pudlab.obfuscation import ReleaseKey, release, release_manifest
from pudlab.pol import thieves
from pudlab.pol.evaluation_results import AttackOutcome
from pudlab.pol.forgers import (
    align_labels,
    forge_interpolated,
    forge_jump,
    forge_moments,
    forge_stolen_init,
    tamper_batch_reorder,
    tamper_batch_swap,
    tamper_checkpoint,
    tamper_hyperparameter,
    tamper_shared,
)
from pudlab.pol.manifest import NoiseClaim
from pudlab.pol.prover import prove, reshare
from pudlab.pol.verdict import EXIT_MALFORMED, EXIT_REJECT
from pudlab.pol.verifier import VerifyOptions, verify_status
from pudlab.release_auth import VerificationKey
from pudlab.train.trainer import TrainConfig

TAMPER_SCALES = (0.01, 0.03, 0.1, 0.3, 1.0)
"""Sizes of the checkpoint edits, in units of the edited segment's update norm."""
LR_FACTORS = (1.1, 1.25, 2.0, 10.0, 1000.0)
"""Falsifications of the claimed learning rate."""
FAKE_HONEST_PER_EPOCH = (2, 4)
"""Real segments per epoch of the fake-trajectory thieves (the rest are solved Adam steps)."""
INFLATED_SIGMA = 3.0
"""The sigma a sigma-inflation attack claims."""
BACKDOOR_SHARE = 0.2
"""Share of the owner's samples a backdoor trainer replaces by dirty-label triggered ones."""
ATTACK_NAMES = (
    "thief-jump", "thief-interpolate", "moment-forgery", "stolen-init", "stolen-init-careful",
    "stolen-init-ks", "stolen-init-careful-ks",
    *(f"fake-trajectory-{kind}-{h}" for kind in ("data", "nodata") for h in FAKE_HONEST_PER_EPOCH),
    "drift", "sigma-inflation", "release-substitution", "release-substitution-owner-manifest", "backdoor",
    *(f"checkpoint-edit-x{scale:g}" for scale in TAMPER_SCALES), "checkpoint-edit-unsealed",
    "batch-swap", "batch-swap-replay-only", "batch-reorder",
    *(f"lr-x{factor:g}" for factor in LR_FACTORS), "adam-eps-x10", "adam-beta1-0.8",
    "shared-swap", "shared-swap-unsealed")
"""Every attack, in the order it runs (``drift`` only at sigma > 0: at sigma 0 it cannot drift)."""


@dataclass(frozen=True)
class AttackInputs:
    """What one (trial, sigma) gives its attacks."""

    sigma: float
    work: Path
    """Folder of this (trial, sigma)'s bundles."""
    honest: Path
    """The honest bundle (owner i's release of T_i)."""
    thief_shared: Path
    """The thief's own honest training on T_j, sharing owner j's release of T_j."""
    stolen: dict[str, torch.Tensor]
    """The honest prover's final model."""
    private_i: LabeledImages
    private_j: LabeledImages
    key_seed_i: int
    """Owner i's release key is the insecure demo key of this seed (reproducible; its manifests say INSECURE)."""
    key_seed_j: int
    noise: Callable[[float, ReleaseKey], NoiseClaim]
    model_config: ModelConfig
    train_j: TrainConfig
    checkpoint_every: int
    threads: int
    init_seed: int
    options: VerifyOptions
    """The verifier's options, without an owner key (each attack adds its claimed owner's)."""
    seed: int

    @property
    def key_i(self) -> ReleaseKey:
        return ReleaseKey.from_insecure_seed(self.key_seed_i)

    @property
    def key_j(self) -> ReleaseKey:
        return ReleaseKey.from_insecure_seed(self.key_seed_j)

    def release(self, data: LabeledImages, owner: str) -> tuple[LabeledImages, dict]:
        """Owner ``i``'s or ``j``'s release of ``data`` at this sigma, with its authenticated manifest."""
        seed = self.key_seed_i if owner == "i" else self.key_seed_j
        return owner_release(data, self.sigma, seed)


def owner_release(data: LabeledImages, sigma: float, key_seed: int, fraction: float = 1.0,
                  clip: bool = False) -> tuple[LabeledImages, dict]:
    """The release of ``data`` under the insecure demo key of ``key_seed`` and its authenticated manifest
    (which says INSECURE and gives the seed: evaluation bundles are reproducible, not private)."""
    key = ReleaseKey.from_insecure_seed(key_seed)
    shared = release(data, sigma=sigma, key=key, fraction=fraction, clip=clip)
    return shared, release_manifest(shared, sigma=sigma, fraction=fraction, clip=clip, key=key,
                                    insecure_seed=key_seed)


class _Recorder:
    def __init__(self, inputs: AttackInputs) -> None:
        self.inputs = inputs
        self.outcomes: list[AttackOutcome] = []

    def __call__(self, name: str, path: Path, owner: ReleaseKey, expected: int = EXIT_REJECT,
                 options: VerifyOptions | None = None) -> None:
        opts = replace(options or self.inputs.options, owner_key=VerificationKey.of(owner))
        status, reason, verdict = verify_status(path, opts)
        self.outcomes.append(AttackOutcome(self.inputs.sigma, name, expected, status, reason,
                                           verdict.max_distance if verdict else None,
                                           verdict.seconds if verdict else None,
                                           verdict.replayed_segments if verdict else None))


def run_attacks(inputs: AttackInputs) -> list[AttackOutcome]:
    """Every attack of :data:`ATTACK_NAMES` at one (trial, sigma), verified."""
    record, work, sigma = _Recorder(inputs), inputs.work, inputs.sigma
    key_i, key_j, stolen = inputs.key_i, inputs.key_j, inputs.stolen
    record("thief-jump", forge_jump(inputs.thief_shared, work / "thief-jump", stolen), key_j)
    record("thief-interpolate", forge_interpolated(inputs.thief_shared, work / "thief-interp", stolen), key_j)
    forge_moments(inputs.thief_shared, work / "moment-forgery", stolen)
    record("moment-forgery", work / "moment-forgery", key_j)
    _stolen_inits(inputs, record)
    _fake_trajectories(inputs, record)
    if sigma > 0:  # at sigma 0 the tolerance is 0: there is nothing to drift with
        own = _trained_on_release(inputs, "drift-own")
        thieves.forge_drift(own, work / "drift", stolen, thief_seed=inputs.seed)
        record("drift", work / "drift", key_j)
    _release_claims(inputs, record)
    _backdoor(inputs, record)
    honest = inputs.honest
    for scale in TAMPER_SCALES:
        record(f"checkpoint-edit-x{scale:g}", tamper_checkpoint(honest, work / f"edit-{scale:g}", scale=scale,
                                                                seed=inputs.seed), key_i)
    record("checkpoint-edit-unsealed", tamper_checkpoint(honest, work / "edit-u", seed=inputs.seed, reseal=False),
           key_i, EXIT_MALFORMED)
    swapped = tamper_batch_swap(honest, work / "batch-swap")
    record("batch-swap", swapped, key_i)
    no_schedule = replace(inputs.options, check_schedule=False)
    record("batch-swap-replay-only", swapped, key_i, options=no_schedule)
    record("batch-reorder", tamper_batch_reorder(honest, work / "batch-reorder"), key_i, options=no_schedule)
    for factor in LR_FACTORS:
        record(f"lr-x{factor:g}", tamper_hyperparameter(honest, work / f"lr-{factor:g}", factor=factor), key_i)
    record("adam-eps-x10", tamper_hyperparameter(honest, work / "eps", name="adam_eps", factor=10.0), key_i)
    beta = tamper_hyperparameter(honest, work / "beta1", name="adam_eps", factor=1.0)
    manifest = read_json(beta / "manifest.json")
    manifest["training"]["adam_betas"] = [0.8, manifest["training"]["adam_betas"][1]]
    write_json(beta / "manifest.json", manifest)
    record("adam-beta1-0.8", beta, key_i)
    shared_j, _ = inputs.release(inputs.private_j, "j")
    record("shared-swap", tamper_shared(honest, work / "shared-swap", shared_j), key_i)
    record("shared-swap-unsealed", tamper_shared(honest, work / "shared-swap-u",
                                                 align_labels(inputs.private_i.labels, shared_j), reseal=False),
           key_i, EXIT_MALFORMED)
    return record.outcomes


def _stolen_inits(inputs: AttackInputs, record: _Recorder) -> None:
    """One epoch on T_j from the stolen model (plain, and careful), under the default policy and under the KS test."""
    shared_j, manifest_j = inputs.release(inputs.private_j, "j")
    ks = replace(inputs.options, policy=replace(inputs.options.policy, init="seeded-or-ks"))
    for name, careful in (("stolen-init", False), ("stolen-init-careful", True)):
        proof = forge_stolen_init(inputs.private_j, shared_j, inputs.stolen, inputs.model_config,
                                  replace(inputs.train_j, epochs=1), noise=inputs.noise(inputs.sigma, inputs.key_j),
                                  checkpoint_every=inputs.checkpoint_every, out=inputs.work / name, careful=careful,
                                  threads=inputs.threads, release_manifest=manifest_j)
        record(name, proof.path, inputs.key_j)
        record(f"{name}-ks", proof.path, inputs.key_j, options=ks)


def _fake_trajectories(inputs: AttackInputs, record: _Recorder) -> None:
    """The fake-trajectory thief with data (T_j's release) and without (noise images he releases himself);
    K = 1 and twice the honest epochs, so that every epoch has room for fake segments."""
    train = replace(inputs.train_j, epochs=2 * inputs.train_j.epochs)
    noise_data = thieves.noise_images(inputs.private_j, seed=inputs.seed)
    for kind, data in (("data", inputs.private_j), ("nodata", noise_data)):
        shared, manifest = inputs.release(data, "j")
        for honest_per_epoch in FAKE_HONEST_PER_EPOCH:
            name = f"fake-trajectory-{kind}-{honest_per_epoch}"
            path, _ = thieves.forge_fake_trajectory(
                inputs.work / name, target=inputs.stolen, model_config=inputs.model_config, train_config=train,
                shared=shared, noise=inputs.noise(inputs.sigma, inputs.key_j), checkpoint_every=1,
                honest_per_epoch=honest_per_epoch, init_seed=inputs.init_seed, release_manifest=manifest,
                threads=inputs.threads)
            record(name, path, inputs.key_j)


def _trained_on_release(inputs: AttackInputs, name: str) -> Path:
    """The thief's honest training on his own release O(T_j) itself (so that its replay is exact)."""
    shared, manifest = inputs.release(inputs.private_j, "j")
    initial = initial_state(inputs.model_config, init_seed=inputs.init_seed)
    return prove(shared, shared, inputs.model_config, inputs.train_j, initial_weights=initial,
                 init_seed=inputs.init_seed, noise=inputs.noise(inputs.sigma, inputs.key_j),
                 checkpoint_every=inputs.checkpoint_every, out=inputs.work / name, threads=inputs.threads,
                 overwrite=True, release_manifest=manifest).path


def _release_claims(inputs: AttackInputs, record: _Recorder) -> None:
    """Sigma inflation (a spoof claiming a larger sigma) and release substitution (other data under the owner's key id)."""
    shared_j, manifest_j = inputs.release(inputs.private_j, "j")
    aligned, aligned_manifest = inputs.release(align_labels(inputs.private_i.labels, inputs.private_j), "j")
    spoof = reshare(inputs.honest, inputs.work / "spoof-j", aligned, inputs.noise(inputs.sigma, inputs.key_j),
                    release_manifest=aligned_manifest, overwrite=True)
    record("sigma-inflation", thieves.inflate_sigma(spoof, inputs.work / "sigma-inflation", INFLATED_SIGMA),
           inputs.key_j)
    owner_id = inputs.key_i.key_id
    record("release-substitution", thieves.substitute_release(
        inputs.honest, inputs.work / "release-sub", aligned, owner_key_id=owner_id, release_manifest=manifest_j),
        inputs.key_i)
    owner_manifest = read_json(inputs.honest / "release.json")
    record("release-substitution-owner-manifest", thieves.substitute_release(
        inputs.honest, inputs.work / "release-sub-owner", aligned, owner_key_id=owner_id,
        release_manifest=owner_manifest), inputs.key_i)


def _backdoor(inputs: AttackInputs, record: _Recorder) -> None:
    """A trainer who trains on T_i with dirty-label triggers and shares owner i's clean release."""
    poisoned, _ = thieves.poison(inputs.private_i, share=BACKDOOR_SHARE, target_label=0, seed=inputs.seed)
    manifest = read_json(inputs.honest / "manifest.json")
    train = TrainConfig.from_dict(manifest["training"])
    trained = prove(poisoned, poisoned, inputs.model_config, train,
                    initial_weights=initial_state(inputs.model_config, init_seed=inputs.init_seed),
                    init_seed=inputs.init_seed, noise=inputs.noise(inputs.sigma, inputs.key_i),
                    checkpoint_every=inputs.checkpoint_every, out=inputs.work / "backdoor-trained",
                    threads=inputs.threads, overwrite=True)
    shared_i, manifest_i = inputs.release(inputs.private_i, "i")
    path = reshare(trained.path, inputs.work / "backdoor", shared_i, inputs.noise(inputs.sigma, inputs.key_i),
                   release_manifest=manifest_i, overwrite=True)
    record("backdoor", path, inputs.key_i)


__all__ = ["ATTACK_NAMES", "FAKE_HONEST_PER_EPOCH", "LR_FACTORS", "TAMPER_SCALES", "AttackInputs", "owner_release",
           "run_attacks"]
