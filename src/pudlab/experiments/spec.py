"""Experiment specs and presets: TOML data, validated on load.

An experiment spec names datasets (S-X-Y-Z samples of T_t), models (a dataset at a fixed sigma or
at every sigma of the sweep) and series to report (accuracy of a model, distance between two
models, per epoch for Fig. 2). A preset fills in the numbers (epochs, widths, sigma grid, ...).
The shipped specs are ``pudlab/specs/experiments/*.toml`` and ``pudlab/specs/presets/*.toml``; copy one and edit it to make your own.

Every validation error names the file, the key and what was expected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from pudlab.config import Section, read_toml, resolve_spec
from pudlab.errors import SpecError
from pudlab.sampling import SamplingSetting, parse_labels

SHIPPED_EXPERIMENTS = ("fig2", "exp1", "exp2", "exp3", "exp4", "exp5")
SHIPPED_PRESETS = ("quick", "paper")
SERIES_KINDS = ("accuracy", "distance", "epoch_accuracy", "epoch_distance")
SHUFFLE_STREAMS = ("main", "alt")


# ----------------------------------------------------------------------------------------- experiment
@dataclass(frozen=True)
class DatasetSpec:
    """A named sample of T_t."""

    id: str
    label: str
    """Display name, e.g. ``T_3,1``."""
    setting: SamplingSetting
    labels: tuple[int, ...] | None = None
    """Explicit covered labels (else the window rule)."""
    counterpart: str | None = None
    """Dataset whose label window the overlap Y refers to (else the reference window 0..)."""
    redraw_of: str | None = None
    """Another draw with the same setting and labels as this dataset."""
    disjoint: bool | None = None
    """A redraw disjoint from the original (None: the preset decides)."""
    nested_in: str | None = None
    """A random ``fraction`` of that dataset (Exp-2)."""
    fraction: float | None = None
    disjoint_from: str | None = None
    """An own draw (own seed) that avoids this dataset's entries on the labels they share (Exp-4, Exp-5)."""


@dataclass(frozen=True)
class ModelSpec:
    """A model trained on one dataset, at a fixed sigma or at every sigma of the sweep."""

    id: str
    label: str
    dataset: str
    sigma: float | None
    """None = every sigma of the sweep."""
    shuffle: str = "main"
    """Shuffle-seed stream: ``main``, or ``alt`` for a second training that differs only in batch order."""
    snapshots: bool = False
    """Keep per-epoch weight snapshots (for per-epoch distances, Fig. 2)."""

    @property
    def sweep(self) -> bool:
        return self.sigma is None


@dataclass(frozen=True)
class SeriesSpec:
    """One reported curve."""

    id: str
    label: str
    kind: str
    """accuracy | distance | epoch_accuracy | epoch_distance."""
    model: str | None = None
    """accuracy series: the model."""
    reference: str | None = None
    """distance series: the reference model (W_r of D(W_r, W_o))."""
    compared: str | None = None
    """distance series: the compared model (W_o of D(W_r, W_o))."""
    panel: str = ""
    """Figure panel it belongs to (series of one panel share axes)."""


@dataclass(frozen=True)
class ExperimentSpec:
    """A whole experiment: datasets, models, series."""

    name: str
    title: str
    figure: str
    source: str
    datasets: dict[str, DatasetSpec]
    models: dict[str, ModelSpec]
    series: tuple[SeriesSpec, ...]
    description: str = ""
    prefer_datasets: tuple[str, ...] = ()
    """If a dataset of the run has a name containing one of these, the experiment runs on those alone
    (Fig. 2 is a CIFAR-10 figure in the paper); otherwise on every dataset of the run."""
    raw: dict = field(default_factory=dict, compare=False, repr=False)
    """The TOML data it was parsed from (stored with results, re-parsed by the report)."""


def load_experiment(name_or_path: str | Path) -> ExperimentSpec:
    """Load a shipped experiment by name (``fig2``, ``exp1``..``exp5``) or a TOML file."""
    path = resolve_spec("experiments", name_or_path, what="spec")
    return parse_experiment(read_toml(path), str(path))


