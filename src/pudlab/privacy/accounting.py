"""Differential-privacy accounting of a release T -> T + N(0, sigma^2 I) as a Gaussian mechanism.

epsilon(delta) of one release is exact by the analytic Gaussian mechanism (Balle & Wang 2018), with
the classic bound (Dwork & Roth 2014, Thm. A.1) for comparison; n fresh-noise releases are composed
exactly (Gaussian DP, Dong, Roth & Su 2019) and by zCDP (Bun & Steinke 2016). In a report read back
from JSON an infinite epsilon (sigma = 0) is None.

What is protected: the images only. Labels and sample ids are released in the clear, so they are
public here: neighbouring datasets differ in one sample's image, with the same label and id.
One keyed release per sigma under a secret key costs epsilon of one release however often it is
re-released (identical copies); releases at several sigmas are independent draws and compose
(:func:`multi_sigma_epsilon`); a leaked key, or noise that shares one direction across sigmas,
voids every guarantee (the noise can be removed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pudlab.errors import PudlabError
from pudlab.privacy.decline import DECLINE_SCHEMES, check_scheme, effective_sigma
from pudlab.records import Record

SENSITIVITY_KINDS = ("image", "pixel")
"""Per-sample L2 sensitivities the DP accounting reports (see :func:`l2_sensitivity`)."""


def l2_sensitivity(sample_shape: Sequence[int], kind: str, *, data_range: float = 1.0) -> float:
    """Per-sample L2 sensitivity of the release T -> T + noise under replace-one-sample neighbours.

    ``image``: any one whole image may change: the L2 diameter of [0, data_range]^d, i.e.
    ``data_range * sqrt(d)`` (28 for MNIST). ``pixel``: one feature of one sample may change by up
    to ``data_range`` (protects single pixels only).
    """
    if kind == "image":
        return data_range * math.sqrt(math.prod(int(v) for v in sample_shape))
    if kind == "pixel":
        return float(data_range)
    raise PudlabError(f"unknown sensitivity kind {kind!r}; known: {', '.join(SENSITIVITY_KINDS)}")


def gaussian_delta(epsilon: float, *, sigma: float, sensitivity: float) -> float:
    """delta(epsilon) of the Gaussian mechanism (Balle & Wang 2018, Thm. 8), mu = sensitivity / sigma:

    delta = Phi(mu/2 - epsilon/mu) - e^epsilon Phi(-mu/2 - epsilon/mu).
    """
    from scipy.special import log_ndtr

    mu = sensitivity / sigma
    first = log_ndtr(mu / 2 - epsilon / mu)
    second = epsilon + log_ndtr(-mu / 2 - epsilon / mu)
    return float(math.exp(first) * -math.expm1(min(second - first, 0.0)))


def analytic_gaussian_epsilon(*, sigma: float, sensitivity: float, delta: float) -> float:
    """Smallest epsilon with the Gaussian mechanism (sigma, sensitivity) (epsilon, delta)-DP: exact
    (analytic Gaussian mechanism, Balle & Wang 2018). ``inf`` at sigma = 0.

    >>> round(analytic_gaussian_epsilon(sigma=1.0, sensitivity=1.0, delta=1e-5), 3)
    4.377
    """
    from scipy.optimize import brentq
    from scipy.special import log_ndtr

    if not 0 < delta < 1:
        raise PudlabError(f"delta must be in (0, 1), got {delta}")
    if sensitivity < 0:
        raise PudlabError(f"sensitivity must be >= 0, got {sensitivity}")
    if sensitivity == 0:
        return 0.0
    if sigma <= 0:
        return math.inf
    mu = sensitivity / sigma
    if gaussian_delta(0.0, sigma=sigma, sensitivity=sensitivity) <= delta:
        return 0.0
    log_target = math.log(delta)

    def excess(epsilon: float) -> float:
        first = float(log_ndtr(mu / 2 - epsilon / mu))
        second = epsilon + float(log_ndtr(-mu / 2 - epsilon / mu))
        return first + math.log(-math.expm1(min(second - first, -1e-300))) - log_target

    upper = zcdp_epsilon(sigma=sigma, sensitivity=sensitivity, delta=delta) + 1.0
    return float(brentq(excess, 0.0, upper, xtol=1e-12, rtol=1e-10, maxiter=500))


def classic_gaussian_epsilon(*, sigma: float, sensitivity: float, delta: float) -> tuple[float, bool]:
    """(epsilon, valid): the classic calibration sigma = sensitivity sqrt(2 ln(1.25/delta)) / epsilon
    solved for epsilon (Dwork & Roth 2014, Thm. A.1); ``valid`` is False when epsilon >= 1, where
    that theorem does not apply."""
    if sigma <= 0:
        return math.inf, False
    epsilon = sensitivity * math.sqrt(2 * math.log(1.25 / delta)) / sigma
    return epsilon, epsilon < 1


def zcdp_epsilon(*, sigma: float, sensitivity: float, delta: float, releases: int = 1) -> float:
    """epsilon from zCDP: ``releases`` Gaussian releases are rho-zCDP with rho = releases *
    sensitivity^2 / (2 sigma^2); rho-zCDP implies (rho + 2 sqrt(rho ln(1/delta)), delta)-DP (Bun &
    Steinke 2016, Prop. 1.3). A valid upper bound, looser than the exact value."""
    if sigma <= 0:
        return math.inf
    rho = releases * sensitivity**2 / (2 * sigma**2)
    return rho + 2 * math.sqrt(rho * math.log(1 / delta))


def composed_epsilon(*, sigma: float, sensitivity: float, delta: float, releases: int, scheme: str) -> float:
    """epsilon(delta) after ``releases`` disclosures, exact (Gaussian DP):

    * ``fresh``: n Gaussian mechanisms with the same sensitivity compose to one with
      sigma / sqrt(n) (mu-GDP composes as sqrt(n) mu, Dong, Roth & Su 2019);
    * ``keyed``: re-releases at the same sigma under one secret key are copies of the first
      (post-processing): epsilon of one release. Only while the key is secret; releases at other
      sigmas are new draws (:func:`multi_sigma_epsilon`);
    * ``disjoint``: each sample is in one release only (parallel composition): epsilon of one release.
    """
    check_scheme(scheme)
    effective = sigma / math.sqrt(releases) if scheme == "fresh" else sigma
    return analytic_gaussian_epsilon(sigma=effective, sensitivity=sensitivity, delta=delta)


def multi_sigma_epsilon(sigmas: Sequence[float], *, sensitivity: float, delta: float) -> float:
    """epsilon(delta) of independent releases of the same samples at ``sigmas`` (exact, Gaussian DP).

    mu-GDP composes as sqrt(sum mu_i^2), i.e. one Gaussian release at :func:`effective_sigma`
    (sum sigma_i^-2)^-1/2; distinct sigmas under one key are such independent draws (re-releases at
    an already used sigma add nothing and should be listed once). ``inf`` if any sigma is 0.
    """
    return analytic_gaussian_epsilon(sigma=effective_sigma(list(sigmas)), sensitivity=sensitivity, delta=delta)


@dataclass(frozen=True)
class ComposedEpsilon(Record):
    """epsilon(delta) after ``n`` disclosures, per disclosure scheme, and the zCDP bound for fresh noise."""

    n: int
    fresh: float | None
    keyed: float | None
    disjoint: float | None
    fresh_zcdp_bound: float | None


@dataclass(frozen=True)
class SensitivityAccounting(Record):
    """The accounting at one per-sample L2 sensitivity."""

    sensitivity: float
    epsilon: float | None
    """Exact epsilon of one release (analytic Gaussian mechanism)."""
    epsilon_classic: float | None
    classic_valid: bool
    """Whether the classic bound's theorem applies (epsilon < 1)."""
    composition: list[ComposedEpsilon]
    """n = 1..N disclosures."""


