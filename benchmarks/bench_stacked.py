"""Training the latent sizes of one seed as one stacked model against training them one by one.

    python benchmarks/bench_stacked.py --data-dir ../shared/datasets/mnist
    python benchmarks/bench_stacked.py --data-dir ../shared/datasets/mnist --device cuda --precision bf16

For latent sizes 5, 10, 15, 20 it times one pass over the same real MNIST images: "separate" is
train_epoch on each of the four models in turn (what `latentsweep run` does by default), "stacked"
is train_stacked_epoch on their StackedConvVAE (what `--stack-sizes` does). Both start from the
same weights after a warm-up pass; the two are interleaved and repeated, and the medians are
printed with their ratio. Issue 4's target is a ratio of at most 0.6. Run on an otherwise idle
machine; on a GPU the timings wait for the device (torch.cuda.synchronize) before reading the clock.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from latentsweep.data import DATASETS, load_dataset, resolve_data_dir
from latentsweep.model import ConvVAE, StackedConvVAE, VAEConfig
from latentsweep.train import epoch_permutation, resolve_device, train_epoch, train_stacked_epoch

LATENT_DIMS = (5, 10, 15, 20)


def fresh_models(device: torch.device) -> list[ConvVAE]:
    models = []
    for latent_dim in LATENT_DIMS:
        torch.manual_seed(0)
        models.append(ConvVAE(VAEConfig(latent_dim=latent_dim)).to(device))
    return models


def wait(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="MNIST folder (default: as for latentsweep)")
    parser.add_argument("--images", type=int, default=10000, help="training images per timed pass (default 10000)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes of each way (default 3)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    args = parser.parse_args()

    device = resolve_device(args.device)
    spec = DATASETS["mnist"]
    images = load_dataset(spec, resolve_data_dir(spec, args.data_dir), val_size=5000).train.images[: args.images]
    images = images.to(device)
    order = epoch_permutation(len(images), 0, 1)

    models = fresh_models(device)
    optimizers = [torch.optim.Adam(model.parameters(), lr=1e-3) for model in models]
    generators = [torch.Generator(device=device).manual_seed(0) for _ in models]
    stack = StackedConvVAE([model.config for model in models]).to(device)
    for member, model in enumerate(fresh_models(device)):
        stack.load_member(member, dict(model.named_parameters()))
    stack_optimizer = torch.optim.Adam(stack.parameters(), lr=1e-3)
    stack_generators = [torch.Generator(device=device).manual_seed(0) for _ in models]

    def separate(selection: torch.Tensor) -> None:
        for model, optimizer, generator in zip(models, optimizers, generators):
            train_epoch(model, optimizer, images, selection, args.batch_size, 1.0, generator, precision=args.precision)

    def stacked(selection: torch.Tensor) -> None:
        train_stacked_epoch(stack, stack_optimizer, images, selection, args.batch_size, 1.0, stack_generators,
                            precision=args.precision)

    warm_up = order[: min(len(order), 20 * args.batch_size)]
    seconds: dict[str, list[float]] = {"separate": [], "stacked": []}
    for step in (separate, stacked):
        step(warm_up)
    for _ in range(args.repeats):
        for name, step in (("separate", separate), ("stacked", stacked)):
            wait(device)
            started = time.perf_counter()
            step(order)
            wait(device)
            seconds[name].append(time.perf_counter() - started)

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {where}, batch {args.batch_size}, {args.precision}, {len(images)} real MNIST "
          f"images per pass, latent sizes {','.join(map(str, LATENT_DIMS))}, medians of {args.repeats} passes")
    for name, values in seconds.items():
        median = statistics.median(values)
        print(f"  {name:<9} {median:7.2f} s  ({len(LATENT_DIMS) * len(images) / median:,.0f} model-images/s)")
    ratio = statistics.median(seconds["stacked"]) / statistics.median(seconds["separate"])
    print(f"  stacked / separate: x{ratio:.2f} (target: at most x0.60)")


if __name__ == "__main__":
    main()
