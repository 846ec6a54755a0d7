"""Model factories the tests train through ``--model`` / ``model = "..."`` (not a test module)."""

from __future__ import annotations

from torch import nn


def small_mlp(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """A two-layer perceptron: flatten, 32 hidden units, ReLU, one logit per class."""
    channels, height, width = input_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(channels * height * width, 32), nn.ReLU(), nn.Linear(32, num_classes))


def with_batchnorm(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """A model with running statistics (buffers), which pudlab refuses."""
    channels, height, width = input_shape
    return nn.Sequential(nn.Flatten(), nn.BatchNorm1d(channels * height * width),
                         nn.Linear(channels * height * width, num_classes))


def not_a_module(input_shape: tuple[int, int, int], num_classes: int) -> object:
    return "a string"


def wrong_outputs(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    channels, height, width = input_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(channels * height * width, num_classes + 1))
