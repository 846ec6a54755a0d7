"""pudlab: dataset obfuscation and its measured impact on Privacy, Utility and Distinguishability.

Implements Yu et al., "Dataset Obfuscation: Its Applications to and Impacts on Edge Machine
Learning". Data flows one way: ``data`` -> ``sampling`` -> ``obfuscation`` -> ``model`` ->
``train`` -> ``metrics`` -> ``experiments`` -> ``report``, with ``privacy``, ``pud``, ``pol`` and
``fl`` built on the same pieces (see ``docs/architecture.md``).

The public API below is loaded lazily (``import pudlab`` does not import torch until a name that
needs it is used), so that the command line starts fast. Beyond data, training, metrics and
experiments it holds the applications: ``privacy_report`` (the attacks on a kind of release),
``audit_release`` (the attacks on a release file against its raw data), ``pud_points`` and
``recommend`` (the PUD triangle and choosing sigma), ``compare_dp`` (obfuscation next to DP-SGD, with the
``dp`` extra), ``prove`` / ``verify_bundle`` (proof-of-learning)
and ``run_simulation`` (federated learning); ``examples/`` shows each in use:

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
    # your own model
    "FactoryModelConfig": "pudlab.model",
    # privacy: the attacks on a kind of release, and the audit of a release file
    "PrivacyConfig": "pudlab.privacy.report",
    "privacy_report": "pudlab.privacy.report",
    "read_release": "pudlab.releases",
    "audit_release": "pudlab.privacy.audit",
    # obfuscation next to DP-SGD (the optional dp extra)
    "ComparisonConfig": "pudlab.privacy.dp_results",
    "compare_dp": "pudlab.privacy.dp_comparison",
    # the PUD triangle and choosing sigma
    "pud_points": "pudlab.pud.scores",
    "privacy_from_report": "pudlab.pud.json_inputs",
    "load_profile": "pudlab.pud.profiles",
    "recommend": "pudlab.pud.profiles",
    # proof-of-learning and federated learning (one entry each: re-point here if their homes move)
    "prove": "pudlab.pol.prover",
    "verify_bundle": "pudlab.pol.verifier",
    "load_spec": "pudlab.fl.spec_reader",
    "run_simulation": "pudlab.fl.simulation",
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
    from pudlab.fl.simulation import run_simulation as run_simulation
    from pudlab.fl.spec_reader import load_spec as load_spec
    from pudlab.io import load_weights as load_weights
    from pudlab.io import save_weights as save_weights
    from pudlab.metrics import distinguishability as distinguishability
    from pudlab.metrics import model_distance as model_distance
    from pudlab.metrics import per_layer_distance as per_layer_distance
    from pudlab.metrics import roc_auc as roc_auc
    from pudlab.model import FactoryModelConfig as FactoryModelConfig
    from pudlab.model import ModelConfig as ModelConfig
    from pudlab.model import build_model as build_model
    from pudlab.model import initial_state as initial_state
    from pudlab.obfuscation import ReleaseKey as ReleaseKey
    from pudlab.obfuscation import obfuscate as obfuscate
    from pudlab.obfuscation import release as release
    from pudlab.pol.prover import prove as prove
    from pudlab.pol.verifier import verify_bundle as verify_bundle
    from pudlab.privacy.audit import audit_release as audit_release
    from pudlab.privacy.dp_comparison import compare_dp as compare_dp
    from pudlab.privacy.dp_results import ComparisonConfig as ComparisonConfig
    from pudlab.privacy.report import PrivacyConfig as PrivacyConfig
    from pudlab.privacy.report import privacy_report as privacy_report
    from pudlab.pud.json_inputs import privacy_from_report as privacy_from_report
    from pudlab.pud.profiles import load_profile as load_profile
    from pudlab.pud.profiles import recommend as recommend
    from pudlab.pud.scores import pud_points as pud_points
    from pudlab.releases import read_release as read_release
    from pudlab.sampling import SamplingSetting as SamplingSetting
    from pudlab.sampling import draw_sample as draw_sample
    from pudlab.sampling import label_window as label_window
    from pudlab.train.trainer import TrainConfig as TrainConfig
    from pudlab.train.trainer import evaluate as evaluate
    from pudlab.train.trainer import train_model as train_model
