"""The PUD triangle (paper Sec. 5, Fig. 6) as numbers, and a sigma recommender over it.

Store-independent: every function takes plain per-sigma inputs (accuracy, Delta or honest/spoof
distances, privacy attack results), so the same code serves a sweep store, a JSON file or a test.

Normalizations to [0, 1] (each clipped to [0, 1]; the raw inputs are kept in ``PudPoint.raw``):

* Utility      U(s) = (A(s) - a_c) / (A(0) - a_c), A = accuracy on T_e, a_c = chance accuracy
  (1 / C by default): 1 = as useful as the clean data, 0 = no better than guessing.
* Distinguishability, from Delta (Eq. 4):
  D(s) = (Delta(s) - f) / (Delta(0) - f), f = ``delta_floor`` (0 by default; the shuffle-seed
  floor of SPEC.md sec. 6 is a sensible choice): 1 = as distinguishable as clean data.
  Or, where repeats exist, from the separability of honest distances D(W_Ti, W_Ti') and spoof
  distances D(W_Ti, W_Tj'): D(s) = 2 AUC - 1, AUC = P(spoof > honest) + P(tie) / 2.
* Privacy, from the attacks of :mod:`pudlab.privacy` (each component 1 = the attack fails):
  P_link = 1 - (L - L_c) / (1 - L_c), L = worst-case linkage rate (raw or denoised release),
  L_c = its chance level 1 / |pool|;  P_ssim = 1 - S, S = best mean SSIM an attacker recovers;
  P_mia = 2 (1 - AUC) of the membership attack. P = min of the available components (privacy is
  as weak as the strongest attack; ``combine="mean"`` averages them instead). A number given in
  place of the components is taken as P itself.

Profiles (TOML) state an application's constraints and objective, e.g. outsourcing
(Sec. 5.2): utility >= 0.9, maximize privacy. See ``docs/privacy.md`` for the file format.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SpecError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

AXES = ("privacy", "utility", "distinguishability")
"""The three vertices, in the order P, U, D."""
AXIS_LETTERS = {"privacy": "P", "utility": "U", "distinguishability": "D"}
PRIVACY_COMPONENTS = ("linkage", "ssim", "mia")
"""Privacy components :func:`privacy_score` can combine."""
COMBINE_RULES = ("min", "mean")
TIE_BREAKS = ("larger_sigma", "smaller_sigma")
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
    """Normalized privacy components from attack results (keys as :func:`pudlab.privacy.pud_privacy_inputs`
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
    if metrics.get("mia_auc") is not None:
        components["mia"] = _clip01(2 * (1 - float(metrics["mia_auc"])))
    return components


def privacy_score(metrics: float | Mapping[str, Any], *, combine: str = "min") -> tuple[float, dict[str, float]]:
    """(P, components): P = min (or mean) of :func:`privacy_components`; a number is P itself.

    >>> privacy_score({"linkage": 0.5, "linkage_chance": 0.0, "best_ssim": 0.2, "mia_auc": 0.6})[0]
    0.5
    """
    if combine not in COMBINE_RULES:
        raise SpecError(f"privacy combine rule {combine!r}: expected one of {', '.join(COMBINE_RULES)}")
    if isinstance(metrics, int | float):
        if not 0 <= float(metrics) <= 1:
            raise SpecError(f"privacy: a given value must be in [0, 1], got {metrics}")
        return float(metrics), {}
    components = privacy_components(metrics)
    if not components:
        raise SpecError(f"privacy: no usable attack result in {dict(metrics)!r}; expected linkage, best_ssim or mia_auc")
    values = list(components.values())
    return (min(values) if combine == "min" else float(np.mean(values))), components


# ---------------------------------------------------------------------------------------- points
@dataclass(frozen=True)
class PudPoint:
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

    def to_dict(self) -> dict[str, Any]:
        return {"sigma": self.sigma, "privacy": self.privacy, "utility": self.utility,
                "distinguishability": self.distinguishability, "raw": dict(self.raw)}


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
) -> list[PudPoint]:
    """One :class:`PudPoint` per sigma (sorted by sigma), normalized as the module docstring says.

    ``accuracy_at_zero`` / ``delta_at_zero``: None takes them from the sigma = 0 entry.
    ``privacy_by_sigma``: a mapping sigma -> (attack results or a [0, 1] number), or a sequence
    aligned with ``sigmas``. Where ``honest_distances[i]`` and ``spoof_distances[i]`` are both
    given (two or more values each), D at that sigma is their separability, not Delta.
    """
    sigmas = [float(s) for s in sigmas]
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
            if deltas is None or deltas[index] is None:
                raise SpecError(f"PUD: no Delta at sigma {sigma:g}")
            assert delta_zero is not None
            distinguishability = delta_score(float(deltas[index]), delta_zero, delta_floor=delta_floor)
            raw.update(d_method="delta", delta=float(deltas[index]), delta_at_zero=delta_zero, delta_floor=delta_floor)
        privacy_input = _lookup(privacy_by_sigma, sigma, index, "privacy")
        privacy, components = privacy_score(privacy_input, combine=privacy_combine)
        raw.update(privacy_components=components, privacy_combine=privacy_combine,
                   privacy_inputs=dict(privacy_input) if isinstance(privacy_input, Mapping) else privacy_input)
        points.append(PudPoint(sigma, privacy, utility, distinguishability, raw))
    return sorted(points, key=lambda point: point.sigma)


