"""``pudlab export`` and ``pudlab compare``: a store's results as files, and two stores side by side."""

from __future__ import annotations

import click

from pudlab.cli._common import print_json, writable_store_or_out

TABLE_CHOICES = ("series", "jobs", "roles", "claims")


@click.command("export")
@click.argument("store_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default="csv", show_default=True,
              help="csv (no extra packages) or parquet (needs the pandas extra: pandas + pyarrow).")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Output folder [default: STORE/export].")
@click.option("--table", "tables", type=click.Choice(TABLE_CHOICES), multiple=True,
              help="Tables to write (repeatable) [default: all: series, jobs, roles, claims].")
@click.option("--json", "as_json", is_flag=True, help="Print the written files as JSON.")
def export_command(store_dir: str, fmt: str, out: str | None, tables: tuple[str, ...], as_json: bool) -> None:
    """Write a store's series, jobs (parameters and metrics), roles and claims as CSV or Parquet files."""
    from pudlab.experiments.results import TABLES, export_store

    writable_store_or_out(store_dir, out, "the tables")
    paths = export_store(store_dir, out, fmt, tables or TABLES)
    if as_json:
        print_json({"files": [str(path) for path in paths]})
        return
    for path in paths:
        click.echo(str(path))


def _number(value: float | None, digits: str = ".4g") -> str:
    return "-" if value is None else format(value, digits)


def _shown(value: object) -> str:
    return "-" if value is None else str(value)


def _one_sided(series: list[dict]) -> dict[str, dict[str, int]]:
    """Series points in one store only, counted per plan: ``{"A": {plan: count}, "B": {...}}``."""
    counts: dict[str, dict[str, int]] = {"A": {}, "B": {}}
    for row in series:
        if row["mean_a"] is None and row["mean_b"] is not None:
            counts["B"][row["plan"]] = counts["B"].get(row["plan"], 0) + 1
        elif row["mean_b"] is None and row["mean_a"] is not None:
            counts["A"][row["plan"]] = counts["A"].get(row["plan"], 0) + 1
    return counts


@click.command("compare")
@click.argument("store_a", type=click.Path(exists=True, file_okay=False))
@click.argument("store_b", type=click.Path(exists=True, file_okay=False))
@click.option("--no-weights", is_flag=True, help="Skip the weight distances (faster on big stores).")
@click.option("--all", "show_all", is_flag=True,
              help="List every job and series point, also the equal ones and those in one store only.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole comparison as JSON.")
def compare_command(store_a: str, store_b: str, no_weights: bool, show_all: bool, as_json: bool) -> None:
    """Two stores side by side: whether their configurations differ, common jobs and D between their weights,
    series differences, changed claims. Without --all only what differs between points both stores have is
    listed; points in one store only are counted per plan."""
    from pudlab.experiments.results import compare_stores

    result = compare_stores(store_a, store_b, weights=not no_weights)
    if as_json:
        print_json(result)
        return
    s = result["summary"]
    click.echo(f"A = {store_a}\nB = {store_b}")
    for row in result["configuration"]:
        click.echo(f"warning: the runs differ in {row['setting']}: A {_shown(row['a'])}, B {_shown(row['b'])}",
                   err=True)
    if not result["configuration"]:
        click.echo("configuration: the same preset settings and plans")
    click.echo(f"jobs: {s['common_jobs']} in both, {s['only_a']} only in A, {s['only_b']} only in B")
    if not no_weights:
        click.echo(f"weights: {s['weights_compared']} pairs compared, {s['weights_identical']} identical (D = 0), "
                   f"largest D(W_A, W_B) = {_number(s['max_weights_distance'])}")
    both = [row for row in result["series"] if row["diff"] is not None]
    click.echo(f"series: {len(both)} points in both, largest |mean_B - mean_A| = {_number(s['max_series_diff'])}")
    for side, by_plan in _one_sided(result["series"]).items():
        if by_plan:
            click.echo(f"series only in {side}: {sum(by_plan.values())} points in {len(by_plan)} plan(s) "
                       f"({', '.join(sorted(by_plan))})" + ("" if show_all else "; --all lists them"))
    click.echo(f"claims: {s['claims_changed']} of {len(result['claims'])} verdicts changed")
    for row in result["claims"]:
        if row["changed"] or show_all:
            click.echo(f"  claim {row['number']} on {row['dataset']}: {row['verdict_a'] or '-'} -> "
                       f"{row['verdict_b'] or '-'}")
    for row in result["jobs"]:
        distance = row["weights_distance"]
        if show_all or (distance is not None and distance > 0) or row["status_a"] != row["status_b"]:
            click.echo(f"  job {row['key'][:12]}: {row['status_a']}/{row['status_b']}  accuracy "
                       f"{_number(row['accuracy_a'], '.4f')} / {_number(row['accuracy_b'], '.4f')}  "
                       f"D = {_number(distance)}")
    for row in result["series"]:
        if show_all or (row["diff"] is not None and row["diff"] != 0):
            click.echo(f"  {row['plan']:18} {row['series']:12} x={row['x']:<6g} A {_number(row['mean_a'])}  "
                       f"B {_number(row['mean_b'])}  diff {_number(row['diff'])}")


COMMANDS = (export_command, compare_command)
