"""What ``pudlab pud`` computes and keeps: one view per profile, each under one named threat model.

A view is the PUD points of a sigma grid with P computed under one threat model
(:mod:`pudlab.privacy.threats`) and, for a profile, the recommendation made from exactly those
points: the P a table, a plot or a recommendation shows is the P the profile used. Without a
profile the view is named after its threat model (``threat-model``: every attack).

``pud.json`` (kind ``pudlab.pud``, format 2) keeps every view ever computed into it (a view of the
same name is replaced), the privacy source each came from (file, command, date), and, for readers
of format 1, ``points`` and ``recommendations``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pudlab.errors import PudlabError
from pudlab.pud.json_inputs import points_from_json
from pudlab.pud.profiles import Profile, Recommendation, recommend
from pudlab.pud.scores import PudPoint

PUD_KIND = "pudlab.pud"
PUD_FORMAT = 2
NEGLIGIBLE_PRIVACY = 0.05
"""A recommended P below this is flagged: the attacker of the profile's threat model recovers nearly everything."""


@dataclass(frozen=True)
class PudView:
    """The points of one threat model and, for a profile, its recommendation from them."""

    name: str
    """The profile's name, or ``threat-<model>`` without a profile."""
    threat_model: str
    points: list[PudPoint]
    profile: Profile | None = None
    recommendation: Recommendation | None = None
    notes: tuple[str, ...] = ()

    @property
    def title_suffix(self) -> str:
        """How a plot title names the view: ``profile 'pol', P under threat model 'public'``."""
        start = f"profile '{self.profile.name}', " if self.profile is not None else ""
        return f"{start}P under threat model '{self.threat_model}'"

    def to_dict(self) -> dict[str, Any]:
        from pudlab.privacy.threats import THREAT_MODELS

        return {"name": self.name, "threat_model": self.threat_model,
                "threat_description": THREAT_MODELS[self.threat_model].description,
                "profile": self.profile.to_dict() if self.profile is not None else None,
                "points": [point.to_dict() for point in self.points],
                "recommendation": self.recommendation.to_dict() if self.recommendation is not None else None,
                "notes": list(self.notes)}


def view_name(profile: Profile | None, threat_model: str) -> str:
    return profile.name if profile is not None else f"threat-{threat_model}"


def privacy_warnings(recommendation: Recommendation) -> list[str]:
    """A warning when the recommended sigma gives negligible privacy under the profile's threat model."""
    chosen = recommendation.recommended
    if chosen is None or chosen.privacy >= NEGLIGIBLE_PRIVACY:
        return []
    return [f"warning: profile '{recommendation.profile.name}' recommends sigma {chosen.sigma:g} with P = "
            f"{chosen.privacy:.3f} under threat model '{recommendation.profile.threat_model}': privacy is "
            f"negligible there (P < {NEGLIGIBLE_PRIVACY:g}); the constraints leave no sigma with more"]


def pud_views(data: Mapping[str, Any], *, source: str, base_dir: str | os.PathLike | None,
              privacy_report: Any, profiles: Sequence[Profile], threat_model: str = "model",
              privacy_combine: str = "min", delta_floor: float | None = None, chance_accuracy: float | None = None,
              pol_report: Any = None, pol_source: str = "PoL evaluation") -> list[PudView]:
    """One view per profile (its threat model, its D source), or one under ``threat_model`` without a
    profile. ``data``: the ``--from-json`` inputs; ``pol_report``: a ``pudlab pol evaluate`` JSON for
    profiles whose D is the PoL verifier's detection."""
    from pudlab.privacy.threats import threat_model as check_threat_model
    from pudlab.pud.pol_inputs import with_pol_detection

    def points_for(threat: str) -> list[PudPoint]:
        return points_from_json(data, source=source, base_dir=base_dir, privacy_report=privacy_report,
                                privacy_combine=privacy_combine, delta_floor=delta_floor,
                                chance_accuracy=chance_accuracy, threat_model=threat)

    if not profiles:
        check_threat_model(threat_model)
        return [PudView(view_name(None, threat_model), threat_model, points_for(threat_model))]
    views = []
    for profile in profiles:
        points, notes = points_for(profile.threat_model), []
        if profile.distinguishability == "pol_detection":
            if pol_report is not None:
                points = with_pol_detection(points, pol_report, source=pol_source)
            else:
                notes.append(f"profile '{profile.name}': D from Delta; give --pol-evaluation FILE (a `pudlab pol "
                             "evaluate` JSON) for the PoL verifier's measured detection")
        recommendation = recommend(points, profile)
        notes.extend(privacy_warnings(recommendation))
        views.append(PudView(profile.name, profile.threat_model, points, profile, recommendation, tuple(notes)))
    return views


def privacy_source(report: Mapping[str, Any] | None, *, file: str | None, how: str) -> dict[str, Any]:
    """Where the P axis came from: the file, the command that measured it, its date (the report's
    ``created``, else the file's modification time), or ``how`` the privacy inputs were given."""
    import datetime

    if report is None:
        return {"file": file, "command": None, "date": None, "how": how}
    date = report.get("created")
    if date is None and file is not None and Path(file).exists():
        stamp = datetime.datetime.fromtimestamp(Path(file).stat().st_mtime, datetime.UTC)
        date = stamp.strftime("%Y-%m-%dT%H:%M:%SZ") + " (file modified)"
    command = report.get("command") or ("pudlab audit" if report.get("audit") else "pudlab privacy")
    return {"file": file, "command": command, "date": date, "how": how}


def describe_source(source: Mapping[str, Any]) -> str:
    """One line naming a :func:`privacy_source`."""
    if source.get("command") is None:
        return f"privacy from {source.get('how')}" + (f" ({source['file']})" if source.get("file") else "")
    return f"privacy from {source.get('file')}: `{source['command']}`, measured {source.get('date') or 'date unknown'}"


def pud_result(views: Sequence[PudView], *, source: str, privacy: Mapping[str, Any], title: str,
               earlier: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``pud.json`` object: these views added to the ``earlier`` file's (same name: replaced)."""
    kept: dict[str, Any] = {}
    if earlier is not None and earlier.get("kind") == PUD_KIND and isinstance(earlier.get("views"), dict):
        kept = {name: view for name, view in earlier["views"].items() if isinstance(view, dict)}
    for view in views:
        kept[view.name] = {**view.to_dict(), "privacy_source": dict(privacy), "source": source}
    recommendations = [view["recommendation"] for view in kept.values() if view.get("recommendation")]
    result: dict[str, Any] = {"kind": PUD_KIND, "format": PUD_FORMAT, "title": title, "source": source,
                              "privacy_source": dict(privacy), "views": kept,
                              "points": [point.to_dict() for point in views[0].points],
                              "threat_model": views[0].threat_model, "recommendations": recommendations,
                              "notes": [note for view in views for note in view.notes]}
    if len(recommendations) == 1:
        result["recommended"] = recommendations[0]["recommended"]
    return result


def read_earlier(path: Path) -> dict[str, Any] | None:
    """An earlier ``pud.json`` to add to (None when there is none or it does not read)."""
    from pudlab.io import read_json

    if not path.exists():
        return None
    try:
        return read_json(path)
    except (PudlabError, OSError):
        return None


__all__ = ["NEGLIGIBLE_PRIVACY", "PUD_FORMAT", "PUD_KIND", "PudView", "describe_source", "privacy_source",
           "privacy_warnings", "pud_result", "pud_views", "read_earlier", "view_name"]
