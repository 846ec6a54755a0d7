"""Training F(T, M) (Eq. 1): Adam on cross-entropy, data resident in memory as tensors.

Deterministic by construction: the initial weights are given, the batch order of epoch ``e`` is the
permutation from the stream ``(shuffle_seed, "shuffle", e)``, and no DataLoader workers or
nondeterministic kernels are involved, so the same inputs give bit-identical weights on the same
machine (CPU; on CUDA cuDNN is put in deterministic mode). The last batch of an epoch may be
smaller (Keras semantics, no sample dropped).
"""

from __future__ import annotations

import contextlib
import functools
import math
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from pudlab import __version__
from pudlab.data.dataset import LabeledImages
from pudlab.errors import PudlabError
from pudlab.model import ModelDefinition, build_model
from pudlab.seeding import derive_rng

PRECISIONS = ("fp32", "tf32", "bf16")
MEMORY_FORMAT = torch.channels_last
"""Layout of the model's activations: channels-last runs the small convs of M_cnn ~1.4-1.6x faster on CPU
(oneDNN) and is the fast layout on CUDA. Every trainer uses it, so results never mix layouts."""


def as_model_input(images: torch.Tensor) -> torch.Tensor:
    """A (N, C, H, W) batch in the trainers' memory format."""
    return images.contiguous(memory_format=MEMORY_FORMAT)


ModuleT = TypeVar("ModuleT", bound=torch.nn.Module)


def prepare_model(model: ModuleT, device: torch.device) -> ModuleT:
    """``model`` on ``device`` in the trainers' memory format."""
    # torch documents Module.to(memory_format=...) (keyword only) but its typed overloads leave it out
    return model.to(device).to(memory_format=MEMORY_FORMAT)  # type: ignore[call-overload]


def default_batch_size(sample_shape: tuple[int, int, int]) -> int:
    """The paper's batch size: 128 for one-channel (MNIST family), 64 for colour (CIFAR-10)."""
    return 128 if sample_shape[0] == 1 else 64


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (everything that changes the result)."""

    epochs: int = 180
    """Passes over the training set (paper: 180)."""
    batch_size: int = 128
    """Samples per Adam step (paper: 128 MNIST, 64 CIFAR-10)."""
    lr: float = 1e-4
    """Adam learning rate, per step (paper: 1e-4)."""
    adam_betas: tuple[float, float] = (0.9, 0.999)
    """Adam moment decay rates (Keras and PyTorch defaults)."""
    adam_eps: float = 1e-7
    """Adam epsilon (Keras default 1e-7; the paper trained with TensorFlow 2.7)."""
    shuffle_seed: int = 0
    """Seed of the per-epoch batch order."""
    precision: str = "fp32"
    """Arithmetic: fp32, tf32 (CUDA matmul/conv in TF32) or bf16 (autocast, fp32 master weights)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "adam_betas", tuple(float(b) for b in self.adam_betas))
        if self.epochs < 0 or self.batch_size < 1:
            raise PudlabError(f"epochs must be >= 0 and batch_size >= 1, got {self.epochs}, {self.batch_size}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise PudlabError(f"lr must be a positive number, got {self.lr}")
        if self.precision not in PRECISIONS:
            raise PudlabError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["adam_betas"] = list(self.adam_betas)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})


@dataclass
class EpochRecord:
    """Metrics after one epoch."""

    epoch: int
    train_loss: float
    eval_loss: float | None
    eval_accuracy: float | None
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    """Final weights (CPU float32) and the per-epoch history of one training."""

    weights: dict[str, torch.Tensor]
    history: list[EpochRecord]
    wall_seconds: float
    environment: dict = field(default_factory=dict)

    @property
    def final_accuracy(self) -> float | None:
        return self.history[-1].eval_accuracy if self.history else None


def epoch_order(num_samples: int, *, shuffle_seed: int, epoch: int) -> np.ndarray:
    """The sample order of one epoch (a permutation of ``range(num_samples)``)."""
    return derive_rng(shuffle_seed, "shuffle", epoch).permutation(num_samples)


