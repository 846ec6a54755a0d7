"""``pudlab audit``: how private is this release file, against the raw data its owner keeps?

Kept cheap to import: numpy, torch and matplotlib are imported inside the command.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import click

from pudlab.cli.privacy import attack_options, finish_report, privacy_config

if TYPE_CHECKING:
    from pudlab.privacy.report import PrivacyReport


def _print_checks(report: PrivacyReport) -> None:
    """What the audit checked about each release, one line each."""
    audited = report.audit or []
    hint = "" if any(item.model for item in audited) else " (give --model RUN_DIR or --train-model)"
    for item in audited:
        key = f", key {item.key_id}" if item.key_id else ""
        click.echo(f"{item.file}: sigma {item.sigma:g} (manifest{key}), measured noise std {item.measured_noise_std:.4f}; "
                   f"SHA-256 of x, y, ids verified; {item.matched} samples mapped to {item.raw_dataset} by id, labels "
                   f"agree; {item.held_out} raw samples held out")
        if item.combined_with:
            epsilon = "inf" if item.combined_epsilon_image is None else f"{item.combined_epsilon_image:.4g}"
            click.echo(f"  combined with {', '.join(item.combined_with)}: effective sigma {item.effective_sigma:.3g} "
                       f"(epsilon, image level: {epsilon})")
        click.echo(f"  membership inference: {item.model or 'not run' + hint}")
    click.echo("")


@click.command("audit")
@click.argument("releases", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True))
@click.option("--raw", "raw_dataset", required=True, metavar="DATASET",
              help="The raw dataset the release was made from (a name or path), which its owner keeps.")
@click.option("--model", "model_path", type=click.Path(exists=True), default=None,
              help="A `pudlab train` run directory of the model trained on the (first) release: attacked by "
                   "membership inference (loss threshold, LiRA with shadows trained by its run.json's recipe).")
@click.option("--train-model", is_flag=True,
              help="Train the membership attack's model on the release itself (M_cnn, --mia-* sizes), as "
                   "`pudlab privacy` trains it, instead of --model.")
@attack_options
@click.option("--device", default="cpu", show_default=True, help="Device of the attack models: cpu, cuda, auto.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Write privacy.json (the `pudlab privacy` format, usable as pud --privacy-json) and "
                   "privacy_decline.png/.svg here.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_obj
def audit_command(state: Any, releases: tuple[str, ...], raw_dataset: str, model_path: str | None, train_model: bool,
                  device: str, out: str | None, as_json: bool, **attack: Any) -> None:
    """Audit RELEASES (`pudlab obfuscate` outputs) as they are, against the raw data they came from.

    Reads each release and its manifest, checks the manifest's SHA-256 of the arrays, maps every
    released sample to its raw source by sample id, and runs the attacks of `pudlab privacy` on
    the released pixels without adding noise: similarity, linkage against a raw pool, classical and
    learned denoisers, label inference, the privacy decline over all RELEASES combined (their
    inverse-variance mean), and membership inference when --model or --train-model is given.
    Several RELEASES (e.g. one per sigma) give one report entry each.
    """
    from pudlab.data.sources import load_source
    from pudlab.privacy.audit import audit_release
    from pudlab.releases import release_marker
    from pudlab.train.trainer import resolve_device

    if release_marker(raw_dataset) is not None:
        raise click.BadParameter(f"--raw {raw_dataset} is itself a release; give the raw dataset the release was made "
                                 "from (e.g. mnist-5k)")
    if not (attack["membership"] or model_path is None):
        raise click.BadParameter("--model needs the membership attack: drop --no-mia")
    config = privacy_config(attack)
    started = time.perf_counter()
    raw = load_source(raw_dataset, state.data_dir)
    log = None if as_json else (lambda line: click.echo(f"note: {line}", err=True))
    measured = audit_release(list(releases), raw, config, model=model_path, train_model=train_model,
                             device=str(resolve_device(device)), log=log)
    if not as_json:
        _print_checks(measured)
    finish_report(measured, started, out, as_json)


__all__ = ["audit_command"]
