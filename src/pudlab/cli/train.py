"""``pudlab train`` and ``pudlab distance``: one training run, and D between two weight sets."""

from __future__ import annotations

import math

import click

from pudlab.cli._common import CliState, parse_widths, print_json, training_options


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
@click.command("train")
@click.argument("dataset")
@training_options
@click.option("--precision", type=click.Choice(["fp32", "tf32", "bf16"]), default="fp32", show_default=True)
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Run directory to write.")
@click.option("--json", "as_json", is_flag=True, help="Print run.json.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
@click.pass_obj
def train_command(state: CliState, dataset: str, setting: str, labels: str | None, sigma: float, fraction: float,
                  clip: bool, epochs: int, batch_size: int | None, lr: float, widths: str, hidden: int, seed: int,
                  noise_seed: int | None, shuffle_seed: int | None, split_seed: int, init_path: str | None,
                  init_seed: int, precision: str, device: str, out: str, as_json: bool, progress: bool) -> None:
    """Train M_cnn on O(sample of DATASET); write OUT/weights.safetensors and OUT/run.json."""
    from pudlab.data.sources import load_source
    from pudlab.model import ModelConfig
    from pudlab.obfuscation import ObfuscationParams
    from pudlab.sampling import SamplingSetting, parse_labels
    from pudlab.train.run import RunPlan, execute_plan, make_recipe, resolve_initial_weights
    from pudlab.train.trainer import TrainConfig, default_batch_size, resolve_device

    check_training_values(sigma=sigma, fraction=fraction, epochs=epochs, batch_size=batch_size, lr=lr, hidden=hidden,
                          out=out)
    parse_widths(widths)
    resolved = str(resolve_device(device))
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
    else:
        click.echo(f"{out}: {record['sample']['size']} samples, sigma {sigma:g}, {epochs} epochs, "
                   f"accuracy on T_e {result.final_accuracy:.4f}, {result.wall_seconds:.1f} s")


# ---------------------------------------------------------------------------------------- distance
@click.command("distance")
@click.argument("first", type=click.Path(exists=True))
@click.argument("second", type=click.Path(exists=True))
@click.option("--per-layer", is_flag=True, help="Also the F-norm of the difference per layer.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def distance_command(first: str, second: str, per_layer: bool, as_json: bool) -> None:
    """D(W_A, W_B): Frobenius norm of the weight difference (Eq. 3). A, B: weight files or run dirs."""
    from pudlab.io import load_weights
    from pudlab.metrics import model_distance, per_layer_distance, weight_norm

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
