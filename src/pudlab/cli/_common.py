"""What every command shares: the CLI state, the error-handling group, JSON output, value parsers."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

from pudlab.errors import PudlabError
from pudlab.io import to_json
from pudlab.processes import INTERRUPT_EXIT_CODE

EXIT_ERROR = 1
EXIT_USAGE = 2
F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


class CliState:
    """Options of the top-level group, passed to sub-commands through click's context."""

    def __init__(self, debug: bool, data_dir: str | None) -> None:
        self.debug = debug
        self.data_dir = data_dir


class PudlabGroup(click.Group):
    """A click group that turns pudlab errors into one-line messages."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:  # a bad option or argument: one line, not the usage block
            if ctx.find_root().params.get("debug"):
                raise
            where = exc.ctx.command_path if exc.ctx is not None else ctx.command_path
            click.echo(f"error: {where}: {exc.format_message()}".replace("\n", " "), err=True)
            ctx.exit(EXIT_USAGE)
        except KeyboardInterrupt:  # Ctrl-C outside a command's own handling: one line, not click's "Aborted!"
            if ctx.find_root().params.get("debug"):
                raise
            command = " ".join(filter(None, (ctx.command_path, ctx.invoked_subcommand)))
            click.echo(f"\nerror: {command}: interrupted (Ctrl-C); files are written whole or not at all, so "
                       "nothing half-written was left", err=True)
            ctx.exit(INTERRUPT_EXIT_CODE)
        except (PudlabError, OSError) as exc:
            if ctx.find_root().params.get("debug"):
                raise
            message = str(exc) if isinstance(exc, PudlabError) else f"{type(exc).__name__}: {exc}"
            click.echo(f"error: {message}", err=True)
            ctx.exit(getattr(exc, "exit_code", EXIT_ERROR))


def print_json(data: object) -> None:
    """Print ``data`` as key-sorted JSON."""
    click.echo(to_json(data))


def parse_list(text: str, what: str, convert: Callable[[str], T], noun: str) -> tuple[T, ...]:
    """The one comma-separated value parser: ``convert`` each non-blank part; at least one value.

    ``noun`` (plural) names the values in its errors, e.g. ``"integers"``.
    """
    try:
        values = tuple(convert(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise click.BadParameter(f"{what}: expected comma-separated {noun}, got {text!r}") from exc
    if not values:
        raise click.BadParameter(f"{what}: expected comma-separated {noun}, got {text!r}: no value")
    return values


def parse_floats(text: str, what: str = "value") -> tuple[float, ...]:
    """``"0,0.5,1"`` -> (0.0, 0.5, 1.0); at least one number."""
    return parse_list(text, what, float, "numbers")


def parse_finite(text: str, what: str = "value", *, minimum: float | None = None) -> tuple[float, ...]:
    """Like :func:`parse_floats`, but every value finite (no nan/inf) and >= ``minimum`` when given."""
    values = parse_floats(text, what)
    bad = [v for v in values if not math.isfinite(v) or (minimum is not None and v < minimum)]
    if bad:
        bound = f" >= {minimum:g}" if minimum is not None else ""
        raise click.BadParameter(f"{what}: expected finite numbers{bound}, got {bad[0]!r} in {text!r}")
    return values


def parse_widths(text: str) -> tuple[int, int, int]:
    """M_cnn conv widths: three positive integers, e.g. ``"32,64,128"``."""
    widths = parse_list(text, "widths", int, "integers")
    if len(widths) != 3 or min(widths) < 1:
        raise click.BadParameter(f"widths: expected three positive integers like 32,64,128, got {text!r}")
    return widths


def apply_options(*options: Callable[[F], F]) -> Callable[[F], F]:
    """Apply click option decorators in the order written (the first listed shows first in --help)."""

    def decorate(function: F) -> F:
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


training_options = apply_options(
    click.option("--setting", default="S-1-1-1", show_default=True,
                 help="Sampling setting S-X-Y-Z of the training sample T."),
    click.option("--labels", default=None, help="Explicit covered labels (0,1,2 or 3-7) instead of the window rule."),
    click.option("--sigma", type=float, default=0.0, show_default=True,
                 help="Obfuscation noise std, in [0, 1] pixel units (0: T itself)."),
    click.option("--fraction", type=float, default=1.0, show_default=True, help="R: fraction of samples obfuscated."),
    click.option("--clip", is_flag=True, help="Clip obfuscated pixels to [0, 1]."),
    click.option("--epochs", type=int, default=180, show_default=True, help="Epochs (paper: 180)."),
    click.option("--batch-size", type=int, default=None, help="Batch size [default: 128 one-channel, 64 colour]."),
    click.option("--lr", type=float, default=1e-4, show_default=True, help="Adam learning rate, per step (paper: 1e-4)."),
    click.option("--widths", default="32,64,128", show_default=True, help="Conv widths of the three blocks."),
    click.option("--hidden", type=int, default=128, show_default=True, help="Units of the hidden dense layer."),
    click.option("--seed", type=int, default=0, show_default=True, help="Seed of sampling, noise and shuffle."),
    click.option("--noise-seed", type=int, default=None, help="Noise seed [default: --seed]."),
    click.option("--shuffle-seed", type=int, default=None, help="Batch-order seed [default: --seed]."),
    click.option("--split-seed", type=int, default=0, show_default=True, help="Seed of the 90/10 T_t / T_e split."),
    click.option("--init", "init_path", type=click.Path(exists=True), default=None,
                 help="Initial weights (.safetensors or run dir) [default: seeded by --init-seed]."),
    click.option("--init-seed", type=int, default=0, show_default=True, help="Seed of the initial weights."),
    click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto."),
)
"""The training-run options shared by ``pudlab train`` and ``pudlab pol prove`` (17 options)."""


def sigma_values(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[float, ...]:
    """Callback of a repeatable ``--sigma``: ``--sigma 0 --sigma 0.5`` and ``--sigma 0,0.5`` alike."""
    return tuple(value for text in values for value in parse_floats(text, "--sigma"))


def writable_store_or_out(store_dir: str, out: str | None, what: str) -> None:
    """Refuse, in one line, to write ``what`` into a store that cannot be written when no --out is given."""
    if out is None and not os.access(store_dir, os.W_OK):
        raise PudlabError(f"{store_dir}: not writable (read-only medium?); {what} can still be written elsewhere: "
                          "pass --out DIR")
