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
from dataclasses import dataclass, field, replace
from typing import Any, Self

import numpy as np

from pudlab.data.dataset import LabeledImages, SourceDataset, Split, split_train_eval
from pudlab.errors import PudlabError, SpecError
from pudlab.privacy.accounting import DpAccounting, dp_accounting
from pudlab.privacy.decline import DECLINE_SCHEMES, DeclineRow, averaging_attack
from pudlab.privacy.denoising import DenoiseGrid, DenoisingResult, denoising_attack
from pudlab.privacy.learned import LearnedDenoiserConfig, LearnedDenoising, learned_attacks
from pudlab.privacy.linkage import LinkageSummary, linkage_rate
from pudlab.privacy.lira import LiraResult, lira_at
from pudlab.privacy.membership import MembershipAudit, membership_inference
from pudlab.privacy.similarity import SimilaritySummary
from pudlab.privacy.threats import ATTACK_NEEDS, THREAT_MODELS
from pudlab.records import Record, record_from_dict, require_mapping
from pudlab.seeding import derive_rng, derive_seed

REPORT_KIND = "pudlab.privacy_report"
"""The ``kind`` of a privacy report's JSON."""


@dataclass(frozen=True)
class PrivacyConfig(Record):
    """What ``pudlab privacy`` measures and how much of it (defaults fit ~1 min on 2 CPU cores)."""

    queries: int = 500
    """Released samples attacked: a seeded subsample of T_t (stream (seed, "privacy-queries"))."""
    pool_size: int = 5000
    """Candidate pool of the linkage attacker: the queries' sources plus seeded other raw samples of
    the source's training set, this many in all (capped by its size)."""
    denoise_samples: int = 200
    """Queries the denoising attack runs on (the first of the seeded query order)."""
    disclosures: int = 10
    """N of the privacy-decline attack: n = 1..N disclosures."""
    denoise: DenoiseGrid = field(default_factory=DenoiseGrid)
    """Parameter grid of the denoising attack."""
    membership: bool = True
    """Run the membership-inference attack (trains one small model per sigma)."""
    mia_members: int = 1000
    """Training samples of the attacked model (seeded subsample of T_t, stream (seed, "mia-members"))."""
    mia_nonmembers: int = 500
    """Non-members: a seeded subsample of T_e (capped by its size)."""
    mia_epochs: int = 20
    """Epochs of the attacked model (more epochs: more overfitting, a stronger attack)."""
    mia_lr: float = 1e-3
    """Adam learning rate of the attacked model, per step."""
    mia_batch_size: int = 128
    """Batch size of the attacked model."""
    mia_widths: tuple[int, int, int] = (8, 16, 32)
    """Conv widths of the attacked M_cnn."""
    mia_hidden: int = 32
    """Hidden dense units of the attacked M_cnn."""
    mia_fpr: float = 0.01
    """False-positive budget of the reported TPR."""
    delta: float = 1e-5
    """delta of the (epsilon, delta) accounting."""
    seed: int = 0
    """Root seed of every subsample, partition and model init of the attacks."""
    noise_seed: int = 0
    """Obfuscation noise key of the release (pudlab's keyed noise)."""
    split_seed: int = 0
    """Seed of the paper's 90/10 T_t / T_e split."""
    eval_fraction: float = 0.1
    """T_e share of the official training set."""
    clip: bool = False
    """Release clipped to [0, 1] (pudlab's default: not clipped)."""
    data_range: float = 1.0
    """Raw pixel range, used by PSNR, SSIM and the sensitivities."""
    learned: bool = True
    """Run the public-data attacks: the learned denoiser (and label inference, ``label_epochs`` > 0)."""
    learned_denoiser: LearnedDenoiserConfig = field(default_factory=LearnedDenoiserConfig)
    """Size and training of the attacker's learned denoiser."""
    label_epochs: int = 15
    """Epochs of the label-inference classifiers (0: no label inference)."""
    lira_shadows: int = 8
    """Shadow models of LiRA (even; 0: no LiRA). Needs ``membership``."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "mia_widths", tuple(int(v) for v in self.mia_widths))
        for name in ("queries", "pool_size", "denoise_samples", "disclosures", "mia_members", "mia_nonmembers",
                     "mia_epochs", "mia_batch_size", "mia_hidden"):
            if getattr(self, name) < 1:
                raise PudlabError(f"privacy config: {name} must be >= 1, got {getattr(self, name)}")
        if self.lira_shadows < 0 or self.lira_shadows % 2:
            raise PudlabError(f"privacy config: lira_shadows must be an even number >= 0, got {self.lira_shadows}")
        if self.label_epochs < 0:
            raise PudlabError(f"privacy config: label_epochs must be >= 0, got {self.label_epochs}")
        if not 0 < self.delta < 1:
            raise PudlabError(f"privacy config: delta must be in (0, 1), got {self.delta}")


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

    RENAMED = {"entries": "sigmas"}
    OMIT_NONE = ("command_wall_seconds", "torch_threads")
    DERIVED = ("kind",)

    @property
    def kind(self) -> str:
        """The JSON's ``kind``: :data:`REPORT_KIND`."""
        return REPORT_KIND

    @classmethod
    def from_dict(cls, data: object, *, where: str | None = None) -> Self:
        """Read :meth:`to_dict`'s output (e.g. a ``privacy.json``) back; errors name ``where`` (the file)
        and the key (``privacy.json: sigmas[0].dp.delta``)."""
        source = "privacy report" if where is None else where
        return record_from_dict(cls, check_report_kind(data, source), source, prefix=f"{source}: ")


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
class _AttackSets:
    """The seeded samples every sigma's attacks use."""

    split: Split
    queries: LabeledImages
    """Released samples attacked (seeded subsample of T_t)."""
    pool: np.ndarray
    """Raw candidates of the linkage attacker (the queries' sources included)."""
    pool_ids: np.ndarray
    denoise_set: LabeledImages
    members: LabeledImages
    nonmembers: LabeledImages
    public: LabeledImages
    """The attacker's public data: the source's test set, else T_e (both disjoint from T_t)."""


