"""The likelihood-ratio membership attack (LiRA, Carlini et al., "Membership Inference Attacks From
First Principles", IEEE S&P 2022), with shadow models (threat model ``model``).

The attacker knows the training recipe (architecture, epochs, sigma) and holds a population of
candidate records (the targets: members and non-members). It trains K shadow models, each on
O(half the population; sigma) with its own noise; every target is in exactly K / 2 of them (a
seeded balanced assignment, as in the authors' code). Each model's confidence in a target's true
label is logit-scaled, phi = log(p_y / (1 - p_y)) = z_y - logsumexp(z_{j != y}), which is close to
Gaussian over models. Scores (higher = member):

* offline: log P(phi_target >= phi | N(mu_out, s_out^2)), the one-sided test against the shadows
  that did not train on the target (Carlini et al. Sec. IV-C);
* online: log N(phi; mu_in, s_in^2) - log N(phi; mu_out, s_out^2).

With few shadows the per-target variance is unreliable; as the paper advises, a global variance
(pooled over targets) is used below 64 shadows (``global_variance``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from pudlab.data.dataset import LabeledImages
from pudlab.errors import PudlabError
from pudlab.records import Record
from pudlab.seeding import derive_rng, derive_seed


@dataclass(frozen=True)
class LiraResult(Record):
    """LiRA's scores: AUC and TPR at low FPR, offline and online."""

    shadows: int
    offline_auc: float
    offline_tpr_at_0_1pct: float
    offline_tpr_at_1pct: float
    online_auc: float
    online_tpr_at_0_1pct: float
    online_tpr_at_1pct: float
    members: int
    nonmembers: int
    global_variance: bool
    seconds: float
    """Wall time of the shadow training and scoring."""

    @property
    def auc(self) -> float:
        """The stronger of the two variants' AUC."""
        return max(self.offline_auc, self.online_auc)


def logit_confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """phi = z_y - logsumexp(z_{j != y}) per row (= log(p_y / (1 - p_y)), computed stably).

    >>> round(float(logit_confidence(np.array([[0.0, 0.0]]), np.array([0]))[0]), 6)
    0.0
    """
    logits = np.asarray(logits, np.float64)
    rows = np.arange(len(labels))
    true = logits[rows, labels]
    others = logits.copy()
    others[rows, labels] = -np.inf
    peak = others.max(axis=1, keepdims=True)
    return true - (peak[:, 0] + np.log(np.exp(others - peak).sum(axis=1)))


def balanced_membership(targets: int, shadows: int, seed: int) -> np.ndarray:
    """(shadows, targets) bool: target j is IN exactly shadows // 2 shadows, which ones seeded."""
    if shadows < 2 or shadows % 2:
        raise PudlabError(f"LiRA needs an even number of shadow models >= 2, got {shadows}")
    ranks = np.argsort(derive_rng(seed, "lira-assign").random((shadows, targets)), axis=0)
    return ranks < shadows // 2


def lira_scores(target_phi: np.ndarray, shadow_phi: np.ndarray, inside: np.ndarray, *,
                global_variance: bool) -> tuple[np.ndarray, np.ndarray]:
    """(offline, online) scores per target from the target model's phi and the shadows' (K, T) phi."""
    from scipy.stats import norm

    out_mask, in_mask = ~inside, inside
    mu_out = np.nanmean(np.where(out_mask, shadow_phi, np.nan), axis=0)
    mu_in = np.nanmean(np.where(in_mask, shadow_phi, np.nan), axis=0)
    if global_variance:
        s_out = np.full(len(target_phi), np.nanstd(np.where(out_mask, shadow_phi - mu_out, np.nan)))
        s_in = np.full(len(target_phi), np.nanstd(np.where(in_mask, shadow_phi - mu_in, np.nan)))
    else:
        s_out = np.nanstd(np.where(out_mask, shadow_phi, np.nan), axis=0)
        s_in = np.nanstd(np.where(in_mask, shadow_phi, np.nan), axis=0)
    s_out, s_in = np.maximum(s_out, 1e-6), np.maximum(s_in, 1e-6)
    offline = norm.logcdf((target_phi - mu_out) / s_out)
    online = norm.logpdf(target_phi, mu_in, s_in) - norm.logpdf(target_phi, mu_out, s_out)
    return offline, online


def _phi(model: Any, data: LabeledImages, device: str) -> np.ndarray:
    import torch

    with torch.no_grad():
        logits = model(torch.from_numpy(data.images).to(device)).float().cpu().numpy()
    return logit_confidence(logits, data.labels)


def lira_attack(target_model: Any, members: LabeledImages, nonmembers: LabeledImages, *, train_shadow: Any,
                shadows: int = 8, seed: int = 0, device: str = "cpu", global_variance: bool | None = None) -> LiraResult:
    """LiRA against ``target_model`` (a torch module) on ``members`` (positives) vs ``nonmembers``.

    ``train_shadow(data, index) -> torch module``: the attacker's copy of the training recipe (it
    obfuscates ``data`` with its own noise and trains); called once per shadow on half the targets.
    """
    from pudlab.metrics import roc_auc, tpr_at_fpr

    started = time.perf_counter()
    population = LabeledImages(np.concatenate([members.images, nonmembers.images]),
                               np.concatenate([members.labels, nonmembers.labels]),
                               np.concatenate([members.ids, nonmembers.ids]))
    is_member = np.r_[np.ones(len(members), bool), np.zeros(len(nonmembers), bool)]
    inside = balanced_membership(len(population), shadows, seed)
    shadow_phi = np.empty((shadows, len(population)))
    for index in range(shadows):
        model = train_shadow(population.take(np.flatnonzero(inside[index])), index)
        model.eval()
        shadow_phi[index] = _phi(model, population, device)
    target_model.eval()
    target_phi = _phi(target_model, population, device)
    pooled = shadows < 64 if global_variance is None else global_variance
    offline, online = lira_scores(target_phi, shadow_phi, inside, global_variance=pooled)

    def rates(scores: np.ndarray) -> tuple[float, float, float]:
        positives, negatives = scores[is_member], scores[~is_member]
        return (roc_auc(positives=positives, negatives=negatives),
                tpr_at_fpr(positives=positives, negatives=negatives, max_fpr=0.001),
                tpr_at_fpr(positives=positives, negatives=negatives, max_fpr=0.01))

    off, on = rates(offline), rates(online)
    return LiraResult(shadows, *off, *on, len(members), len(nonmembers), pooled, time.perf_counter() - started)


def shadow_seed(seed: int, index: int) -> int:
    """The seed of shadow ``index``'s init, batches and noise."""
    return derive_seed(seed, "lira-shadow", index)


def lira_at(target: Any, members: LabeledImages, nonmembers: LabeledImages, *, sigma: float, model_config: Any,
            train_config: Any, shadows: int, seed: int, clip: bool, device: str = "cpu") -> LiraResult:
    """LiRA with ``shadows`` shadow models trained as the target was (same architecture and schedule,
    on O(half the targets; sigma) with the attacker's own noise): the privacy report's LiRA at one sigma."""
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


__all__ = ["LiraResult", "balanced_membership", "lira_at", "lira_attack", "lira_scores", "logit_confidence",
           "shadow_seed"]
