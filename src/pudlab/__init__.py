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

from typing import TYPE_CHECKING

from pudlab.lazy import lazy_exports

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
    "RunOptions": "pudlab.experiments.options",
    "prepare_sweep": "pudlab.experiments.sweep",
    "run_sweep": "pudlab.experiments.sweep",
    "Store": "pudlab.experiments.store",
}

__all__ = ["__version__", *_API]

__getattr__, __dir__ = lazy_exports(__name__, _API)  # each public name imported on first use (PEP 562)


if TYPE_CHECKING:  # static type checkers and IDEs see the real names (``X as X``: re-exported)
    from pudlab.data.dataset import LabeledImages as LabeledImages
    from pudlab.data.dataset import SourceDataset as SourceDataset
    from pudlab.data.dataset import split_train_eval as split_train_eval
    from pudlab.data.sources import load_source as load_source
    from pudlab.experiments.options import RunOptions as RunOptions
    from pudlab.experiments.results import open_store as open_store
    from pudlab.experiments.spec import load_experiment as load_experiment
    from pudlab.experiments.spec import load_preset as load_preset
    from pudlab.experiments.store import Store as Store
    from pudlab.experiments.sweep import prepare_sweep as prepare_sweep
    from pudlab.experiments.sweep import run_sweep as run_sweep
    from pudlab.io import load_weights as load_weights
    from pudlab.io import save_weights as save_weights
    from pudlab.metrics import distinguishability as distinguishability
    from pudlab.metrics import model_distance as model_distance
    from pudlab.metrics import per_layer_distance as per_layer_distance
    from pudlab.metrics import roc_auc as roc_auc
    from pudlab.model import ModelConfig as ModelConfig
    from pudlab.model import build_model as build_model
    from pudlab.model import initial_state as initial_state
    from pudlab.obfuscation import ReleaseKey as ReleaseKey
    from pudlab.obfuscation import obfuscate as obfuscate
    from pudlab.obfuscation import release as release
    from pudlab.sampling import SamplingSetting as SamplingSetting
    from pudlab.sampling import draw_sample as draw_sample
    from pudlab.sampling import label_window as label_window
    from pudlab.train.trainer import TrainConfig as TrainConfig
    from pudlab.train.trainer import evaluate as evaluate
    from pudlab.train.trainer import train_model as train_model
