"""Obfuscation next to DP-SGD on one dataset and one model (``pudlab compare-dp``, docs/privacy.md sec. 6).

Both methods train the same small M_cnn with the same Adam recipe on the same members (a seeded
subsample of T_t, the stream the privacy report uses), and are attacked the same way: the
loss-threshold attack and LiRA with shadows trained by the attacker's copy of the recipe (the
release's sigma, or DP-SGD's noise multiplier and clip bound), members vs non-members from T_e.

* (a) obfuscation at each sigma: train on O(members; sigma) (the engine's seeded noise, the same
  distribution as a ``pudlab obfuscate`` release); epsilon of the release as a Gaussian mechanism
  (replace-one neighbours, image and pixel sensitivity); the release's own leak (linkage, PSNR, SSIM).
* (b) DP-SGD at each noise multiplier (or target epsilon): train on the raw members with Opacus
  (:mod:`pudlab.privacy.dpsgd`); epsilon from the accountant (add/remove) and a replace-one bound.

Repeat ``r`` draws the init, batch order and noise from ``derive_seed(seed, "dp-compare", key, r)``;
within a repeat both methods start from the same init (a paired design). The clean model of each
repeat (sigma 0) is the reference of D. LiRA's shadows belong to the attacker, not to the target: by
default one set per point serves every repeat (``fresh_shadows`` trains a set per repeat).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from pudlab.data.dataset import LabeledImages, SourceDataset, split_train_eval
from pudlab.privacy.accounting import analytic_gaussian_epsilon, l2_sensitivity
from pudlab.privacy.dp_results import (
    ComparisonConfig,
    ComparisonDataset,
    ComparisonPoint,
    ComparisonReport,
    ReleaseLeak,
    RepeatResult,
    match_points,
)
from pudlab.privacy.dpsgd import (
    DpSgdConfig,
    DpSgdRecord,
    dpsgd_record,
    noise_for_epsilon,
    steps_per_epoch,
)
from pudlab.privacy.linkage import LinkageSummary, linkage_rate
from pudlab.privacy.lira import lira_attack, shadow_seed
from pudlab.privacy.membership import membership_inference
from pudlab.privacy.similarity import SimilaritySummary
from pudlab.seeding import derive_rng, derive_seed


@dataclass(frozen=True)
class _Setting:
    """The data, model and recipe every point shares."""

    members: LabeledImages
    nonmembers: LabeledImages
    eval_set: LabeledImages
    pool: np.ndarray
    pool_ids: np.ndarray
    model_config: Any
    device: str


def _subsample(count: int, size: int, seed: int, key: str) -> np.ndarray:
    return np.sort(derive_rng(seed, key).permutation(count)[: min(size, count)])


def _setting(source: SourceDataset, config: ComparisonConfig, device: str) -> _Setting:
    """Members and non-members as the privacy report draws them (streams mia-members / mia-nonmembers)."""
    from pudlab.model import ModelConfig

    split = split_train_eval(source, eval_fraction=config.eval_fraction, seed=config.split_seed)
    members = split.train.take(_subsample(len(split.train), config.members, config.seed, "mia-members"))
    nonmembers = split.eval.take(_subsample(len(split.eval), config.nonmembers, config.seed, "mia-nonmembers"))
    raw = source.train
    own = np.isin(raw.ids, members.ids)
    others = np.flatnonzero(~own)
    extra = max(0, min(config.pool_size, len(raw)) - len(members))
    chosen = np.sort(np.concatenate([np.flatnonzero(own),
                                     others[_subsample(len(others), extra, config.seed, "privacy-pool")]]))
    model_config = ModelConfig(members.sample_shape, config.widths, config.hidden, source.num_classes)
    return _Setting(members, nonmembers, split.eval, raw.images[chosen], raw.ids[chosen], model_config, device)


def _seeds(config: ComparisonConfig, repeat: int) -> dict[str, int]:
    return {key: derive_seed(config.seed, "dp-compare", key, repeat) for key in ("init", "shuffle", "noise", "dp-noise")}


def _train_config(config: ComparisonConfig, shuffle_seed: int) -> Any:
    from pudlab.train.trainer import TrainConfig

    return TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, shuffle_seed=shuffle_seed)


def _dp_config(config: ComparisonConfig, noise_multiplier: float, noise_seed: int) -> DpSgdConfig:
    return DpSgdConfig(noise_multiplier=noise_multiplier, max_grad_norm=config.max_grad_norm,
                       accountant=config.accountant, delta=config.delta, noise_seed=noise_seed)


def _recipe(method: str, parameter: float, config: ComparisonConfig, setting: _Setting) -> Callable[..., Any]:
    """``train(data, seeds) -> TrainResult``: the recipe of one point (the target's and the attacker's shadows')."""
    from pudlab.model import initial_state
    from pudlab.obfuscation import obfuscate
    from pudlab.privacy.dpsgd import train_dpsgd
    from pudlab.train.trainer import train_model

    def train(data: LabeledImages, seeds: dict[str, int]) -> Any:
        initial = initial_state(setting.model_config, init_seed=seeds["init"])
        schedule = _train_config(config, seeds["shuffle"])
        if method == "obfuscation":
            noisy = obfuscate(data, sigma=parameter, seed=seeds["noise"], clip=config.clip)
            return train_model(noisy, None, setting.model_config, initial, schedule, device=setting.device)
        dp = _dp_config(config, parameter, seeds["dp-noise"])
        return train_dpsgd(data, None, setting.model_config, initial, schedule, dp, device=setting.device).train

    return train


def _release_leak(sigma: float, noise_seed: int, config: ComparisonConfig, setting: _Setting) -> ReleaseLeak:
    from pudlab.obfuscation import obfuscate

    released = obfuscate(setting.members, sigma=sigma, seed=noise_seed, clip=config.clip)
    similarity = SimilaritySummary.of(setting.members.images, released.images, data_range=1.0)
    rate = linkage_rate(released.images, setting.members.ids, setting.pool, setting.pool_ids)
    return ReleaseLeak(similarity, LinkageSummary(rate, 1.0 / len(setting.pool), len(setting.pool),
                                                  len(setting.members)))


def _epsilons(method: str, parameter: float, config: ComparisonConfig,
              setting: _Setting) -> tuple[float | None, dict[str, float | None], DpSgdRecord | None]:
    """(headline epsilon, every epsilon by name, the DP-SGD record or None)."""
    if method == "obfuscation":
        shape = setting.members.sample_shape
        by_kind: dict[str, float | None] = {f"release, {kind} sensitivity, replace-one": analytic_gaussian_epsilon(
            sigma=parameter, sensitivity=l2_sensitivity(shape, kind), delta=config.delta) for kind in ("image", "pixel")}
        return by_kind["release, image sensitivity, replace-one"], by_kind, None
    record = dpsgd_record(_dp_config(config, parameter, 0), num_samples=len(setting.members),
                          batch_size=config.batch_size, epochs=config.epochs)
    by_kind = {f"DP-SGD, add/remove ({config.accountant})": record.epsilon,
               "DP-SGD, replace-one (group-privacy bound, RDP)": record.epsilon_replace_one}
    return record.epsilon, by_kind, record


def _point(method: str, parameter: float, config: ComparisonConfig, setting: _Setting, clean: list[Any],
           log: Callable[[str], None], target_epsilon: float | None = None) -> ComparisonPoint:
    from pudlab.metrics import model_distance
    from pudlab.model import build_model
    from pudlab.train.trainer import evaluate

    started = time.perf_counter()
    train = _recipe(method, parameter, config, setting)
    epsilon, epsilons, record = _epsilons(method, parameter, config, setting)
    shadows: dict[tuple[int, int], Any] = {}
    repeats = []
    for repeat in range(config.repeats):
        tick = time.perf_counter()
        seeds = _seeds(config, repeat)
        if method == "obfuscation" and parameter == 0:  # O(T; 0) = T: the clean model of this repeat
            result = clean[repeat]
        else:
            result = train(setting.members, seeds)
        model = build_model(setting.model_config, result.weights).to(setting.device)
        _, accuracy = evaluate(model, setting.eval_set, device=setting.device)
        loss = membership_inference(model, setting.members, setting.nonmembers, fpr=0.01, device=setting.device)
        lira = None
        if config.lira_shadows > 0:
            shadow_root = derive_seed(config.seed, "dp-compare-shadows", repeat) if config.fresh_shadows else config.seed

            def train_shadow(data: LabeledImages, index: int, root: int = shadow_root, run: int = repeat) -> Any:
                key = (run if config.fresh_shadows else 0, index)
                if key not in shadows:
                    own = shadow_seed(root, index)
                    weights = train(data, {name: derive_seed(own, name)
                                           for name in ("init", "shuffle", "noise", "dp-noise")}).weights
                    shadows[key] = build_model(setting.model_config, weights).to(setting.device)
                return shadows[key]

            lira = lira_attack(model, setting.members, setting.nonmembers, train_shadow=train_shadow,
                               shadows=config.lira_shadows, seed=config.seed, device=setting.device)
        release = _release_leak(parameter, seeds["noise"], config, setting) if method == "obfuscation" else None
        run = RepeatResult(repeat, accuracy, loss.auc, loss.tpr_at_fpr, lira,
                           model_distance(result.weights, clean[repeat].weights), result.wall_seconds,
                           time.perf_counter() - tick, release)
        repeats.append(run)
        lira_text = f", LiRA TPR@1% {run.metric('lira_tpr_at_1pct'):.3f}" if lira is not None else ""
        log(f"{method} {parameter:g} repeat {repeat + 1}/{config.repeats}: accuracy {accuracy:.3f}, "
            f"loss AUC {loss.auc:.3f}{lira_text} ({run.seconds:.0f} s)")
    control = parameter == 0
    return ComparisonPoint(method, parameter, control, epsilon, epsilons, repeats, time.perf_counter() - started,
                           record, target_epsilon)


def _clean_models(config: ComparisonConfig, setting: _Setting) -> tuple[list[Any], list[float]]:
    """Per repeat: the clean model (sigma 0) and the D floor (its distance to one trained with another
    shuffle seed, same data and init)."""
    from pudlab.metrics import model_distance
    from pudlab.model import initial_state
    from pudlab.train.trainer import train_model

    models, floors = [], []
    for repeat in range(config.repeats):
        seeds = _seeds(config, repeat)
        initial = initial_state(setting.model_config, init_seed=seeds["init"])
        clean = train_model(setting.members, None, setting.model_config, initial,
                            _train_config(config, seeds["shuffle"]), device=setting.device)
        other = train_model(setting.members, None, setting.model_config, initial,
                            _train_config(config, derive_seed(seeds["shuffle"], "floor")), device=setting.device)
        models.append(clean)
        floors.append(model_distance(clean.weights, other.weights))
    return models, floors


def dp_grid(config: ComparisonConfig, num_members: int) -> list[tuple[float, float | None]]:
    """(noise multiplier, target epsilon or None) of every DP-SGD point, in order."""
    rate = min(1.0, config.batch_size / num_members)
    steps = config.epochs * steps_per_epoch(num_members, config.batch_size)
    grid: list[tuple[float, float | None]] = [(noise, None) for noise in config.noise_multipliers]
    for target in config.target_epsilons:
        grid.append((noise_for_epsilon(target, sample_rate=rate, steps=steps, delta=config.delta,
                                       accountant=config.accountant), target))
    return grid


def compare_dp(source: SourceDataset, config: ComparisonConfig | None = None, *, device: str = "cpu",
               log: Callable[[str], None] | None = None) -> ComparisonReport:
    """Obfuscation over ``config.sigmas`` next to DP-SGD over its noise grid, on ``source`` (see the module
    docstring and docs/privacy.md sec. 6)."""
    import torch

    from pudlab import __version__
    from pudlab.privacy.dpsgd import require_opacus
    from pudlab.train.trainer import environment

    config = config or ComparisonConfig()
    require_opacus()
    say = log or (lambda _text: None)
    started = time.perf_counter()
    setting = _setting(source, config, device)
    grid = dp_grid(config, len(setting.members))
    clean, floors = _clean_models(config, setting)
    points = [_point("obfuscation", sigma, config, setting, list(clean), say) for sigma in config.sigmas]
    points += [_point("dp-sgd", noise, config, setting, list(clean), say, target) for noise, target in grid]
    matches = match_points(points, accuracy_tolerance=config.accuracy_tolerance, leak_tolerance=config.leak_tolerance)
    dataset = ComparisonDataset(source.name, source.description, source.fingerprint,
                                tuple(setting.members.sample_shape), len(setting.members), len(setting.nonmembers),
                                len(setting.eval_set))
    notes = [
        "Formal epsilons protect different things: a release's epsilon (replace-one, per image or per pixel) "
        "covers the published data; DP-SGD's (add/remove, the accountant's) covers only the trained model.",
        "Controls: sigma 0 is the clean model, noise 0 is DP-SGD with clipping only; both have epsilon = inf.",
        "Bands and verdicts use the range over repeats; LiRA values are the stronger of offline and online.",
    ]
    if not config.fresh_shadows:
        notes.append("LiRA's shadows are trained once per point and shared by its repeats.")
    env = environment(torch.device(device))
    env.update(opacus=require_opacus().__version__, dp_sgd_memory_format="contiguous_format")
    return ComparisonReport(__version__, dataset, config, env, points, floors, matches,
                            time.perf_counter() - started, notes, label_prior_auc(setting.members, setting.nonmembers))


def label_prior_auc(members: LabeledImages, nonmembers: LabeledImages) -> float:
    """AUC of the label-frequency attack: score a record by log(frequency of its label among the members).
    What a model that learned only its training labels' prior would give a loss-threshold attacker."""
    from pudlab.metrics import roc_auc

    frequency = np.bincount(members.labels, minlength=int(max(members.labels.max(), nonmembers.labels.max())) + 1)
    score = np.log(np.maximum(frequency, 0.5) / len(members))
    return roc_auc(positives=score[members.labels], negatives=score[nonmembers.labels])


__all__ = ["ComparisonConfig", "compare_dp", "dp_grid", "label_prior_auc"]
