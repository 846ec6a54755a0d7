"""M_cnn: "six convolution layers and three max-pooling layers" (paper Sec. 4.1.1).

conv3x3(w1)-ReLU x2, maxpool2, conv3x3(w2)-ReLU x2, maxpool2, conv3x3(w3)-ReLU x2, maxpool2,
flatten, dense(hidden)-ReLU, dense(C). 'same' padding; pooling floors odd sizes (Keras 'valid'
pooling: 28 -> 14 -> 7 -> 3). Widths are ours (the paper does not give them): default 32/64/128,
dense 128. Any input shape (C, H, W) with H, W >= 8.

Initial weights (paper: "an initial model with random weights is used across all experiments"):
Keras defaults, Glorot-uniform kernels and zero biases, drawn from a torch.Generator seeded with
``init_seed`` so that one (shape, widths, seed) always gives the same bytes.

Another model: :class:`FactoryModelConfig` names a Python callable ``module:function`` (or
``path/to/file.py:function``) that returns a ``torch.nn.Module`` for a sample shape (C, H, W) and a
class count. Its initial weights are the module's own initialization run under ``torch.manual_seed
(init_seed)`` (torch's global generator is restored after), its weights are its parameters (what
distances are computed over), and :func:`build_model`, :func:`initial_state`, :func:`check_state`
and :func:`parameter_names` take either kind (:data:`ModelDefinition`).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pudlab.errors import ModelError


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of one M_cnn."""

    input_shape: tuple[int, int, int]
    """(channels, height, width) of one image."""
    widths: tuple[int, int, int] = (32, 64, 128)
    """Output channels of the three conv blocks (two convs each)."""
    hidden: int = 128
    """Units of the hidden dense layer."""
    num_classes: int = 10
    """Outputs of the last dense layer."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", tuple(int(v) for v in self.input_shape))
        object.__setattr__(self, "widths", tuple(int(v) for v in self.widths))
        if len(self.input_shape) != 3 or min(self.input_shape) < 1:
            raise ModelError(f"input_shape must be (C, H, W), got {self.input_shape}")
        if min(self.input_shape[1:]) < 8:
            raise ModelError(f"images must be at least 8x8 for three 2x2 poolings, got {self.input_shape}")
        if len(self.widths) != 3 or min(self.widths) < 1:
            raise ModelError(f"widths must be three positive integers, got {self.widths}")
        if self.hidden < 1 or self.num_classes < 2:
            raise ModelError(f"hidden must be >= 1 and num_classes >= 2, got {self.hidden}, {self.num_classes}")

    @property
    def conv_plan(self) -> tuple[tuple[int, int], ...]:
        """(in, out) channels of the six 3x3 convs: the one layer plan of M_cnn, used by every builder."""
        w1, w2, w3 = self.widths
        return ((self.input_shape[0], w1), (w1, w1), (w1, w2), (w2, w2), (w2, w3), (w3, w3))

    @property
    def flat_features(self) -> int:
        """Inputs of the first dense layer."""
        _, height, width = self.input_shape
        return self.widths[2] * (height // 8) * (width // 8)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["input_shape"] = list(self.input_shape)
        data["widths"] = list(self.widths)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        try:
            return cls(
                tuple(data["input_shape"]),
                tuple(data.get("widths", (32, 64, 128))),
                int(data.get("hidden", 128)),
                int(data.get("num_classes", 10)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"model config {data!r}: {exc}") from exc


CONV_NAMES = ("conv1", "conv2", "conv3", "conv4", "conv5", "conv6")


class MCnn(nn.Module):
    """The paper's M_cnn (see the module docstring)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        for name, (c_in, c_out) in zip(CONV_NAMES, config.conv_plan, strict=True):
            setattr(self, name, nn.Conv2d(c_in, c_out, 3, padding=1))
        self.dense1 = nn.Linear(config.flat_features, config.hidden)
        self.dense2 = nn.Linear(config.hidden, config.num_classes)

    def convs(self) -> list[nn.Conv2d]:
        return [getattr(self, name) for name in CONV_NAMES]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images
        for index, conv in enumerate(self.convs()):
            x = F.relu(conv(x))
            if index % 2 == 1:
                x = F.max_pool2d(x, 2)
        x = torch.flatten(x, 1)
        return self.dense2(F.relu(self.dense1(x)))


