"""Audit a release file as it is, against the raw data its owner keeps (``pudlab audit``).

``pudlab privacy`` measures what a release *of this kind* would leak, drawing seeded noise of the
release's distribution; an audit answers the owner's question about *this file*: it reads the
release and its manifest (:func:`pudlab.releases.read_release`, SHA-256 checked), maps every
released sample to its raw source by sample id (labels must agree), and runs the attacks of the
privacy report on the released pixels, never adding noise:

* similarity, linkage against a raw pool, the classical and learned denoisers and label inference
  (:func:`pudlab.privacy.report.release_attacks`), on the same seeded samples ``pudlab privacy``
  attacks when the release is its dataset's T_t (``pudlab obfuscate`` releases T_t);
* privacy decline over the releases named together (:func:`decline_over_releases`): the attacker's
  inverse-variance mean of each sample's releases (independent draws), n = 1..N in the order given;
* membership inference (loss threshold, LiRA) against the model trained on the release, when one is
  given (a run directory of ``pudlab train``) or asked to be trained (M_cnn as ``pudlab privacy``
  trains it, on the release's own pixels of the members).

The result is a :class:`~pudlab.privacy.report.PrivacyReport` (one entry per release, its
``audit`` records what was checked), so ``pudlab pud --privacy-json`` and the report read it as
they read ``pudlab privacy``'s.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from pudlab.data.dataset import LabeledImages, SourceDataset, Split
from pudlab.errors import DatasetError, PudlabError
from pudlab.privacy.accounting import multi_sigma_epsilon
from pudlab.privacy.decline import DeclineRow, effective_sigma, inverse_variance_estimate
from pudlab.privacy.linkage import linkage_rate
from pudlab.privacy.membership import MembershipAudit
from pudlab.privacy.report import (
    AttackSets,
    DatasetSummary,
    PrivacyConfig,
    PrivacyReport,
    ReleaseAudit,
    SigmaPrivacy,
    attack_model,
    attack_sets,
    membership_attacks,
    release_attacks,
    sigma_entry,
    utc_now,
)
from pudlab.privacy.similarity import psnr_per_sample
from pudlab.releases import ReleaseFile, read_release

RELEASES_SCHEME = "releases"
"""The decline of an audit: the named release files combined (no simulated disclosures)."""


def raw_sources(release: ReleaseFile, raw: SourceDataset) -> LabeledImages:
    """The raw samples the release's ids name (train ids 0..N-1, test ids N + position), in the
    release's order; a DatasetError when an id is not in ``raw`` or a label disagrees."""
    parts = [raw.train] + ([raw.test] if raw.test is not None and len(raw.test) else [])
    every = LabeledImages(np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts]),
                          np.concatenate([p.ids for p in parts]))
    order = np.argsort(every.ids, kind="stable")
    ids = release.data.ids
    where = np.searchsorted(every.ids[order], ids)
    where = np.minimum(where, len(order) - 1)
    found = every.ids[order][where] == ids
    if not found.all():
        missing = ids[~found]
        raise DatasetError(f"{release.path}: {len(missing)} of its {len(ids)} sample ids are not in {raw.name} "
                           f"(e.g. id {int(missing[0])}; {raw.name} has ids 0..{int(every.ids.max())}): is --raw the "
                           "dataset the release was made from?")
    sources = every.take(order[where])
    disagree = int((sources.labels != release.data.labels).sum())
    if disagree:
        raise DatasetError(f"{release.path}: {disagree} of its {len(ids)} labels differ from {raw.name}'s at the same "
                           f"sample ids: --raw is not the dataset the release was made from (labels are released in "
                           "the clear, so they must agree)")
    return sources


def measured_noise_std(release: ReleaseFile, sources: LabeledImages) -> float:
    """Std of release - raw over the samples the release changed (0 when none changed)."""
    residual = (release.data.images.astype(np.float64) - sources.images).reshape(len(sources), -1)
    changed = np.abs(residual).max(axis=1) > 0
    return float(residual[changed].std()) if changed.any() else 0.0


@dataclass(frozen=True)
class _Audited:
    release: ReleaseFile
    sources: LabeledImages
    """The raw samples of the release, in the release's order (sorted by id)."""


def _sorted(release: ReleaseFile) -> ReleaseFile:
    order = np.argsort(release.data.ids, kind="stable")
    return release if np.all(order == np.arange(len(order))) else replace(release, data=release.data.take(order))


def _held_out(raw: SourceDataset, released_ids: np.ndarray) -> LabeledImages:
    """Raw training samples no release holds: the non-members and (without a test set) public data."""
    keep = np.flatnonzero(~np.isin(raw.train.ids, released_ids))
    if len(keep) == 0:
        raise DatasetError(f"{raw.name}: every sample was released; the audit needs raw samples left out of the "
                           "release (non-members of its model)")
    return raw.train.take(keep)


