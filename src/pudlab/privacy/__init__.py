"""Privacy of an obfuscated dataset T' = O(T; sigma) against its raw T: attacks and accounting.

The paper (Yu et al., Sec. 5) leaves Privacy qualitative; this package measures it, one module per
attack family, each a set of pure functions over arrays; :func:`privacy_report` runs them all on a
dataset (the ``pudlab privacy`` command). Formulas, defaults and assumptions are in ``docs/privacy.md``.

* :mod:`~pudlab.privacy.similarity`: PSNR (dB) and SSIM (scikit-image, Wang et al. 2004) of each
  released sample to its source, ``data_range`` given explicitly (the raw pixel scale, 1.0).
* :mod:`~pudlab.privacy.linkage`: re-identification, the fraction of released samples whose
  L2-nearest raw sample in a candidate pool (the source plus many others) is their own source.
* :mod:`~pudlab.privacy.denoising`: Gaussian filter, total variation and non-local means scaled by
  the known sigma; the best PSNR/SSIM an attacker recovers and the linkage after denoising.
* :mod:`~pudlab.privacy.decline`: the averaging attack over n = 1..N disclosures (Sec. 5.1) of fresh,
  keyed and disjoint noise.
* :mod:`~pudlab.privacy.membership`: the loss-threshold attack (Yeom et al. 2018) against a model
  trained on T'.
* :mod:`~pudlab.privacy.accounting`: epsilon(delta) of one release as a Gaussian mechanism (exact,
  Balle & Wang 2018) and over n releases (Gaussian DP; zCDP bound).
* :mod:`~pudlab.privacy.report`: :class:`PrivacyConfig`, :func:`privacy_report` and its typed result
  :class:`PrivacyReport` (``to_dict``/``from_dict`` = the JSON on disk).
"""

from pudlab.privacy.accounting import (
    SENSITIVITY_KINDS,
    ComposedEpsilon,
    DpAccounting,
    SensitivityAccounting,
    analytic_gaussian_epsilon,
    classic_gaussian_epsilon,
    composed_epsilon,
    dp_accounting,
    gaussian_delta,
    l2_sensitivity,
    zcdp_epsilon,
)
from pudlab.privacy.decline import DECLINE_SCHEMES, DeclineRow, averaging_attack, disclosure_seed
from pudlab.privacy.denoising import (
    DENOISERS,
    BestScores,
    DenoiseGrid,
    DenoiserScores,
    DenoisingResult,
    ImageScores,
    denoise,
    denoising_attack,
)
from pudlab.privacy.linkage import LinkageSummary, linkage_hits, linkage_rate, nearest_indices
from pudlab.privacy.membership import (
    MembershipAudit,
    MembershipResult,
    loss_threshold_attack,
    membership_inference,
    per_sample_losses,
)
from pudlab.privacy.report import (
    DatasetSummary,
    PrivacyConfig,
    PrivacyReport,
    PudPrivacyInputs,
    SigmaPrivacy,
    privacy_report,
    pud_privacy_by_sigma,
)
from pudlab.privacy.similarity import (
    PSNR_CAP_DB,
    SimilaritySummary,
    psnr_per_sample,
    ssim_per_sample,
)

__all__ = [
    "DECLINE_SCHEMES",
    "DENOISERS",
    "PSNR_CAP_DB",
    "SENSITIVITY_KINDS",
    "BestScores",
    "ComposedEpsilon",
    "DatasetSummary",
    "DeclineRow",
    "DenoiseGrid",
    "DenoiserScores",
    "DenoisingResult",
    "DpAccounting",
    "ImageScores",
    "LinkageSummary",
    "MembershipAudit",
    "MembershipResult",
    "PrivacyConfig",
    "PrivacyReport",
    "PudPrivacyInputs",
    "SensitivityAccounting",
    "SigmaPrivacy",
    "SimilaritySummary",
    "analytic_gaussian_epsilon",
    "averaging_attack",
    "classic_gaussian_epsilon",
    "composed_epsilon",
    "denoise",
    "denoising_attack",
    "disclosure_seed",
    "dp_accounting",
    "gaussian_delta",
    "l2_sensitivity",
    "linkage_hits",
    "linkage_rate",
    "loss_threshold_attack",
    "membership_inference",
    "nearest_indices",
    "per_sample_losses",
    "privacy_report",
    "psnr_per_sample",
    "pud_privacy_by_sigma",
    "ssim_per_sample",
    "zcdp_epsilon",
]