def _repeats(honest: Sequence[float] | None, spoof: Sequence[float] | None) -> bool:
    return honest is not None and spoof is not None and len(honest) >= 2 and len(spoof) >= 2


def points_from_json(data: Mapping[str, Any], *, source: str = "<json>", base_dir: str | os.PathLike | None = None,
                     privacy_report: Mapping[str, Any] | None = None, privacy_combine: str = "min",
                     delta_floor: float | None = None, chance_accuracy: float | None = None) -> list[PudPoint]:
    """PUD points from the ``pudlab pud --from-json`` format (see docs/privacy.md).

    Keys: ``sigmas``, ``accuracy`` (lists), optional ``accuracy_at_zero``; ``delta`` (list) with
    optional ``delta_at_zero`` and ``delta_floor``, and/or ``honest_distances``/``spoof_distances``
    (lists of lists); privacy as ``privacy`` (list of attack-result objects or numbers) or
    ``privacy_report`` (path of a ``pudlab privacy --json`` output, relative to the file), which
    ``privacy_report`` (the argument) overrides; optional ``chance_accuracy`` or ``num_classes``.
    """

    def need(key: str) -> Any:
        if key not in data:
            raise SpecError(f"{source}: missing key '{key}'")
        return data[key]

    def number_list(key: str, *, optional: bool = False) -> list[float | None] | None:
        if key not in data or data[key] is None:
            if optional:
                return None
            need(key)
        values = data[key]
        if not isinstance(values, list) or not all(v is None or isinstance(v, int | float) for v in values):
            raise SpecError(f"{source}: key '{key}' must be a list of numbers")
        return [None if v is None else float(v) for v in values]

    sigmas = number_list("sigmas")
    accuracies = number_list("accuracy")
    assert sigmas is not None and accuracies is not None
    if any(v is None for v in sigmas) or any(v is None for v in accuracies):
        raise SpecError(f"{source}: 'sigmas' and 'accuracy' may not hold nulls")
    deltas = number_list("delta", optional=True)
    if chance_accuracy is None:
        if "chance_accuracy" in data:
            chance_accuracy = float(data["chance_accuracy"])
        else:
            chance_accuracy = 1.0 / float(data.get("num_classes", 10))
    if delta_floor is None:
        delta_floor = float(data.get("delta_floor", 0.0))
    if privacy_report is None and "privacy_report" in data:
        path = Path(str(data["privacy_report"]))
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        from .storage import read_json

        privacy_report = read_json(path)
    if privacy_report is not None:
        privacy: Any = privacy_from_report(privacy_report, source=str(data.get("privacy_report", "privacy report")))
    else:
        privacy = need("privacy")
        if not isinstance(privacy, list):
            raise SpecError(f"{source}: key 'privacy' must be a list (one attack-result object or number per sigma)")
    try:
        return pud_points(
            [float(s) for s in sigmas if s is not None], [float(a) for a in accuracies if a is not None],
            data.get("accuracy_at_zero"), deltas, data.get("delta_at_zero"), privacy,
            chance_accuracy=chance_accuracy, delta_floor=delta_floor,
            honest_distances=data.get("honest_distances"), spoof_distances=data.get("spoof_distances"),
            privacy_combine=privacy_combine,
        )
    except SpecError as exc:
        raise SpecError(f"{source}: {exc}") from exc


