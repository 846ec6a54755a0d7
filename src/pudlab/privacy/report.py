"""``pudlab privacy``: every attack on one dataset at each sigma, as a typed :class:`PrivacyReport`.

The attacked data is O(T_t; sigma) with the same noise distribution as a ``pudlab obfuscate``
release, drawn from the seeded internal noise (``PrivacyConfig.noise_seed``) so that measurements
are reproducible; no attack uses the seed. T_e serves as the membership attack's non-members. ``PrivacyReport.to_dict``
is the JSON written to disk (``privacy.json``, ``<store>/privacy/<dataset>.json``) and
``PrivacyReport.from_dict`` reads it back; with the file's non-finite numbers stored as null, an
infinite epsilon (sigma = 0) reads back as None.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Self

import numpy as np

from pudlab.data.dataset import LabeledImages, SourceDataset, Split, split_train_eval
from pudlab.errors import PudlabError, SpecError
from pudlab.privacy.accounting import DpAccounting, dp_accounting
from pudlab.privacy.config import PrivacyConfig
from pudlab.privacy.decline import DECLINE_SCHEMES, DeclineRow, averaging_attack
from pudlab.privacy.denoising import DenoisingResult, denoising_attack
from pudlab.privacy.learned import LearnedDenoising, learned_attacks
from pudlab.privacy.linkage import LinkageSummary, linkage_rate
from pudlab.privacy.lira import LiraResult, lira_at
from pudlab.privacy.membership import MembershipAudit, membership_inference, near_chance_warning
from pudlab.privacy.similarity import SimilaritySummary
from pudlab.privacy.threats import ATTACK_NEEDS, THREAT_MODELS
from pudlab.records import Record, record_from_dict, require_mapping
from pudlab.seeding import derive_rng, derive_seed

REPORT_KIND = "pudlab.privacy_report"
"""The ``kind`` of a privacy report's JSON."""


@dataclass(frozen=True)
class PudPrivacyInputs(Record):
    """The attack results :func:`pudlab.pud.scores.privacy_score` turns into Privacy (the P axis);
    :func:`pudlab.privacy.threats.metrics_for` picks those a threat model allows."""

    linkage: float
    """Worst-case linkage rate: the release's or any denoiser's (classical or learned), whichever is higher."""
    linkage_chance: float
    best_ssim: float
    """Best mean SSIM an attacker gets (release, classical or learned denoiser)."""
    mia_auc: float | None
    """Loss-threshold membership-attack AUC (None when it did not run)."""
    release_ssim: float | None = None
    """Best mean SSIM with the release alone (release or classical denoisers)."""
    label_accuracy: float | None = None
    """Label-inference accuracy of an attacker with public data (None when it did not run)."""
    label_chance: float | None = None
    lira_auc: float | None = None
    """LiRA's AUC, the better of offline and online (None when it did not run)."""

    @classmethod
    def from_attacks(cls, similarity: SimilaritySummary, linkage: LinkageSummary, denoising: DenoisingResult,
                     membership: MembershipAudit | None, learned: LearnedDenoising | None = None,
                     lira: LiraResult | None = None) -> PudPrivacyInputs:
        release_ssim = max(similarity.ssim_mean, denoising.best.ssim)
        linkages = [linkage.rate, denoising.best.linkage or 0.0]
        labels = learned.label_inference if learned is not None else None
        if learned is not None and learned.linkage is not None:
            linkages.append(learned.linkage)
        return cls(max(linkages), linkage.chance, max(release_ssim, learned.ssim if learned else 0.0),
                   membership.attack.auc if membership is not None else None, release_ssim,
                   labels.accuracy if labels else None, labels.chance if labels else None,
                   lira.auc if lira is not None else None)

    @classmethod
    def from_dict(cls, data: object, *, where: str | None = None) -> Self:
        inputs = super().from_dict(data, where=where)
        if inputs.release_ssim is None:  # a report from before threat models: its best SSIM was classical
            inputs = replace(inputs, release_ssim=inputs.best_ssim)
        return inputs


