"""The options of `pudlab run` / `pudlab reproduce` are generated from Preset and RunOptions: every documented
field is an option, and each option sets its field."""

from __future__ import annotations

import dataclasses

import click
import pytest
from click.testing import CliRunner

from pudlab.cli import cli
from pudlab.cli.experiments import (
    RUN_OPTIONS_EXCLUDED,
    reproduce_command,
    run_command,
    sweep_inputs,
)
from pudlab.cli.field_options import field_docs, field_options
from pudlab.experiments.options import RunOptions
from pudlab.experiments.spec import Preset

COMMANDS = {"run": run_command, "reproduce": reproduce_command}

PRESET_VALUES = {  # field: (command-line arguments, the value they give); each differs from the quick preset
    "name": (["--preset-name", "mine"], "mine"),
    "description": (["--description", "a test"], "a test"),
    "datasets": (["--dataset", "a.npz", "--datasets", "b.npz,c.npz"], ("a.npz", "b.npz", "c.npz")),
    "sigmas": (["--sigmas", "1,0.5", "--sigma", "0"], (0.0, 0.5, 1.0)),
    "epochs": (["--epochs", "2"], 2),
    "lr": (["--lr", "0.01"], 0.01),
    "batch_size": (["--batch-size", "16"], 16),
    "widths": (["--widths", "2,3,4"], (2, 3, 4)),
    "hidden": (["--hidden", "5"], 5),
    "repeats": (["--repeats", "4"], 4),
    "precision": (["--precision", "bf16"], "bf16"),
    "disjoint": (["--no-disjoint"], False),
    "max_train_size": (["--max-train-size", "100"], 100),
    "split_seed": (["--split-seed", "7"], 7),
    "eval_fraction": (["--eval-fraction", "0.2"], 0.2),
    "sample_seed": (["--sample-seed", "8"], 8),
    "noise_seed": (["--noise-seed", "9"], 9),
    "shuffle_seed": (["--shuffle-seed", "10"], 10),
    "init_seed": (["--init-seed", "11"], 11),
    "snapshot_every": (["--snapshot-every", "3"], 3),
    "noise_floor": (["--no-noise-floor"], False),
    "deviations": (["--deviation", "one, with a comma", "--deviations", "two"], ("one, with a comma", "two")),
    "eval_dataset": (["--eval", "held-out.npz"], "held-out.npz"),
    "eval_part": (["--eval-part", "test"], "test"),
    "model": (["--model", "nets.py:small"], "nets.py:small"),
    "as_raw": (["--as-raw"], True),
}
RUN_VALUES = {  # field: (command-line arguments, the value they give); each differs from RunOptions()
    "workers": (["--workers", "3"], 3),
    "device": (["--device", "auto"], "auto"),
    "threads": (["--threads", "2"], 2),
    "ensemble_size": (["--ensemble-size", "4"], 4),
    "ensemble_mode": (["--ensemble-mode", "fused"], "fused"),
    "progress": (["--no-progress"], False),
    "max_retries": (["--max-retries", "5"], 5),
    "executor": (["--executor", "ray"], "ray"),
    "ray_address": (["--ray-address", "auto"], "auto"),
    "ray_ship_data": (["--ray-ship-data"], True),
    "checkpoint_seconds": (["--checkpoint-seconds", "-1"], -1.0),
}


def _fields(cls, exclude=()):
    return [item.name for item in dataclasses.fields(cls) if item.init and item.name not in exclude]


def _parse(command: click.Command, args: list[str]) -> tuple[Preset, RunOptions]:
    context = command.make_context(command.name, ["exp1", *args] if command is run_command else args,
                                   obj=None)
    values = dict(context.params)
    return sweep_inputs(values, data_dir="data-here")


