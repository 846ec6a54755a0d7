"""The store side of the verdicts: floor pairs beyond the repeats, series aligned by repeat index, the
run context the claims read, and the configuration line the report header and ``status`` print."""

import pytest

from pudlab.experiments.options import RunOptions
from pudlab.experiments.series import configuration_text, series_table, store_tables
from pudlab.experiments.spec import load_preset
from pudlab.experiments.store import Store
from pudlab.experiments.sweep import plan_sweep, prepare_sweep, run_sweep

TINY = {"epochs": 1, "widths": (2, 2, 4), "hidden": 8, "sigmas": (0.0, 1.0), "lr": 3e-3, "batch_size": 32}


def test_floor_pairs_beyond_the_repeats_are_extra_clean_trainings(tmp_path, npz_dataset):
    preset = load_preset("quick").with_overrides(**TINY, repeats=2, floor_pairs=4)
    wider = load_preset("quick").with_overrides(**TINY, repeats=4, floor_pairs=4)
    with Store(tmp_path / "s") as store:
        roles = plan_sweep(store, prepare_sweep(["exp4"], [npz_dataset], preset)).expansion.roles
    with Store(tmp_path / "t") as store:
        wide = plan_sweep(store, prepare_sweep(["exp4"], [npz_dataset], wider)).expansion.roles
    job = {(r.model, r.repeat, r.stream): r.job for r in roles if r.model == "Wr41"}
    assert sorted(j for _, j, s in job if s == "floor") == [0, 1, 2, 3]
    assert sorted(j for _, j, s in job if s == "floor-ref") == [2, 3]
    assert sorted(j for _, j, s in job if s == "model") == [0, 1]
    # pair j >= repeats trains exactly what the reference's repeat j would be
    wide_job = {(r.model, r.repeat, r.stream): r.job for r in wide if r.model == "Wr41"}
    assert job[("Wr41", 2, "floor-ref")] == wide_job[("Wr41", 2, "model")]
    assert len({job[k] for k in job}) == len(job)  # every pair independent


def test_series_keep_repeats_aligned_and_the_context_tells_the_truth(tmp_path, npz_dataset):
    preset = load_preset("quick").with_overrides(**TINY, repeats=2, floor_pairs=3, max_train_size=300)
    options = RunOptions(workers=1, threads=1, progress=False, ensemble_size=8)
    with Store(tmp_path / "s") as store:
        run_sweep(store, prepare_sweep(["exp4"], [npz_dataset], preset, options), options)
        table = series_table(store, f"exp4@{npz_dataset}")
        (tables, context), = store_tables(store).values()
        text = configuration_text(store.plans()[0]["preset"])
    assert len(table["floor[Wr41]"]["values"][0]) == 3 and table["floor[Wr41]"]["n"] == [3]
    assert all(len(row) == 2 for row in table["D_4,1"]["values"])
    assert context.eval_size == 60 and context.num_classes == 10 and context.epochs == 1
    assert not context.is_mnist and context.reference_batches >= 1
    assert "exp4" in tables
    assert text.startswith("epochs 1 (preset: 6), max_train_size 300 (preset: all)")
    assert "repeats 2 (preset: " in text and "floor_pairs 3 (preset: 10)" in text and "sigmas 0, 1 (preset: 0, 0.1, 0.2" in text


@pytest.mark.slow
def test_a_meaningless_run_reproduces_nothing_and_warns_once(tmp_path, npz_dataset):
    """One epoch on 100 images, references on one batch: `pudlab reproduce` prints one warning line naming
    the cause before the verdicts, and no claim comes out reproduced."""
    import subprocess
    import sys

    args = ["reproduce", "--experiments", "exp3", "--dataset", npz_dataset, "--epochs", "1", "--sigmas", "0,1",
            "--repeats", "2", "--floor-pairs", "2", "--max-train-size", "100", "--batch-size", "128", "--widths",
            "2,2,4", "--hidden", "8", "--workers", "1", "--threads", "1", "--no-progress", "--no-figures",
            "--store", str(tmp_path / "rp")]
    result = subprocess.run([sys.executable, "-m", "pudlab.cli", *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    warnings = [line for line in lines if line.startswith("WARNING")]
    assert len(warnings) == 1 and "not testable here" in warnings[0] and "fix:" in warnings[0]
    assert "degenerate" in warnings[0] and "one batch per epoch" in warnings[0]
    assert lines.index(warnings[0]) < next(i for i, line in enumerate(lines) if line.startswith("claims on"))
    verdicts = [line.split()[1:3] for line in lines if line.startswith("  ") and line.split()[0].isdigit()]
    assert verdicts and all(words != ["reproduced"] and words[0] != "reproduced" for words in verdicts)
    assert lines[0].startswith("reproduce: preset quick as run: epochs 1 (preset: 6), max_train_size 100 (preset: all)")


def test_report_says_when_the_shipped_deviation_list_does_not_describe_the_run(tmp_path, npz_dataset):
    """A preset run with overrides (--datasets, --epochs) keeps the shipped deviation list ("mnist-5k",
    "6 epochs"), so the report's preset section names every changed setting next to it."""
    from pudlab.experiments.series import overridden_settings
    from pudlab.report.sections import configuration_blocks

    def preset_texts(preset):
        with Store(tmp_path / preset.name / str(len(list(tmp_path.iterdir())))) as store:
            plan_sweep(store, prepare_sweep(["exp4"], [npz_dataset], preset))
            details = [b for b in configuration_blocks(store) if b.kind == "details" and b.title.startswith("Preset")]
        (block,) = details
        return block.title, [b.content for b in block.content if b.kind == "text"]

    changed = load_preset("quick").with_overrides(datasets=(npz_dataset,), epochs=1)
    title, texts = preset_texts(changed)
    assert "settings changed for this run" in title
    (note,) = [t for t in texts if t.startswith("This run changed the shipped preset")]
    assert f"datasets {npz_dataset} (preset: mnist-5k)" in note and "epochs 1 (preset: 6)" in note

    title, texts = preset_texts(load_preset("quick"))
    assert "changed" not in title and not any("changed the shipped preset" in t for t in texts)
    assert overridden_settings({**load_preset("paper").to_dict(), "precision": "bf16"}) == []
    assert overridden_settings({**load_preset("paper").to_dict(), "lr": 0.001}) == ["lr 0.001 (preset: 0.0001)"]
