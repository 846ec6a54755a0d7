"""Training jobs: a spec under a preset expands into jobs keyed by a content hash.

The key hashes everything that determines the trained weights: the dataset fingerprint, the split,
the sampling recipe, the obfuscation, the model config, the initial weights (their SHA-256), the
hyper-parameters and seeds. Two experiments that need the same training (e.g. a clean reference)
get the same key, so it is trained once. Which epochs keep a weight snapshot is not part of the key:
requests are merged, and a finished job lacking a requested snapshot is trained again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace

import numpy as np

from pudlab.data.dataset import LabeledImages, SourceDataset, Split, split_train_eval
from pudlab.errors import SpecError, StoreError
from pudlab.experiments.spec import DatasetSpec, ExperimentPlan, Preset
from pudlab.model import FactoryModelConfig, ModelConfig, ModelDefinition, model_from_dict
from pudlab.obfuscation import ObfuscationParams, obfuscate
from pudlab.sampling import SampleRecipe, draw_recipe, label_window
from pudlab.seeding import derive_rng, derive_seed
from pudlab.train.trainer import TrainConfig, default_batch_size

JOB_FORMAT = "pudlab.job/1"
ALT_SHUFFLE_OFFSET = 1000
FLOOR_SHUFFLE_OFFSET = 2000


@dataclass(frozen=True)
class SplitSpec:
    """How T_t / T_e come from the source: the paper's split, optionally cut to a subset."""

    seed: int = 0
    eval_fraction: float = 0.1
    max_train_size: int = 0
    """If > 0: T_t is a seeded random subset of this size (reduced data)."""
    whole: bool = False
    """T_t is all of the source's training set (the models are scored on another dataset: :class:`EvalSpec`)."""

    def to_dict(self) -> dict:
        data: dict = {"seed": self.seed, "eval_fraction": self.eval_fraction, "max_train_size": self.max_train_size}
        if self.whole:  # only then: the keys of jobs without an evaluation dataset stay as they were
            data["whole"] = True
        return data


@dataclass(frozen=True)
class EvalSpec:
    """Where a job is scored instead of T_e: a part of another dataset (``--eval``, a preset's ``eval_dataset``)."""

    source_name: str
    """Name or path it is loaded from (not part of the key: the fingerprint is)."""
    fingerprint: str
    part: str = "eval"
    """eval (its T_e under ``split_seed``, ``eval_fraction``), test or all."""
    split_seed: int = 0
    eval_fraction: float = 0.1

    def key_fields(self) -> dict:
        return {"fingerprint": self.fingerprint, "part": self.part, "split_seed": self.split_seed,
                "eval_fraction": self.eval_fraction}

    def to_dict(self) -> dict:
        return {**self.key_fields(), "source_name": self.source_name}

    @classmethod
    def from_dict(cls, data: dict) -> EvalSpec:
        return cls(str(data["source_name"]), str(data["fingerprint"]), str(data.get("part", "eval")),
                   int(data.get("split_seed", 0)), float(data.get("eval_fraction", 0.1)))


def make_split(source: SourceDataset, split: SplitSpec) -> Split:
    """T_t and T_e of ``source`` under ``split`` (``whole``: T_t is all of it, T_e empty: the jobs are
    scored on their :class:`EvalSpec`)."""
    if split.whole:
        result = Split(source.train, source.train.take(np.arange(0)), split.seed, split.eval_fraction)
    else:
        result = split_train_eval(source, eval_fraction=split.eval_fraction, seed=split.seed)
    if 0 < split.max_train_size < len(result.train):
        keep = np.sort(derive_rng(split.seed, "cut").permutation(len(result.train))[: split.max_train_size])
        result = Split(result.train.take(keep), result.eval, result.seed, result.eval_fraction)
    return result


def canonical_obfuscation(params: ObfuscationParams) -> ObfuscationParams:
    """sigma = 0 is the identity whatever the seed and fraction: one key for all of them."""
    if params.sigma == 0 or params.fraction == 0:
        return ObfuscationParams(0.0, 1.0, 0, params.clip)
    return params


