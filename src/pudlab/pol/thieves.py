"""Adaptive thieves: cheating provers who read the verifier's code and build bundles against it
(in the spirit of Zhang et al., IEEE S&P 2022, and Fang et al., EuroS&P 2023, who broke the original
PoL this way). :mod:`pudlab.pol.forgers` holds the simpler forgers and tampers.

* **fake trajectory** (:func:`forge_fake_trajectory`): a thief holding only the final model W_T (and
  maybe data of his own) builds a bundle from a seeded initialization in which a few segments per
  epoch are real training on the data he shares and every other segment is made of exact Adam steps
  on *solved* gradients that walk the weights onto W_T (weights, both moments and step count stay
  consistent, so the history checks pass), each fake segment smaller than the real ones so that top-Q
  never replays it; the last checkpoint is W_T bit for bit.
* **drift** (:func:`forge_drift`): every segment is an exact replay on the thief's own shared data plus
  a drift toward W_T kept below a share of the verifier's threshold, which the thief estimates with
  his own calibration seed (and within Adam's update bound).
* **backdoor** (:func:`poison`): a trainer adds dirty-label triggered samples to the owner's data,
  trains on them and shares the owner's clean release.
* **sigma inflation** (:func:`inflate_sigma`) and **release substitution**
  (:func:`substitute_release`): claims about O(T) that buy a larger tolerance or bind other data to
  the owner's key id.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from pudlab.data.dataset import LabeledImages
from pudlab.io import read_json, weights_sha256, write_json
from pudlab.model import ModelConfig, initial_state
from pudlab.pol.bundle import BundleWriter, TrainingState, open_bundle, reseal_bundle
from pudlab.pol.forgers import copy_bundle, write_state
from pudlab.pol.history import segment_move_bound
from pudlab.pol.manifest import (
    MANIFEST_FILE,
    PADDING,
    RELEASE_FILE,
    Manifest,
    NoiseClaim,
    ScheduleRecord,
    SharedRecord,
    checkpoint_steps,
    schedule_shape,
)
from pudlab.pol.replay import capture_state, replay_state, restore_state
from pudlab.pol.verifier import (
    DEFAULT_CALIBRATION_REPLAYS,
    DEFAULT_MULTIPLIER,
    reobfuscations,
    select_segments,
)
from pudlab.seeding import derive_rng
from pudlab.train.trainer import TrainConfig, Trainer, environment, epoch_batches, torch_threads


# ----------------------------------------------------------------------------------- fake trajectory
def solved_gradient(m: np.ndarray, v: np.ndarray, ratio: np.ndarray, step: int, betas: tuple[float, float]) -> np.ndarray:
    """The gradient that makes Adam's step ``step`` (1-based) move each weight by ``-lr * ratio`` (eps
    neglected): solves ``m_hat / sqrt(v_hat) = ratio`` for g, with m, v the moments before the step.

    The ratio reached by a gradient g is ``r(g) = (b1 m + (1-b1) g) sqrt(c2) / (c1 sqrt(b2 v + (1-b2) g^2))``:
    continuous, from the limit ``-+r_inf = -+(1-b1) sqrt(c2) / (c1 sqrt(1-b2))`` at g = -+inf to its peak
    ``sqrt(c2)/c1 * sqrt((1-b1)^2/(1-b2) + (b1 m)^2/(b2 v))`` on the side of m (Cauchy-Schwarz), so every
    ratio strictly between is reached. ``ratio`` is clipped to 0.95 x that range first, so the quadratic
    in g has a root of the right sign; where none exists (zero moments: only 0 and +-r_inf) g is 0 or small."""
    b1, b2 = betas
    c1, c2 = 1 - b1**step, 1 - b2**step
    alpha, beta = 1 - b1, b1 * m
    far = alpha * math.sqrt(c2) / (c1 * math.sqrt(1 - b2))
    with np.errstate(divide="ignore", invalid="ignore"):
        peak = math.sqrt(c2) / c1 * np.sqrt(alpha**2 / (1 - b2) + np.where(v > 0, beta**2 / (b2 * v), np.inf))
    reach = np.where(np.sign(ratio) == np.sign(beta), peak, far)
    ratio = np.clip(ratio, -0.95 * reach, 0.95 * reach)
    s = ratio**2 * c1**2
    a = c2 * alpha**2 - s * (1 - b2)
    b = 2 * c2 * alpha * beta
    c = c2 * beta**2 - s * b2 * v
    disc = b * b - 4 * a * c
    root = np.sqrt(np.clip(disc, 0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        candidates = np.stack([(-b + root) / (2 * a), (-b - root) / (2 * a)])
    valid = np.isfinite(candidates) & (disc >= 0) & (np.sign(beta + alpha * candidates) == np.sign(ratio))
    # no root: zero moments, where any g != 0 gives +-r_inf (and g = 0 gives 0): start moving with a small one
    fallback = np.where((m == 0) & (v == 0) & (np.abs(ratio) > 0.5 * far), np.sign(ratio) * 1e-3, 0.0)
    gradient = np.where(valid[0], candidates[0], np.where(valid[1], candidates[1], fallback))
    return np.where(ratio == 0, -beta / alpha, gradient)


def plan_honest(segment_epochs: list[int], per_epoch: int) -> set[int]:
    """The segments a fake-trajectory thief trains for real: per epoch, the first ``per_epoch - 1`` segments
    and the last segment of the epoch before (so that a top segment's predecessor is real too)."""
    honest: set[int] = set()
    for epoch in sorted(set(segment_epochs)):
        members = [i for i, e in enumerate(segment_epochs) if e == epoch]
        honest.update(members[:max(per_epoch - 1, 1)])
        if members[0] > 0:
            honest.add(members[0] - 1)
    return honest


def forge_fake_trajectory(out: Path, *, target: dict[str, torch.Tensor], model_config: ModelConfig,
                          train_config: TrainConfig, shared: LabeledImages, noise: NoiseClaim,
                          checkpoint_every: int, honest_per_epoch: int, init_seed: int = 0,
                          release_manifest: dict | None = None, threads: int = 1) -> tuple[Path, set[int]]:
    """Build the fake-trajectory bundle at ``out`` (see the module docstring); return it and its real segments.

    ``shared``: what the thief shares and trains his real segments on (his own data, or noise images
    with random labels when he has none)."""
    num = len(shared)
    steps_per_epoch, num_steps = schedule_shape(num, train_config.batch_size, train_config.epochs)
    ends = checkpoint_steps(num_steps, checkpoint_every)
    bounds = list(zip([0, *ends[:-1]], ends, strict=True))
    epochs_of = [start // steps_per_epoch for start, _ in bounds]
    honest = plan_honest(epochs_of, honest_per_epoch)
    schedule = [p for e in range(train_config.epochs)
                for p in epoch_batches(num, train_config.batch_size, shuffle_seed=train_config.shuffle_seed, epoch=e)]
    fake_steps_left = sum(end - start for i, (start, end) in enumerate(bounds) if i not in honest)
    initial = initial_state(model_config, init_seed=init_seed)
    writer = BundleWriter(out, overwrite=True)
    lr, betas = train_config.lr, train_config.adam_betas
    with torch_threads(threads):
        trainer = Trainer(model_config, initial, shared, train_config)
        init = writer.write_initial(initial, seed=init_seed)
        state = capture_state(trainer, 0)
        for index, (start, end) in enumerate(bounds):
            restore_state(trainer, state)
            for step in range(start, end):
                if index in honest:
                    trainer.step(schedule[step])
                    continue
                current = capture_state(trainer, step)
                for name, param in trainer.model.named_parameters():
                    w = current.weights[name].double().numpy()
                    m = current.exp_avg[name].double().numpy() if current.exp_avg else np.zeros_like(w)
                    v = current.exp_avg_sq[name].double().numpy() if current.exp_avg_sq else np.zeros_like(w)
                    ratio = -(target[name].double().numpy() - w) / (lr * max(fake_steps_left - 1, 1))
                    grad = solved_gradient(m, v, ratio, step + 1, betas)
                    param.grad = torch.from_numpy(grad.astype(np.float32)).reshape(param.shape)
                trainer.optimizer.step()
                trainer.optimizer.zero_grad(set_to_none=True)
                fake_steps_left -= 1
            state = capture_state(trainer, end)
            if index == len(bounds) - 1:  # the stolen model, bit for bit
                state = TrainingState(end, {n: t.clone() for n, t in target.items()}, state.exp_avg, state.exp_avg_sq)
            writer.add_checkpoint(state)
        batches = np.full((num_steps, train_config.batch_size), PADDING, dtype=np.int64)
        for step, positions in enumerate(schedule):
            batches[step, :len(positions)] = positions
        shared_x, shared_y = writer.write_shared(shared)
        release = writer.write_release(release_manifest) if release_manifest is not None else None
        manifest = Manifest(model=model_config, training=train_config, init=init, noise=noise,
                            shared=SharedRecord(num, model_config.num_classes, shared_x, shared_y),
                            schedule=ScheduleRecord(num_steps, steps_per_epoch, checkpoint_every,
                                                    writer.write_batches(batches)),
                            checkpoints=tuple(writer.checkpoints), final_weights_sha256=weights_sha256(target),
                            environment=environment(torch.device("cpu")),
                            provenance={"role": "fake-trajectory thief"}, release=release)
        return writer.finish(manifest), honest


def top_q_plan_is_honest(path: Path, honest: set[int], top_q: int = 1) -> bool:
    """Whether every segment today's top-Q verifier would replay (top-Q and the one before each) is real."""
    bundle = open_bundle(path)
    chosen = select_segments(bundle.update_norms, bundle.segment_epochs, top_q)
    return all(i in honest and (i == 0 or i - 1 in honest or i - 1 in chosen) for i in chosen)


def noise_images(like: LabeledImages, *, seed: int) -> LabeledImages:
    """What a thief without data shares: uniform noise images with random labels (same shape and count)."""
    rng = derive_rng(seed, "thief-noise-images")
    images = rng.random(like.images.shape, dtype=np.float32)
    labels = rng.integers(0, int(like.labels.max()) + 1, size=len(like)).astype(np.int64)
    return LabeledImages(images, labels, np.arange(len(like), dtype=np.int64))


# ----------------------------------------------------------------------------------- drift
def forge_drift(own_bundle: Path, out: Path, target: dict[str, torch.Tensor], *, drift_share: float = 0.6,
                thief_seed: int = 12345, calibration_replays: int = DEFAULT_CALIBRATION_REPLAYS,
                multiplier: float = DEFAULT_MULTIPLIER) -> dict[str, torch.Tensor]:
    """Rewrite the thief's own bundle so that every segment is the exact replay on its shared data plus a
    drift toward ``target`` of ``drift_share`` x the threshold the thief estimates with his own seed
    (clipped per weight to Adam's update bound); return the final weights it claims."""
    copy_bundle(own_bundle, out)
    bundle = open_bundle(out)
    manifest = bundle.manifest
    noise, training = manifest.noise, manifest.training
    calibration = reobfuscations(bundle.shared, sigma=noise.sigma, fraction=noise.fraction, clip=noise.clip,
                                 count=calibration_replays, seed=thief_seed) if noise.sigma > 0 else []
    state = bundle.initial
    with torch_threads(manifest.torch_threads):
        for index, (start, end) in enumerate(bundle.segment_bounds):
            batches = [bundle.batch(step) for step in range(start, end)]

            def replay(data: LabeledImages, origin: TrainingState = state, steps: list = batches) -> TrainingState:
                return replay_state(manifest.model, training, origin, data, steps)

            replayed = replay(bundle.shared)
            budget = drift_share * multiplier * max(
                (_distance(replay(data).weights, replayed.weights) for data in calibration), default=0.0)
            gap = {n: target[n].double() - replayed.weights[n].double() for n in target}
            length = math.sqrt(sum(float((g**2).sum()) for g in gap.values()))
            drift = {n: g * (min(1.0, budget / length) if length > 0 else 0.0) for n, g in gap.items()}
            # never shrink the segment's update (the verifier bounds replayed / claimed update): drop the part
            # of the drift that points back along the update
            update = {n: replayed.weights[n].double() - state.weights[n].double() for n in target}
            along = sum(float((drift[n] * update[n]).sum()) for n in target) / max(
                sum(float((u**2).sum()) for u in update.values()), 1e-30)
            bound = segment_move_bound(start, end, training.lr, training.adam_betas) * 0.98
            weights = {}
            for name in replayed.weights:
                moved = update[name] + drift[name] - min(along, 0.0) * update[name]
                weights[name] = (state.weights[name].double() + moved.clamp(-bound, bound)).float()
            state = TrainingState(end, weights, replayed.exp_avg, replayed.exp_avg_sq)
            write_state(out, index, state)
    reseal_bundle(out)
    return state.weights


def _distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return math.sqrt(sum(float(((a[n].double() - b[n].double()) ** 2).sum()) for n in a))


# ----------------------------------------------------------------------------------- backdoor
def poison(data: LabeledImages, *, share: float, target_label: int, seed: int) -> tuple[LabeledImages, np.ndarray]:
    """``data`` with a share of its samples (never of ``target_label``) stamped with a trigger (a bright
    3x3 corner patch) and relabelled ``target_label`` (dirty-label); and the poisoned positions."""
    rng = derive_rng(seed, "backdoor")
    candidates = np.flatnonzero(data.labels != target_label)
    chosen = np.sort(rng.choice(candidates, size=int(round(share * len(data))), replace=False))
    images, labels = data.images.copy(), data.labels.copy()
    images[chosen] = stamp_trigger(images[chosen])
    labels[chosen] = target_label
    return LabeledImages(images, labels, data.ids.copy()), chosen


def stamp_trigger(images: np.ndarray) -> np.ndarray:
    """The images with the backdoor trigger: a 3x3 patch of 1.0 in the bottom-right corner."""
    stamped = images.copy()
    stamped[..., -3:, -3:] = 1.0
    return stamped


# ----------------------------------------------------------------------------------- claims about O(T)
def inflate_sigma(bundle: Path, out: Path, sigma: float) -> Path:
    """A copy of ``bundle`` claiming ``sigma`` in its manifest (a larger tolerance), resealed; the owner's
    release manifest, if any, left as it is (changing it breaks its MAC)."""
    copy_bundle(bundle, out)
    manifest = read_json(out / MANIFEST_FILE)
    manifest["obfuscation"]["sigma"] = float(sigma)
    write_json(out / MANIFEST_FILE, manifest)
    reseal_bundle(out)
    return out


def substitute_release(bundle: Path, out: Path, shared: LabeledImages, *, owner_key_id: str,
                       release_manifest: dict | None) -> Path:
    """A copy of ``bundle`` sharing ``shared`` (a release of other data) under the owner's key id, with
    ``release_manifest`` (the other release's own, or the owner's, or none) as ``release.json``, resealed."""
    from pudlab.pol.bundle import save_npy
    from pudlab.pol.manifest import SHARED_X_FILE, SHARED_Y_FILE

    copy_bundle(bundle, out)
    save_npy(out / SHARED_X_FILE, shared.images.astype(np.float32))
    save_npy(out / SHARED_Y_FILE, shared.labels.astype(np.int64))
    manifest = read_json(out / MANIFEST_FILE)
    manifest["obfuscation"]["key_id"] = owner_key_id
    (out / RELEASE_FILE).unlink(missing_ok=True)
    manifest["release"] = None
    if release_manifest is not None:
        write_json(out / RELEASE_FILE, release_manifest)
        manifest["release"] = RELEASE_FILE
    write_json(out / MANIFEST_FILE, manifest)
    reseal_bundle(out)
    return out


__all__ = [
    "forge_drift",
    "forge_fake_trajectory",
    "inflate_sigma",
    "noise_images",
    "plan_honest",
    "poison",
    "solved_gradient",
    "stamp_trigger",
    "substitute_release",
    "top_q_plan_is_honest",
]
