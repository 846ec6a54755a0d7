"""Forgers: cheating provers that build bundles which pass every integrity check.

The manifest has no signature, so a forger edits files and re-seals the bundle with
:func:`pudlab.pol.bundle.reseal_bundle`; only the verifier's replay can catch them
(:mod:`pudlab.pol.evaluation` measures how often it does). Forgers work on their own bundles and
edit ``manifest.json`` as plain JSON (a forged manifest need not validate).

* **spoof** (paper Sec. 5.3, "strong disguisability of fakes"): trained on T_i but shares
  O(T_j), a disjoint draw of the same S-X-Y-Z setting, re-ordered by :func:`align_labels` so that
  every position keeps T_i's label (a careless spoofer who leaves the labels mismatched is caught
  trivially); built with :func:`pudlab.pol.prover.reshare`.
* **thief-jump** (:func:`forge_jump`): a model thief trains his own model on T_j and swaps the
  stolen final model in as his last checkpoint.
* **thief-interpolate** (:func:`forge_interpolated`): a model thief fabricates every checkpoint on
  the straight line from the public initial weights to the stolen model (his own Adam moments and
  batches).
* **moment forgery** (:func:`forge_moments`): a thief trains on his own data, then crafts Adam's
  moments at the checkpoint before the last segment (a large second moment, a first moment solved for
  by a few replays) so that replaying the last segment on his own shared data lands on a target
  model (the stolen one); the last checkpoint is that replay's output, so a verifier that replays
  the last segment and compares weights only sees an exact match.
* **stolen initialization** (:func:`forge_stolen_init`): a thief declares the stolen model as his
  "initial weights from a file" and fine-tunes it briefly on his own data (``careful``: biases set to
  zero and kernels clipped into the initializer's support first, to look like a fresh draw).
* **tampers** of an honest bundle: :func:`tamper_checkpoint` (a middle checkpoint moved by one
  update's norm), :func:`tamper_batch_swap` (two steps of an epoch swapped),
  :func:`tamper_batch_reorder` (the steps of the first segment reversed),
  :func:`tamper_hyperparameter` (lr doubled in the manifest), :func:`tamper_shared` (other shared
  data); with ``reseal=False`` the unsealed variants (a file edited, the manifest left as it was),
  which the integrity check must catch (exit 2).
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from pudlab.data.dataset import LabeledImages
from pudlab.errors import PudlabError
from pudlab.io import read_json, weights_to_bytes, write_bytes_atomic, write_json
from pudlab.model import ModelConfig
from pudlab.pol.bundle import TrainingState, open_bundle, reseal_bundle, save_npy
from pudlab.pol.manifest import (
    BATCHES_FILE,
    MANIFEST_FILE,
    SHARED_X_FILE,
    SHARED_Y_FILE,
    NoiseClaim,
)
from pudlab.pol.policy import glorot_bound
from pudlab.pol.prover import ProofResult, prove
from pudlab.pol.replay import replay_state
from pudlab.seeding import derive_rng
from pudlab.train.trainer import TrainConfig, torch_threads


def align_labels(reference_labels: np.ndarray, other: LabeledImages) -> LabeledImages:
    """``other`` re-ordered so that position p holds a sample of label ``reference_labels[p]``
    (what a careful spoofer does). Needs the same count of every label."""
    reference_labels = np.asarray(reference_labels)
    if len(reference_labels) != len(other) or not np.array_equal(np.bincount(reference_labels, minlength=2),
                                                                 np.bincount(other.labels, minlength=2)):
        raise PudlabError("align_labels: the two sets do not have the same number of samples of each label")
    order = np.empty(len(other), dtype=np.int64)
    for label in np.unique(reference_labels):
        order[np.flatnonzero(reference_labels == label)] = np.flatnonzero(other.labels == label)
    return other.take(order)


def copy_bundle(source: str | Path, target: str | Path) -> Path:
    """A copy of the bundle ``source`` at ``target`` (replacing whatever is there)."""
    target = Path(target)
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    return target


def _checkpoint_path(bundle: Path, index: int) -> Path:
    return bundle / read_json(bundle / MANIFEST_FILE)["checkpoints"][index]["file"]


def edit_checkpoint_weights(bundle: str | Path, index: int,
                            edit: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]) -> None:
    """Replace the weights of checkpoint ``index`` (a trusted, own bundle) by ``edit(weights)``."""
    path = _checkpoint_path(Path(bundle), index)
    tensors = load_file(str(path))
    weights = {name[len("weights."):]: t for name, t in tensors.items() if name.startswith("weights.")}
    for name, tensor in edit(weights).items():
        tensors[f"weights.{name}"] = tensor.to(torch.float32).contiguous()
    write_bytes_atomic(path, weights_to_bytes(tensors, {"format": "pudlab.pol_checkpoint/1"}))


def tamper_checkpoint(source: Path, target: Path, *, scale: float = 1.0, seed: int = 0, reseal: bool = True) -> Path:
    """Move a middle checkpoint by a random direction of norm ``scale`` x that segment's update."""
    bundle = open_bundle(source)
    index = max(len(bundle.update_norms) // 2 - 1, 0)
    norm = bundle.update_norms[index] * scale
    copy_bundle(source, target)
    rng = derive_rng(seed, "tamper-checkpoint")

    def edit(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        directions = {n: torch.from_numpy(rng.standard_normal(tuple(t.shape)).astype(np.float32)) for n, t in weights.items()}
        length = math.sqrt(sum(float((d.double() ** 2).sum()) for d in directions.values()))
        return {n: weights[n] + directions[n] * float(norm / length) for n in weights}

    edit_checkpoint_weights(target, index, edit)
    if reseal:
        reseal_bundle(target)
    return target


def _edit_batches(source: Path, target: Path, edit: Callable[[np.ndarray, dict], np.ndarray], reseal: bool) -> Path:
    copy_bundle(source, target)
    manifest = read_json(target / MANIFEST_FILE)
    batches = np.load(target / BATCHES_FILE, allow_pickle=False)
    save_npy(target / BATCHES_FILE, edit(batches.copy(), manifest["schedule"]))
    if reseal:
        reseal_bundle(target)
    return target


def tamper_batch_swap(source: Path, target: Path, *, reseal: bool = True) -> Path:
    """Swap the first step of epoch 0 with its second-to-last (both full batches, other segments)."""
    def edit(batches: np.ndarray, schedule: dict) -> np.ndarray:
        other = max(schedule["steps_per_epoch"] - 2, 1)
        batches[[0, other]] = batches[[other, 0]]
        return batches
    return _edit_batches(source, target, edit, reseal)


def tamper_batch_reorder(source: Path, target: Path, *, reseal: bool = True) -> Path:
    """Reverse the order of the steps of the first segment."""
    def edit(batches: np.ndarray, schedule: dict) -> np.ndarray:
        count = min(schedule["checkpoint_every"], schedule["steps_per_epoch"] - 1)
        count = max(count, 2)
        batches[:count] = batches[:count][::-1]
        return batches
    return _edit_batches(source, target, edit, reseal)


def tamper_hyperparameter(source: Path, target: Path, *, name: str = "lr", factor: float = 2.0) -> Path:
    """Multiply one training hyper-parameter in the manifest (the files stay as they are)."""
    copy_bundle(source, target)
    manifest = read_json(target / MANIFEST_FILE)
    manifest["training"][name] = manifest["training"][name] * factor
    write_json(target / MANIFEST_FILE, manifest)
    return target


def tamper_shared(source: Path, target: Path, shared: LabeledImages, *, reseal: bool = True) -> Path:
    """Replace the shared data (images and labels) with ``shared``."""
    copy_bundle(source, target)
    save_npy(target / SHARED_X_FILE, shared.images)
    save_npy(target / SHARED_Y_FILE, shared.labels)
    if reseal:
        reseal_bundle(target)
    return target


def forge_jump(thief_bundle: Path, target: Path, stolen: dict[str, torch.Tensor]) -> Path:
    """The thief's own training with the stolen model swapped in as the last checkpoint."""
    copy_bundle(thief_bundle, target)
    count = len(read_json(target / MANIFEST_FILE)["checkpoints"])
    edit_checkpoint_weights(target, count - 1, lambda weights: {n: stolen[n].clone() for n in weights})
    reseal_bundle(target)
    return target


def forge_interpolated(thief_bundle: Path, target: Path, stolen: dict[str, torch.Tensor]) -> Path:
    """Every checkpoint on the straight line from the initial weights to the stolen model."""
    copy_bundle(thief_bundle, target)
    manifest = read_json(target / MANIFEST_FILE)
    initial = load_file(str(target / manifest["init"]["file"]))
    total = manifest["schedule"]["num_steps"]
    for index, record in enumerate(manifest["checkpoints"]):

        def interpolate(weights: dict[str, torch.Tensor], fraction: float = record["step"] / total
                        ) -> dict[str, torch.Tensor]:
            return {n: initial[n] + fraction * (stolen[n] - initial[n]) for n in weights}

        edit_checkpoint_weights(target, index, interpolate)
    reseal_bundle(target)
    return target


def write_state(bundle: str | Path, index: int, state: TrainingState) -> None:
    """Replace checkpoint ``index`` of a (trusted, own) bundle by ``state`` (weights and Adam moments)."""
    path = _checkpoint_path(Path(bundle), index)
    tensors = {name: tensor.to(torch.float32).contiguous() for name, tensor in state.tensors().items()}
    write_bytes_atomic(path, weights_to_bytes(tensors, {"format": "pudlab.pol_checkpoint/1"}))


def forge_moments(thief_bundle: Path, target: Path, goal: dict[str, torch.Tensor], *, iterations: int = 8,
                  second_moment: float | None = 1.0) -> dict[str, torch.Tensor]:
    """Craft the moments at the checkpoint before the last segment so that replaying the last segment on
    the bundle's own shared data lands on ``goal``; return the final weights the forged bundle claims
    (``goal`` to within the solve's residual).

    ``second_moment``: the crafted second moment, the same for every coordinate (large: the gradients
    barely matter, the first moment steers); None keeps the checkpoint's own second moment and solves
    for the first moment only (a subtle forgery of a target near the thief's own trajectory).
    """
    copy_bundle(thief_bundle, target)
    bundle = open_bundle(target)
    manifest = bundle.manifest
    last = len(manifest.checkpoints) - 1
    if last < 1:
        raise PudlabError("forge_moments: the bundle needs at least two checkpoints")
    start_step, end_step = bundle.segment_bounds[last]
    batches = [bundle.batch(step) for step in range(start_step, end_step)]
    start = bundle.checkpoint(last - 1)
    b1, b2 = manifest.training.adam_betas
    lr = manifest.training.lr
    # each step k moves about -lr * b1^k m / (1-b1^t) / sqrt(v_k / (1-b2^t)): linear in the start's m
    gain = sum(b1**k * math.sqrt(1 - b2 ** (start_step + k)) / ((1 - b1 ** (start_step + k)) * b2 ** (k / 2))
               for k in range(1, end_step - start_step + 1))
    if second_moment is None:
        v = {n: t.clone() for n, t in start.exp_avg_sq.items()}
        m = {n: t.clone() for n, t in start.exp_avg.items()}
    else:
        v = {n: torch.full_like(w, second_moment) for n, w in start.weights.items()}
        m = {n: -(goal[n] - start.weights[n]) * math.sqrt(second_moment) / (lr * gain) for n in start.weights}
    with torch_threads(manifest.torch_threads):
        for _ in range(iterations + 1):
            crafted = TrainingState(start.step, start.weights, m, v)
            replayed = replay_state(manifest.model, manifest.training, crafted, bundle.shared, batches)
            # a damped Newton step on the (nearly linear) map from the start's m to the replayed weights
            scale = {n: 0.7 * (v[n].sqrt() + 1e-12) / (lr * gain) for n in m}
            m = {n: m[n] - (goal[n] - replayed.weights[n]) * scale[n] for n in m}
    write_state(target, last - 1, crafted)
    write_state(target, last, replayed)
    reseal_bundle(target)
    return replayed.weights


def forge_state(bundle_path: Path, target: Path, index: int,
                edit: Callable[[TrainingState], TrainingState]) -> Path:
    """Edit the state of checkpoint ``index`` (weights and/or Adam moments) and rewrite every later
    checkpoint as the replay from it, so that each later segment reproduces exactly."""
    copy_bundle(bundle_path, target)
    bundle = open_bundle(target)
    manifest = bundle.manifest
    state = edit(bundle.checkpoint(index))
    write_state(target, index, state)
    with torch_threads(manifest.torch_threads):
        for later in range(index + 1, len(manifest.checkpoints)):
            start_step, end_step = bundle.segment_bounds[later]
            state = replay_state(manifest.model, manifest.training, state, bundle.shared,
                                 [bundle.batch(step) for step in range(start_step, end_step)])
            write_state(target, later, state)
    reseal_bundle(target)
    return target


def careful_init(stolen: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``stolen`` made to look like a fresh draw: zero biases, kernels clipped into the Glorot support."""
    return {name: torch.zeros_like(t) if name.endswith("bias") else
            t.clamp(-glorot_bound(tuple(t.shape)), glorot_bound(tuple(t.shape))) for name, t in stolen.items()}


def forge_stolen_init(private: LabeledImages, shared: LabeledImages, stolen: dict[str, torch.Tensor],
                      model_config: ModelConfig, train_config: TrainConfig, *, noise: NoiseClaim,
                      checkpoint_every: int, out: Path, careful: bool = False, threads: int = 1,
                      release_manifest: dict | None = None) -> ProofResult:
    """A thief's honest-looking proof that starts from the stolen model as unseeded "initial weights"."""
    initial = careful_init(stolen) if careful else {n: t.clone() for n, t in stolen.items()}
    return prove(private, shared, model_config, train_config, initial_weights=initial, init_seed=None, noise=noise,
                 checkpoint_every=checkpoint_every, out=out, threads=threads, overwrite=True,
                 release_manifest=release_manifest, provenance={"role": "stolen-init thief"})


__all__ = [
    "align_labels",
    "careful_init",
    "forge_moments",
    "forge_state",
    "forge_stolen_init",
    "write_state",
    "copy_bundle",
    "edit_checkpoint_weights",
    "forge_interpolated",
    "forge_jump",
    "tamper_batch_reorder",
    "tamper_batch_swap",
    "tamper_checkpoint",
    "tamper_hyperparameter",
    "tamper_shared",
]
