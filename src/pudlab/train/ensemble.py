"""Lockstep ensemble training: K copies of M_cnn, each on its own dataset, in one network.

A step of this small CNN is bound by kernel-launch overhead, not arithmetic, so training models
one at a time leaves a GPU idle. Here K models are fused horizontally (HFTA-style, as in
``shared/bench/gpu_throughput.py``): the K inputs are stacked along channels and every conv is a
grouped conv (``groups=K``); the dense layers are batched matmuls. One backward and one Adam step
serve all K. Adam is element-wise, so one Adam over the stacked parameters is exactly K independent
Adams; the loss is the sum of the members' mean losses, so each member's gradient is its own.

Two modes:

* ``fused`` (the fast path, default on CUDA): the grouped network above. Its arithmetic is not the
  single model's (grouped conv and batched matmul kernels round differently), and training
  amplifies rounding: measured on CPU fp32, member vs separate training differs by ~1e-8 relative
  F-norm after 4 steps, ~3e-5 after 12 and ~1e-3 after 24 (Adam turns tiny gradient differences
  into full-size steps early in training). That is far below the shuffle-seed noise floor, but it
  means results depend on the grouping at that level; the engine therefore forms ensembles from the
  complete job list of a sweep, so a resumed sweep regroups exactly as the uninterrupted one.
* ``exact`` (default on CPU): K separate M_cnn modules stepped in lockstep under one Adam and one
  backward. Every member's arithmetic is the single model's, so its weights are bit-identical to a
  separate training (tested): results do not depend on how jobs were grouped.

Each member keeps its own recorded batch order (``epoch_batches`` with its shuffle seed), and its
data stays on the device.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pudlab.data.dataset import LabeledImages
from pudlab.errors import PudlabError
from pudlab.model import (
    CONV_NAMES,
    FactoryModelConfig,
    ModelConfig,
    ModelDefinition,
    build_model,
    check_state,
    fused_ensemble_support,
)
from pudlab.train.trainer import (
    Checkpointing,
    EpochRecord,
    StepHook,
    TrainConfig,
    TrainResult,
    as_model_input,
    autocast,
    environment,
    epoch_batches,
    evaluate,
    numerics,
    prepare_model,
    resolve_device,
    resume,
)


class EnsembleMCnn(nn.Module):
    """K fused M_cnn (see the module docstring). Input (B, K*C, H, W); output (K, B, classes)."""

    def __init__(self, config: ModelConfig, members: int) -> None:
        super().__init__()
        if members < 1:
            raise PudlabError(f"an ensemble needs at least one member, got {members}")
        self.config, self.members = config, members
        plan = config.conv_plan
        self.conv_weights = nn.ParameterList(
            [nn.Parameter(torch.zeros(members * c_out, c_in, 3, 3)) for c_in, c_out in plan])
        self.conv_biases = nn.ParameterList([nn.Parameter(torch.zeros(members * c_out)) for _, c_out in plan])
        self.dense1_weight = nn.Parameter(torch.zeros(members, config.flat_features, config.hidden))
        self.dense1_bias = nn.Parameter(torch.zeros(members, 1, config.hidden))
        self.dense2_weight = nn.Parameter(torch.zeros(members, config.hidden, config.num_classes))
        self.dense2_bias = nn.Parameter(torch.zeros(members, 1, config.num_classes))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images
        for index, (weight, bias) in enumerate(zip(self.conv_weights, self.conv_biases, strict=True)):
            x = F.relu(F.conv2d(x, weight, bias, padding=1, groups=self.members))
            if index % 2 == 1:
                x = F.max_pool2d(x, 2)
        batch = x.shape[0]
        x = x.reshape(batch, self.members, -1).transpose(0, 1)  # (K, B, features), per-member (c, h, w) order
        x = F.relu(torch.baddbmm(self.dense1_bias, x, self.dense1_weight))
        return torch.baddbmm(self.dense2_bias, x, self.dense2_weight)

    @torch.no_grad()
    def load_member(self, member: int, state: dict[str, torch.Tensor]) -> None:
        """Copy a single-model state dict (M_cnn names and shapes) into member ``member``."""
        check_state(self.config, state)
        for index, name in enumerate(CONV_NAMES):
            out = state[f"{name}.weight"].shape[0]
            self.conv_weights[index][member * out:(member + 1) * out].copy_(state[f"{name}.weight"])
            self.conv_biases[index][member * out:(member + 1) * out].copy_(state[f"{name}.bias"])
        self.dense1_weight[member].copy_(state["dense1.weight"].t())
        self.dense1_bias[member, 0].copy_(state["dense1.bias"])
        self.dense2_weight[member].copy_(state["dense2.weight"].t())
        self.dense2_bias[member, 0].copy_(state["dense2.bias"])

    @torch.no_grad()
    def member_state(self, member: int) -> dict[str, torch.Tensor]:
        """Member ``member``'s weights in the single-model layout (CPU float32, M_cnn order)."""
        state: dict[str, torch.Tensor] = {}
        for index, name in enumerate(CONV_NAMES):
            out = self.conv_weights[index].shape[0] // self.members
            state[f"{name}.weight"] = self.conv_weights[index][member * out:(member + 1) * out]
            state[f"{name}.bias"] = self.conv_biases[index][member * out:(member + 1) * out]
        state["dense1.weight"] = self.dense1_weight[member].t()
        state["dense1.bias"] = self.dense1_bias[member, 0]
        state["dense2.weight"] = self.dense2_weight[member].t()
        state["dense2.bias"] = self.dense2_bias[member, 0]
        return {name: tensor.detach().to("cpu", torch.float32).contiguous().clone() for name, tensor in state.items()}


