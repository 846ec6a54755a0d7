"""CLI of the experiment engine: ``run``, ``reproduce``, ``status``, ``plot``, ``report``."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import click

from pudlab.cli._common import parse_finite, parse_widths, writable_store_or_out
from pudlab.errors import PudlabError

MAX_AUTO_WORKERS = 8
"""Most worker processes chosen automatically on CPU (each holds its own copy of the data)."""
OVERRIDES = ("epochs", "sigmas", "repeats", "widths", "hidden", "lr", "batch_size", "precision", "max_train_size",
             "snapshot_every")


def sweep_options(command: Callable) -> Callable:
    """Preset choice, preset overrides and run options shared by ``run`` and ``reproduce``."""
    options = [
        click.option("--preset", default="quick", show_default=True,
                     help="quick (2 CPU cores, minutes), paper (the paper's setup, a GPU job) or a preset TOML file."),
        click.option("--epochs", type=click.IntRange(min=1), default=None, help="Override: epochs."),
        click.option("--sigmas", "--sigma", "sigmas", multiple=True,
                     help="Override: sigma grid, comma-separated or repeated: --sigmas 0,0.5,1 or --sigma 0 --sigma 1."),
        click.option("--repeats", type=click.IntRange(min=1), default=None,
                     help="Override: seeds per point (mean +- std)."),
        click.option("--widths", default=None, help="Override: conv widths, e.g. 8,16,32."),
        click.option("--hidden", type=click.IntRange(min=1), default=None, help="Override: dense width."),
        click.option("--lr", type=float, default=None, help="Override: Adam learning rate."),
        click.option("--batch-size", type=click.IntRange(min=0), default=None,
                     help="Override: batch size (0 = paper's 128/64)."),
        click.option("--precision", type=click.Choice(["fp32", "tf32", "bf16", "auto"]), default=None,
                     help="Override: arithmetic precision (auto: bf16 on CUDA, fp32 on CPU)."),
        click.option("--max-train-size", type=click.IntRange(min=1), default=None,
                     help="Override: cut T_t to this many samples."),
        click.option("--snapshot-every", type=click.IntRange(min=1), default=None,
                     help="Override: epochs between Fig. 2 snapshots."),
        click.option("--store", type=click.Path(file_okay=False), required=True, help="Result store directory."),
        click.option("--wait", is_flag=True,
                     help="If another run is writing the store, wait for it instead of stopping."),
        click.option("--checkpoint-seconds", type=click.FloatRange(min=-1), default=None,
                     help="Least seconds between checkpoints of a unit's training state [default: 3; "
                          "further apart when saving would take over 5 % of the time]; 0: every step; -1: none."),
        click.option("--workers", type=click.IntRange(min=1), default=None,
                     help="Worker processes [default: CPU: one per core (at most 8), 1 thread each; CUDA: 1].",),
        click.option("--threads", type=click.IntRange(min=0), default=0,
                     help="torch threads per worker [default: 1 on CPU with auto workers, else cores / workers]. "
                          "Results are bit-identical only under the same value."),
        click.option("--ensemble-size", type=click.IntRange(min=1), default=None,
                     help="Most jobs trained together in one lockstep ensemble [default: 8 on CPU, 32 on CUDA]."),
        click.option("--ensemble-mode", type=click.Choice(["exact", "fused"]), default=None,
                     help="exact: bit-identical to separate trainings; fused: grouped convs, the GPU fast path "
                          "[default: fused on CUDA, exact on CPU]."),
        click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto."),
        click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                     help="local processes, or Ray tasks (pip install 'pudlab[ray]')."),
        click.option("--ray-address", default=None,
                     help="Ray cluster to join (auto or HOST:PORT) [default: start a local Ray instance]."),
        click.option("--ray-ship-data", is_flag=True,
                     help="Send datasets to Ray workers through the object store (data dir not shared)."),
        click.option("--progress/--no-progress", default=True, help="Show a progress bar."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _preset_from(kwargs: dict):
    from pudlab.experiments.spec import load_preset

    preset = load_preset(kwargs.pop("preset"))
    overrides = {key: kwargs.pop(key) for key in OVERRIDES}
    if overrides["sigmas"]:
        overrides["sigmas"] = parse_finite(",".join(overrides["sigmas"]), "--sigmas", minimum=0)
    else:
        overrides["sigmas"] = None
    if overrides["lr"] is not None and not (overrides["lr"] > 0 and overrides["lr"] != float("inf")):
        raise click.BadParameter(f"--lr: expected a finite number > 0, got {overrides['lr']!r}")
    if overrides["widths"] is not None:
        overrides["widths"] = parse_widths(overrides["widths"])
    return preset.with_overrides(**overrides)


def _auto_cpu_workers() -> int:
    """Worker processes on CPU when --workers is not given: one per core, at most MAX_AUTO_WORKERS."""
    return max(1, min(os.cpu_count() or 1, MAX_AUTO_WORKERS))


def _start_pool_server(kwargs: dict) -> None:
    """Start the workers' fork server now, when the run will use a local CPU pool: it imports torch
    while this process imports and plans, so that workers start at once (:mod:`pudlab.pool_server`)."""
    workers = kwargs["workers"] or _auto_cpu_workers()
    if kwargs["executor"] == "local" and kwargs["device"] == "cpu" and workers > 1:
        from pudlab import pool_server

        pool_server.start()


def _options_from(kwargs: dict, data_dir: str | None):
    from pudlab.experiments.runner import RunOptions
    from pudlab.experiments.worker import CHECKPOINT_SECONDS
    from pudlab.train.trainer import resolve_device

    device = str(resolve_device(kwargs.pop("device")))
    ensemble = kwargs.pop("ensemble_size")
    if ensemble is None:
        ensemble = 32 if device.startswith("cuda") else 8
    workers, threads, seconds = kwargs.pop("workers"), kwargs.pop("threads"), kwargs.pop("checkpoint_seconds")
    if workers is None:  # small convs use one core better than two threads do: one process per core
        workers = 1 if device.startswith("cuda") else _auto_cpu_workers()
        threads = threads or (0 if device.startswith("cuda") else 1)
    return RunOptions(workers=workers, device=device, threads=threads,
                      ensemble_size=ensemble, ensemble_mode=kwargs.pop("ensemble_mode"), data_dir=data_dir,
                      progress=kwargs.pop("progress"), executor=kwargs.pop("executor"),
                      ray_address=kwargs.pop("ray_address"), ray_ship_data=kwargs.pop("ray_ship_data"),
                      checkpoint_seconds=CHECKPOINT_SECONDS if seconds is None else seconds)


def _echo_summary(summary, store_dir: str) -> None:
    click.echo(f"{store_dir}: trained {summary.trained}, reused {summary.skipped}, failed {summary.failed} "
               f"in {summary.seconds:.1f} s")
    if summary.retried:
        click.echo(f"  {summary.retried} unit(s) retried after a worker process died")
    for key, error in summary.failures.items():
        click.echo(f"  failed {key[:12]}: {error.splitlines()[-1] if error else ''}", err=True)


@click.command("run")
@click.argument("spec")
@click.option("--dataset", "datasets", multiple=True, help="Dataset(s) to run on [default: the preset's].")
@sweep_options
@click.pass_obj
def run_command(state, spec: str, datasets: tuple[str, ...], **kwargs) -> None:
    """Run one experiment SPEC (fig2, exp1..exp5, or a TOML file) into --store; resumable.

    One writer per store (a second run is refused, or waits with --wait); Ctrl-C stops at the next
    step and keeps everything finished; rerun the same command to resume."""
    _start_pool_server(kwargs)
    from pudlab.experiments.engine import prepare_sweep, run_sweep
    from pudlab.experiments.store import Store

    preset = _preset_from(kwargs)
    store_dir, wait = kwargs.pop("store"), kwargs.pop("wait")
    options = _options_from(kwargs, state.data_dir)
    dataset_list = list(datasets) or list(preset.datasets)
    prepared = prepare_sweep([spec], dataset_list, preset, data_dir=options.data_dir, device=options.device)
    with Store(store_dir, wait=wait) as store:
        summary = run_sweep(store, [spec], dataset_list, preset, options, command="run", prepared=prepared)
    _echo_summary(summary, store_dir)
    if summary.failed:
        raise PudlabError(f"{summary.failed} job(s) failed; see `pudlab status {store_dir}`")


@click.command("reproduce")
@click.option("--datasets", default=None, help="Comma-separated datasets [default: the preset's].")
@click.option("--experiments", default="fig2,exp1,exp2,exp3,exp4,exp5", show_default=True,
              help="Comma-separated experiments.")
@click.option("--figures/--no-figures", default=True, help="Draw the figures and write the report at the end.")
@sweep_options
@click.pass_obj
def reproduce_command(state, datasets: str | None, experiments: str, figures: bool, **kwargs) -> None:
    """Reproduce the paper's six setups into --store, then draw the figures and write the report."""
    started = time.perf_counter()
    _start_pool_server(kwargs)
    from pudlab.experiments.engine import prepare_sweep, run_sweep
    from pudlab.experiments.store import Store

    preset = _preset_from(kwargs)
    store_dir, wait = kwargs.pop("store"), kwargs.pop("wait")
    options = _options_from(kwargs, state.data_dir)
    dataset_list = [d.strip() for d in datasets.split(",") if d.strip()] if datasets else list(preset.datasets)
    experiment_list = [e.strip() for e in experiments.split(",") if e.strip()]
    if not dataset_list or not experiment_list:
        raise click.BadParameter("expected at least one dataset and one experiment")
    prepared = prepare_sweep(experiment_list, dataset_list, preset, data_dir=options.data_dir, device=options.device)
    click.echo(f"reproduce: preset {preset.name}, datasets {', '.join(dataset_list)}, "
               f"experiments {', '.join(experiment_list)}, device {options.device}")
    with Store(store_dir, wait=wait) as store:
        summary = run_sweep(store, experiment_list, dataset_list, preset, options, command="reproduce",
                            prepared=prepared)
        _echo_summary(summary, store_dir)
        if figures:
            from pudlab.report.document import write_report

            paths = write_report(store)
            click.echo(f"report: {paths['markdown']}  {paths['html']}  ({len(paths['figures'])} figure files)")
    click.echo(f"total {time.perf_counter() - started:.1f} s")
    if summary.failed:
        raise PudlabError(f"{summary.failed} job(s) failed; see `pudlab status {store_dir}`")


