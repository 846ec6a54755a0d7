"""``pudlab train`` and ``pudlab distance``: one training run, and D between two weight sets."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import click

from pudlab.cli._common import CliState, parse_widths, print_json, training_options
from pudlab.errors import PudlabError

if TYPE_CHECKING:
    from pudlab.data.dataset import SourceDataset


def check_training_values(*, sigma: float, fraction: float, epochs: int, batch_size: int | None, lr: float,
                          hidden: int, out: str | None = None) -> None:
    """Every numeric training option in range (before anything is read or written)."""
    checks = (
        (math.isfinite(sigma) and sigma >= 0, "--sigma", sigma, "a finite number >= 0"),
        (math.isfinite(fraction) and 0 <= fraction <= 1, "--fraction", fraction, "a number in [0, 1]"),
        (epochs >= 1, "--epochs", epochs, "an integer >= 1"),
        (batch_size is None or batch_size >= 1, "--batch-size", batch_size, "an integer >= 1"),
        (math.isfinite(lr) and lr > 0, "--lr", lr, "a finite number > 0"),
        (hidden >= 1, "--hidden", hidden, "an integer >= 1"),
    )
    for ok, name, value, expected in checks:
        if not ok:
            raise click.BadParameter(f"{name}: expected {expected}, got {value!r}")
    if out is not None:
        from pathlib import Path

        target = Path(out)
        if target.exists() and not target.is_dir():
            raise click.BadParameter(f"--out: {out} exists and is not a directory")

# ---------------------------------------------------------------------------------------- train
def _release_notes(dataset: str, sigma: float, as_raw: bool, eval_dataset: str | None) -> tuple[str, ...]:
    """Refuse noise on a release (unless --as-raw); what run.json and the user must know when training on one."""
    from pudlab.releases import refuse_release

    marker = refuse_release(dataset if sigma > 0 else None, command="train", as_raw=as_raw,
                            instead="Train on it as released with --sigma 0, and give --eval DATASET for a clean "
                                    "evaluation set.")
    if marker is not None:  # --as-raw: noise on noise, as asked
        return (f"{marker}; trained with --as-raw: noise of sigma {sigma:g} added on top of the release's",)
    from pudlab.releases import release_marker

    marker = release_marker(dataset)
    if marker is None:
        return ()
    if eval_dataset is None:
        return (f"{marker}: the accuracy is on obfuscated data (the 10 % T_e split of the release), not on clean "
                "data; give --eval DATASET for a clean evaluation set",)
    return (f"{marker}: trained on all of it as released; accuracy on --eval {eval_dataset}",)


def _eval_overlap(dataset: str, eval_source: SourceDataset, eval_part: str, split_seed: int) -> str | None:
    """A warning when DATASET is a release of ``eval_source`` and the evaluation samples were released."""
    import numpy as np

    from pudlab.releases import read_release, release_marker
    from pudlab.train.run import held_out_set

    if release_marker(dataset) is None:
        return None
    release = read_release(dataset, verify=False)
    if release.dataset not in (eval_source.name, None):
        return None
    shared = np.intersect1d(release.data.ids, held_out_set(eval_source, eval_part, split_seed=split_seed).ids)
    if len(shared) == 0:
        return None
    return (f"warning: {len(shared)} samples of the evaluation set are in the release (same sample ids): the "
            f"accuracy is partly on training samples; evaluate on the part the release left out (--eval-part eval "
            f"with the release's split seed {release.split_recipe.get('split_seed', '?')})")


# long: one option per training knob, then the plan; each branch is one line of logic
@click.command("train")
@click.argument("dataset")
@training_options
@click.option("--precision", type=click.Choice(["fp32", "tf32", "bf16"]), default="fp32", show_default=True)
@click.option("--eval", "eval_dataset", default=None, metavar="DATASET",
              help="Score the model on this dataset (a name or path) instead of a 10 % split of DATASET; the "
                   "training sample is then drawn from all of DATASET.")
@click.option("--eval-part", type=click.Choice(["eval", "test", "all"]), default="eval", show_default=True,
              help="Part of the --eval dataset: its T_e (the --split-seed 90/10 split's 10 %), its test set, or all.")
@click.option("--model", "model_factory", default=None, metavar="MODULE:FACTORY",
              help="Train this model instead of M_cnn: a callable (module:function or file.py:function) returning "
                   "a torch.nn.Module for (input_shape, num_classes). --widths/--hidden apply to M_cnn only.")
@click.option("--as-raw", is_flag=True,
              help="DATASET is a release and --sigma > 0 is meant: add noise on top of the release's.")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Run directory to write.")
@click.option("--json", "as_json", is_flag=True, help="Print run.json.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
@click.pass_obj
def train_command(state: CliState, dataset: str, setting: str, labels: str | None, sigma: float, fraction: float,
                  clip: bool, epochs: int, batch_size: int | None, lr: float, widths: str, hidden: int, seed: int,
                  noise_seed: int | None, shuffle_seed: int | None, split_seed: int, init_path: str | None,
                  init_seed: int, precision: str, device: str, out: str, as_json: bool, progress: bool,
                  eval_dataset: str | None, eval_part: str, model_factory: str | None, as_raw: bool) -> None:
    """Train M_cnn (or --model) on O(sample of DATASET); write OUT/weights.safetensors and OUT/run.json.

    A release (pudlab obfuscate's output) is trained on as released (--sigma 0); give --eval DATASET
    to score it on clean data, else its accuracy is on obfuscated data and the output says so.
    """
    from pudlab.data.sources import load_source
    from pudlab.model import FactoryModelConfig, ModelConfig, ModelDefinition
    from pudlab.obfuscation import ObfuscationParams
    from pudlab.sampling import SamplingSetting, parse_labels
    from pudlab.train.run import RunPlan, execute_plan, make_recipe, resolve_initial_weights
    from pudlab.train.trainer import TrainConfig, default_batch_size, resolve_device

    check_training_values(sigma=sigma, fraction=fraction, epochs=epochs, batch_size=batch_size, lr=lr, hidden=hidden,
                          out=out)
    parse_widths(widths)
    if model_factory is not None and (widths != "32,64,128" or hidden != 128):
        raise click.BadParameter("--widths and --hidden size M_cnn; with --model the factory decides the layers")
    notes = _release_notes(dataset, sigma, as_raw, eval_dataset)
    resolved = str(resolve_device(device))
    source = load_source(dataset, state.data_dir)
    eval_source = load_source(eval_dataset, state.data_dir) if eval_dataset is not None else None
    overlap = _eval_overlap(dataset, eval_source, eval_part, split_seed) if eval_source is not None else None
    parsed_setting = SamplingSetting.parse(setting)
    explicit = parse_labels(labels, source.num_classes) if labels else None
    model: ModelDefinition = ModelConfig(source.sample_shape, parse_widths(widths), hidden, source.num_classes)
    if model_factory is not None:
        model = FactoryModelConfig(model_factory, source.sample_shape, source.num_classes)
    plan = RunPlan(
        source=source,
        split_seed=split_seed,
        eval_fraction=0.1,
        recipe=make_recipe(parsed_setting, source.num_classes, seed=seed, labels=explicit),
        obfuscation=ObfuscationParams(sigma, fraction, seed if noise_seed is None else noise_seed, clip),
        model=model,
        train=TrainConfig(
            epochs=epochs,
            batch_size=batch_size or default_batch_size(source.sample_shape),
            lr=lr,
            shuffle_seed=seed if shuffle_seed is None else shuffle_seed,
            precision=precision,
        ),
        init_seed=init_seed,
        init_path=init_path,
        eval_source=eval_source,
        eval_part=eval_part,
        notes=notes + ((overlap,) if overlap else ()),
    )
    if init_path is not None:  # a bad --init file is one error line, before anything else is printed
        resolve_initial_weights(plan.model, init_seed=init_seed, init_path=init_path)
    try:
        if progress and not as_json:  # the bar moves once per epoch: say what happens until its first step
            click.echo(f"train: {source.description} ({len(source.train):,} training images), setting {setting}, "
                       f"sigma {sigma:g}: {epochs} epoch(s) in batches of {plan.train.batch_size} on {resolved}; the "
                       "bar advances once per epoch, so its first step comes after one whole pass over the sample",
                       err=True)
        result, record = execute_plan(plan, out, device=resolved, progress=progress)
    except KeyboardInterrupt:
        from pudlab.processes import InterruptedRun

        raise InterruptedRun(f"interrupted (Ctrl-C): nothing was written to {out} (a run is written only when its "
                             "training ends); run the same command again to train from the start") from None
    if as_json:
        print_json(record)
        return
    scored_on = f"{eval_dataset} ({eval_part})" if eval_dataset else "T_e"
    click.echo(f"{out}: {record['sample']['size']} samples, sigma {sigma:g}, {epochs} epochs, "
               f"accuracy on {scored_on} {result.final_accuracy:.4f}, {result.wall_seconds:.1f} s")
    for note in plan.notes:
        click.echo(note if note.startswith("warning:") else f"note: {note}", err=True)


# ---------------------------------------------------------------------------------------- distance
def _init_identity(path: str) -> tuple[str | None, str]:
    """(SHA-256 of the initial weights, where it came from) of a weight file or run dir: run.json's
    ``init_sha256``, else the run's ``initial.safetensors``; (None, why) when neither is there."""
    from pathlib import Path

    from pudlab.io import RUN_FILE, load_weights, read_json, weights_sha256

    target = Path(path)
    folder = target if target.is_dir() else target.parent
    run_file = folder / RUN_FILE
    if run_file.is_file():
        recorded = read_json(run_file).get("init_sha256")
        if isinstance(recorded, str):
            return recorded, str(run_file)
    init_file = folder / "initial.safetensors"
    if init_file.is_file() and init_file != target:
        return weights_sha256(load_weights(init_file)), str(init_file)
    return None, f"no {RUN_FILE} or initial.safetensors beside {path}"


@click.command("distance")
@click.argument("first", type=click.Path(exists=True))
@click.argument("second", type=click.Path(exists=True))
@click.option("--per-layer", is_flag=True, help="Also the F-norm of the difference per layer.")
@click.option("--allow-different-init", is_flag=True,
              help="Compare models trained from different initial weights (D then mostly measures the init).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def distance_command(first: str, second: str, per_layer: bool, as_json: bool, allow_different_init: bool) -> None:
    """D(W_A, W_B): Frobenius norm of the weight difference (Eq. 3). A, B: weight files or run dirs.

    Refused when their run.json (or initial.safetensors) show different initial weights: D between
    trainings from different inits is dominated by the init, not by the data (--allow-different-init).
    """
    from pudlab.io import load_weights
    from pudlab.metrics import model_distance, per_layer_distance, weight_norm

    init_a, where_a = _init_identity(first)
    init_b, where_b = _init_identity(second)
    same_init = None if init_a is None or init_b is None else init_a == init_b
    if init_a is not None and init_b is not None and init_a != init_b and not allow_different_init:
        raise PudlabError(f"distance: {first} and {second} were trained from different initial weights "
                          f"(init_sha256 {init_a[:12]}... in {where_a}, {init_b[:12]}... in {where_b}); D would "
                          "measure the init more than the data (Eq. 3 assumes one shared init). Retrain with the same "
                          "--init-seed or --init, or pass --allow-different-init")
    weights_a, weights_b = load_weights(first), load_weights(second)
    result: dict = {"a": first, "b": second, "distance": model_distance(weights_a, weights_b),
                    "norm_a": weight_norm(weights_a), "norm_b": weight_norm(weights_b), "same_init": same_init}
    if per_layer:
        result["per_layer"] = per_layer_distance(weights_a, weights_b)
    if as_json:
        print_json(result)
        return
    click.echo(f"D = {result['distance']:.6g}   (||A|| = {result['norm_a']:.6g}, ||B|| = {result['norm_b']:.6g})")
    for layer, value in result.get("per_layer", {}).items():
        click.echo(f"  {layer:10} {value:.6g}")
    if same_init is None:
        click.echo(f"note: the initial weights could not be compared ({where_a if init_a is None else where_b}); D "
                   "assumes both trainings started from the same weights", err=True)
    elif same_init is False:
        click.echo("warning: different initial weights (--allow-different-init): D mostly measures the init", err=True)
