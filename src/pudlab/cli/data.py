"""``pudlab datasets`` and ``pudlab obfuscate``: named sources and obfuscated releases."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from pudlab.cli._common import CliState, PudlabGroup, print_json, sigma_values
from pudlab.errors import PudlabError


# ---------------------------------------------------------------------------------------- datasets
@click.group("datasets", cls=PudlabGroup, invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def datasets_group(ctx: click.Context, as_json: bool) -> None:
    """List the known dataset sources, whether each is present locally, and sizes.

    A named source is looked up in <data dir>/NAME/; fashion-mnist also in the system data dir
    ($PUDLAB_SYSTEM_DATA_DIR, default /usr/share/datasets, where Debian's dataset-fashion-mnist
    puts it; set it empty to search no system folder).
    """
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
        if row.get("error"):
            click.echo(f"warning: {row['name']}: {row['error']}", err=True)


@datasets_group.command("fetch")
@click.argument("name")
@click.option("--mirror", metavar="URL", default=None,
              help="Base URL (https://, http:// or file://) holding the official file names, used instead of "
                   "the official URLs [default: $PUDLAB_MIRROR_<NAME>, e.g. PUDLAB_MIRROR_FASHION_MNIST].")
@click.pass_obj
def datasets_fetch(state: CliState, name: str, mirror: str | None) -> None:
    """Download NAME's official files into the data dir, verifying their published MD5 checksums."""
    from pudlab.data.fetch import fetch_source

    where = fetch_source(name, state.data_dir, progress=True, mirror=mirror)
    click.echo(f"{name}: ready in {where}")


# ---------------------------------------------------------------------------------------- obfuscate
PIXEL_RANGE = 1.0
"""Pixels are on the [0, 1] scale; --sigma is documented in those units."""


def _out_for_sigma(out: Path, sigma: float, several: bool) -> Path:
    return out.with_name(f"{out.stem}_sigma{sigma:g}{out.suffix}") if several else out


def _notice(text: str) -> None:
    click.echo(f"notice: {text}", err=True)


def _check_input(dataset: str, sigmas: tuple[float, ...], as_raw: bool) -> None:
    """Refuse a release as DATASET (unless --as-raw); warn about a sigma beyond the pixel range."""
    from pudlab.releases import refuse_release

    refuse_release(dataset, command="obfuscate", as_raw=as_raw,
                   instead=f"Release from the raw data instead, or audit this release: pudlab audit {dataset} --raw DATASET.")
    for sigma in sigmas:
        if sigma > PIXEL_RANGE:
            click.echo(f"warning: sigma {sigma:g} exceeds the [0, {PIXEL_RANGE:g}] pixel range: the noise is wider than "
                       f"any pixel value (PSNR about {-20 * np.log10(sigma / PIXEL_RANGE):.1f} dB), the release is "
                       "mostly noise", err=True)


def _release_key(key_file: str | None, key_out: str | None, insecure_seed: int | None):
    """(key, sigmas the key file has released at) after checking that the key options fit together."""
    from pudlab.obfuscation import ReleaseKey, key_file_sigmas

    if insecure_seed is not None and (key_file or key_out):
        raise PudlabError("--insecure-seed makes its own (public) key: drop --key-file / --key-out")
    if key_file and key_out:
        raise PudlabError("--key-out writes a fresh key; with --key-file the key already has a file")
    if key_out and Path(key_out).exists():
        raise PudlabError(f"--key-out {key_out}: already exists; a release key file is never overwritten")
    if insecure_seed is not None:
        click.echo(f"warning: --insecure-seed {insecure_seed}: anyone who knows or guesses the seed removes the "
                   "noise; for reproducible demos only, never for data that leaves you", err=True)
        return ReleaseKey.from_insecure_seed(insecure_seed), ()
    if key_file:
        return ReleaseKey.read(key_file), key_file_sigmas(key_file)
    return ReleaseKey.generate(), ()


def _key_notices(key_id: str, sigmas: list[float], used: tuple[float, ...], *, key_file: str | None,
                 key_out: str | None, insecure: bool) -> None:
    """One line per fact a data owner must know about independent draws and exact re-releases."""
    from pudlab.privacy.decline import effective_sigma

    noisy = [s for s in sigmas if s > 0]
    for sigma in noisy:
        if sigma in used:
            _notice(f"key {key_id} already released at sigma {sigma:g}: this release reproduces the earlier "
                    "one exactly (same samples)")
    new = [s for s in noisy if s not in used]
    every = sorted({*used, *noisy})
    if key_file and new and not used:
        _notice(f"{key_file} records no earlier release: releases under key {key_id} at different sigmas are "
                "independent draws of the noise")
    if new and len(every) > 1:
        listed = ", ".join(f"{s:g}" for s in every)
        _notice(f"releases at sigma {listed} under key {key_id} are independent draws: together they hide the "
                f"images only as well as one release at sigma {effective_sigma(every):.3g} (sum of 1/sigma^2)")
    if noisy and not (key_file or key_out or insecure):
        _notice("the fresh release key is not kept (use --key-out to keep it): a later release of these "
                "samples will be an independent draw, and averaging n such draws divides the noise by sqrt(n)")