def parse_experiment(data: dict, source: str = "<spec>") -> ExperimentSpec:
    """Validate a parsed TOML experiment spec."""
    top = Section(source, "", data)
    name = top.get("name", str)
    title = top.get("title", str, name)
    figure = top.get("figure", str, "")
    description = top.get("description", str, "")
    prefer = top.get("prefer_datasets", list, [], expected="a list of dataset name parts, e.g. [\"cifar\"]")
    if any(not isinstance(item, str) or not item for item in prefer):
        raise SpecError(f"{top.where('prefer_datasets')} = {prefer!r}; expected a list of non-empty strings")
    datasets_table = top.get("datasets", dict, expected="a [datasets.<id>] table")
    models_table = top.get("models", dict, expected="a [models.<id>] table")
    series_list = top.get("series", list, expected="a list of [[series]] tables")
    top.finish()

    datasets = {key: _parse_dataset(source, key, value) for key, value in datasets_table.items()}
    for dataset in datasets.values():
        for ref_key in ("counterpart", "redraw_of", "nested_in", "disjoint_from"):
            ref = getattr(dataset, ref_key)
            if ref is not None and ref not in datasets:
                raise SpecError(f"{source}: datasets.{dataset.id}.{ref_key} = {ref!r}; expected one of {sorted(datasets)}")
    _check_acyclic(source, datasets)
    models = {key: _parse_model(source, key, value, datasets) for key, value in models_table.items()}
    series = tuple(_parse_series(source, index, value, models) for index, value in enumerate(series_list))
    if not series:
        raise SpecError(f"{source}: series is empty; expected at least one [[series]]")
    ids = [item.id for item in series]
    if len(set(ids)) != len(ids):
        raise SpecError(f"{source}: series ids repeat: {ids}")
    return ExperimentSpec(name, title, figure, source, datasets, models, series, description,
                          tuple(item.lower() for item in prefer), data)


def _parse_dataset(source: str, key: str, data: Any) -> DatasetSpec:
    section = Section(source, f"datasets.{key}", data)
    label = section.get("label", str, key)
    redraw_of = section.get("redraw_of", str, None)
    nested_in = section.get("nested_in", str, None)
    setting_text = section.get("setting", str, None if (redraw_of or nested_in) else ...,
                               expected="a setting like S-1-1-0.5")
    try:
        setting = SamplingSetting.parse(setting_text) if setting_text else SamplingSetting(1, 1, 1)
    except Exception as exc:
        raise SpecError(f"{section.where('setting')}: {exc}") from exc
    labels_value = section.get("labels", (list, str), None, expected="a list of labels or a range like '3-7'")
    labels = None
    if labels_value is not None:
        text = labels_value if isinstance(labels_value, str) else ",".join(str(v) for v in labels_value)
        try:
            labels = parse_labels(text)
        except Exception as exc:
            raise SpecError(f"{section.where('labels')}: {exc}") from exc
    fraction = section.number("fraction", None, low=0.0, high=1.0)
    if nested_in is not None and fraction is None:
        raise SpecError(f"{section.where('fraction')} is missing; expected the nested fraction in (0, 1]")
    if fraction is not None and nested_in is None:
        raise SpecError(f"{section.where('fraction')} needs nested_in")
    disjoint_from = section.get("disjoint_from", str, None)
    if sum(x is not None for x in (redraw_of, nested_in, disjoint_from)) > 1:
        raise SpecError(f"{source}: datasets.{key}: redraw_of, nested_in and disjoint_from exclude each other")
    spec = DatasetSpec(
        id=key,
        label=label,
        setting=setting,
        labels=labels,
        counterpart=section.get("counterpart", str, None),
        redraw_of=redraw_of,
        disjoint=section.get("disjoint", bool, None),
        nested_in=nested_in,
        fraction=fraction,
        disjoint_from=disjoint_from,
    )
    section.finish()
    return spec


