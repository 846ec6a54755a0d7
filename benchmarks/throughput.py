#!/usr/bin/env python3
"""Training throughput of M_cnn, side by side in one run: a typical loop vs pudlab's trainers.

Measures images/s (summed over the models trained at once) and full 180-epoch runs per hour for
  (a) a typical per-model PyTorch loop: DataLoader over a TensorDataset, .to(device) per batch,
      loss.item() every step, fp32 (written here, as research code usually is);
  (b) pudlab's single-model trainer (pudlab.train.trainer.Trainer, data resident on the device);
  (c) pudlab's lockstep ensemble (pudlab.train.ensemble.EnsembleTrainer) at several K, in its modes;
for MNIST (1x28x28, batch 128) and CIFAR-10 (3x32x32, batch 64) shapes on random data, and prints
each rate as a ratio to (a). Then it projects the wall time of ``pudlab reproduce --preset paper``
for both datasets from the measured rates (the job list is the real expansion of the six specs
under the paper preset, on label-balanced stand-ins of the real dataset sizes).

    python benchmarks/throughput.py                 # CUDA if available, else CPU (small sizes)
    python benchmarks/throughput.py --device cpu --quick
    python benchmarks/throughput.py --device cuda --ks 8,32,64 --precision bf16

Output: a JSON line per measurement, then a table (the tail is what a remote run returns).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from pudlab.data.dataset import LabeledImages, SourceDataset
from pudlab.experiments.jobs import ExperimentPlan, SplitSpec, expand, make_split
from pudlab.experiments.runner import make_units
from pudlab.experiments.spec import SHIPPED_EXPERIMENTS, load_experiment, load_preset
from pudlab.model import ModelConfig, build_model, initial_state
from pudlab.train.ensemble import EnsembleTrainer, max_members
from pudlab.train.trainer import TrainConfig, Trainer, numerics

SHAPES = {"mnist": ((1, 28, 28), 128, 60000), "cifar10": ((3, 32, 32), 64, 50000)}
RUN_EPOCHS = 180
ANCHOR_GPU_BYTES = 78 * 2**30  # an H100's memory, for grouping the job list as a GPU run would


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_set(num: int, shape: tuple[int, int, int], seed: int) -> LabeledImages:
    rng = np.random.default_rng(seed)
    return LabeledImages(rng.random((num, *shape), dtype=np.float32), rng.integers(0, 10, num).astype(np.int64),
                         np.arange(num, dtype=np.int64))


def time_steps(step, batches, device: torch.device, warmup: int, seconds_cap: float) -> tuple[float, int]:
    """Median seconds per step over three timed chunks, after ``warmup`` steps."""
    for index in range(warmup):
        step(batches[index % len(batches)])
    sync(device)
    probe = time.perf_counter()
    step(batches[0])
    sync(device)
    estimate = max(time.perf_counter() - probe, 1e-6)
    per_chunk = max(3, min(len(batches), int(seconds_cap / 3 / estimate)))
    chunks = []
    for _ in range(3):
        sync(device)
        start = time.perf_counter()
        for index in range(per_chunk):
            step(batches[index % len(batches)])
        sync(device)
        chunks.append((time.perf_counter() - start) / per_chunk)
    chunks.sort()
    return chunks[1], per_chunk * 3


def typical_loop(config: ModelConfig, init, data: LabeledImages, batch: int, device: torch.device, args, *_):
    """(a): what a research script usually does."""
    model = build_model(config, init).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    dataset = torch.utils.data.TensorDataset(torch.from_numpy(data.images), torch.from_numpy(data.labels))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True)
    batches = list(loader)

    def step(pair):
        images, labels = pair[0].to(device), pair[1].to(device)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        return loss.item()

    return time_steps(step, batches, device, args.warmup, args.seconds), 1


def pudlab_single(config, init, data, batch, device, args, precision):
    trainer = Trainer(config, init, data, TrainConfig(batch_size=batch, precision=precision), device=device)
    rng = np.random.default_rng(0)
    batches = [rng.choice(len(data), batch, replace=False) for _ in range(16)]
    with numerics(device, precision):
        return time_steps(trainer.step, batches, device, args.warmup, args.seconds), 1


def pudlab_ensemble(config, init, data, batch, device, args, precision, members, mode):
    sets = [data] * members
    configs = [TrainConfig(batch_size=batch, precision=precision, shuffle_seed=k) for k in range(members)]
    trainer = EnsembleTrainer(config, [init] * members, sets, configs, device=device, mode=mode)
    rng = np.random.default_rng(0)
    batches = [np.stack([rng.choice(len(data), batch, replace=False) for _ in range(members)]) for _ in range(8)]
    return time_steps(trainer.step, batches, device, args.warmup, args.seconds), members


def paper_projection(dataset: str, rates: dict[int, float], batch: int, ensemble_size: int, device: str,
                     precision: str, free_bytes: int | None = None) -> dict:
    """Projected wall time of ``reproduce --preset paper`` for one dataset, from ms/step at each K."""
    shape, _, train_size = SHAPES[dataset]
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), train_size // 10)
    rng.shuffle(labels)
    stand_in = SourceDataset(dataset, "stand-in", LabeledImages(np.zeros((train_size, *shape), np.float32),
                                                                labels.astype(np.int64), np.arange(train_size)),
                             None, tuple(str(i) for i in range(10)), "memory", fingerprint=f"stand-in-{dataset}")
    preset = load_preset("paper").with_overrides(precision=precision)
    split = make_split(stand_in, SplitSpec(preset.split_seed, preset.eval_fraction, preset.max_train_size))
    jobs = {}
    for name in SHIPPED_EXPERIMENTS:
        expansion = expand(ExperimentPlan(load_experiment(name), dataset, preset), stand_in, split, "init")
        jobs.update(expansion.jobs)
    jobs_list = list(jobs.values())
    units = make_units(jobs_list, ensemble_size, device, "fused" if device.startswith("cuda") else "exact",
                       free_bytes=free_bytes)
    known = sorted(rates)
    seconds = 0.0
    for unit in units:
        k = next((k for k in known if k >= len(unit)), known[-1])
        per_step = rates[k]  # seconds per lockstep step at ensemble size k
        steps = RUN_EPOCHS * math.ceil(max(job.train_size for job in unit) / batch)
        seconds += steps * per_step
    images = sum(job.train_size for job in jobs_list) * RUN_EPOCHS
    return {"dataset": dataset, "jobs": len(jobs_list), "units": len(units), "training_images": images,
            "projected_hours": round(seconds / 3600, 3), "ensemble_size": ensemble_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="cuda, cpu or auto")
    parser.add_argument("--datasets", default="mnist,cifar10")
    parser.add_argument("--ks", default=None, help="ensemble sizes [default: 8,32,64 on CUDA, 4,8 on CPU]")
    parser.add_argument("--precision", default=None, help="pudlab's precision [default: bf16 on CUDA, fp32 on CPU]")
    parser.add_argument("--widths", default="32,64,128")
    parser.add_argument("--n-train", type=int, default=None, help="images per model [default: 4096 CUDA, 512 CPU]")
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None, help="timed seconds per configuration")
    parser.add_argument("--quick", action="store_true", help="CPU smoke run: narrow widths, few steps")
    parser.add_argument("--anchor", default=None,
                        help="also project the paper preset from a shared/bench results file (JSON lines of "
                             "gpu_throughput.py): its fused grouped-conv bf16 step times at each K, labelled as such")
    args = parser.parse_args()

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    cuda = device.type == "cuda"
    ks = [int(k) for k in (args.ks or ("8,32,64" if cuda else "4,8")).split(",")]
    precision = args.precision or ("bf16" if cuda else "fp32")
    widths = tuple(int(w) for w in ("8,16,32" if args.quick else args.widths).split(","))
    args.n_train = args.n_train or (4096 if cuda else (256 if args.quick else 512))
    args.warmup = args.warmup if args.warmup is not None else (20 if cuda else 2)
    args.seconds = args.seconds or (8.0 if cuda else (3.0 if args.quick else 10.0))
    torch.manual_seed(0)
    env = {"kind": "env", "torch": torch.__version__, "python": platform.python_version(), "device": str(device),
           "device_name": torch.cuda.get_device_name(device) if cuda else platform.processor() or "cpu",
           "threads": torch.get_num_threads(), "precision": precision, "widths": widths, "n_train": args.n_train}
    print(json.dumps(env), flush=True)
    table = []
    projections = []
    for dataset in args.datasets.split(","):
        shape, batch, _ = SHAPES[dataset]
        config = ModelConfig(shape, widths)
        init = initial_state(config)
        data = random_set(args.n_train, shape, 0)
        runs: list[tuple] = [("a typical loop (DataLoader, fp32)", typical_loop, ()),
                             ("b pudlab single", pudlab_single, ("fp32",))]
        if precision != "fp32":
            runs.append((f"b pudlab single {precision}", pudlab_single, (precision,)))
        modes = ["fused"] if cuda else ["exact", "fused"]
        for k in ks:
            for mode in modes:
                runs.append((f"c pudlab ensemble {mode} {precision} K={k}", pudlab_ensemble, (precision, k, mode)))
        baseline = None
        step_seconds: dict[int, float] = {}
        for name, run, extra in runs:
            if cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            try:
                (seconds_per_step, steps), members = run(config, init, data, batch, device, args, *extra)
            except Exception as exc:
                print(json.dumps({"dataset": dataset, "config": name, "error": f"{type(exc).__name__}: {exc}"}))
                continue
            rate = members * batch / seconds_per_step
            baseline = baseline or rate
            runs_per_hour = rate * 3600 / (RUN_EPOCHS * 27000)
            record = {"dataset": dataset, "config": name, "models": members, "ms_per_step": round(1000 * seconds_per_step, 3),
                      "images_per_s": round(rate, 1), "ratio_to_a": round(rate / baseline, 2),
                      "runs_180ep_27k_per_hour": round(runs_per_hour, 2), "steps_timed": steps,
                      "peak_mem_mib": round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if cuda else None}
            print(json.dumps(record), flush=True)
            table.append(record)
            if name.startswith("c pudlab ensemble") and ("fused" in name if cuda else "exact" in name):
                step_seconds[members] = seconds_per_step
            if name == "b pudlab single":
                step_seconds.setdefault(1, seconds_per_step)
        if step_seconds:
            cap = max(ks)
            cap = min(cap, max_members(config, SHAPES[dataset][2] // 2, batch, str(device)))
            projection = paper_projection(dataset, step_seconds, batch, cap, str(device), precision)
            projections.append(projection)
            print(json.dumps({"kind": "projection", **projection}), flush=True)
    print()
    print(f"{'dataset':8} {'configuration':44} {'K':>4} {'ms/step':>9} {'images/s':>11} {'x (a)':>7} {'runs/h':>8}")
    for r in table:
        print(f"{r['dataset']:8} {r['config']:44} {r['models']:>4} {r['ms_per_step']:>9.2f} {r['images_per_s']:>11.0f} "
              f"{r['ratio_to_a']:>7.2f} {r['runs_180ep_27k_per_hour']:>8.2f}")
    print("\nprojected `pudlab reproduce --preset paper` (180 epochs, widths 32/64/128 unless --widths):")
    for p in projections:
        print(f"  {p['dataset']:8} {p['jobs']} jobs in {p['units']} units (ensemble <= {p['ensemble_size']}), "
              f"{p['training_images']:.3g} training images: {p['projected_hours']} h")
    if projections:
        print(f"  total: {sum(p['projected_hours'] for p in projections):.3f} h on {env['device_name']}")
    if args.anchor:
        anchor_projection(args.anchor)


def anchor_projection(path: str) -> None:
    """The paper preset's wall time if every unit ran at the anchor's fused step time for its K
    (not a pudlab measurement: what the same job list would take at the anchor script's rates)."""
    records = [json.loads(line) for line in open(path) if line.strip()]
    device = next((r.get("device") for r in records if r.get("kind") == "env"), "?")
    names = {"mnist": "mnist", "cifar10": "cifar"}
    total = 0.0
    print(f"\nanchor projection from {path} ({device}; fused grouped conv, bf16, its ms/step at each K):")
    for dataset, anchor_name in names.items():
        rates = {r["models"]: r["ms_per_step"] / 1000 for r in records
                 if r.get("dataset") == anchor_name and str(r.get("config", "")).startswith("g_grouped_bf16_K")
                 and "graph" not in r["config"] and "ms_per_step" in r}
        typical = next((r for r in records if r.get("dataset") == anchor_name
                        and r.get("config") == "a_dataloader_fp32"), None)
        if not rates:
            continue
        _, batch, _ = SHAPES[dataset]
        projection = paper_projection(dataset, rates, batch, max(rates), "cuda", "bf16", free_bytes=ANCHOR_GPU_BYTES)
        total += projection["projected_hours"]
        line = (f"  {dataset:8} {projection['jobs']} jobs in {projection['units']} fused units (K <= {max(rates)}): "
                f"{projection['projected_hours']:.3f} h")
        if typical:
            hours = projection["training_images"] / typical["imgs_per_s"] / 3600
            line += f"; one model at a time in the typical loop: {hours:.2f} h"
        print(line)
    print(f"  total: {total:.3f} h")


if __name__ == "__main__":
    sys.exit(main())
