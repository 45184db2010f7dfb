"""Where the default model's training step spends its time, by kind of operation.

    python benchmarks/bench_profile.py --data-dir ../shared/datasets/mnist

Runs latentsweep's own train_epoch over real MNIST images (latent size 20, batch 128) under
torch.profiler after a warm-up pass, and sums the operators' self CPU time into kinds:
convolutions (forward and backward), copies (mostly the layout changes around the transposed
convolutions), matrix products (the linear layers), the optimizer step and everything else. Profiling adds overhead to every
operator, so the shares matter, not the absolute times. Seen here: README, Speed.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

from latentsweep.data import DATASETS, load_dataset, resolve_data_dir
from latentsweep.kernels import use_fast_cpu_kernels
from latentsweep.model import ConvVAE, VAEConfig
from latentsweep.train import epoch_permutation, train_epoch

# Operator names (aten::...) by kind; a name in none of them counts as "other".
KINDS = {
    "convolutions": ("aten::convolution_backward", "aten::_convolution", "aten::mkldnn_convolution"),
    # Mostly the memory-layout copies the transposed convolutions make around themselves (a 1-channel
    # weight reads as channels-last), plus the batch gather and small copies.
    "copies": ("aten::copy_", "aten::clone"),
    "matrix products": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"),
    "optimizer (Adam)": ("aten::sqrt", "aten::div", "aten::addcdiv_", "aten::lerp_", "aten::addcmul_", "aten::mul_",
                         "aten::add_", "aten::_foreach_"),
}


def kind_of(name: str) -> str:
    return next((kind for kind, names in KINDS.items() if name.startswith(names)), "other")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir")
    parser.add_argument("--images", type=int, default=12_800, help="training images profiled (default 12800)")
    args = parser.parse_args()
    spec = DATASETS["mnist"]
    images = load_dataset(spec, resolve_data_dir(spec, args.data_dir), val_size=5000).train.images[: args.images]
    torch.manual_seed(0)
    model = use_fast_cpu_kernels(ConvVAE(VAEConfig(latent_dim=20)))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    train_epoch(model, optimizer, images, epoch_permutation(len(images), 0, 1), 128, 1.0, generator)  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        train_epoch(model, optimizer, images, epoch_permutation(len(images), 0, 2), 128, 1.0, generator)
    seconds: dict[str, float] = defaultdict(float)
    for event in profiler.key_averages():
        if event.key.startswith("aten::"):
            seconds[kind_of(event.key)] += event.self_cpu_time_total / 1e6
    total = sum(seconds.values())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; self CPU time of aten operators over "
          f"{len(images):,} training images (profiled, so slower than unprofiled training)")
    for kind in (*KINDS, "other"):
        print(f"  {kind:<18} {seconds[kind]:6.2f} s  {100 * seconds[kind] / total:5.1f}%")


if __name__ == "__main__":
    main()
