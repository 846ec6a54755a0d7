"""The prover of privacy-preserving Proof-of-Learning (paper Sec. 5.3, Fig. 7; PoL: Jia et al.,
IEEE S&P 2021).

The prover trains on its private data T, logs a checkpoint (weights and Adam state) every K steps
and the sample positions of every step, and shares O(T) -- never T -- in a bundle
(:mod:`pudlab.pol.bundle`, manifest :class:`pudlab.pol.manifest.Manifest`). Every step is
:meth:`pudlab.train.trainer.Trainer.step`, the same call the verifier replays.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from pudlab.data.dataset import LabeledImages
from pudlab.errors import PudlabError
from pudlab.io import read_json, weights_sha256, write_json
from pudlab.model import ModelConfig
from pudlab.pol.bundle import BundleWriter, reseal_bundle, save_npy
from pudlab.pol.manifest import (
    MANIFEST_FILE,
    PADDING,
    RELEASE_FILE,
    SHARED_X_FILE,
    SHARED_Y_FILE,
    Manifest,
    NoiseClaim,
    ScheduleRecord,
    SharedRecord,
    schedule_shape,
)
from pudlab.pol.replay import capture_state
from pudlab.train.trainer import TrainConfig, Trainer, environment, epoch_batches, torch_threads


@dataclass
class ProofResult:
    """What :func:`prove` wrote."""

    path: Path
    manifest_sha256: str
    num_steps: int
    num_checkpoints: int
    checkpoint_every: int
    """K as written: the requested K, or the number of steps when that was smaller."""
    final_weights: dict[str, torch.Tensor]
    final_weights_sha256: str
    seconds: float


def _check_shared(private_set: LabeledImages, shared_set: LabeledImages) -> None:
    if len(shared_set) != len(private_set) or shared_set.sample_shape != private_set.sample_shape:
        raise PudlabError(f"shared data has {len(shared_set)} samples of {shared_set.sample_shape}, the training "
                          f"data {len(private_set)} of {private_set.sample_shape}: O(T) must match T sample for sample")
    if not np.array_equal(shared_set.labels, private_set.labels):
        raise PudlabError("shared data labels differ from the training labels (obfuscation keeps labels)")


# long: the keyword-only options of a proof, their docstring, and one training written as a bundle
def prove(
    private_set: LabeledImages,
    shared_set: LabeledImages,
    model_config: ModelConfig,
    train_config: TrainConfig,
    *,
    initial_weights: dict[str, torch.Tensor],
    noise: NoiseClaim,
    checkpoint_every: int,
    out: str | os.PathLike,
    init_seed: int | None = None,
    release_manifest: dict | None = None,
    provenance: dict | None = None,
    device: str = "cpu",
    threads: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> ProofResult:
    """Train on ``private_set`` (T) and write a proof bundle sharing ``shared_set`` (O(T)) to ``out``.

    ``checkpoint_every``: K, optimizer steps between checkpoints (one more after the last step); a K
    larger than the number of steps is lowered to it (one checkpoint, after the last step), so that
    every bundle written is one the verifier accepts as well-formed.
    ``init_seed``: the seed ``initial_weights`` were drawn with, so a verifier can redraw them;
    None when they came from a file. ``release_manifest``: the data owner's release manifest of
    ``shared_set`` (:func:`pudlab.obfuscation.release_manifest`, authenticated by the owner), written as
    ``release.json``: a verifier holding the owner's verification key takes sigma, R and clip from it
    and checks that the shared data is that release. ``threads``: intra-op threads to train with
    (recorded; a bit-exact replay needs the same count); None keeps torch's current setting.
    """
    if checkpoint_every < 1:
        raise PudlabError(f"checkpoint_every must be >= 1 step, got {checkpoint_every}")
    if train_config.epochs < 1:
        raise PudlabError("a proof needs at least one epoch")
    _check_shared(private_set, shared_set)
    started = time.perf_counter()
    num_samples = len(private_set)
    steps_per_epoch, num_steps = schedule_shape(num_samples, train_config.batch_size, train_config.epochs)
    checkpoint_every = min(checkpoint_every, num_steps)
    writer = BundleWriter(out, overwrite=overwrite)
    try:
        with torch_threads(threads):
            trainer = Trainer(model_config, initial_weights, private_set, train_config, device=device)
            env = environment(trainer.device)
            init = writer.write_initial(initial_weights, seed=init_seed)
            batches = _train_logged(trainer, writer, num_samples, train_config, checkpoint_every, progress)
        final = trainer.weights()
        shared_x, shared_y = writer.write_shared(shared_set)
        release = writer.write_release(release_manifest) if release_manifest is not None else None
        manifest = Manifest(
            model=model_config, training=train_config, init=init, noise=noise,
            shared=SharedRecord(num_samples, model_config.num_classes, shared_x, shared_y),
            schedule=ScheduleRecord(num_steps, steps_per_epoch, checkpoint_every, writer.write_batches(batches)),
            checkpoints=tuple(writer.checkpoints), final_weights_sha256=weights_sha256(final),
            environment=env, provenance=provenance or {}, release=release)
        path = writer.finish(manifest)
    except BaseException:
        writer.abort()
        raise
    return ProofResult(path, _manifest_sha(path), num_steps, len(writer.checkpoints), checkpoint_every, final,
                       weights_sha256(final), time.perf_counter() - started)


def _train_logged(trainer: Trainer, writer: BundleWriter, num_samples: int, train_config: TrainConfig,
                  checkpoint_every: int, progress: bool) -> np.ndarray:
    """Run every step, checkpointing every K steps and after the last; return the -1 padded batch positions."""
    batch_size = train_config.batch_size
    _, num_steps = schedule_shape(num_samples, batch_size, train_config.epochs)
    batches = np.full((num_steps, batch_size), PADDING, dtype=np.int64)
    step = 0
    bar = tqdm(total=num_steps, desc="prove", unit="step", disable=not progress, leave=False)
    for epoch in range(train_config.epochs):
        for positions in epoch_batches(num_samples, batch_size, shuffle_seed=train_config.shuffle_seed, epoch=epoch):
            trainer.step(positions)
            batches[step, :len(positions)] = positions
            step += 1
            bar.update()
            if step % checkpoint_every == 0 or step == num_steps:
                writer.add_checkpoint(capture_state(trainer, step))
    bar.close()
    return batches


def _manifest_sha(path: Path) -> str:
    return hashlib.sha256((path / MANIFEST_FILE).read_bytes()).hexdigest()


def reshare(bundle: str | os.PathLike, out: str | os.PathLike, shared_set: LabeledImages, noise: NoiseClaim,
            *, release_manifest: dict | None = None, overwrite: bool = False) -> Path:
    """Copy ``bundle`` to ``out`` with other shared data (and its owner's ``release_manifest``, or none)
    and re-seal it. Trusts ``bundle`` (it is the caller's own).

    To disclose the same training at another sigma, pass ``release(T, sigma=..., key=...)``
    (:func:`pudlab.obfuscation.release`): its noise is drawn from (key, sigma, sample id), so the two
    bundles carry independent noise and cannot be differenced back to T, even under one key. Never
    pass a second scaling of the same noise (the obfuscation of the experiment engine, one noise
    direction per sample over its sigma grid): two such releases give T exactly."""
    source, target = Path(bundle), Path(out)
    if target.exists():
        if not overwrite:
            raise PudlabError(f"{target}: exists (choose another path, or overwrite)")
        shutil.rmtree(target)
    shutil.copytree(source, target)
    manifest = read_json(target / MANIFEST_FILE)
    if len(shared_set) != manifest["shared"]["num_samples"]:
        raise PudlabError(f"reshare: {len(shared_set)} samples, the bundle trained on {manifest['shared']['num_samples']}")
    save_npy(target / SHARED_X_FILE, shared_set.images.astype(np.float32, copy=False))
    save_npy(target / SHARED_Y_FILE, shared_set.labels.astype(np.int64, copy=False))
    manifest["obfuscation"] = noise.to_dict()
    (target / RELEASE_FILE).unlink(missing_ok=True)
    manifest["release"] = None
    if release_manifest is not None:
        write_json(target / RELEASE_FILE, release_manifest)
        manifest["release"] = RELEASE_FILE
    write_json(target / MANIFEST_FILE, manifest)
    reseal_bundle(target)
    return target


__all__ = ["ProofResult", "prove", "reshare"]
