"""Misbehaving clients: what they submit, and the training history they claim for it.

Byzantine clients (Blanchard et al. 2017's threat model) train honestly, then submit a corrupted
model ``g + u'`` where ``g`` is the round's global model and ``u = w - g`` their honest update:

* ``random_weights``: ``N(0, std^2)`` weights, unrelated to any training;
* ``gaussian``: ``g + u + N(0, std^2)`` (noise on every parameter);
* ``sign_flip``: ``g - scale * u``;
* ``scaled``: ``g + scale * u`` (a boosted update).

Adaptive Byzantine clients know the aggregation rule and see the round's honest updates (the
omniscient attacker of the papers, the worst case): they train honestly like the others, and the
round replaces their models once every client has trained (:func:`adaptive_models`):

* ``alie`` ("A little is enough", Baruch, Baruch, Goldberg, NeurIPS 2019): every colluder submits
  ``g + mu - z * s`` with mu, s the coordinate-wise mean and std of the honest updates and
  ``z = Phi^-1((n - k) / n)``, ``k = floor(n / 2 + 1) - f_colluders`` (the paper's z_max), or a given
  ``z``: small enough to pass median- and distance-based rules, in a consistent harmful direction;
* ``fang_krum`` (Fang, Cao, Jia, Gong, USENIX Security 2020, the full-knowledge Krum attack):
  ``g - lambda * sign(mu)``, lambda halved from an upper bound until Krum (with the spec's f) picks
  one of the crafted models; the colluders all submit it;
* ``fang_trmean`` (the same paper's trimmed-mean / median attack): per coordinate, pushed past the
  honest extreme opposite to mu's sign, by a factor drawn in [1, b] (b = 2);
* ``inflate``: trains honestly, submits the sign-flipped update ``g - scale * u`` and claims
  ``factor`` times its sample count, so that FedAvg (weighted by claimed counts) follows it.

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
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from pudlab.fl.spec import ADAPTIVE_KINDS, BYZANTINE_KINDS, AdversarySpec

Weights = dict[str, torch.Tensor]
BYZANTINE_ROLES = BYZANTINE_KINDS
"""Roles that train honestly, then corrupt what they submit."""
ADAPTIVE_ROLES = ADAPTIVE_KINDS
"""Roles that train honestly, then submit what the round's honest updates and the rule allow."""


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


# ----------------------------------------------------------------------------------------- adaptive
def _flat(weights: Mapping[str, torch.Tensor]) -> np.ndarray:
    return np.concatenate([value.detach().to(torch.float64).numpy().ravel() for value in weights.values()])


def _unflat(vector: np.ndarray, template: Mapping[str, torch.Tensor]) -> Weights:
    result, start = {}, 0
    for name, value in template.items():
        size = value.numel()
        result[name] = torch.from_numpy(vector[start:start + size].reshape(tuple(value.shape)).copy()).to(value.dtype)
        start += size
    return result


def alie_z(clients: int, colluders: int) -> float:
    """Baruch et al.'s z_max: ``Phi^-1((n - k) / n)``, ``k = floor(n / 2 + 1) - colluders`` (at least 0).

    >>> round(alie_z(10, 3), 3)  # k = 6 - 3 = 3: Phi^-1(0.7)
    0.524
    """
    from scipy.stats import norm

    supporters = math.floor(clients / 2 + 1) - colluders
    return float(max(norm.ppf((clients - supporters) / clients), 0.0))


def _krum_picks_crafted(candidates: list[np.ndarray], crafted: int, f: int) -> bool:
    """Whether Krum over ``candidates`` (the crafted ones last, ``crafted`` of them) picks a crafted one."""
    count = len(candidates)
    neighbours = max(count - f - 2, 1)
    stacked = np.stack(candidates)
    scores = []
    for i in range(count):
        diff = stacked - stacked[i]
        distances = np.sort(np.delete(np.einsum("ij,ij->i", diff, diff), i))
        scores.append(math.fsum(distances[:neighbours].tolist()))
    return int(np.argmin(scores)) >= count - crafted


def adaptive_models(adversary: AdversarySpec, global_weights: Mapping[str, torch.Tensor],
                    honest: Sequence[Mapping[str, torch.Tensor]], own: Sequence[Mapping[str, torch.Tensor]], *,
                    clients: int, f: int, rng: np.random.Generator) -> list[Weights]:
    """What each of ``adversary``'s colluders submits (one per entry of ``own``, their honest models).

    ``honest``: the models of the round's honest clients (the omniscient attacker's knowledge);
    ``clients``: n; ``f``: the f the server's rule assumes (``fang_krum``'s search).
    """
    g = _flat(global_weights)
    benign = np.stack([_flat(w) - g for w in (honest or own)])
    mu = benign.mean(axis=0)
    if adversary.kind == "alie":
        z = adversary.z if adversary.z is not None else alie_z(clients, len(own))
        crafted = g + mu - z * benign.std(axis=0)
        return [_unflat(crafted, global_weights) for _ in own]
    if adversary.kind == "fang_krum":
        direction = np.sign(mu)
        others = [g + row for row in benign]
        # the paper's upper bound on lambda, then halving (at least one step stays: a tiny lambda)
        spread = max(float(np.sqrt(((benign[:, None] - benign[None]) ** 2).sum(-1)).max()), 1e-12) if len(benign) > 1 \
            else float(np.linalg.norm(mu))
        lam = spread / math.sqrt(len(g)) * 2.0 + float(np.abs(benign).max())
        for _ in range(30):
            crafted = g - lam * direction
            if _krum_picks_crafted(others + [crafted] * len(own), len(own), f):
                break
            lam /= 2.0
        return [_unflat(g - lam * direction, global_weights) for _ in own]
    if adversary.kind == "fang_trmean":
        direction = np.sign(mu)
        high, low = benign.max(axis=0), benign.min(axis=0)
        models = []
        for _ in own:
            factor = rng.uniform(1.0, 2.0, size=len(g))
            # push below the minimum where the honest mean rises, above the maximum where it falls
            below = np.where(low > 0, low / factor, low * factor)
            above = np.where(high > 0, high * factor, high / factor)
            models.append(_unflat(g + np.where(direction > 0, below, above), global_weights))
        return models
    if adversary.kind == "inflate":
        return [sign_flip_update(global_weights, w, scale=adversary.scale) for w in own]
    raise ValueError(f"{adversary.kind!r} is not an adaptive kind")


def stretched_step(claimed_step: int, *, real_steps: int, claimed_steps: int) -> int:
    """The real step a lazy client shows at ``claimed_step``: ``floor(claimed_step * real / claimed)``.

    >>> [stretched_step(t, real_steps=2, claimed_steps=8) for t in (0, 3, 4, 8)]
    [0, 0, 1, 2]
    """
    return (claimed_step * real_steps) // max(claimed_steps, 1)


__all__ = [
    "ADAPTIVE_ROLES",
    "BYZANTINE_ROLES",
    "adaptive_models",
    "alie_z",
    "copied_model",
    "corrupt",
    "gaussian_update",
    "lazy_steps",
    "random_weights",
    "scaled_update",
    "sign_flip_update",
    "stretched_step",
]
