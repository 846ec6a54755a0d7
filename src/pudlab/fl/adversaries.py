"""Misbehaving clients: what they submit, and the training history they claim for it.

Byzantine clients (Blanchard et al. 2017's threat model) train honestly, then submit a corrupted
model ``g + u'`` where ``g`` is the round's global model and ``u = w - g`` their honest update:

* ``random_weights``: ``N(0, std^2)`` weights, unrelated to any training;
* ``gaussian``: ``g + u + N(0, std^2)`` (noise on every parameter);
* ``sign_flip``: ``g - scale * u``;
* ``scaled``: ``g + scale * u`` (a boosted update).

Free-riders / model thieves (Jia et al. 2021's spoofing adversary) do not train: they submit a
copy of another client's model of the same round (``copy = "client"``, plus optional
``N(0, noise_std^2)``) or the last global model plus noise (``copy = "global"``), and claim the
work on their own data. Lazy clients train only ``step_fraction`` of the local steps they claim.

Every cheater claims the full honest schedule; when challenged it answers with the most plausible
history it can make (:mod:`pudlab.fl.challenge` builds it): Byzantine clients their real
checkpoints with the submitted model as the last one; thieves a straight line from the global model
to the stolen one; lazy clients their real, shorter trajectory stretched over the claimed steps
(:func:`stretched_step`). A PoL verifier replaying a segment on the shared data sees where that
history departs from real training.

All functions are pure: randomness comes from the generator passed in (the simulation derives it
from ``(seed, "adversary", round, client)``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch

from pudlab.fl.spec import BYZANTINE_KINDS, AdversarySpec

Weights = dict[str, torch.Tensor]
BYZANTINE_ROLES = BYZANTINE_KINDS
"""Roles that train honestly, then corrupt what they submit."""


def _gaussian_like(weights: Mapping[str, torch.Tensor], std: float, rng: np.random.Generator) -> Weights:
    return {
        name: torch.from_numpy(rng.standard_normal(tuple(value.shape)).astype(np.float32) * np.float32(std))
        for name, value in weights.items()
    }


def random_weights(template: Mapping[str, torch.Tensor], *, std: float, rng: np.random.Generator) -> Weights:
    """``N(0, std^2)`` weights with ``template``'s names and shapes."""
    return _gaussian_like(template, std, rng)


def gaussian_update(global_weights: Mapping[str, torch.Tensor], local_weights: Mapping[str, torch.Tensor], *,
                    std: float, rng: np.random.Generator) -> Weights:
    """The honest model plus ``N(0, std^2)`` on every parameter."""
    noise = _gaussian_like(local_weights, std, rng)
    return {name: local_weights[name] + noise[name] for name in global_weights}


def scaled_update(global_weights: Mapping[str, torch.Tensor], local_weights: Mapping[str, torch.Tensor], *,
                  scale: float) -> Weights:
    """``g + scale * (w - g)``: the update scaled (negative ``scale`` flips it)."""
    return {
        name: (global_weights[name].double() + scale * (local_weights[name].double() - global_weights[name].double()))
        .to(torch.float32)
        for name in global_weights
    }


def sign_flip_update(global_weights: Mapping[str, torch.Tensor], local_weights: Mapping[str, torch.Tensor], *,
                     scale: float) -> Weights:
    """``g - scale * (w - g)``: the update reversed and scaled."""
    return scaled_update(global_weights, local_weights, scale=-scale)


def copied_model(source: Mapping[str, torch.Tensor], *, noise_std: float, rng: np.random.Generator) -> Weights:
    """A copy of ``source`` plus ``N(0, noise_std^2)`` (an exact copy when noise_std = 0)."""
    if noise_std == 0:
        return {name: value.clone() for name, value in source.items()}
    noise = _gaussian_like(source, noise_std, rng)
    return {name: source[name] + noise[name] for name in source}


def lazy_steps(claimed_steps: int, step_fraction: float) -> int:
    """Steps a lazy client really trains: ``ceil(step_fraction * claimed)``, at least 1, at most claimed."""
    if claimed_steps <= 0:
        return 0
    return max(1, min(claimed_steps, int(math.ceil(step_fraction * claimed_steps - 1e-9))))


def corrupt(adversary: AdversarySpec, global_weights: Mapping[str, torch.Tensor],
            local_weights: Mapping[str, torch.Tensor], *, rng: np.random.Generator) -> Weights:
    """What a Byzantine client submits instead of its honest ``local_weights``."""
    if adversary.kind == "random_weights":
        return random_weights(global_weights, std=adversary.std, rng=rng)
    if adversary.kind == "gaussian":
        return gaussian_update(global_weights, local_weights, std=adversary.std, rng=rng)
    if adversary.kind == "sign_flip":
        return sign_flip_update(global_weights, local_weights, scale=adversary.scale)
    if adversary.kind == "scaled":
        return scaled_update(global_weights, local_weights, scale=adversary.scale)
    raise ValueError(f"{adversary.kind!r} is not a Byzantine kind")


def stretched_step(claimed_step: int, *, real_steps: int, claimed_steps: int) -> int:
    """The real step a lazy client shows at ``claimed_step``: ``floor(claimed_step * real / claimed)``.

    >>> [stretched_step(t, real_steps=2, claimed_steps=8) for t in (0, 3, 4, 8)]
    [0, 0, 1, 2]
    """
    return (claimed_step * real_steps) // max(claimed_steps, 1)


__all__ = [
    "BYZANTINE_ROLES",
    "copied_model",
    "corrupt",
    "gaussian_update",
    "lazy_steps",
    "random_weights",
    "scaled_update",
    "sign_flip_update",
    "stretched_step",
]
