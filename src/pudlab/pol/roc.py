"""Pure scores of a detector from two samples of its statistic (higher = more suspicious):
negatives (honest provers) and positives (cheaters)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _clean(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(list(values), dtype=np.float64)
    return np.where(np.isnan(array), np.inf, array)  # a NaN statistic is as suspicious as it gets


def roc_auc(negatives: Sequence[float], positives: Sequence[float]) -> float:
    """Area under the ROC curve = P(positive > negative) + 0.5 P(tie) (Mann-Whitney U / (n m)).

    >>> roc_auc([0.0, 0.1], [0.2, 0.3])
    1.0
    >>> roc_auc([0.0, 0.2], [0.2, 0.1])
    0.625
    """
    neg, pos = _clean(negatives), _clean(positives)
    if len(neg) == 0 or len(pos) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(neg) * len(pos)))


def tpr_at_fpr(negatives: Sequence[float], positives: Sequence[float], max_fpr: float = 0.01) -> float:
    """The largest true-positive rate of a threshold rule ``statistic > t`` whose false-positive
    rate is at most ``max_fpr`` (with n negatives, FPR moves in steps of 1/n).

    >>> tpr_at_fpr([0.0, 0.1, 0.2], [0.15, 0.3, 0.4], 0.01)
    0.6666666666666666
    """
    neg, pos = _clean(negatives), _clean(positives)
    if len(neg) == 0 or len(pos) == 0:
        return float("nan")
    best = 0.0
    for threshold in np.unique(np.concatenate([neg, pos, [-np.inf]])):
        if (neg > threshold).mean() <= max_fpr:
            best = max(best, float((pos > threshold).mean()))
    return best


__all__ = ["roc_auc", "tpr_at_fpr"]
