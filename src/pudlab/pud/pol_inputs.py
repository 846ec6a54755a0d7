"""Distinguishability of the ``pol`` application from what the PoL verifier measurably detects.

Reads a ``pudlab pol evaluate`` JSON (kind ``pudlab.pol_evaluation``, its ``rows``: one per sigma)
or a :class:`pudlab.pol.evaluation_results.DetectionReport`. At each sigma:

    D_pol = clip(min_a R_a - FRR, 0, 1)

with R_a the rejection rate of every cheat the evaluation ran (``spoof_rejection``,
``thief_rejection``, ``tamper_rejection`` and any other ``*_rejection`` field; an attack that did
not run is null and skipped) and FRR the honest provers' false-reject rate: the verifier's
detection of its hardest cheat, less its false alarms (1: every cheat caught, no honest prover
rejected; 0: no better than rejecting at random). Between measured sigmas D_pol is interpolated
linearly; outside the measured range it is unknown (None), and the recommender treats it as 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pudlab.errors import SpecError
from pudlab.pud.scores import SIGMA_TOLERANCE, PudPoint

POL_KIND = "pudlab.pol_evaluation"


def _rows(report: Any, source: str) -> list[Mapping[str, Any]]:
    if hasattr(report, "rows") and not isinstance(report, Mapping):
        return [row.to_dict() for row in report.rows]
    if not isinstance(report, Mapping) or report.get("kind") != POL_KIND or not isinstance(report.get("rows"), list):
        raise SpecError(f"{source}: not a PoL evaluation (expected kind '{POL_KIND}' with a 'rows' list)")
    return list(report["rows"])


def detection_by_sigma(report: Any, *, source: str = "PoL evaluation") -> dict[float, dict[str, Any]]:
    """sigma -> {"detection": D_pol, "rejections": {attack: rate}, "false_reject_rate": FRR}."""
    result: dict[float, dict[str, Any]] = {}
    for index, row in enumerate(_rows(report, source)):
        where = f"{source}: rows[{index}]"
        if not isinstance(row, Mapping) or "sigma" not in row or "false_reject_rate" not in row:
            raise SpecError(f"{where}: expected an object with sigma, false_reject_rate and *_rejection rates")
        rejections = {key[: -len("_rejection")]: float(value) for key, value in row.items()
                      if key.endswith("_rejection") and isinstance(value, int | float)}
        if not rejections:
            raise SpecError(f"{where}: no cheat was evaluated (every *_rejection is missing or null)")
        frr = float(row["false_reject_rate"])
        result[float(row["sigma"])] = {"detection": float(min(1.0, max(0.0, min(rejections.values()) - frr))),
                                       "rejections": rejections, "false_reject_rate": frr}
    return result


def detection_at(by_sigma: Mapping[float, Mapping[str, Any]], sigma: float) -> float | None:
    """D_pol at ``sigma``: measured, linearly interpolated between measured sigmas, else None."""
    grid = sorted(by_sigma)
    for known in grid:
        if abs(known - sigma) <= SIGMA_TOLERANCE:
            return float(by_sigma[known]["detection"])
    if not grid or sigma < grid[0] or sigma > grid[-1]:
        return None
    return float(np.interp(sigma, grid, [by_sigma[s]["detection"] for s in grid]))


def with_pol_detection(points: Sequence[PudPoint], report: Any, *, source: str = "PoL evaluation") -> list[PudPoint]:
    """``points`` with D replaced by D_pol (0 where it is unknown; ``raw`` says which)."""
    by_sigma = detection_by_sigma(report, source=source)
    result = []
    for point in points:
        value = detection_at(by_sigma, point.sigma)
        raw = {**point.raw, "d_method": "pol_detection", "pol_detection": value, "d_from_model": point.distinguishability,
               "pol_measured_sigmas": sorted(by_sigma)}
        result.append(PudPoint(point.sigma, point.privacy, point.utility, 0.0 if value is None else value, raw))
    return result


__all__ = ["POL_KIND", "detection_at", "detection_by_sigma", "with_pol_detection"]
