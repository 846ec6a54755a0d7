"""pudlab: dataset obfuscation and its measured impact on Privacy, Utility and Distinguishability.

Implements Yu et al., "Dataset Obfuscation: Its Applications to and Impacts on Edge Machine
Learning". Data flows one way: ``data`` -> ``sampling`` -> ``obfuscation`` -> ``model`` ->
``train`` -> ``metrics`` -> ``experiments`` -> ``report``, with ``privacy``, ``pud``, ``pol`` and
``fl`` built on the same pieces (see ``docs/architecture.md``).

The public API below is loaded lazily (``import pudlab`` does not import torch until a name that
needs it is used), so that the command line starts fast:

>>> import pudlab
>>> pudlab.SamplingSetting.parse("S-0.5-1-1").label_degree
0.5
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_API: dict[str, str] = {
    # data
    "load_source": "pudlab.data.sources",
    "split_train_eval": "pudlab.data.dataset",
    "LabeledImages": "pudlab.data.dataset",
    "SourceDataset": "pudlab.data.dataset",
    # sampling and obfuscation
    "SamplingSetting": "pudlab.sampling",
    "label_window": "pudlab.sampling",
    "draw_sample": "pudlab.sampling",
    "obfuscate": "pudlab.obfuscation",
    "release": "pudlab.obfuscation",
    "ReleaseKey": "pudlab.obfuscation",
    # model and training
    "ModelConfig": "pudlab.model",
    "initial_state": "pudlab.model",
    "build_model": "pudlab.model",
    "TrainConfig": "pudlab.train.trainer",
    "train_model": "pudlab.train.trainer",
    "evaluate": "pudlab.train.trainer",
    # metrics
    "model_distance": "pudlab.metrics",
    "per_layer_distance": "pudlab.metrics",
    "distinguishability": "pudlab.metrics",
    "roc_auc": "pudlab.metrics",
    # files and experiments
    "load_weights": "pudlab.io",
    "save_weights": "pudlab.io",
    "open_store": "pudlab.experiments.results",
    "load_experiment": "pudlab.experiments.spec",
    "load_preset": "pudlab.experiments.spec",
    "run_sweep": "pudlab.experiments.sweep",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    """Import a public name on first use (PEP 562)."""
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'pudlab' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # static type checkers and IDEs see the real names
    from pudlab.data.dataset import LabeledImages, SourceDataset, split_train_eval
    from pudlab.data.sources import load_source
    from pudlab.experiments.results import open_store
    from pudlab.experiments.spec import load_experiment, load_preset
    from pudlab.experiments.sweep import run_sweep
    from pudlab.io import load_weights, save_weights
    from pudlab.metrics import distinguishability, model_distance, per_layer_distance, roc_auc
    from pudlab.model import ModelConfig, build_model, initial_state
    from pudlab.obfuscation import ReleaseKey, obfuscate, release
    from pudlab.sampling import SamplingSetting, draw_sample, label_window
    from pudlab.train.trainer import TrainConfig, evaluate, train_model
