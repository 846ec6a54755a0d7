"""Plan experiments into a store, run their jobs, derive their series."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pudlab.data.sources import load_source
from pudlab.experiments.jobs import Expansion, SplitSpec, expand, make_split, model_config_for
from pudlab.experiments.runner import RunOptions, RunSummary, run_jobs
from pudlab.experiments.series import refresh_series
from pudlab.experiments.spec import ExperimentPlan, ExperimentSpec, Preset, load_experiment
from pudlab.experiments.store import Store

PREVIEW_SAMPLES = 10
"""Raw T_t samples kept in the store for Fig. 1: the first of each class, in class order."""


@dataclass
class PlannedSweep:
    """What ``plan_sweep`` put into the store."""

    plan_ids: list[str]
    expansion: Expansion

    @property
    def job_keys(self) -> list[str]:
        return sorted(self.expansion.jobs)


@dataclass
class PreparedSweep:
    """A sweep planned in memory (nothing written yet): every input loaded and checked."""

    preset: Preset
    datasets: list
    """Per dataset: (name, source, split, model config)."""
    plans: list[tuple[ExperimentPlan, str]]
    expansion: Expansion
    init_seed: int


def prepare_sweep(experiments: Sequence[str | Path | ExperimentSpec], datasets: Sequence[str], preset: Preset, *,
                  data_dir: str | None = None, device: str = "cpu") -> PreparedSweep:
    """Load and check every input of a sweep (specs, data, grid, expansion) without touching any store."""
    from pudlab.io import weights_sha256
    from pudlab.model import initial_state

    preset = preset.for_device(device)
    specs = [item if isinstance(item, ExperimentSpec) else load_experiment(item) for item in experiments]
    combined = Expansion()
    plans: list[tuple[ExperimentPlan, str]] = []
    loaded = []
    for dataset in datasets:
        source = load_source(dataset, data_dir)
        split = make_split(source, SplitSpec(preset.split_seed, preset.eval_fraction, preset.max_train_size))
        model = model_config_for(preset, source)
        init_sha = weights_sha256(initial_state(model, init_seed=preset.init_seed))
        loaded.append((dataset, source, split, model))
        source_label = f"{source.description} [{source.fingerprint[:12]}]"
        for spec in specs:
            plan = ExperimentPlan(spec, dataset, preset)
            combined.merge(expand(plan, source, split, init_sha))
            plans.append((plan, source_label))
    return PreparedSweep(preset, loaded, plans, combined, preset.init_seed)


def record_sweep(store: Store, prepared: PreparedSweep) -> PlannedSweep:
    """Write a prepared sweep into ``store``: sources, initial weights, previews, plans and jobs."""
    preset = prepared.preset
    for dataset, source, split, model in prepared.datasets:
        store.register_source(source)
        store.ensure_init(model, prepared.init_seed)
        shown = np.unique(split.train.labels, return_index=True)[1][:PREVIEW_SAMPLES]  # one sample per class
        store.save_preview(dataset, split.train.images[shown], split.train.ids[shown], preset.noise_seed, preset.sigmas)
    # saved after merging, so that every plan sees the merged snapshot requests
    for plan, source_label in prepared.plans:
        store.save_plan(plan.id, plan.spec.name, plan.dataset, plan.spec.raw, plan.preset.to_dict(), source_label,
                        prepared.expansion)
    return PlannedSweep([plan.id for plan, _ in prepared.plans], prepared.expansion)


def plan_sweep(store: Store, experiments: Sequence[str | Path | ExperimentSpec], datasets: Sequence[str],
               preset: Preset, *, data_dir: str | None = None, device: str = "cpu") -> PlannedSweep:
    """Expand every experiment on every dataset into jobs and record the plans in ``store``
    (everything is checked before the store changes).

    ``device`` resolves a preset precision of ``auto`` (the resolved one is what jobs record).
    """
    return record_sweep(store, prepare_sweep(experiments, datasets, preset, data_dir=data_dir, device=device))


def run_sweep(store: Store, experiments: Sequence[str | Path | ExperimentSpec], datasets: Sequence[str],
              preset: Preset, options: RunOptions, *, command: str = "run",
              prepared: PreparedSweep | None = None) -> RunSummary:
    """Plan, train what is missing, and refresh the derived series. Resumable: rerun to continue.
    ``prepared``: the sweep from :func:`prepare_sweep` (else prepared here)."""
    started = time.time()
    if prepared is None:
        prepared = prepare_sweep(experiments, datasets, preset, data_dir=options.data_dir, device=options.device)
    planned = record_sweep(store, prepared)
    summary = run_jobs(store, planned.job_keys, options)
    refresh_series(store)
    store.record_timing(command, started, time.time() - started, summary.trained,
                        {"workers": options.workers, "device": options.device, "ensemble_size": options.ensemble_size,
                         "threads": options.threads_per_worker(), "jobs_total": len(planned.job_keys),
                         "jobs_skipped": summary.skipped, "jobs_failed": summary.failed,
                         "datasets": list(datasets), "preset": preset.name})
    return summary