@dataclass(frozen=True)
class SigmaPrivacy(Record):
    """Every attack's result at one sigma."""

    sigma: float
    similarity: SimilaritySummary
    linkage: LinkageSummary
    denoising: DenoisingResult
    decline: dict[str, list[DeclineRow]]
    """Disclosure scheme (:data:`pudlab.privacy.decline.DECLINE_SCHEMES`) -> one row per n = 1..N."""
    dp: DpAccounting
    pud_privacy: PudPrivacyInputs
    seconds: dict[str, float]
    """Wall time of each stage."""
    membership: MembershipAudit | None = None
    """None when the membership attack was off (the JSON then has no ``membership``)."""
    learned: LearnedDenoising | None = None
    """The public-data attacks (learned denoiser, label inference); None when off."""
    lira: LiraResult | None = None
    """LiRA; None when off."""

    OMIT_NONE = ("membership", "learned", "lira")
    DERIVED = ("threat_models",)

    @property
    def threat_models(self) -> dict[str, Any]:
        """Every attack's needs and the threat models (written with each entry, for its reader)."""
        return {"attacks": dict(ATTACK_NEEDS), "models": dict(THREAT_MODELS)}


@dataclass(frozen=True)
class DatasetSummary(Record):
    """The attacked dataset, as the report names it."""

    name: str
    description: str
    fingerprint: str
    sample_shape: list[int]
    train_size: int
    """Size of T_t (the released split)."""
    eval_size: int


@dataclass(frozen=True)
class ReleaseAudit(Record):
    """What ``pudlab audit`` checked about one release file before attacking it (one per entry)."""

    file: str
    manifest: str
    sigma: float
    """The noise std the manifest declares."""
    key_id: str | None
    samples: int
    obfuscated_samples: int
    """Samples the manifest says were noised (R N)."""
    hashes_verified: bool
    """The manifest's SHA-256 of x, y and ids match the file."""
    raw_dataset: str
    raw_fingerprint: str
    matched: int
    """Released samples mapped to a raw sample by id (with the same label): all of them."""
    measured_noise_std: float
    """Std of release - raw over the changed samples: about sigma for unclipped noise."""
    held_out: int
    """Raw samples in no release: the membership attack's non-members (and public data without a test set)."""
    combined_with: list[str]
    """The other releases of the privacy decline, in order (n = 2, 3, ...)."""
    effective_sigma: float
    """(sum sigma_i^-2)^-1/2 over the independent draws among the releases combined."""
    combined_epsilon_image: float | None
    """epsilon(delta) of those releases together, image-level sensitivity (None: infinite)."""
    model: str | None = None
    """The model the membership attack ran on (a run directory, or trained by the audit); None: not run."""


@dataclass(frozen=True)
class PrivacyReport(Record):
    """What :func:`privacy_report` returns: the configuration, the environment, one entry per sigma."""

    version: str
    """The pudlab version that measured it."""
    dataset: DatasetSummary
    config: PrivacyConfig
    environment: dict[str, Any]
    entries: list[SigmaPrivacy]
    """One per sigma, in the order asked for (``sigmas`` in the JSON)."""
    wall_seconds: float
    command_wall_seconds: float | None = None
    """Set by ``pudlab privacy``: the whole command, dataset loading included."""
    torch_threads: int | None = None
    """Set by ``pudlab privacy``."""
    audit: list[ReleaseAudit] | None = None
    """Set by ``pudlab audit``: what was checked about each release file (one per entry)."""
    created: str | None = None
    """When it was measured: UTC, ISO 8601 (what a PUD reader cites as the privacy source's date)."""
    command: str | None = None
    """The command line that measured it (set by the CLI)."""

    RENAMED = {"entries": "sigmas"}
    OMIT_NONE = ("command_wall_seconds", "torch_threads", "audit", "created", "command")
    DERIVED = ("kind",)

    @property
    def kind(self) -> str:
        """The JSON's ``kind``: :data:`REPORT_KIND`."""
        return REPORT_KIND

    @property
    def warnings(self) -> list[str]:
        """What makes a result of the report hard to read (an attacked model near chance), one line each."""
        return [f"sigma {entry.sigma:g}: {entry.membership.warning}" for entry in self.entries
                if entry.membership is not None and entry.membership.warning]

    @classmethod
    def from_dict(cls, data: object, *, where: str | None = None) -> Self:
        """Read :meth:`to_dict`'s output (e.g. a ``privacy.json``) back; errors name ``where`` (the file)
        and the key (``privacy.json: sigmas[0].dp.delta``)."""
        source = "privacy report" if where is None else where
        return record_from_dict(cls, check_report_kind(data, source), source, prefix=f"{source}: ")


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second (``2024-05-01T12:00:00Z``)."""
    import datetime

    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_report_kind(data: Any, source: str) -> Mapping[str, Any]:
    """``data`` if it is a privacy report's JSON (right ``kind``, a ``sigmas`` list), else a SpecError."""
    if not isinstance(data, Mapping) or data.get("kind") != REPORT_KIND or not isinstance(data.get("sigmas"), list):
        raise SpecError(f"{source}: not a pudlab privacy report (expected kind '{REPORT_KIND}')")
    return data


