"""``pudlab privacy`` and ``pudlab pud``: the privacy attacks and the PUD triangle on the command line.

Kept cheap to import (the top-level CLI imports it): numpy, torch, scikit-image and matplotlib are
imported inside the commands.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pudlab.cli._common import sigma_values
from pudlab.errors import PudlabError, SpecError
from pudlab.io import replace_non_finite

if TYPE_CHECKING:
    from pudlab.privacy.report import PrivacyReport
    from pudlab.pud.profiles import Recommendation
    from pudlab.pud.scores import PudPoint


def _table_number(value: float | None, spec: str = ".3f") -> str:
    """A number for the text table: "-" for a missing one, "inf" for an infinite one."""
    if value is None:
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return format(value, spec)


def _epsilon(value: float | None, spec: str) -> str:
    """An epsilon for the table: None in the JSON-safe report stands for infinity (sigma = 0)."""
    return "inf" if value is None else _table_number(value, spec)


# ---------------------------------------------------------------------------------------- privacy
# long: one text table per attack family, in the order the report reads
def _print_privacy(report: PrivacyReport) -> None:
    """The attack table, the privacy decline and the epsilons, as text."""
    config, entries = report.config, report.entries
    click.echo(f"{report.dataset.description}: released T_t ({report.dataset.train_size} samples), "
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
            f"{mia:>9} {_table_number(membership.attack.tpr_at_fpr if membership else None):>8} "
            f"{_table_number(membership.eval_accuracy if membership else None):>6} | "
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
                         f"{_table_number(learned.linkage)} ({learned.train_seconds:.0f} s)")
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
        for scheme, label in (("fresh", "(a) fresh i.i.d."), ("keyed", "(b) keyed"), ("disjoint", "(c) disjoint")):
            cells = " ".join(f"{row.psnr:5.1f}/{row.reidentified_fraction:.2f}" for row in entry.decline[scheme])
            click.echo(f"    {label:17} {cells}")
    click.echo("")
    click.echo(f"epsilon(delta={config.delta:g}), analytic Gaussian mechanism, replace-one neighbours; "
               f"n = {config.disclosures} fresh releases (keyed and disjoint stay at n = 1):")
    for entry in entries:
        parts = []
        for kind, by in entry.dp.by_sensitivity.items():
            last = by.composition[-1]
            parts.append(f"{kind} (L2 sens {by.sensitivity:g}): {_epsilon(by.epsilon, '.4g')} -> "
                         f"{_epsilon(last.fresh, '.4g')}")
        click.echo(f"  sigma {entry.sigma:g}: " + "; ".join(parts))
    click.echo("  Image-level sensitivity gives huge epsilons: this noise is no formal DP guarantee for whole images.")


@click.command("privacy")
@click.argument("dataset")
@click.option("--sigma", "--sigmas", "sigmas", multiple=True, required=True, callback=sigma_values,
              help="Noise std in [0, 1] pixel units; several as 0,0.5 or repeated.")
@click.option("--queries", type=int, default=500, show_default=True, help="Released samples attacked (seeded subsample of T_t).")
@click.option("--pool-size", type=int, default=5000, show_default=True,
              help="Linkage candidate pool: the queries' sources plus other raw samples, this many in all.")
@click.option("--denoise-samples", type=int, default=200, show_default=True, help="Samples the denoising attack runs on.")
@click.option("--disclosures", type=int, default=10, show_default=True, help="N of the privacy-decline attack.")
@click.option("--mia/--no-mia", "membership", default=True, show_default=True,
              help="Run the membership-inference attack (trains one small model per sigma).")
@click.option("--mia-members", type=int, default=1000, show_default=True, help="Training samples of the attacked model.")
@click.option("--mia-nonmembers", type=int, default=500, show_default=True, help="Non-members (from T_e).")
@click.option("--mia-epochs", type=int, default=20, show_default=True, help="Epochs of the attacked model.")
@click.option("--mia-lr", type=float, default=1e-3, show_default=True, help="Adam learning rate of the attacked model, per step.")
@click.option("--mia-widths", default="8,16,32", show_default=True, help="Conv widths of the attacked model.")
@click.option("--learned/--no-learned", default=True, show_default=True,
              help="Run the public-data attacks: a learned denoiser and label inference.")
@click.option("--lira-shadows", type=int, default=8, show_default=True,
              help="Shadow models of the LiRA membership attack (even; 0: off).")
@click.option("--delta", type=float, default=1e-5, show_default=True, help="delta of the (epsilon, delta) accounting.")
@click.option("--seed", type=int, default=0, show_default=True, help="Root seed of the attacks' subsamples, partitions, models.")
@click.option("--noise-seed", type=int, default=0, show_default=True, help="Obfuscation noise key of the release.")
@click.option("--split-seed", type=int, default=0, show_default=True, help="Seed of the 90/10 T_t / T_e split.")
@click.option("--clip", is_flag=True, help="Release clipped to [0, 1].")
@click.option("--device", default="cpu", show_default=True, help="Device of the attacked model: cpu, cuda, auto.")
@click.option("--threads", type=int, default=1, show_default=True,
              help="torch CPU threads; 0 = torch's default. The attacked models are tiny; on a busy 2-core "
                   "machine one thread ran the default command 3x faster than two.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Write privacy.json and privacy_decline.png/.svg here.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
@click.pass_obj
def privacy_command(state: Any, dataset: str, sigmas: tuple[float, ...], queries: int, pool_size: int,
                    denoise_samples: int, disclosures: int, membership: bool, mia_members: int, mia_nonmembers: int,
                    mia_epochs: int, mia_lr: float, mia_widths: str, delta: float, seed: int, noise_seed: int,
                    split_seed: int, clip: bool, device: str, threads: int, out: str | None, as_json: bool,
                    progress: bool, learned: bool, lira_shadows: int) -> None:
    """Attack O(T_t) of DATASET at each --sigma: similarity, linkage, denoising, privacy decline,
    membership inference, and the Gaussian-mechanism epsilon. See docs/privacy.md."""
    import dataclasses

    import torch

    from pudlab.cli._common import parse_widths, print_json
    from pudlab.data.sources import load_source
    from pudlab.io import write_json
    from pudlab.privacy.report import PrivacyConfig, PrivacyReport, privacy_report
    from pudlab.report.privacy_figures import save_decline_figures
    from pudlab.train.trainer import resolve_device

    if any(sigma < 0 or not math.isfinite(sigma) for sigma in sigmas):
        raise PudlabError(f"--sigma must be finite and >= 0, got {list(sigmas)}")
    if threads < 0:
        raise PudlabError(f"--threads must be >= 0, got {threads}")
    if threads > 0:
        torch.set_num_threads(threads)
    config = PrivacyConfig(queries=queries, pool_size=pool_size, denoise_samples=denoise_samples,
                           disclosures=disclosures, membership=membership, mia_members=mia_members,
                           mia_nonmembers=mia_nonmembers, mia_epochs=mia_epochs, mia_lr=mia_lr,
                           mia_widths=parse_widths(mia_widths), delta=delta, seed=seed, noise_seed=noise_seed,
                           split_seed=split_seed, clip=clip, learned=learned, lira_shadows=lira_shadows)
    started = time.perf_counter()
    source = load_source(dataset, state.data_dir)
    measured = privacy_report(source, sigmas, config, device=str(resolve_device(device)), progress=progress)
    measured = dataclasses.replace(measured, command_wall_seconds=time.perf_counter() - started,
                                   torch_threads=torch.get_num_threads())
    data = replace_non_finite(measured.to_dict())
    report = PrivacyReport.from_dict(data)  # what the JSON says (an infinite epsilon is None)
    if out is not None:
        write_json(Path(out) / "privacy.json", data)
        save_decline_figures(report, out)
    if as_json:
        print_json(data)
        return
    _print_privacy(report)
    click.echo(f"\n{report.command_wall_seconds:.1f} s wall, {report.torch_threads} torch threads"
               + (f"; wrote {out}/privacy.json, privacy_decline.png/.svg" if out else ""))


# ---------------------------------------------------------------------------------------- pud
# long: the command's options, one pass per profile (threat model, PoL detection), then the outputs
@click.command("pud")
@click.argument("store", required=False)
@click.option("--from-json", "from_json", type=click.Path(dir_okay=False), default=None,
              help="Per-sigma inputs as JSON (sigmas, accuracy, delta, privacy...; see docs/privacy.md).")
@click.option("--privacy-json", type=click.Path(dir_okay=False, exists=True), default=None,
              help="A `pudlab privacy --json` report supplying the privacy inputs (its sigmas must match).")
@click.option("--profile", "profiles", multiple=True,
              help="Recommend a sigma for a profile: outsourcing, pol, or a .toml file; repeatable.")
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
              help="Write pud.json, pud_triangles.png/.svg and pud_curves.png/.svg here.")
@click.option("--dataset", default=None, help="With STORE: the dataset whose Exp-3 sweep to use [default: the first].")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (recommended: null when no sigma fits).")
@click.pass_obj
def pud_command(state, store: str | None, from_json: str | None, privacy_json: str | None,
                profiles: tuple[str, ...], privacy_combine: str, delta_floor: float | None,
                chance_accuracy: float | None, shown: tuple[float, ...], out: str | None, dataset: str | None,
                as_json: bool, pol_evaluation: str | None) -> None:
    """The PUD triangle per sigma, and the recommended sigma for application profiles.

    STORE: a sweep store with an Exp-3 sweep (Utility = accuracy of W_o,3,1; Distinguishability from
    Delta = |D_3,1 - D_3,2|; Privacy from `pudlab privacy` at the same sigmas, computed once and kept
    in STORE/privacy/). Or give the per-sigma inputs with --from-json.
    """
    from pudlab.cli._common import print_json
    from pudlab.io import read_json, write_json
    from pudlab.pud.json_inputs import points_from_json
    from pudlab.pud.pol_inputs import with_pol_detection
    from pudlab.pud.profiles import load_profile, recommend
    from pudlab.report.privacy_figures import save_pud_figures

    if (store is None) == (from_json is None):
        raise SpecError("pud: give a STORE or --from-json FILE (the per-sigma inputs), not both")
    privacy_report: Any = read_json(privacy_json) if privacy_json else None
    if store is not None:
        data, privacy_report, chosen = _store_inputs(state, store, dataset, privacy_report, progress=not as_json)
        source_label, base_dir = f"{store} ({chosen})", Path(store)
        out = out or str(Path(store) / "pud" / Path(chosen).stem)
    else:
        assert from_json is not None
        data = read_json(from_json)
        source_label, base_dir = from_json, Path(from_json).parent
    def points_for(threat: str | None) -> list[PudPoint]:
        return points_from_json(data, source=source_label, base_dir=base_dir, privacy_report=privacy_report,
                                privacy_combine=privacy_combine, delta_floor=delta_floor,
                                chance_accuracy=chance_accuracy, threat_model=threat)

    points = points_for(None)
    loaded = [load_profile(name) for name in profiles]
    pol_report = read_json(pol_evaluation) if pol_evaluation else None
    recommendations, notes = [], []
    for profile in loaded:
        profile_points = points_for(profile.threat_model)
        if profile.distinguishability == "pol_detection":
            if pol_report is not None:
                profile_points = with_pol_detection(profile_points, pol_report, source=str(pol_evaluation))
            else:
                notes.append(f"profile '{profile.name}': D from Delta; give --pol-evaluation FILE (a `pudlab pol "
                             "evaluate` JSON) for the PoL verifier's measured detection")
        recommendation = recommend(profile_points, profile)
        recommendations.append(recommendation)
        notes.extend(_privacy_warnings(recommendation))
    result: dict[str, Any] = {"kind": "pudlab.pud", "source": source_label, "points": [p.to_dict() for p in points],
                              "recommendations": [r.to_dict() for r in recommendations], "notes": notes}
    if out is not None:
        result["recommendations"] = _merged_recommendations(Path(out) / "pud.json", result["recommendations"])
    if len(result["recommendations"]) == 1:
        result["recommended"] = result["recommendations"][0]["recommended"]
    if out is not None:
        highlight = recommendations[0].recommended.sigma if recommendations and recommendations[0].recommended else None
        save_pud_figures(points, out, title=f"PUD: {data.get('title', Path(source_label).stem)}",
                         highlight=highlight, sigmas=list(shown) or None)
        write_json(Path(out) / "pud.json", replace_non_finite(result))
    if as_json:
        print_json(replace_non_finite(result))
        return
    _print_pud(points, recommendations)
    for note in notes:
        click.echo(f"note: {note}", err=True)
    if out is not None:
        click.echo(f"\nwrote {out}/pud.json, pud_triangles.png/.svg, pud_curves.png/.svg")


PRIVACY_SECONDS_PER_SIGMA = 120.0
"""The default privacy attacks' wall time per sigma on MNIST-5k, one CPU thread (measured 65 s on an
idle and 187 s on a busy 2-core machine; LiRA's 8 shadow models take about half), for the notice."""
NEGLIGIBLE_PRIVACY = 0.05
"""A recommended P below this is flagged: the attacker of the profile's threat model recovers nearly everything."""