def decline_over_releases(sets: AttackSets, chain: Sequence[ReleaseFile], *, data_range: float) -> list[DeclineRow]:
    """The averaging attack over real releases: for n = 1..len(chain), each query's inverse-variance
    mean of its releases among the first n (those that hold its id; every query is in ``chain[0]``),
    scored by PSNR, RMSE and linkage against the pool."""
    rows = []
    queries = sets.queries
    for n in range(1, len(chain) + 1):
        estimate = np.empty(queries.images.shape, dtype=np.float32)
        for index, sample_id in enumerate(queries.ids):
            holders = [(r.data.images[pos], r.sigma) for r in chain[:n]
                       if (pos := int(np.searchsorted(r.data.ids, sample_id))) < len(r.data)
                       and r.data.ids[pos] == sample_id]
            estimate[index] = inverse_variance_estimate([image for image, _ in holders], [s for _, s in holders])
        diff = estimate.astype(np.float64) - queries.images
        linkage = linkage_rate(estimate, queries.ids, sets.pool, sets.pool_ids)
        rows.append(DeclineRow(n, float(psnr_per_sample(queries.images, estimate, data_range=data_range).mean()),
                               float(math.sqrt(np.mean(diff * diff))), 1.0, linkage, linkage))
    return rows


def _distinct_draws(chain: Sequence[ReleaseFile]) -> list[float]:
    """The sigmas of independent draws among ``chain``: one per (key, sigma) (a re-release under
    the same key at the same sigma is a copy)."""
    seen: dict[tuple[str | None, float], float] = {}
    for release in chain:
        key = (release.key_id, release.sigma) if release.key_id is not None else (str(release.path), release.sigma)
        seen.setdefault(key, release.sigma)
    return list(seen.values())


def _load_target(model_path: str, device: str) -> tuple[Any, Any, Any, dict[str, Any]]:
    """(module, model definition, training config, run.json) of a ``pudlab train`` run dir (or its weights)."""
    from pudlab.io import RUN_FILE, load_weights, read_json
    from pudlab.model import build_model, model_from_dict
    from pudlab.train.trainer import TrainConfig

    target = Path(model_path)
    folder = target if target.is_dir() else target.parent
    if not (folder / RUN_FILE).is_file():
        raise PudlabError(f"--model {model_path}: no {RUN_FILE} there; give the run directory `pudlab train` wrote "
                          "(its run.json names the model and the training recipe the attack's shadows copy)")
    record = read_json(folder / RUN_FILE)
    try:
        definition = model_from_dict(record["model"])
        train_config = TrainConfig.from_dict(record["training"])
    except (KeyError, TypeError) as exc:
        raise PudlabError(f"{folder / RUN_FILE}: no model or training section ({exc})") from None
    module = build_model(definition, load_weights(target)).to(device)
    return module, definition, train_config, record


