"""``pudlab privacy``: the privacy attacks on the command line, and what ``audit`` and ``pud`` share with it.

Kept cheap to import (the top-level CLI imports it): numpy, torch, scikit-image and matplotlib are
imported inside the commands.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pudlab.cli._common import apply_options, sigma_values
from pudlab.errors import PudlabError
from pudlab.io import replace_non_finite

if TYPE_CHECKING:
    from pudlab.privacy.report import PrivacyConfig, PrivacyReport


def table_number(value: float | None, spec: str = ".3f") -> str:
    """A number for the text table: "-" for a missing one, "inf" for an infinite one."""
    if value is None:
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return format(value, spec)


def _epsilon(value: float | None, spec: str) -> str:
    """An epsilon for the table: None in the JSON-safe report stands for infinity (sigma = 0)."""
    return "inf" if value is None else table_number(value, spec)


# ---------------------------------------------------------------------------------------- privacy
DECLINE_LABELS = {"fresh": "(a) fresh i.i.d.", "keyed": "(b) keyed", "disjoint": "(c) disjoint",
                  "releases": "named releases"}
"""How the text table names each disclosure scheme (``releases``: the files an audit combined)."""


# long: one text table per attack family, in the order the report reads
def print_privacy(report: PrivacyReport) -> None:
    """The attack table, the privacy decline and the epsilons, as text."""
    config, entries = report.config, report.entries
    what = "audited releases" if report.audit is not None else "released T_t"
    click.echo(f"{report.dataset.description}: {what} ({report.dataset.train_size} samples), "
               f"{config.queries} attacked samples, pool {entries[0].linkage.pool_size} "
               f"(chance {entries[0].linkage.chance:.4f}), denoising on {config.denoise_samples}")
    click.echo("")
    header = (f"{'sigma':>6} {'PSNR dB':>8} {'SSIM':>6} {'link':>6} | {'best denoised: PSNR':>20} {'SSIM':>6} "
              f"{'link':>6} | {'MIA AUC':>9} {'TPR@' + format(config.mia_fpr, 'g'):>8} {'acc':>6} | "
              f"{'eps img':>9} {'eps px':>7}")
    click.echo(header)
    click.echo("-" * len(header))
    for entry in entries:
        best = entry.denoising.best
        membership = entry.membership
        dp = entry.dp.by_sensitivity
        denoised = f"{best.psnr:.2f} ({best.psnr_by})"
        mia = f"{membership.attack.auc:.3f}±{membership.attack.auc_stderr:.2f}" if membership else "-"
        best_linkage = best.linkage if best.linkage is not None else 0.0
        click.echo(
            f"{entry.sigma:>6g} {entry.similarity.psnr_mean:>8.2f} {entry.similarity.ssim_mean:>6.3f} "
            f"{entry.linkage.rate:>6.3f} | {denoised:>20} {best.ssim:>6.3f} {best_linkage:>6.3f} | "
            f"{mia:>9} {table_number(membership.attack.tpr_at_fpr if membership else None):>8} "
            f"{table_number(membership.eval_accuracy if membership else None):>6} | "
            f"{_epsilon(dp['image'].epsilon, '.4g'):>9} {_epsilon(dp['pixel'].epsilon, '.3g'):>7}"
        )
    click.echo("")
    click.echo("stronger attacks, each under the threat model it needs (public: + public data; model: + the "
               "trained model)")
    for entry in entries:
        parts = []
        if entry.learned is not None:
            learned = entry.learned
            parts.append(f"[public] learned denoiser PSNR {learned.psnr:.2f} SSIM {learned.ssim:.3f} link "
                         f"{table_number(learned.linkage)} ({learned.train_seconds:.0f} s)")
            if learned.label_inference is not None:
                parts.append(f"[public] label inference {learned.label_inference.accuracy:.3f} "
                             f"(chance {learned.label_inference.chance:.2f})")
        if entry.lira is not None:
            lira = entry.lira
            parts.append(f"[model] LiRA ({lira.shadows} shadows) AUC off/on {lira.offline_auc:.3f}/{lira.online_auc:.3f}"
                         f", TPR@0.1% {lira.offline_tpr_at_0_1pct:.3f}, TPR@1% {lira.offline_tpr_at_1pct:.3f} "
                         f"({lira.seconds:.0f} s)")
        click.echo(f"  sigma {entry.sigma:g}: " + ("; ".join(parts) or "-"))
    click.echo("")
    click.echo(f"privacy decline (averaging attack, n = 1..{config.disclosures} disclosures): "
               "PSNR dB / re-identified fraction")
    for entry in entries:
        click.echo(f"  sigma {entry.sigma:g}")
        for scheme, rows in entry.decline.items():
            cells = " ".join(f"{row.psnr:5.1f}/{table_number(row.reidentified_fraction, '.2f')}" for row in rows)
            click.echo(f"    {DECLINE_LABELS.get(scheme, scheme):17} {cells}")
    click.echo("")
    composed = max(len(by.composition) for entry in entries for by in entry.dp.by_sensitivity.values())
    click.echo(f"epsilon(delta={config.delta:g}), analytic Gaussian mechanism, replace-one neighbours; "
               f"n = {composed} fresh releases (keyed and disjoint stay at n = 1):")
    for entry in entries:
        parts = []
        for kind, by in entry.dp.by_sensitivity.items():
            last = by.composition[-1]
            parts.append(f"{kind} (L2 sens {by.sensitivity:g}): {_epsilon(by.epsilon, '.4g')} -> "
                         f"{_epsilon(last.fresh, '.4g')}")
        click.echo(f"  sigma {entry.sigma:g}: " + "; ".join(parts))
    click.echo("  Image-level sensitivity gives huge epsilons: this noise is no formal DP guarantee for whole images.")


attack_options = apply_options(
    click.option("--queries", type=int, default=500, show_default=True,
                 help="Released samples attacked (seeded subsample of the release)."),
    click.option("--pool-size", type=int, default=5000, show_default=True,
                 help="Linkage candidate pool: the queries' sources plus other raw samples, this many in all."),
    click.option("--denoise-samples", type=int, default=200, show_default=True,
                 help="Samples the denoising attack runs on."),
    click.option("--disclosures", type=int, default=10, show_default=True, help="N of the privacy-decline attack."),
    click.option("--mia/--no-mia", "membership", default=True, show_default=True,
                 help="Run the membership-inference attack (trains one small model per sigma)."),
    click.option("--mia-members", type=int, default=1000, show_default=True, help="Training samples of the attacked model."),
    click.option("--mia-nonmembers", type=int, default=500, show_default=True, help="Non-members (held-out raw samples)."),
    click.option("--mia-epochs", type=int, default=20, show_default=True, help="Epochs of the attacked model."),
    click.option("--mia-lr", type=float, default=1e-3, show_default=True,
                 help="Adam learning rate of the attacked model, per step."),
    click.option("--mia-widths", default="8,16,32", show_default=True, help="Conv widths of the attacked model."),
    click.option("--learned/--no-learned", default=True, show_default=True,
                 help="Run the public-data attacks: a learned denoiser and label inference."),
    click.option("--lira-shadows", type=int, default=8, show_default=True,
                 help="Shadow models of the LiRA membership attack (even; 0: off)."),
    click.option("--delta", type=float, default=1e-5, show_default=True, help="delta of the (epsilon, delta) accounting."),
    click.option("--seed", type=int, default=0, show_default=True,
                 help="Root seed of the attacks' subsamples, partitions, models."),
    click.option("--threads", type=int, default=1, show_default=True,
                 help="torch CPU threads; 0 = torch's default. The attacked models are tiny; on a busy 2-core "
                      "machine one thread ran the default command 3x faster than two."),
)
"""The attack-size options of ``pudlab privacy``, ``pudlab audit`` and ``pudlab pud STORE``."""
ATTACK_OPTION_NAMES = ("queries", "pool_size", "denoise_samples", "disclosures", "membership", "mia_members",
                       "mia_nonmembers", "mia_epochs", "mia_lr", "mia_widths", "learned", "lira_shadows", "delta",
                       "seed", "threads")


def privacy_config(attack: dict[str, Any], **fixed: Any) -> PrivacyConfig:
    """The :class:`PrivacyConfig` of :data:`attack_options`' values (``threads`` applied to torch here),
    with ``fixed`` (noise seed, split seed, clip) added."""
    import torch

    from pudlab.cli._common import parse_widths
    from pudlab.privacy.report import PrivacyConfig

    values = dict(attack)
    threads = int(values.pop("threads"))
    if threads < 0:
        raise PudlabError(f"--threads must be >= 0, got {threads}")
    if threads > 0:
        torch.set_num_threads(threads)
    values["mia_widths"] = parse_widths(values["mia_widths"])
    return PrivacyConfig(**values, **fixed)


def command_line() -> str:
    """The running command with the values given to it (``pudlab privacy mnist-5k --sigma 0.5``), for a
    report's provenance; options left at their defaults are left out."""
    import shlex

    context = click.get_current_context()
    parts = ["pudlab", str(context.info_name)]
    for param in context.command.params:
        name = str(param.name)
        value = context.params.get(name)
        if value is None or context.get_parameter_source(name) != click.core.ParameterSource.COMMANDLINE:
            continue
        values = [str(v) for v in value] if isinstance(value, tuple | list) else [str(value)]
        if isinstance(param, click.Option):
            if param.is_flag:
                parts.append(param.opts[0] if value else (param.secondary_opts or param.opts)[0])
                continue
            parts += [param.opts[0], ",".join(values)]
        else:
            parts += values
    return " ".join(shlex.quote(part) for part in parts)


