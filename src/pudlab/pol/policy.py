"""The verifier's policy: bounds on what a bundle may claim, and the check of its initial weights.

Replay compares what the prover logged with what its claims reproduce, so a claim that scales the
replay's own tolerance (a larger learning rate, a larger sigma) must be bounded from outside the
bundle. :class:`VerifyPolicy` holds those bounds; :func:`hyperparameter_checks` applies them.

Initial weights (:func:`init_check`) are accepted when the verifier can tell they are a fresh draw:

* ``init.seed`` is declared: the verifier redraws W_0 (:func:`pudlab.model.initial_state`) and
  requires the same hash;
* policy ``seeded`` (default): a seed is required; unseeded weights are rejected;
* no seed (weights "from a file"), policy ``seeded-or-ks``: every bias must be exactly
  zero, every kernel within the Glorot-uniform support ``[-b, b]`` with ``b = sqrt(6 / (fan_in +
  fan_out))``, and a one-sample Kolmogorov-Smirnov test per kernel against ``U(-b, b)`` must not
  reject at ``ks_alpha`` (Bonferroni over the kernels). A trained model (a stolen one) fails all
  three: trained biases are not zero, training moves weights past the support's edges and smears
  the uniform histogram. Jia et al. (IEEE S&P 2021) use the same per-layer KS test. It is weak against
  a careful thief: a model trained briefly, its biases zeroed and kernels clipped into the support,
  passes (measured: 14-140 Adam steps at lr 1e-3 on a small model, smallest KS p 0.004-0.3), which is
  why it is not the default;
* policy ``any``: unseeded weights are accepted unchecked, and the verdict says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from pudlab.errors import PudlabError
from pudlab.io import weights_sha256
from pudlab.model import initial_state
from pudlab.pol.manifest import Manifest
from pudlab.records import Record

INIT_POLICIES = ("seeded", "seeded-or-ks", "any")
"""How unseeded initial weights are treated (see the module docstring)."""


@dataclass(frozen=True)
class Check(Record):
    """One claim check."""

    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class VerifyPolicy(Record):
    """What a verifier accepts as claims, independent of any bundle."""

    max_lr: float = 1e-2
    """Largest Adam learning rate a bundle may claim (pudlab's paper setting: 1e-4; evaluation: 1e-3)."""
    max_batch_size: int = 4096
    """Largest batch size a bundle may claim."""
    max_epochs: int = 1000
    """Most epochs a bundle may claim."""
    adam_betas: tuple[float, float] = (0.9, 0.999)
    """The Adam betas a bundle must claim, exactly."""
    adam_eps_range: tuple[float, float] = (1e-8, 1e-7)
    """Smallest and largest Adam epsilon a bundle may claim (a larger eps damps every step)."""
    max_update_ratio: float = 1.1
    """Replayed update norm / claimed update norm, averaged over the replayed segments: Adam's step scales
    with lr, so a falsified lr x k shows as a mean ratio near k. Above this the verdict is undecidable
    (exactly 1 at sigma 0)."""
    reject_update_ratio: float = 1.2
    """Above this mean update ratio the verdict rejects (a falsified lr?). Single segments are not judged:
    within its distance tolerance one segment's ratio is noise (honest federated segments of 3 steps,
    trained on raw data and replayed on a sigma-0.1 release, measured 0.84-1.43; docs/pol.md)."""
    init: str = "seeded"
    """Initial weights: ``seeded`` (a seed the verifier redraws), ``seeded-or-ks`` or ``any`` (see the module docstring)."""
    ks_alpha: float = 1e-3
    """Family-wise significance of the per-kernel KS tests (Bonferroni-split over kernels)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "adam_betas", tuple(float(b) for b in self.adam_betas))
        object.__setattr__(self, "adam_eps_range", tuple(float(e) for e in self.adam_eps_range))
        b1, b2 = self.adam_betas
        if not (0 <= b1 < 1 and 0 < b2 < 1):
            raise PudlabError(f"policy adam_betas must be in [0, 1) x (0, 1), got {self.adam_betas}")
        low, high = self.adam_eps_range
        if not (0 <= low <= high and math.isfinite(high)):
            raise PudlabError(f"policy adam_eps_range must be 0 <= low <= high, got {self.adam_eps_range}")
        if not (math.isfinite(self.max_lr) and self.max_lr > 0):
            raise PudlabError(f"policy max_lr must be > 0, got {self.max_lr}")
        if self.max_batch_size < 1 or self.max_epochs < 1:
            raise PudlabError("policy max_batch_size and max_epochs must be >= 1")
        if not (math.isfinite(self.max_update_ratio) and self.max_update_ratio > 1):
            raise PudlabError(f"policy max_update_ratio must be > 1, got {self.max_update_ratio}")
        if not (math.isfinite(self.reject_update_ratio) and self.reject_update_ratio >= self.max_update_ratio):
            raise PudlabError(f"policy reject_update_ratio must be >= max_update_ratio ({self.max_update_ratio:g}), "
                              f"got {self.reject_update_ratio}")
        if self.init not in INIT_POLICIES:
            raise PudlabError(f"init policy must be one of {', '.join(INIT_POLICIES)}, got {self.init!r}")
        if not 0 < self.ks_alpha < 1:
            raise PudlabError(f"ks_alpha must be in (0, 1), got {self.ks_alpha}")


def hyperparameter_checks(manifest: Manifest, policy: VerifyPolicy) -> list[Check]:
    """The claimed hyper-parameters against the policy's bounds (one check, listing every violation)."""
    training = manifest.training
    problems = []
    if training.lr > policy.max_lr:
        problems.append(f"lr {training.lr:g} > policy maximum {policy.max_lr:g}")
    if training.batch_size > policy.max_batch_size:
        problems.append(f"batch size {training.batch_size} > policy maximum {policy.max_batch_size}")
    if training.epochs > policy.max_epochs:
        problems.append(f"epochs {training.epochs} > policy maximum {policy.max_epochs}")
    if tuple(training.adam_betas) != policy.adam_betas:
        problems.append(f"Adam betas {list(training.adam_betas)} are not the policy's {list(policy.adam_betas)}")
    low, high = policy.adam_eps_range
    if not low <= training.adam_eps <= high:
        problems.append(f"Adam eps {training.adam_eps:g} outside the policy range [{low:g}, {high:g}]")
    if problems:
        return [Check("hyperparameters", False, "; ".join(problems))]
    return [Check("hyperparameters", True, f"lr {training.lr:g} <= {policy.max_lr:g}, batch {training.batch_size}, "
                                           f"{training.epochs} epochs, betas and eps within policy")]


def glorot_bound(shape: tuple[int, ...]) -> float:
    """``sqrt(6 / (fan_in + fan_out))`` of a kernel, fans counted as :func:`pudlab.model.initial_state` does."""
    if len(shape) == 2:
        fan_in, fan_out = shape[1], shape[0]
    else:
        receptive = math.prod(shape[2:])
        fan_in, fan_out = shape[1] * receptive, shape[0] * receptive
    return math.sqrt(6.0 / (fan_in + fan_out))


def fresh_draw_test(weights: dict[str, torch.Tensor], alpha: float) -> tuple[bool, str]:
    """Are ``weights`` a fresh Glorot-uniform draw with zero biases? (passed, one-line detail)."""
    from scipy.stats import kstest

    kernels = [name for name in weights if not name.endswith("bias")]
    per_test = alpha / max(len(kernels), 1)
    worst = (1.0, "")
    for name, tensor in weights.items():
        values = tensor.detach().to(torch.float64).numpy().ravel()
        if name.endswith("bias"):
            if np.any(values != 0):
                return False, f"bias {name} is not zero (a fresh draw has zero biases; max |b| {np.abs(values).max():.3g})"
            continue
        bound = glorot_bound(tuple(tensor.shape))
        largest = float(np.abs(values).max())
        if largest > bound * (1 + 1e-6):
            return False, (f"kernel {name} has a weight {largest:.4g} outside the initializer's support "
                           f"[-{bound:.4g}, {bound:.4g}]")
        pvalue = float(kstest(values, "uniform", args=(-bound, 2 * bound)).pvalue)
        if pvalue < worst[0]:
            worst = (pvalue, name)
        if pvalue < per_test:
            return False, (f"kernel {name} is not a fresh Glorot-uniform draw: KS p = {pvalue:.3g} < "
                           f"{per_test:.3g} ({alpha:g} over {len(kernels)} kernels)")
    return True, (f"unseeded initial weights pass the fresh-draw test: zero biases, kernels within the Glorot "
                  f"support, smallest KS p = {worst[0]:.3g} ({worst[1]})")


def init_check(manifest: Manifest, initial: dict[str, torch.Tensor], policy: VerifyPolicy,
               expected_sha256: str | None = None) -> Check:
    """The check of W_0 (see the module docstring); ``expected_sha256``: the verifier knows W_0 (e.g. the
    FL server's global model), which settles the question whatever the seed."""
    if expected_sha256 is not None:
        ok = manifest.init.weights_sha256 == expected_sha256
        return Check("init", ok, "initial weights are the verifier's given model" if ok else
                     f"initial weights {manifest.init.weights_sha256[:12]} are not the given model {expected_sha256[:12]}")
    if manifest.init.seed is not None:
        drawn = weights_sha256(initial_state(manifest.model, init_seed=manifest.init.seed))
        ok = drawn == manifest.init.weights_sha256
        return Check("init", ok, f"initial weights {'are' if ok else 'are NOT'} the ones init seed "
                                 f"{manifest.init.seed} draws")
    if policy.init == "seeded":
        return Check("init", False, "initial weights name no seed, and the policy requires a seeded initialization "
                                    "the verifier can redraw (a stolen model could be posing as initial weights)")
    if policy.init == "any":
        return Check("init", True, "initial weights from a file, NOT verified (policy allows unseeded "
                                   "initialization): the proof says nothing about where training started")
    ok, detail = fresh_draw_test(initial, policy.ks_alpha)
    return Check("init", ok, detail)


__all__ = [
    "INIT_POLICIES",
    "Check",
    "VerifyPolicy",
    "fresh_draw_test",
    "glorot_bound",
    "hyperparameter_checks",
    "init_check",
]