def to_grouped_input(batches: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """(K, B, C, H, W) -> (B, K*C, H, W)."""
    members, batch, channels, height, width = batches.shape
    grouped = batches.transpose(0, 1).reshape(batch, members * channels, height, width)
    return grouped.contiguous(memory_format=torch.channels_last) if channels_last else grouped


def _check_configs(configs: Sequence[TrainConfig]) -> None:
    first = configs[0].to_dict()
    first.pop("shuffle_seed")
    for other in configs[1:]:
        data = other.to_dict()
        data.pop("shuffle_seed")
        if data != first:
            raise PudlabError(f"ensemble members must share every hyper-parameter but the shuffle seed: {data} vs {first}")


ENSEMBLE_MODES = ("exact", "fused")


def _checked_mode(model_config: ModelDefinition, mode: str) -> str:
    """``mode`` when it is an ensemble mode the model allows, else a PudlabError saying why."""
    if mode not in ENSEMBLE_MODES:
        raise PudlabError(f"ensemble mode must be one of {', '.join(ENSEMBLE_MODES)}, got {mode!r}")
    unsupported = fused_ensemble_support(model_config) if mode == "fused" else None
    if unsupported is not None:
        raise PudlabError(f"{unsupported}: use ensemble mode exact")
    return mode


def default_mode(device: torch.device) -> str:
    """``fused`` on CUDA (throughput), ``exact`` elsewhere (bit-identical to separate trainings)."""
    return "fused" if device.type == "cuda" else "exact"


class EnsembleTrainer:
    """K members of one M_cnn config trained in lockstep, each on its own dataset.

    Exact mode takes datasets of any sizes (a member whose epoch is over sits the remaining steps
    out). Fused mode needs the same number of steps per epoch; unequal last batches are padded and
    masked out of the loss.
    """

    def __init__(
        self,
        model_config: ModelDefinition,
        initial_weights: Sequence[dict[str, torch.Tensor]],
        train_sets: Sequence[LabeledImages],
        configs: Sequence[TrainConfig],
        *,
        device: str | torch.device = "cpu",
        mode: str | None = None,
    ) -> None:
        members = len(train_sets)
        if not (members == len(configs) == len(initial_weights)) or members == 0:
            raise PudlabError("an ensemble needs one initial weight set, training set and config per member")
        self.sizes = [len(train_set) for train_set in train_sets]
        for train_set in train_sets:
            if train_set.sample_shape != model_config.input_shape:
                raise PudlabError(f"training images are {train_set.sample_shape}, the model expects "
                                  f"{model_config.input_shape}")
        _check_configs(configs)
        self.device = resolve_device(device)
        self.mode = _checked_mode(model_config, mode or default_mode(self.device))
        self.configs = list(configs)
        self.config = configs[0]
        self.members = members
        batch = self.config.batch_size
        steps = {-(-size // batch) for size in self.sizes}
        if self.mode == "fused" and len(steps) != 1:
            raise PudlabError(f"fused ensemble members need the same number of steps per epoch; sizes {self.sizes} "
                              f"give {sorted(steps)} at batch size {batch}")
        self.channels_last = self.mode == "fused"
        options: dict = {"lr": self.config.lr, "betas": self.config.adam_betas, "eps": self.config.adam_eps}
        self.model: EnsembleMCnn | nn.ModuleList
        if self.mode == "fused":
            assert isinstance(model_config, ModelConfig)  # fused_ensemble_support said so
            fused = EnsembleMCnn(model_config, members)
            for member, state in enumerate(initial_weights):
                fused.load_member(member, state)
            self.model = prepare_model(fused, self.device)
            if self.device.type == "cuda":
                options["fused"] = True
        else:
            self.model = nn.ModuleList([prepare_model(build_model(model_config, state), self.device)
                                        for state in initial_weights])
        self.optimizer = torch.optim.Adam(self.model.parameters(), **options)
        # bf16 autocast casts the inputs of every conv to bf16 anyway: storing them so is exact and halves memory
        data_dtype = torch.bfloat16 if self.config.precision == "bf16" and self.device.type == "cuda" else torch.float32
        if self.mode == "fused":  # one (K, N_max, ...) tensor; members with fewer samples are zero-padded
            longest = max(self.sizes)
            self.images = torch.zeros((members, longest, *model_config.input_shape), dtype=data_dtype,
                                      device=self.device)
            self.labels = torch.zeros((members, longest), dtype=torch.int64, device=self.device)
            for member, train_set in enumerate(train_sets):
                self.images[member, :len(train_set)] = torch.from_numpy(train_set.images).to(self.device, data_dtype)
                self.labels[member, :len(train_set)] = torch.from_numpy(train_set.labels).to(self.device)
            self.member_index = torch.arange(members, device=self.device)[:, None]
        else:  # one tensor per member, any sizes
            self.member_images = [torch.from_numpy(t.images).to(self.device) for t in train_sets]
            self.member_labels = [torch.from_numpy(t.labels).to(self.device) for t in train_sets]

    def step(self, positions: Sequence[np.ndarray | None]) -> torch.Tensor:
        """One lockstep Adam step; ``positions[k]``: member k's batch (None: k sits this step out).

        Returns the K batch losses (a tensor; 0 for members that sat out). In exact mode a member
        without a batch keeps no gradient, and Adam leaves its weights and moments untouched.
        """
        with numerics(self.device, self.config.precision):
            self.optimizer.zero_grad(set_to_none=True)
            if isinstance(self.model, EnsembleMCnn):
                losses = self._fused_losses(self.model, positions)
            else:
                losses = self._exact_losses(self.model, positions)
            losses.sum().backward()
            self.optimizer.step()
        return losses.detach()

    def _exact_losses(self, modules: nn.ModuleList, positions: Sequence[np.ndarray | None]) -> torch.Tensor:
        losses = []
        for member, module in enumerate(modules):
            batch = positions[member]
            if batch is None or len(batch) == 0:
                losses.append(torch.zeros((), device=self.device))
                continue
            index = torch.from_numpy(np.asarray(batch, dtype=np.int64)).to(self.device)
            with autocast(self.device, self.config.precision):
                logits = module(as_model_input(self.member_images[member][index]))
            losses.append(F.cross_entropy(logits.float(), self.member_labels[member][index]))
        return torch.stack(losses)

    def _fused_losses(self, model: EnsembleMCnn, positions: Sequence[np.ndarray | None]) -> torch.Tensor:
        batches = [np.asarray(batch, dtype=np.int64) for batch in positions if batch is not None and len(batch) > 0]
        if len(batches) != len(positions):
            raise PudlabError("a fused ensemble steps every member at every step")
        lengths = [len(batch) for batch in batches]
        longest = max(lengths)
        padded = np.stack([np.pad(batch, (0, longest - len(batch)), mode="edge") for batch in batches])
        index = torch.from_numpy(padded).to(self.device, non_blocking=True)
        images, labels = self.images[self.member_index, index], self.labels[self.member_index, index]
        with autocast(self.device, self.config.precision):
            logits = model(to_grouped_input(images, self.channels_last))
        per_sample = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                     reduction="none").view(self.members, longest)
        if min(lengths) == longest:
            return per_sample.mean(dim=1)
        # unequal last batches: padded samples weigh 0, each member averages over its real samples
        counts = torch.tensor(lengths, device=self.device)
        mask = torch.arange(longest, device=self.device)[None, :] < counts[:, None]
        return (per_sample * mask).sum(dim=1) / counts

    def run_epoch(self, epoch: int, *, start_step: int = 0, total: torch.Tensor | None = None,
                  after_step: StepHook | None = None) -> list[float]:
        """One pass, each member in its own recorded order; returns the members' mean batch losses.

        A member whose epoch is over sits the remaining steps out. A resumed epoch starts at
        ``start_step`` and adds to ``total``, the (K,) running losses saved with it;
        ``after_step(steps_done, total)`` runs after every step (checkpoints).
        """
        self.model.train()
        orders = [epoch_batches(size, self.config.batch_size, shuffle_seed=config.shuffle_seed, epoch=epoch)
                  for size, config in zip(self.sizes, self.configs, strict=True)]
        running = torch.zeros(self.members, device=self.device) if total is None else total
        for step in range(start_step, max(len(order) for order in orders)):
            running += self.step([order[step] if step < len(order) else None for order in orders])
            if after_step is not None:
                after_step(step + 1, running)
        return [float(value) / max(len(order), 1) for value, order in zip(running.cpu(), orders, strict=True)]

    @torch.no_grad()
    def evaluate(self, eval_set: LabeledImages, *, batch_size: int = 1000) -> list[tuple[float, float]]:
        """(mean cross-entropy, accuracy) of every member on ``eval_set``."""
        if isinstance(self.model, nn.ModuleList):
            return [evaluate(module, eval_set, device=self.device, precision=self.config.precision,
                             batch_size=batch_size) for module in self.model]
        self.model.eval()
        losses = torch.zeros(self.members, dtype=torch.float64, device=self.device)
        correct = torch.zeros(self.members, dtype=torch.int64, device=self.device)
        for start in range(0, len(eval_set), batch_size):
            images = torch.from_numpy(eval_set.images[start:start + batch_size]).to(self.device)
            labels = torch.from_numpy(eval_set.labels[start:start + batch_size]).to(self.device)
            stacked = images.unsqueeze(0).expand(self.members, *images.shape)
            with numerics(self.device, self.config.precision), autocast(self.device, self.config.precision):
                logits = self.model(to_grouped_input(stacked, self.channels_last)).float()
            expanded = labels.unsqueeze(0).expand(self.members, -1)
            losses += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), expanded.reshape(-1),
                                      reduction="none").view(self.members, -1).sum(1).double()
            correct += (logits.argmax(-1) == expanded).sum(1)
        self.model.train()
        count = max(len(eval_set), 1)
        return [(float(loss) / count, int(hits) / count) for loss, hits in zip(losses.cpu(), correct.cpu(), strict=True)]

    def member_weights(self, member: int) -> dict[str, torch.Tensor]:
        """Member ``member``'s trainable weights in the single-model layout (CPU float32)."""
        if isinstance(self.model, EnsembleMCnn):
            return self.model.member_state(member)
        return {name: p.detach().to("cpu", torch.float32).clone() for name, p in self.model[member].named_parameters()}

    def state_dict(self) -> dict:
        """Models and optimizer state (to resume exactly)."""
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])


