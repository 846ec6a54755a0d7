"""Attacks on privacy-preserving PoL, and the evaluation that runs them over sigma.

Cheaters (each builds a bundle that passes every integrity check -- the manifest has no signature,
so a forger re-seals it with :func:`pudlab.pol.bundle.reseal_bundle`; only the replay can catch them):

* **spoof** (paper Sec. 5.3, "strong disguisability of fakes"): trained on T_i but shares
  O(T_j), a disjoint draw of the same S-X-Y-Z setting, re-ordered so that every position keeps
  T_i's label (a careless spoofer who leaves the labels mismatched is caught trivially).
* **thief-jump**: a model thief trains his own model on T_j and swaps the stolen final model in
  as his last checkpoint.
* **thief-interpolate**: a model thief fabricates every checkpoint on the straight line from the
  public initial weights to the stolen model (his own Adam moments and batches).
* **tampers** of an honest bundle: ``checkpoint-edit`` (a middle checkpoint moved by one
  update's norm), ``batch-swap`` (two steps of an epoch swapped), ``batch-reorder`` (the steps of
  the first segment reversed), ``hyperparameter`` (lr doubled in the manifest), ``shared-swap``
  (O(T_j) shared in its own order); and unsealed variants (a file edited, the manifest left as it
  was), which the integrity check must catch (exit 2).

:func:`evaluate` runs honest provers and all of the above for each sigma and reports the honest
acceptance (1 - false-reject rate), spoof rejection, ROC AUC and TPR at 1 % FPR of honest vs spoof
replay distances, and Delta (Eq. 4).
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from tqdm.auto import tqdm

from ..data.dataset import LabeledImages, SourceDataset, Split, split_train_eval
from ..errors import BundleError, PudlabError
from ..metrics import distinguishability
from ..model import ModelConfig, initial_state
from ..obfuscation import obfuscate
from ..pipeline import make_recipe
from ..sampling import SamplingSetting, draw_recipe
from ..seeding import derive_rng, derive_seed
from ..storage import read_json, weights_to_bytes, write_bytes_atomic, write_json
from ..training import TrainConfig, default_batch_size, environment
from .bundle import BATCHES_FILE, MANIFEST_FILE, NoiseClaim, open_bundle, reseal_bundle, save_npy
from .prover import prove, reshare
from .roc import roc_auc, tpr_at_fpr
from .verifier import (
    DEFAULT_CALIBRATION_REPLAYS,
    DEFAULT_MULTIPLIER,
    EXIT_MALFORMED,
    EXIT_REJECT,
    Verdict,
    VerifyOptions,
    verify_bundle,
)


# ----------------------------------------------------------------------------------- forging tools
def align_labels(reference_labels: np.ndarray, other: LabeledImages) -> LabeledImages:
    """``other`` re-ordered so that position p holds a sample of label ``reference_labels[p]``
    (what a careful spoofer does). Needs the same count of every label."""
    reference_labels = np.asarray(reference_labels)
    if len(reference_labels) != len(other) or not np.array_equal(np.bincount(reference_labels, minlength=2),
                                                                 np.bincount(other.labels, minlength=2)):
        raise PudlabError("align_labels: the two sets do not have the same number of samples of each label")
    order = np.empty(len(other), dtype=np.int64)
    for label in np.unique(reference_labels):
        order[np.flatnonzero(reference_labels == label)] = np.flatnonzero(other.labels == label)
    return other.take(order)


def copy_bundle(source: str | Path, target: str | Path) -> Path:
    target = Path(target)
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    return target


def _checkpoint_path(bundle: Path, index: int) -> Path:
    return bundle / read_json(bundle / MANIFEST_FILE)["checkpoints"][index]["file"]


def edit_checkpoint_weights(bundle: str | Path, index: int,
                            edit: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]) -> None:
    """Replace the weights of checkpoint ``index`` (a trusted, own bundle) by ``edit(weights)``."""
    path = _checkpoint_path(Path(bundle), index)
    tensors = load_file(str(path))
    weights = {name[len("weights."):]: t for name, t in tensors.items() if name.startswith("weights.")}
    for name, tensor in edit(weights).items():
        tensors[f"weights.{name}"] = tensor.to(torch.float32).contiguous()
    write_bytes_atomic(path, weights_to_bytes(tensors, {"format": "pudlab.pol_checkpoint/1"}))


def tamper_checkpoint(source: Path, target: Path, *, scale: float = 1.0, seed: int = 0, reseal: bool = True) -> Path:
    """Move a middle checkpoint by a random direction of norm ``scale`` x that segment's update."""
    bundle = open_bundle(source)
    index = max(len(bundle.update_norms) // 2 - 1, 0)
    norm = bundle.update_norms[index] * scale
    copy_bundle(source, target)
    rng = derive_rng(seed, "tamper-checkpoint")

    def edit(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        directions = {n: torch.from_numpy(rng.standard_normal(tuple(t.shape)).astype(np.float32)) for n, t in weights.items()}
        length = math.sqrt(sum(float((d.double() ** 2).sum()) for d in directions.values()))
        return {n: weights[n] + directions[n] * float(norm / length) for n in weights}

    edit_checkpoint_weights(target, index, edit)
    if reseal:
        reseal_bundle(target)
    return target


def _edit_batches(source: Path, target: Path, edit: Callable[[np.ndarray, dict], np.ndarray], reseal: bool) -> Path:
    copy_bundle(source, target)
    manifest = read_json(target / MANIFEST_FILE)
    batches = np.load(target / BATCHES_FILE, allow_pickle=False)
    save_npy(target / BATCHES_FILE, edit(batches.copy(), manifest["schedule"]))
    if reseal:
        reseal_bundle(target)
    return target


def tamper_batch_swap(source: Path, target: Path, *, reseal: bool = True) -> Path:
    """Swap the first step of epoch 0 with its second-to-last (both full batches, other segments)."""
    def edit(batches: np.ndarray, schedule: dict) -> np.ndarray:
        other = max(schedule["steps_per_epoch"] - 2, 1)
        batches[[0, other]] = batches[[other, 0]]
        return batches
    return _edit_batches(source, target, edit, reseal)


def tamper_batch_reorder(source: Path, target: Path, *, reseal: bool = True) -> Path:
    """Reverse the order of the steps of the first segment."""
    def edit(batches: np.ndarray, schedule: dict) -> np.ndarray:
        count = min(schedule["checkpoint_every"], schedule["steps_per_epoch"] - 1)
        count = max(count, 2)
        batches[:count] = batches[:count][::-1]
        return batches
    return _edit_batches(source, target, edit, reseal)


def tamper_hyperparameter(source: Path, target: Path, *, name: str = "lr", factor: float = 2.0) -> Path:
    """Multiply one training hyper-parameter in the manifest (the files stay as they are)."""
    copy_bundle(source, target)
    manifest = read_json(target / MANIFEST_FILE)
    manifest["training"][name] = manifest["training"][name] * factor
    write_json(target / MANIFEST_FILE, manifest)
    return target


def tamper_shared(source: Path, target: Path, shared: LabeledImages, *, reseal: bool = True) -> Path:
    """Replace the shared data (images and labels) with ``shared``."""
    copy_bundle(source, target)
    from .bundle import SHARED_X_FILE, SHARED_Y_FILE

    save_npy(target / SHARED_X_FILE, shared.images)
    save_npy(target / SHARED_Y_FILE, shared.labels)
    if reseal:
        reseal_bundle(target)
    return target


def forge_jump(thief_bundle: Path, target: Path, stolen: dict[str, torch.Tensor]) -> Path:
    """The thief's own training with the stolen model swapped in as the last checkpoint."""
    copy_bundle(thief_bundle, target)
    count = len(read_json(target / MANIFEST_FILE)["checkpoints"])
    edit_checkpoint_weights(target, count - 1, lambda weights: {n: stolen[n].clone() for n in weights})
    reseal_bundle(target)
    return target


def forge_interpolated(thief_bundle: Path, target: Path, stolen: dict[str, torch.Tensor]) -> Path:
    """Every checkpoint on the straight line from the initial weights to the stolen model."""
    copy_bundle(thief_bundle, target)
    manifest = read_json(target / MANIFEST_FILE)
    initial = load_file(str(target / manifest["init"]["file"]))
    total = manifest["schedule"]["num_steps"]
    for index, record in enumerate(manifest["checkpoints"]):
        fraction = record["step"] / total
        edit_checkpoint_weights(target, index, lambda weights, f=fraction: {
            n: initial[n] + f * (stolen[n] - initial[n]) for n in weights})
    reseal_bundle(target)
    return target


def verify_status(path: Path, options: VerifyOptions) -> tuple[int, str, Verdict | None]:
    """(exit status, one-line reason, verdict or None) as ``pudlab pol verify`` would report."""
    try:
        verdict = verify_bundle(path, options)
    except BundleError as exc:
        return EXIT_MALFORMED, str(exc), None
    return verdict.exit_code, verdict.reason, verdict


# ----------------------------------------------------------------------------------- evaluation
@dataclass(frozen=True)
class EvaluationConfig:
    """``pudlab pol evaluate``: honest provers vs cheaters on one dataset, over sigma.

    The defaults run in a few minutes on 2 CPU cores on mnist-5k (deviations from the paper's
    training: lr 1e-3, 3 epochs, widths 8/16/32 -- see SPEC.md sec. 6)."""

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
    """Adam learning rate, per step (paper: 1e-4; see SPEC.md sec. 6)."""
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
    """Also run the thieves and tampers (on the first trial of each sigma)."""

    def __post_init__(self) -> None:
        if not self.sigmas or any(not (math.isfinite(s) and s >= 0) for s in self.sigmas):
            raise PudlabError(f"sigmas must be finite numbers >= 0, got {self.sigmas}")
        if self.trials < 1 or self.epochs < 1 or self.checkpoint_every < 1:
            raise PudlabError("trials, epochs and checkpoint_every must be >= 1")
        SamplingSetting.parse(self.setting)

    def to_dict(self) -> dict:
        return asdict(self)


ATTACK_NAMES = ("thief-jump", "thief-interpolate", "checkpoint-edit", "checkpoint-edit-unsealed", "batch-swap",
                "batch-swap-replay-only", "batch-reorder", "hyperparameter", "shared-swap", "shared-swap-unsealed")


def _summarise(values: list[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=np.float64)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


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

    def noise(self, sigma: float) -> NoiseClaim:
        return NoiseClaim(sigma, self.config.fraction, self.config.clip)

    def obfuscated(self, data: LabeledImages, sigma: float, seed: int) -> LabeledImages:
        return obfuscate(data, sigma=sigma, fraction=self.config.fraction, seed=seed, clip=self.config.clip)

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
        return self.config.attacks and trial == 0


_CONTEXT: _Context | None = None


def _init_worker(context: _Context) -> None:
    global _CONTEXT
    _CONTEXT = context


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
    for role, private, key in roles:
        prove(private, context.obfuscated(private, first, context.seed(trial, f"noise-{key}")), context.model_config,
              context.train_config(trial, key), initial_weights=initial, init_seed=context.config.init_seed,
              noise=context.noise(first), checkpoint_every=context.config.checkpoint_every,
              out=context.base(trial, role), threads=context.config.threads, overwrite=True,
              provenance={"dataset": context.source.name, "setting": context.config.setting, "role": role,
                          "trial": trial})
    return trial


def _run_job(job: tuple[int, float]) -> tuple[dict, list[dict]]:
    """Honest and spoofed bundles of one (trial, sigma), verified; with attacks, thieves and tampers."""
    trial, sigma = job
    context = _CONTEXT
    assert context is not None
    private_i, private_j = context.private_sets(trial)
    sigma_dir = context.work / f"trial{trial}" / f"sigma{sigma:g}"
    options = replace(context.options, calibration_seed=context.seed(trial, "verifier"))
    shared_i = context.obfuscated(private_i, sigma, context.seed(trial, "noise-i"))
    shared_j = context.obfuscated(private_j, sigma, context.seed(trial, "noise-j"))
    honest_base = context.base(trial, "honest")
    honest_path = reshare(honest_base, sigma_dir / "honest", shared_i, context.noise(sigma), overwrite=True)
    spoof_path = reshare(honest_base, sigma_dir / "spoof", align_labels(private_i.labels, shared_j),
                         context.noise(sigma), overwrite=True)
    honest_verdict = verify_bundle(honest_path, options)
    spoof_verdict = verify_bundle(spoof_path, options)
    record = {
        "trial": trial, "sigma": sigma,
        "honest": _verdict_record(honest_verdict), "spoof": _verdict_record(spoof_verdict),
        "delta": distinguishability(honest_verdict.mean_distance, spoof_verdict.mean_distance),
    }
    attack_rows: list[dict] = []
    if context.with_attacks(trial):
        stolen = open_bundle(honest_base).checkpoint(-1).weights
        thief_shared = reshare(context.base(trial, "thief"), sigma_dir / "thief-shared", shared_j, context.noise(sigma),
                               overwrite=True)
        attack_rows = _run_attacks(sigma, sigma_dir, honest_path, thief_shared, stolen, shared_j, private_i, options,
                                   context.config.seed)
    if not context.keep_bundles:
        shutil.rmtree(sigma_dir, ignore_errors=True)
    return record, attack_rows


def evaluate(
    source: SourceDataset,
    config: EvaluationConfig,
    out_dir: str | Path,
    *,
    workers: int = 1,
    keep_bundles: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Run the evaluation; write ``pol_evaluation.{json,csv,png,svg}`` to ``out_dir``; return the JSON.

    ``workers``: processes that run the (trial, sigma) jobs side by side (each with
    ``config.threads`` threads); the result does not depend on it.
    """
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    say = log or (lambda message: None)
    work = out / "bundles" if keep_bundles else Path(tempfile.mkdtemp(prefix="pudlab-pol-"))
    work.mkdir(parents=True, exist_ok=True)
    context = _Context(source, config, work, keep_bundles)
    jobs = [(trial, sigma) for trial in range(config.trials) for sigma in config.sigmas]
    say(f"plan: {config.trials} trial(s) x {len(config.sigmas)} sigma(s) {list(config.sigmas)} = {len(jobs)} jobs on "
        f"{source.description}, {config.setting}, {config.epochs} epochs, batch {context.batch_size}, lr {config.lr:g}, "
        f"widths {config.widths}, K {config.checkpoint_every}, top-q {config.top_q}, multiplier {config.multiplier:g}; "
        f"thieves and tampers on trial 0: {config.attacks}; {workers} worker(s)")
    results: list[tuple[dict, list[dict]]] = []
    try:
        with _job_runner(context, workers) as run_map:
            list(tqdm(run_map(_prepare_trial, range(config.trials)), total=config.trials, desc="train provers",
                      unit="trial", disable=not progress))
            for record, rows in tqdm(run_map(_run_job, jobs), total=len(jobs), desc="verify", unit="job",
                                     disable=not progress):
                results.append((record, rows))
    finally:
        if not keep_bundles:
            shutil.rmtree(work, ignore_errors=True)
    records = [record for record, _ in results]
    attack_rows = [row for _, rows in results for row in rows]
    rows = [_sigma_row(sigma, [r for r in records if r["sigma"] == sigma],
                       [a for a in attack_rows if a["sigma"] == sigma]) for sigma in config.sigmas]
    result = {
        "kind": "pudlab.pol_evaluation",
        "dataset": {"name": source.name, "description": source.description, "fingerprint": source.fingerprint,
                    "split_seed": config.split_seed},
        "config": config.to_dict(),
        "model": context.model_config.to_dict(),
        "batch_size": context.batch_size,
        "threshold_method": (f"auto: exact (0) at sigma 0; else {config.multiplier:g} x max gap of "
                             f"{config.calibration_replays} replay(s) on fresh re-obfuscations of O(T)"),
        "rows": rows,
        "trials": records,
        "attacks": attack_rows,
        "workers": workers,
        "environment": environment(torch.device("cpu")),
        "seconds": time.perf_counter() - started,
    }
    write_json(out / "pol_evaluation.json", result)
    write_bytes_atomic(out / "pol_evaluation.csv", _csv(rows).encode())
    for suffix in ("png", "svg"):
        plot_evaluation(rows, out / f"pol_evaluation.{suffix}", title=f"PoL on {source.description}")
    return result


@contextlib.contextmanager
def _job_runner(context: _Context, workers: int) -> Iterator[Callable]:
    """An ordered ``map`` over jobs: in this process (workers <= 1) or in a spawn-started pool."""
    if workers <= 1:
        _init_worker(context)
        try:
            yield map
        finally:
            _init_worker(None)  # type: ignore[arg-type]
        return
    import multiprocessing

    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_worker, initargs=(context,)) as pool:
        yield pool.map


def _verdict_record(verdict: Verdict) -> dict:
    return {
        "accepted": verdict.accepted,
        "reason": verdict.reason,
        "mean_distance": verdict.mean_distance,
        "max_distance": verdict.max_distance,
        "max_score": verdict.max_score if math.isfinite(verdict.max_score) else None,
        "segments": [s.to_dict() for s in verdict.segments],
        "seconds": verdict.seconds,
    }


def _run_attacks(sigma: float, sigma_dir: Path, honest_path: Path, thief_shared: Path, stolen: dict[str, torch.Tensor],
                 shared_j: LabeledImages, private_i: LabeledImages, options: VerifyOptions, seed: int) -> list[dict]:
    rows = []

    def record(name: str, path: Path, expected: int, opts: VerifyOptions = options) -> None:
        status, reason, verdict = verify_status(path, opts)
        rows.append({"sigma": sigma, "attack": name, "expected_status": expected, "status": status,
                     "caught": status != 0, "reason": reason,
                     "max_distance": verdict.max_distance if verdict else None})

    record("thief-jump", forge_jump(thief_shared, sigma_dir / "thief-jump", stolen), EXIT_REJECT)
    record("thief-interpolate", forge_interpolated(thief_shared, sigma_dir / "thief-interp", stolen), EXIT_REJECT)
    record("checkpoint-edit", tamper_checkpoint(honest_path, sigma_dir / "ckpt-edit", seed=seed), EXIT_REJECT)
    record("checkpoint-edit-unsealed", tamper_checkpoint(honest_path, sigma_dir / "ckpt-edit-u", seed=seed, reseal=False),
           EXIT_MALFORMED)
    swapped = tamper_batch_swap(honest_path, sigma_dir / "batch-swap")
    record("batch-swap", swapped, EXIT_REJECT)
    record("batch-swap-replay-only", swapped, EXIT_REJECT, replace(options, check_schedule=False))
    record("batch-reorder", tamper_batch_reorder(honest_path, sigma_dir / "batch-reorder"), EXIT_REJECT,
           replace(options, check_schedule=False))
    record("hyperparameter", tamper_hyperparameter(honest_path, sigma_dir / "hyper"), EXIT_REJECT)
    record("shared-swap", tamper_shared(honest_path, sigma_dir / "shared-swap", shared_j), EXIT_REJECT)
    record("shared-swap-unsealed", tamper_shared(honest_path, sigma_dir / "shared-swap-u",
                                                 align_labels(private_i.labels, shared_j), reseal=False), EXIT_MALFORMED)
    return rows


def _sigma_row(sigma: float, records: list[dict], attacks: list[dict]) -> dict:
    honest = [r["honest"] for r in records]
    spoof = [r["spoof"] for r in records]
    honest_distances = [h["mean_distance"] for h in honest]
    spoof_distances = [s["mean_distance"] for s in spoof]
    honest_segments = [seg for h in honest for seg in h["segments"]]
    thresholds = [seg["threshold"] for seg in honest_segments]
    delta_mean, delta_std = _summarise([r["delta"] for r in records])
    honest_mean, honest_std = _summarise(honest_distances)
    spoof_mean, spoof_std = _summarise(spoof_distances)
    thieves = [a for a in attacks if a["attack"].startswith("thief")]
    tampers = [a for a in attacks if not a["attack"].startswith("thief")]
    return {
        "sigma": sigma,
        "trials": len(records),
        "honest_acceptance": float(np.mean([h["accepted"] for h in honest])),
        "false_reject_rate": float(np.mean([not h["accepted"] for h in honest])),
        "segment_false_reject_rate": float(np.mean([not seg["passed"] for seg in honest_segments])) if honest_segments else 0.0,
        "spoof_rejection": float(np.mean([not s["accepted"] for s in spoof])),
        "auc": roc_auc(honest_distances, spoof_distances),
        "tpr_at_1pct_fpr": tpr_at_fpr(honest_distances, spoof_distances, 0.01),
        "auc_score": roc_auc(_scores(honest), _scores(spoof)),
        "delta_mean": delta_mean,
        "delta_std": delta_std,
        "honest_distance_mean": honest_mean,
        "honest_distance_std": honest_std,
        "spoof_distance_mean": spoof_mean,
        "spoof_distance_std": spoof_std,
        "threshold_mean": float(np.mean(thresholds)) if thresholds else 0.0,
        "honest_max_score": _max_score([h["max_score"] for h in honest], max),
        "spoof_min_score": _max_score([s["max_score"] for s in spoof], min),
        "thief_rejection": float(np.mean([a["caught"] for a in thieves])) if thieves else None,
        "tamper_rejection": float(np.mean([a["caught"] for a in tampers])) if tampers else None,
        "attacks_as_expected": all(a["status"] == a["expected_status"] for a in attacks) if attacks else None,
    }


def _scores(verdicts: list[dict]) -> list[float]:
    """max distance/threshold of each verdict (null in JSON = infinite)."""
    return [math.inf if v["max_score"] is None else v["max_score"] for v in verdicts]


def _max_score(values: list[float | None], pick: Callable) -> float | None:
    """``pick`` (max or min) of verdict scores; None when that is infinite (JSON has no infinity)."""
    chosen = pick((math.inf if v is None else v for v in values), default=0.0)
    return chosen if math.isfinite(chosen) else None


CSV_COLUMNS = ("sigma", "trials", "honest_acceptance", "false_reject_rate", "segment_false_reject_rate",
               "spoof_rejection", "auc", "tpr_at_1pct_fpr", "auc_score", "delta_mean", "delta_std",
               "honest_distance_mean", "honest_distance_std", "spoof_distance_mean", "spoof_distance_std",
               "threshold_mean", "honest_max_score", "spoof_min_score", "thief_rejection", "tamper_rejection")


def _csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row[k] is None else f"{row[k]:.6g}" if isinstance(row[k], float) else row[k])
                         for k in CSV_COLUMNS})
    return buffer.getvalue()


def plot_evaluation(rows: list[dict], path: str | Path, *, title: str | None = None) -> Path:
    """Two panels vs sigma: detection rates (honest acceptance, spoof rejection, AUC, TPR at 1 %
    FPR, thief rejection) and the replay distances (honest, spoof, threshold, Delta)."""
    from ..plots import plt, save_figure

    sigmas = [r["sigma"] for r in rows]
    figure, (rates, distances) = plt.subplots(1, 2, figsize=(11, 4.2))
    for key, label, style in (("honest_acceptance", "honest acceptance (1 - FRR)", "o-"),
                              ("spoof_rejection", "spoof rejection", "s-"), ("auc", "ROC AUC honest vs spoof", "^--"),
                              ("tpr_at_1pct_fpr", "TPR at 1% FPR", "v:"), ("thief_rejection", "thief rejection", "x-.")):
        values = [r[key] for r in rows]
        if all(v is None for v in values):
            continue
        rates.plot(sigmas, [np.nan if v is None else v for v in values], style, label=label)
    rates.set_xlabel("sigma (noise std, [0, 1] pixel units)")
    rates.set_ylabel("rate")
    rates.set_ylim(-0.05, 1.05)
    rates.legend(fontsize=8)
    rates.grid(alpha=0.3)
    for mean_key, std_key, label in (("honest_distance_mean", "honest_distance_std", "honest replay D"),
                                     ("spoof_distance_mean", "spoof_distance_std", "spoof replay D"),
                                     ("delta_mean", "delta_std", "Delta (Eq. 4)")):
        means = np.array([r[mean_key] for r in rows])
        stds = np.array([r[std_key] for r in rows])
        distances.errorbar(sigmas, means, yerr=stds, marker="o", capsize=3, label=f"{label} (mean ± std)")
    distances.plot(sigmas, [r["threshold_mean"] for r in rows], "k--", label="auto threshold (mean)")
    distances.set_xlabel("sigma (noise std, [0, 1] pixel units)")
    distances.set_ylabel("F-norm distance per replayed segment")
    distances.legend(fontsize=8)
    distances.grid(alpha=0.3)
    if title:
        figure.suptitle(title)
    return save_figure(figure, path)


def format_table(rows: list[dict]) -> str:
    """The per-sigma table as fixed-width text."""
    header = (f"{'sigma':>6} {'honest acc':>10} {'spoof rej':>9} {'AUC':>5} {'TPR@1%':>6} {'Delta':>17} "
              f"{'D honest':>9} {'D spoof':>9} {'thresh':>8} {'thief rej':>9} {'tamper rej':>10}")
    lines = [header]
    for r in rows:
        def fmt(v: float | None, spec: str = ".2f") -> str:
            return "-" if v is None else format(v, spec)
        lines.append(f"{r['sigma']:>6g} {fmt(r['honest_acceptance']):>10} {fmt(r['spoof_rejection']):>9} "
                     f"{fmt(r['auc']):>5} {fmt(r['tpr_at_1pct_fpr']):>6} "
                     f"{r['delta_mean']:>8.4f} ± {r['delta_std']:<6.4f} {r['honest_distance_mean']:>9.4f} "
                     f"{r['spoof_distance_mean']:>9.4f} {r['threshold_mean']:>8.4f} {fmt(r['thief_rejection']):>9} "
                     f"{fmt(r['tamper_rejection']):>10}")
    return "\n".join(lines)


__all__ = [
    "ATTACK_NAMES",
    "EvaluationConfig",
    "align_labels",
    "evaluate",
    "forge_interpolated",
    "forge_jump",
    "format_table",
    "plot_evaluation",
    "tamper_batch_reorder",
    "tamper_batch_swap",
    "tamper_checkpoint",
    "tamper_hyperparameter",
    "tamper_shared",
    "verify_status",
]
