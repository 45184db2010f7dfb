"""Training and evaluation throughput of the default model, and the time of the quick study.

    python benchmarks/bench_train.py --data-dir ../shared/datasets/mnist            # throughput only
    python benchmarks/bench_train.py --data-dir ../shared/datasets/mnist --quick-study

Throughput is measured with the project's own train_epoch/evaluate_loss on real MNIST images
held in memory, after one warm-up pass; it prints images per second per latent size. With
--quick-study it also times `latentsweep run --preset quick` end to end in a fresh process.
Figures depend on the machine: run on an otherwise idle one.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from latentsweep.data import DATASETS, load_dataset, resolve_data_dir
from latentsweep.kernels import use_fast_cpu_kernels
from latentsweep.model import ConvVAE, VAEConfig, count_parameters
from latentsweep.train import epoch_permutation, evaluate_loss, train_epoch


def throughput(latent_dim: int, images: torch.Tensor, batch_size: int, repeats: int,
               precision: str = "fp32") -> tuple[float, float]:
    torch.manual_seed(0)
    model = use_fast_cpu_kernels(ConvVAE(VAEConfig(latent_dim=latent_dim)))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    order = epoch_permutation(len(images), 0, 1)
    train_epoch(model, optimizer, images[:2048], order[order < 2048], batch_size, 1.0, generator,
                precision=precision)  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        train_epoch(model, optimizer, images, order, batch_size, 1.0, generator, precision=precision)
    train_rate = repeats * len(images) / (time.perf_counter() - started)
    started = time.perf_counter()
    for _ in range(repeats):
        evaluate_loss(model, images, 1000, 1.0, seed=0)
    eval_rate = repeats * len(images) / (time.perf_counter() - started)
    return train_rate, eval_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="MNIST folder (default: as for latentsweep)")
    parser.add_argument("--images", type=int, default=20000, help="training images per timed pass (default 20000)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quick-study", action="store_true", help="also time 'latentsweep run --preset quick'")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"), help="training precision (default fp32)")
    args = parser.parse_args()

    spec = DATASETS["mnist"]
    folder = resolve_data_dir(spec, args.data_dir)
    images = load_dataset(spec, folder, val_size=5000).train.images[: args.images]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, {args.precision}, "
          f"{len(images)} real MNIST images per pass, {args.repeats} passes")
    print(f"{'latent':>6} {'parameters':>11} {'train img/s':>12} {'eval img/s':>11}")
    for latent_dim in (5, 10, 15, 20):
        train_rate, eval_rate = throughput(latent_dim, images, args.batch_size, args.repeats, args.precision)
        params = count_parameters(ConvVAE(VAEConfig(latent_dim=latent_dim)))
        print(f"{latent_dim:>6} {params:>11,} {train_rate:>12,.0f} {eval_rate:>11,.0f}")

    if args.quick_study:
        with tempfile.TemporaryDirectory() as out:
            command = [sys.executable, "-m", "latentsweep", "-q", "run", "--preset", "quick",
                       "--out", str(Path(out) / "quick"), "--data-dir", str(folder)]
            started = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            print(f"latentsweep run --preset quick: {time.perf_counter() - started:.0f} s wall time "
                  "(4 latent sizes, 10,000 training images, 10 epochs, evaluation and report included)")


if __name__ == "__main__":
    main()
