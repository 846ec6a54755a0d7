"""Privacy-preserving Proof-of-Learning (paper Sec. 5.3 and Fig. 7; PoL is Jia et al., "Proof-of-Learning:
Definitions and Practice", IEEE S&P 2021).

The prover trains on its private data T, records checkpoints, batch positions and every
hyper-parameter, and shares the obfuscated O(T) instead of T (:mod:`.prover`, :mod:`.bundle`).
The verifier replays the segments with the largest updates on O(T) and compares by F-norm
(:mod:`.verifier`). :mod:`.attacks` measures honest acceptance against spoofers, model thieves and
tampered bundles over sigma; :mod:`.roc` holds the pure detection scores.

Names are loaded lazily, so ``import pudlab.pol`` (and the CLI) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BundleLimits": "bundle",
    "BundleWriter": "bundle",
    "NoiseClaim": "bundle",
    "ProofBundle": "bundle",
    "TrainingState": "bundle",
    "open_bundle": "bundle",
    "reseal_bundle": "bundle",
    "ProofResult": "prover",
    "prove": "prover",
    "reshare": "prover",
    "capture_state": "replay",
    "replay_segment": "replay",
    "restore_state": "replay",
    "Verdict": "verifier",
    "VerifyOptions": "verifier",
    "select_segments": "verifier",
    "verify_bundle": "verifier",
    "EvaluationConfig": "attacks",
    "evaluate": "attacks",
    "roc_auc": "roc",
    "tpr_at_fpr": "roc",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pudlab.pol' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
