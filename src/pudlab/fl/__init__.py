"""Federated learning among edge devices (paper Sec. 5.3): Multi-Krum aggregation (Blanchard et al.,
NeurIPS 2017), Proof-of-Learning challenges on obfuscated data (Jia et al., IEEE S&P 2021, through
:mod:`pudlab.pol`), and Byzantine / free-riding / lazy clients, in a deterministic, resumable
simulation. Imports flow one way, top to bottom:

* :mod:`.spec`: the simulation spec as frozen dataclasses; :mod:`.spec_reader`: the TOML file,
  validated, overridable (``load_spec``);
* :mod:`.aggregation`: FedAvg, Krum, Multi-Krum as pure functions (exact float64 distances);
* :mod:`.adversaries`: what misbehaving clients submit;
* :mod:`.partition`: each client's local data;
* :mod:`.records`: the types a round passes around and the round record it stores;
* :mod:`.challenge`: the PoL challenge (prover / verifier adapter, forged answers);
* :mod:`.clients`: local training and the client roles' submissions;
* :mod:`.rounds`: one round (collect, challenge, aggregate, evaluate);
* :mod:`.store`: the on-disk layout of a simulation (progress, round records, resume);
* :mod:`.simulation`: ``run_simulation``, the loop over rounds and defences, the challenger's utility;
* :mod:`.summary`: detection numbers from the records.

The report of a simulation (markdown, HTML, figures) is :mod:`pudlab.report.fl_document` and
:mod:`pudlab.report.fl_figures`; the command line is :mod:`pudlab.cli.fl` (``pudlab fl``). Names are
loaded lazily (``import pudlab.fl`` does not import torch).
"""

from __future__ import annotations

from pudlab.lazy import lazy_exports

_EXPORTS = {
    "AggregationResult": "aggregation",
    "KrumParameterError": "aggregation",
    "aggregate": "aggregation",
    "fedavg": "aggregation",
    "krum": "aggregation",
    "multi_krum": "aggregation",
    "pairwise_squared_distances": "aggregation",
    "SimulationSpec": "spec",
    "load_spec": "spec_reader",
    "spec_from_dict": "spec_reader",
    "ChallengeOutcome": "records",
    "RoundRecord": "records",
    "SimulationStore": "store",
    "Simulation": "simulation",
    "run_simulation": "simulation",
    "pol_challenge": "challenge",
    "DetectionSummary": "summary",
    "detection_summary": "summary",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, {name: f".{module}" for name, module in _EXPORTS.items()})
