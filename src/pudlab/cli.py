"""The ``pudlab`` command line. Errors are one line and a non-zero exit (traceback with --debug)."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from . import __version__
from .cli_parsing import parse_widths
from .errors import PudlabError
from .storage import to_json

EXIT_ERROR = 1


class CliState:
    """Options of the top-level group, passed to sub-commands through click's context."""

    def __init__(self, debug: bool, data_dir: str | None) -> None:
        self.debug = debug
        self.data_dir = data_dir


class PudlabGroup(click.Group):
    """A click group that turns pudlab errors into one-line messages."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except (PudlabError, OSError) as exc:
            if ctx.find_root().params.get("debug"):
                raise
            message = str(exc) if isinstance(exc, PudlabError) else f"{type(exc).__name__}: {exc}"
            click.echo(f"error: {message}", err=True)
            ctx.exit(EXIT_ERROR)


def print_json(data: object) -> None:
    click.echo(to_json(data))


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


# ---------------------------------------------------------------------------------------- datasets
@cli.group("datasets", cls=PudlabGroup, invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def datasets_group(ctx: click.Context, as_json: bool) -> None:
    """List the known dataset sources, whether each is present locally, and sizes."""
    if ctx.invoked_subcommand is not None:
        return
    from .data.sources import resolve_data_dir, source_status

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
    from .data.sources import fetch_source

    where = fetch_source(name, state.data_dir, progress=True)
    click.echo(f"{name}: ready in {where}")


# ---------------------------------------------------------------------------------------- obfuscate
def _out_for_sigma(out: Path, sigma: float, several: bool) -> Path:
    return out.with_name(f"{out.stem}_sigma{sigma:g}{out.suffix}") if several else out


@cli.command("obfuscate")
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
    from .data.dataset import split_train_eval
    from .data.sources import load_source
    from .obfuscation import ObfuscationParams, obfuscate, obfuscation_manifest
    from .plots import sample_grid
    from .storage import atomic_path, write_json

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


# ---------------------------------------------------------------------------------------- train
@cli.command("train")
@click.argument("dataset")
@click.option("--setting", default="S-1-1-1", show_default=True, help="Sampling setting S-X-Y-Z of the training sample.")
@click.option("--labels", default=None, help="Explicit covered labels (0,1,2 or 3-7) instead of the window rule.")
@click.option("--sigma", type=float, default=0.0, show_default=True, help="Obfuscation noise std ([0, 1] pixel units).")
@click.option("--fraction", type=float, default=1.0, show_default=True, help="R: fraction of samples obfuscated.")
@click.option("--clip", is_flag=True, help="Clip obfuscated pixels to [0, 1].")
@click.option("--epochs", type=int, default=180, show_default=True, help="Epochs (paper: 180).")
@click.option("--batch-size", type=int, default=None, help="Batch size [default: 128 one-channel, 64 colour].")
@click.option("--lr", type=float, default=1e-4, show_default=True, help="Adam learning rate, per step.")
@click.option("--widths", default="32,64,128", show_default=True, help="Conv widths of the three blocks.")
@click.option("--hidden", type=int, default=128, show_default=True, help="Units of the hidden dense layer.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of sampling, noise and shuffle.")
@click.option("--noise-seed", type=int, default=None, help="Noise seed [default: --seed].")
@click.option("--shuffle-seed", type=int, default=None, help="Batch-order seed [default: --seed].")
@click.option("--split-seed", type=int, default=0, show_default=True, help="Seed of the 90/10 T_t / T_e split.")
@click.option("--init", "init_path", type=click.Path(exists=True), default=None,
              help="Initial weights (.safetensors or run dir) [default: seeded by --init-seed].")
@click.option("--init-seed", type=int, default=0, show_default=True, help="Seed of the initial weights.")
@click.option("--precision", type=click.Choice(["fp32", "tf32", "bf16"]), default="fp32", show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Run directory to write.")
@click.option("--json", "as_json", is_flag=True, help="Print run.json.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
@click.pass_obj
def train_command(state: CliState, dataset: str, setting: str, labels: str | None, sigma: float, fraction: float,
                  clip: bool, epochs: int, batch_size: int | None, lr: float, widths: str, hidden: int, seed: int,
                  noise_seed: int | None, shuffle_seed: int | None, split_seed: int, init_path: str | None,
                  init_seed: int, precision: str, device: str, out: str, as_json: bool, progress: bool) -> None:
    """Train M_cnn on O(sample of DATASET); write OUT/weights.safetensors and OUT/run.json."""
    from .data.sources import load_source
    from .model import ModelConfig
    from .obfuscation import ObfuscationParams
    from .pipeline import RunPlan, execute_plan, make_recipe
    from .sampling import SamplingSetting, parse_labels
    from .training import TrainConfig, default_batch_size, resolve_device

    source = load_source(dataset, state.data_dir)
    parsed_setting = SamplingSetting.parse(setting)
    explicit = parse_labels(labels, source.num_classes) if labels else None
    plan = RunPlan(
        source=source,
        split_seed=split_seed,
        eval_fraction=0.1,
        recipe=make_recipe(parsed_setting, source.num_classes, seed=seed, labels=explicit),
        obfuscation=ObfuscationParams(sigma, fraction, seed if noise_seed is None else noise_seed, clip),
        model=ModelConfig(source.sample_shape, parse_widths(widths), hidden, source.num_classes),
        train=TrainConfig(
            epochs=epochs,
            batch_size=batch_size or default_batch_size(source.sample_shape),
            lr=lr,
            shuffle_seed=seed if shuffle_seed is None else shuffle_seed,
            precision=precision,
        ),
        init_seed=init_seed,
        init_path=init_path,
    )
    result, record = execute_plan(plan, out, device=str(resolve_device(device)), progress=progress)
    if as_json:
        print_json(record)
    else:
        click.echo(f"{out}: {record['sample']['size']} samples, sigma {sigma:g}, {epochs} epochs, "
                   f"accuracy on T_e {result.final_accuracy:.4f}, {result.wall_seconds:.1f} s")


# ---------------------------------------------------------------------------------------- distance
@cli.command("distance")
@click.argument("first", type=click.Path(exists=True))
@click.argument("second", type=click.Path(exists=True))
@click.option("--per-layer", is_flag=True, help="Also the F-norm of the difference per layer.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def distance_command(first: str, second: str, per_layer: bool, as_json: bool) -> None:
    """D(W_A, W_B): Frobenius norm of the weight difference (Eq. 3). A, B: weight files or run dirs."""
    from .metrics import model_distance, per_layer_distance, weight_norm
    from .storage import load_weights

    weights_a, weights_b = load_weights(first), load_weights(second)
    result: dict = {"a": first, "b": second, "distance": model_distance(weights_a, weights_b),
                    "norm_a": weight_norm(weights_a), "norm_b": weight_norm(weights_b)}
    if per_layer:
        result["per_layer"] = per_layer_distance(weights_a, weights_b)
    if as_json:
        print_json(result)
        return
    click.echo(f"D = {result['distance']:.6g}   (||A|| = {result['norm_a']:.6g}, ||B|| = {result['norm_b']:.6g})")
    for layer, value in result.get("per_layer", {}).items():
        click.echo(f"  {layer:10} {value:.6g}")


# ---------------------------------------------------------------------------------------- other modules' commands
from .experiments.cli import COMMANDS as _EXPERIMENT_COMMANDS  # noqa: E402
from .fl.cli import fl_group  # noqa: E402
from .pol.cli import pol_group  # noqa: E402
from .privacy_cli import privacy_command, pud_command  # noqa: E402

for _command in (*_EXPERIMENT_COMMANDS, privacy_command, pud_command, pol_group, fl_group):
    cli.add_command(_command)


def main() -> None:
    """Console-script entry point."""
    cli.main(prog_name="pudlab")


if __name__ == "__main__":
    main()
