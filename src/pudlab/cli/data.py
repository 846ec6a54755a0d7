"""``pudlab datasets`` and ``pudlab obfuscate``: named sources and obfuscated releases."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from pudlab.cli._common import CliState, PudlabGroup, print_json
from pudlab.errors import PudlabError

# ---------------------------------------------------------------------------------------- datasets
@click.group("datasets", cls=PudlabGroup, invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def datasets_group(ctx: click.Context, as_json: bool) -> None:
    """List the known dataset sources, whether each is present locally, and sizes."""
    if ctx.invoked_subcommand is not None:
        return
    from pudlab.data import resolve_data_dir, source_status

    rows = source_status(ctx.obj.data_dir)
    if as_json:
        print_json({"data_dir": str(resolve_data_dir(ctx.obj.data_dir)), "sources": rows})
        return
    click.echo(f"data dir: {resolve_data_dir(ctx.obj.data_dir)}")
    for row in rows:
        sizes = f"train {row.get('train_size', '?')}, test {row.get('test_size', '-')}" if row["present"] else ""
        state = "present" if row["present"] else "missing"
        click.echo(f"  {row['name']:14} {state:8} {sizes:28} {row.get('where') or ''}")
        click.echo(f"  {'':14} {row['description']}")


@datasets_group.command("fetch")
@click.argument("name")
@click.pass_obj
def datasets_fetch(state: CliState, name: str) -> None:
    """Download NAME's official files into the data dir, verifying checksums."""
    from pudlab.data.fetch import fetch_source

    where = fetch_source(name, state.data_dir, progress=True)
    click.echo(f"{name}: ready in {where}")


# ---------------------------------------------------------------------------------------- obfuscate
def _out_for_sigma(out: Path, sigma: float, several: bool) -> Path:
    return out.with_name(f"{out.stem}_sigma{sigma:g}{out.suffix}") if several else out


@click.command("obfuscate")
@click.argument("dataset")
@click.option("--sigma", "sigmas", type=float, multiple=True, required=True,
              help="Noise std in [0, 1] pixel units; repeat for several (one output file each).")
@click.option("--fraction", type=float, default=1.0, show_default=True, help="R: fraction of samples obfuscated.")
@click.option("--seed", type=int, default=0, show_default=True, help="Noise key (same seed, same noise per sample).")
@click.option("--clip", is_flag=True, help="Clip obfuscated pixels to [0, 1].")
@click.option("--split-seed", type=int, default=0, show_default=True, help="Seed of the 90/10 T_t / T_e split.")
@click.option("--out", type=click.Path(dir_okay=False), required=True,
              help="Output .npz (x, y, ids, obfuscated); with several --sigma, _sigma<S> is added to the name.")
@click.option("--preview", type=click.Path(dir_okay=False), default=None,
              help="Also draw a Fig. 1-style grid (PNG/SVG): rows = clean + each sigma.")
@click.option("--preview-samples", type=int, default=8, show_default=True, help="Columns of the preview.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifests as JSON.")
@click.pass_obj
def obfuscate_command(state: CliState, dataset: str, sigmas: tuple[float, ...], fraction: float, seed: int,
                      clip: bool, split_seed: int, out: str, preview: str | None, preview_samples: int,
                      as_json: bool) -> None:
    """Write O(T_t) of DATASET's training split at each --sigma, with a JSON manifest beside it."""
    from pudlab.data.dataset import split_train_eval
    from pudlab.data.sources import load_source
    from pudlab.obfuscation import ObfuscationParams, obfuscate, obfuscation_manifest
    from pudlab.report.figures import sample_grid
    from pudlab.io import atomic_path, write_json

    source = load_source(dataset, state.data_dir)
    split = split_train_eval(source, seed=split_seed)
    out_path = Path(out)
    if out_path.suffix != ".npz":
        raise PudlabError(f"--out {out}: expected a .npz file name")
    manifests, rows = [], [("clean", split.train.images[:preview_samples])]
    for sigma in sigmas:
        params = ObfuscationParams(sigma, fraction, seed, clip)
        result = obfuscate(split.train, sigma=sigma, fraction=fraction, seed=seed, clip=clip)
        target = _out_for_sigma(out_path, sigma, len(sigmas) > 1)
        with atomic_path(target) as temp:
            with open(temp, "wb") as handle:
                np.savez(handle, x=result.images, y=result.labels, ids=result.ids, obfuscated=np.bool_(sigma > 0))
        manifest = obfuscation_manifest(split.train, result, params, source_fingerprint=source.fingerprint,
                                        recipe={"split": "T_t", "split_seed": split_seed, "eval_fraction": 0.1})
        manifest.update(dataset=source.name, description=source.description, file=str(target))
        write_json(target.with_suffix(".json"), manifest)
        manifests.append(manifest)
        rows.append((f"σ={sigma:g}", result.images[:preview_samples]))
        if not as_json:
            click.echo(f"{target}: {len(result)} samples of {source.description}, sigma {sigma:g}, "
                       f"sha256 {manifest['arrays_sha256']['x'][:16]}")
    if preview:
        sample_grid(rows, preview, title=f"{source.description}: obfuscated samples")
        if not as_json:
            click.echo(f"preview: {preview}")
    if as_json:
        print_json(manifests)
