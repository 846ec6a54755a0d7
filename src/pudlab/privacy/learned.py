"""Attacks of an attacker with public data of the same kind (threat model ``public``).

* Learned denoising: a small DnCNN-style network (Zhang et al., "Beyond a Gaussian Denoiser",
  IEEE TIP 2017: conv + ReLU layers predicting the noise, the estimate is input minus prediction)
  trained on public images disjoint from T, with fresh Gaussian noise at the release's sigma in
  every batch (sigma is public). Its reconstructions of the release are scored by PSNR / SSIM /
  linkage as the classical filters are.
* Label inference (attribute disclosure): a classifier (M_cnn) trained on the public data, applied
  to the release (trained on O(public; sigma)) and to the denoised release (trained on the clean
  public data); the better accuracy at recovering the true labels is reported with chance 1 / C.

:func:`learned_attacks` runs both at one sigma for the privacy report (:class:`LearnedDenoising`).

Every random choice (init, batches, noise) derives from the seed given.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from pudlab.data.dataset import LabeledImages
from pudlab.privacy.linkage import linkage_rate
from pudlab.privacy.similarity import psnr_per_sample, ssim_per_sample
from pudlab.records import Record
from pudlab.seeding import derive_seed


@dataclass(frozen=True)
class LearnedDenoiserConfig(Record):
    """Size and training of the attacker's denoiser (defaults: well under a minute per sigma on one
    CPU thread at 28 x 28; 32 channels and 600 steps of 64 gain ~0.3 dB at ~8x the time)."""

    depth: int = 5
    """Conv layers (the first and last included)."""
    channels: int = 16
    """Feature channels of the hidden layers."""
    steps: int = 500
    """Adam steps."""
    batch_size: int = 32
    lr: float = 2e-3


def build_denoiser(channels_in: int, config: LearnedDenoiserConfig) -> Any:
    """The DnCNN-style residual network (torch module): predicts the noise of its input."""
    import torch.nn as nn

    layers: list[Any] = [nn.Conv2d(channels_in, config.channels, 3, padding=1), nn.ReLU()]
    for _ in range(max(config.depth - 2, 0)):
        layers += [nn.Conv2d(config.channels, config.channels, 3, padding=1), nn.ReLU()]
    layers.append(nn.Conv2d(config.channels, channels_in, 3, padding=1))
    return nn.Sequential(*layers)


def train_denoiser(public: np.ndarray, sigma: float, config: LearnedDenoiserConfig, *, seed: int,
                   device: str = "cpu") -> tuple[Any, float]:
    """(denoiser, seconds): trained on ``public`` (N, C, H, W) with fresh N(0, sigma^2) noise per batch."""
    import torch

    started = time.perf_counter()
    generator = torch.Generator().manual_seed(derive_seed(seed, "learned-denoiser"))
    torch.manual_seed(derive_seed(seed, "learned-denoiser-init"))
    model = build_denoiser(public.shape[1], config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    images = torch.from_numpy(np.ascontiguousarray(public, dtype=np.float32))
    model.train()
    for _ in range(config.steps):
        index = torch.randint(len(images), (min(config.batch_size, len(images)),), generator=generator)
        clean = images[index]
        noise = torch.randn(clean.shape, generator=generator) * float(sigma)
        predicted = model((clean + noise).to(device))
        loss = torch.mean((predicted - noise.to(device)) ** 2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return model, time.perf_counter() - started


def apply_denoiser(model: Any, released: np.ndarray, *, data_range: float = 1.0, device: str = "cpu",
                   batch_size: int = 500) -> np.ndarray:
    """The denoiser's estimate of ``released``: input minus predicted noise, clipped to [0, data_range]."""
    import torch

    out = np.empty_like(released, dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(released), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(released[start:start + batch_size], dtype=np.float32))
            out[start:start + len(batch)] = (batch - model(batch.to(device)).cpu()).numpy()
    return np.clip(out, 0.0, data_range)


@dataclass(frozen=True)
class LabelInference(Record):
    """How well an attacker with public data recovers the released samples' labels."""

    accuracy: float
    """The better of the two classifiers' accuracies on the released samples' true labels."""
    accuracy_on_release: float
    """Classifier trained on O(public; sigma), applied to the release."""
    accuracy_on_denoised: float | None
    """Classifier trained on the clean public data, applied to the learned denoiser's output."""
    chance: float
    """1 / number of classes."""