def epoch_batches(num_samples: int, batch_size: int, *, shuffle_seed: int, epoch: int) -> list[np.ndarray]:
    """Positions of each batch of one epoch; the last batch may be smaller."""
    order = epoch_order(num_samples, shuffle_seed=shuffle_seed, epoch=epoch)
    return [order[start:start + batch_size] for start in range(0, num_samples, batch_size)]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``auto`` / None -> CUDA when available, else CPU; a clear error for an unusable device."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise PudlabError(f"device {device!r}: expected cpu, cuda, cuda:N or auto") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise PudlabError(f"device {device!r} requested but CUDA is not available (use --device cpu)")
    return resolved


@contextlib.contextmanager
def numerics(device: torch.device, precision: str) -> Iterator[None]:
    """Set deterministic kernels and the TF32 switches for ``precision``; restore them after."""
    if device.type != "cuda":
        yield
        return
    saved = (
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cuda.matmul.allow_tf32,
    )
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    try:
        yield
    finally:
        (
            torch.backends.cudnn.deterministic,
            torch.backends.cudnn.benchmark,
            torch.backends.cudnn.allow_tf32,
            torch.backends.cuda.matmul.allow_tf32,
        ) = saved


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the block with ``count`` torch intra-op threads, restored after (None: leave as is).

    The thread count changes float summation order, so bit-exact repeats need the same count.
    """
    if count is None:
        yield
        return
    saved = torch.get_num_threads()
    torch.set_num_threads(int(count))
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast when asked, else a no-op."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def environment(device: torch.device) -> dict:
    """What ran a training: versions, device and thread count (stored with every result)."""
    env = {
        "pudlab": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "memory_format": str(MEMORY_FORMAT).removeprefix("torch."),
    }
    if device.type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
    return env


class Trainer:
    """One M_cnn and its Adam state over a training set held on ``device``.

    The step-level API (``step``, ``state_dict``/``load_state_dict``) is what proof-of-learning
    replays; ``train_model`` is the whole loop.
    """

    def __init__(
        self,
        model_config: ModelDefinition,
        initial_weights: dict[str, torch.Tensor],
        train_set: LabeledImages,
        config: TrainConfig,
        *,
        device: str | torch.device = "cpu",
    ) -> None:
        if train_set.sample_shape != model_config.input_shape:
            raise PudlabError(
                f"training images are {train_set.sample_shape} but the model expects {model_config.input_shape}"
            )
        self.device = resolve_device(device)
        self.config = config
        self.model_config = model_config
        self.model = prepare_model(build_model(model_config, initial_weights), self.device)
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=config.lr, betas=config.adam_betas, eps=config.adam_eps
        )
        self.images = torch.from_numpy(train_set.images).to(self.device)
        self.labels = torch.from_numpy(train_set.labels).to(self.device)

    def __len__(self) -> int:
        return len(self.labels)

    def step(self, positions: np.ndarray) -> torch.Tensor:
        """One Adam step on the samples at ``positions``; returns the batch loss (a tensor)."""
        index = torch.from_numpy(np.asarray(positions, dtype=np.int64)).to(self.device)
        with numerics(self.device, self.config.precision):
            self.optimizer.zero_grad(set_to_none=True)
            with autocast(self.device, self.config.precision):
                logits = self.model(as_model_input(self.images[index]))
            loss = F.cross_entropy(logits.float(), self.labels[index])
            loss.backward()
            self.optimizer.step()
        return loss.detach()

    def run_epoch(self, epoch: int, *, start_step: int = 0, total: torch.Tensor | None = None,
                  after_step: StepHook | None = None) -> float:
        """One pass in the recorded order of ``epoch``; returns the mean batch loss.

        A resumed epoch starts at ``start_step`` and adds to ``total``, the running loss saved with
        it. ``after_step(steps_done, total)`` runs after every step (checkpoints).
        """
        self.model.train()
        batches = epoch_batches(len(self), self.config.batch_size, shuffle_seed=self.config.shuffle_seed, epoch=epoch)
        running = torch.zeros((), device=self.device) if total is None else total
        for index in range(start_step, len(batches)):
            running += self.step(batches[index])
            if after_step is not None:
                after_step(index + 1, running)
        return float(running) / max(len(batches), 1)

    def evaluate(self, eval_set: LabeledImages, *, batch_size: int = 1000) -> tuple[float, float]:
        """(mean cross-entropy, top-1 accuracy) on ``eval_set``."""
        return evaluate(self.model, eval_set, device=self.device, precision=self.config.precision,
                        batch_size=batch_size)

    def weights(self) -> dict[str, torch.Tensor]:
        """The current trainable weights, copied to CPU float32."""
        return {name: p.detach().to("cpu", torch.float32).clone() for name, p in self.model.named_parameters()}

    def state_dict(self) -> dict:
        """Model and optimizer state (to resume or replay exactly)."""
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    eval_set: LabeledImages,
    *,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
    batch_size: int = 1000,
) -> tuple[float, float]:
    """(mean cross-entropy, top-1 accuracy A(W)) of ``model`` on ``eval_set``."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    for start in range(0, len(eval_set), batch_size):
        images = as_model_input(torch.from_numpy(eval_set.images[start:start + batch_size]).to(device))
        labels = torch.from_numpy(eval_set.labels[start:start + batch_size]).to(device)
        with autocast(device, precision):
            logits = model(images).float()
        total_loss += float(F.cross_entropy(logits, labels, reduction="sum"))
        correct += int((logits.argmax(1) == labels).sum())
    model.train(was_training)
    count = max(len(eval_set), 1)
    return total_loss / count, correct / count


