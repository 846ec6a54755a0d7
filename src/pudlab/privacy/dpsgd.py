"""DP-SGD (Abadi et al. 2016) through Opacus, the optional extra ``pudlab[dp]``: per-sample clipping to
``max_grad_norm``, Gaussian noise of std ``noise_multiplier * max_grad_norm`` on the summed clipped
gradients, Poisson sampling at ``sample_rate``, and epsilon(delta) from Opacus's accountant (RDP or
PRV) under add/remove-one neighbouring datasets.

The optimizer is the trainer's (Adam with the :class:`~pudlab.train.trainer.TrainConfig`'s lr, betas
and eps), wrapped by Opacus's ``DPOptimizer`` (DP-Adam); the same loss, evaluation and weight format
as :func:`pudlab.train.trainer.train_model`. The loop is ours (small) because DP-SGD needs what the
trainer's does not do: Poisson batches of varying size, gradients averaged over the *expected* batch
size, and a step for an empty batch (noise only). Deterministic by construction: the Poisson draw of
step ``t`` is the stream ``(shuffle_seed, "poisson", t)`` and the noise comes from a
``torch.Generator`` seeded with ``derive_seed(noise_seed, "dp-sgd-noise")`` (Opacus's
``secure_mode`` is off: a recorded seed is what makes a research run reproducible; a production
release needs ``secure_mode`` and a CSPRNG).

Layout: M_cnn is trained here in the contiguous (N, C, H, W) layout, not the trainers' channels-last:
Opacus 1.6's hook-based Conv2d per-sample gradients assume contiguous strides (its ``unfold2d`` uses
``as_strided``) and are wrong for channels-last inputs (``tests/test_dpsgd.py`` checks them against a
per-sample loop). Lockstep ensembles (``train/ensemble.py``) do not apply: each DP-SGD model has its
own Poisson batches and noise, so models are trained one at a time.
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from pudlab.data.dataset import LabeledImages
from pudlab.errors import PudlabError
from pudlab.records import Record
from pudlab.seeding import derive_rng, derive_seed

ACCOUNTANTS = ("rdp", "prv")
"""Opacus accountants pudlab offers: Renyi DP (Mironov 2017; Mironov, Talwar & Zhang 2019) and the
PRV accountant (Gopi, Lee & Wutschitz 2021; its upper bound on epsilon is reported)."""
SAMPLINGS = ("poisson", "shuffle")
NO_CLIP_NORM = 1e30
"""The clip bound passed to Opacus when clipping is off (``max_grad_norm=None``): no gradient reaches it,
and noise 0 times it stays 0 (infinity would make the noise std NaN)."""
DP_EXTRA_HINT = "DP-SGD needs Opacus, the dp extra: pip install 'pudlab[dp]'"


def require_opacus() -> Any:
    """The ``opacus`` module, or a one-line PudlabError naming the extra to install."""
    try:
        import opacus
    except ImportError as exc:
        raise PudlabError(f"{DP_EXTRA_HINT} ({exc})") from exc
    return opacus


@dataclass(frozen=True)
class DpSgdConfig(Record):
    """The privacy side of one DP-SGD training (the rest is the :class:`TrainConfig`)."""

    noise_multiplier: float = 1.0
    """Noise std over the clip bound (sigma_DP of Abadi et al.); 0: clipping only (epsilon infinite)."""
    max_grad_norm: float | None = 1.0
    """Per-sample L2 clip bound C; None: no clipping (only with noise 0, no privacy)."""
    sample_rate: float | None = None
    """Poisson sampling rate q; None: batch_size / N."""
    sampling: str = "poisson"
    """``poisson`` (what the accountant assumes) or ``shuffle`` (the trainer's fixed-size seeded batches:
    no amplification by sampling is proved for it, so no epsilon is reported)."""
    accountant: str = "rdp"
    delta: float = 1e-5
    noise_seed: int = 0
    """Seed of the DP noise generator (the batch draws use the TrainConfig's ``shuffle_seed``)."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.noise_multiplier) and self.noise_multiplier >= 0):
            raise PudlabError(f"DP-SGD: noise_multiplier must be a finite number >= 0, got {self.noise_multiplier}")
        if self.max_grad_norm is None and self.noise_multiplier > 0:
            raise PudlabError("DP-SGD: noise without a clip bound protects nothing; give max_grad_norm or noise 0")
        if self.max_grad_norm is not None and not (math.isfinite(self.max_grad_norm) and self.max_grad_norm > 0):
            raise PudlabError(f"DP-SGD: max_grad_norm must be a positive number or None, got {self.max_grad_norm}")
        if self.sample_rate is not None and not 0 < self.sample_rate <= 1:
            raise PudlabError(f"DP-SGD: sample_rate must be in (0, 1], got {self.sample_rate}")
        if self.sampling not in SAMPLINGS:
            raise PudlabError(f"DP-SGD: sampling must be one of {', '.join(SAMPLINGS)}, got {self.sampling!r}")
        if self.accountant not in ACCOUNTANTS:
            raise PudlabError(f"DP-SGD: accountant must be one of {', '.join(ACCOUNTANTS)}, got {self.accountant!r}")
        if not 0 < self.delta < 1:
            raise PudlabError(f"DP-SGD: delta must be in (0, 1), got {self.delta}")


def dpsgd_epsilon(*, noise_multiplier: float, sample_rate: float, steps: int, delta: float,
                  accountant: str = "rdp") -> float:
    """epsilon(delta) of ``steps`` Poisson-subsampled Gaussian steps by Opacus's accountant (add/remove-one
    neighbours); ``inf`` at noise 0, 0 for no step."""
    require_opacus()
    from opacus.accountants import create_accountant

    if accountant not in ACCOUNTANTS:
        raise PudlabError(f"DP-SGD: accountant must be one of {', '.join(ACCOUNTANTS)}, got {accountant!r}")
    if steps <= 0:
        return 0.0
    if noise_multiplier <= 0:
        return math.inf
    ledger = create_accountant(mechanism=accountant)
    ledger.history = [(float(noise_multiplier), float(sample_rate), int(steps))]
    return float(ledger.get_epsilon(delta=delta))


def _rdp_curve(noise_multiplier: float, sample_rate: float, steps: int) -> tuple[list[float], Any]:
    """(orders, RDP of the run at each order): what Opacus's RDP accountant computes."""
    from opacus.accountants import RDPAccountant
    from opacus.accountants.analysis.rdp import compute_rdp

    orders = list(RDPAccountant.DEFAULT_ALPHAS)
    return orders, compute_rdp(q=sample_rate, noise_multiplier=noise_multiplier, steps=steps, orders=orders)


def _replace_one_from_curve(orders: list[float], curve: Any, delta: float) -> float:
    from opacus.accountants.analysis.rdp import get_privacy_spent

    inner = delta / 2
    for _ in range(200):
        epsilon = float(get_privacy_spent(orders=orders, rdp=curve, delta=inner)[0])
        if not math.isfinite(epsilon) or epsilon > 700:
            return math.inf
        if (1 + math.exp(epsilon)) * inner <= delta:
            return 2 * epsilon
        # a smaller inner delta raises epsilon: aim a little below the fixed point so that the check passes
        inner = delta / (1 + math.exp(epsilon)) * (1 - 1e-3)
    raise PudlabError(f"DP-SGD: the replace-one bound did not converge (delta {delta})")


def replace_one_epsilon(*, noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """An upper bound on DP-SGD's epsilon(delta) under replace-one neighbours (the relation of a release's
    epsilon, :mod:`pudlab.privacy.accounting`): replacing a record is removing it and adding another, so
    by group privacy an (e, d) add/remove guarantee gives (2e, (1 + e^e) d). The add/remove epsilon comes
    from the RDP curve (whatever the run's accountant: PRV cannot reach the tiny d needed) at a d with
    (1 + e^e) d <= ``delta``, checked exactly and found by iterating towards the fixed point. Loose
    when epsilon is large (d then shrinks like e^-e)."""
    require_opacus()
    if steps <= 0:
        return 0.0
    if noise_multiplier <= 0:
        return math.inf
    return _replace_one_from_curve(*_rdp_curve(noise_multiplier, sample_rate, steps), delta)


def noise_for_epsilon(target_epsilon: float, *, sample_rate: float, steps: int, delta: float,
                      accountant: str = "rdp") -> float:
    """The noise multiplier that reaches ``target_epsilon`` after ``steps`` (Opacus's
    ``get_noise_multiplier``, which searches to within its tolerance from above)."""
    require_opacus()
    from opacus.accountants.utils import get_noise_multiplier

    if not (math.isfinite(target_epsilon) and target_epsilon > 0):
        raise PudlabError(f"DP-SGD: a target epsilon must be a positive number, got {target_epsilon}")
    return float(get_noise_multiplier(target_epsilon=target_epsilon, target_delta=delta, sample_rate=sample_rate,
                                      steps=steps, accountant=accountant))


def steps_per_epoch(num_samples: int, batch_size: int) -> int:
    """Optimizer steps in one epoch: the trainer's count, ceil(N / batch_size), for every sampling."""
    return max(1, math.ceil(num_samples / batch_size))


def resolved_sample_rate(dp: DpSgdConfig, num_samples: int, batch_size: int) -> float:
    """q of ``dp`` on ``num_samples`` records: its own, else batch_size / N (capped at 1)."""
    return dp.sample_rate if dp.sample_rate is not None else min(1.0, batch_size / num_samples)


@dataclass(frozen=True)
class DpSgdRecord(Record):
    """What one DP-SGD training spent, and how it was accounted."""

    noise_multiplier: float
    max_grad_norm: float | None
    sample_rate: float
    sampling: str
    steps: int
    accountant: str
    delta: float
    epsilon: float | None
    """Add/remove-one epsilon(delta) by the accountant; inf at noise 0 (None in JSON, and for shuffled
    batches, which the accountant does not cover)."""
    epsilon_replace_one: float | None
    """Upper bound under replace-one neighbours (:func:`replace_one_epsilon`), same conventions."""
    noise_seed: int
    secure_mode: bool = False


@functools.lru_cache(maxsize=256)
def _accounted(noise_multiplier: float, sample_rate: float, steps: int, delta: float,
               accountant: str) -> tuple[float, float]:
    """(add/remove epsilon, replace-one bound): a pure function, memoized (an RDP curve takes seconds in
    pure Python and every shadow of a comparison point asks for the same one); with RDP both come from one
    curve, as :func:`dpsgd_epsilon` and :func:`replace_one_epsilon` would compute it."""
    if steps <= 0 or noise_multiplier <= 0:
        return (0.0, 0.0) if steps <= 0 else (math.inf, math.inf)
    require_opacus()
    from opacus.accountants.analysis.rdp import get_privacy_spent

    orders, curve = _rdp_curve(noise_multiplier, sample_rate, steps)
    if accountant == "rdp":
        epsilon = float(get_privacy_spent(orders=orders, rdp=curve, delta=delta)[0])
    else:
        epsilon = dpsgd_epsilon(noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps, delta=delta,
                                accountant=accountant)
    return epsilon, _replace_one_from_curve(orders, curve, delta)


def dpsgd_record(dp: DpSgdConfig, *, num_samples: int, batch_size: int, epochs: int) -> DpSgdRecord:
    """The accounting of a DP-SGD training with ``dp`` on ``num_samples`` records (no training)."""
    rate = resolved_sample_rate(dp, num_samples, batch_size)
    steps = epochs * steps_per_epoch(num_samples, batch_size)
    epsilon: float | None = None
    bound: float | None = None
    if dp.sampling == "poisson":
        epsilon, bound = _accounted(float(dp.noise_multiplier), float(rate), int(steps), float(dp.delta),
                                    dp.accountant)
    return DpSgdRecord(dp.noise_multiplier, dp.max_grad_norm, rate, dp.sampling, steps, dp.accountant, dp.delta,
                       epsilon, bound, dp.noise_seed)


def batch_positions(num_samples: int, *, step: int, sample_rate: float, batch_size: int, sampling: str,
                    shuffle_seed: int) -> np.ndarray:
    """Positions of the records in DP-SGD step ``step`` (counted over the whole run).

    ``poisson``: each record independently with probability ``sample_rate`` (stream
    ``(shuffle_seed, "poisson", step)``; may be empty). ``shuffle``: the trainer's seeded epoch batches.
    """
    if sampling == "poisson":
        return np.flatnonzero(derive_rng(shuffle_seed, "poisson", step).random(num_samples) < sample_rate)
    from pudlab.train.trainer import epoch_batches

    per_epoch = steps_per_epoch(num_samples, batch_size)
    return epoch_batches(num_samples, batch_size, shuffle_seed=shuffle_seed, epoch=step // per_epoch)[step % per_epoch]


def check_module(module: Any) -> None:
    """Refuse a module Opacus cannot compute per-sample gradients for (e.g. BatchNorm), naming the layers."""
    require_opacus()
    from opacus.validators import ModuleValidator

    problems = ModuleValidator.validate(module, strict=False)
    if problems:
        listed = "; ".join(str(problem) for problem in problems[:5])
        raise PudlabError(f"DP-SGD: Opacus cannot train this model ({len(problems)} problem(s): {listed}); "
                          "opacus.validators.ModuleValidator.fix replaces the usual culprits (BatchNorm -> GroupNorm)")


@dataclass
class DpSgdResult:
    """A DP-SGD training: the trainer's result (weights, history, wall time) and its accounting."""

    train: Any
    """A :class:`pudlab.train.trainer.TrainResult`."""
    record: DpSgdRecord


def _noise_only_step(optimizer: Any, parameters: list[Any]) -> None:
    """An empty Poisson batch still takes a step (noise only), as the accountant assumes."""
    import torch

    for parameter in parameters:
        parameter.grad_sample = torch.zeros((0, *parameter.shape), dtype=parameter.dtype, device=parameter.device)
    optimizer.step()


# long: the DP-SGD loop (Opacus wrapping, Poisson batches, empty-batch steps, per-epoch records) in one piece
def train_module_dpsgd(module: Any, train_set: LabeledImages, eval_set: LabeledImages | None, config: Any,
                       dp: DpSgdConfig, *, device: Any = "cpu") -> DpSgdResult:
    """DP-SGD training of any torch ``module`` that Opacus supports (:func:`check_module`), in place, with
    the trainer's Adam settings and epochs from ``config`` (a :class:`~pudlab.train.trainer.TrainConfig`)."""
    import torch
    import torch.nn.functional as F

    require_opacus()
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    from pudlab.train.trainer import (
        EpochRecord,
        TrainResult,
        environment,
        evaluate,
        numerics,
        resolve_device,
    )

    if len(train_set) == 0:
        raise PudlabError("DP-SGD: the training set is empty")
    if config.precision != "fp32":
        raise PudlabError(f"DP-SGD trains in fp32 only, got precision {config.precision!r}")
    check_module(module)
    device = resolve_device(device)
    started = time.perf_counter()
    module = module.to(device).to(memory_format=torch.contiguous_format)
    wrapped = GradSampleModule(module, batch_first=True, loss_reduction="mean")
    count = len(train_set)
    record = dpsgd_record(dp, num_samples=count, batch_size=config.batch_size, epochs=config.epochs)
    generator = torch.Generator(device=device).manual_seed(derive_seed(dp.noise_seed, "dp-sgd-noise"))
    optimizer = DPOptimizer(
        torch.optim.Adam(wrapped.parameters(), lr=config.lr, betas=config.adam_betas, eps=config.adam_eps),
        noise_multiplier=dp.noise_multiplier, max_grad_norm=dp.max_grad_norm or NO_CLIP_NORM,
        expected_batch_size=record.sample_rate * count if dp.sampling == "poisson" else config.batch_size,
        generator=generator, secure_mode=False)
    parameters = [p for p in wrapped.parameters() if p.requires_grad]
    images = torch.from_numpy(np.ascontiguousarray(train_set.images)).to(device)
    labels = torch.from_numpy(train_set.labels).to(device)
    per_epoch = steps_per_epoch(count, config.batch_size)
    history = []
    with numerics(device, "fp32"), warnings.catch_warnings():
        # the images need no gradient, so torch notes that Opacus's full backward hooks see outputs only
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        for epoch in range(config.epochs):
            epoch_start = time.perf_counter()
            wrapped.train()
            losses = []
            for step in range(epoch * per_epoch, (epoch + 1) * per_epoch):
                positions = batch_positions(count, step=step, sample_rate=record.sample_rate,
                                            batch_size=config.batch_size, sampling=dp.sampling,
                                            shuffle_seed=config.shuffle_seed)
                optimizer.zero_grad(set_to_none=True)
                if len(positions) == 0:
                    _noise_only_step(optimizer, parameters)
                    continue
                if dp.sampling == "shuffle":  # fixed-size batches: the mean over the batch, like the trainer
                    optimizer.expected_batch_size = len(positions)
                index = torch.from_numpy(positions).to(device)
                loss = F.cross_entropy(wrapped(images[index]), labels[index])
                loss.backward()
                optimizer.step()
                losses.append(loss.detach())
            train_loss = float(torch.stack(losses).mean()) if losses else math.nan
            eval_loss, eval_accuracy = evaluate(module, eval_set, device=device) if eval_set is not None else (None, None)
            history.append(EpochRecord(epoch + 1, train_loss, eval_loss, eval_accuracy,
                                       time.perf_counter() - epoch_start))
    wrapped.remove_hooks()
    weights = {name: p.detach().to("cpu", torch.float32).clone() for name, p in module.named_parameters()}
    env = environment(device)
    env.update(trainer="dp-sgd", precision="fp32", memory_format="contiguous_format",
               opacus=require_opacus().__version__, grad_sample_mode="hooks")
    return DpSgdResult(TrainResult(weights, history, time.perf_counter() - started, env), record)


def train_dpsgd(train_set: LabeledImages, eval_set: LabeledImages | None, model_config: Any,
                initial_weights: dict[str, Any], config: Any, dp: DpSgdConfig, *, device: Any = "cpu") -> DpSgdResult:
    """W = F_DP(T, M_cnn): :func:`train_module_dpsgd` of M_cnn(``model_config``) from ``initial_weights``."""
    from pudlab.model import build_model

    if train_set.sample_shape != model_config.input_shape:
        raise PudlabError(f"training images are {train_set.sample_shape} but the model expects "
                          f"{model_config.input_shape}")
    return train_module_dpsgd(build_model(model_config, initial_weights), train_set, eval_set, config, dp,
                              device=device)


__all__ = ["ACCOUNTANTS", "NO_CLIP_NORM", "SAMPLINGS", "DpSgdConfig", "DpSgdRecord", "DpSgdResult",
           "batch_positions", "check_module", "dpsgd_epsilon", "dpsgd_record", "noise_for_epsilon",
           "replace_one_epsilon", "require_opacus", "resolved_sample_rate", "steps_per_epoch", "train_dpsgd",
           "train_module_dpsgd"]
