"""PoL challenges in federated learning: a thin adapter over :mod:`pudlab.pol`.

Every client logs its local training as a proof bundle with :func:`pudlab.pol.prove` (it cannot
know in advance whether it will be challenged): the round's global model is the bundle's initial
weights, the shared data is O(T_k) at the client's sigma. A challenged client hands its bundle to
the server, which runs :func:`pudlab.pol.verify_bundle` with the round's policy and adds the checks
only the FL server can make:

* the bundle starts from this round's global model (initial-weights hash; passed to the verifier as
  ``expected_initial_sha256``, which settles the initialization check whatever the seed);
* its final checkpoint is the model the client submitted (``expected_model_sha256``);
* it claims the round's local hyper-parameters (epochs, batch size, lr) and the sample count the
  client claimed for FedAvg weighting;
* its sigma is the one the server assigned to the client (``release_noise``: the client's O(T_k) is the
  engine's seeded noise, not an owner's keyed release, so the server's own assignment is the authority).

The server draws the segments it replays from a seed derived from the simulation's seed, the round and
the client (recorded, so that a simulation is reproducible; a real server would keep it secret). An
"undecidable" verdict (at the client's sigma the replay tolerance cannot rule out a model steered from
other data) is not a rejection: the server cannot refuse an update it cannot judge, so the challenge
passes, and its reason starts with "undecidable at sigma S" (the simulation's records keep it).

Cheaters answer with forged bundles built from a bundle of their own (what :mod:`pudlab.pol.attacks`
does for its thief): Byzantine clients swap the submitted model in as the last checkpoint
(:func:`pudlab.pol.attacks.forge_jump`), thieves put every checkpoint on the straight line from the
global model to the stolen one (:func:`pudlab.pol.attacks.forge_interpolated`), lazy clients show
their real, shorter training stretched over the claimed steps (weights and Adam moments of real
step ``floor(t * real / claimed)`` at claimed step t; :func:`write_checkpoint_state` is the one
piece :mod:`pudlab.pol` lacks: it replaces a whole checkpoint state, not only its weights).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from pudlab.data.dataset import LabeledImages
from pudlab.errors import BundleError
from pudlab.fl.adversaries import stretched_step
from pudlab.fl.records import ChallengeOutcome, ChallengeRequest, Weights
from pudlab.io import read_json, weights_sha256, weights_to_bytes, write_bytes_atomic
from pudlab.model import ModelConfig
from pudlab.pol.bundle import TrainingState, reseal_bundle
from pudlab.pol.forgers import edit_checkpoint_weights, forge_interpolated, forge_jump
from pudlab.pol.manifest import MANIFEST_FILE, NoiseClaim
from pudlab.pol.prover import ProofResult, prove
from pudlab.pol.verifier import VerifyOptions, verify_bundle
from pudlab.seeding import derive_seed
from pudlab.train.trainer import TrainConfig


def prove_local(private_set: LabeledImages, shared_set: LabeledImages, model_config: ModelConfig,
                train_config: TrainConfig, *, global_weights: Weights, sigma: float, checkpoint_every: int,
                out: Path) -> ProofResult:
    """Local training that logs a proof bundle at ``out`` (the honest client's path)."""
    return prove(private_set, shared_set, model_config, train_config, initial_weights=global_weights,
                 noise=NoiseClaim(sigma, 1.0, False), checkpoint_every=checkpoint_every, out=out, overwrite=True,
                 provenance={"kind": "pudlab.fl.client"})


def forge_byzantine(honest_bundle: Path, out: Path, submitted: Weights) -> Path:
    """A Byzantine client's answer: its real checkpoints, the submitted model as the last one."""
    return forge_jump(honest_bundle, out, submitted)


def forge_thief(own_bundle: Path, out: Path, stolen: Weights) -> Path:
    """A thief's answer: every checkpoint on the line from the global model to the stolen one.

    :func:`pudlab.pol.attacks.forge_interpolated` computes the last point as ``W_0 + 1 * (W - W_0)``,
    which in float32 is not always ``W`` bit for bit; a careful thief makes it exact (else the
    FL server's "final checkpoint is the submitted model" check alone would catch it).
    """
    forge_interpolated(own_bundle, out, stolen)
    last = len(read_json(out / MANIFEST_FILE)["checkpoints"]) - 1
    edit_checkpoint_weights(out, last, lambda weights: {name: stolen[name].clone() for name in weights})
    reseal_bundle(out)
    return out


def write_checkpoint_state(bundle: Path, index: int, state: TrainingState) -> None:
    """Replace checkpoint ``index`` of a (trusted, own) bundle by ``state`` (weights and Adam moments).

    The caller reseals the bundle afterwards (:func:`pudlab.pol.bundle.reseal_bundle`).
    """
    record = read_json(bundle / MANIFEST_FILE)["checkpoints"][index]
    tensors = {name: tensor.to(torch.float32).contiguous() for name, tensor in state.tensors().items()}
    write_bytes_atomic(bundle / record["file"], weights_to_bytes(tensors, {"format": "pudlab.pol_checkpoint/1"}))


def forge_lazy(full_bundle: Path, out: Path, real_states: Sequence[TrainingState], *, claimed_steps: int) -> Path:
    """A lazy client's answer: its real states (one per real step, ``[0]`` the start) stretched over the claims."""
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(full_bundle, out)
    manifest = read_json(out / MANIFEST_FILE)
    real_steps = len(real_states) - 1
    for index, record in enumerate(manifest["checkpoints"]):
        shown = real_states[stretched_step(int(record["step"]), real_steps=real_steps, claimed_steps=claimed_steps)]
        if not shown.exp_avg:  # step 0 has no Adam state: show zero moments
            zeros = {name: torch.zeros_like(value) for name, value in shown.weights.items()}
            shown = TrainingState(shown.step, shown.weights, zeros, dict(zeros))
        write_checkpoint_state(out, index, shown)
    reseal_bundle(out)
    return out


def verify_options(request: ChallengeRequest) -> VerifyOptions:
    """The server's verification policy for one challenge."""
    pol = request.spec.pol
    return VerifyOptions(
        top_q=pol.top_q,
        threshold=None if pol.threshold == "auto" else float(pol.threshold),
        multiplier=pol.multiplier,
        calibration_replays=pol.calibration_replays,
        verifier_seed=derive_seed(request.spec.simulation.seed, "pol-calibration", request.round,
                                  request.client.client) % (2**62),
        release_noise=NoiseClaim(request.sigma, 1.0, False),
        expected_model_sha256=weights_sha256(request.submission.weights),
        expected_initial_sha256=weights_sha256(request.global_weights),
    )


def _fl_checks(request: ChallengeRequest, bundle: Path) -> str | None:
    """The checks only the FL server can make; the first failure as one line, else None."""
    manifest = read_json(bundle / MANIFEST_FILE)
    if manifest.get("init", {}).get("weights_sha256") != weights_sha256(request.global_weights):
        return f"the bundle does not start from round {request.round}'s global model"
    training = manifest.get("training", {})
    expected = request.spec.training
    claimed = {"epochs": training.get("epochs"), "batch_size": training.get("batch_size"), "lr": training.get("lr")}
    wanted = {"epochs": expected.local_epochs, "batch_size": expected.batch_size, "lr": expected.lr}
    if claimed != wanted:
        return f"the bundle claims local training {claimed}, the round asked for {wanted}"
    samples = manifest.get("shared", {}).get("num_samples")
    if samples != request.submission.claimed_samples:
        return f"the bundle shares {samples} samples, the client claimed {request.submission.claimed_samples} for weighting"
    return None


def pol_challenge(request: ChallengeRequest) -> ChallengeOutcome:
    """Challenge one client: verify the bundle it answers with (see the module docstring)."""
    started = time.perf_counter()
    bundle = request.submission.bundle
    client = request.client.client
    if bundle is None:
        return ChallengeOutcome(client, False, "no proof bundle", seconds=time.perf_counter() - started)
    try:
        failure = _fl_checks(request, bundle)
        if failure is not None:
            return ChallengeOutcome(client, False, failure, seconds=time.perf_counter() - started)
        verdict = verify_bundle(bundle, verify_options(request))
    except BundleError as exc:
        return ChallengeOutcome(client, False, f"malformed bundle: {exc}", seconds=time.perf_counter() - started)
    return ChallengeOutcome(client, verdict.decision != "reject", verdict.reason,
                            tuple(s.distance for s in verdict.segments),
                            tuple(s.threshold for s in verdict.segments),
                            time.perf_counter() - started)


__all__ = [
    "forge_byzantine",
    "forge_lazy",
    "forge_thief",
    "pol_challenge",
    "prove_local",
    "verify_options",
    "write_checkpoint_state",
]
