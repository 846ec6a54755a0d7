"""The store side of the verdicts: floor pairs beyond the repeats, series aligned by repeat index, the
run context the claims read, and the configuration line the report header and ``status`` print."""

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
    assert "repeats 2 (preset: " in text and "floor_pairs 3 (preset: 10)" in text and "sigmas 0, 1 (preset: 0, 0.05" in text
