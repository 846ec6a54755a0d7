"""A sweep: experiments x datasets under one preset, planned into content-keyed jobs, trained, summarised.

:func:`prepare_sweep` loads and checks every input (specs, data, sigma grid, expansion into jobs)
without touching a store; :func:`plan_sweep` records a prepared sweep in a store; :func:`run_sweep`
records it, trains what is missing and refreshes the derived series. Resumable: run the same sweep
again to continue.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pudlab.data.dataset import SourceDataset, Split
from pudlab.data.sources import load_source
from pudlab.errors import PudlabError
from pudlab.experiments.jobs import Expansion, expand, make_split, model_config_for, split_spec_for
from pudlab.experiments.options import RunOptions
from pudlab.experiments.runner import RunSummary, run_jobs
from pudlab.experiments.series import refresh_series
from pudlab.experiments.spec import ExperimentPlan, ExperimentSpec, Preset, load_experiment
from pudlab.experiments.store import Store
from pudlab.model import ModelDefinition

PREVIEW_SAMPLES = 10
"""Raw T_t samples kept in the store for Fig. 1: the first of each class, in class order."""


@dataclass(frozen=True)
class PreparedDataset:
    """One dataset of a sweep, loaded: its source, T_t / T_e split and model config."""

    name: str
    source: SourceDataset
    split: Split
    model: ModelDefinition


@dataclass
class PreparedSweep:
    """A sweep planned in memory (nothing written yet): every input loaded and checked."""

    preset: Preset
    """The preset, its precision resolved for ``device``."""
    datasets: list[PreparedDataset]
    plans: list[tuple[ExperimentPlan, str]]
    """Each plan with its source label (description and fingerprint of its dataset)."""
    expansion: Expansion
    device: str
    """The device the sweep was prepared for (its jobs record the precision chosen for it)."""

    @property
    def job_keys(self) -> list[str]:
        return sorted(self.expansion.jobs)


@dataclass
class PlannedSweep:
    """What :func:`plan_sweep` put into the store."""

    plan_ids: list[str]
    expansion: Expansion

    @property
    def job_keys(self) -> list[str]:
        return sorted(self.expansion.jobs)


def prepare_sweep(experiments: Sequence[str | Path | ExperimentSpec], datasets: Sequence[str], preset: Preset,
                  options: RunOptions | None = None) -> PreparedSweep:
    """Load and check every input of a sweep (specs, data, grid, expansion) without touching any store.

    ``options`` give the data dir and the device (resolved here unless they already are), which
    decides a preset precision of ``auto``; default: ``RunOptions()``."""
    from pudlab.io import weights_sha256
    from pudlab.model import initial_state

    options = (options or RunOptions()).resolved()
    preset = preset.for_device(options.device)
    specs = [item if isinstance(item, ExperimentSpec) else load_experiment(item) for item in experiments]
    combined = Expansion()
    plans: list[tuple[ExperimentPlan, str]] = []
    loaded = []
    eval_source = load_source(preset.eval_dataset, options.data_dir) if preset.eval_dataset else None
    for dataset in datasets:
        source = load_source(dataset, options.data_dir)
        split = make_split(source, split_spec_for(preset))
        model = model_config_for(preset, source)
        init_sha = weights_sha256(initial_state(model, init_seed=preset.init_seed))
        loaded.append(PreparedDataset(dataset, source, split, model))
        source_label = f"{source.description} [{source.fingerprint[:12]}]"
        for spec in specs:
            plan = ExperimentPlan(spec, dataset, preset)
            combined.merge(expand(plan, source, split, init_sha, eval_source))
            plans.append((plan, source_label))
    return PreparedSweep(preset, loaded, plans, combined, options.device)


def plan_sweep(store: Store, prepared: PreparedSweep) -> PlannedSweep:
    """Record a prepared sweep in ``store``: sources, initial weights, previews, plans and jobs (jobs
    already in the store keep their status: finished ones are not trained again)."""
    preset = prepared.preset
    for dataset in prepared.datasets:
        split = dataset.split
        store.register_source(dataset.source)
        store.ensure_init(dataset.model, preset.init_seed)
        shown = np.unique(split.train.labels, return_index=True)[1][:PREVIEW_SAMPLES]  # one sample per class
        store.save_preview(dataset.name, split.train.images[shown], split.train.ids[shown], preset.noise_seed,
                           preset.sigmas)
    # saved after merging, so that every plan sees the merged snapshot requests
    for plan, source_label in prepared.plans:
        store.save_plan(plan.id, plan.spec.name, plan.dataset, plan.spec.raw, plan.preset.to_dict(), source_label,
                        prepared.expansion)
    return PlannedSweep([plan.id for plan, _ in prepared.plans], prepared.expansion)


def run_sweep(store: Store, prepared: PreparedSweep, options: RunOptions, *, command: str = "run") -> RunSummary:
    """Record ``prepared`` in ``store``, train what is missing, and refresh the derived series.
    Resumable: run it again to continue. ``options`` are resolved unless they already are."""
    started = time.time()
    options = options.resolved()
    if options.device != prepared.device:
        raise PudlabError(f"the sweep was prepared for device {prepared.device} but is to run on {options.device}: "
                          "prepare it with the same run options")
    planned = plan_sweep(store, prepared)
    summary = run_jobs(store, planned.job_keys, options)
    refresh_series(store)
    store.record_timing(command, started, time.time() - started, summary.trained,
                        {"workers": options.workers, "device": options.device, "ensemble_size": options.ensemble_size,
                         "threads": options.threads_per_worker(), "jobs_total": len(planned.job_keys),
                         "jobs_skipped": summary.skipped, "jobs_failed": summary.failed,
                         "datasets": [dataset.name for dataset in prepared.datasets], "preset": prepared.preset.name})
    return summary


__all__ = ["PlannedSweep", "PreparedDataset", "PreparedSweep", "plan_sweep", "prepare_sweep", "run_sweep"]