def activation_elements(config: ModelDefinition) -> int:
    """Activations per image kept for the backward pass (conv outputs and pool outputs; for a factory
    model: the outputs of its leaf modules, measured on one image)."""
    if isinstance(config, FactoryModelConfig):
        return _measured_activations(config)
    _, height, width = config.input_shape
    total = 0
    for channels in config.widths:
        total += 2 * channels * height * width + channels * (height // 2) * (width // 2)
        height, width = height // 2, width // 2
    return total + config.hidden + config.num_classes


def _measured_activations(config: FactoryModelConfig) -> int:
    """Elements of every leaf module's output for one image of a factory model."""
    module = build_model(config)
    sizes: list[int] = []
    hooks = [leaf.register_forward_hook(lambda _m, _i, output: sizes.append(int(output.numel())))
             for leaf in module.modules() if not list(leaf.children())]
    with torch.no_grad():
        module.eval()(torch.zeros((1, *config.input_shape)))
    for hook in hooks:
        hook.remove()
    return max(1, sum(sizes))


MEMORY_SHARE = 0.5
"""Share of the free device memory (or of the available RAM) an ensemble may plan to use."""


def max_members(config: ModelDefinition, train_size: int, batch_size: int, device: str | torch.device = "cpu", *,
                free_bytes: int | None = None) -> int:
    """The most ensemble members whose data, activations and optimizer state fit in memory
    (``free_bytes``: the memory to plan with, else what ``device`` has free now)."""
    device = torch.device(device)
    channels, height, width = config.input_shape
    parameters = sum(p.numel() for p in build_model(config).parameters())
    per_member = (train_size * channels * height * width * 4          # resident training data
                  + 3 * batch_size * activation_elements(config) * 4  # activations, their grads, workspace
                  + 4 * parameters * 4)                               # weights, grads, two Adam moments
    if free_bytes is not None:
        free = free_bytes
    elif device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
    else:
        try:
            free = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            free = 8 * 2**30
    return max(1, int(MEMORY_SHARE * free // per_member))


MemberCallback = Callable[[int, int, EnsembleTrainer, EpochRecord], None]


def train_ensemble(
    train_sets: Sequence[LabeledImages],
    eval_set: LabeledImages | None,
    model_config: ModelDefinition,
    initial_weights: dict[str, torch.Tensor] | Sequence[dict[str, torch.Tensor]],
    configs: Sequence[TrainConfig],
    *,
    device: str | torch.device = "cpu",
    mode: str | None = None,
    on_epoch: MemberCallback | None = None,
    checkpoint: Checkpointing | None = None,
) -> list[TrainResult]:
    """Train K members in lockstep; one :class:`TrainResult` per member, as ``train_model`` gives.

    ``initial_weights``: one shared set (the paper's setup) or one per member.
    ``on_epoch(member, epoch, trainer, record)`` runs for every member after every epoch.
    ``checkpoint``: save the full state at its interval and resume from its file when one exists.
    """
    if isinstance(initial_weights, dict):
        initial_weights = [initial_weights] * len(train_sets)
    trainer = EnsembleTrainer(model_config, initial_weights, train_sets, configs, device=device, mode=mode)
    start = resume(trainer, checkpoint)
    histories: list[list[EpochRecord]] = [[] for _ in range(trainer.members)]
    if start.history:  # resumed: the members' histories as saved
        histories = [[EpochRecord(**record) for record in member] for member in start.history]
    started = time.perf_counter() - start.seconds

    def state(epoch: int, steps: int, total: torch.Tensor) -> dict:
        """What a checkpoint after ``steps`` lockstep steps of ``epoch`` holds."""
        return {"epoch": epoch, "step": steps, "total": total.cpu(), "trainer": trainer.state_dict(),
                "history": [[r.to_dict() for r in member] for member in histories],
                "seconds": time.perf_counter() - started}

    for epoch in range(start.epoch, trainer.config.epochs):
        epoch_start = time.perf_counter()
        after_step = checkpoint.step_hook(functools.partial(state, epoch)) if checkpoint is not None else None
        first_step, total = start.within(epoch)
        train_losses = trainer.run_epoch(epoch, start_step=first_step, total=total, after_step=after_step)
        evaluations = trainer.evaluate(eval_set) if eval_set is not None else [(None, None)] * trainer.members
        seconds = time.perf_counter() - epoch_start
        for member in range(trainer.members):
            record = EpochRecord(epoch + 1, train_losses[member], evaluations[member][0], evaluations[member][1],
                                 seconds)
            histories[member].append(record)
            if on_epoch is not None:
                on_epoch(member, epoch + 1, trainer, record)
    wall = time.perf_counter() - started
    env = environment(trainer.device)
    env.update(trainer=f"ensemble-{trainer.mode}", ensemble_members=trainer.members,
               precision=trainer.config.precision)
    return [TrainResult(trainer.member_weights(member), histories[member], wall, dict(env))
            for member in range(trainer.members)]