def privacy_from_report(report: Mapping[str, Any], *, source: str = "privacy report") -> dict[float, dict[str, Any]]:
    """sigma -> attack results, from a :func:`pudlab.privacy.privacy_report` (``pudlab privacy --json``)."""
    if report.get("kind") != "pudlab.privacy_report" or not isinstance(report.get("sigmas"), list):
        raise SpecError(f"{source}: not a pudlab privacy report (expected kind 'pudlab.privacy_report')")
    return {float(entry["sigma"]): dict(entry["pud_privacy"]) for entry in report["sigmas"]}


# ---------------------------------------------------------------------------------------- profiles
@dataclass(frozen=True)
class Constraint:
    """``minimum <= value(axis) <= maximum`` (either bound may be absent)."""

    axis: str
    minimum: float | None = None
    maximum: float | None = None

    def holds(self, point: PudPoint) -> bool:
        value = point.value(self.axis)
        return (self.minimum is None or value >= self.minimum - 1e-12) and (
            self.maximum is None or value <= self.maximum + 1e-12)

    def shortfall(self, point: PudPoint) -> float:
        """How far the point misses the constraint (0 when it holds)."""
        value = point.value(self.axis)
        below = (self.minimum - value) if self.minimum is not None else 0.0
        above = (value - self.maximum) if self.maximum is not None else 0.0
        return max(0.0, below, above)

    def describe(self) -> str:
        letter = AXIS_LETTERS[self.axis]
        if self.minimum is not None and self.maximum is not None:
            return f"{self.minimum:g} <= {letter} <= {self.maximum:g}"
        if self.minimum is not None:
            return f"{letter} >= {self.minimum:g}"
        return f"{letter} <= {self.maximum:g}"


@dataclass(frozen=True)
class Profile:
    """An application's requirements on the PUD values."""

    name: str
    description: str
    constraints: tuple[Constraint, ...]
    objective_axis: str
    """The axis to optimize among the sigmas that meet every constraint."""
    objective_sense: str
    """``maximize`` or ``minimize``."""
    tie_break: str = "larger_sigma"
    """Among equal objective values: ``larger_sigma`` or ``smaller_sigma``."""
    source: str = ""
    """The file it was read from."""

    def describe(self) -> str:
        constraints = ", ".join(c.describe() for c in self.constraints) or "no constraints"
        return f"{constraints}; {self.objective_sense} {self.objective_axis}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "source": self.source,
                "constraints": [{"axis": c.axis, "min": c.minimum, "max": c.maximum} for c in self.constraints],
                "objective": {self.objective_sense: self.objective_axis}, "tie_break": self.tie_break}


_PROFILE_KEYS = {"name", "description", "constraints", "objective", "tie_break"}


