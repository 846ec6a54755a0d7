"""The detection evaluation (``pudlab pol evaluate``): honest provers against spoofers, model
thieves and tampered bundles (:mod:`pudlab.pol.forgers`), over sigma.

For each trial, an honest prover trains on T_i (and, with attacks, a thief on T_j, a disjoint draw
of the same setting) once; every sigma re-shares those trainings, builds the spoof and the forgeries
and verifies them all. :func:`evaluate_detection` reports, per sigma, the honest acceptance
(1 - false-reject rate), spoof rejection, ROC AUC and TPR at 1 % FPR of spoof vs honest replay
distances, and Delta (Eq. 4) (:mod:`pudlab.pol.evaluation_results`), as a :class:`DetectionReport`
(the figure of it: :func:`pudlab.report.pol_figures.plot_evaluation`).
"""

from __future__ import annotations

import contextlib
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from pudlab.data.dataset import LabeledImages, SourceDataset, Split, split_train_eval
from pudlab.errors import PudlabError
from pudlab.io import write_bytes_atomic, write_json
from pudlab.metrics import distinguishability
from pudlab.model import ModelConfig, initial_state
from pudlab.obfuscation import ReleaseKey
from pudlab.pol.bundle import open_bundle
from pudlab.pol.evaluation_attacks import (
    ATTACK_NAMES,
    LR_FACTORS,
    TAMPER_SCALES,
    AttackInputs,
    owner_release,
    run_attacks,
)
from pudlab.pol.evaluation_results import (
    AttackOutcome,
    SigmaRow,
    TrialOutcome,
    VerdictSummary,
    rows_csv,
    summarise_sigma,
)
from pudlab.pol.forgers import align_labels
from pudlab.pol.manifest import NoiseClaim
from pudlab.pol.prover import prove, reshare
from pudlab.pol.verifier import (
    DEFAULT_CALIBRATION_REPLAYS,
    DEFAULT_MULTIPLIER,
    VerifyOptions,
    verify_bundle,
)
from pudlab.records import Record
from pudlab.release_auth import VerificationKey
from pudlab.sampling import SamplingSetting, draw_recipe
from pudlab.seeding import derive_seed
from pudlab.train.run import make_recipe
from pudlab.train.trainer import TrainConfig, default_batch_size, environment


@dataclass(frozen=True)
class EvaluationConfig(Record):
    """``pudlab pol evaluate``: honest provers vs cheaters on one dataset, over sigma.

    The defaults run in a few minutes on 2 CPU cores on mnist-5k (deviations from the paper's
    training: lr 1e-3, 3 epochs, widths 8/16/32: with the paper's lr 1e-4, a few epochs leave the
    models near chance)."""

    sigmas: tuple[float, ...] = (0.0, 0.05, 0.1, 0.3, 0.6, 1.0)
    """Noise std of O(T), in units of the [0, 1] pixel scale."""
    trials: int = 3
    """Independent (T_i, T_j) pairs, each with its own draws, noise and batch order."""
    setting: str = "S-1-1-0.5"
    """S-X-Y-Z of T_i and T_j (disjoint draws of the same labels: Z <= 0.5)."""
    epochs: int = 3
    """Training epochs of each prover."""
    batch_size: int | None = None
    """Samples per step [default: 128 one-channel, 64 colour]."""
    lr: float = 1e-3
    """Adam learning rate, per step (paper: 1e-4)."""
    widths: tuple[int, int, int] = (8, 16, 32)
    """Conv widths of M_cnn."""
    hidden: int = 128
    """Units of the hidden dense layer."""
    checkpoint_every: int = 6
    """K: optimizer steps between checkpoints."""
    top_q: int = 1
    """Segments the verifier replays per epoch (0 = all)."""
    multiplier: float = DEFAULT_MULTIPLIER
    """``auto`` threshold multiplier."""
    calibration_replays: int = DEFAULT_CALIBRATION_REPLAYS
    """``auto`` threshold: re-obfuscations replayed per segment."""
    fraction: float = 1.0
    """R: fraction of samples obfuscated."""
    clip: bool = False
    """Clip O(T) to [0, 1]."""
    seed: int = 0
    """Root seed of draws, noise, batch orders and verifier calibration."""
    split_seed: int = 0
    """Seed of the 90/10 T_t / T_e split."""
    init_seed: int = 0
    """Seed of the one public initial weight set every prover starts from."""
    threads: int = 1
    """Intra-op threads of training and replay."""
    attacks: bool = True
    """Also run the thieves and tampers."""
    attack_trials: int | None = None
    """Trials that run the attacks (the first ones); None: every trial."""

    OMIT_NONE = ("attack_trials",)

    def __post_init__(self) -> None:
        if not self.sigmas or any(not (math.isfinite(s) and s >= 0) for s in self.sigmas):
            raise PudlabError(f"sigmas must be finite numbers >= 0, got {self.sigmas}")
        if self.trials < 1 or self.epochs < 1 or self.checkpoint_every < 1:
            raise PudlabError("trials, epochs and checkpoint_every must be >= 1")
        SamplingSetting.parse(self.setting)


