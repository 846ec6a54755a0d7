"""Threat models as data: what an attacker holds, which attacks that allows, and P for each.

Four nested threat models, each holding everything the one before holds:

* ``release``: the released O(T) only (and sigma, which is public): the classical denoisers;
* ``public``: plus public data of the same kind, disjoint from T: a learned denoiser trained on it,
  label inference by a classifier trained on it;
* ``pool``: plus a pool of raw candidate images that holds the released ones' sources: linkage
  (re-identification) of the release, raw or denoised;
* ``model``: plus the model trained on the release: membership inference (loss threshold, LiRA).

Each attack of :mod:`pudlab.privacy` declares the holding it needs (:data:`ATTACK_NEEDS`); a
privacy component counts towards P under a threat model only when its attack's needs are held.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pudlab.errors import SpecError
from pudlab.records import Record

HOLDINGS = ("release", "public", "raw_pool", "model")
"""What an attacker can hold, in the order the threat models add them."""


@dataclass(frozen=True)
class ThreatModel(Record):
    """A named attacker: what it holds."""

    name: str
    holds: tuple[str, ...]
    description: str

    def allows(self, attack: str) -> bool:
        """Whether an attacker of this model can run ``attack`` (a key of :data:`ATTACK_NEEDS`)."""
        return ATTACK_NEEDS[attack] in self.holds


THREAT_MODELS: dict[str, ThreatModel] = {
    "release": ThreatModel("release", ("release",), "the release only"),
    "public": ThreatModel("public", ("release", "public"), "the release and public data of the same kind"),
    "pool": ThreatModel("pool", ("release", "public", "raw_pool"),
                        "the release, public data and a raw pool holding the released images' sources"),
    "model": ThreatModel("model", ("release", "public", "raw_pool", "model"),
                         "the release, public data, the raw pool and the model trained on the release"),
}
"""The threat models by name, weakest attacker first."""
DEFAULT_THREAT_MODEL = "model"
"""The strongest attacker: what P meant before threat models were named."""

ATTACK_NEEDS: dict[str, str] = {
    "classical_denoising": "release",
    "learned_denoising": "public",
    "label_inference": "public",
    "linkage": "raw_pool",
    "membership_loss": "model",
    "membership_lira": "model",
}
"""Each attack and the holding it needs beyond the release (``release``: nothing more)."""

COMPONENT_ATTACKS: dict[str, tuple[tuple[str, str], ...]] = {
    "ssim": (("classical_denoising", "release_ssim"), ("learned_denoising", "best_ssim")),
    "label": (("label_inference", "label_accuracy"),),
    "linkage": (("linkage", "linkage"),),
    "mia": (("membership_loss", "mia_auc"), ("membership_lira", "lira_auc")),
}
"""Privacy component -> (attack, metric key) pairs; the component takes the worst (for privacy) of
the metrics whose attack the threat model allows."""


def threat_model(name: str) -> ThreatModel:
    """The threat model named ``name``; a SpecError lists the known ones otherwise."""
    try:
        return THREAT_MODELS[name]
    except KeyError:
        raise SpecError(f"unknown threat model {name!r}; expected one of {', '.join(THREAT_MODELS)}") from None


def metrics_for(metrics: Mapping[str, Any], name: str) -> dict[str, float]:
    """The attack metrics an attacker of threat model ``name`` gets, one per component.

    ``metrics``: :class:`pudlab.privacy.PudPrivacyInputs` as a dict. ``ssim`` and ``mia``: the
    maximum over the allowed attacks (a missing metric is skipped); ``linkage_chance`` and
    ``label_chance`` ride along with their component.
    """
    model = threat_model(name)
    picked: dict[str, float] = {}
    for component, pairs in COMPONENT_ATTACKS.items():
        values = [float(metrics[key]) for attack, key in pairs
                  if model.allows(attack) and metrics.get(key) is not None]
        if not values:
            continue
        key = pairs[0][1] if component != "ssim" else "best_ssim"
        picked[key] = max(values)
    if "linkage" in picked:
        picked["linkage_chance"] = float(metrics.get("linkage_chance") or 0.0)
    if "label_accuracy" in picked:
        picked["label_chance"] = float(metrics.get("label_chance") or 0.0)
    return picked


__all__ = ["ATTACK_NEEDS", "COMPONENT_ATTACKS", "DEFAULT_THREAT_MODEL", "HOLDINGS", "THREAT_MODELS", "ThreatModel",
           "metrics_for", "threat_model"]