def parse_profile(data: Mapping[str, Any], *, source: str) -> Profile:
    """Validate a profile table (a parsed TOML file); :class:`SpecError` names file, key and expectation.

    Format::

        name = "outsourcing"                  # optional (default: the file name)
        description = "..."                   # optional
        tie_break = "larger_sigma"            # optional: larger_sigma | smaller_sigma
        [constraints]                         # optional; each axis: min and/or max in [0, 1]
        utility = { min = 0.9 }
        [objective]                           # required: exactly one of maximize / minimize
        maximize = "privacy"
    """
    unknown = sorted(set(data) - _PROFILE_KEYS)
    if unknown:
        raise SpecError(f"{source}: unknown key '{unknown[0]}'; expected some of {', '.join(sorted(_PROFILE_KEYS))}")
    name = data.get("name", Path(source).stem)
    if not isinstance(name, str) or not name:
        raise SpecError(f"{source}: key 'name' must be a non-empty string")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise SpecError(f"{source}: key 'description' must be a string")
    tie_break = data.get("tie_break", "larger_sigma")
    if tie_break not in TIE_BREAKS:
        raise SpecError(f"{source}: key 'tie_break' must be one of {', '.join(TIE_BREAKS)}, got {tie_break!r}")

    raw_constraints = data.get("constraints", {})
    if not isinstance(raw_constraints, Mapping):
        raise SpecError(f"{source}: key 'constraints' must be a table like {{ utility = {{ min = 0.9 }} }}")
    constraints = []
    for axis, bounds in raw_constraints.items():
        key = f"constraints.{axis}"
        if axis not in AXES:
            raise SpecError(f"{source}: key '{key}': unknown axis; expected one of {', '.join(AXES)}")
        if not isinstance(bounds, Mapping) or not bounds or set(bounds) - {"min", "max"}:
            raise SpecError(f"{source}: key '{key}' must be a table with 'min' and/or 'max', e.g. {{ min = 0.9 }}")
        values: dict[str, float] = {}
        for bound, value in bounds.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise SpecError(f"{source}: key '{key}.{bound}' must be a number in [0, 1], got {value!r}")
            values[bound] = float(value)
        if "min" in values and "max" in values and values["min"] > values["max"]:
            raise SpecError(f"{source}: key '{key}': min {values['min']:g} is above max {values['max']:g}")
        constraints.append(Constraint(axis, values.get("min"), values.get("max")))

    objective = data.get("objective")
    if not isinstance(objective, Mapping):
        raise SpecError(f"{source}: missing table 'objective'; expected e.g. [objective] maximize = \"privacy\"")
    senses = [key for key in objective if key in ("maximize", "minimize")]
    extra = sorted(set(objective) - {"maximize", "minimize"})
    if extra or len(senses) != 1:
        raise SpecError(f"{source}: key 'objective' must hold exactly one of 'maximize' or 'minimize'"
                        + (f" (unknown key 'objective.{extra[0]}')" if extra else ""))
    sense = senses[0]
    axis = objective[sense]
    if axis not in AXES:
        raise SpecError(f"{source}: key 'objective.{sense}' must be one of {', '.join(AXES)}, got {axis!r}")
    return Profile(name, description, tuple(constraints), axis, sense, tie_break, source)


def builtin_profiles() -> list[str]:
    """Names of the profiles shipped with pudlab (``pudlab/profiles/*.toml``)."""
    folder = resources.files("pudlab") / "profiles"
    return sorted(entry.name[:-5] for entry in folder.iterdir() if entry.name.endswith(".toml"))


def load_profile(name_or_path: str | os.PathLike) -> Profile:
    """A shipped profile by name (``outsourcing``, ``pol``; names win over same-named files) or a
    TOML file by path."""
    text_name = str(name_or_path)
    path = Path(text_name)
    if text_name in builtin_profiles():
        resource = resources.files("pudlab") / "profiles" / f"{text_name}.toml"
        source = f"pudlab/profiles/{text_name}.toml"
        text = resource.read_text()
    elif path.suffix == ".toml" or path.is_file():
        source = str(path)
        try:
            text = path.read_text()
        except FileNotFoundError as exc:
            raise SpecError(f"{source}: profile file not found") from exc
        except (IsADirectoryError, UnicodeDecodeError) as exc:
            raise SpecError(f"{source}: not a readable TOML profile ({exc})") from exc
    else:
        raise SpecError(f"profile {text_name!r}: not a shipped profile ({', '.join(builtin_profiles())}) "
                        "nor a .toml file")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{source}: not valid TOML ({exc})") from exc
    return parse_profile(data, source=source)


