"""The PUD triangle (paper Sec. 5, Fig. 6) as numbers: Privacy, Utility, Distinguishability per sigma.

Pure maths, store-independent: every function takes plain per-sigma inputs (accuracy, Delta or
honest/spoof distances, privacy attack results), so the same code serves a sweep store, a JSON file
or a test.

Normalizations to [0, 1] (each clipped to [0, 1]; the raw inputs are kept in ``PudPoint.raw``):

* Utility      U(s) = (A(s) - a_c) / (A(0) - a_c), A = accuracy on T_e, a_c = chance accuracy
  (1 / C by default): 1 = as useful as the clean data, 0 = no better than guessing.
* Distinguishability, from Delta (Eq. 4):
  D(s) = (Delta(s) - f) / (Delta(0) - f), f = ``delta_floor`` (0 by default; the shuffle-seed
  noise floor is a sensible choice): 1 = as distinguishable as clean data.
  Or, where repeats exist, from the separability of honest distances D(W_Ti, W_Ti') and spoof
  distances D(W_Ti, W_Tj'): D(s) = 2 AUC - 1, AUC = P(spoof > honest) + P(tie) / 2.
* Privacy, from the attacks of :mod:`pudlab.privacy` (each component 1 = the attack fails):
  P_link = 1 - (L - L_c) / (1 - L_c), L = worst-case linkage rate (raw or denoised release),
  L_c = its chance level 1 / |pool|;  P_ssim = 1 - S, S = best mean SSIM an attacker recovers;
  P_mia = 2 (1 - AUC) of the membership attack (the better of loss threshold and LiRA);
  P_label = 1 - (A_l - c) / (1 - c), A_l = label-inference accuracy, c = its chance. P = min of the available components (privacy is
  as weak as the strongest attack; ``combine="mean"`` averages them instead). A number given in
  place of the components is taken as P itself. With a threat model
  (:mod:`pudlab.privacy.threats`), only the attacks that attacker can run count.

Profiles and the sigma recommender are in :mod:`pudlab.pud.profiles`, the figures in
:mod:`pudlab.report.privacy_figures`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pudlab.errors import SpecError
from pudlab.records import Record

AXES = ("privacy", "utility", "distinguishability")
"""The three vertices, in the order P, U, D."""
AXIS_LETTERS = {"privacy": "P", "utility": "U", "distinguishability": "D"}
PRIVACY_COMPONENTS = ("linkage", "ssim", "mia", "label")
"""Privacy components :func:`privacy_score` can combine."""
COMBINE_RULES = ("min", "mean")
SIGMA_TOLERANCE = 1e-9
"""Two sigmas closer than this are the same grid point."""


def _clip01(value: float) -> float:
    return float(min(1.0, max(0.0, value)))


# ---------------------------------------------------------------------------------------- normalization
def utility_score(accuracy: float, accuracy_at_zero: float, *, chance_accuracy: float = 0.1) -> float:
    """U = clip((A - a_c) / (A(0) - a_c), 0, 1).

    >>> utility_score(0.5, 0.9, chance_accuracy=0.1)
    0.5
    """
    if not accuracy_at_zero > chance_accuracy:
        raise SpecError(f"utility: accuracy at sigma 0 ({accuracy_at_zero:g}) must exceed chance ({chance_accuracy:g})")
    return _clip01((accuracy - chance_accuracy) / (accuracy_at_zero - chance_accuracy))


def delta_score(delta: float, delta_at_zero: float, *, delta_floor: float = 0.0) -> float:
    """D = clip((Delta - f) / (Delta(0) - f), 0, 1).

    >>> delta_score(1.5, 3.0)
    0.5
    """
    if not delta_at_zero > delta_floor:
        raise SpecError(f"distinguishability: Delta at sigma 0 ({delta_at_zero:g}) must exceed the floor ({delta_floor:g})")
    return _clip01((delta - delta_floor) / (delta_at_zero - delta_floor))


def separability_score(honest_distances: Sequence[float], spoof_distances: Sequence[float]) -> float:
    """D = clip(2 AUC - 1, 0, 1), AUC = P(spoof distance > honest distance) + P(tie) / 2.

    >>> separability_score([1.0, 1.1], [2.0, 2.5])
    1.0
    """
    honest, spoof = np.asarray(honest_distances, float), np.asarray(spoof_distances, float)
    if len(honest) == 0 or len(spoof) == 0:
        raise SpecError("distinguishability: separability needs at least one honest and one spoof distance")
    greater = (spoof[:, None] > honest[None, :]).mean()
    ties = (spoof[:, None] == honest[None, :]).mean()
    return _clip01(2 * (greater + ties / 2) - 1)


def privacy_components(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Normalized privacy components from attack results (keys as :class:`pudlab.privacy.PudPrivacyInputs`
    writes them: ``linkage``, ``linkage_chance``, ``best_ssim``, ``mia_auc``; missing or null ones are
    skipped)."""
    components: dict[str, float] = {}
    if metrics.get("linkage") is not None:
        chance = float(metrics.get("linkage_chance") or 0.0)
        if not 0 <= chance < 1:
            raise SpecError(f"privacy: linkage_chance must be in [0, 1), got {chance}")
        components["linkage"] = _clip01(1 - (float(metrics["linkage"]) - chance) / (1 - chance))
    if metrics.get("best_ssim") is not None:
        components["ssim"] = _clip01(1 - float(metrics["best_ssim"]))
    mia = [float(metrics[key]) for key in ("mia_auc", "lira_auc") if metrics.get(key) is not None]
    if mia:
        components["mia"] = _clip01(2 * (1 - max(mia)))
    if metrics.get("label_accuracy") is not None:
        chance = float(metrics.get("label_chance") or 0.0)
        components["label"] = _clip01(1 - (float(metrics["label_accuracy"]) - chance) / (1 - chance))
    return components