@pytest.mark.parametrize("name", COMMANDS)
def test_every_documented_field_is_an_option(name):
    """Fails when a field of Preset or RunOptions (but data_dir: the global --data-dir) has no option, or an
    option has no help."""
    params = {param.name: param for param in COMMANDS[name].params if isinstance(param, click.Option)}
    for cls, exclude in ((Preset, ()), (RunOptions, RUN_OPTIONS_EXCLUDED)):
        docs = field_docs(cls)
        for field in _fields(cls, exclude):
            assert docs.get(field), f"{cls.__name__}.{field} has no docstring (its --help)"
            assert field in params, f"{cls.__name__}.{field} has no option on pudlab {name}"
            assert docs[field] in params[field].help, f"--help of {cls.__name__}.{field} is not its docstring"


@dataclasses.dataclass(frozen=True)
class PartlyDocumented:
    documented: int = 1
    """Has help."""
    bare: int = 2


def test_an_undocumented_field_is_refused():
    assert field_docs(PartlyDocumented) == {"documented": "Has help."}
    with pytest.raises(TypeError, match=r"fields without a docstring.*\['bare'\]"):
        field_options(PartlyDocumented)


def test_value_tables_cover_every_field():
    assert RUN_OPTIONS_EXCLUDED == ("data_dir",)  # the global pudlab --data-dir
    assert set(PRESET_VALUES) == set(_fields(Preset))
    assert set(RUN_VALUES) == set(_fields(RunOptions, RUN_OPTIONS_EXCLUDED))


@pytest.mark.parametrize("name", COMMANDS)
def test_each_option_sets_its_field(name):
    base_preset, base_options = _parse(COMMANDS[name], ["--store", "s"])
    assert base_options == RunOptions(data_dir="data-here")  # nothing given: the dataclass defaults
    for field, (args, expected) in PRESET_VALUES.items():
        preset, _ = _parse(COMMANDS[name], [*args, "--store", "s"])
        assert getattr(preset, field) == expected != getattr(base_preset, field), field
        others = {f.name for f in dataclasses.fields(Preset)} - {field}
        assert all(getattr(preset, other) == getattr(base_preset, other) for other in others), field
    for field, (args, expected) in RUN_VALUES.items():
        _, options = _parse(COMMANDS[name], [*args, "--store", "s"])
        assert getattr(options, field) == expected != getattr(base_options, field), field
        assert dataclasses.replace(options, **{field: getattr(base_options, field)}) == base_options, field


def test_existing_option_spellings_keep_working():
    """The names README.md and docs/ use: --sigma repeated, --sigmas list, --dataset repeated, --datasets list."""
    preset, options = _parse(run_command, ["--dataset", "x.npz", "--sigma", "0", "--sigma", "1", "--epochs", "3",
                                           "--repeats", "2", "--max-train-size", "50", "--device", "cpu",
                                           "--workers", "1", "--store", "s"])
    assert preset.datasets == ("x.npz",) and preset.sigmas == (0.0, 1.0) and preset.epochs == 3
    assert preset.repeats == 2 and preset.max_train_size == 50 and options.workers == 1
    preset, _ = _parse(reproduce_command, ["--datasets", "a,b", "--sigmas", "0,0.5", "--store", "s"])
    assert preset.datasets == ("a", "b") and preset.sigmas == (0.0, 0.5)


@pytest.mark.parametrize("args,option", [
    (["--epochs", "0"], "--epochs"),
    (["--sigmas", "0,nan"], "--sigmas"),
    (["--lr", "inf"], "--lr"),
    (["--widths", "8,16"], "--widths"),
    (["--eval-fraction", "1.5"], "--eval-fraction"),
    (["--workers", "0"], "--workers"),
    (["--checkpoint-seconds", "-5"], "--checkpoint-seconds"),
    (["--max-train-size", "0"], "--max-train-size"),
    (["--datasets", ","], "--datasets"),
])
def test_bad_values_name_their_option(tmp_path, args, option):
    result = CliRunner().invoke(cli, ["run", "exp1", "--store", str(tmp_path / "s"), *args])
    assert result.exit_code == 2 and option in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists()