def _check_acyclic(source: str, datasets: dict[str, DatasetSpec]) -> None:
    for start in datasets:
        seen, current = [start], datasets[start]
        while True:
            parent = current.redraw_of or current.nested_in or current.disjoint_from or current.counterpart
            if parent is None:
                break
            if parent in seen:
                raise SpecError(f"{source}: datasets refer to each other in a cycle: {' -> '.join(seen + [parent])}")
            seen.append(parent)
            current = datasets[parent]


def _parse_model(source: str, key: str, data: Any, datasets: dict[str, DatasetSpec]) -> ModelSpec:
    section = Section(source, f"models.{key}", data)
    dataset = section.get("dataset", str)
    if dataset not in datasets:
        raise SpecError(f"{section.where('dataset')} = {dataset!r}; expected one of {sorted(datasets)}")
    sigma_value = section.get("sigma", (int, float, str), expected='a number >= 0 or "sweep"')
    if isinstance(sigma_value, str):
        if sigma_value != "sweep":
            raise SpecError(f"{section.where('sigma')} = {sigma_value!r}; expected a number >= 0 or \"sweep\"")
        sigma = None
    else:
        if sigma_value < 0:
            raise SpecError(f"{section.where('sigma')} = {sigma_value!r}; expected a number >= 0 or \"sweep\"")
        sigma = float(sigma_value)
    shuffle = section.get("shuffle", str, "main")
    if shuffle not in SHUFFLE_STREAMS:
        raise SpecError(f"{section.where('shuffle')} = {shuffle!r}; expected one of {list(SHUFFLE_STREAMS)}")
    spec = ModelSpec(key, section.get("label", str, key), dataset, sigma, shuffle, section.get("snapshots", bool, False))
    section.finish()
    return spec


def _parse_series(source: str, index: int, data: Any, models: dict[str, ModelSpec]) -> SeriesSpec:
    section = Section(source, f"series[{index}]", data)
    series_id = section.get("id", str)
    kind = section.get("kind", str)
    if kind not in SERIES_KINDS:
        raise SpecError(f"{section.where('kind')} = {kind!r}; expected one of {list(SERIES_KINDS)}")
    refs = ("model",) if kind.endswith("accuracy") else ("reference", "compared")
    values: dict[str, str] = {}
    for ref in refs:
        value = section.get(ref, str)
        if value not in models:
            raise SpecError(f"{section.where(ref)} = {value!r}; expected one of {sorted(models)}")
        values[ref] = value
    if kind == "epoch_distance":
        for ref in refs:
            if not models[values[ref]].snapshots:
                raise SpecError(f"{section.where(ref)}: model {values[ref]!r} needs snapshots = true for {kind}")
    spec = SeriesSpec(series_id, section.get("label", str, series_id), kind, values.get("model"),
                      values.get("reference"), values.get("compared"), section.get("panel", str, ""))
    section.finish()
    return spec


# ----------------------------------------------------------------------------------------- presets
Precision = Literal["fp32", "tf32", "bf16", "auto"]
EvalPart = Literal["eval", "test", "all"]