# long: one option per release knob, then one file and manifest per sigma
@click.command("obfuscate")
@click.argument("dataset")
@click.option("--sigma", "--sigmas", "sigmas", multiple=True, required=True, callback=sigma_values,
              help="Noise std in [0, 1] pixel units; several as 0,0.5 or repeated (one output file each).")
@click.option("--fraction", type=float, default=1.0, show_default=True, help="R: fraction of samples obfuscated.")
@click.option("--key-out", type=click.Path(dir_okay=False), default=None,
              help="Keep the fresh secret release key in this new file (mode 0600). Never share it.")
@click.option("--key-file", type=click.Path(dir_okay=False), default=None,
              help="Release under an existing key file: the same sigma reproduces the earlier release exactly.")
@click.option("--insecure-seed", type=int, default=None,
              help="INSECURE, demos only: derive the key from this integer (anyone can remove the noise); "
                   "the manifest says so.")
@click.option("--clip", is_flag=True, help="Clip obfuscated pixels to [0, 1].")
@click.option("--split-seed", type=int, default=0, show_default=True, help="Seed of the 90/10 T_t / T_e split.")
@click.option("--out", type=click.Path(dir_okay=False), required=True,
              help="Output .npz (x, y, ids, obfuscated); with several --sigma, _sigma<S> is added to the name.")
@click.option("--preview", type=click.Path(dir_okay=False), default=None,
              help="Also draw a Fig. 1-style grid (PNG/SVG): rows = clean + each sigma.")
@click.option("--preview-samples", type=int, default=10, show_default=True,
              help="Columns of the preview: the first sample of each class, at most this many.")
@click.option("--as-raw", is_flag=True, help="DATASET is a release: obfuscate it again anyway (noise on noise).")
@click.option("--json", "as_json", is_flag=True, help="Print the manifests as JSON.")
@click.pass_obj
def obfuscate_command(state: CliState, dataset: str, sigmas: tuple[float, ...], fraction: float,
                      key_out: str | None, key_file: str | None, insecure_seed: int | None, clip: bool,
                      split_seed: int, out: str, preview: str | None, preview_samples: int, as_json: bool,
                      as_raw: bool) -> None:
    """Release O(T_t) of DATASET's training split at each --sigma, with a JSON manifest beside it.

    The noise is keyed by a secret 256-bit key, fresh for every invocation unless --key-file is
    given; the key is written only to --key-out, never to the release or its manifest. Labels and
    sample ids are released in the clear. See docs/threat-model.md.
    """
    from pudlab.data.dataset import split_train_eval
    from pudlab.data.sources import load_source
    from pudlab.io import atomic_path, write_json
    from pudlab.obfuscation import check_sigma_fraction, record_key_use, release, release_manifest
    from pudlab.report.figures import sample_grid

    out_path = Path(out)
    if out_path.suffix != ".npz":
        raise PudlabError(f"--out {out}: expected a .npz file name")
    for sigma in sigmas:
        check_sigma_fraction(sigma, fraction)
    if len(set(sigmas)) != len(sigmas):
        raise PudlabError(f"--sigma: each value once, got {', '.join(f'{s:g}' for s in sigmas)}")
    _check_input(dataset, sigmas, as_raw)
    key, used = _release_key(key_file, key_out, insecure_seed)
    key_path = key_file or key_out  # the key file that records the sigmas released under the key
    source = load_source(dataset, state.data_dir)
    split = split_train_eval(source, seed=split_seed)
    if key_out:
        key.write(key_out)
        if not as_json:
            click.echo(f"key: {key_out} (key id {key.key_id}, mode 0600; keep it secret)")
    _key_notices(key.key_id, list(sigmas), used, key_file=key_file, key_out=key_out, insecure=insecure_seed is not None)
    shown = np.unique(split.train.labels, return_index=True)[1][:preview_samples]  # one sample per class
    manifests, rows = [], [("clean", split.train.images[shown])]
    for sigma in sigmas:
        result = release(split.train, sigma=sigma, key=key, fraction=fraction, clip=clip)
        target = _out_for_sigma(out_path, sigma, len(sigmas) > 1)
        with atomic_path(target) as temp:
            with open(temp, "wb") as handle:
                np.savez(handle, x=result.images, y=result.labels, ids=result.ids, obfuscated=np.bool_(sigma > 0))
        manifest = release_manifest(result, sigma=sigma, fraction=fraction, clip=clip, key=key,
                                    recipe={"split": "T_t", "split_seed": split_seed, "eval_fraction": 0.1},
                                    insecure_seed=insecure_seed)
        manifest.update(dataset=source.name, description=source.description, file=str(target))
        write_json(target.with_suffix(".json"), manifest)
        if key_path:
            try:
                record_key_use(key_path, [sigma])
            except OSError as exc:
                click.echo(f"warning: could not record sigma {sigma:g} in the key file: {exc}", err=True)
        manifests.append(manifest)
        rows.append((f"σ={sigma:g}", result.images[shown]))
        if not as_json:
            click.echo(f"{target}: {len(result)} samples of {source.description}, sigma {sigma:g}, "
                       f"key id {key.key_id}, sha256 {manifest['arrays_sha256']['x'][:16]}")
    if preview:
        sample_grid(rows, preview, title=f"{source.description}: obfuscated samples")
        if not as_json:
            click.echo(f"preview: {preview}")
    if as_json:
        print_json(manifests)