def _subsample(count: int, size: int, seed: int, key: str) -> np.ndarray:
    return np.sort(derive_rng(seed, key).permutation(count)[: min(size, count)])


def _attack_sets(source: SourceDataset, config: PrivacyConfig) -> _AttackSets:
    split = split_train_eval(source, eval_fraction=config.eval_fraction, seed=config.split_seed)
    queries = split.train.take(derive_rng(config.seed, "privacy-queries").permutation(len(split.train))[: config.queries])
    # Pool: every query's source plus seeded others from the source's training set.
    all_raw = source.train
    others = np.flatnonzero(~np.isin(all_raw.ids, queries.ids))
    extra = max(0, min(config.pool_size, len(all_raw)) - len(queries))
    chosen = np.sort(np.concatenate([np.flatnonzero(np.isin(all_raw.ids, queries.ids)),
                                     others[_subsample(len(others), extra, config.seed, "privacy-pool")]]))
    denoise_set = queries.take(np.arange(min(config.denoise_samples, len(queries))))
    members = split.train.take(_subsample(len(split.train), config.mia_members, config.seed, "mia-members"))
    nonmembers = split.eval.take(_subsample(len(split.eval), config.mia_nonmembers, config.seed, "mia-nonmembers"))
    public = source.test if source.test is not None and len(source.test) > 0 else split.eval
    return _AttackSets(split, queries, all_raw.images[chosen], all_raw.ids[chosen], denoise_set, members, nonmembers,
                       public)


def privacy_report(
    source: SourceDataset,
    sigmas: Sequence[float],
    config: PrivacyConfig | None = None,
    *,
    device: str = "cpu",
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> PrivacyReport:
    """Run every attack on ``source`` at each sigma (see docs/privacy.md)."""
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
                         time.perf_counter() - started)


