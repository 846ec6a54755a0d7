"""Experiments as data: TOML specs and presets, content-keyed jobs, a resumable store, a runner."""

from .engine import plan_sweep, run_sweep
from .runner import RunOptions, run_jobs
from .series import refresh_series
from .spec import ExperimentPlan, ExperimentSpec, Preset, load_experiment, load_preset
from .store import Store

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
