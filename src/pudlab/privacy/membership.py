"""Membership inference: the loss-threshold attack (Yeom et al. 2018) against a trained model."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from pudlab.data.dataset import LabeledImages
from pudlab.errors import PudlabError
from pudlab.records import Record


@dataclass(frozen=True)
class MembershipResult(Record):
    """A loss-threshold membership-inference attack's scores."""

    auc: float
    """Area under the ROC curve (0.5: no better than a coin)."""
    auc_stderr: float
    """Standard error of the AUC (Hanley & McNeil 1982)."""
    tpr_at_fpr: float
    """Highest true-positive rate with false-positive rate <= ``fpr``."""
    fpr: float
    """The false-positive budget of ``tpr_at_fpr``."""
    members: int
    nonmembers: int
    member_loss: float
    """Mean cross-entropy on the members."""
    nonmember_loss: float
    """Mean cross-entropy on the non-members."""


def loss_threshold_attack(member_losses: np.ndarray, nonmember_losses: np.ndarray, *,
                          fpr: float = 0.01) -> MembershipResult:
    """Yeom et al. (2018): guess "member" when the loss is low (score = -loss; members are the positives)."""
    # pudlab.metrics imports torch: imported here to keep it out of ``import pudlab.privacy``
    from pudlab.metrics import roc_auc, tpr_at_fpr

    members, nonmembers = np.asarray(member_losses, float), np.asarray(nonmember_losses, float)
    if len(members) == 0 or len(nonmembers) == 0:
        raise PudlabError("AUC needs at least one positive and one negative score")
    auc = roc_auc(positives=-members, negatives=-nonmembers)
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    n_p, n_n = len(members), len(nonmembers)
    variance = (auc * (1 - auc) + (n_p - 1) * (q1 - auc * auc) + (n_n - 1) * (q2 - auc * auc)) / (n_p * n_n)
    tpr = tpr_at_fpr(positives=-members, negatives=-nonmembers, max_fpr=fpr)
    return MembershipResult(auc, math.sqrt(max(variance, 0.0)), tpr, fpr, n_p, n_n, float(members.mean()),
                            float(nonmembers.mean()))


def per_sample_losses(model: Any, data: LabeledImages, *, device: str = "cpu", batch_size: int = 1000) -> np.ndarray:
    """Cross-entropy of each sample under ``model`` (a torch module), float64."""
    import torch
    import torch.nn.functional as F

    was_training = model.training
    model.eval()
    losses = np.empty(len(data), dtype=np.float64)
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            images = torch.from_numpy(data.images[start:start + batch_size]).to(device)
            labels = torch.from_numpy(data.labels[start:start + batch_size]).to(device)
            logits = model(images).float()
            losses[start:start + len(labels)] = F.cross_entropy(logits, labels, reduction="none").cpu().numpy()
    model.train(was_training)
    return losses


def membership_inference(model: Any, members: LabeledImages, nonmembers: LabeledImages, *, fpr: float = 0.01,
                         device: str = "cpu") -> MembershipResult:
    """Loss-threshold attack on ``model``: can it tell ``members`` from ``nonmembers``?"""
    return loss_threshold_attack(per_sample_losses(model, members, device=device),
                                 per_sample_losses(model, nonmembers, device=device), fpr=fpr)


NEAR_CHANCE_MARGIN = 0.1
"""An attacked model whose accuracy is within this share of the way from chance (1/C) to 1 is
"near chance": it learned almost nothing, so a membership attack on it says little."""


def near_chance_warning(accuracy: float, num_classes: int) -> str | None:
    """A one-line warning when a model at ``accuracy`` is near chance (:data:`NEAR_CHANCE_MARGIN`), else None."""
    chance = 1.0 / num_classes
    if accuracy >= chance + NEAR_CHANCE_MARGIN * (1.0 - chance):
        return None
    return (f"the attacked model's accuracy {accuracy:.3f} is near chance ({chance:.3f}, {num_classes} classes): it "
            "learned almost nothing, so the membership attack on it is no measure of what a trained model leaks; "
            "train it longer or on more samples (--mia-epochs, --mia-members) before reading its AUC")


@dataclass(frozen=True)
class MembershipAudit(Record):
    """The membership attack on a model trained on a release, with that model's own numbers."""

    attack: MembershipResult
    """Written into this record's object (``{auc, ..., eval_accuracy, ...}``)."""
    eval_accuracy: float
    """The attacked model's accuracy on T_e."""
    train_seconds: float
    members_seen_as: str
    """How the members reached the model and how they were attacked."""
    warning: str | None = None
    """Set when the model is near chance (:func:`near_chance_warning`): the attack then means little."""

    FLATTEN = ("attack",)
    OMIT_NONE = ("warning",)


__all__ = ["NEAR_CHANCE_MARGIN", "MembershipAudit", "MembershipResult", "loss_threshold_attack", "membership_inference",
           "near_chance_warning", "per_sample_losses"]
