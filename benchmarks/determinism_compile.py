#!/usr/bin/env python3
"""Two checks of the fused ensemble trainer, side by side in one run, on CPU or CUDA.

1. Determinism: train the same small fused ensemble twice with deterministic kernels on
   (``pudlab.train.determinism``) and once more with them off; report whether the reruns give
   identical weights, and the time ratio deterministic / default.
2. ``torch.compile`` of the fused model: compare the compiled forward + backward with eager (max
   gradient difference over all parameters, after the same batch) and the step-time ratio.

    python benchmarks/determinism_compile.py --device cpu --members 4 --steps 20
    python benchmarks/determinism_compile.py --device cuda --members 32 --steps 200 --widths 32,64,128

Prints one JSON line per measurement.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F

from pudlab.data.dataset import LabeledImages
from pudlab.metrics import model_distance
from pudlab.model import ModelConfig, initial_state
from pudlab.train.determinism import deterministic
from pudlab.train.ensemble import EnsembleMCnn, EnsembleTrainer, to_grouped_input
from pudlab.train.trainer import TrainConfig


def random_set(num: int, shape: tuple[int, int, int], seed: int) -> LabeledImages:
    rng = np.random.default_rng(seed)
    return LabeledImages(rng.random((num, *shape), dtype=np.float32), rng.integers(0, 10, num).astype(np.int64),
                         np.arange(num, dtype=np.int64))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_once(config: ModelConfig, sets: list[LabeledImages], args: argparse.Namespace) -> tuple[list[dict], float]:
    init = initial_state(config, init_seed=0)
    train_config = TrainConfig(epochs=1, batch_size=args.batch, lr=1e-3, shuffle_seed=0, precision=args.precision)
    trainer = EnsembleTrainer(config, [init] * len(sets), sets, [train_config] * len(sets), device=args.device,
                              mode="fused")
    device = trainer.device
    sync(device)
    started = time.perf_counter()
    for step in range(args.steps):
        positions = [np.arange(step * args.batch, (step + 1) * args.batch) % len(s) for s in sets]
        trainer.step(positions)
    sync(device)
    return [trainer.member_weights(k) for k in range(len(sets))], time.perf_counter() - started


def determinism_check(config: ModelConfig, sets: list[LabeledImages], args: argparse.Namespace) -> dict:
    with deterministic(True):
        first, seconds_det = train_once(config, sets, args)
        second, _ = train_once(config, sets, args)
    default, seconds_default = train_once(config, sets, args)
    rerun = max(model_distance(a, b) for a, b in zip(first, second, strict=True))
    vs_default = max(model_distance(a, b) for a, b in zip(first, default, strict=True))
    return {"check": "determinism", "device": args.device, "members": len(sets), "steps": args.steps,
            "rerun_max_distance": rerun, "identical_rerun": rerun == 0.0,
            "deterministic_vs_default_max_distance": vs_default,
            "seconds_deterministic": seconds_det, "seconds_default": seconds_default,
            "cost_ratio": seconds_det / seconds_default}


def compile_check(config: ModelConfig, args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    members = args.members
    model = EnsembleMCnn(config, members)
    init = initial_state(config, init_seed=0)
    for member in range(members):
        model.load_member(member, init)
    model.to(device)
    rng = np.random.default_rng(1)
    images = torch.from_numpy(rng.random((members, args.batch, *config.input_shape), dtype=np.float32)).to(device)
    labels = torch.from_numpy(rng.integers(0, 10, (members, args.batch))).to(device)

    def loss_fn(net: torch.nn.Module) -> torch.Tensor:
        logits = net(to_grouped_input(images))
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="sum")

    def grads(net: torch.nn.Module) -> list[torch.Tensor]:
        model.zero_grad(set_to_none=True)
        loss_fn(net).backward()
        return [p.grad.detach().clone() for p in model.parameters()]

    eager = grads(model)
    compiled_model = torch.compile(model)
    started = time.perf_counter()
    compiled = grads(compiled_model)
    compile_seconds = time.perf_counter() - started
    max_diff = max(float((a - b).abs().max()) for a, b in zip(eager, compiled, strict=True))
    scale = max(float(a.abs().max()) for a in eager)

    def time_steps(net: torch.nn.Module) -> float:
        for _ in range(3):
            grads(net)
        sync(device)
        start = time.perf_counter()
        for _ in range(args.steps):
            grads(net)
        sync(device)
        return (time.perf_counter() - start) / args.steps

    eager_step, compiled_step = time_steps(model), time_steps(compiled_model)
    return {"check": "compile", "device": args.device, "members": members, "max_grad_diff": max_diff,
            "relative_grad_diff": max_diff / scale, "compile_seconds": compile_seconds,
            "eager_step_seconds": eager_step, "compiled_step_seconds": compiled_step,
            "speedup": eager_step / compiled_step}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--widths", default="8,16,32")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "bf16"])
    parser.add_argument("--skip-compile", action="store_true")
    args = parser.parse_args()
    widths = tuple(int(w) for w in args.widths.split(","))
    config = ModelConfig((1, 28, 28), widths, 32 if widths[0] < 32 else 128, 10)
    sets = [random_set(args.batch * 4, config.input_shape, seed) for seed in range(args.members)]
    print(json.dumps(determinism_check(config, sets, args)), flush=True)
    if not args.skip_compile:
        print(json.dumps(compile_check(config, args)), flush=True)


if __name__ == "__main__":
    main()
