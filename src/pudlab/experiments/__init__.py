"""Experiments as data: TOML specs and presets, content-keyed jobs, a resumable store, a runner."""

from pudlab.experiments.engine import plan_sweep, run_sweep
from pudlab.experiments.runner import RunOptions, run_jobs
from pudlab.experiments.series import refresh_series
from pudlab.experiments.spec import (
    ExperimentPlan,
    ExperimentSpec,
    Preset,
    load_experiment,
    load_preset,
)
from pudlab.experiments.store import Store

__all__ = [
    "ExperimentPlan",
    "ExperimentSpec",
    "Preset",
    "RunOptions",
    "Store",
    "load_experiment",
    "load_preset",
    "plan_sweep",
    "refresh_series",
    "run_jobs",
    "run_sweep",
]