@dataclass(frozen=True)
class DetectionReport(Record):
    """Everything one evaluation measured; :meth:`to_dict` is ``pol_evaluation.json``."""

    dataset: dict
    """name, description, fingerprint of the source, split_seed."""
    config: EvaluationConfig
    model: ModelConfig
    batch_size: int
    threshold_method: str
    rows: tuple[SigmaRow, ...]
    trials: tuple[TrialOutcome, ...]
    attacks: tuple[AttackOutcome, ...]
    workers: int
    environment: dict
    seconds: float

    DERIVED = ("kind",)

    @property
    def kind(self) -> str:
        return "pudlab.pol_evaluation"

    @property
    def unexpected_attacks(self) -> list[AttackOutcome]:
        """Attacks whose exit status was not the expected one (undecidable counts as expected where a
        rejection was: neither accepts)."""
        return [attack for attack in self.attacks if not attack.as_expected]

@dataclass
class _Context:
    """What every job of one evaluation shares (sent once to each worker process)."""

    source: SourceDataset
    config: EvaluationConfig
    work: Path
    keep_bundles: bool = False
    split: Split = field(init=False)
    model_config: ModelConfig = field(init=False)
    batch_size: int = field(init=False)
    options: VerifyOptions = field(init=False)

    def __post_init__(self) -> None:
        config = self.config
        self.split = split_train_eval(self.source, seed=config.split_seed)
        self.model_config = ModelConfig(self.source.sample_shape, config.widths, config.hidden, self.source.num_classes)
        self.batch_size = config.batch_size or default_batch_size(self.source.sample_shape)
        self.options = VerifyOptions(top_q=config.top_q, multiplier=config.multiplier,
                                     calibration_replays=config.calibration_replays, threads=config.threads)

    def seed(self, trial: int, role: str) -> int:
        return derive_seed(self.config.seed, "pol-eval", trial, role)

    def noise(self, sigma: float, key: ReleaseKey) -> NoiseClaim:
        return NoiseClaim(sigma, self.config.fraction, self.config.clip, key.key_id)

    def key_seed(self, trial: int, owner: str) -> int:
        """The insecure demo key of owner ``i`` or ``j``: derived from the evaluation's recorded seed, so the run
        is reproducible (its release manifests say INSECURE; its bundles never leave it)."""
        return self.seed(trial, f"noise-{owner}")

    def released(self, data: LabeledImages, sigma: float, trial: int, owner: str) -> tuple[LabeledImages, dict]:
        """Owner ``owner``'s keyed release of ``data`` at ``sigma`` (independent noise at every sigma) and its
        authenticated manifest."""
        return owner_release(data, sigma, self.key_seed(trial, owner), self.config.fraction, self.config.clip)

    def owner_key(self, trial: int, owner: str) -> VerificationKey:
        return VerificationKey.of(ReleaseKey.from_insecure_seed(self.key_seed(trial, owner)))

    def private_sets(self, trial: int) -> tuple[LabeledImages, LabeledImages]:
        """T_i and T_j: two disjoint draws of the same S-X-Y-Z setting."""
        setting = SamplingSetting.parse(self.config.setting)
        seed_i, seed_j = self.seed(trial, "T_i"), self.seed(trial, "T_j")
        recipe_i = make_recipe(setting, self.source.num_classes, seed=seed_i)
        recipe_j = replace(make_recipe(setting, self.source.num_classes, seed=seed_j), exclude_seeds=(seed_i,))
        labels = self.split.train.labels
        return self.split.train.take(draw_recipe(labels, recipe_i)), self.split.train.take(draw_recipe(labels, recipe_j))

    def train_config(self, trial: int, role: str) -> TrainConfig:
        return TrainConfig(epochs=self.config.epochs, batch_size=self.batch_size, lr=self.config.lr,
                           shuffle_seed=self.seed(trial, f"shuffle-{role}"))

    def base(self, trial: int, role: str) -> Path:
        return self.work / f"trial{trial}" / f"{role}-base"

    def with_attacks(self, trial: int) -> bool:
        return self.config.attacks and (self.config.attack_trials is None or trial < self.config.attack_trials)


