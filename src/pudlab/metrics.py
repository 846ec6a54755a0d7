"""Model metrics: distance D (Eq. 3), its per-layer breakdown, distinguishability Delta (Eq. 4).

D(W_i, W_j) is the Frobenius norm of the difference of ALL trainable parameters flattened into one
vector, computed directly as a float64 sum of squared differences (never through
||a||^2 + ||b||^2 - 2ab, which cancels catastrophically when the models are close).
Accuracy A(W) is :func:`pudlab.train.trainer.evaluate`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import torch

from pudlab.errors import ModelError

Weights = Mapping[str, torch.Tensor | np.ndarray]


def _as_float64(value: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().to("cpu", torch.float64).numpy()
    return np.asarray(value, dtype=np.float64)


def _check_same_layout(first: Weights, second: Weights) -> None:
    """Parameters are matched by name (file order does not matter); names and shapes must agree."""
    if set(first) != set(second):
        only_first, only_second = sorted(set(first) - set(second)), sorted(set(second) - set(first))
        raise ModelError(f"the two weight sets have different parameters: only in the first {only_first}, "
                         f"only in the second {only_second}")
    for name in first:
        if tuple(first[name].shape) != tuple(second[name].shape):
            raise ModelError(f"parameter {name}: shapes {tuple(first[name].shape)} and {tuple(second[name].shape)} differ")


def squared_distances(first: Weights, second: Weights) -> dict[str, float]:
    """Per-parameter sum of squared differences, in float64, matched by name, in ``first``'s order."""
    _check_same_layout(first, second)
    result = {}
    for name in first:
        diff = _as_float64(first[name]) - _as_float64(second[name])
        result[name] = float(np.dot(diff.ravel(), diff.ravel()))
    return result


def model_distance(first: Weights, second: Weights) -> float:
    """D(W_i, W_j) = ||W_i - W_j||_F over all parameters (Eq. 3).

    >>> import torch
    >>> model_distance({"w": torch.tensor([0.0, 3.0])}, {"w": torch.tensor([4.0, 0.0])})
    5.0
    >>> model_distance({"a": torch.zeros(1), "b": torch.ones(1)}, {"b": torch.ones(1), "a": torch.zeros(1)})
    0.0
    """
    return math.sqrt(math.fsum(squared_distances(first, second).values()))


def layer_of(parameter_name: str) -> str:
    """The layer a parameter belongs to (``conv1.weight`` -> ``conv1``)."""
    return parameter_name.rsplit(".", 1)[0]


def per_layer_distance(first: Weights, second: Weights) -> dict[str, float]:
    """F-norm of the difference per layer (weights and bias together), in model order."""
    by_layer: dict[str, float] = {}
    for name, value in squared_distances(first, second).items():
        by_layer[layer_of(name)] = by_layer.get(layer_of(name), 0.0) + value
    return {layer: math.sqrt(value) for layer, value in by_layer.items()}


def distinguishability(same_dataset_distance: float, other_dataset_distance: float) -> float:
    """Delta (Eq. 4) = |D(W_Ti, W_Ti') - D(W_Ti, W_Tj')|, both obfuscated at the same sigma."""
    return abs(same_dataset_distance - other_dataset_distance)


def weight_norm(weights: Weights) -> float:
    """||W||_F over all parameters (for relative distances)."""
    return math.sqrt(math.fsum(float(np.dot(_as_float64(v).ravel(), _as_float64(v).ravel())) for v in weights.values()))


# ---------------------------------------------------------------------------------------- detectors
def _scores(values: Iterable[float] | np.ndarray) -> np.ndarray:
    array = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=np.float64).ravel()
    return np.where(np.isnan(array), np.inf, array)  # a NaN statistic is as suspicious as it gets


def roc_auc(*, positives: Iterable[float] | np.ndarray, negatives: Iterable[float] | np.ndarray) -> float:
    """Area under the ROC curve of a detector whose statistic is higher for positives.

    AUC = P(positive > negative) + P(tie) / 2 (the Mann-Whitney U over n_pos * n_neg). The
    arguments are keyword-only so that they can never be swapped by position (a swap gives
    1 - AUC). A NaN statistic counts as +inf (most suspicious). Empty input gives NaN.

    >>> roc_auc(positives=[0.2, 0.3], negatives=[0.0, 0.1])
    1.0
    >>> roc_auc(positives=[0.2, 0.1], negatives=[0.0, 0.2])
    0.625
    """
    pos, neg = _scores(positives), np.sort(_scores(negatives))
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    below = np.searchsorted(neg, pos, side="left")
    ties = np.searchsorted(neg, pos, side="right") - below
    return float((below.sum() + 0.5 * ties.sum()) / (len(pos) * len(neg)))


def tpr_at_fpr(*, positives: Iterable[float] | np.ndarray, negatives: Iterable[float] | np.ndarray,
               max_fpr: float = 0.01) -> float:
    """Largest true-positive rate of a rule ``statistic > t`` whose false-positive rate on the
    negatives is at most ``max_fpr`` (with n negatives the FPR moves in steps of 1/n).

    >>> tpr_at_fpr(positives=[0.15, 0.3, 0.4], negatives=[0.0, 0.1, 0.2], max_fpr=0.01)
    0.6666666666666666
    """
    pos, neg = _scores(positives), _scores(negatives)
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    best = 0.0
    for threshold in np.unique(np.concatenate([neg, pos, [-np.inf]])):
        if (neg > threshold).mean() <= max_fpr:
            best = max(best, float((pos > threshold).mean()))
    return best
