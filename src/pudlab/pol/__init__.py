"""Privacy-preserving Proof-of-Learning (paper Sec. 5.3 and Fig. 7; PoL is Jia et al., "Proof-of-Learning:
Definitions and Practice", IEEE S&P 2021).

The prover trains on its private data T, records checkpoints, batch positions and every
hyper-parameter, commits to the whole trajectory (a Merkle root, :mod:`.commitment`), and shares the
owner's authenticated release O(T) instead of T (:mod:`.prover`; the files :mod:`.bundle`, their
manifest :mod:`.manifest`). The verifier takes sigma from the owner's release (:mod:`.owner`), checks the
claims (:mod:`.policy`) and the whole history (:mod:`.history`), replays segments drawn from its own
secret seed plus the largest ones on O(T), compares weights and Adam moments by F-norm
(:mod:`.verifier`, :mod:`.replay`), and answers accept, reject or undecidable (:mod:`.verdict`).
:mod:`.forgers` and :mod:`.thieves` are cheating provers; :mod:`.evaluation` (attacks in
:mod:`.evaluation_attacks`) measures honest acceptance against spoofers, thieves and tampered bundles
over sigma (records in :mod:`.evaluation_results`; the figure in :mod:`pudlab.report.pol_figures`).

Names are loaded lazily, so ``import pudlab.pol`` (and the CLI) does not import torch.
"""

from __future__ import annotations

from pudlab.lazy import lazy_exports

_EXPORTS = {
    "BundleLimits": "manifest",
    "Manifest": "manifest",
    "NoiseClaim": "manifest",
    "BundleWriter": "bundle",
    "ProofBundle": "bundle",
    "TrainingState": "bundle",
    "open_bundle": "bundle",
    "reseal_bundle": "bundle",
    "ProofResult": "prover",
    "prove": "prover",
    "reshare": "prover",
    "capture_state": "replay",
    "restore_state": "replay",
    "VerifyPolicy": "policy",
    "history_checks": "history",
    "replay_state": "replay",
    "Verdict": "verifier",
    "VerifyOptions": "verifier",
    "Challenge": "verdict",
    "DriftLimit": "verdict",
    "catch_probability": "verdict",
    "release_check": "owner",
    "merkle_root": "commitment",
    "draw_segments": "verifier",
    "select_segments": "verifier",
    "verify_bundle": "verifier",
    "verify_status": "verifier",
    "EvaluationConfig": "evaluation",
    "evaluate_detection": "evaluation",
    "DetectionReport": "evaluation",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, {name: f".{module}" for name, module in _EXPORTS.items()})