def privacy_by_threat(metrics: Mapping[str, Any], *, combine: str = "min") -> dict[str, float | None]:
    """P under each threat model of :data:`pudlab.privacy.threats.THREAT_MODELS` (None where no
    attack of that model ran)."""
    from pudlab.privacy.threats import THREAT_MODELS, metrics_for

    result: dict[str, float | None] = {}
    for name in THREAT_MODELS:
        allowed = metrics_for(metrics, name)
        result[name] = privacy_score(allowed, combine=combine)[0] if privacy_components(allowed) else None
    return result


def privacy_score(metrics: float | Mapping[str, Any], *, combine: str = "min",
                  threat_model: str | None = None) -> tuple[float, dict[str, float]]:
    """(P, components): P = min (or mean) of :func:`privacy_components`; a number is P itself.
    ``threat_model``: only the metrics that attacker gets (None: every metric given); when none of
    the given metrics is of that attacker, all of them count (a conservative P).

    >>> privacy_score({"linkage": 0.5, "linkage_chance": 0.0, "best_ssim": 0.2, "mia_auc": 0.6})[0]
    0.5
    """
    if combine not in COMBINE_RULES:
        raise SpecError(f"privacy combine rule {combine!r}: expected one of {', '.join(COMBINE_RULES)}")
    if isinstance(metrics, int | float):
        if not 0 <= float(metrics) <= 1:
            raise SpecError(f"privacy: a given value must be in [0, 1], got {metrics}")
        return float(metrics), {}
    if threat_model is not None:
        from pudlab.privacy.threats import metrics_for

        allowed = metrics_for(metrics, threat_model)
        # no attack of that attacker was measured: the given (stronger) attacks bound P from below
        metrics = allowed if privacy_components(allowed) else metrics
    components = privacy_components(metrics)
    if not components:
        raise SpecError(f"privacy: no usable attack result in {dict(metrics)!r}; expected linkage, best_ssim or mia_auc")
    values = list(components.values())
    return (min(values) if combine == "min" else float(np.mean(values))), components


