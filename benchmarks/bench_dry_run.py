"""How the dry run's training rate compares with whole epochs of the same model.

    python benchmarks/bench_dry_run.py --data-dir ../shared/datasets/mnist

`latentsweep run --dry-run` times plan.TIMED_STEPS training steps of the largest model on the first
few batches and scales that rate to the study's epochs. This script times, in one process with one
torch thread (a worker's share in the default arrangement on a 2-core CPU), with the default full
preset's batch size and learning rate:
  1. the dry run's own rate (plan.trial_rates, as the dry run calls it);
  2. the first 2,560 images of an epoch over the whole training set, then the whole of that epoch
     and of the next ones, on a fresh model of the same size, with the one training loop (train.train_epoch).
It prints images per second for each and their ratio to the dry run's. Run on an idle machine.
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="MNIST IDX folder")
    parser.add_argument("--epochs", type=int, default=2, help="whole epochs to time (default 2)")
    args = parser.parse_args()

    import torch

    from latentsweep.architectures import ModelSpec
    from latentsweep.model import MNIST_SHAPE
    from latentsweep.config import build_config
    from latentsweep.kernels import use_fast_cpu_kernels
    from latentsweep.plan import TIMED_STEPS, trial_rates
    from latentsweep.train import epoch_permutation, make_noise_generator, train_epoch
    from latentsweep.data import load_data
    from latentsweep.trial import set_threads

    config = build_config({"data_dir": args.data_dir})
    dataset, _ = load_data(config.data)
    set_threads(1)
    device = torch.device("cpu")
    dry_run_rate, _ = trial_rates(config, "conv", dataset, device)
    print(f"dry run's rate ({TIMED_STEPS} steps of batch {config.training.batch_size}, latent size "
          f"{max(config.model.latent_dims)}, 1 thread): {dry_run_rate:,.0f} images/s")

    model = use_fast_cpu_kernels(ModelSpec("conv", max(config.model.latent_dims), MNIST_SHAPE).build(seed=0))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.training.learning_rate)
    generator = make_noise_generator(0, device)
    images = dataset.train.images

    def timed_pass(order: torch.Tensor) -> float:
        started = time.perf_counter()
        train_epoch(model, optimizer, images, order, config.training.batch_size, 1.0, generator)
        return len(order) / (time.perf_counter() - started)

    head = 2560
    for epoch in range(1, args.epochs + 1):
        order = epoch_permutation(len(images), 0, epoch)
        if epoch == 1:
            rate = timed_pass(order[:head])
            print(f"epoch 1, first {head:,} images: {rate:,.0f} images/s (x{rate / dry_run_rate:.2f} the dry run's)")
            order = order[head:]
        rate = timed_pass(order)
        print(f"epoch {epoch}, {'the rest' if epoch == 1 else 'whole'} ({len(order):,} images): {rate:,.0f} images/s "
              f"(x{rate / dry_run_rate:.2f} the dry run's)")


if __name__ == "__main__":
    main()
