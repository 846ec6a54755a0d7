"""One training run end to end: source -> split -> S-X-Y-Z sample -> O(T) -> M_cnn -> F -> artifacts.

This is what ``pudlab train`` does. An experiment job trains the same way from its content-keyed
description (:mod:`pudlab.experiments.worker`), building its training set with
:func:`pudlab.experiments.jobs.job_training_set` (``tests/test_sweep.py`` checks that both give the
same arrays for the same recipe and obfuscation).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pudlab.data.dataset import LabeledImages, SourceDataset, Split, split_train_eval
from pudlab.errors import DatasetError
from pudlab.io import (
    RUN_FILE,
    WEIGHTS_FILE,
    load_weights,
    save_weights,
    weights_sha256,
    write_json,
)
from pudlab.model import ModelDefinition, check_state, initial_state
from pudlab.obfuscation import ObfuscationParams, obfuscate
from pudlab.sampling import SampleRecipe, SamplingSetting, draw_recipe, label_window
from pudlab.train.trainer import TrainConfig, TrainResult, train_model


def make_recipe(
    setting: SamplingSetting,
    num_classes: int,
    *,
    seed: int,
    labels: Sequence[int] | None = None,
    reference_labels: Sequence[int] | None = None,
) -> SampleRecipe:
    """A sample recipe: explicit ``labels``, or the window rule of :func:`label_window`."""
    if labels is None:
        labels = label_window(setting, num_classes, reference_labels=reference_labels)
    return SampleRecipe(setting, tuple(int(label) for label in labels), seed)


def training_set(split: Split, recipe: SampleRecipe, params: ObfuscationParams) -> tuple[LabeledImages, LabeledImages]:
    """(raw sample T, obfuscated O(T)) drawn from T_t = ``split.train``."""
    sample = split.train.take(draw_recipe(split.train.labels, recipe))
    return sample, obfuscate(sample, sigma=params.sigma, fraction=params.fraction, seed=params.seed, clip=params.clip)


EVAL_PARTS = ("eval", "test", "all")
"""Which part of an evaluation dataset (``--eval``) a model is scored on: its T_e (the seeded 90/10
split's held-out 10 %), its official test set, or all of its training set."""


def held_out_set(source: SourceDataset, part: str, *, split_seed: int = 0, eval_fraction: float = 0.1) -> LabeledImages:
    """The evaluation samples ``part`` (:data:`EVAL_PARTS`) of ``source``."""
    if part == "eval":
        return split_train_eval(source, eval_fraction=eval_fraction, seed=split_seed).eval
    if part == "test":
        if source.test is None or len(source.test) == 0:
            raise DatasetError(f"{source.name}: has no test set; evaluate on its T_e (part 'eval') or all of it ('all')")
        return source.test
    if part == "all":
        return source.train
    raise DatasetError(f"evaluation part {part!r}: expected one of {', '.join(EVAL_PARTS)}")


def data_split(source: SourceDataset, *, split_seed: int = 0, eval_fraction: float = 0.1,
               eval_source: SourceDataset | None = None, eval_part: str = "eval") -> Split:
    """T_t and T_e: the seeded split of ``source``; with ``eval_source`` all of ``source`` and that
    dataset's ``eval_part`` (``--eval DATASET``), checked to hold samples of the same shape."""
    if eval_source is None:
        return split_train_eval(source, eval_fraction=eval_fraction, seed=split_seed)
    held_out = held_out_set(eval_source, eval_part, split_seed=split_seed, eval_fraction=eval_fraction)
    if held_out.sample_shape != source.sample_shape:
        raise DatasetError(f"--eval {eval_source.name}: samples are {held_out.sample_shape}, the training "
                           f"data's {source.sample_shape}")
    return Split(source.train, held_out, split_seed, eval_fraction)


def resolve_initial_weights(model_config: ModelDefinition, *, init_seed: int = 0,
                            init_path: str | os.PathLike | None = None) -> dict[str, torch.Tensor]:
    """The initial weights: from ``init_path`` when given (checked against the model), else seeded."""
    if init_path is None:
        return initial_state(model_config, init_seed=init_seed)
    weights = load_weights(init_path)
    check_state(model_config, weights)
    return {name: tensor.to(torch.float32) for name, tensor in weights.items()}


@dataclass(frozen=True)
class RunPlan:
    """Everything that determines one training run."""

    source: SourceDataset
    split_seed: int
    eval_fraction: float
    recipe: SampleRecipe
    obfuscation: ObfuscationParams
    model: ModelDefinition
    train: TrainConfig
    init_seed: int = 0
    init_path: str | None = None
    eval_source: SourceDataset | None = None
    """Score the model on this dataset's ``eval_part`` instead of T_e; the training sample is then
    drawn from all of ``source`` (no 90/10 split is needed)."""
    eval_part: str = "eval"
    notes: tuple[str, ...] = ()
    """What the reader of run.json must know (e.g. that the accuracy is on obfuscated data)."""

    def data_split(self) -> Split:
        """T_t and T_e: the seeded split of ``source``, or all of it and the evaluation dataset's part."""
        return data_split(self.source, split_seed=self.split_seed, eval_fraction=self.eval_fraction,
                          eval_source=self.eval_source, eval_part=self.eval_part)

    def describe(self) -> dict:
        return {
            "dataset": {
                "name": self.source.name,
                "description": self.source.description,
                "origin": self.source.origin,
                "fingerprint": self.source.fingerprint,
                "split_seed": self.split_seed,
                "eval_fraction": self.eval_fraction,
            },
            "sampling": self.recipe.to_dict(),
            "obfuscation": self.obfuscation.to_dict(),
            "model": self.model.to_dict(),
            "training": self.train.to_dict(),
            "init": {"seed": self.init_seed, "path": self.init_path},
            **({"notes": list(self.notes)} if self.notes else {}),
        }


def execute_plan(plan: RunPlan, out_dir: str | os.PathLike | None = None, *, device: str = "cpu",
                 progress: bool = False) -> tuple[TrainResult, dict]:
    """Train the run ``plan`` describes; write ``weights.safetensors`` + ``run.json`` to ``out_dir``."""
    started = time.time()
    split = plan.data_split()
    sample, obfuscated = training_set(split, plan.recipe, plan.obfuscation)
    initial = resolve_initial_weights(plan.model, init_seed=plan.init_seed, init_path=plan.init_path)
    result = train_model(obfuscated, split.eval, plan.model, initial, plan.train, device=device, progress=progress)
    record = plan.describe()
    record.update(
        kind="pudlab.run",
        sample={
            "size": len(sample),
            "labels": sorted(int(label) for label in np.unique(sample.labels)),
            "fingerprint": sample.fingerprint(),
            "obfuscated_fingerprint": obfuscated.fingerprint(),
        },
        eval_set={"size": len(split.eval), "fingerprint": split.eval.fingerprint(),
                  **({"dataset": plan.eval_source.name, "dataset_fingerprint": plan.eval_source.fingerprint,
                      "part": plan.eval_part} if plan.eval_source is not None else {"dataset": plan.source.name,
                                                                                    "part": "eval"})},
        init_sha256=weights_sha256(initial),
        weights_sha256=weights_sha256(result.weights),
        final_accuracy=result.final_accuracy,
        history=[entry.to_dict() for entry in result.history],
        environment=result.environment,
        wall_seconds=result.wall_seconds,
        started_unix=started,
    )
    if out_dir is not None:
        out = Path(out_dir)
        save_weights(out / WEIGHTS_FILE, result.weights, {"format": "pudlab.weights/1"})
        if plan.init_path is None:
            save_weights(out / "initial.safetensors", initial, {"format": "pudlab.weights/1"})
        write_json(out / RUN_FILE, record)
    return result, record
