"""CLI of experiments: ``run``, ``reproduce``, ``status``, ``plot``, ``report``.

The options of ``run`` and ``reproduce`` are generated (:mod:`pudlab.cli.field_options`): one per
field of :class:`~pudlab.experiments.spec.Preset` (overrides of ``--preset``) and of
:class:`~pudlab.experiments.options.RunOptions`, each with its field's docstring as help.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import click

from pudlab.cli._common import apply_options, writable_store_or_out
from pudlab.cli.field_options import build_checked, field_options, given_fields
from pudlab.errors import PudlabError
from pudlab.experiments.options import RunOptions
from pudlab.experiments.spec import Preset

RUN_OPTIONS_EXCLUDED = ("data_dir",)
"""RunOptions fields without an option of their own: ``data_dir`` is the global ``pudlab --data-dir``."""


def sweep_options(command: Callable) -> Callable:
    """Preset choice, one override per preset field, the store, and one option per run option: shared by
    ``run`` and ``reproduce``."""
    return apply_options(
        click.option("--preset", default="quick", show_default=True,
                     help="quick (2 CPU cores, minutes), paper (the paper's setup, a GPU job) or a preset TOML file."),
        *field_options(Preset, note=" [default: the preset's]"),
        click.option("--store", type=click.Path(file_okay=False), required=True, help="Result store directory."),
        click.option("--wait", is_flag=True,
                     help="If another run is writing the store, wait for it instead of stopping."),
        *field_options(RunOptions, exclude=RUN_OPTIONS_EXCLUDED),
    )(command)


def sweep_inputs(values: dict[str, Any], data_dir: str | None) -> tuple[Preset, RunOptions]:
    """The preset (``--preset`` with the given overrides applied and validated) and the run options
    (not resolved yet) of a ``run`` / ``reproduce`` command; their parameters are removed from ``values``."""
    from pudlab.experiments.spec import load_preset

    options = build_checked(lambda given: RunOptions(data_dir=data_dir, **given),
                            given_fields(values, RunOptions, RUN_OPTIONS_EXCLUDED), RunOptions)
    preset = load_preset(values.pop("preset"))
    return build_checked(lambda given: preset.with_overrides(**given), given_fields(values, Preset), Preset), options


def _start_pool_server(options: RunOptions) -> None:
    """Start the workers' fork server now, when the run will use a local CPU pool: it imports torch
    while this process imports and plans, so that workers start at once (:mod:`pudlab.pool_server`)."""
    if options.forks_cpu_pool():
        from pudlab import pool_server

        pool_server.start()


def _echo_model_note(preset: Any, options: Any) -> None:
    """Say so when the preset's model cannot train as a fused ensemble (it trains in exact lockstep)."""
    if preset.model and options.ensemble_mode == "fused" and (options.ensemble_size or 1) > 1:
        click.echo(f"note: {preset.model}: fused ensembles need M_cnn's layer plan; its jobs train in exact lockstep "
                   "ensembles instead (K modules under one Adam step)", err=True)


def _echo_summary(summary, store_dir: str) -> None:
    click.echo(f"{store_dir}: trained {summary.trained}, reused {summary.skipped}, failed {summary.failed} "
               f"in {summary.seconds:.1f} s")
    if summary.retried:
        click.echo(f"  {summary.retried} unit(s) retried after a worker process died")
    for key, error in summary.failures.items():
        click.echo(f"  failed {key[:12]}: {error.splitlines()[-1] if error else ''}", err=True)


@click.command("run")
@click.argument("spec")
@sweep_options
@click.pass_obj
def run_command(state, spec: str, **values: Any) -> None:
    """Run one experiment SPEC (fig2, exp1..exp5, or a TOML file) into --store on --datasets (default: the
    preset's); resumable.

    One writer per store (a second run is refused, or waits with --wait); Ctrl-C stops at the next
    step and keeps everything finished; rerun the same command to resume."""
    preset, options = sweep_inputs(values, state.data_dir)
    _start_pool_server(options)
    from pudlab.experiments.store import Store
    from pudlab.experiments.sweep import prepare_sweep, run_sweep

    options = options.resolved()
    _echo_model_note(preset, options)
    prepared = prepare_sweep([spec], list(preset.datasets), preset, options)
    with Store(values["store"], wait=values["wait"]) as store:
        summary = run_sweep(store, prepared, options, command="run")
    _echo_summary(summary, values["store"])
    if summary.failed:
        raise PudlabError(f"{summary.failed} job(s) failed; see `pudlab status {values['store']}`")


@click.command("reproduce")
@click.option("--experiments", default="fig2,exp1,exp2,exp3,exp4,exp5", show_default=True,
              help="Comma-separated experiments.")