@dataclass(frozen=True)
class Preset:
    """The numbers an experiment runs with.

    Every field can be overridden on the command line: ``pudlab run`` and ``pudlab reproduce`` have
    one option per field (``--max-train-size`` for ``max_train_size``), its help the field's
    docstring. A field's ``metadata["option"]`` adjusts its option: ``name`` (another option name),
    ``min`` (the least value the option takes), ``split`` (False: list items are not comma-separated).
    """

    name: str = field(metadata={"option": {"name": "--preset-name"}})
    """Name the preset is recorded under (quick, paper or a preset file's stem)."""
    description: str = ""
    """One line on what the preset is for."""
    datasets: tuple[str, ...] = ("mnist-5k",)
    """Datasets the sweep runs on: known names or paths (see pudlab datasets)."""
    sigmas: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)
    """Sigma grid of sweeps, in [0, 1] pixel units."""
    epochs: int = 180
    """Training epochs."""
    lr: float = 1e-4
    """Adam learning rate, per step."""
    batch_size: int = 0
    """Batch size; 0: the paper's (128 one-channel, 64 colour)."""
    widths: tuple[int, int, int] = (32, 64, 128)
    """M_cnn conv widths."""
    hidden: int = 128
    """M_cnn dense width."""
    repeats: int = 3
    """Seeds per point: repeat r uses shuffle and noise seeds + r; the initial weights stay shared (the
    paper trains every model of a dataset from one initial weight set)."""
    precision: Precision = "fp32"
    """fp32 | tf32 | bf16 | auto (bf16 on CUDA, fp32 on CPU: see docs/performance.md, precision study)."""
    disjoint: bool = True
    """Redraws ("sampled with the same setting") avoid the original's entries."""
    max_train_size: int = field(default=0, metadata={"option": {"min": 1}})
    """If > 0, T_t is cut to a seeded subset of this size first (reduced data)."""
    split_seed: int = 0
    """Seed of the 90/10 split."""
    eval_fraction: float = 0.1
    """T_e share of the official training set."""
    sample_seed: int = 0
    """Seed of the S-X-Y-Z draws."""
    noise_seed: int = 0
    """Noise key of repeat 0 (repeat r uses noise_seed + r)."""
    shuffle_seed: int = 0
    """Batch order of repeat 0 (repeat r: +r; the 'alt' stream: +1000; the noise-floor partner: +2000)."""
    init_seed: int = 0
    """Seed of the one shared initial weight set."""
    snapshot_every: int = 1
    """Epoch interval of weight snapshots for per-epoch series (Fig. 2)."""
    noise_floor: bool = True
    """Also train a shuffle-seed partner of each distance reference (the noise floor)."""
    deviations: tuple[str, ...] = field(default=(), metadata={"option": {"split": False}})
    """Where this preset departs from the paper (printed in the report)."""
    eval_dataset: str = field(default="", metadata={"option": {"name": "--eval"}})
    """Score every model on this dataset (a name or path) instead of T_e; the models then train on
    all of each dataset of the run (no 90/10 split). Empty: T_e, as the paper does."""
    eval_part: EvalPart = "eval"
    """Part of --eval scored: eval (its T_e under split_seed and eval_fraction), test (its test set) or all."""
    model: str = ""
    """Train this model instead of M_cnn: module:function or file.py:function returning a torch.nn.Module
    for (input_shape, num_classes); widths and hidden then play no part. Empty: M_cnn."""
    as_raw: bool = False
    """Sweep a dataset that is a release (pudlab obfuscate's output) anyway, adding noise on top of its own."""

    def with_overrides(self, **overrides: Any) -> Preset:
        """A copy with the non-None ``overrides`` applied (validated)."""
        clean = {key: value for key, value in overrides.items() if value is not None}
        unknown = set(clean) - {f.name for f in fields(self)}
        if unknown:
            raise SpecError(f"unknown preset field(s) {sorted(unknown)}")
        preset = replace(self, **clean)
        return validate_preset(preset, f"preset {self.name} with overrides")

    def to_dict(self) -> dict:
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}

    def for_device(self, device: str) -> Preset:
        """The preset with ``precision = "auto"`` resolved for ``device``: bf16 on CUDA, fp32 elsewhere."""
        if self.precision != "auto":
            return self
        return replace(self, precision="bf16" if str(device).startswith("cuda") else "fp32")


