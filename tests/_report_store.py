"""One small finished sweep (exp1, exp3, fig2 on synthetic data, 2 repeats), built once per test run
and shared by the report and export tests."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import write_npz_dataset

EXPERIMENTS = ["exp1", "exp3", "fig2"]
_BUILT: dict[str, Path] = {}


def small_store(base: Path) -> Path:
    """The store's directory (built on first use under ``base``); treat it as read-only."""
    if "store" not in _BUILT:
        from pudlab.experiments.options import RunOptions
        from pudlab.experiments.spec import load_preset
        from pudlab.experiments.store import Store
        from pudlab.experiments.sweep import prepare_sweep, run_sweep

        base.mkdir(parents=True, exist_ok=True)
        dataset = str(write_npz_dataset(base / "tiny.npz"))
        preset = load_preset("quick").with_overrides(epochs=2, widths=(2, 2, 4), hidden=8, sigmas=(0.0, 1.0),
                                                     lr=3e-3, batch_size=32, repeats=2)
        options = RunOptions(workers=1, threads=1, progress=False, ensemble_size=8)
        with Store(base / "store") as store:
            run_sweep(store, prepare_sweep(EXPERIMENTS, [dataset], preset, options), options)
        _BUILT["store"] = base / "store"
    return _BUILT["store"]
