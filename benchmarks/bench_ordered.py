"""Which nested objective makes every prefix of one VAE's code a good smaller model? (issue 32, item 1)

    python benchmarks/bench_ordered.py --data-dir ../shared/datasets/mnist [--top 20] [--epochs 10]

Trains, one after the other on the same host, three conv VAEs of code size T (--top) on the quick preset's data
(the first 10,000 training images after the 5,000 of validation, seed 0) with the quick preset's recipe (Adam, batch
64, 5% warm-up to 2e-3 then a half cosine, --epochs):
  nested   nested dropout as the library trains it (TrainConfig(ordered=True)): each image decoded from a prefix of
           its code of uniform random size 1..T, one decode a step
  prefix   the sum of the negative ELBOs of the prefixes --prefix-sizes (Matryoshka style, Kusupati et al. 2022),
           one decode per listed size a step
  plain    the plain VAE at T (the reference for the whole code, and for the time of one model)
and prints, for every prefix size k, each model's whole-test-set PSNR from its first k units (the rest at 0), with
the training time of each. Compare with independently trained models of size k (the quick study's results.csv,
same recipe and seed; --independent points at one). Name the CPU beside the figures.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import sys
import time
from pathlib import Path

import torch

from latentsweep.architectures import ModelSpec
from latentsweep.config import build_config
from latentsweep.data import intensities, load_data
from latentsweep.evaluate import per_image_scores
from latentsweep.kernels import use_fast_cpu_kernels
from latentsweep.model import Prefix, vae_forward, vae_loss_terms
from latentsweep.train import BEST_CHECKPOINT, TrainConfig, epoch_permutation, learning_rate_at, train_model


def train_prefix_sum(spec: ModelSpec, config: TrainConfig, images: torch.Tensor, sizes: list[int]) -> torch.nn.Module:
    """The prefix-sum objective with the library's batch order, noise stream and schedule."""
    model = use_fast_cpu_kernels(spec.build(config.seed))  # as train_model builds it
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    generator = torch.Generator().manual_seed(config.seed)
    steps = -(-len(images) // config.batch_size)
    model.train()
    for epoch in range(1, config.epochs + 1):
        order = epoch_permutation(len(images), config.seed, epoch)
        for step, start in enumerate(range(0, len(order), config.batch_size)):
            batch = intensities(images[order[start:start + config.batch_size]])
            loss = 0.0
            for size in sizes:
                prefix = torch.full((len(batch),), size)
                terms = vae_loss_terms(vae_forward(model, batch, generator, prefix), batch, prefix)
                loss = loss + (terms.reconstruction + config.beta * terms.kl).mean()
            optimizer.zero_grad(set_to_none=True)
            (loss / len(sizes)).backward()
            rate = learning_rate_at((epoch - 1) * steps + step, config.epochs * steps, config.learning_rate,
                                    config.schedule, config.warmup_fraction)
            for group in optimizer.param_groups:
                group["lr"] = rate
            optimizer.step()
    return model.eval()


def prefix_psnr(model: torch.nn.Module, test: torch.Tensor, top: int) -> dict[int, float]:
    with torch.no_grad():
        return {k: float(per_image_scores(Prefix(model, k, top), test, 1000, seed=0)["psnr"].mean())
                for k in range(1, top + 1)}


def independent_psnr(results_csv: Path | None) -> dict[int, float]:
    if results_csv is None or not results_csv.is_file():
        return {}
    with results_csv.open(newline="") as handle:
        return {int(row["latent_dim"]): float(row["mean"]) for row in csv.DictReader(handle)
                if row["metric"] == "psnr" and row["protocol"] == "test_set" and row["class"] == "all"
                and row["seed"] == "0"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--prefix-sizes", default="1,2,4,8,16,20")
    parser.add_argument("--independent", type=Path, help="a quick study's results.csv (same recipe, seed 0)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_ordered"))
    args = parser.parse_args()
    config = build_config({"preset": "quick", "data_dir": args.data_dir})
    dataset, _ = load_data(config.data)
    train, val, test = dataset.train.images, dataset.val.images, intensities(dataset.test.images)
    spec = ModelSpec("conv", args.top, dataset.image_shape)
    recipe = TrainConfig(epochs=args.epochs, batch_size=64, learning_rate=2e-3, schedule="cosine", warmup_fraction=0.05)
    curves, seconds = {}, {}
    for name in ("nested", "prefix", "plain"):
        started = time.perf_counter()
        if name == "prefix":
            model = train_prefix_sum(spec, recipe, train, [int(s) for s in args.prefix_sizes.split(",")])
        else:
            run_dir = args.out / name
            train_model(run_dir, spec, dataclasses.replace(recipe, ordered=name == "nested"), train, val,
                        torch.device("cpu"), resume=False, show_progress=False)
            model = spec.build(0)  # its best weights, as a study evaluates them
            model.load_state_dict(torch.load(run_dir / BEST_CHECKPOINT, weights_only=True)["model_state"])
            model.eval()
        seconds[name] = time.perf_counter() - started
        curves[name] = prefix_psnr(model, test, args.top)
        print(f"{name}: trained in {seconds[name]:.0f} s", flush=True)
    independent = independent_psnr(args.independent)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU")
    print(f"\nCPU: {cpu}, torch threads {torch.get_num_threads()}; whole-test-set PSNR (dB) from the first k units")
    print("| k | nested dropout | prefix sum | plain (T units trained together) | independent size-k model |")
    print("|---|---|---|---|---|")
    for k in range(1, args.top + 1):
        print(f"| {k} | {curves['nested'][k]:.2f} | {curves['prefix'][k]:.2f} | {curves['plain'][k]:.2f} | "
              f"{independent[k]:.2f} |" if k in independent else
              f"| {k} | {curves['nested'][k]:.2f} | {curves['prefix'][k]:.2f} | {curves['plain'][k]:.2f} | |")
    print(f"| training time | {seconds['nested']:.0f} s | {seconds['prefix']:.0f} s | {seconds['plain']:.0f} s | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