# ---------------------------------------------------------------------------------------- points
@dataclass(frozen=True)
class PudPoint(Record):
    """Privacy, Utility, Distinguishability at one sigma, each in [0, 1] (1 = more of it)."""

    sigma: float
    privacy: float
    utility: float
    distinguishability: float
    raw: Mapping[str, Any] = field(default_factory=dict)
    """The inputs and intermediate values the three came from."""

    def value(self, axis: str) -> float:
        if axis not in AXES:
            raise SpecError(f"unknown PUD axis {axis!r}; expected one of {', '.join(AXES)}")
        return float(getattr(self, axis))


def _lookup(by_sigma: Mapping[float, Any] | Sequence[Any], sigma: float, index: int, what: str) -> Any:
    if isinstance(by_sigma, Mapping):
        for key, value in by_sigma.items():
            if abs(float(key) - sigma) <= SIGMA_TOLERANCE:
                return value
        raise SpecError(f"{what}: no entry for sigma {sigma:g} (have {sorted(float(k) for k in by_sigma)})")
    return by_sigma[index]


def _value_at_zero(sigmas: Sequence[float], values: Sequence[float | None], given: float | None, what: str) -> float:
    if given is not None:
        return float(given)
    for sigma, value in zip(sigmas, values, strict=True):
        if abs(sigma) <= SIGMA_TOLERANCE and value is not None:
            return float(value)
    raise SpecError(f"{what}: give its sigma = 0 value, or include sigma 0 in the grid")


# long: one pass over the grid computing the three axes and their provenance
def pud_points(
    sigmas: Sequence[float],
    accuracies: Sequence[float],
    accuracy_at_zero: float | None,
    deltas: Sequence[float | None] | None,
    delta_at_zero: float | None,
    privacy_by_sigma: Mapping[float, float | Mapping[str, Any]] | Sequence[float | Mapping[str, Any]],
    *,
    chance_accuracy: float = 0.1,
    delta_floor: float = 0.0,
    honest_distances: Sequence[Sequence[float] | None] | None = None,
    spoof_distances: Sequence[Sequence[float] | None] | None = None,
    privacy_combine: str = "min",
    threat_model: str | None = None,
) -> list[PudPoint]:
    """One :class:`PudPoint` per sigma (sorted by sigma), normalized as the module docstring says.

    ``accuracy_at_zero`` / ``delta_at_zero``: None takes them from the sigma = 0 entry.
    ``privacy_by_sigma``: a mapping sigma -> (attack results or a [0, 1] number), or a sequence
    aligned with ``sigmas``. Where ``honest_distances[i]`` and ``spoof_distances[i]`` are both
    given (two or more values each), D at that sigma is their separability, not Delta.
    ``threat_model``: P counts only that attacker's attacks; ``raw["privacy_by_threat"]`` has P
    under every threat model either way.
    """
    sigmas = [float(s) for s in sigmas]
    _check_grid(sigmas, accuracies, deltas, honest_distances, spoof_distances, privacy_by_sigma)
    accuracy_zero = _value_at_zero(sigmas, accuracies, accuracy_at_zero, "utility")
    need_delta = any(
        honest_distances is None or spoof_distances is None or not _repeats(honest_distances[i], spoof_distances[i])
        for i in range(len(sigmas))
    )
    delta_zero = None
    if need_delta:
        if deltas is None:
            raise SpecError("PUD: distinguishability needs deltas (or honest and spoof distances at every sigma)")
        delta_zero = _value_at_zero(sigmas, deltas, delta_at_zero, "distinguishability (Delta)")

    points = []
    for index, sigma in enumerate(sigmas):
        raw: dict[str, Any] = {"accuracy": float(accuracies[index]), "accuracy_at_zero": accuracy_zero,
                               "chance_accuracy": chance_accuracy}
        utility = utility_score(float(accuracies[index]), accuracy_zero, chance_accuracy=chance_accuracy)
        honest = honest_distances[index] if honest_distances is not None else None
        spoof = spoof_distances[index] if spoof_distances is not None else None
        if _repeats(honest, spoof):
            assert honest is not None and spoof is not None
            distinguishability = separability_score(honest, spoof)
            raw.update(d_method="separability", honest_distances=list(honest), spoof_distances=list(spoof))
        else:
            delta = deltas[index] if deltas is not None else None
            if delta is None:
                raise SpecError(f"PUD: no Delta at sigma {sigma:g}")
            assert delta_zero is not None
            distinguishability = delta_score(float(delta), delta_zero, delta_floor=delta_floor)
            raw.update(d_method="delta", delta=float(delta), delta_at_zero=delta_zero, delta_floor=delta_floor)
        privacy_input = _lookup(privacy_by_sigma, sigma, index, "privacy")
        privacy, components = privacy_score(privacy_input, combine=privacy_combine, threat_model=threat_model
                                            if isinstance(privacy_input, Mapping) else None)
        if isinstance(privacy_input, Mapping):
            raw["privacy_by_threat"] = privacy_by_threat(privacy_input, combine=privacy_combine)
        raw.update(privacy_components=components, privacy_combine=privacy_combine, threat_model=threat_model,
                   privacy_inputs=dict(privacy_input) if isinstance(privacy_input, Mapping) else privacy_input)
        points.append(PudPoint(sigma, privacy, utility, distinguishability, raw))
    return sorted(points, key=lambda point: point.sigma)


