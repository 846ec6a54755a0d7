"""``pudlab fl``: federated-learning simulations with attacks and defences (registered in pudlab.cli)."""

from __future__ import annotations

import time

import click

DEFENCE_CHOICES = ("none", "multikrum", "pol", "both", "all")
ENGINES = ("pudlab", "flower")


def _data_dir(ctx: click.Context) -> str | None:
    state = ctx.find_root().obj
    return getattr(state, "data_dir", None)


@click.group("fl", context_settings={"help_option_names": ["-h", "--help"]})
def fl_group() -> None:
    """Federated learning among edge devices: Multi-Krum, PoL challenges on obfuscated data, attacks."""


@fl_group.command("specs")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: [{name, path}].")
def specs_command(as_json: bool) -> None:
    """List the simulation specs shipped with pudlab (usable by name)."""
    from pudlab.config import resolve_spec, shipped_names

    specs = [{"name": name, "path": str(resolve_spec("fl", name))} for name in shipped_names("fl")]
    if as_json:
        from pudlab.io import to_json

        click.echo(to_json(specs))
        return
    for spec in specs:
        click.echo(f"{spec['name']:24} {spec['path']}")


@fl_group.command("simulate")
@click.argument("spec_path", metavar="SPEC.toml")
@click.option("--store", type=click.Path(file_okay=False), required=True,
              help="Directory of the simulation state (resumable per round) and report.")
@click.option("--rounds", type=click.IntRange(min=0), default=None, help="Rounds [default: the spec's].")
@click.option("--defence", type=click.Choice(DEFENCE_CHOICES), default=None,
              help="Defence(s) against the spec's attack [default: the spec's]; all = none, multikrum, pol, both.")
@click.option("--clients", type=click.IntRange(min=1), default=None, help="Override [simulation] clients.")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Override [simulation] seed.")
@click.option("--local-epochs", type=click.IntRange(min=1), default=None, help="Override [training] local_epochs.")
@click.option("--lr", type=float, default=None, help="Override [training] lr (Adam, per step).")
@click.option("--sigma", type=float, default=None, help="Override [pol] sigma (every client's obfuscation sigma).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Override [simulation] threads.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Override [simulation] workers (defences run in parallel processes).")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override any spec field, value in TOML syntax (repeatable), e.g. --set aggregation.f=2.")
@click.option("--report/--no-report", default=True, show_default=True, help="Write STORE/report.md and figures.")
@click.option("--engine", type=click.Choice(ENGINES), default="pudlab", show_default=True,
              help="pudlab: in-process simulation; flower: the same rounds through Flower (the flower extra).")
@click.option("--flower-runtime", type=click.Choice(("simulation", "deployment")), default="simulation",
              show_default=True, help="--engine flower: Flower's simulation runtime (Ray) or a SuperLink with one "
                                      "SuperNode per client on 127.0.0.1.")
