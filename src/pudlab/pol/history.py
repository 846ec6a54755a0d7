"""Checks of the whole logged history that need no replay: what Adam can and cannot have done.

Adam (no weight decay) from a fresh state keeps, per coordinate, after step t with gradients g_s::

    m_t = (1 - b1) sum_s b1^(t-s) g_s          v_t = (1 - b2) sum_s b2^(t-s) g_s^2
    W_t = W_(t-1) - lr * m_hat_t / (sqrt(v_hat_t) + eps),   m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t)

Two consequences hold for *any* gradients (Cauchy-Schwarz), so an honest bundle meets them up to
float rounding whatever its data, and a forged one must meet them too:

* **update bound**: ``|m_hat_t| / sqrt(v_hat_t) <= B_t`` with
  ``B_t = (1-b1)/sqrt(1-b2) * sqrt(sum_(k<t) (b1^2/b2)^k) * sqrt(1-b2^t) / (1-b1^t)`` (``B_1 = 1``;
  ``B_t`` tends to ~7.3 for the default betas), so between two checkpoints no weight moves more than
  ``lr * sum_t B_t``. This is checked on *every* segment, replayed or not (what top-Q sampling
  leaves unchecked); it is why the policy bounds lr (:class:`pudlab.pol.policy.VerifyPolicy`).
* **moment consistency** between consecutive checkpoints s < e (K = e - s steps):
  ``v_e - b2^K v_s = (1-b2) sum_k b2^k g^2 >= 0`` and
  ``|m_e - b1^K m_s| <= (1-b1) sqrt(sum_(k<K) b1^(2k) / ((1-b2) b2^k)) * sqrt(v_e - b2^K v_s)``,
  anchored at the zero moments of step 0: a first moment larger than any gradient sequence with that
  second moment could give, or a second moment that decays faster than Adam's, is rejected.

A second moment *inflated* at one checkpoint (gradients of any size could, in principle, have made
it) passes these checks; replay catches it (:mod:`pudlab.pol.verifier` replays the segment before
every replayed segment, and compares the moments it reproduces).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from pudlab.pol.bundle import ProofBundle, TrainingState
from pudlab.pol.policy import Check

RELATIVE_SLACK = 1e-4
"""Relative float slack of the bounds (float32 Adam accumulates ~1e-7 relative error per step)."""
UNDERFLOW_SLACK = 2.0 * float(torch.finfo(torch.float32).smallest_normal) * 2.0**-23
"""Absolute slack per step of a float32 second moment: a squared gradient below the smallest subnormal
(2^-149) is lost (v stays 0 while m holds gradients of ~1e-23; seen on an honest federated client)."""


def step_bound(t: int, betas: tuple[float, float]) -> float:
    """B_t: the largest ``|m_hat_t| / sqrt(v_hat_t)`` any gradient sequence gives at step t >= 1.

    >>> step_bound(1, (0.9, 0.999))
    1.0
    """
    b1, b2 = betas
    ratio = b1 * b1 / b2
    total = t if ratio == 1 else (1 - ratio**t) / (1 - ratio)
    return (1 - b1) / math.sqrt(1 - b2) * math.sqrt(total) * math.sqrt(1 - b2**t) / (1 - b1**t)


def segment_move_bound(start: int, end: int, lr: float, betas: tuple[float, float]) -> float:
    """The most one weight can move over steps start+1 .. end."""
    return lr * sum(step_bound(t, betas) for t in range(start + 1, end + 1))


def moment_gain(steps: int, betas: tuple[float, float]) -> float:
    """``(1-b1) sqrt(sum_(k<K) b1^(2k) / ((1-b2) b2^k))``: |m_e - b1^K m_s| <= gain * sqrt(v_e - b2^K v_s)."""
    b1, b2 = betas
    return (1 - b1) * math.sqrt(sum(b1 ** (2 * k) / ((1 - b2) * b2**k) for k in range(steps)))


@dataclass(frozen=True)
class Violation:
    """The worst offending coordinate of one checkpoint."""

    checkpoint: int
    parameter: str
    value: float
    limit: float


def _update_violation(index: int, before: TrainingState, after: TrainingState, bound: float) -> Violation | None:
    worst: Violation | None = None
    for name, weight in after.weights.items():
        previous = before.weights[name]
        moved = (weight.double() - previous.double()).abs()
        scale = torch.maximum(weight.double().abs(), previous.double().abs())
        # float32 rounding of the weights themselves: a few ulps per step
        limit = bound * (1 + RELATIVE_SLACK) + scale * (after.step - before.step) * 4 * torch.finfo(torch.float32).eps
        excess = moved - limit
        position = int(torch.argmax(excess))
        if float(excess.flatten()[position]) > 0 and (worst is None or
                                                      float(moved.flatten()[position]) / float(limit.flatten()[position])
                                                      > worst.value / worst.limit):
            worst = Violation(index, name, float(moved.flatten()[position]), float(limit.flatten()[position]))
    return worst


def _moment_violation(index: int, before: TrainingState, after: TrainingState,
                      betas: tuple[float, float]) -> tuple[str, Violation] | None:
    """A moment of ``after`` that no gradients after ``before`` can give (None: consistent)."""
    b1, b2 = betas
    steps = after.step - before.step
    gain = moment_gain(steps, betas)
    slack = RELATIVE_SLACK * max(steps, 1)
    for name in after.weights:
        v_end = after.exp_avg_sq[name].double()
        m_end = after.exp_avg[name].double()
        v_start = before.exp_avg_sq[name].double() if before.exp_avg_sq else torch.zeros_like(v_end)
        m_start = before.exp_avg[name].double() if before.exp_avg else torch.zeros_like(m_end)
        if bool((v_end < 0).any()):
            return "a negative second moment", Violation(index, name, float(v_end.min()), 0.0)
        floor = b2**steps * v_start
        decay = floor * (1 - slack) - v_end
        if bool((decay > 0).any()):
            position = int(torch.argmax(decay))
            return ("a second moment below b2^K times the previous one (it can only grow by squared gradients)",
                    Violation(index, name, float(v_end.flatten()[position]), float(floor.flatten()[position])))
        added = (v_end - floor).clamp(min=0) + slack * (v_end + floor) + UNDERFLOW_SLACK * max(steps, 1)
        limit = gain * added.sqrt() * (1 + slack) + slack * (m_end.abs() + b1**steps * m_start.abs())
        change = (m_end - b1**steps * m_start).abs()
        excess = change - limit
        position = int(torch.argmax(excess))
        if float(excess.flatten()[position]) > 0:
            return ("a first moment no gradients with that second moment can give",
                    Violation(index, name, float(change.flatten()[position]), float(limit.flatten()[position])))
    return None


def history_checks(bundle: ProofBundle) -> list[Check]:
    """The update bound and moment consistency over every checkpoint of ``bundle`` (two checks)."""
    manifest = bundle.manifest
    betas, lr = manifest.training.adam_betas, manifest.training.lr
    update_failure: Violation | None = None
    moment_failure: tuple[str, Violation] | None = None
    before = bundle.initial
    for index, (start, end) in enumerate(bundle.segment_bounds):
        after = bundle.checkpoint(index)
        if update_failure is None:
            update_failure = _update_violation(index, before, after, segment_move_bound(start, end, lr, betas))
        if moment_failure is None:
            moment_failure = _moment_violation(index, before, after, betas)
        if update_failure is not None and moment_failure is not None:
            break
        before = after
    checks = []
    if update_failure is None:
        checks.append(Check("adam-bound", True, f"no checkpoint moves a weight further than Adam at lr {lr:g} can"))
    else:
        v = update_failure
        start, end = bundle.segment_bounds[v.checkpoint]
        checks.append(Check("adam-bound", False,
                            f"checkpoint {v.checkpoint} (steps {start}-{end}) moves a weight of {v.parameter} by "
                            f"{v.value:.4g}; Adam at lr {lr:g} moves one at most {v.limit:.4g} in {end - start} steps"))
    if moment_failure is None:
        checks.append(Check("moments", True, "every checkpoint's Adam moments are consistent with the one before"))
    else:
        what, v = moment_failure
        step = manifest.checkpoints[v.checkpoint].step
        checks.append(Check("moments", False, f"checkpoint {v.checkpoint} (step {step}) holds {what}: {v.parameter} "
                                              f"{v.value:.4g} against a limit of {v.limit:.4g}"))
    return checks


__all__ = ["Violation", "history_checks", "moment_gain", "segment_move_bound", "step_bound"]
