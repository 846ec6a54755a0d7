"""Exact replay of a training segment: the state a :class:`~pudlab.train.trainer.Trainer` is in, saved and
restored tensor for tensor, and the Adam steps re-run on given data.

On CPU, with the same thread count, the same torch build and the same data, a replay is
bit-identical to the training it replays (every step is :meth:`Trainer.step`). The thread count
matters: oneDNN splits convolution reductions by thread, so 1, 2 and 4 threads give different
float sums. :func:`pudlab.train.trainer.torch_threads` pins it for the duration of a replay.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from pudlab.data.dataset import LabeledImages
from pudlab.errors import PudlabError
from pudlab.model import ModelConfig
from pudlab.pol.bundle import TrainingState
from pudlab.train.trainer import TrainConfig, Trainer


def _scalar_dtype() -> torch.dtype:
    """The dtype torch's Adam keeps its step count in."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def capture_state(trainer: Trainer, step: int) -> TrainingState:
    """The trainer's weights and Adam moments after ``step`` steps, copied to CPU float32."""
    names = [name for name, _ in trainer.model.named_parameters()]
    optimizer_state = trainer.optimizer.state_dict()["state"]
    if not optimizer_state:
        if step != 0:
            raise PudlabError(f"capture_state: the optimizer has no state after {step} steps")
        return TrainingState(0, trainer.weights())
    counts = {float(optimizer_state[index]["step"]) for index in range(len(names))}
    if counts != {float(step)}:
        raise PudlabError(f"capture_state: Adam step counts {sorted(counts)} but {step} steps were taken")

    def copy(key: str) -> dict[str, torch.Tensor]:
        return {name: optimizer_state[index][key].detach().to("cpu", torch.float32).clone().contiguous()
                for index, name in enumerate(names)}

    return TrainingState(step, trainer.weights(), copy("exp_avg"), copy("exp_avg_sq"))


def restore_state(trainer: Trainer, state: TrainingState) -> None:
    """Put ``state`` into ``trainer`` (weights, Adam moments and step count; hyper-parameters stay
    those the trainer was built with)."""
    param_groups = trainer.optimizer.state_dict()["param_groups"]
    optimizer_state: dict[int, dict[str, torch.Tensor]] = {}
    if state.step > 0:
        for index, (name, _) in enumerate(trainer.model.named_parameters()):
            optimizer_state[index] = {
                "step": torch.tensor(float(state.step), dtype=_scalar_dtype()),
                "exp_avg": state.exp_avg[name].clone(),
                "exp_avg_sq": state.exp_avg_sq[name].clone(),
            }
    trainer.load_state_dict({"model": {k: v.clone() for k, v in state.weights.items()},
                             "optimizer": {"state": optimizer_state, "param_groups": param_groups}})


def replay_state(
    model_config: ModelConfig,
    train_config: TrainConfig,
    start: TrainingState,
    data: LabeledImages,
    batches: Sequence[np.ndarray],
    *,
    device: str | torch.device = "cpu",
) -> TrainingState:
    """Weights, Adam moments and step count after running Adam from ``start`` over ``batches``
    (sample positions into ``data``). Raises :class:`PudlabError` if Adam's step count is not
    ``start.step + len(batches)``."""
    trainer = Trainer(model_config, start.weights, data, train_config, device=device)
    restore_state(trainer, start)
    for positions in batches:
        trainer.step(positions)
    return capture_state(trainer, start.step + len(batches))