EpochCallback = Callable[[int, "Trainer", EpochRecord], None]
StepHook = Callable[[int, torch.Tensor], None]
"""Runs after every step of an epoch with the steps done so far and the epoch's running loss."""
CHECKPOINT_FORMAT = "pudlab.checkpoint/1"


class TrainingInterrupted(Exception):
    """A training loop stopped at a safe point on request (its checkpoint is saved)."""


@dataclass
class Checkpointing:
    """Where and how often a training loop saves its full state, so that a resumed loop continues
    bit-identically (CPU) to an uninterrupted one.

    The state is the weights, the Adam state, the epoch and the step within it, the running loss
    of that epoch, the history so far, torch's RNG state and ``extra`` (the caller's state, e.g.
    snapshots taken). The batch order needs no saved RNG: it is a pure function of the recorded
    shuffle seed and the epoch. Saving only reads the state, so it never changes the result.
    """

    path: Path
    every_seconds: float = 3.0
    """Least seconds between two saves (0: after every step)."""
    max_overhead: float = 0.05
    """Most share of the time spent saving: when one save takes ``c`` seconds, the next comes at least
    ``c / max_overhead`` seconds later (big ensembles, slow disks). 0 (or ``every_seconds`` 0): no such
    bound."""
    identity: str = ""
    """What the checkpoint belongs to; a file with another identity is ignored."""
    should_stop: Callable[[], bool] | None = None
    """Polled after every step: True saves a checkpoint and raises :class:`TrainingInterrupted`."""
    extra: dict = field(default_factory=dict)
    saves: int = 0
    resumed_at: tuple[int, int] | None = None
    """(epoch, step) the loop resumed from, or None for a fresh start."""
    _last: float = field(default_factory=time.monotonic)
    _cost: float = 0.0

    def load(self) -> dict | None:
        """The saved state when it exists, is readable and has this identity; else None."""
        import io

        try:
            state = torch.load(io.BytesIO(Path(self.path).read_bytes()), weights_only=True)
        except (OSError, RuntimeError, ValueError, EOFError, KeyError, AttributeError):
            return None
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT \
                or state.get("identity") != self.identity:
            return None
        self.extra.update(state.get("extra", {}))
        self.resumed_at = (int(state["epoch"]), int(state["step"]))
        return state

    def save(self, state: dict) -> None:
        import io

        from pudlab.io import write_bytes_atomic

        started = time.monotonic()
        buffer = io.BytesIO()
        torch.save({"format": CHECKPOINT_FORMAT, "identity": self.identity, "extra": self.extra,
                    "torch_rng": torch.get_rng_state(), **state}, buffer)
        write_bytes_atomic(self.path, buffer.getvalue())
        self.saves += 1
        self._last = time.monotonic()
        self._cost = self._last - started

    def interval(self) -> float:
        """Seconds until the next save is due, counted from the last one."""
        if self.every_seconds <= 0 or self.max_overhead <= 0:
            return max(0.0, self.every_seconds)
        return max(self.every_seconds, self._cost / self.max_overhead)

    def after_step(self, state: Callable[[], dict]) -> None:
        """Save when due; on a stop request save and raise :class:`TrainingInterrupted`."""
        if self.should_stop is not None and self.should_stop():
            self.save(state())
            raise TrainingInterrupted(str(self.path))
        if time.monotonic() - self._last >= self.interval():
            self.save(state())

    def step_hook(self, state: Callable[[int, torch.Tensor], dict]) -> StepHook:
        """An ``after_step`` for :meth:`Trainer.run_epoch`: ``state(steps_done, total)`` is what a save writes."""
        return lambda steps, total: self.after_step(functools.partial(state, steps, total))