# long: one pass per release: read, map, attack, decline, membership, then the report
def audit_release(
    releases: Sequence[str | Path],
    raw: SourceDataset,
    config: PrivacyConfig | None = None,
    *,
    model: str | Path | None = None,
    train_model: bool = False,
    device: str = "cpu",
    log: Callable[[str], None] | None = None,
) -> PrivacyReport:
    """Audit each release file against ``raw`` (the dataset it was made from); see the module docstring.

    ``releases``: one or more ``pudlab obfuscate`` outputs; all of them are audited (one report
    entry each) and combined in each one's privacy decline (that release first, then the others in
    the order given). ``model``: a ``pudlab train`` run dir trained on the (first) release: attacked
    by membership inference; ``train_model``: train the attack's model on the release instead.
    ``config``: the attack sizes (as ``pudlab privacy``; its noise and split seeds play no part).
    """
    import torch

    from pudlab import __version__
    from pudlab.privacy.accounting import dp_accounting, l2_sensitivity
    from pudlab.train.trainer import environment

    config = config or PrivacyConfig()
    if not releases:
        raise PudlabError("audit: name at least one release file")
    if model is not None and train_model:
        raise PudlabError("audit: give --model (the model trained on the release) or --train-model, not both")
    started = time.perf_counter()
    files = [_sorted(read_release(path)) for path in releases]
    audited = [_Audited(release, raw_sources(release, raw)) for release in files]
    released_ids = np.unique(np.concatenate([item.release.data.ids for item in audited]))
    held_out = _held_out(raw, released_ids)
    public = raw.test if raw.test is not None and len(raw.test) > 0 else held_out
    target = _load_target(str(model), device) if model is not None else None
    entries, audits = [], []
    for index, item in enumerate(audited):
        release = item.release
        chain = [release] + [other.release for j, other in enumerate(audited) if j != index]
        run_config = replace(config, clip=release.clip)
        sets = attack_sets(Split(item.sources, held_out, -1, 0.0), raw.train, public, run_config)
        sigma = release.sigma
        attacks = release_attacks(sigma, sets, release.data.images[sets.query_positions], run_config, device,
                                  raw.num_classes)
        tick = time.perf_counter()
        decline = {RELEASES_SCHEME: decline_over_releases(sets, chain, data_range=config.data_range)}
        dp = dp_accounting(sigma, release.data.sample_shape, delta=config.delta, releases=1,
                           data_range=config.data_range)
        seconds = {"decline_dp": time.perf_counter() - tick}
        tick = time.perf_counter()
        membership, lira, model_label = _membership(index, sigma, sets, release, run_config, device, raw.num_classes,
                                                    target, train_model, str(model) if model else None)
        seconds["membership"] = time.perf_counter() - tick - (lira.seconds if lira is not None else 0.0)
        if lira is not None:
            seconds["lira"] = lira.seconds
        entries.append(sigma_entry(sigma, attacks, decline, dp, membership, lira, seconds))
        draws = _distinct_draws(chain)
        image_sensitivity = l2_sensitivity(release.data.sample_shape, "image", data_range=config.data_range)
        combined = (multi_sigma_epsilon(draws, sensitivity=image_sensitivity, delta=config.delta)
                    if min(draws) > 0 else math.inf)
        audits.append(ReleaseAudit(
            str(release.path), str(release.manifest_file), sigma, release.key_id, len(release.data),
            int(release.manifest.get("num_obfuscated", len(release.data))), True, raw.name, raw.fingerprint,
            len(item.sources), measured_noise_std(release, item.sources), len(held_out),
            [str(other.path) for other in chain[1:]], effective_sigma(draws), combined, model_label))
        if log is not None:
            log(f"{release.path.name}: sigma {sigma:g}, done in {sum(entries[-1].seconds.values()):.1f} s")
    first = audited[0].release
    dataset = DatasetSummary(raw.name, f"{raw.description}: audit of {', '.join(a.release.path.name for a in audited)}",
                             raw.fingerprint, list(first.data.sample_shape), len(first.data), len(held_out))
    return PrivacyReport(__version__, dataset, replace(config, disclosures=len(audited)),
                         environment(torch.device(device)), entries, time.perf_counter() - started, audit=audits,
                         created=utc_now())


def _membership(index: int, sigma: float, sets: AttackSets, release: ReleaseFile, config: PrivacyConfig, device: str,
                num_classes: int, target: tuple[Any, Any, Any, dict[str, Any]] | None, train_model: bool,
                model_path: str | None) -> tuple[MembershipAudit | None, Any, str | None]:
    """The membership attacks of release ``index``: on the given model (the first release's), or on
    one trained on the release's own pixels of the members; (None, None, None) when neither."""
    if target is not None and index == 0:
        module, definition, train_config, record = target
        trained_on = record.get("sample", {}).get("size")
        seen_as = f"the model of {model_path} (trained on {trained_on} samples of the release); attacked with the " \
                  "members' raw images"
        membership, lira = attack_model(module, sigma, sets, config, device, num_classes, model_config=definition,
                                        train_config=train_config, train_seconds=float(record.get("wall_seconds", 0.0)),
                                        seen_as=seen_as)
        if isinstance(trained_on, int) and trained_on < len(release.data):
            note = (f"the model was trained on {trained_on} of the release's {len(release.data)} samples: members it "
                    "never saw dilute the attack (a lower bound on what it leaks)")
            membership = replace(membership, warning="; ".join(filter(None, [membership.warning, note])))
        return membership, lira, model_path
    if train_model and config.membership:
        released_members = release.data.take(sets.member_positions)
        membership, lira = membership_attacks(sigma, sets, released_members, config, device, num_classes,
                                              seen_as="the release's own pixels of the members (trained by the "
                                                      "audit); attacked with their raw images")
        return membership, lira, "trained by the audit (M_cnn on the members as released)"
    return None, None, None


def audit_entries(report: PrivacyReport) -> list[tuple[SigmaPrivacy, ReleaseAudit]]:
    """Each entry of an audit report with what the audit checked for it."""
    if report.audit is None:
        raise PudlabError("not an audit report (no 'audit' section): it came from pudlab privacy")
    return list(zip(report.entries, report.audit, strict=True))


__all__ = ["RELEASES_SCHEME", "audit_entries", "audit_release", "decline_over_releases", "measured_noise_std",
           "raw_sources"]