_CONTEXT: _Context | None = None


def _init_worker(context: _Context | None) -> None:
    global _CONTEXT
    _CONTEXT = context


def _init_pool_worker(context: _Context, parent_pid: int) -> None:
    """Initializer of a pool process: die with the evaluating process, whatever kills it."""
    from pudlab.processes import die_with_parent

    die_with_parent(parent_pid, detach=False, stop_on_sigint=False)
    _init_worker(context)


def _prepare_trial(trial: int) -> int:
    """Train the trial's honest prover on T_i (and, with attacks, the thief on T_j) once; every
    sigma re-shares these trainings (the prover trains on clean T whatever sigma it shares)."""
    context = _CONTEXT
    assert context is not None
    private_i, private_j = context.private_sets(trial)
    if np.intersect1d(private_i.ids, private_j.ids).size:
        raise PudlabError("internal: T_i and T_j overlap")
    initial = initial_state(context.model_config, init_seed=context.config.init_seed)
    first = context.config.sigmas[0]
    roles = [("honest", private_i, "i")] + ([("thief", private_j, "j")] if context.with_attacks(trial) else [])
    for role, private, owner in roles:
        shared, release_manifest = context.released(private, first, trial, owner)
        key = ReleaseKey.from_insecure_seed(context.key_seed(trial, owner))
        prove(private, shared, context.model_config,
              context.train_config(trial, owner), initial_weights=initial, init_seed=context.config.init_seed,
              noise=context.noise(first, key), checkpoint_every=context.config.checkpoint_every,
              release_manifest=release_manifest,
              out=context.base(trial, role), threads=context.config.threads, overwrite=True,
              provenance={"dataset": context.source.name, "setting": context.config.setting, "role": role,
                          "trial": trial, "release_key": f"INSECURE demo key derived from public seed "
                                                         f"{context.key_seed(trial, owner)}: O(T) hides nothing"})
    return trial


def _run_job(job: tuple[int, float]) -> tuple[TrialOutcome, list[AttackOutcome]]:
    """Honest and spoofed bundles of one (trial, sigma), verified by the verifier of each one's claimed owner
    (the spoofer is the owner of T_j); with attacks, every thief and tamper."""
    trial, sigma = job
    context = _CONTEXT
    assert context is not None
    private_i, private_j = context.private_sets(trial)
    sigma_dir = context.work / f"trial{trial}" / f"sigma{sigma:g}"
    options = replace(context.options, verifier_seed=context.seed(trial, "verifier"))
    key_i, key_j = (ReleaseKey.from_insecure_seed(context.key_seed(trial, owner)) for owner in ("i", "j"))
    shared_i, manifest_i = context.released(private_i, sigma, trial, "i")
    aligned_j, aligned_manifest = context.released(align_labels(private_i.labels, private_j), sigma, trial, "j")
    honest_base = context.base(trial, "honest")
    honest_path = reshare(honest_base, sigma_dir / "honest", shared_i, context.noise(sigma, key_i),
                          release_manifest=manifest_i, overwrite=True)
    spoof_path = reshare(honest_base, sigma_dir / "spoof", aligned_j, context.noise(sigma, key_j),
                         release_manifest=aligned_manifest, overwrite=True)
    honest_verdict = verify_bundle(honest_path, replace(options, owner_key=context.owner_key(trial, "i")))
    spoof_verdict = verify_bundle(spoof_path, replace(options, owner_key=context.owner_key(trial, "j")))
    outcome = TrialOutcome(trial, sigma, VerdictSummary.of(honest_verdict), VerdictSummary.of(spoof_verdict),
                           distinguishability(honest_verdict.mean_distance, spoof_verdict.mean_distance))
    attacks: list[AttackOutcome] = []
    if context.with_attacks(trial):
        shared_j, manifest_j = context.released(private_j, sigma, trial, "j")
        thief_shared = reshare(context.base(trial, "thief"), sigma_dir / "thief-shared", shared_j,
                               context.noise(sigma, key_j), release_manifest=manifest_j, overwrite=True)
        attacks = run_attacks(AttackInputs(
            sigma, sigma_dir, honest_path, thief_shared, open_bundle(honest_base).checkpoint(-1).weights, private_i,
            private_j, context.key_seed(trial, "i"), context.key_seed(trial, "j"), context.noise, context.model_config,
            context.train_config(trial, "j"), context.config.checkpoint_every, context.config.threads,
            context.config.init_seed, replace(options, stop_at_first_failure=True), context.seed(trial, "attacks")))
    if not context.keep_bundles:
        shutil.rmtree(sigma_dir, ignore_errors=True)
    return outcome, attacks