def _check_grid(sigmas: list[float], accuracies: Sequence[float], deltas: Sequence[Any] | None,
                honest_distances: Sequence[Any] | None, spoof_distances: Sequence[Any] | None,
                privacy_by_sigma: Mapping[float, Any] | Sequence[Any]) -> None:
    """Refuse an empty, negative or repeating sigma grid and per-sigma inputs of another length."""
    if not sigmas:
        raise SpecError("PUD: the sigma grid is empty")
    if len(accuracies) != len(sigmas):
        raise SpecError(f"PUD: {len(sigmas)} sigmas but {len(accuracies)} accuracies")
    if any(s < 0 or not math.isfinite(s) for s in sigmas):
        raise SpecError(f"PUD: sigmas must be finite and >= 0, got {sigmas}")
    if len({round(s / SIGMA_TOLERANCE) for s in sigmas}) != len(sigmas):
        raise SpecError(f"PUD: a sigma repeats in {sigmas}")
    for name, values in (("deltas", deltas), ("honest_distances", honest_distances), ("spoof_distances", spoof_distances)):
        if values is not None and len(values) != len(sigmas):
            raise SpecError(f"PUD: {len(sigmas)} sigmas but {len(values)} {name}")
    if not isinstance(privacy_by_sigma, Mapping) and len(privacy_by_sigma) != len(sigmas):
        raise SpecError(f"PUD: {len(sigmas)} sigmas but {len(privacy_by_sigma)} privacy entries")


def _repeats(honest: Sequence[float] | None, spoof: Sequence[float] | None) -> bool:
    return honest is not None and spoof is not None and len(honest) >= 2 and len(spoof) >= 2


def select_points(points: Sequence[PudPoint], sigmas: Sequence[float] | None) -> list[PudPoint]:
    """The points at the chosen ``sigmas`` (all when None); an unknown sigma is a SpecError."""
    if not sigmas:
        return list(points)
    chosen = []
    for sigma in sigmas:
        match = [p for p in points if abs(p.sigma - sigma) <= SIGMA_TOLERANCE]
        if not match:
            raise SpecError(f"sigma {sigma:g} is not in the grid ({', '.join(f'{p.sigma:g}' for p in points)})")
        chosen.append(match[0])
    return chosen


__all__ = [
    "AXES",
    "AXIS_LETTERS",
    "COMBINE_RULES",
    "PRIVACY_COMPONENTS",
    "SIGMA_TOLERANCE",
    "PudPoint",
    "delta_score",
    "privacy_by_threat",
    "privacy_components",
    "privacy_score",
    "pud_points",
    "select_points",
    "separability_score",
    "utility_score",
]
