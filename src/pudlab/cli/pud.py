"""``pudlab pud``: the PUD triangle and the recommended sigma, each view under one named threat model.

Kept cheap to import: numpy, torch and matplotlib are imported inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pudlab.cli.privacy import attack_options, privacy_config, table_number
from pudlab.errors import SpecError
from pudlab.io import replace_non_finite

if TYPE_CHECKING:
    from pudlab.privacy.report import PrivacyConfig
    from pudlab.pud.views import PudView


# long: the command's options, the inputs (store or JSON), one view per profile, then the outputs
@click.command("pud")
@click.argument("store", required=False)
@click.option("--from-json", "from_json", type=click.Path(dir_okay=False), default=None,
              help="Per-sigma inputs as JSON (sigmas, accuracy, delta, privacy...; see docs/privacy.md).")
@click.option("--privacy-json", type=click.Path(dir_okay=False, exists=True), default=None,
              help="A `pudlab privacy` or `pudlab audit` privacy.json supplying the privacy inputs (its sigmas "
                   "must match).")
@click.option("--profile", "profiles", multiple=True,
              help="Recommend a sigma for a profile: outsourcing, pol, or a .toml file; repeatable. Each profile "
                   "computes P under its own threat model.")
@click.option("--threat-model", default="model", show_default=True,
              type=click.Choice(["release", "public", "pool", "model"]),
              help="Without --profile: the attacker P is computed for (model: every attack).")
@click.option("--privacy-combine", type=click.Choice(["min", "mean"]), default="min", show_default=True,
              help="How privacy components combine into P (min: the strongest attack decides).")
@click.option("--delta-floor", type=float, default=None,
              help="Delta floor f in D = (Delta - f) / (Delta(0) - f) [default: the file's, else 0].")
@click.option("--chance-accuracy", type=float, default=None,
              help="a_c in U = (A - a_c) / (A(0) - a_c) [default: the file's, else 1 / num_classes].")
@click.option("--pol-evaluation", "pol_evaluation", type=click.Path(dir_okay=False, exists=True), default=None,
              help="A `pudlab pol evaluate` JSON: D of profiles with distinguishability = pol_detection "
                   "(the pol profile) is the verifier's measured detection at each sigma.")
@click.option("--show-sigma", "shown", type=float, multiple=True,
              help="Draw triangles for these sigmas only (repeatable) [default: all].")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Write pud.json (every view computed into it is kept) and pud_triangles_<view>.png/.svg, "
                   "pud_curves_<view>.png/.svg here.")
@click.option("--dataset", default=None, help="With STORE: the dataset whose Exp-3 sweep to use [default: the first].")
@attack_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON (recommended: null when no sigma fits).")
@click.pass_obj
def pud_command(state: Any, store: str | None, from_json: str | None, privacy_json: str | None,
                profiles: tuple[str, ...], threat_model: str, privacy_combine: str, delta_floor: float | None,
                chance_accuracy: float | None, shown: tuple[float, ...], out: str | None, dataset: str | None,
                as_json: bool, pol_evaluation: str | None, **attack: Any) -> None:
    """The PUD triangle per sigma, and the recommended sigma for application profiles.

    STORE: a sweep store with an Exp-3 sweep (Utility = accuracy of W_o,3,1; Distinguishability from
    Delta = |D_3,1 - D_3,2|; Privacy from `pudlab privacy` at the same sigmas with the attack-size
    options below, computed once and kept in STORE/privacy/, one sigma at a time: an interrupted run
    resumes). Or give the per-sigma inputs with --from-json.

    Every table row, plot title and recommendation names the threat model its P is for: a profile's
    own (outsourcing, pol: public), else --threat-model.
    """
    from pudlab.cli._common import print_json
    from pudlab.io import read_json, write_json
    from pudlab.pud.profiles import load_profile
    from pudlab.pud.views import privacy_source, pud_result, pud_views, read_earlier

    if (store is None) == (from_json is None):
        raise SpecError("pud: give a STORE or --from-json FILE (the per-sigma inputs), not both")
    privacy_report: Any = read_json(privacy_json) if privacy_json else None
    source_how = "--privacy-json"
    if store is not None:
        config = privacy_config(attack)
        context = click.get_current_context()
        explicit = any(context.get_parameter_source(name) != click.core.ParameterSource.DEFAULT for name in attack)
        data, chosen, kept = _store_inputs(state, store, dataset, privacy_report is not None, config,
                                           match=explicit, quiet=as_json)
        if kept is not None:
            privacy_json, source_how = kept, "kept in the store"
            privacy_report = read_json(kept)
        source_label, base_dir = f"{store} ({chosen})", Path(store)
        out = out or str(Path(store) / "pud" / Path(chosen).stem)
    else:
        assert from_json is not None
        data = read_json(from_json)
        source_label, base_dir = from_json, Path(from_json).parent
        if privacy_report is None and "privacy_report" in data:
            privacy_json = str(base_dir / str(data["privacy_report"]))
            privacy_report, source_how = read_json(privacy_json), f"{from_json} (its privacy_report)"
        elif privacy_report is None:
            source_how = f"the 'privacy' list of {from_json}"
    privacy = privacy_source(privacy_report, file=privacy_json, how=source_how)
    views = pud_views(data, source=source_label, base_dir=base_dir, privacy_report=privacy_report,
                      profiles=[load_profile(name) for name in profiles], threat_model=threat_model,
                      privacy_combine=privacy_combine, delta_floor=delta_floor, chance_accuracy=chance_accuracy,
                      pol_report=read_json(pol_evaluation) if pol_evaluation else None,
                      pol_source=str(pol_evaluation))
    title = str(data.get("title", Path(source_label).stem))
    earlier = read_earlier(Path(out) / "pud.json") if out is not None else None
    result = pud_result(views, source=source_label, privacy=privacy, title=title, earlier=earlier)
    if out is not None:
        written = _save_figures(views, out, title, list(shown) or None)
        write_json(Path(out) / "pud.json", replace_non_finite(result))
    if as_json:
        print_json(replace_non_finite(result))
        return
    from pudlab.pud.views import describe_source

    click.echo(describe_source(privacy))
    for view in views:
        _print_view(view)
    for view in views:
        for note in view.notes:
            click.echo(f"note: {note}" if not note.startswith("warning:") else note, err=True)
    if out is not None:
        click.echo(f"\nwrote {out}/pud.json ({len(result['views'])} view(s) kept), "
                   + ", ".join(sorted({path.name.rsplit('.', 1)[0] for path in written})) + " (.png/.svg)")


def _save_figures(views: list[PudView], out: str, title: str, sigmas: list[float] | None) -> list[Path]:
    """Triangles and curves of each view, titled with its profile and threat model."""
    from pudlab.pud.scores import select_points
    from pudlab.report.figures import save_figure
    from pudlab.report.privacy_figures import curves_figure, triangle_figure

    written = []
    for view in views:
        chosen = view.recommendation.recommended if view.recommendation is not None else None
        highlight = chosen.sigma if chosen is not None else None
        heading = f"PUD: {title}: {view.title_suffix}"
        for fmt in ("png", "svg"):
            written.append(save_figure(triangle_figure(select_points(view.points, sigmas), title=heading,
                                                       highlight=highlight),
                                       Path(out) / f"pud_triangles_{view.name}.{fmt}"))
            written.append(save_figure(curves_figure(view.points, title=heading, highlight=highlight),
                                       Path(out) / f"pud_curves_{view.name}.{fmt}"))
    return written


def _store_inputs(state: Any, store: str, dataset: str | None, given: bool, config: PrivacyConfig, *, match: bool,
                  quiet: bool) -> tuple[dict, str, str | None]:
    """(per-sigma inputs, dataset, the kept privacy report's path) of a store's Exp-3 sweep; the privacy
    report is computed with ``config`` (and kept, one sigma at a time) unless one is ``given`` (then the
    path is None). A kept report is used whatever its attack sizes unless ``match`` (sizes were given)."""
    from pudlab.experiments.store import Store
    from pudlab.pud.store_inputs import (
        measured_seconds_per_sigma,
        privacy_path,
        pud_inputs,
        store_datasets,
        stored_privacy,
    )

    with Store(store, create=False) as opened:
        names = store_datasets(opened)
        chosen = dataset or (names[0] if names else None)
        if chosen is None:
            raise SpecError(f"{store}: no Exp-3 sweep in the store; run `pudlab run exp3 ...` first")
        data = pud_inputs(opened, chosen)
        if given:
            return data, chosen, None
        from pudlab.releases import refuse_release

        refuse_release(chosen, command="pud", as_raw=False,
                       instead=f"Audit it (pudlab audit {chosen} --raw DATASET) and pass --privacy-json.")
        report = stored_privacy(opened, chosen, data["sigmas"], data_dir=state.data_dir,
                                config=config if match else None, compute=False)
        if report is None:
            per_sigma = measured_seconds_per_sigma(opened, chosen, config)
            estimate = (f"about {per_sigma * len(data['sigmas']) / 60:.1f} minutes, from the {per_sigma:.0f} s per "
                        "sigma measured so far" if per_sigma else "the time of each sigma is printed as it finishes")
            click.echo(f"note: computing the privacy attacks on {chosen} at {len(data['sigmas'])} sigmas once (kept in "
                       f"{store}/privacy/, each sigma as it finishes; shrink them with --queries, --mia-members, "
                       f"--lira-shadows, ...): {estimate}", err=True)
            report = stored_privacy(opened, chosen, data["sigmas"], data_dir=state.data_dir, config=config,
                                    progress=not quiet, log=lambda line: click.echo(f"note: {line}", err=True))
        assert report is not None
        return data, chosen, str(privacy_path(opened, chosen))


def _print_view(view: PudView) -> None:
    """One view's table (the threat model named in every row) and its recommendation with neighbours."""
    from pudlab.privacy.threats import THREAT_MODELS

    click.echo("")
    click.echo(f"{view.title_suffix}: the attacker holds {THREAT_MODELS[view.threat_model].description}")
    threats = "".join(f" {'P|' + name:>9}" for name in THREAT_MODELS)
    click.echo(f"{'sigma':>6} {'P':>6} {'threat':>8} {'U':>6} {'D':>6}   {'accuracy':>8} {'D from':>13}{threats}")
    for point in view.points:
        source = point.raw.get("d_method", "")
        by_threat = point.raw.get("privacy_by_threat", {})
        cells = "".join(f" {table_number(by_threat.get(name)):>9}" for name in THREAT_MODELS)
        click.echo(f"{point.sigma:>6g} {point.privacy:>6.3f} {view.threat_model:>8} {point.utility:>6.3f} "
                   f"{point.distinguishability:>6.3f}   {point.raw['accuracy']:>8.4f} {source:>13}{cells}")
    click.echo(f"P: under threat model '{view.threat_model}' (the P this view uses); P|name: under each threat model, "
               "for comparison")
    recommendation = view.recommendation
    if recommendation is None:
        return
    click.echo(recommendation.message)
    if recommendation.recommended is not None:
        for label, neighbour in (("below", recommendation.below), ("above", recommendation.above)):
            if neighbour is None:
                click.echo(f"  {label}: none (edge of the grid)")
                continue
            missed = recommendation.failures.get(neighbour.sigma)
            status = "feasible" if not missed else "misses " + ", ".join(missed)
            click.echo(f"  {label}: sigma {neighbour.sigma:g}  P {neighbour.privacy:.3f}  U {neighbour.utility:.3f}"
                       f"  D {neighbour.distinguishability:.3f}  ({status})")


__all__ = ["pud_command"]