def initial_state(config: ModelDefinition, *, init_seed: int = 0) -> dict[str, torch.Tensor]:
    """The seeded initial weights as a float32 state dict: M_cnn's Glorot-uniform kernels and zero
    biases, or a factory model's own initialization under ``torch.manual_seed(init_seed)``."""
    if isinstance(config, FactoryModelConfig):
        return _factory_initial_state(config, init_seed)
    generator = torch.Generator().manual_seed(int(init_seed))
    model = MCnn(config)
    state: dict[str, torch.Tensor] = {}
    for name, param in model.named_parameters():
        tensor = torch.empty_like(param, dtype=torch.float32)
        if name.endswith("bias"):
            tensor.zero_()
        else:
            fan_in, fan_out = _fans(tensor)
            bound = (6.0 / (fan_in + fan_out)) ** 0.5
            tensor.uniform_(-bound, bound, generator=generator)
        state[name] = tensor
    return state


def _fans(tensor: torch.Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) as Keras counts them (receptive field times channels)."""
    if tensor.ndim == 2:  # Linear: (out, in)
        return int(tensor.shape[1]), int(tensor.shape[0])
    receptive = int(tensor[0, 0].numel())
    return int(tensor.shape[1]) * receptive, int(tensor.shape[0]) * receptive


def build_model(config: ModelDefinition, state: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """The model (M_cnn, or a factory's module) with ``state`` loaded (strict: names and shapes must match)."""
    if isinstance(config, FactoryModelConfig):
        module = _build_factory(config)
        if state is not None:
            check_state(config, state)
            module.load_state_dict(state)
        return module
    model = MCnn(config)
    if state is not None:
        check_state(config, state)
        model.load_state_dict(state)
    return model


def check_state(config: ModelDefinition, state: dict[str, torch.Tensor]) -> None:
    """Raise ModelError unless ``state`` has exactly the model's parameter names and shapes."""
    expected = {name: tuple(p.shape) for name, p in _module_for(config).named_parameters()}
    got = {name: tuple(t.shape) for name, t in state.items()}
    if expected != got:
        missing = sorted(set(expected) - set(got))
        extra = sorted(set(got) - set(expected))
        wrong = sorted(n for n in set(expected) & set(got) if expected[n] != got[n])
        raise ModelError(
            f"weights do not fit {describe_model(config)}: "
            f"missing {missing}, unexpected {extra}, wrong shape {[(n, got[n], expected[n]) for n in wrong]}"
        )


def parameter_names(config: ModelDefinition) -> list[str]:
    """Trainable parameter names in model order (the order of the flattened weight vector)."""
    return [name for name, _ in _module_for(config).named_parameters()]


def parameter_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Parameter name -> shape of M_cnn(config), in model order, computed without building the model
    (a bundle loader checks a hostile config's size before allocating anything)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for name, (c_in, c_out) in zip(CONV_NAMES, config.conv_plan, strict=True):
        shapes[f"{name}.weight"] = (c_out, c_in, 3, 3)
        shapes[f"{name}.bias"] = (c_out,)
    shapes["dense1.weight"] = (config.hidden, config.flat_features)
    shapes["dense1.bias"] = (config.hidden,)
    shapes["dense2.weight"] = (config.num_classes, config.hidden)
    shapes["dense2.bias"] = (config.num_classes,)
    return shapes


# ---------------------------------------------------------------------------------------- factory models
FACTORY_EXPECTED = "'module:function' or 'path/to/file.py:function'"


@dataclass(frozen=True)
class FactoryModelConfig:
    """A model built by a Python callable ``factory(input_shape, num_classes) -> torch.nn.Module``."""

    factory: str
    """``module:function`` (an importable module) or ``path/to/file.py:function``; dots after the colon
    reach nested attributes (``module:Class.build``)."""
    input_shape: tuple[int, int, int]
    """(channels, height, width) of one image."""
    num_classes: int = 10
    """Outputs the module must produce per image."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", tuple(int(v) for v in self.input_shape))
        module, _, attribute = self.factory.rpartition(":")
        if not module or not attribute:
            raise ModelError(f"model factory {self.factory!r}: expected {FACTORY_EXPECTED}")
        if len(self.input_shape) != 3 or min(self.input_shape) < 1:
            raise ModelError(f"input_shape must be (C, H, W), got {self.input_shape}")
        if self.num_classes < 2:
            raise ModelError(f"num_classes must be >= 2, got {self.num_classes}")

    def to_dict(self) -> dict:
        return {"factory": self.factory, "input_shape": list(self.input_shape), "num_classes": self.num_classes}


ModelDefinition = ModelConfig | FactoryModelConfig
"""What a training builds: the paper's M_cnn or a factory's module."""


def model_from_dict(data: dict) -> ModelDefinition:
    """:meth:`ModelConfig.to_dict` or :meth:`FactoryModelConfig.to_dict` read back (a ``factory`` key
    names the latter). Only for the user's own files: a factory imports and runs its code."""
    if isinstance(data, dict) and "factory" in data:
        try:
            return FactoryModelConfig(str(data["factory"]), tuple(data["input_shape"]), int(data.get("num_classes", 10)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"model config {data!r}: {exc}") from exc
    return ModelConfig.from_dict(data)


def describe_model(config: ModelDefinition) -> str:
    """One phrase naming the model, e.g. ``M_cnn(1, 28, 28) widths (32, 64, 128)`` or ``nets:small``."""
    if isinstance(config, FactoryModelConfig):
        return f"model {config.factory} for {config.input_shape}"
    return f"M_cnn{config.input_shape} widths {config.widths}"


def load_factory(spec: str) -> Callable[..., Any]:
    """The callable named by ``module:function`` or ``path/to/file.py:function``; a ModelError says
    what could not be found."""
    module_name, _, attribute = spec.rpartition(":")
    if not module_name or not attribute:
        raise ModelError(f"model factory {spec!r}: expected {FACTORY_EXPECTED}")
    if module_name.endswith(".py"):
        path = Path(module_name).expanduser()
        if not path.is_file():
            raise ModelError(f"model factory {spec!r}: {path} is not a file")
        loaded = importlib.util.spec_from_file_location(f"pudlab_model_factory_{path.stem}", path)
        if loaded is None or loaded.loader is None:
            raise ModelError(f"model factory {spec!r}: cannot load {path} as a Python module")
        module = importlib.util.module_from_spec(loaded)
        loaded.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ModelError(f"model factory {spec!r}: cannot import {module_name!r} ({exc}); is it on PYTHONPATH? "
                             "A file works too: path/to/file.py:function") from None
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ModelError(f"model factory {spec!r}: {module_name} has no attribute {attribute!r}")
        target = getattr(target, part)
    if not callable(target):
        raise ModelError(f"model factory {spec!r}: {attribute} is not callable")
    return target


def _build_factory(config: FactoryModelConfig, init_seed: int | None = None) -> nn.Module:
    """The factory's module, built without touching torch's global random state (its own initialization
    under ``torch.manual_seed(init_seed)`` when given); checked: a Module without buffers (pudlab
    keeps, compares and reloads parameters only)."""
    factory = load_factory(config.factory)
    with torch.random.fork_rng(devices=[]):
        if init_seed is not None:
            torch.manual_seed(int(init_seed))
        module = factory(tuple(config.input_shape), int(config.num_classes))
    if not isinstance(module, nn.Module):
        raise ModelError(f"model factory {config.factory!r} returned {type(module).__name__}, expected a "
                         "torch.nn.Module")
    buffers = [name for name, _ in module.named_buffers()]
    if buffers:
        raise ModelError(f"model factory {config.factory!r}: the module has buffers ({', '.join(buffers[:3])}); pudlab "
                         "keeps, compares and reloads parameters only, so running statistics would be lost: use a "
                         "module without buffers (e.g. GroupNorm or LayerNorm instead of BatchNorm)")
    return module.float()


def _factory_initial_state(config: FactoryModelConfig, init_seed: int) -> dict[str, torch.Tensor]:
    module = _build_factory(config, init_seed)
    with torch.no_grad():
        output = module.eval()(torch.zeros((2, *config.input_shape)))
    if tuple(output.shape) != (2, config.num_classes):
        raise ModelError(f"model factory {config.factory!r}: for 2 images of shape {config.input_shape} the module "
                         f"returns shape {tuple(output.shape)}, expected (2, {config.num_classes}) (one logit per class)")
    return {name: param.detach().to(torch.float32).clone() for name, param in module.named_parameters()}


def _module_for(config: ModelDefinition) -> nn.Module:
    return _build_factory(config) if isinstance(config, FactoryModelConfig) else MCnn(config)


def fused_ensemble_support(config: ModelDefinition) -> str | None:
    """None when ``config`` can train as a fused ensemble (grouped convolutions: M_cnn only), else
    why not (exact lockstep ensembles take any model)."""
    if isinstance(config, FactoryModelConfig):
        return (f"a fused ensemble needs M_cnn's layer plan; {config.factory} trains in exact lockstep ensembles "
                "(K modules, one Adam step), which every model allows")
    return None