@click.option("--figures/--no-figures", default=True, help="Draw the figures and write the report at the end.")
@sweep_options
@click.pass_obj
def reproduce_command(state, experiments: str, figures: bool, **values: Any) -> None:
    """Reproduce the paper's six setups into --store, then draw the figures and write the report."""
    started = time.perf_counter()
    preset, options = sweep_inputs(values, state.data_dir)
    _start_pool_server(options)
    from pudlab.experiments.store import Store
    from pudlab.experiments.sweep import prepare_sweep, run_sweep

    experiment_list = [e.strip() for e in experiments.split(",") if e.strip()]
    if not experiment_list:
        raise click.BadParameter("expected at least one experiment")
    options = options.resolved()
    _echo_model_note(preset, options)
    prepared = prepare_sweep(experiment_list, list(preset.datasets), preset, options)
    click.echo(f"reproduce: preset {preset.name}, datasets {', '.join(preset.datasets)}, "
               f"experiments {', '.join(experiment_list)}, device {options.device}")
    with Store(values["store"], wait=values["wait"]) as store:
        summary = run_sweep(store, prepared, options, command="reproduce")
        _echo_summary(summary, values["store"])
        if figures:
            from pudlab.report.document import write_report

            paths = write_report(store)
            click.echo(f"report: {paths['markdown']}  {paths['html']}  ({len(paths['figures'])} figure files)")
    click.echo(f"total {time.perf_counter() - started:.1f} s")
    if summary.failed:
        raise PudlabError(f"{summary.failed} job(s) failed; see `pudlab status {values['store']}`")


@click.command("status")
@click.argument("store_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status_command(store_dir: str, as_json: bool) -> None:
    """Jobs done / pending / failed in a store, and its plans."""
    from pudlab.cli._common import print_json
    from pudlab.experiments.results import open_store
    from pudlab.experiments.store import writer_holder

    with open_store(store_dir) as results:
        store = results.store
        counts = store.status_counts()
        failed = [row for row in store.job_rows() if row["status"] == "failed"]
        plans = [{"id": p["id"], "preset": p["preset"]["name"], "source": p["source"]} for p in store.plans()]
    writer = writer_holder(store_dir)  # a job marked running with no writer alive was abandoned
    counts["abandoned"] = 0 if writer else counts["running"]
    counts["running"] -= counts["abandoned"]
    if as_json:
        print_json({"counts": counts, "failed": failed, "plans": plans, "writer": writer})
        return
    total = sum(counts.values())
    click.echo(f"{store_dir}: {total} jobs: {counts['done']} done, {counts['pending']} pending, "
               f"{counts['running']} running, {counts['failed']} failed"
               + (f", {counts['abandoned']} abandoned" if counts["abandoned"] else ""))
    if writer:
        click.echo(f"  a run is writing the store now ({writer})")
    elif counts["abandoned"]:
        click.echo(f"  {counts['abandoned']} job(s) were left running by a run that stopped (Ctrl-C or killed); no "
                   "run holds the store: rerun the same command to resume them")
    for plan in plans:
        click.echo(f"  {plan['id']:24} preset {plan['preset']:8} {plan['source']}")
    for row in failed:
        click.echo(f"  failed {row['key'][:12]}: {(row['error'] or '').splitlines()[-1]}")


@click.command("plot")
@click.argument("store_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Figure directory [default: STORE/figures].")
def plot_command(store_dir: str, out: str | None) -> None:
    """Draw every figure (PNG and SVG) from the store alone."""
    from pudlab.experiments.results import open_store
    from pudlab.experiments.series import refresh_series
    from pudlab.report.document import draw_figures

    writable_store_or_out(store_dir, out, "the figures")
    with open_store(store_dir) as results:
        refresh_series(results.store)
        paths = draw_figures(results.store, out)
    for path in paths:
        click.echo(str(path))


@click.command("report")
@click.argument("store_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for report.md, report.html and figures/ [default: the store]. The store itself is "
                   "only read, so a store on read-only media can be reported with --out.")
def report_command(store_dir: str, out: str | None) -> None:
    """Write report.md and a self-contained report.html (figures, tables, claims)."""
    from pudlab.experiments.results import open_store
    from pudlab.experiments.series import refresh_series
    from pudlab.report.document import write_report

    writable_store_or_out(store_dir, out, "the report")
    with open_store(store_dir) as results:
        refresh_series(results.store)
        paths = write_report(results.store, out)
    click.echo(f"{paths['markdown']}\n{paths['html']}")


COMMANDS = (run_command, reproduce_command, status_command, plot_command, report_command)