# ---------------------------------------------------------------------------------------- recommender
@dataclass(frozen=True)
class Recommendation:
    """What :func:`recommend` found for one profile on one sigma grid."""

    profile: Profile
    recommended: PudPoint | None
    """The chosen point, or None when no sigma meets every constraint."""
    below: PudPoint | None
    """The grid neighbour with the next smaller sigma (of the recommended one)."""
    above: PudPoint | None
    """The grid neighbour with the next larger sigma."""
    feasible: tuple[float, ...]
    """Sigmas that meet every constraint."""
    failures: Mapping[float, tuple[str, ...]]
    """sigma -> the constraints it misses (empty for feasible sigmas)."""
    closest: PudPoint | None
    """When none is feasible: the sigma with the smallest total shortfall."""
    message: str

    def to_dict(self) -> dict[str, Any]:
        def point(p: PudPoint | None) -> dict[str, Any] | None:
            return None if p is None else {"sigma": p.sigma, "privacy": p.privacy, "utility": p.utility,
                                           "distinguishability": p.distinguishability,
                                           "feasible": not self.failures.get(p.sigma)}

        return {"profile": self.profile.to_dict(), "recommended": point(self.recommended),
                "neighbours": {"below": point(self.below), "above": point(self.above)},
                "feasible_sigmas": list(self.feasible),
                "failures": {f"{sigma:g}": list(missed) for sigma, missed in self.failures.items() if missed},
                "closest": point(self.closest), "message": self.message}


def recommend(points: Sequence[PudPoint], profile: Profile) -> Recommendation:
    """The sigma that meets every constraint of ``profile`` and optimizes its objective.

    Ties (objective values within 1e-9) go to the larger or smaller sigma as the profile's
    ``tie_break`` says. With no feasible sigma, ``recommended`` is None and the message says so.
    """
    ordered = sorted(points, key=lambda p: p.sigma)
    if not ordered:
        raise SpecError("recommend: no PUD points")
    failures = {p.sigma: tuple(c.describe() for c in profile.constraints if not c.holds(p)) for p in ordered}
    feasible = [p for p in ordered if not failures[p.sigma]]
    if not feasible:
        closest = min(ordered, key=lambda p: (sum(c.shortfall(p) for c in profile.constraints), p.sigma))
        misses = "; ".join(f"{c.describe()} holds at {sum(c.holds(p) for p in ordered)} of {len(ordered)} sigmas"
                           for c in profile.constraints)
        message = (f"no sigma in the grid ({ordered[0].sigma:g} .. {ordered[-1].sigma:g}, {len(ordered)} points) "
                   f"satisfies profile '{profile.name}' ({profile.describe()}): {misses}. "
                   f"Closest: sigma {closest.sigma:g} (misses {', '.join(failures[closest.sigma])}).")
        return Recommendation(profile, None, None, None, (), failures, closest, message)
    sign = 1.0 if profile.objective_sense == "maximize" else -1.0
    best_value = max(sign * p.value(profile.objective_axis) for p in feasible)
    tied = [p for p in feasible if sign * p.value(profile.objective_axis) >= best_value - 1e-9]
    chosen = tied[-1] if profile.tie_break == "larger_sigma" else tied[0]
    position = ordered.index(chosen)
    below = ordered[position - 1] if position > 0 else None
    above = ordered[position + 1] if position + 1 < len(ordered) else None
    tie_note = f" ({len(tied)} sigmas tie; {profile.tie_break.replace('_', ' ')} chosen)" if len(tied) > 1 else ""
    message = (f"profile '{profile.name}' ({profile.describe()}): recommended sigma {chosen.sigma:g} "
               f"(P {chosen.privacy:.3f}, U {chosen.utility:.3f}, D {chosen.distinguishability:.3f}){tie_note}; "
               f"{len(feasible)} of {len(ordered)} sigmas feasible.")
    return Recommendation(profile, chosen, below, above, tuple(p.sigma for p in feasible), failures, None, message)


