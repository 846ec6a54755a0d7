"""Plan experiments into a store, run their jobs, derive their series."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pudlab.data.sources import load_source
from pudlab.experiments.jobs import Expansion, SplitSpec, expand, make_split, model_config_for
from pudlab.experiments.runner import RunOptions, RunSummary, run_jobs
from pudlab.experiments.series import refresh_series
from pudlab.experiments.spec import ExperimentPlan, ExperimentSpec, Preset, load_experiment
from pudlab.experiments.store import Store

PREVIEW_SAMPLES = 8
"""Raw T_t samples kept in the store for Fig. 1."""


@dataclass
class PlannedSweep:
    """What ``plan_sweep`` put into the store."""

    plan_ids: list[str]
    expansion: Expansion

    @property
    def job_keys(self) -> list[str]:
        return sorted(self.expansion.jobs)


def plan_sweep(store: Store, experiments: Sequence[str | Path | ExperimentSpec], datasets: Sequence[str],
               preset: Preset, *, data_dir: str | None = None, device: str = "cpu") -> PlannedSweep:
    """Expand every experiment on every dataset into jobs and record the plans in ``store``.

    ``device`` resolves a preset precision of ``auto`` (the resolved one is what jobs record).
    """
    preset = preset.for_device(device)
    specs = [item if isinstance(item, ExperimentSpec) else load_experiment(item) for item in experiments]
    combined = Expansion()
    plans: list[tuple[ExperimentPlan, str]] = []
    for dataset in datasets:
        source = load_source(dataset, data_dir)
        store.register_source(source)
        split = make_split(source, SplitSpec(preset.split_seed, preset.eval_fraction, preset.max_train_size))
        init_sha = store.ensure_init(model_config_for(preset, source), preset.init_seed)
        store.save_preview(dataset, split.train.images[:PREVIEW_SAMPLES], split.train.ids[:PREVIEW_SAMPLES],
                     preset.noise_seed, preset.sigmas)
        source_label = f"{source.description} [{source.fingerprint[:12]}]"
        for spec in specs:
            plan = ExperimentPlan(spec, dataset, preset)
            expansion = expand(plan, source, split, init_sha)
            combined.merge(expansion)
            plans.append((plan, source_label))
    # saved after merging, so that every plan sees the merged snapshot requests
    for plan, source_label in plans:
        store.save_plan(plan.id, plan.spec.name, plan.dataset, plan.spec.raw, plan.preset.to_dict(), source_label,
                        combined)
    return PlannedSweep([plan.id for plan, _ in plans], combined)


def run_sweep(store: Store, experiments: Sequence[str | Path | ExperimentSpec], datasets: Sequence[str],
              preset: Preset, options: RunOptions, *, command: str = "run") -> RunSummary:
    """Plan, train what is missing, and refresh the derived series. Resumable: rerun to continue."""
    started = time.time()
    planned = plan_sweep(store, experiments, datasets, preset, data_dir=options.data_dir, device=options.device)
    summary = run_jobs(store, planned.job_keys, options)
    refresh_series(store)
    store.record_timing(command, started, time.time() - started, summary.trained,
                        {"workers": options.workers, "device": options.device, "ensemble_size": options.ensemble_size,
                         "threads": options.threads_per_worker(), "jobs_total": len(planned.job_keys),
                         "jobs_skipped": summary.skipped, "jobs_failed": summary.failed,
                         "datasets": list(datasets), "preset": preset.name})
    return summary