@click.option("--quiet", is_flag=True, help="Only the summary, no per-round lines.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--as-raw", is_flag=True, help="The spec's dataset is a release: obfuscate it again anyway (noise on noise).")
@click.pass_context
def simulate_command(ctx: click.Context, spec_path: str, store: str, rounds: int | None, defence: str | None,
                     clients: int | None, seed: int | None, local_epochs: int | None, lr: float | None,
                     sigma: float | None, threads: int | None, workers: int | None, overrides: tuple[str, ...],
                     report: bool, engine: str, flower_runtime: str, quiet: bool, as_json: bool,
                     as_raw: bool) -> None:
    """Run (or resume) the simulation SPEC.toml (a path, or a shipped spec's name) into --store.

    A killed run continues from the last finished round with identical results; the spec may
    change only in rounds, defence and workers between runs into the same store.
    """
    from pudlab.fl.simulation import run_simulation
    from pudlab.fl.spec_reader import load_spec
    from pudlab.fl.summary import detection_summary
    from pudlab.io import to_json
    from pudlab.report.fl_document import write_fl_report

    named = [("simulation", "rounds", rounds), ("simulation", "defence", defence),
             ("simulation", "clients", clients), ("simulation", "seed", seed),
             ("training", "local_epochs", local_epochs), ("training", "lr", lr), ("pol", "sigma", sigma),
             ("simulation", "threads", threads), ("simulation", "workers", workers)]
    spec = load_spec(spec_path, [*overrides, *((s, k, v) for s, k, v in named if v is not None)])
    if spec.pol.sigma > 0 or any(value > 0 for value in spec.pol.client_sigma):
        from pudlab.releases import refuse_release

        refuse_release(spec.simulation.dataset, command="fl simulate", as_raw=as_raw,
                       instead="Give [simulation] dataset the raw data the release came from.")
    log = None if quiet or as_json else (lambda message: click.echo(message, err=True))
    started = time.perf_counter()
    if engine == "flower":
        from pudlab.fl.flower.engine import run_flower

        results = run_flower(spec, store, data_dir=_data_dir(ctx), log=log, runtime=flower_runtime)
    else:
        results = run_simulation(spec, store, data_dir=_data_dir(ctx), log=log)
    seconds = time.perf_counter() - started
    summary: dict = {"spec": spec.source, "store": store, "engine": engine, "seconds": seconds, "defences": {}}
    for name, records in results.items():
        last = records[-1]
        summary["defences"][name] = {"rounds": last.round, "final_accuracy": last.accuracy,
                                     "detection": detection_summary(records).to_dict(),
                                     "utility": None if last.utility is None else last.utility.to_dict()}
    if report:
        summary["report"] = str(write_fl_report(store))
    if as_json:
        click.echo(to_json(summary))
        return
    click.echo(f"{spec.name}: {spec.simulation.clients} clients, {len(results)} defence(s), {seconds:.1f} s")
    for name, row in summary["defences"].items():
        line = f"  {name:10} rounds {row['rounds']:3d}  final accuracy {row['final_accuracy']:.4f}"
        pol = row["detection"].get("pol")
        if pol:
            line += (f"  PoL caught {pol['cheaters_caught']}/{pol['cheaters_challenged']} cheaters, "
                     f"wrongly rejected {pol['honest_wrongly_rejected']}/{pol['honest_challenged']} honest")
        utility = row["utility"]
        if utility and "gain" in utility:
            line += f"  challenger utility {utility['accuracy_obfuscated']:.3f} (gain {utility['gain']:+.3f})"
        click.echo(line)
    if report:
        click.echo(f"report: {summary['report']}")


@fl_group.command("robustness")
@click.argument("spec_path", metavar="SPEC.toml")
@click.option("--store", type=click.Path(file_okay=False), required=True,
              help="Root folder: one resumable simulation per (rule, attack), and robustness.json / .md.")
@click.option("--rules", default="fedavg,multikrum,median,trimmed_mean,bulyan", show_default=True,
              help="Comma-separated aggregation rules.")
@click.option("--attacks", default="clean,sign_flip,alie,fang_krum,fang_trmean,inflate", show_default=True,
              help="Comma-separated attacks (clean = no adversary).")
@click.option("--colluders", type=click.IntRange(min=1), default=None,
              help="Colluding clients 1..k [default: the spec's f].")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override any spec field, value in TOML syntax (repeatable).")