def validate_preset(preset: Preset, source: str) -> Preset:
    """Range checks of a preset; returns it."""
    checks = [
        (preset.epochs >= 1, "epochs", "an integer >= 1"),
        (math.isfinite(preset.lr) and preset.lr > 0, "lr", "a finite number > 0"),
        (preset.batch_size >= 0, "batch_size", "an integer >= 0 (0 = paper default)"),
        (len(preset.widths) == 3 and min(preset.widths) >= 1, "widths", "three positive integers"),
        (preset.hidden >= 1, "hidden", "an integer >= 1"),
        (preset.repeats >= 1, "repeats", "an integer >= 1"),
        (preset.precision in ("fp32", "tf32", "bf16", "auto"), "precision", "fp32, tf32, bf16 or auto"),
        (len(preset.sigmas) >= 1 and all(math.isfinite(s) and s >= 0 for s in preset.sigmas), "sigmas",
         "a non-empty list of finite numbers >= 0"),
        (len(set(preset.sigmas)) == len(preset.sigmas), "sigmas", "distinct values"),
        (0 < preset.eval_fraction < 1, "eval_fraction", "a number in (0, 1)"),
        (preset.snapshot_every >= 1, "snapshot_every", "an integer >= 1"),
        (preset.max_train_size >= 0, "max_train_size", "an integer >= 0"),
        (len(preset.datasets) >= 1, "datasets", "at least one dataset"),
        (preset.eval_part in ("eval", "test", "all"), "eval_part", "eval, test or all"),
        (not preset.model or ":" in preset.model, "model", "module:function or file.py:function (empty: M_cnn)"),
    ]
    for ok, key, expected in checks:
        if not ok:
            raise SpecError(f"{source}: {key} = {getattr(preset, key)!r}; expected {expected}")
    return replace(preset, sigmas=tuple(sorted(float(s) for s in preset.sigmas)))


_PRESET_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,), "description": (str,), "datasets": (list,), "sigmas": (list,), "epochs": (int,),
    "lr": (int, float), "batch_size": (int,), "widths": (list,), "hidden": (int,), "repeats": (int,),
    "precision": (str,), "disjoint": (bool,), "max_train_size": (int,), "split_seed": (int,),
    "eval_fraction": (float,), "sample_seed": (int,), "noise_seed": (int,), "shuffle_seed": (int,),
    "init_seed": (int,), "snapshot_every": (int,), "noise_floor": (bool,), "deviations": (list,),
    "eval_dataset": (str,), "eval_part": (str,), "model": (str,), "as_raw": (bool,),
}


def load_preset(name_or_path: str | Path) -> Preset:
    """Load a shipped preset (``quick``, ``paper``) or a TOML file."""
    path = resolve_spec("presets", name_or_path, what="preset")
    return parse_preset(read_toml(path), str(path))


_ELEMENT_NAMES = {"datasets": "string", "deviations": "string", "widths": "integer", "sigmas": "number"}
_ELEMENT_TYPES: dict[str, type | tuple[type, ...]] = {"datasets": str, "deviations": str, "widths": int,
                                                      "sigmas": (int, float)}


def parse_preset(data: dict, source: str = "<preset>") -> Preset:
    section = Section(source, "", data)
    values: dict[str, Any] = {}
    for key, kinds in _PRESET_TYPES.items():
        value = section.get(key, kinds, None)
        if value is None:
            continue
        if isinstance(value, list):
            element = _ELEMENT_TYPES[key]
            bad = [item for item in value if isinstance(item, bool) or not isinstance(item, element)]
            if bad:
                raise SpecError(f"{section.where(key)} contains {bad!r}; expected {_ELEMENT_NAMES[key]} items")
            value = tuple(float(v) for v in value) if key == "sigmas" else tuple(value)
        values[key] = float(value) if key == "lr" else value
    section.finish()
    if "name" not in values:
        values["name"] = Path(source).stem
    return validate_preset(Preset(**values), source)


@dataclass(frozen=True)
class ExperimentPlan:
    """An experiment on one dataset under one preset (what the engine expands into jobs)."""

    spec: ExperimentSpec
    dataset: str
    preset: Preset
    id: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", f"{self.spec.name}@{self.dataset}")


def runs_on(spec: ExperimentSpec, dataset: str, run_datasets: list[str] | tuple[str, ...]) -> bool:
    """Whether ``spec`` runs on ``dataset`` in a run over ``run_datasets`` (see ``prefer_datasets``)."""
    if not spec.prefer_datasets:
        return True
    preferred = [name for name in run_datasets if any(part in name.lower() for part in spec.prefer_datasets)]
    return not preferred or dataset in preferred