@click.command("privacy")
@click.argument("dataset")
@click.option("--sigma", "--sigmas", "sigmas", multiple=True, required=True, callback=sigma_values,
              help="Noise std in [0, 1] pixel units; several as 0,0.5 or repeated.")
@attack_options
@click.option("--noise-seed", type=int, default=0, show_default=True, help="Obfuscation noise key of the release.")
@click.option("--split-seed", type=int, default=0, show_default=True, help="Seed of the 90/10 T_t / T_e split.")
@click.option("--clip", is_flag=True, help="Release clipped to [0, 1].")
@click.option("--device", default="cpu", show_default=True, help="Device of the attacked model: cpu, cuda, auto.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Write privacy.json and privacy_decline.png/.svg here.")
@click.option("--as-raw", is_flag=True, help="DATASET is a release: attack noise added on top of it anyway.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
@click.pass_obj
def privacy_command(state: Any, dataset: str, sigmas: tuple[float, ...], noise_seed: int, split_seed: int, clip: bool,
                    device: str, out: str | None, as_json: bool, progress: bool, as_raw: bool, **attack: Any) -> None:
    """Attack O(T_t) of DATASET at each --sigma: similarity, linkage, denoising, privacy decline,
    membership inference, and the Gaussian-mechanism epsilon. See docs/privacy.md.

    DATASET is raw data: a release (pudlab obfuscate's output) is refused; `pudlab audit` attacks a
    release as it is, against the raw data it came from."""
    from pudlab.data.sources import load_source
    from pudlab.privacy.report import privacy_report
    from pudlab.releases import refuse_release
    from pudlab.train.trainer import resolve_device

    if any(sigma < 0 or not math.isfinite(sigma) for sigma in sigmas):
        raise PudlabError(f"--sigma must be finite and >= 0, got {list(sigmas)}")
    refuse_release(dataset, command="privacy", as_raw=as_raw,
                   instead=f"Audit the release as it is against its raw data: pudlab audit {dataset} --raw DATASET.")
    config = privacy_config(attack, noise_seed=noise_seed, split_seed=split_seed, clip=clip)
    started = time.perf_counter()
    source = load_source(dataset, state.data_dir)
    measured = privacy_report(source, sigmas, config, device=str(resolve_device(device)), progress=progress)
    finish_report(measured, started, out, as_json)


def finish_report(measured: PrivacyReport, started: float, out: str | None, as_json: bool) -> PrivacyReport:
    """Stamp the command and its wall time on ``measured``, write privacy.json and the decline figure to
    ``out``, print warnings (stderr) and the report (JSON or text); return the report as its JSON reads."""
    import dataclasses

    import torch

    from pudlab.cli._common import print_json
    from pudlab.io import write_json
    from pudlab.privacy.report import PrivacyReport
    from pudlab.report.privacy_figures import save_decline_figures

    measured = dataclasses.replace(measured, command_wall_seconds=time.perf_counter() - started,
                                   torch_threads=torch.get_num_threads(), command=command_line())
    data = replace_non_finite(measured.to_dict())
    report = PrivacyReport.from_dict(data)  # what the JSON says (an infinite epsilon is None)
    if out is not None:
        write_json(Path(out) / "privacy.json", data)
        save_decline_figures(report, out)
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    if as_json:
        print_json(data)
        return report
    print_privacy(report)
    click.echo(f"\n{report.command_wall_seconds:.1f} s wall, {report.torch_threads} torch threads"
               + (f"; wrote {out}/privacy.json, privacy_decline.png/.svg" if out else ""))
    return report


__all__ = ["ATTACK_OPTION_NAMES", "attack_options", "command_line", "finish_report", "print_privacy", "table_number",
           "privacy_command", "privacy_config"]