@click.option("--engine", type=click.Choice(ENGINES), default="pudlab", show_default=True,
              help="pudlab: in-process simulations; flower: each through Flower's simulation runtime.")
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
@click.pass_context
def robustness_command(ctx: click.Context, spec_path: str, store: str, rules: str, attacks: str,
                       colluders: int | None, overrides: tuple[str, ...], engine: str, as_json: bool) -> None:
    """Final accuracy per aggregation rule x attack, with and without PoL challenges on obfuscated data.

    Runs the spec's adversaries replaced by each named attack, under every rule, once without and
    once with PoL; writes STORE/robustness.json and STORE/robustness.md and prints the table.
    """
    from pudlab.fl.robustness import ATTACKS, robustness_table
    from pudlab.fl.spec import BASE_RULES
    from pudlab.fl.spec_reader import load_spec
    from pudlab.io import to_json, write_bytes_atomic

    chosen_rules = [name.strip() for name in rules.split(",") if name.strip()]
    chosen_attacks = [name.strip() for name in attacks.split(",") if name.strip()]
    bad = [name for name in chosen_rules if name not in BASE_RULES] + \
          [name for name in chosen_attacks if name not in ATTACKS]
    if bad or not chosen_rules or not chosen_attacks:
        raise click.BadParameter(f"unknown or missing rule/attack {bad}; rules: {', '.join(BASE_RULES)}; "
                                 f"attacks: {', '.join(ATTACKS)}")
    spec = load_spec(spec_path, list(overrides))
    simulate = None
    if engine == "flower":
        from pudlab.fl.flower import require_flower
        from pudlab.fl.flower.engine import run_flower

        require_flower()
        simulate = run_flower
    log = None if as_json else (lambda message: click.echo(message, err=True))
    table = robustness_table(spec, store, rules=chosen_rules, attacks=chosen_attacks,
                             colluders=None if colluders is None else range(1, colluders + 1), log=log,
                             data_dir=_data_dir(ctx), simulate=simulate)
    write_bytes_atomic(f"{store}/robustness.md", (table.markdown() + "\n").encode())
    click.echo(to_json(table.to_dict()) if as_json else table.markdown())


@fl_group.command("flower-app")
@click.argument("spec_path", metavar="SPEC.toml")
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Folder of the Flower App to write (pyproject.toml) and of its FLWR_HOME (flwr_home/).")
@click.option("--store", type=click.Path(file_okay=False), required=True,
              help="Store the ServerApp writes (as pudlab fl simulate's --store).")
@click.option("--rounds", type=click.IntRange(min=0), default=None, help="Rounds [default: the spec's].")
@click.option("--defence", type=click.Choice(DEFENCE_CHOICES), default=None, help="Defence(s) [default: the spec's].")
@click.option("--superlink", default="127.0.0.1:9092", show_default=True,
              help="SuperLink address of the connection 'pudlab' in OUT/flwr_home/config.toml.")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override any spec field, value in TOML syntax (repeatable).")
@click.pass_context
def flower_app_command(ctx: click.Context, spec_path: str, out: str, store: str, rounds: int | None,
                       defence: str | None, superlink: str, overrides: tuple[str, ...]) -> None:
    """Write a Flower App that runs SPEC.toml with pudlab's ServerApp and ClientApp (for flwr run).

    Start a SuperLink and one SuperNode per client (--node-config "partition-id=K num-partitions=N"),
    then: FLWR_HOME=OUT/flwr_home flwr run OUT pudlab --stream (docs/fl.md, "Flower").
    """
    from pathlib import Path

    from pudlab.fl.flower import require_flower
    from pudlab.fl.flower.engine import app_config
    from pudlab.fl.flower.launch import write_app, write_flower_home
    from pudlab.fl.spec_reader import load_spec

    require_flower()
    spec = load_spec(spec_path, [*overrides, *((s, k, v) for s, k, v in (("simulation", "defence", defence),)
                                               if v is not None)])
    host, _, port = superlink.rpartition(":")
    if host not in ("127.0.0.1", "localhost") or not port.isdigit():
        raise click.BadParameter(f"{superlink!r}: expected 127.0.0.1:PORT (loopback only)", param_hint="--superlink")
    app = write_app(Path(out), app_config(spec, Path(store), spec.defences, rounds, _data_dir(ctx)))
    write_flower_home(app / "flwr_home", int(port), host=host)
    click.echo(f"{app}/pyproject.toml: {spec.simulation.clients} clients, defences {', '.join(spec.defences)}; "
               f"run with FLWR_HOME={app}/flwr_home flwr run {app} pudlab --stream")


@fl_group.command("report")
@click.argument("store", type=click.Path(exists=True, file_okay=False))
def report_command(store: str) -> None:
    """(Re)write STORE/report.md and its figures from the stored rounds."""
    from pudlab.report.fl_document import write_fl_report

    click.echo(str(write_fl_report(store)))


__all__ = ["fl_group"]
