"""PUD points from the ``pudlab pud --from-json`` format (see docs/privacy.md), privacy included.

The privacy inputs come from the JSON itself (``privacy``: one attack-result object or number per
sigma) or from a privacy report (:class:`pudlab.privacy.PrivacyReport`, or its JSON).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pudlab.errors import SpecError
from pudlab.io import read_json
from pudlab.privacy.report import PrivacyReport, pud_privacy_by_sigma
from pudlab.pud.scores import PudPoint, pud_points


def points_from_json(data: Mapping[str, Any], *, source: str = "<json>", base_dir: str | os.PathLike | None = None,
                     privacy_report: PrivacyReport | Mapping[str, Any] | None = None, privacy_combine: str = "min",
                     delta_floor: float | None = None, chance_accuracy: float | None = None,
                     threat_model: str | None = None) -> list[PudPoint]:
    """PUD points from the ``pudlab pud --from-json`` format (see docs/privacy.md).

    Keys: ``sigmas``, ``accuracy`` (lists), optional ``accuracy_at_zero``; ``delta`` (list) with
    optional ``delta_at_zero`` and ``delta_floor``, and/or ``honest_distances``/``spoof_distances``
    (lists of lists); privacy as ``privacy`` (list of attack-result objects or numbers) or
    ``privacy_report`` (path of a ``pudlab privacy --json`` output, relative to the file), which
    ``privacy_report`` (the argument) overrides; optional ``chance_accuracy`` or ``num_classes``.
    ``threat_model``: P for that attacker only (None: every attack given).
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
    privacy = _privacy_inputs(data, source, base_dir, privacy_report)
    try:
        return pud_points(
            [float(s) for s in sigmas if s is not None], [float(a) for a in accuracies if a is not None],
            data.get("accuracy_at_zero"), deltas, data.get("delta_at_zero"), privacy,
            chance_accuracy=chance_accuracy, delta_floor=delta_floor,
            honest_distances=data.get("honest_distances"), spoof_distances=data.get("spoof_distances"),
            privacy_combine=privacy_combine, threat_model=threat_model,
        )
    except SpecError as exc:
        raise SpecError(f"{source}: {exc}") from exc


def _privacy_inputs(data: Mapping[str, Any], source: str, base_dir: str | os.PathLike | None,
                    privacy_report: PrivacyReport | Mapping[str, Any] | None) -> Any:
    """Per-sigma privacy inputs: from the report (the argument, else the file named by the JSON's
    ``privacy_report``), else the JSON's ``privacy`` list."""
    if privacy_report is None and "privacy_report" in data:
        path = Path(str(data["privacy_report"]))
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        privacy_report = read_json(path)
    if privacy_report is not None:
        return privacy_from_report(privacy_report, source=str(data.get("privacy_report", "privacy report")))
    if "privacy" not in data:
        raise SpecError(f"{source}: missing key 'privacy'")
    privacy = data["privacy"]
    if not isinstance(privacy, list):
        raise SpecError(f"{source}: key 'privacy' must be a list (one attack-result object or number per sigma)")
    return privacy


def privacy_from_report(report: PrivacyReport | Mapping[str, Any], *,
                        source: str = "privacy report") -> dict[float, dict[str, Any]]:
    """sigma -> attack results (:class:`pudlab.privacy.PudPrivacyInputs` as a dict), from a
    :func:`pudlab.privacy.privacy_report` or its JSON (``pudlab privacy --json``)."""
    return {sigma: inputs.to_dict() for sigma, inputs in pud_privacy_by_sigma(report, source=source).items()}


__all__ = ["points_from_json", "privacy_from_report"]
