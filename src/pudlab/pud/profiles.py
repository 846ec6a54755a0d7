"""Application profiles (TOML) and the sigma recommender over PUD points.

A profile states an application's constraints on the PUD values and the axis to optimize, e.g.
outsourcing (paper Sec. 5.2): utility >= 0.9, maximize privacy. Shipped profiles live in
``pudlab/specs/profiles/``; the file format is in ``docs/privacy.md``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pudlab.config import Section, read_toml, resolve_spec, shipped_names
from pudlab.errors import SpecError
from pudlab.pud.scores import AXES, AXIS_LETTERS, PudPoint

TIE_BREAKS = ("larger_sigma", "smaller_sigma")
OBJECTIVE_SENSES = ("maximize", "minimize")
_PROFILE_KEYS = ("name", "description", "constraints", "objective", "tie_break", "threat_model", "distinguishability")
D_SOURCES = ("delta", "pol_detection")
"""Where a profile's Distinguishability comes from: Delta / separability of the Exp-3 distances, or
the PoL verifier's measured detection (:mod:`pudlab.pud.pol_inputs`)."""
_BOUNDS_EXPECTED = "a table with min and/or max in [0, 1], e.g. { min = 0.9 }"


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
    threat_model: str = "model"
    """The attacker P is computed for (:data:`pudlab.privacy.threats.THREAT_MODELS`)."""
    distinguishability: str = "delta"
    """Where D comes from: ``delta`` or ``pol_detection`` (see :data:`D_SOURCES`)."""

    def describe(self) -> str:
        constraints = ", ".join(c.describe() for c in self.constraints) or "no constraints"
        return f"{constraints}; {self.objective_sense} {self.objective_axis}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "source": self.source,
                "constraints": [{"axis": c.axis, "min": c.minimum, "max": c.maximum} for c in self.constraints],
                "objective": {self.objective_sense: self.objective_axis}, "tie_break": self.tie_break,
                "threat_model": self.threat_model, "distinguishability": self.distinguishability}


def parse_profile(data: Mapping[str, Any], *, source: str) -> Profile:
    """Validate a profile table (a parsed TOML file); :class:`SpecError` names file, key and expectation.

    Format::

        name = "outsourcing"                  # optional (default: the file name)
        description = "..."                   # optional
        tie_break = "larger_sigma"            # optional: larger_sigma | smaller_sigma
        threat_model = "public"               # optional: release | public | pool | model (default model)
        distinguishability = "delta"          # optional: delta | pol_detection
        [constraints]                         # optional; each axis: min and/or max in [0, 1]
        utility = { min = 0.9 }
        [objective]                           # required: exactly one of maximize / minimize
        maximize = "privacy"
    """
    top = Section(source, "", data)
    top.check_keys(_PROFILE_KEYS)
    name = top.string("name", Path(source).stem)
    if not name:
        raise top.fail("name", "a non-empty string")
    description = top.string("description", "")
    tie_break = top.string("tie_break", "larger_sigma", choices=TIE_BREAKS)
    from pudlab.privacy.threats import THREAT_MODELS

    threat = top.string("threat_model", "model", choices=tuple(THREAT_MODELS))
    d_source = top.string("distinguishability", "delta", choices=D_SOURCES)
    constraints = _parse_constraints(top.table("constraints", {}))
    if not top.has("objective"):
        raise top.fail("objective", 'a table such as [objective] maximize = "privacy"')
    objective = top.table("objective")
    objective.check_keys(OBJECTIVE_SENSES)
    senses = [sense for sense in OBJECTIVE_SENSES if objective.has(sense)]
    if len(senses) != 1:
        raise top.fail("objective", "exactly one of maximize or minimize")
    axis = objective.string(senses[0], choices=AXES)
    return Profile(name, description, constraints, axis, senses[0], tie_break, source, threat, d_source)


def _parse_constraints(section: Section) -> tuple[Constraint, ...]:
    constraints = []
    for axis, bounds in section.data.items():
        if axis not in AXES:
            raise SpecError(f"{section.where(axis)}: unknown axis; expected one of {', '.join(AXES)}")
        if not isinstance(bounds, Mapping) or not bounds or set(bounds) - {"min", "max"}:
            raise section.fail(axis, _BOUNDS_EXPECTED)
        limits = section.table(axis)
        minimum = limits.number("min", None, low=0, high=1)
        maximum = limits.number("max", None, low=0, high=1)
        if minimum is not None and maximum is not None and minimum > maximum:
            raise section.fail(axis, "min <= max")
        constraints.append(Constraint(axis, None if minimum is None else float(minimum),
                                      None if maximum is None else float(maximum)))
    return tuple(constraints)


def builtin_profiles() -> list[str]:
    """Names of the profiles shipped with pudlab (``pudlab/specs/profiles/*.toml``)."""
    return list(shipped_names("profiles"))


def load_profile(name_or_path: str | os.PathLike) -> Profile:
    """A shipped profile by name (``outsourcing``, ``pol``; names win over same-named files) or a
    TOML file by path."""
    name = str(name_or_path)
    path = resolve_spec("profiles", name, what="profile")
    shipped = not Path(name).suffix and name in shipped_names("profiles")
    source = f"pudlab/specs/profiles/{name}.toml" if shipped else str(path)
    return parse_profile(read_toml(path), source=source)


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
    """The sigma that meets every constraint of ``profile`` and optimizes its objective (``points``: P
    computed under the profile's threat model; the message names it).

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
                   f"satisfies profile '{profile.name}' ({profile.describe()}; P under threat model "
                   f"'{profile.threat_model}'): {misses}. "
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
               f"(P {chosen.privacy:.3f} under threat model '{profile.threat_model}', U {chosen.utility:.3f}, "
               f"D {chosen.distinguishability:.3f}){tie_note}; "
               f"{len(feasible)} of {len(ordered)} sigmas feasible.")
    return Recommendation(profile, chosen, below, above, tuple(p.sigma for p in feasible), failures, None, message)


__all__ = ["D_SOURCES", "OBJECTIVE_SENSES", "TIE_BREAKS", "Constraint", "Profile", "Recommendation", "builtin_profiles",
           "load_profile", "parse_profile", "recommend"]
