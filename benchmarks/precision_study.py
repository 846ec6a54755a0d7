#!/usr/bin/env python3
"""Precision study: do the distance-vs-sigma curves change under bf16 (vs fp32)?

Runs the same small sweep (Exp-3 and Exp-4 by default) twice through the engine, once per
precision, into two stores, and reports for every distance series and sigma:

* D under each precision and |D_bf16 - D_fp32| relative to the fp32 shuffle-seed noise floor;
* the noise floor under each precision;
* D(W_fp32, W_bf16) of the same job (how far the precision moves one training), against the floor;
* the accuracy difference of the same job.

    python benchmarks/precision_study.py --dataset mnist-5k --device cpu
    python benchmarks/precision_study.py --dataset mnist --device cuda --epochs 20 --widths 32,64,128

The GPU default precision is chosen from this evidence (docs/performance.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from pudlab.experiments.options import RunOptions
from pudlab.experiments.series import series_table
from pudlab.experiments.spec import load_preset
from pudlab.experiments.store import Store
from pudlab.experiments.sweep import prepare_sweep, run_sweep
from pudlab.metrics import model_distance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="mnist-5k")
    parser.add_argument("--experiments", default="exp3,exp4")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--widths", default="8,16,32")
    parser.add_argument("--sigmas", default="0,0.2,0.4,0.6,1.0")
    parser.add_argument("--other", default="bf16", help="precision compared with fp32 (bf16 or tf32)")
    parser.add_argument("--store", default="runs/precision-study")
    args = parser.parse_args()

    experiments = args.experiments.split(",")
    base = load_preset("quick").with_overrides(epochs=args.epochs, widths=tuple(int(w) for w in args.widths.split(",")),
                                               sigmas=tuple(float(s) for s in args.sigmas.split(",")))
    options = RunOptions(workers=1, device=args.device, progress=True, ensemble_size=8).resolved()
    tables, roles, seconds = {}, {}, {}
    for precision in ("fp32", args.other):
        started = time.perf_counter()
        with Store(Path(args.store) / precision) as store:
            preset = base.with_overrides(precision=precision)
            run_sweep(store, prepare_sweep(experiments, [args.dataset], preset, options), options)
            seconds[precision] = time.perf_counter() - started
            tables[precision] = {e: series_table(store, f"{e}@{args.dataset}") for e in experiments}
            roles[precision] = {(r.plan, r.model, r.sigma, r.repeat, r.stream): r.job
                                for e in experiments for r in store.roles(f"{e}@{args.dataset}")}
    # same job under both precisions: how far does the precision move one training?
    cross, accuracy_gaps = [], []
    with Store(Path(args.store) / "fp32") as first, Store(Path(args.store) / args.other) as second:
        for role, key in roles["fp32"].items():
            other_key = roles[args.other].get(role)
            if other_key is None or role[4] != "model":
                continue
            cross.append(model_distance(first.final_weights(key), second.final_weights(other_key)))
            accuracy_gaps.append(abs(first.final_accuracy(key) - second.final_accuracy(other_key)))
    rows, relative = [], []
    for experiment in experiments:
        fp32, other = tables["fp32"][experiment], tables[args.other][experiment]
        floor_name = next(name for name in fp32 if name.startswith("floor["))
        floor = fp32[floor_name]["mean"][0]
        floor_other = other[floor_name]["mean"][0]
        rows.append({"experiment": experiment, "series": floor_name, "sigma": None, "fp32": floor,
                     args.other: floor_other, "abs_diff_over_floor": abs(floor_other - floor) / floor})
        for name, entry in fp32.items():
            if entry["kind"] != "distance":
                continue
            for sigma, d32, dother in zip(entry["x"], entry["mean"], other[name]["mean"], strict=True):
                diff = abs(dother - d32) / floor
                relative.append(diff)
                rows.append({"experiment": experiment, "series": name, "sigma": sigma, "fp32": d32,
                             args.other: dother, "abs_diff_over_floor": diff})
    for row in rows:
        print(json.dumps(row))
    print(f"\n{'experiment':10} {'series':14} {'sigma':>6} {'D fp32':>9} {'D ' + args.other:>9} {'|diff|/floor':>13}")
    for row in rows:
        sigma = "floor" if row["sigma"] is None else f"{row['sigma']:g}"
        print(f"{row['experiment']:10} {row['series']:14} {sigma:>6} {row['fp32']:>9.4f} {row[args.other]:>9.4f} "
              f"{row['abs_diff_over_floor']:>13.3f}")
    floors = [row["fp32"] for row in rows if row["sigma"] is None]
    print(f"\n|D_{args.other} - D_fp32| / floor over {len(relative)} points: median {statistics.median(relative):.3f}, "
          f"max {max(relative):.3f}")
    print(f"D(W_fp32, W_{args.other}) of the same job over {len(cross)} jobs: median {statistics.median(cross):.4f}, "
          f"max {max(cross):.4f} (fp32 noise floor {statistics.mean(floors):.4f})")
    print(f"|accuracy difference| of the same job: median {statistics.median(accuracy_gaps):.4f}, "
          f"max {max(accuracy_gaps):.4f}")
    print(f"wall time: fp32 {seconds['fp32']:.1f} s, {args.other} {seconds[args.other]:.1f} s on {args.device}")


if __name__ == "__main__":
    main()
