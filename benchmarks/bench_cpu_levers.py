"""CPU levers for the default model's training, measured the way the study trains.

    python benchmarks/bench_cpu_levers.py --data-dir ../shared/datasets/mnist

Each configuration trains one pass over 10,000 real MNIST images with latentsweep's own
train_epoch (latent size 20), after a warm-up; the configurations are interleaved and repeated
(--repeats, default 4) and the median is reported, because a shared 2-core machine drifts by
more than the effects being measured. Levers: channels_last memory format, flushing denormals,
batch 256 (changes the optimisation itself, so it is not a free speed-up), torch.compile of the
model (compile time shown separately).

Seen here (2-core CPU, torch 2.13.0, 4 repeats): no lever beat the baseline; medians were x0.91
(channels_last), x0.89 (denormals), x1.02 (batch 256), x0.77 (torch.compile, 9 s to compile),
with ranges overlapping the baseline's 4,580-7,333 img/s, so training uses none of them. (An
earlier version of this script on random images and a hand-written step showed channels_last
x1.12-1.39; on real data through train_epoch the gain disappeared.)
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from latentsweep.data import DATASETS, load_dataset, resolve_data_dir
from latentsweep.model import ConvVAE, VAEConfig
from latentsweep.train import epoch_permutation, train_epoch

CONFIGS = {
    "baseline, batch 128": {},
    "channels_last": {"channels_last": True},
    "flush denormals": {"flush_denormals": True},
    "batch 256": {"batch_size": 256},
    "torch.compile": {"compile_model": True},
}


def one_pass(images: torch.Tensor, batch_size: int = 128, channels_last: bool = False,
             flush_denormals: bool = False, compile_model: bool = False) -> tuple[float, float]:
    torch.set_flush_denormal(flush_denormals)
    torch.manual_seed(0)
    model = ConvVAE(VAEConfig(latent_dim=20))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    trained = torch.compile(model) if compile_model else model
    generator = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    train_epoch(trained, optimizer, images[:1024], torch.arange(1024), batch_size, 1.0, generator)  # warm-up
    warm_up = time.perf_counter() - started
    started = time.perf_counter()
    train_epoch(trained, optimizer, images, epoch_permutation(len(images), 0, 1), batch_size, 1.0, generator)
    torch.set_flush_denormal(False)
    return len(images) / (time.perf_counter() - started), warm_up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir")
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()
    spec = DATASETS["mnist"]
    images = load_dataset(spec, resolve_data_dir(spec, args.data_dir), val_size=5000).train.images[:10_000]
    rates: dict[str, list[float]] = {name: [] for name in CONFIGS}
    warm_ups: dict[str, list[float]] = {name: [] for name in CONFIGS}
    for _ in range(args.repeats):
        for name, options in CONFIGS.items():
            rate, warm_up = one_pass(images, **options)
            rates[name].append(rate)
            warm_ups[name].append(warm_up)
    baseline = statistics.median(rates["baseline, batch 128"])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; median of {args.repeats} interleaved passes")
    for name in CONFIGS:
        median = statistics.median(rates[name])
        print(f"{name:<22} {median:>7,.0f} img/s  x{median / baseline:.2f}  "
              f"(range {min(rates[name]):,.0f}-{max(rates[name]):,.0f}; warm-up {max(warm_ups[name]):.1f} s)")


if __name__ == "__main__":
    main()
