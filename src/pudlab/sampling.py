"""The S-X-Y-Z sampling settings of the paper (Sec. 4.1.2, after Li et al. 2021, NIID-Bench).

* X, label degree: the sample covers ``ceil(C*X)`` of the C labels.
* Y, label overlap: it shares ``ceil(C*X*Y)`` labels with its counterpart (the reference).
* Z, sampling ratio: for each covered label, ``floor(Z * n_label)`` of that label's entries in
  T_t are drawn without replacement (floor, so that two disjoint draws at Z = 0.5 always fit).

Label sets are contiguous windows (mod C). The reference window starts at ``window_start``
(default 0). A counterpart with overlap Y keeps the LAST ``ceil(C*X*Y)`` labels of the reference
window and continues upward from there: reference 0-4, Y = 0.4 gives 3-7, Y = 0.2 gives 4-8.

Draws are keyed: the entries drawn for label ``l`` come from the stream ``(seed, "sample", l)``,
so a draw does not depend on which other labels are covered. ``exclude`` removes entries (e.g. an
earlier draw) before drawing. A recipe's ``disjoint_from`` names earlier recipes whose entries it
must avoid: the ``disjoint`` redraws of Exp-3 and the own draws of Exp-4 / Exp-5, which avoid the
reference's entries on the labels they share with it. Two draws with different seeds are
independent; two draws with one seed from one pool are prefixes of one stream (nested), so every
own draw gets its own seed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pudlab.errors import SamplingError
from pudlab.seeding import derive_rng

_SETTING_RE = re.compile(r"^S-([0-9.]+)-([0-9.]+)-([0-9.]+)$")
_EPS = 1e-9


def _ceil(value: float) -> int:
    """ceil() that ignores float noise (10 * 0.5 * 0.4 is 2, not 3)."""
    return int(math.ceil(value - _EPS))


@dataclass(frozen=True)
class SamplingSetting:
    """An S-X-Y-Z setting."""

    label_degree: float
    """X in (0, 1]: fraction of the C labels covered."""
    label_overlap: float
    """Y in [0, 1]: fraction of the covered labels shared with the counterpart."""
    sampling_ratio: float
    """Z in (0, 1]: fraction of each covered label's entries drawn."""

    def __post_init__(self) -> None:
        if not 0.0 < self.label_degree <= 1.0:
            raise SamplingError(f"label degree X must be in (0, 1], got {self.label_degree}")
        if not 0.0 <= self.label_overlap <= 1.0:
            raise SamplingError(f"label overlap Y must be in [0, 1], got {self.label_overlap}")
        if not 0.0 < self.sampling_ratio <= 1.0:
            raise SamplingError(f"sampling ratio Z must be in (0, 1], got {self.sampling_ratio}")

    @classmethod
    def parse(cls, text: str) -> SamplingSetting:
        """Parse ``"S-X-Y-Z"``, e.g. ``"S-0.5-0.4-0.5"``.

        >>> SamplingSetting.parse("S-0.5-0.4-0.5").label_overlap
        0.4
        """
        match = _SETTING_RE.match(text.strip())
        if match is None:
            raise SamplingError(f"sampling setting {text!r}: expected the form S-X-Y-Z, e.g. S-1-1-0.5")
        try:
            x, y, z = (float(group) for group in match.groups())
        except ValueError as exc:
            raise SamplingError(f"sampling setting {text!r}: X, Y, Z must be numbers") from exc
        return cls(x, y, z)

    def __str__(self) -> str:
        return f"S-{self.label_degree:g}-{self.label_overlap:g}-{self.sampling_ratio:g}"

    def num_labels(self, num_classes: int) -> int:
        """ceil(C*X): how many labels the sample covers."""
        return _ceil(num_classes * self.label_degree)

    def num_shared(self, num_classes: int) -> int:
        """ceil(C*X*Y): how many labels it shares with its counterpart."""
        return _ceil(num_classes * self.label_degree * self.label_overlap)


def label_window(
    setting: SamplingSetting,
    num_classes: int,
    *,
    reference_labels: Sequence[int] | None = None,
    window_start: int = 0,
) -> tuple[int, ...]:
    """The labels a sample with ``setting`` covers (the window rule of the module docstring).

    Without ``reference_labels`` this is the reference window ``window_start ..``; with them, the
    window keeps the last ``ceil(C*X*Y)`` reference labels and continues upward (mod C).

    >>> label_window(SamplingSetting(0.5, 0.4, 0.5), 10, reference_labels=(0, 1, 2, 3, 4))
    (3, 4, 5, 6, 7)
    """
    count = setting.num_labels(num_classes)
    if reference_labels is None:
        start = window_start % num_classes
    else:
        reference = list(reference_labels)
        shared = min(setting.num_shared(num_classes), len(reference), count)
        if shared == 0:
            start = (reference[-1] + 1) % num_classes if reference else window_start
        else:
            start = reference[len(reference) - shared]
    return tuple((start + offset) % num_classes for offset in range(count))