def _classifier_accuracy(train: LabeledImages, test_images: np.ndarray, test_labels: np.ndarray, num_classes: int,
                         *, epochs: int, seed: int, key: str, device: str) -> float:
    import torch

    from pudlab.model import ModelConfig, build_model, initial_state
    from pudlab.train.trainer import TrainConfig, train_model

    config = ModelConfig(train.sample_shape, (8, 16, 32), 32, num_classes)
    result = train_model(train, None, config, initial_state(config, init_seed=derive_seed(seed, key, "init")),
                         TrainConfig(epochs=epochs, batch_size=64, lr=2e-3, shuffle_seed=derive_seed(seed, key)),
                         device=device)
    model = build_model(config, result.weights).to(device).eval()
    with torch.no_grad():
        predicted = model(torch.from_numpy(np.ascontiguousarray(test_images, dtype=np.float32)).to(device)).argmax(1)
    return float((predicted.cpu().numpy() == test_labels).mean())


def label_inference(public: LabeledImages, released: LabeledImages, denoised: np.ndarray | None, *, sigma: float,
                    num_classes: int, noise_seed: int, seed: int, epochs: int = 15,
                    device: str = "cpu") -> LabelInference:
    """Label inference on ``released`` (its ``labels`` are the truth) by classifiers trained on ``public``."""
    from pudlab.obfuscation import obfuscate

    noisy_public = obfuscate(public, sigma=sigma, seed=derive_seed(noise_seed, "attacker-public-noise"))
    on_release = _classifier_accuracy(noisy_public, released.images, released.labels, num_classes, epochs=epochs,
                                      seed=seed, key="label-noisy", device=device)
    on_denoised = None
    if denoised is not None:
        on_denoised = _classifier_accuracy(public, denoised, released.labels, num_classes, epochs=epochs, seed=seed,
                                           key="label-clean", device=device)
    best = max(on_release, on_denoised if on_denoised is not None else 0.0)
    return LabelInference(best, on_release, on_denoised, 1.0 / num_classes)


@dataclass(frozen=True)
class LearnedDenoising(Record):
    """The attacker's learned denoiser on the release: its scores and its cost."""

    psnr: float
    ssim: float
    linkage: float | None
    samples: int
    public_samples: int
    """Public images it was trained on (disjoint from T_t)."""
    train_seconds: float
    label_inference: LabelInference | None = None


def learned_attacks(raw: LabeledImages, released: np.ndarray, public: LabeledImages, *, sigma: float,
                    config: LearnedDenoiserConfig, num_classes: int, seed: int, noise_seed: int,
                    pool: np.ndarray | None, pool_ids: np.ndarray | None, label_epochs: int,
                    data_range: float = 1.0, device: str = "cpu") -> LearnedDenoising:
    """Train the denoiser on ``public`` at ``sigma``, denoise ``released`` (O(raw)), score it; label inference
    (``label_epochs`` = 0: off)."""
    if sigma > 0:
        model, seconds = train_denoiser(public.images, sigma, config, seed=seed, device=device)
        estimate = apply_denoiser(model, released, data_range=data_range, device=device)
    else:
        estimate, seconds = released, 0.0
    linkage = linkage_rate(estimate, raw.ids, pool, pool_ids) if pool is not None and pool_ids is not None else None
    labels = None
    if label_epochs > 0:
        started = time.perf_counter()
        release = LabeledImages(np.ascontiguousarray(released, np.float32), raw.labels, raw.ids)
        labels = label_inference(public, release, estimate, sigma=sigma, num_classes=num_classes,
                                 noise_seed=noise_seed, seed=seed, epochs=label_epochs, device=device)
        seconds += time.perf_counter() - started
    return LearnedDenoising(float(psnr_per_sample(raw.images, estimate, data_range=data_range).mean()),
                            float(ssim_per_sample(raw.images, estimate, data_range=data_range).mean()),
                            linkage, len(raw), len(public), seconds, labels)


__all__ = ["LabelInference", "LearnedDenoiserConfig", "LearnedDenoising", "apply_denoiser", "build_denoiser",
           "label_inference", "learned_attacks", "train_denoiser"]