# ---------------------------------------------------------------------------------------- figures
def _triangle_vertices() -> np.ndarray:
    """Unit-radius vertices P (top), U (bottom left), D (bottom right)."""
    angles = np.deg2rad([90.0, 210.0, 330.0])
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def triangle_figure(points: Sequence[PudPoint], *, title: str | None = None, highlight: float | None = None) -> Any:
    """Fig. 6-style PUD triangles, one per point, side by side.

    Each outline has vertices P, U, D at distance 1 from its centre; the filled triangle's corner
    on the centre-to-vertex axis of X lies at distance value(X) from the centre (1 = the vertex).
    ``highlight``: the sigma drawn in another colour (e.g. a recommendation).
    """
    from .plots import plt  # pyplot with the Agg backend selected

    if not points:
        raise SpecError("PUD triangles: no points to draw")
    vertices = _triangle_vertices()
    columns = min(len(points), 6)
    rows = math.ceil(len(points) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(2.3 * columns, 2.5 * rows), squeeze=False)
    for axis in axes.ravel():
        axis.axis("off")
    for index, point in enumerate(points):
        axis = axes[index // columns][index % columns]
        axis.set_aspect("equal")
        outline = np.vstack([vertices, vertices[:1]])
        for level in (0.25, 0.5, 0.75):
            axis.plot(*(level * outline).T, color="0.85", linewidth=0.6)
        for vertex in vertices:
            axis.plot([0, vertex[0]], [0, vertex[1]], color="0.85", linewidth=0.6)
        axis.plot(*outline.T, color="0.3", linewidth=1.0)
        values = np.array([point.privacy, point.utility, point.distinguishability])
        inner = vertices * values[:, None]
        special = highlight is not None and abs(point.sigma - highlight) <= SIGMA_TOLERANCE
        color = "tab:red" if special else "tab:blue"
        axis.fill(*inner.T, color=color, alpha=0.45, linewidth=1.2, edgecolor=color)
        offsets = [(0, 0.13), (-0.1, -0.12), (0.1, -0.12)]
        for letter, vertex, value, (dx, dy) in zip("PUD", vertices, values, offsets, strict=True):
            axis.text(vertex[0] + dx, vertex[1] + dy, f"{letter} {value:.2f}", ha="center", va="center", fontsize=8)
        axis.set_title(f"σ = {point.sigma:g}" + (" ★" if special else ""), fontsize=9)
        axis.set_xlim(-1.25, 1.25)
        axis.set_ylim(-0.85, 1.3)
    if title:
        figure.suptitle(title, fontsize=10)
    return figure


def curves_figure(points: Sequence[PudPoint], *, title: str | None = None, highlight: float | None = None) -> Any:
    """Privacy, Utility and Distinguishability vs sigma, three curves on one axis."""
    from .plots import plt  # pyplot with the Agg backend selected

    ordered = sorted(points, key=lambda p: p.sigma)
    sigmas = [p.sigma for p in ordered]
    figure, axis = plt.subplots(figsize=(5.5, 3.6))
    for axis_name, marker in zip(AXES, "os^", strict=True):
        axis.plot(sigmas, [p.value(axis_name) for p in ordered], marker=marker,
                  label=f"{AXIS_LETTERS[axis_name]}: {axis_name}")
    if highlight is not None:
        axis.axvline(highlight, color="tab:red", linestyle=":", label=f"recommended σ = {highlight:g}")
    axis.set_xlabel("σ (noise std, [0, 1] pixel units)")
    axis.set_ylabel("normalized value (1 = more)")
    axis.set_ylim(-0.03, 1.03)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    if title:
        axis.set_title(title, fontsize=10)
    return figure


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


def save_pud_figures(points: Sequence[PudPoint], out_dir: str | os.PathLike, *, title: str | None = None,
                     highlight: float | None = None, sigmas: Sequence[float] | None = None,
                     formats: Sequence[str] = ("png", "svg")) -> list[Path]:
    """Write ``pud_triangles.<fmt>`` (the chosen sigmas) and ``pud_curves.<fmt>`` (all) to ``out_dir``."""
    from .plots import save_figure

    out = Path(out_dir)
    shown = select_points(points, sigmas)
    written = []
    for fmt in formats:
        written.append(save_figure(triangle_figure(shown, title=title, highlight=highlight), out / f"pud_triangles.{fmt}"))
        written.append(save_figure(curves_figure(points, title=title, highlight=highlight), out / f"pud_curves.{fmt}"))
    return written


__all__ = [
    "AXES",
    "COMBINE_RULES",
    "PRIVACY_COMPONENTS",
    "Constraint",
    "Profile",
    "PudPoint",
    "Recommendation",
    "builtin_profiles",
    "curves_figure",
    "delta_score",
    "load_profile",
    "parse_profile",
    "points_from_json",
    "privacy_components",
    "privacy_from_report",
    "privacy_score",
    "pud_points",
    "recommend",
    "save_pud_figures",
    "select_points",
    "separability_score",
    "triangle_figure",
    "utility_score",
]
