"""Parsers for comma-separated command-line values, shared by every command (click errors on bad input)."""

from __future__ import annotations

import click


def parse_floats(text: str, what: str = "value") -> tuple[float, ...]:
    """``"0,0.5,1"`` -> (0.0, 0.5, 1.0); at least one number."""
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise click.BadParameter(f"{what}: expected comma-separated numbers, got {text!r}") from exc
    if not values:
        raise click.BadParameter(f"{what}: expected at least one number")
    return values


def parse_ints(text: str, what: str = "value") -> tuple[int, ...]:
    """``"8,16,32"`` -> (8, 16, 32); at least one integer."""
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise click.BadParameter(f"{what}: expected comma-separated integers, got {text!r}") from exc
    if not values:
        raise click.BadParameter(f"{what}: expected at least one integer")
    return values


def parse_widths(text: str) -> tuple[int, int, int]:
    """M_cnn conv widths: three positive integers, e.g. ``"32,64,128"``."""
    widths = parse_ints(text, "widths")
    if len(widths) != 3 or min(widths) < 1:
        raise click.BadParameter(f"widths: expected three positive integers like 32,64,128, got {text!r}")
    return widths  # type: ignore[return-value]
