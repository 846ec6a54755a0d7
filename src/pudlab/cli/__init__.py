"""The ``pudlab`` command line. Errors are one line and a non-zero exit (traceback with --debug)."""

from __future__ import annotations

import click

from pudlab import __version__
from pudlab.cli._common import CliState, PudlabGroup
from pudlab.cli.audit import audit_command
from pudlab.cli.data import datasets_group, obfuscate_command
from pudlab.cli.dp import compare_dp_command
from pudlab.cli.experiments import COMMANDS as EXPERIMENT_COMMANDS
from pudlab.cli.fl import fl_group
from pudlab.cli.pol import pol_group
from pudlab.cli.privacy import privacy_command
from pudlab.cli.pud import pud_command
from pudlab.cli.results import COMMANDS as RESULT_COMMANDS
from pudlab.cli.train import distance_command, train_command


@click.group(cls=PudlabGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pudlab")
@click.option("--debug", is_flag=True, help="Show the full traceback on errors.")
@click.option("--data-dir", type=click.Path(file_okay=False), envvar="PUDLAB_DATA_DIR", default=None,
              help="Where named datasets live (<dir>/<name>/); env PUDLAB_DATA_DIR; default: a user cache dir.")
@click.pass_context
def cli(ctx: click.Context, debug: bool, data_dir: str | None) -> None:
    """pudlab: obfuscate datasets with calibrated noise and measure what it does to the models.

    DATASET arguments take a known name (mnist, fashion-mnist, cifar10, mnist-5k) or a path
    (an IDX directory, cifar-10-batches-py, a class-folder image tree, a .tar.gz, a .npz).
    """
    ctx.obj = CliState(debug, data_dir)


for _command in (datasets_group, obfuscate_command, train_command, distance_command, *EXPERIMENT_COMMANDS,
                 privacy_command, audit_command, pud_command, compare_dp_command, *RESULT_COMMANDS, pol_group,
                 fl_group):
    cli.add_command(_command)


def main() -> None:
    """Console-script entry point."""
    cli.main(prog_name="pudlab")


if __name__ == "__main__":
    main()