def restore_rng(state: dict) -> None:
    """Put torch's RNG back where a checkpoint found it."""
    if isinstance(state.get("torch_rng"), torch.Tensor):
        torch.set_rng_state(state["torch_rng"])


class Resumable(Protocol):
    """A trainer whose full state a checkpoint holds (:class:`Trainer`, the ensemble trainer)."""

    device: torch.device

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


@dataclass
class LoopStart:
    """Where a training loop starts: a fresh start, or the point a checkpoint was saved at."""

    epoch: int = 0
    step: int = 0
    """Steps of ``epoch`` already done."""
    total: torch.Tensor | None = None
    """Running loss of ``epoch`` so far (None: a fresh epoch)."""
    seconds: float = 0.0
    """Training time already spent."""
    history: list[Any] = field(default_factory=list)
    """The saved history (``EpochRecord.to_dict`` form), as the loop's state function wrote it."""

    def within(self, epoch: int) -> tuple[int, torch.Tensor | None]:
        """(first step, running loss) of ``epoch``: the saved point in the resumed epoch, else (0, None)."""
        return (self.step, self.total) if epoch == self.epoch else (0, None)


def resume(trainer: Resumable, checkpoint: Checkpointing | None) -> LoopStart:
    """Load ``checkpoint``'s saved state into ``trainer`` and torch's RNG; where the loop goes on from."""
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is None:
        return LoopStart()
    trainer.load_state_dict(saved["trainer"])
    restore_rng(saved)
    return LoopStart(int(saved["epoch"]), int(saved["step"]), saved["total"].to(trainer.device),
                     float(saved["seconds"]), list(saved["history"]))


def train_model(
    train_set: LabeledImages,
    eval_set: LabeledImages | None,
    model_config: ModelDefinition,
    initial_weights: dict[str, torch.Tensor],
    config: TrainConfig,
    *,
    device: str | torch.device = "cpu",
    on_epoch: EpochCallback | None = None,
    progress: bool = False,
    checkpoint: Checkpointing | None = None,
) -> TrainResult:
    """W = F(T, M): train M_cnn from ``initial_weights`` on ``train_set``; evaluate on ``eval_set``.

    ``on_epoch(epoch, trainer, record)`` runs after every epoch (snapshots). ``checkpoint``: save the
    full state at its interval and resume from its file when one exists.
    """
    if len(train_set) == 0:
        raise PudlabError("the training set is empty")
    trainer = Trainer(model_config, initial_weights, train_set, config, device=device)
    start = resume(trainer, checkpoint)
    history = [EpochRecord(**record) for record in start.history]
    started = time.perf_counter() - start.seconds

    def state(epoch: int, steps: int, total: torch.Tensor) -> dict:
        """What a checkpoint after ``steps`` steps of ``epoch`` holds."""
        return {"epoch": epoch, "step": steps, "total": total.cpu(), "trainer": trainer.state_dict(),
                "history": [r.to_dict() for r in history], "seconds": time.perf_counter() - started}

    epochs = tqdm(range(start.epoch, config.epochs), desc="train", unit="epoch", disable=not progress, leave=False)
    for epoch in epochs:
        epoch_start = time.perf_counter()
        after_step = checkpoint.step_hook(functools.partial(state, epoch)) if checkpoint is not None else None
        first_step, total = start.within(epoch)
        train_loss = trainer.run_epoch(epoch, start_step=first_step, total=total, after_step=after_step)
        eval_loss, eval_accuracy = trainer.evaluate(eval_set) if eval_set is not None else (None, None)
        record = EpochRecord(epoch + 1, train_loss, eval_loss, eval_accuracy, time.perf_counter() - epoch_start)
        history.append(record)
        if progress:
            epochs.set_postfix(loss=f"{train_loss:.3f}", acc=f"{eval_accuracy:.3f}" if eval_accuracy is not None else "-")
        if on_epoch is not None:
            on_epoch(epoch + 1, trainer, record)
    env = environment(trainer.device)
    env.update(trainer="single", precision=config.precision)
    return TrainResult(trainer.weights(), history, time.perf_counter() - started, env)
