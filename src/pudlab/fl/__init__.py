"""Federated learning among edge devices (paper Sec. 5.3): Multi-Krum aggregation (Blanchard et al.,
NeurIPS 2017), Proof-of-Learning challenges on obfuscated data (Jia et al., IEEE S&P 2021, through
:mod:`pudlab.pol`), and Byzantine / free-riding / lazy clients, in a deterministic, resumable
simulation.

* :mod:`.aggregation`: FedAvg, Krum, Multi-Krum as pure functions (exact float64 distances);
* :mod:`.spec`: the TOML simulation spec, validated, overridable;
* :mod:`.adversaries`: what misbehaving clients submit;
* :mod:`.challenge`: the PoL challenge (prover / verifier adapter, forged answers);
* :mod:`.simulation`: clients, rounds, defences, the store and resume;
* :mod:`.report`: markdown section and figures; :mod:`.cli`: ``pudlab fl``.

Names are loaded lazily (``import pudlab.fl`` does not import matplotlib).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AggregationResult": "aggregation",
    "KrumParameterError": "aggregation",
    "aggregate": "aggregation",
    "fedavg": "aggregation",
    "krum": "aggregation",
    "multi_krum": "aggregation",
    "pairwise_squared_distances": "aggregation",
    "SimulationSpec": "spec",
    "load_spec": "spec",
    "spec_from_dict": "spec",
    "shipped_specs": "spec",
    "Simulation": "simulation",
    "run_simulation": "simulation",
    "pol_challenge": "challenge",
    "write_report": "report",
    "report_section": "report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pudlab.fl' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
