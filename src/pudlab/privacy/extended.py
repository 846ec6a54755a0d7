"""The stronger attacks of the privacy report at one sigma: learned denoising and label inference
(threat model ``public``) and LiRA (threat model ``model``), as typed results."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from pudlab.data.dataset import LabeledImages
from pudlab.privacy._records import optional, record_from_dict
from pudlab.privacy.learned import (
    LabelInference,
    LearnedDenoiserConfig,
    apply_denoiser,
    label_inference,
    train_denoiser,
)
from pudlab.privacy.linkage import linkage_rate
from pudlab.privacy.lira import LiraResult, lira_attack, shadow_seed
from pudlab.privacy.similarity import psnr_per_sample, ssim_per_sample
from pudlab.seeding import derive_seed


@dataclass(frozen=True)
class LearnedDenoising:
    """The attacker's learned denoiser on the release: its scores and its cost."""

    psnr: float
    ssim: float
    linkage: float | None
    samples: int
    public_samples: int
    """Public images it was trained on (disjoint from T_t)."""
    train_seconds: float
    label_inference: LabelInference | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["label_inference"] = None if self.label_inference is None else self.label_inference.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "learned") -> LearnedDenoising:
        return record_from_dict(cls, data, where, label_inference=optional(LabelInference.from_dict))


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


def lira_at(target: Any, members: LabeledImages, nonmembers: LabeledImages, *, sigma: float, model_config: Any,
            train_config: Any, shadows: int, seed: int, clip: bool, device: str = "cpu") -> LiraResult:
    """LiRA with ``shadows`` shadow models trained as the target was (same architecture and schedule,
    on O(half the targets; sigma) with the attacker's own noise)."""
    import dataclasses

    from pudlab.model import build_model, initial_state
    from pudlab.obfuscation import obfuscate
    from pudlab.train.trainer import train_model

    def train_shadow(data: LabeledImages, index: int) -> Any:
        own = shadow_seed(seed, index)
        noisy = obfuscate(data, sigma=sigma, seed=derive_seed(own, "noise"), clip=clip)
        schedule = dataclasses.replace(train_config, shuffle_seed=derive_seed(own, "shuffle"))
        result = train_model(noisy, None, model_config, initial_state(model_config, init_seed=derive_seed(own, "init")),
                             schedule, device=device)
        return build_model(model_config, result.weights).to(device)

    return lira_attack(target, members, nonmembers, train_shadow=train_shadow, shadows=shadows, seed=seed,
                       device=device)


__all__ = ["LearnedDenoising", "learned_attacks", "lira_at"]
