"""Aggregation rules of federated learning, as pure functions over client updates.

* FedAvg (McMahan et al., AISTATS 2017): the average of the client models weighted by each
  client's sample count.
* Krum and Multi-Krum (Blanchard, El Mhamdi, Guerraoui, Stainer, "Machine Learning with
  Adversaries: Byzantine Tolerant Gradient Descent", NeurIPS 2017). With n updates of which at most
  f are Byzantine (n > 2f + 2), the score of update i is the sum of the squared distances to its
  n - f - 2 nearest other updates; Krum keeps the best-scored update, Multi-Krum keeps the m best
  (1 <= m <= n; Blanchard et al. use m = n - f) and averages them.
* Coordinate-wise median and coordinate-wise trimmed mean (Yin, Chen, Ramchandran, Bartlett,
  "Byzantine-Robust Distributed Learning", ICML 2018): per parameter, the median of the n values,
  or the mean after dropping the f largest and f smallest (n > 2f).
* Bulyan (El Mhamdi, Guerraoui, Rouault, "The Hidden Vulnerability of Distributed Learning in
  Byzantium", ICML 2018): Krum picks theta = n - 2f updates one at a time (each pick removed from
  the candidates); per parameter, the beta = theta - 2f of their values closest to the median are
  averaged (n >= 4f + 3).

An "update" is a weight dict (``{name: tensor}``, all with the same names and shapes, in the same
order) or a flat vector (a 1-D torch tensor or NumPy array). Because every client starts from the
same global model, the distances between client models equal the distances between their deltas,
so the rules may be given either.

Precision (SPEC / STYLE.md, the Flower note): distances are computed directly, as the float64 sum
of squared differences ``sum((x_i - y_i)^2)``, never through ``|x|^2 + |y|^2 - 2 x.y`` (the Gram
identity), which cancels catastrophically when updates are nearly identical: the small-sigma case
where the F-norm between models is what tells them apart. Identical updates get distance exactly 0.

Determinism: ties between equal scores are broken by the lower client index; averages are summed
in float64 in ascending index order and cast back to the input's dtype.

>>> import numpy as np
>>> result = multi_krum([np.zeros(2), np.zeros(2), np.ones(2), np.full(2, 9.0)], f=0, m=2)
>>> result.selected, result.scores.tolist()
((0, 1), [2.0, 2.0, 4.0, 290.0])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from pudlab.errors import SpecError

Update = Mapping[str, torch.Tensor | np.ndarray] | torch.Tensor | np.ndarray
"""One client's update: a weight dict or a flat vector."""


@dataclass(frozen=True)
class AggregationResult:
    """What an aggregation rule returns."""

    aggregate: Update
    """The aggregated update, of the same kind (dict / tensor / array) and dtype as the inputs."""
    selected: tuple[int, ...]
    """Indices of the updates that went into the aggregate, ascending."""
    scores: np.ndarray
    """Per-update score (Krum: sum of squared distances to the n - f - 2 nearest; FedAvg: weight)."""
    rule: str
    """Name of the rule (``fedavg``, ``krum``, ``multikrum``, ``median``, ``trimmed_mean``, ``bulyan``)."""
    distances: np.ndarray | None = field(default=None, repr=False)
    """(n, n) pairwise squared distances in float64 (Krum rules), else None."""

    @property
    def ranking(self) -> tuple[int, ...]:
        """All indices, best score first (Krum rules: lowest score; ties by index)."""
        if self.rule in ("fedavg", "median", "trimmed_mean"):
            return tuple(range(len(self.scores)))
        return tuple(int(i) for i in np.argsort(self.scores, kind="stable"))