def draw_sample(
    labels: np.ndarray,
    covered_labels: Sequence[int],
    sampling_ratio: float,
    *,
    seed: int,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """Positions (sorted) of a sample of ``floor(Z * n_l)`` entries per covered label ``l``.

    ``labels`` are the labels of the pool (T_t); ``n_l`` counts label ``l`` in the whole pool.
    ``exclude`` (positions) are not eligible: the draw is disjoint from them. Raises
    :class:`SamplingError` when a label has too few eligible entries left.
    """
    if not 0.0 < sampling_ratio <= 1.0:
        raise SamplingError(f"sampling ratio Z must be in (0, 1], got {sampling_ratio}")
    if len(set(covered_labels)) != len(covered_labels):
        raise SamplingError(f"covered labels repeat: {list(covered_labels)}")
    eligible = np.ones(len(labels), dtype=bool)
    if exclude is not None and len(exclude):
        eligible[np.asarray(exclude, dtype=np.int64)] = False
    chosen: list[np.ndarray] = []
    for label in covered_labels:
        of_label = np.flatnonzero(labels == label)
        wanted = int(math.floor(sampling_ratio * len(of_label) + _EPS))
        if len(of_label) == 0:
            raise SamplingError(f"label {label} does not occur in the pool")
        candidates = of_label[eligible[of_label]]
        if wanted > len(candidates):
            raise SamplingError(
                f"label {label}: need {wanted} entries (Z={sampling_ratio:g} of {len(of_label)}) but only "
                f"{len(candidates)} are left after excluding earlier draws; lower Z or drop 'disjoint'"
            )
        order = derive_rng(seed, "sample", int(label)).permutation(len(candidates))
        chosen.append(candidates[order[:wanted]])
    if not chosen:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def subsample(positions: np.ndarray, fraction: float, *, seed: int) -> np.ndarray:
    """A random ``round(fraction * len)`` subset of ``positions`` (sorted): Exp-2's nested sets."""
    if not 0.0 < fraction <= 1.0:
        raise SamplingError(f"nested fraction must be in (0, 1], got {fraction}")
    positions = np.asarray(positions, dtype=np.int64)
    keep = int(round(fraction * len(positions)))
    order = derive_rng(seed, "subsample").permutation(len(positions))
    return np.sort(positions[order[:keep]])


@dataclass(frozen=True)
class SampleRecipe:
    """Everything that determines one sample of T_t: recorded in manifests and job keys."""

    setting: SamplingSetting
    labels: tuple[int, ...]
    seed: int
    exclude_seeds: tuple[int, ...] = ()
    """Seeds of earlier draws (same labels and Z) this one must be disjoint from."""
    nested_fraction: float | None = None
    """If set: a random fraction of the sample drawn with ``seed``, using ``nested_seed``."""
    nested_seed: int = 0
    disjoint_from: tuple[SampleRecipe, ...] = ()
    """Earlier draws (any setting and labels) whose entries this one avoids."""

    def to_dict(self) -> dict:
        data = {
            "setting": str(self.setting),
            "labels": list(self.labels),
            "seed": self.seed,
            "exclude_seeds": list(self.exclude_seeds),
            "nested_fraction": self.nested_fraction,
            "nested_seed": self.nested_seed,
        }
        if self.disjoint_from:  # only when used, so that the keys of recipes without it stay as they were
            data["disjoint_from"] = [recipe.to_dict() for recipe in self.disjoint_from]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> SampleRecipe:
        return cls(
            SamplingSetting.parse(data["setting"]),
            tuple(int(label) for label in data["labels"]),
            int(data["seed"]),
            tuple(int(s) for s in data.get("exclude_seeds", ())),
            data.get("nested_fraction"),
            int(data.get("nested_seed", 0)),
            tuple(cls.from_dict(item) for item in data.get("disjoint_from", ())),
        )


def draw_recipe(pool_labels: np.ndarray, recipe: SampleRecipe) -> np.ndarray:
    """Positions in the pool of the sample a :class:`SampleRecipe` describes."""
    excluded: np.ndarray | None = None
    for earlier in recipe.disjoint_from:
        positions = draw_recipe(pool_labels, earlier)
        excluded = positions if excluded is None else np.concatenate([excluded, positions])
    for earlier_seed in recipe.exclude_seeds:
        drawn = draw_sample(
            pool_labels, recipe.labels, recipe.setting.sampling_ratio, seed=earlier_seed, exclude=excluded
        )
        excluded = drawn if excluded is None else np.concatenate([excluded, drawn])
    positions = draw_sample(
        pool_labels, recipe.labels, recipe.setting.sampling_ratio, seed=recipe.seed, exclude=excluded
    )
    if recipe.nested_fraction is not None:
        positions = subsample(positions, recipe.nested_fraction, seed=recipe.nested_seed)
    return positions


def parse_labels(text: str, num_classes: int = 10) -> tuple[int, ...]:
    """Parse an explicit label list ``"0,1,2"`` or a range ``"3-7"``."""
    text = text.strip()
    try:
        if re.fullmatch(r"\d+-\d+", text):
            low, high = (int(part) for part in text.split("-"))
            labels = tuple(range(low, high + 1))
        else:
            labels = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise SamplingError(f"labels {text!r}: expected a list like 0,1,2 or a range like 3-7") from exc
    if not labels:
        raise SamplingError("labels: the list is empty")
    bad = [label for label in labels if not 0 <= label < num_classes]
    if bad:
        raise SamplingError(f"labels {text!r}: {bad} outside 0..{num_classes - 1}")
    if len(set(labels)) != len(labels):
        raise SamplingError(f"labels {text!r}: a label repeats")
    return labels