@dataclass(frozen=True)
class DpAccounting(Record):
    """epsilon(delta) of one release and over n disclosures, per sensitivity kind."""

    delta: float
    mechanism: str
    neighbouring: str
    by_sensitivity: dict[str, SensitivityAccounting]


def _composition(sigma: float, sensitivity: float, delta: float, releases: int) -> ComposedEpsilon:
    by_scheme = {scheme: composed_epsilon(sigma=sigma, sensitivity=sensitivity, delta=delta, releases=releases,
                                          scheme=scheme) for scheme in DECLINE_SCHEMES}
    return ComposedEpsilon(releases, **by_scheme,
                           fresh_zcdp_bound=zcdp_epsilon(sigma=sigma, sensitivity=sensitivity, delta=delta,
                                                         releases=releases))


def dp_accounting(sigma: float, sample_shape: Sequence[int], *, delta: float, releases: int,
                  data_range: float = 1.0) -> DpAccounting:
    """epsilon(delta) of one release and over n = 1..``releases`` disclosures, per sensitivity kind."""
    by_sensitivity = {}
    for kind in SENSITIVITY_KINDS:
        sensitivity = l2_sensitivity(sample_shape, kind, data_range=data_range)
        classic, classic_valid = classic_gaussian_epsilon(sigma=sigma, sensitivity=sensitivity, delta=delta)
        by_sensitivity[kind] = SensitivityAccounting(
            sensitivity, analytic_gaussian_epsilon(sigma=sigma, sensitivity=sensitivity, delta=delta), classic,
            classic_valid, [_composition(sigma, sensitivity, delta, n) for n in range(1, releases + 1)])
    return DpAccounting(delta, "analytic Gaussian (Balle & Wang 2018)",
                        "replace one sample's image (labels and sample ids are public)", by_sensitivity)


__all__ = ["SENSITIVITY_KINDS", "ComposedEpsilon", "DpAccounting", "SensitivityAccounting",
           "analytic_gaussian_epsilon", "classic_gaussian_epsilon", "composed_epsilon", "dp_accounting",
           "gaussian_delta", "l2_sensitivity", "multi_sigma_epsilon", "zcdp_epsilon"]