def pud_privacy_by_sigma(report: PrivacyReport | Mapping[str, Any], *,
                         source: str = "privacy report") -> dict[float, PudPrivacyInputs]:
    """sigma -> the P-axis inputs, from a report or its JSON form.

    Of the JSON only ``kind`` and each entry's ``sigma`` and ``pud_privacy`` are read, so a report
    trimmed to those serves as well as a whole one.
    """
    if isinstance(report, PrivacyReport):
        return {entry.sigma: entry.pud_privacy for entry in report.entries}
    data = check_report_kind(report, source)
    result = {}
    for index, entry in enumerate(data["sigmas"]):
        where = f"{source}: sigmas[{index}]"
        entry = require_mapping(entry, where)
        if "sigma" not in entry:
            raise PudlabError(f"{where}: missing key(s) ['sigma']")
        result[float(entry["sigma"])] = PudPrivacyInputs.from_dict(entry.get("pud_privacy"),
                                                                   where=f"{where}.pud_privacy")
    return result


# ---------------------------------------------------------------------------------------- orchestration
@dataclass(frozen=True)
class AttackSets:
    """The seeded samples every sigma's attacks use."""

    split: Split
    """T_t (the released samples' raw sources) and T_e (raw samples left out: the non-members)."""
    queries: LabeledImages
    """Released samples attacked (seeded subsample of T_t), raw."""
    pool: np.ndarray
    """Raw candidates of the linkage attacker (the queries' sources included)."""
    pool_ids: np.ndarray
    denoise_set: LabeledImages
    members: LabeledImages
    nonmembers: LabeledImages
    public: LabeledImages
    """The attacker's public data: the source's test set, else T_e (both disjoint from T_t)."""

    @property
    def query_positions(self) -> np.ndarray:
        """Positions of the queries in T_t (the seeded order)."""
        return np.searchsorted(self.split.train.ids, self.queries.ids)

    @property
    def member_positions(self) -> np.ndarray:
        """Positions of the membership members in T_t."""
        return np.searchsorted(self.split.train.ids, self.members.ids)


def subsample(count: int, size: int, seed: int, key: str) -> np.ndarray:
    """Sorted positions of a seeded subsample of ``size`` of ``count`` (stream ``(seed, key)``)."""
    return np.sort(derive_rng(seed, key).permutation(count)[: min(size, count)])


def attack_sets(split: Split, raw: LabeledImages, public: LabeledImages, config: PrivacyConfig) -> AttackSets:
    """The seeded samples of the attacks on a release of ``split.train`` (T_t, sorted by id), with
    ``raw`` the data a linkage pool is drawn from and ``public`` the attacker's public data."""
    queries = split.train.take(derive_rng(config.seed, "privacy-queries").permutation(len(split.train))[: config.queries])
    # Pool: every query's source plus seeded others from the raw data.
    others = np.flatnonzero(~np.isin(raw.ids, queries.ids))
    extra = max(0, min(config.pool_size, len(raw)) - len(queries))
    chosen = np.sort(np.concatenate([np.flatnonzero(np.isin(raw.ids, queries.ids)),
                                     others[subsample(len(others), extra, config.seed, "privacy-pool")]]))
    denoise_set = queries.take(np.arange(min(config.denoise_samples, len(queries))))
    members = split.train.take(subsample(len(split.train), config.mia_members, config.seed, "mia-members"))
    nonmembers = split.eval.take(subsample(len(split.eval), config.mia_nonmembers, config.seed, "mia-nonmembers"))
    return AttackSets(split, queries, raw.images[chosen], raw.ids[chosen], denoise_set, members, nonmembers, public)


def _attack_sets(source: SourceDataset, config: PrivacyConfig) -> AttackSets:
    split = split_train_eval(source, eval_fraction=config.eval_fraction, seed=config.split_seed)
    public = source.test if source.test is not None and len(source.test) > 0 else split.eval
    return attack_sets(split, source.train, public, config)