def _privacy_warnings(recommendation: Recommendation) -> list[str]:
    """A warning when the recommended sigma gives negligible privacy under the profile's threat model."""
    chosen = recommendation.recommended
    if chosen is None or chosen.privacy >= NEGLIGIBLE_PRIVACY:
        return []
    return [f"warning: profile '{recommendation.profile.name}' recommends sigma {chosen.sigma:g} with P = "
            f"{chosen.privacy:.3f} under threat model '{recommendation.profile.threat_model}': privacy is "
            f"negligible there (P < {NEGLIGIBLE_PRIVACY:g}); the constraints leave no sigma with more"]


def _merged_recommendations(path: Path, new: list[dict]) -> list[dict]:
    """The recommendations of an earlier ``pud.json`` at ``path`` with ``new`` added (a profile of
    the same name is replaced), so that calls with other profiles accumulate."""
    from pudlab.io import read_json

    earlier: list[dict] = []
    if path.exists():
        try:
            earlier = list(read_json(path).get("recommendations", []))
        except (PudlabError, OSError, ValueError, AttributeError):
            earlier = []
    names = {item["profile"]["name"] for item in new}
    return [item for item in earlier if item.get("profile", {}).get("name") not in names] + new


def _store_inputs(state: Any, store: str, dataset: str | None, privacy_report: Any, *,
                  progress: bool) -> tuple[dict, Any, str]:
    """(per-sigma inputs, privacy report, dataset) of a store's Exp-3 sweep; the privacy report is
    the one given, else the stored one (computed and kept on first use)."""
    from pudlab.experiments.store import Store
    from pudlab.pud.store_inputs import pud_inputs, store_datasets, stored_privacy

    with Store(store, create=False) as opened:
        names = store_datasets(opened)
        chosen = dataset or (names[0] if names else None)
        if chosen is None:
            raise SpecError(f"{store}: no Exp-3 sweep in the store; run `pudlab run exp3 ...` first")
        data = pud_inputs(opened, chosen)
        if privacy_report is None:
            privacy_report = stored_privacy(opened, chosen, data["sigmas"], data_dir=state.data_dir, compute=False)
        if privacy_report is None:
            minutes = PRIVACY_SECONDS_PER_SIGMA * len(data["sigmas"]) / 60
            click.echo(f"note: computing the privacy attacks on {chosen} at {len(data['sigmas'])} sigmas once (kept in "
                       f"{store}/privacy/): about {minutes:.0f} minutes on one CPU thread", err=True)
            privacy_report = stored_privacy(opened, chosen, data["sigmas"], data_dir=state.data_dir,
                                            progress=progress)
    return data, privacy_report, chosen


def _print_pud(points: list[PudPoint], recommendations: list[Recommendation]) -> None:
    """The P, U, D table and each recommendation with its grid neighbours, as text."""
    from pudlab.privacy.threats import THREAT_MODELS

    threats = "".join(f" {'P|' + name:>9}" for name in THREAT_MODELS)
    click.echo(f"{'sigma':>6} {'P':>6} {'U':>6} {'D':>6}   {'accuracy':>8} {'D from':>12}{threats}")
    for point in points:
        source = point.raw.get("d_method", "")
        by_threat = point.raw.get("privacy_by_threat", {})
        cells = "".join(f" {_table_number(by_threat.get(name)):>9}" for name in THREAT_MODELS)
        click.echo(f"{point.sigma:>6g} {point.privacy:>6.3f} {point.utility:>6.3f} {point.distinguishability:>6.3f}   "
                   f"{point.raw['accuracy']:>8.4f} {source:>12}{cells}")
    click.echo("P: every attack (the strongest attacker); P|name: under that threat model (release, + public "
               "data, + raw pool, + the trained model)")
    for recommendation in recommendations:
        click.echo("")
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


__all__ = ["privacy_command", "pud_command"]
