"""Deterministic kernels: the settings under which a rerun of the same job gives the same weights.

On CPU pudlab's training is bit-reproducible for a fixed torch thread count. On CUDA some kernels
(atomics in cuDNN/cuBLAS backward passes, autotuned algorithm choice) are not; PyTorch's switch
``torch.use_deterministic_algorithms(True)`` plus the cuBLAS workspace setting
``CUBLAS_WORKSPACE_CONFIG=:4096:8`` make them so, at some cost in speed (``benchmarks/
device_check.sh`` measures it). The switch is process-wide, so it is applied once per worker.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch

CUBLAS_WORKSPACE = ":4096:8"
"""cuBLAS workspace setting required for deterministic cuBLAS (PyTorch's reproducibility notes)."""


@dataclass(frozen=True)
class DeterminismState:
    """What :func:`set_deterministic` changed, to restore it."""

    algorithms: bool
    cudnn_benchmark: bool
    cudnn_deterministic: bool
    cublas_workspace: str | None


def set_deterministic(enabled: bool = True) -> DeterminismState:
    """Switch deterministic kernels on (or off); returns the previous state.

    Sets ``CUBLAS_WORKSPACE_CONFIG`` when it is unset (it must be set before the first cuBLAS call
    of the process to take effect), ``torch.use_deterministic_algorithms`` and the cuDNN flags.

    >>> previous = set_deterministic(True)
    >>> torch.are_deterministic_algorithms_enabled()
    True
    >>> restore_determinism(previous)
    """
    previous = DeterminismState(
        algorithms=torch.are_deterministic_algorithms_enabled(),
        cudnn_benchmark=torch.backends.cudnn.benchmark,
        cudnn_deterministic=torch.backends.cudnn.deterministic,
        cublas_workspace=os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    )
    if enabled and previous.cublas_workspace is None:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE
    torch.use_deterministic_algorithms(enabled)
    torch.backends.cudnn.benchmark = not enabled and previous.cudnn_benchmark
    torch.backends.cudnn.deterministic = enabled
    return previous


def restore_determinism(state: DeterminismState) -> None:
    """Undo :func:`set_deterministic`."""
    torch.use_deterministic_algorithms(state.algorithms)
    torch.backends.cudnn.benchmark = state.cudnn_benchmark
    torch.backends.cudnn.deterministic = state.cudnn_deterministic
    if state.cublas_workspace is None:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
    else:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = state.cublas_workspace


@contextlib.contextmanager
def deterministic(enabled: bool = True) -> Iterator[None]:
    """Run the block with deterministic kernels on (restored after)."""
    previous = set_deterministic(enabled)
    try:
        yield
    finally:
        restore_determinism(previous)