# ------------------------------------------------------------------------------------ flattening
def _to_float64(value: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", torch.float64).numpy().ravel()
    return np.asarray(value, dtype=np.float64).ravel()


def flatten_update(update: Update) -> np.ndarray:
    """One update as a flat float64 vector (dict values concatenated in their order)."""
    if isinstance(update, Mapping):
        if not update:
            raise ValueError("an update must not be empty")
        return np.concatenate([_to_float64(value) for value in update.values()])
    return _to_float64(update)


def _check_updates(updates: Sequence[Update]) -> None:
    if len(updates) == 0:
        raise ValueError("aggregation needs at least one update")
    first = updates[0]
    if isinstance(first, Mapping):
        layout = [(name, tuple(value.shape)) for name, value in first.items()]
        for index, update in enumerate(updates[1:], start=1):
            if not isinstance(update, Mapping):
                raise ValueError(f"update {index} is a {type(update).__name__}, update 0 is a weight dict")
            other = [(name, tuple(value.shape)) for name, value in update.items()]
            if other != layout:
                raise ValueError(f"update {index} has other parameter names/shapes/order than update 0")
    else:
        shape = tuple(first.shape)
        for index, update in enumerate(updates[1:], start=1):
            if isinstance(update, Mapping) or tuple(update.shape) != shape:
                raise ValueError(f"update {index} does not have update 0's shape {shape}")


def _weighted_average(updates: Sequence[Update], indices: Sequence[int], weights: Sequence[float]) -> Update:
    """sum_k w_k * u_{i_k} / sum_k w_k, accumulated in float64 in the given order, cast back.

    Dividing once at the end keeps the mean of identical float32 updates exactly that update.
    """
    total = math.fsum(weights)
    if not total > 0:
        raise ValueError(f"the weights of an average must sum to a positive number, got {list(weights)}")

    def combine(values: list[torch.Tensor | np.ndarray]) -> torch.Tensor | np.ndarray:
        accumulator: np.ndarray | None = None
        for weight, value in zip(weights, values, strict=True):
            term = _to_float64(value) * float(weight)
            accumulator = term if accumulator is None else accumulator + term
        assert accumulator is not None
        accumulator = accumulator / total
        template = values[0]
        if isinstance(template, torch.Tensor):
            return torch.from_numpy(accumulator.reshape(tuple(template.shape))).to(template.dtype)
        return accumulator.reshape(template.shape).astype(np.asarray(template).dtype)

    chosen = [updates[i] for i in indices]
    first = chosen[0]
    if isinstance(first, Mapping):
        return {name: combine([update[name] for update in chosen]) for name in first}  # type: ignore[index]
    return combine(chosen)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ distances
def pairwise_squared_distances(updates: Sequence[Update]) -> np.ndarray:
    """(n, n) matrix of ||u_i - u_j||^2, each computed directly in float64 (symmetric, zero diagonal).

    >>> pairwise_squared_distances([np.array([0.0, 3.0]), np.array([4.0, 0.0])]).tolist()
    [[0.0, 25.0], [25.0, 0.0]]
    """
    _check_updates(updates)
    vectors = [flatten_update(update) for update in updates]
    count = len(vectors)
    distances = np.zeros((count, count), dtype=np.float64)
    for i in range(count):
        for j in range(i + 1, count):
            diff = vectors[i] - vectors[j]
            distances[i, j] = distances[j, i] = float(np.dot(diff, diff))
    return distances


# ------------------------------------------------------------------------------------ rules
def fedavg(updates: Sequence[Update], sample_counts: Sequence[float] | None = None) -> AggregationResult:
    """FedAvg: the average weighted by ``sample_counts`` (equal weights when None).

    >>> fedavg([np.array([0.0]), np.array([3.0])], [1, 2]).aggregate.tolist()
    [2.0]
    """
    _check_updates(updates)
    count = len(updates)
    weights = [1.0] * count if sample_counts is None else [float(w) for w in sample_counts]
    if len(weights) != count:
        raise ValueError(f"{count} updates but {len(weights)} sample counts")
    if any(not (math.isfinite(w) and w >= 0) for w in weights):
        raise ValueError(f"sample counts must be finite and >= 0, got {weights}")
    selected = tuple(i for i in range(count) if weights[i] > 0)
    if not selected:
        raise ValueError("every sample count is 0: nothing to average")
    aggregate = _weighted_average(updates, selected, [weights[i] for i in selected])
    return AggregationResult(aggregate, selected, np.asarray(weights, dtype=np.float64), "fedavg")


class KrumParameterError(SpecError, ValueError):
    """Invalid n / f / m for Krum or Multi-Krum."""


def check_krum_parameters(n: int, f: int, m: int | None = None) -> int:
    """Validate Krum's n, f and Multi-Krum's m (default n - f); return m.

    Raises :class:`pudlab.errors.SpecError` (a ``ValueError`` too) naming the violated constraint.
    """
    if isinstance(f, bool) or not isinstance(f, int | np.integer) or f < 0:
        raise KrumParameterError(f"Krum needs an integer number of Byzantine clients f >= 0, got f={f!r}")
    if n <= 2 * f + 2:
        raise KrumParameterError(
            f"Krum needs n > 2f + 2 (Blanchard et al. 2017): with f={f} Byzantine clients at least {2 * f + 3} "
            f"updates are required, got n={n}"
        )
    if m is None:
        return n - f
    if isinstance(m, bool) or not isinstance(m, int | np.integer) or not 1 <= m <= n:
        raise KrumParameterError(f"Multi-Krum keeps m updates with 1 <= m <= n (n={n}), got m={m!r}")
    return int(m)


def krum_scores(distances: np.ndarray, f: int) -> np.ndarray:
    """Krum scores from squared distances: for each i, the sum of the n - f - 2 smallest d(i, j), j != i."""
    count = distances.shape[0]
    check_krum_parameters(count, f)
    neighbours = count - f - 2
    scores = np.empty(count, dtype=np.float64)
    for i in range(count):
        others = np.sort(np.delete(distances[i], i))
        scores[i] = math.fsum(others[:neighbours].tolist())
    return scores


def multi_krum(updates: Sequence[Update], *, f: int, m: int | None = None,
               sample_counts: Sequence[float] | None = None) -> AggregationResult:
    """Multi-Krum: keep the ``m`` updates with the lowest Krum score, average them.

    ``m`` defaults to n - f. The average is unweighted as in Blanchard et al.; with
    ``sample_counts`` it is weighted by them (FedAvg over the selected updates).
    """
    _check_updates(updates)
    keep = check_krum_parameters(len(updates), f, m)
    distances = pairwise_squared_distances(updates)
    scores = krum_scores(distances, f)
    ranking = np.argsort(scores, kind="stable")
    selected = tuple(sorted(int(i) for i in ranking[:keep]))
    weights = [1.0] * len(selected) if sample_counts is None else [float(sample_counts[i]) for i in selected]
    aggregate = _weighted_average(updates, selected, weights)
    return AggregationResult(aggregate, selected, scores, "multikrum" if keep > 1 else "krum", distances)


def krum(updates: Sequence[Update], *, f: int) -> AggregationResult:
    """Krum: the single update with the lowest score (Multi-Krum with m = 1)."""
    result = multi_krum(updates, f=f, m=1)
    return AggregationResult(result.aggregate, result.selected, result.scores, "krum", result.distances)


def _coordinate_rule(updates: Sequence[Update], indices: Sequence[int],
                     reduce: Callable[[np.ndarray], np.ndarray]) -> Update:
    """``reduce`` over the stacked float64 values of ``updates[indices]`` (axis 0), cast back per tensor."""
    chosen = [updates[i] for i in indices]

    def combine(values: list[torch.Tensor | np.ndarray]) -> torch.Tensor | np.ndarray:
        stacked = np.stack([_to_float64(value) for value in values])
        result = reduce(stacked)
        template = values[0]
        if isinstance(template, torch.Tensor):
            return torch.from_numpy(np.ascontiguousarray(result).reshape(tuple(template.shape))).to(template.dtype)
        return result.reshape(template.shape).astype(np.asarray(template).dtype)

    first = chosen[0]
    if isinstance(first, Mapping):
        return {name: combine([update[name] for update in chosen]) for name in first}  # type: ignore[index]
    return combine(chosen)  # type: ignore[arg-type]


def _trimmed(stacked: np.ndarray, trim: int) -> np.ndarray:
    """Per column, the mean of the sorted values without the ``trim`` lowest and ``trim`` highest."""
    ordered = np.sort(stacked, axis=0, kind="stable")
    return ordered[trim: len(ordered) - trim].mean(axis=0)


def coordinate_median(updates: Sequence[Update]) -> AggregationResult:
    """Per parameter, the median of the n updates' values (the mean of the middle two for even n).

    >>> coordinate_median([np.array([0.0, 5.0]), np.array([1.0, -9.0]), np.array([100.0, 4.0])]).aggregate.tolist()
    [1.0, 4.0]
    """
    _check_updates(updates)
    indices = tuple(range(len(updates)))
    aggregate = _coordinate_rule(updates, indices, lambda stacked: np.median(stacked, axis=0))
    return AggregationResult(aggregate, indices, np.ones(len(updates)), "median")


def trimmed_mean(updates: Sequence[Update], *, f: int) -> AggregationResult:
    """Per parameter, the mean after dropping the ``f`` largest and ``f`` smallest values (n > 2f).

    >>> trimmed_mean([np.array([0.0]), np.array([1.0]), np.array([2.0]), np.array([99.0])], f=1).aggregate.tolist()
    [1.5]
    """
    _check_updates(updates)
    count = len(updates)
    if isinstance(f, bool) or not isinstance(f, int | np.integer) or f < 0 or count <= 2 * f:
        raise KrumParameterError(f"trimmed mean needs an integer f >= 0 with n > 2f, got n={count}, f={f!r}")
    indices = tuple(range(count))
    aggregate = _coordinate_rule(updates, indices, lambda stacked: _trimmed(stacked, int(f)))
    return AggregationResult(aggregate, indices, np.ones(count), "trimmed_mean")


def bulyan(updates: Sequence[Update], *, f: int) -> AggregationResult:
    """Bulyan over Krum: theta = n - 2f updates picked by repeated Krum, then per parameter the mean
    of the beta = theta - 2f values closest to their median (n >= 4f + 3).

    ``selected`` are the theta picked updates; ``scores`` the Krum scores over all n.
    """
    _check_updates(updates)
    count = len(updates)
    if isinstance(f, bool) or not isinstance(f, int | np.integer) or f < 0 or count < 4 * f + 3:
        raise KrumParameterError(f"Bulyan needs n >= 4f + 3 (El Mhamdi et al. 2018), got n={count}, f={f!r}")
    distances = pairwise_squared_distances(updates)
    remaining = list(range(count))
    picked: list[int] = []
    for _ in range(count - 2 * f):
        sub = distances[np.ix_(remaining, remaining)]
        # Krum on the remaining candidates; with fewer than 2f + 3 left every remaining one is as good
        neighbours = max(len(remaining) - f - 2, 0)
        scores = [math.fsum(np.sort(np.delete(sub[i], i))[:neighbours].tolist()) for i in range(len(remaining))]
        best = int(np.argmin(scores))
        picked.append(remaining.pop(best))
    theta = len(picked)
    beta = theta - 2 * f

    def closest_to_median(stacked: np.ndarray) -> np.ndarray:
        median = np.median(stacked, axis=0)
        order = np.argsort(np.abs(stacked - median), axis=0, kind="stable")[:beta]
        return np.take_along_axis(stacked, order, axis=0).mean(axis=0)

    selected = tuple(sorted(picked))
    aggregate = _coordinate_rule(updates, selected, closest_to_median)
    return AggregationResult(aggregate, selected, krum_scores(distances, f) if count > 2 * f + 2 else np.zeros(count),
                             "bulyan", distances)


# ------------------------------------------------------------------------------------ registry
AggregationRule = Callable[..., AggregationResult]

_RULES: dict[str, AggregationRule] = {}


def register_rule(name: str, rule: AggregationRule) -> None:
    """Register an aggregation rule under ``name`` (called as ``rule(updates, sample_counts=, f=, m=)``)."""
    _RULES[name] = rule


def rule_names() -> tuple[str, ...]:
    return tuple(sorted(_RULES))


def aggregate(rule: str, updates: Sequence[Update], *, sample_counts: Sequence[float] | None = None,
              f: int = 0, m: int | None = None) -> AggregationResult:
    """Apply the rule named ``rule``; a ValueError names the known rules otherwise."""
    try:
        function = _RULES[rule]
    except KeyError:
        raise ValueError(f"unknown aggregation rule {rule!r}; known: {', '.join(rule_names())}") from None
    return function(updates, sample_counts=sample_counts, f=f, m=m)


register_rule("fedavg", lambda updates, *, sample_counts=None, f=0, m=None: fedavg(updates, sample_counts))
register_rule("krum", lambda updates, *, sample_counts=None, f=0, m=None: krum(updates, f=f))
register_rule("multikrum", lambda updates, *, sample_counts=None, f=0, m=None: multi_krum(updates, f=f, m=m))
register_rule("median", lambda updates, *, sample_counts=None, f=0, m=None: coordinate_median(updates))
register_rule("trimmed_mean", lambda updates, *, sample_counts=None, f=0, m=None: trimmed_mean(updates, f=f))
register_rule("bulyan", lambda updates, *, sample_counts=None, f=0, m=None: bulyan(updates, f=f))

__all__ = [
    "AggregationResult",
    "KrumParameterError",
    "Update",
    "aggregate",
    "bulyan",
    "check_krum_parameters",
    "coordinate_median",
    "fedavg",
    "flatten_update",
    "krum",
    "krum_scores",
    "multi_krum",
    "pairwise_squared_distances",
    "register_rule",
    "rule_names",
    "trimmed_mean",
]