@click.command("status")
@click.argument("store_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status_command(store_dir: str, as_json: bool) -> None:
    """Jobs done / pending / failed in a store, and its plans."""
    from pudlab.cli._common import print_json
    from pudlab.experiments.store import Store

    with Store(store_dir, create=False, read_only=True) as store:
        counts = store.status_counts()
        failed = [row for row in store.job_rows() if row["status"] == "failed"]
        plans = [{"id": p["id"], "preset": p["preset"]["name"], "source": p["source"]} for p in store.plans()]
    if as_json:
        print_json({"counts": counts, "failed": failed, "plans": plans})
        return
    total = sum(counts.values())
    click.echo(f"{store_dir}: {total} jobs: {counts['done']} done, {counts['pending']} pending, "
               f"{counts['running']} running, {counts['failed']} failed")
    for plan in plans:
        click.echo(f"  {plan['id']:24} preset {plan['preset']:8} {plan['source']}")
    for row in failed:
        click.echo(f"  failed {row['key'][:12]}: {(row['error'] or '').splitlines()[-1]}")


@click.command("plot")
@click.argument("store_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Figure directory [default: STORE/figures].")
def plot_command(store_dir: str, out: str | None) -> None:
    """Draw every figure (PNG and SVG) from the store alone."""
    from pudlab.experiments.series import refresh_series
    from pudlab.experiments.store import Store
    from pudlab.report.document import draw_figures

    writable_store_or_out(store_dir, out, "the figures")
    with Store(store_dir, create=False, read_only=True) as store:
        refresh_series(store)
        paths = draw_figures(store, out)
    for path in paths:
        click.echo(str(path))


@click.command("report")
@click.argument("store_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for report.md, report.html and figures/ [default: the store]. The store itself is "
                   "only read, so a store on read-only media can be reported with --out.")
def report_command(store_dir: str, out: str | None) -> None:
    """Write report.md and a self-contained report.html (figures, tables, claims)."""
    from pudlab.experiments.series import refresh_series
    from pudlab.experiments.store import Store
    from pudlab.report.document import write_report

    writable_store_or_out(store_dir, out, "the report")
    with Store(store_dir, create=False, read_only=True) as store:
        refresh_series(store)
        paths = write_report(store, out)
    click.echo(f"{paths['markdown']}\n{paths['html']}")


COMMANDS = (run_command, reproduce_command, status_command, plot_command, report_command)
