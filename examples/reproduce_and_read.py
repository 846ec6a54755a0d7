"""Reproduce the paper's Exp-3 into a result store, then read the results with pandas.

    python examples/reproduce_and_read.py --store runs/example          # the quick preset on mnist-5k
    python examples/reproduce_and_read.py --store /tmp/s --tiny d.npz   # seconds, on your own small .npz

Rerunning resumes: finished trainings are found by their content key and skipped.
"""

from __future__ import annotations

import argparse

import pudlab


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, help="Result store to write (and resume).")
    parser.add_argument("--dataset", default="mnist-5k", help="Dataset name or path [mnist-5k].")
    parser.add_argument("--tiny", metavar="DATASET", help="Run a one-epoch, two-sigma sweep on this dataset instead.")
    args = parser.parse_args(argv)

    preset = pudlab.load_preset("quick").with_overrides(datasets=(args.dataset,))
    if args.tiny:
        preset = preset.with_overrides(datasets=(args.tiny,), epochs=1, widths=(2, 2, 4), hidden=8,
                                       sigmas=(0.0, 1.0), repeats=1, batch_size=32, lr=3e-3)
    options = pudlab.RunOptions(workers=1, threads=1, progress=False)
    prepared = pudlab.prepare_sweep(["exp3"], list(preset.datasets), preset, options)
    with pudlab.Store(args.store) as store:
        summary = pudlab.run_sweep(store, prepared, options)
    print(f"trained {summary.trained}, reused {summary.skipped}, failed {summary.failed}")

    results = pudlab.open_store(args.store)
    series = results.series()  # one row per (plan, series, sigma): Exp-3's distances D_3,1 .. D_3,4
    distance = series[series["kind"] == "distance"].pivot_table(index="x", columns="series", values="mean")
    print("model distance D per sigma:\n" + distance.round(3).to_string())
    jobs = results.jobs()  # one row per training: status, accuracy on T_e, every parameter of its key
    accuracy = jobs.groupby("obfuscation.sigma")["final_accuracy"].agg(["mean", "count"])
    print("accuracy on T_e per sigma (all trainings):\n" + accuracy.round(4).to_string())


if __name__ == "__main__":
    main()