def _attacks_at(sigma: float, sets: _AttackSets, config: PrivacyConfig, device: str, num_classes: int,
                bar: Any) -> SigmaPrivacy:
    """Every attack at one sigma, stage by stage (``bar``: a tqdm bar, one step per stage)."""
    from pudlab.obfuscation import obfuscate

    timings: dict[str, float] = {}
    tick = time.perf_counter()
    released = obfuscate(sets.queries, sigma=sigma, seed=config.noise_seed, clip=config.clip)
    similarity = SimilaritySummary.of(sets.queries.images, released.images, data_range=config.data_range)
    linkage = LinkageSummary(linkage_rate(released.images, sets.queries.ids, sets.pool, sets.pool_ids),
                             1.0 / len(sets.pool), len(sets.pool), len(sets.queries))
    timings["similarity_linkage"] = time.perf_counter() - tick
    bar.set_postfix(sigma=f"{sigma:g}", stage="denoise")
    bar.update()

    tick = time.perf_counter()
    denoising = denoising_attack(sets.denoise_set.images, released.images[: len(sets.denoise_set)], sigma=sigma,
                                 data_range=config.data_range, query_ids=sets.denoise_set.ids, pool=sets.pool,
                                 pool_ids=sets.pool_ids, grid=config.denoise)
    timings["denoising"] = time.perf_counter() - tick
    bar.set_postfix(sigma=f"{sigma:g}", stage="decline")
    bar.update()

    tick = time.perf_counter()
    decline = {scheme: averaging_attack(sets.queries, sigma=sigma, disclosures=config.disclosures, scheme=scheme,
                                        noise_seed=config.noise_seed, partition_seed=config.seed, clip=config.clip,
                                        data_range=config.data_range, pool=sets.pool, pool_ids=sets.pool_ids)
               for scheme in DECLINE_SCHEMES}
    dp = dp_accounting(sigma, sets.split.train.sample_shape, delta=config.delta, releases=config.disclosures,
                       data_range=config.data_range)
    timings["decline_dp"] = time.perf_counter() - tick
    bar.set_postfix(sigma=f"{sigma:g}", stage="membership")
    bar.update()

    tick = time.perf_counter()
    learned = None
    if config.learned:
        learned = learned_attacks(sets.denoise_set, released.images[: len(sets.denoise_set)], sets.public, sigma=sigma,
                                  config=config.learned_denoiser, num_classes=num_classes, seed=config.seed,
                                  noise_seed=config.noise_seed, pool=sets.pool, pool_ids=sets.pool_ids,
                                  label_epochs=config.label_epochs, data_range=config.data_range, device=device)
    timings["learned"] = time.perf_counter() - tick
    bar.update()

    tick = time.perf_counter()
    membership, lira = _membership_at(sigma, sets, config, device, num_classes) if config.membership else (None, None)
    timings["membership"] = time.perf_counter() - tick - (lira.seconds if lira is not None else 0.0)
    if lira is not None:
        timings["lira"] = lira.seconds
    bar.update()
    return SigmaPrivacy(sigma, similarity, linkage, denoising, decline, dp,
                        PudPrivacyInputs.from_attacks(similarity, linkage, denoising, membership, learned, lira),
                        timings, membership, learned, lira)


def _membership_at(sigma: float, sets: _AttackSets, config: PrivacyConfig, device: str,
                   num_classes: int) -> tuple[MembershipAudit, LiraResult | None]:
    """Train M_cnn on O(members; sigma) and attack it with the members' raw images vs T_e: the
    loss threshold, and LiRA when ``lira_shadows`` > 0."""
    from pudlab.model import ModelConfig, build_model, initial_state
    from pudlab.obfuscation import obfuscate
    from pudlab.train.trainer import TrainConfig, evaluate, train_model

    members = sets.members
    model_config = ModelConfig(members.sample_shape, config.mia_widths, config.mia_hidden, num_classes)
    train_config = TrainConfig(epochs=config.mia_epochs, batch_size=config.mia_batch_size, lr=config.mia_lr,
                               shuffle_seed=derive_seed(config.seed, "mia-shuffle"))
    initial = initial_state(model_config, init_seed=derive_seed(config.seed, "mia-init"))
    released = obfuscate(members, sigma=sigma, seed=config.noise_seed, clip=config.clip)
    result = train_model(released, None, model_config, initial, train_config, device=device)
    model = build_model(model_config, result.weights).to(device)
    attack = membership_inference(model, members, sets.nonmembers, fpr=config.mia_fpr, device=device)
    _, accuracy = evaluate(model, sets.split.eval, device=device)
    lira = None
    if config.lira_shadows > 0:
        lira = lira_at(model, members, sets.nonmembers, sigma=sigma, model_config=model_config,
                       train_config=train_config, shadows=config.lira_shadows, seed=config.seed, clip=config.clip,
                       device=device)
    return MembershipAudit(attack, accuracy, result.wall_seconds,
                           "obfuscated (trained on O(members)); attacked with their raw images"), lira


__all__ = ["REPORT_KIND", "DatasetSummary", "PrivacyConfig", "PrivacyReport", "PudPrivacyInputs", "SigmaPrivacy",
           "check_report_kind", "privacy_report", "pud_privacy_by_sigma"]