def evaluate_detection(
    source: SourceDataset,
    config: EvaluationConfig,
    out_dir: str | Path,
    *,
    workers: int = 1,
    keep_bundles: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> DetectionReport:
    """Run the evaluation; write ``pol_evaluation.{json,csv}`` to ``out_dir`` (``pudlab pol evaluate``
    adds the figure, :func:`pudlab.report.pol_figures.plot_evaluation`).

    ``workers``: processes that run the (trial, sigma) jobs side by side (each with
    ``config.threads`` threads); the result does not depend on it.
    """
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    work = out / "bundles" if keep_bundles else Path(tempfile.mkdtemp(prefix="pudlab-pol-"))
    work.mkdir(parents=True, exist_ok=True)
    context = _Context(source, config, work, keep_bundles)
    jobs = [(trial, sigma) for trial in range(config.trials) for sigma in config.sigmas]
    if log:
        log(f"plan: {config.trials} trial(s) x {len(config.sigmas)} sigma(s) {list(config.sigmas)} = {len(jobs)} jobs "
            f"on {source.description}, {config.setting}, {config.epochs} epochs, batch {context.batch_size}, "
            f"lr {config.lr:g}, widths {config.widths}, K {config.checkpoint_every}, top-q {config.top_q}, "
            f"multiplier {config.multiplier:g}, {context.options.random_segments} random segments, drift limit "
            f"{context.options.max_drift_share}; thieves and tampers: {config.attacks} (trials: "
            f"{config.attack_trials or config.trials}); {workers} worker(s)")
    results: list[tuple[TrialOutcome, list[AttackOutcome]]] = []
    try:
        with _job_runner(context, workers) as run_map:
            list(tqdm(run_map(_prepare_trial, range(config.trials)), total=config.trials, desc="train provers",
                      unit="trial", disable=not progress))
            results.extend(tqdm(run_map(_run_job, jobs), total=len(jobs), desc="verify", unit="job",
                                disable=not progress))
    finally:
        if not keep_bundles:
            shutil.rmtree(work, ignore_errors=True)
    outcomes = [outcome for outcome, _ in results]
    attacks = [attack for _, job_attacks in results for attack in job_attacks]
    rows = tuple(summarise_sigma(sigma, [o for o in outcomes if o.sigma == sigma],
                                 [a for a in attacks if a.sigma == sigma]) for sigma in config.sigmas)
    report = DetectionReport(
        dataset={"name": source.name, "description": source.description, "fingerprint": source.fingerprint,
                 "split_seed": config.split_seed},
        config=config, model=context.model_config, batch_size=context.batch_size,
        threshold_method=(f"auto: exact (0) at sigma 0; else {config.multiplier:g} x max gap of "
                          f"{config.calibration_replays} replay(s) on fresh re-obfuscations of O(T)"),
        rows=rows, trials=tuple(outcomes), attacks=tuple(attacks), workers=workers,
        environment=environment(torch.device("cpu")), seconds=time.perf_counter() - started)
    write_json(out / "pol_evaluation.json", report.to_dict())
    write_bytes_atomic(out / "pol_evaluation.csv", rows_csv(rows).encode())
    return report


@contextlib.contextmanager
def _job_runner(context: _Context, workers: int) -> Iterator[Callable]:
    """An ordered ``map`` over jobs: in this process (workers <= 1) or in a spawn-started pool."""
    if workers <= 1:
        _init_worker(context)
        try:
            yield map
        finally:
            _init_worker(None)
        return
    import multiprocessing
    import os

    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_pool_worker, initargs=(context, os.getpid())) as pool:
        yield pool.map


__all__ = ["ATTACK_NAMES", "LR_FACTORS", "TAMPER_SCALES", "DetectionReport", "EvaluationConfig", "evaluate_detection"]