def privacy_report(
    source: SourceDataset,
    sigmas: Sequence[float],
    config: PrivacyConfig | None = None,
    *,
    device: str = "cpu",
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> PrivacyReport:
    """Run every attack on ``source`` at each sigma (see docs/privacy.md).

    ``log`` gets one line per finished sigma."""
    import torch
    from tqdm.auto import tqdm

    from pudlab import __version__
    from pudlab.train.trainer import environment

    config = config or PrivacyConfig()
    if not sigmas:
        raise PudlabError("privacy: give at least one sigma")
    started = time.perf_counter()
    sets = _attack_sets(source, config)
    entries = []
    bar = tqdm(total=len(sigmas) * 5, desc="privacy", unit="step", disable=not progress, leave=False)
    for sigma in sigmas:
        entry = _attacks_at(float(sigma), sets, config, device, source.num_classes, bar)
        entries.append(entry)
        if log is not None:
            log(f"sigma {entry.sigma:g}: done in {sum(entry.seconds.values()):.1f} s")
    bar.close()
    shape = sets.split.train.sample_shape
    dataset = DatasetSummary(source.name, source.description, source.fingerprint, list(shape), len(sets.split.train),
                             len(sets.split.eval))
    return PrivacyReport(__version__, dataset, config, environment(torch.device(device)), entries,
                         time.perf_counter() - started, created=utc_now())


@dataclass(frozen=True)
class ReleaseAttacks:
    """The attacks that need only the release, public data and a raw pool (no model, no re-release)."""

    similarity: SimilaritySummary
    linkage: LinkageSummary
    denoising: DenoisingResult
    learned: LearnedDenoising | None
    seconds: dict[str, float]


def release_attacks(sigma: float, sets: AttackSets, released: np.ndarray, config: PrivacyConfig, device: str,
                    num_classes: int, bar: Any = None) -> ReleaseAttacks:
    """Similarity, linkage, the classical and learned denoisers and label inference on ``released``
    (the released images of ``sets.queries``, in their order), stage by stage (``bar``: tqdm or None)."""
    timings: dict[str, float] = {}
    tick = time.perf_counter()
    similarity = SimilaritySummary.of(sets.queries.images, released, data_range=config.data_range)
    linkage = LinkageSummary(linkage_rate(released, sets.queries.ids, sets.pool, sets.pool_ids),
                             1.0 / len(sets.pool), len(sets.pool), len(sets.queries))
    timings["similarity_linkage"] = time.perf_counter() - tick
    _advance(bar, sigma, "denoise")
    tick = time.perf_counter()
    denoising = denoising_attack(sets.denoise_set.images, released[: len(sets.denoise_set)], sigma=sigma,
                                 data_range=config.data_range, query_ids=sets.denoise_set.ids, pool=sets.pool,
                                 pool_ids=sets.pool_ids, grid=config.denoise)
    timings["denoising"] = time.perf_counter() - tick
    _advance(bar, sigma, "learned")
    tick = time.perf_counter()
    learned = None
    if config.learned:
        learned = learned_attacks(sets.denoise_set, released[: len(sets.denoise_set)], sets.public, sigma=sigma,
                                  config=config.learned_denoiser, num_classes=num_classes, seed=config.seed,
                                  noise_seed=config.noise_seed, pool=sets.pool, pool_ids=sets.pool_ids,
                                  label_epochs=config.label_epochs, data_range=config.data_range, device=device)
    timings["learned"] = time.perf_counter() - tick
    _advance(bar, sigma, "decline")
    return ReleaseAttacks(similarity, linkage, denoising, learned, timings)


def _advance(bar: Any, sigma: float, stage: str) -> None:
    if bar is not None:
        bar.set_postfix(sigma=f"{sigma:g}", stage=stage)
        bar.update()


def sigma_entry(sigma: float, attacks: ReleaseAttacks, decline: dict[str, list[DeclineRow]], dp: DpAccounting,
                membership: MembershipAudit | None, lira: LiraResult | None, seconds: dict[str, float]) -> SigmaPrivacy:
    """One report entry from its parts (the P-axis inputs derived from them)."""
    return SigmaPrivacy(sigma, attacks.similarity, attacks.linkage, attacks.denoising, decline, dp,
                        PudPrivacyInputs.from_attacks(attacks.similarity, attacks.linkage, attacks.denoising,
                                                      membership, attacks.learned, lira),
                        {**attacks.seconds, **seconds}, membership, attacks.learned, lira)


def _attacks_at(sigma: float, sets: AttackSets, config: PrivacyConfig, device: str, num_classes: int,
                bar: Any) -> SigmaPrivacy:
    """Every attack at one sigma on seeded noise of the release's distribution."""
    from pudlab.obfuscation import obfuscate

    released = obfuscate(sets.queries, sigma=sigma, seed=config.noise_seed, clip=config.clip)
    attacks = release_attacks(sigma, sets, released.images, config, device, num_classes, bar)
    timings: dict[str, float] = {}
    tick = time.perf_counter()
    decline = {scheme: averaging_attack(sets.queries, sigma=sigma, disclosures=config.disclosures, scheme=scheme,
                                        noise_seed=config.noise_seed, partition_seed=config.seed, clip=config.clip,
                                        data_range=config.data_range, pool=sets.pool, pool_ids=sets.pool_ids)
               for scheme in DECLINE_SCHEMES}
    dp = dp_accounting(sigma, sets.split.train.sample_shape, delta=config.delta, releases=config.disclosures,
                       data_range=config.data_range)
    timings["decline_dp"] = time.perf_counter() - tick
    _advance(bar, sigma, "membership")
    tick = time.perf_counter()
    membership, lira = None, None
    if config.membership:
        members = obfuscate(sets.members, sigma=sigma, seed=config.noise_seed, clip=config.clip)
        membership, lira = membership_attacks(sigma, sets, members, config, device, num_classes,
                                              seen_as="obfuscated (trained on O(members)); attacked with their raw "
                                                      "images")
    timings["membership"] = time.perf_counter() - tick - (lira.seconds if lira is not None else 0.0)
    if lira is not None:
        timings["lira"] = lira.seconds
    _advance(bar, sigma, "done")
    return sigma_entry(sigma, attacks, decline, dp, membership, lira, timings)


def membership_model_configs(config: PrivacyConfig, sample_shape: tuple[int, int, int], num_classes: int) -> Any:
    """(model config, train config, initial weights) of the membership attack's model (M_cnn, seeded)."""
    from pudlab.model import ModelConfig, initial_state
    from pudlab.train.trainer import TrainConfig

    model_config = ModelConfig(sample_shape, config.mia_widths, config.mia_hidden, num_classes)
    train_config = TrainConfig(epochs=config.mia_epochs, batch_size=config.mia_batch_size, lr=config.mia_lr,
                               shuffle_seed=derive_seed(config.seed, "mia-shuffle"))
    return model_config, train_config, initial_state(model_config, init_seed=derive_seed(config.seed, "mia-init"))


def membership_attacks(sigma: float, sets: AttackSets, released_members: LabeledImages, config: PrivacyConfig,
                       device: str, num_classes: int, *, seen_as: str) -> tuple[MembershipAudit, LiraResult | None]:
    """Train M_cnn on ``released_members`` (the members as released) and attack it with the members'
    raw images vs the non-members: the loss threshold, and LiRA when ``lira_shadows`` > 0."""
    from pudlab.model import build_model
    from pudlab.train.trainer import train_model

    model_config, train_config, initial = membership_model_configs(config, sets.members.sample_shape, num_classes)
    result = train_model(released_members, None, model_config, initial, train_config, device=device)
    model = build_model(model_config, result.weights).to(device)
    return attack_model(model, sigma, sets, config, device, num_classes, model_config=model_config,
                        train_config=train_config, train_seconds=result.wall_seconds, seen_as=seen_as)


def attack_model(model: Any, sigma: float, sets: AttackSets, config: PrivacyConfig, device: str, num_classes: int,
                 *, model_config: Any, train_config: Any, train_seconds: float,
                 seen_as: str) -> tuple[MembershipAudit, LiraResult | None]:
    """The loss-threshold attack and LiRA (shadows trained by ``train_config`` on ``model_config``)
    on a model trained on the release; its accuracy on T_e, with a warning when near chance."""
    from pudlab.train.trainer import evaluate

    attack = membership_inference(model, sets.members, sets.nonmembers, fpr=config.mia_fpr, device=device)
    _, accuracy = evaluate(model, sets.split.eval, device=device)
    lira = None
    if config.lira_shadows > 0:
        lira = lira_at(model, sets.members, sets.nonmembers, sigma=sigma, model_config=model_config,
                       train_config=train_config, shadows=config.lira_shadows, seed=config.seed, clip=config.clip,
                       device=device)
    return MembershipAudit(attack, accuracy, train_seconds, seen_as, near_chance_warning(accuracy, num_classes)), lira


__all__ = ["REPORT_KIND", "AttackSets", "DatasetSummary", "ReleaseAudit", "PrivacyConfig", "PrivacyReport", "PudPrivacyInputs",
           "ReleaseAttacks", "SigmaPrivacy", "attack_model", "attack_sets", "check_report_kind", "membership_attacks",
           "privacy_report", "pud_privacy_by_sigma", "release_attacks", "sigma_entry", "subsample", "utc_now"]
