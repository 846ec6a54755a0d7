"""Privacy-preserving Proof-of-Learning (paper Sec. 5.3 and Fig. 7; PoL is Jia et al., "Proof-of-Learning:
Definitions and Practice", IEEE S&P 2021).

The prover trains on its private data T, records checkpoints, batch positions and every
hyper-parameter, and shares the obfuscated O(T) instead of T (:mod:`.prover`; the files
:mod:`.bundle`, their manifest :mod:`.manifest`). The verifier replays the segments with the
largest updates (and the segment before each) on O(T) and compares weights and Adam moments by F-norm
(:mod:`.verifier`, :mod:`.replay`), after the claims policy (:mod:`.policy`: hyper-parameter bounds,
initialization) and the whole-history checks of what Adam can do (:mod:`.history`). :mod:`.forgers`
are cheating provers; :mod:`.evaluation` measures honest acceptance against spoofers, model thieves
and tampered bundles over sigma (per-verdict and per-sigma records in :mod:`.evaluation_results`; the
figure in :mod:`pudlab.report.pol_figures`).

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
    "select_segments": "verifier",
    "verify_bundle": "verifier",
    "verify_status": "verifier",
    "EvaluationConfig": "evaluation",
    "evaluate_detection": "evaluation",
    "DetectionReport": "evaluation",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, {name: f".{module}" for name, module in _EXPORTS.items()})
