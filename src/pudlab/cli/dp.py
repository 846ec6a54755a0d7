"""``pudlab compare-dp``: obfuscation next to DP-SGD on one dataset and one model (docs/privacy.md sec. 6).

Kept cheap to import (the top-level CLI imports it): torch, Opacus and matplotlib load inside the command.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import click

from pudlab.cli._common import parse_floats
from pudlab.errors import PudlabError


def _floats(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[float, ...]:
    """A repeatable option of numbers: ``--x 0 --x 0.5`` and ``--x 0,0.5`` alike."""
    return tuple(value for text in values for value in parse_floats(text, f"--{param.name}".replace("_", "-")))


@click.command("compare-dp")
@click.argument("dataset", required=False)
@click.option("--from-json", "from_json", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Redraw the table and figures of a dp_comparison.json (no training; give no DATASET).")
@click.option("--sigma", "sigmas", multiple=True, callback=_floats,
              help="Release noise std of the obfuscation grid; several as 0,0.5 or repeated [default: 0,0.25,0.5,1,2].")
@click.option("--noise-multiplier", "noise_multipliers", multiple=True, callback=_floats,
              help="DP-SGD noise multipliers [default: 0,0.5,1,2,4 unless --target-epsilon is given].")
@click.option("--target-epsilon", "target_epsilons", multiple=True, callback=_floats,
              help="DP-SGD points at the noise multiplier reaching this epsilon(delta) (Opacus's search).")
@click.option("--clip-norm", type=float, default=1.0, show_default=True, help="DP-SGD per-sample clip bound C.")
@click.option("--accountant", type=click.Choice(["rdp", "prv"]), default="rdp", show_default=True,
              help="Opacus accountant of DP-SGD's epsilon.")
@click.option("--repeats", type=int, default=3, show_default=True, help="Models per point (init, order, noise).")
@click.option("--members", type=int, default=1000, show_default=True, help="Training records (seeded subsample of T_t).")
@click.option("--nonmembers", type=int, default=500, show_default=True, help="Non-members of the attacks (from T_e).")
@click.option("--epochs", type=int, default=20, show_default=True, help="Epochs of every model.")
@click.option("--batch-size", type=int, default=128, show_default=True,
              help="Batch size (DP-SGD: expected batch, sampling rate batch-size / members).")
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Adam learning rate (both methods).")
@click.option("--widths", default="8,16,32", show_default=True, help="Conv widths of M_cnn.")
@click.option("--lira-shadows", type=int, default=8, show_default=True, help="LiRA shadow models per point (even; 0: off).")
@click.option("--fresh-shadows", is_flag=True, help="Train LiRA's shadows anew for every repeat (default: shared).")
@click.option("--delta", type=float, default=1e-5, show_default=True, help="delta of every epsilon.")
@click.option("--seed", type=int, default=0, show_default=True, help="Root seed of subsamples, models and noise.")
@click.option("--split-seed", type=int, default=0, show_default=True, help="Seed of the 90/10 T_t / T_e split.")
@click.option("--clip", is_flag=True, help="Release clipped to [0, 1].")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, auto.")
@click.option("--threads", type=int, default=1, show_default=True, help="torch CPU threads; 0 = torch's default.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Write dp_comparison.json, dp_comparison.md and the figures (dp_vs_obfuscation, "
                   "dp_utility_epsilon; .png/.svg) here.")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@click.option("--quiet", is_flag=True, help="No progress lines on stderr.")
@click.option("--as-raw", is_flag=True, help="DATASET is a release: obfuscate it again anyway (noise on noise).")
@click.pass_obj
def compare_dp_command(state: Any, dataset: str | None, from_json: str | None, sigmas: tuple[float, ...], noise_multipliers: tuple[float, ...],
                       target_epsilons: tuple[float, ...], clip_norm: float, accountant: str, repeats: int,
                       members: int, nonmembers: int, epochs: int, batch_size: int, lr: float, widths: str,
                       lira_shadows: int, fresh_shadows: bool, delta: float, seed: int, split_seed: int, clip: bool,
                       device: str, threads: int, out: str | None, as_json: bool, quiet: bool,
                       as_raw: bool) -> None:
    """Obfuscation (train on O(T; sigma)) next to DP-SGD (Opacus, on raw T) on DATASET: accuracy, formal
    epsilon and the same membership attacks (loss threshold, LiRA) per point, with repeats. Needs the
    dp extra (pip install 'pudlab[dp]'). See docs/privacy.md sec. 6.

    With --from-json FILE instead of DATASET: redraw FILE's table (and, with --out, its figures)."""
    from pudlab.privacy.dp_results import ComparisonReport

    if from_json is not None:
        if dataset is not None:
            raise PudlabError("compare-dp: give a DATASET to measure or --from-json FILE to redraw, not both")
        from pudlab.io import read_json

        _write_outputs(ComparisonReport.from_dict(read_json(from_json), where=from_json), None, out, as_json)
        return
    if dataset is None:
        raise PudlabError("compare-dp: give a DATASET to measure (or --from-json FILE to redraw)")
    from pudlab.releases import refuse_release

    refuse_release(dataset, command="compare-dp", as_raw=as_raw,
                   instead=f"Give it the raw data the release came from (pudlab audit {dataset} --raw DATASET "
                           "attacks the release as it is).")
    import dataclasses

    import torch

    from pudlab.cli._common import parse_widths
    from pudlab.data.sources import load_source
    from pudlab.io import replace_non_finite
    from pudlab.privacy.dp_comparison import ComparisonConfig, compare_dp
    from pudlab.privacy.dpsgd import require_opacus
    from pudlab.train.trainer import resolve_device

    require_opacus()
    if threads < 0:
        raise PudlabError(f"--threads must be >= 0, got {threads}")
    if threads > 0:
        torch.set_num_threads(threads)
    defaults = ComparisonConfig()
    if not noise_multipliers and not target_epsilons:
        noise_multipliers = defaults.noise_multipliers
    config = ComparisonConfig(
        sigmas=sigmas or defaults.sigmas, noise_multipliers=noise_multipliers, target_epsilons=target_epsilons,
        max_grad_norm=clip_norm, accountant=accountant, repeats=repeats, members=members, nonmembers=nonmembers,
        epochs=epochs, batch_size=batch_size, lr=lr, widths=parse_widths(widths), lira_shadows=lira_shadows,
        fresh_shadows=fresh_shadows, delta=delta, seed=seed, split_seed=split_seed, clip=clip)
    started = time.perf_counter()
    source = load_source(dataset, state.data_dir)
    log = None if quiet else (lambda text: click.echo(text, err=True))
    measured = compare_dp(source, config, device=str(resolve_device(device)), log=log)
    measured = dataclasses.replace(measured, command_wall_seconds=time.perf_counter() - started,
                                   torch_threads=torch.get_num_threads())
    data = replace_non_finite(measured.to_dict())
    _write_outputs(ComparisonReport.from_dict(data), data, out, as_json)  # what the JSON says (inf is None)


def _write_outputs(report: Any, data: dict[str, Any] | None, out: str | None, as_json: bool) -> None:
    """The JSON (when measured now), the Markdown table and the figures under ``out``; then print."""
    from pudlab.cli._common import print_json
    from pudlab.io import replace_non_finite, write_bytes_atomic, write_json
    from pudlab.report.dp_figures import comparison_markdown, save_comparison_figures

    table = comparison_markdown(report)
    if out is not None:
        if data is not None:
            write_json(Path(out) / "dp_comparison.json", data)
        write_bytes_atomic(Path(out) / "dp_comparison.md", (table + "\n").encode("utf-8"))
        save_comparison_figures(report, out)
    if as_json:
        print_json(data if data is not None else replace_non_finite(report.to_dict()))
        return
    click.echo(table)
    wall = report.command_wall_seconds
    if wall is not None:
        click.echo(f"\n{wall:.1f} s wall ({math.floor(wall / 60)} min), {report.torch_threads} torch threads")
    if out is not None:
        click.echo(f"wrote {out}: " + ("dp_comparison.json, " if data is not None else "")
                   + "dp_comparison.md, dp_vs_obfuscation.png/.svg, dp_utility_epsilon.png/.svg")


__all__ = ["compare_dp_command"]