@dataclass(frozen=True)
class Job:
    """One training: everything that determines its result, plus how to find the data."""

    source_name: str
    """Name or path the source is loaded from (not part of the key: the fingerprint is)."""
    source_fingerprint: str
    split: SplitSpec
    recipe: SampleRecipe
    obfuscation: ObfuscationParams
    model: ModelDefinition
    init_seed: int
    init_sha256: str
    train: TrainConfig
    train_size: int
    """Number of training samples (derived; used to group jobs into ensembles)."""
    snapshot_epochs: tuple[int, ...] = ()
    """Epochs after which a weight snapshot is kept (not part of the key)."""
    eval_set: EvalSpec | None = None
    """Scored on this instead of T_e (part of the key only when set: other jobs keep their keys)."""

    def key_fields(self) -> dict:
        """What the key hashes."""
        return {
            "format": JOB_FORMAT,
            "source_fingerprint": self.source_fingerprint,
            "split": self.split.to_dict(),
            "sampling": self.recipe.to_dict(),
            "obfuscation": canonical_obfuscation(self.obfuscation).to_dict(),
            "model": self.model.to_dict(),
            "init": {"seed": self.init_seed, "sha256": self.init_sha256},
            "training": self.train.to_dict(),
            **({"eval": self.eval_set.key_fields()} if self.eval_set is not None else {}),
        }

    @property
    def key(self) -> str:
        payload = json.dumps(self.key_fields(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()[:32]

    def to_dict(self) -> dict:
        data = self.key_fields()
        data.update(source_name=self.source_name, train_size=self.train_size,
                    snapshot_epochs=list(self.snapshot_epochs), key=self.key)
        if self.eval_set is not None:
            data["eval"] = self.eval_set.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Job:
        """Rebuild a job; when ``data`` carries its key, the content must still hash to it."""
        job = cls._from_dict(data)
        if "key" in data and data["key"] != job.key:
            raise StoreError(f"job {data['key']}: its stored description no longer hashes to its key "
                             f"(edited or corrupt store)")
        return job

    @classmethod
    def _from_dict(cls, data: dict) -> Job:
        return cls(
            source_name=data["source_name"],
            source_fingerprint=data["source_fingerprint"],
            split=SplitSpec(**data["split"]),
            recipe=SampleRecipe.from_dict(data["sampling"]),
            obfuscation=ObfuscationParams(**data["obfuscation"]),
            model=model_from_dict(data["model"]),
            init_seed=int(data["init"]["seed"]),
            init_sha256=data["init"]["sha256"],
            train=TrainConfig.from_dict(data["training"]),
            train_size=int(data["train_size"]),
            snapshot_epochs=tuple(int(e) for e in data.get("snapshot_epochs", ())),
            eval_set=EvalSpec.from_dict(data["eval"]) if data.get("eval") else None,
        )

    def group_signature(self, mode: str = "exact") -> tuple:
        """Jobs with equal signatures can train in one lockstep ensemble: same data source, model,
        initial weights and hyper-parameters but the shuffle seed; for a fused ensemble also the
        same number of steps per epoch (exact ensembles take any sizes)."""
        train = self.train.to_dict()
        train.pop("shuffle_seed")
        signature: tuple[str | int, ...] = (
            self.source_fingerprint, json.dumps(self.split.to_dict(), sort_keys=True),
            json.dumps(self.model.to_dict(), sort_keys=True), self.init_sha256, json.dumps(train, sort_keys=True))
        if self.eval_set is not None:  # members of an ensemble share one evaluation set
            signature += (json.dumps(self.eval_set.key_fields(), sort_keys=True),)
        if mode == "fused":
            signature += (-(-self.train_size // self.train.batch_size),)
        return signature


def job_training_set(split: Split, job: Job) -> tuple[LabeledImages, LabeledImages]:
    """(raw sample T, obfuscated O(T)) of ``job``: its recipe drawn from T_t = ``split.train``, then
    obfuscated with its (seeded) parameters."""
    sample = split.train.take(draw_recipe(split.train.labels, job.recipe))
    params = job.obfuscation
    return sample, obfuscate(sample, sigma=params.sigma, fraction=params.fraction, seed=params.seed, clip=params.clip)


@dataclass(frozen=True)
class Role:
    """Which job plays a model of an experiment at one sigma and repeat."""

    plan: str
    model: str
    sigma: float
    repeat: int
    stream: str
    """``model`` (the model itself) or ``floor`` (its shuffle-seed partner, for the noise floor)."""
    job: str


@dataclass
class Expansion:
    """Jobs (by key) and the roles they play."""

    jobs: dict[str, Job] = field(default_factory=dict)
    roles: list[Role] = field(default_factory=list)

    def add(self, job: Job, role: Role) -> None:
        existing = self.jobs.get(job.key)
        if existing is not None:
            merged = tuple(sorted(set(existing.snapshot_epochs) | set(job.snapshot_epochs)))
            job = replace(existing, snapshot_epochs=merged)
        self.jobs[job.key] = job
        self.roles.append(role)

    def merge(self, other: Expansion) -> None:
        for role in other.roles:
            self.add(other.jobs[role.job], role)


def own_draw_seed(sample_seed: int, dataset_id: str) -> int:
    """The seed of an own draw (``disjoint_from``): its own stream, so that two own draws do not nest."""
    return derive_seed(sample_seed, "own-draw", dataset_id)


def dataset_recipes(plan: ExperimentPlan, num_classes: int) -> dict[str, SampleRecipe]:
    """The sampling recipe of every dataset of the plan's spec.

    A plain dataset is drawn with the preset's ``sample_seed`` (so equal settings in different
    experiments are one draw and share their trainings); a redraw uses the parent's seed + n and, if
    disjoint, avoids the parent's entries; ``disjoint_from`` gives an own draw with its own seed that
    avoids the named dataset's entries; ``nested_in`` is a random fraction of its parent (Exp-2).
    """
    spec, preset = plan.spec, plan.preset
    recipes: dict[str, SampleRecipe] = {}
    redraw_counts: dict[str, int] = {}

    def resolve(dataset_id: str) -> SampleRecipe:
        if dataset_id in recipes:
            return recipes[dataset_id]
        dataset: DatasetSpec = spec.datasets[dataset_id]
        if dataset.redraw_of is not None:
            parent = resolve(dataset.redraw_of)
            redraw_counts[dataset.redraw_of] = redraw_counts.get(dataset.redraw_of, 0) + 1
            disjoint = preset.disjoint if dataset.disjoint is None else dataset.disjoint
            seed = parent.seed + redraw_counts[dataset.redraw_of]
            recipe = SampleRecipe(parent.setting, parent.labels, seed, disjoint_from=(parent,) if disjoint else ())
        elif dataset.nested_in is not None:
            parent = resolve(dataset.nested_in)
            recipe = replace(parent, nested_fraction=dataset.fraction, nested_seed=preset.sample_seed)
        else:
            reference = resolve(dataset.counterpart).labels if dataset.counterpart else None
            labels = dataset.labels or label_window(dataset.setting, num_classes, reference_labels=reference)
            if dataset.disjoint_from is not None:
                avoid = resolve(dataset.disjoint_from)
                recipe = SampleRecipe(dataset.setting, tuple(labels), own_draw_seed(preset.sample_seed, dataset.id),
                                      disjoint_from=(avoid,))
            else:
                recipe = SampleRecipe(dataset.setting, tuple(labels), preset.sample_seed)
        recipes[dataset_id] = recipe
        return recipe

    for dataset_id in spec.datasets:
        resolve(dataset_id)
    return recipes


def model_config_for(preset: Preset, source: SourceDataset) -> ModelDefinition:
    """The preset's model for ``source``: its ``model`` factory, else M_cnn with its widths."""
    if preset.model:
        return FactoryModelConfig(preset.model, source.sample_shape, source.num_classes)
    return ModelConfig(source.sample_shape, preset.widths, preset.hidden, source.num_classes)


def eval_spec_for(preset: Preset, eval_source: SourceDataset | None) -> EvalSpec | None:
    """The evaluation set of the preset's jobs (``eval_source``: its ``eval_dataset``, loaded), or None."""
    if not preset.eval_dataset:
        return None
    if eval_source is None:
        raise SpecError(f"preset {preset.name}: eval_dataset {preset.eval_dataset!r} was not loaded")
    return EvalSpec(preset.eval_dataset, eval_source.fingerprint, preset.eval_part, preset.split_seed,
                    preset.eval_fraction)


def split_spec_for(preset: Preset) -> SplitSpec:
    """T_t / T_e of the preset's datasets (all of each when it names an evaluation dataset)."""
    return SplitSpec(preset.split_seed, preset.eval_fraction, preset.max_train_size, whole=bool(preset.eval_dataset))


def check_not_release(plan: ExperimentPlan, source: SourceDataset) -> None:
    """Refuse to sweep noise onto a release (``pudlab obfuscate``'s output) unless the preset's ``as_raw``."""
    from pudlab.releases import refuse_release

    noisy = any(sigma > 0 for model in plan.spec.models.values()
                for sigma in (plan.preset.sigmas if model.sigma is None else (model.sigma,)))
    if noisy and not plan.preset.as_raw:
        refuse_release(source.origin, command=f"{plan.spec.name} on {source.name}", as_raw=False,
                       instead="Sweep the raw dataset, or train on the release as released: pudlab train RELEASE "
                               "--sigma 0 --eval DATASET.")


def train_config_for(preset: Preset, source: SourceDataset, shuffle_seed: int) -> TrainConfig:
    batch = preset.batch_size or default_batch_size(source.sample_shape)
    return TrainConfig(epochs=preset.epochs, batch_size=batch, lr=preset.lr, shuffle_seed=shuffle_seed,
                       precision=preset.precision)


def expand(plan: ExperimentPlan, source: SourceDataset, split: Split, init_sha256: str,
           eval_source: SourceDataset | None = None) -> Expansion:
    """All jobs and roles of ``plan`` on ``source`` (whose T_t is ``split.train``); ``eval_source``:
    the preset's ``eval_dataset``, loaded (needed when it names one)."""
    preset = plan.preset
    check_not_release(plan, source)
    split_spec = split_spec_for(preset)
    eval_set = eval_spec_for(preset, eval_source)
    recipes = dataset_recipes(plan, source.num_classes)
    sizes: dict[str, int] = {}
    for dataset_id, recipe in recipes.items():
        try:
            sizes[dataset_id] = len(draw_recipe(split.train.labels, recipe))
        except Exception as exc:
            raise SpecError(f"{plan.spec.source}: datasets.{dataset_id} on {source.name}: {exc}") from exc
        if sizes[dataset_id] == 0:
            raise SpecError(f"{plan.spec.source}: datasets.{dataset_id} on {source.name} draws no samples")
    model_config = model_config_for(preset, source)
    snapshot_epochs = tuple(sorted({*range(preset.snapshot_every, preset.epochs + 1, preset.snapshot_every),
                                    preset.epochs}))
    distance_refs = {series.reference for series in plan.spec.series if series.kind == "distance"}
    expansion = Expansion()

    def make_job(dataset_id: str, sigma: float, repeat: int, shuffle_offset: int, snapshots: bool) -> Job:
        obfuscation = canonical_obfuscation(ObfuscationParams(sigma, 1.0, preset.noise_seed + repeat, False))
        return Job(
            source_name=source.name,
            source_fingerprint=source.fingerprint,
            split=split_spec,
            recipe=recipes[dataset_id],
            obfuscation=obfuscation,
            model=model_config,
            init_seed=preset.init_seed,
            init_sha256=init_sha256,
            train=train_config_for(preset, source, preset.shuffle_seed + repeat + shuffle_offset),
            train_size=sizes[dataset_id],
            snapshot_epochs=snapshot_epochs if snapshots else (),
            eval_set=eval_set,
        )

    for model in plan.spec.models.values():
        sigmas = preset.sigmas if model.sigma is None else (model.sigma,)  # None: the sweep's grid
        offset = ALT_SHUFFLE_OFFSET if model.shuffle == "alt" else 0
        for sigma in sigmas:
            for repeat in range(preset.repeats):
                job = make_job(model.dataset, float(sigma), repeat, offset, model.snapshots)
                expansion.add(job, Role(plan.id, model.id, float(sigma), repeat, "model", job.key))
                if preset.noise_floor and model.id in distance_refs and not model.sweep:
                    floor = make_job(model.dataset, float(sigma), repeat, offset + FLOOR_SHUFFLE_OFFSET, False)
                    expansion.add(floor, Role(plan.id, model.id, float(sigma), repeat, "floor", floor.key))
    return expansion
