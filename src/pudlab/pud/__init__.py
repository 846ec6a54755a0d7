"""The PUD triangle: Privacy, Utility and Distinguishability per sigma, and choosing sigma.

* :mod:`~pudlab.pud.scores`: the normalizations to [0, 1] and :func:`pud_points` (pure maths);
* :mod:`~pudlab.pud.profiles`: application profiles (TOML) and :func:`recommend`;
* :mod:`~pudlab.pud.json_inputs`: points from the ``pudlab pud --from-json`` format and privacy reports;
* :mod:`~pudlab.pud.store_inputs`: the same inputs from a sweep store (imported on its own: it
  needs the store, hence torch).

The figures are in :mod:`pudlab.report.privacy_figures`.
"""

from pudlab.pud.json_inputs import points_from_json, privacy_from_report
from pudlab.pud.profiles import (
    OBJECTIVE_SENSES,
    TIE_BREAKS,
    Constraint,
    Profile,
    Recommendation,
    builtin_profiles,
    load_profile,
    parse_profile,
    recommend,
)
from pudlab.pud.scores import (
    AXES,
    AXIS_LETTERS,
    COMBINE_RULES,
    PRIVACY_COMPONENTS,
    SIGMA_TOLERANCE,
    PudPoint,
    delta_score,
    privacy_components,
    privacy_score,
    pud_points,
    select_points,
    separability_score,
    utility_score,
)

__all__ = [
    "AXES",
    "AXIS_LETTERS",
    "COMBINE_RULES",
    "OBJECTIVE_SENSES",
    "PRIVACY_COMPONENTS",
    "SIGMA_TOLERANCE",
    "TIE_BREAKS",
    "Constraint",
    "Profile",
    "PudPoint",
    "Recommendation",
    "builtin_profiles",
    "delta_score",
    "load_profile",
    "parse_profile",
    "points_from_json",
    "privacy_components",
    "privacy_from_report",
    "privacy_score",
    "pud_points",
    "recommend",
    "select_points",
    "separability_score",
    "utility_score",
]
