"""CPU levers for the default model's training, measured the way the study trains.

    python benchmarks/bench_cpu_levers.py --data-dir ../shared/datasets/mnist

Each configuration trains one pass over 10,000 real MNIST images with latentsweep's own
train_epoch (latent size 20), after a warm-up; the configurations are interleaved and repeated
(--repeats, default 4) and the median is reported, because a shared 2-core machine drifts by
more than the effects being measured. Levers: channels_last memory format,
batch 256 (changes the optimisation itself, so it is not a free speed-up), torch.compile of the
model (compile time shown separately), Adam's fused kernel, computing the two 1-channel layers
(first convolution, last transposed convolution) as 2x2 convolutions on a space-to-depth
rearrangement (same weights, same results up to rounding), bfloat16 autocast (--precision bf16),
and the last transposed convolution on oneDNN, as nn.ConvTranspose2d runs it, instead of ATen's
own kernel that kernels.AtenConvTranspose2d uses on a CPU (the ratio below 1 is what that kernel
gains in training). The script then times decoding alone, 8,000 latent codes per call (the IWAE
bound's chunk), with either kernel for that layer.

Seen here (2-core AMD EPYC with AVX512-BF16, torch 2.13.0). First run, 4 repeats: x0.91
channels_last, x0.89 denormals, x1.02 batch 256, x0.77 torch.compile (9 s to compile). Latest run,
6 repeats: x1.01 channels_last, x0.98 denormals, x1.18 batch 256, x0.76 torch.compile, x1.07 fused
Adam, x0.97 space-to-depth, x1.11 bf16 autocast, with every range overlapping the baseline's
(5,561-7,795 img/s). Training keeps its defaults: batch 256 changes the optimisation, fused Adam and
bf16 change every trained weight, and bf16 is offered as --precision bf16 (README, Speed). (An
earlier version on random images and a hand-written step showed channels_last x1.12-1.39; on real
data through train_epoch the gain disappeared.)

The "denormals" figures above came from a flush-denormals lever set in this running process; it
reached only the calling thread, not torch's OpenMP worker, and one pass from a fresh model ends
before Adam's state holds denormals. benchmarks/bench_denormals.py measures it properly instead
(fresh processes, later epochs), and the lever is no longer here.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from latentsweep.data import DATASETS, load_dataset, resolve_data_dir
from latentsweep.kernels import use_fast_cpu_kernels
from latentsweep.model import ConvVAE, VAEConfig
from latentsweep.train import epoch_permutation, train_epoch

CONFIGS = {
    "baseline, batch 128": {},
    "channels_last": {"channels_last": True},
    "batch 256": {"batch_size": 256},
    "torch.compile": {"compile_model": True},
    "fused Adam": {"fused_adam": True},
    "space-to-depth convs": {"space_to_depth": True},
    "bf16 autocast": {"precision": "bf16"},
    "last layer on oneDNN": {"onednn_last_layer": True},
}


class SpaceToDepthConv(torch.nn.Conv2d):
    """The 4x4 stride-2 padding-1 convolution as a 2x2 stride-1 one on the 2x2 space-to-depth input.

    Same weights, same result up to rounding; oneDNN runs a 1-channel 4x4 stride-2 convolution slowly,
    and this turns it into a 4-channel one.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out_channels, in_channels = self.weight.shape[:2]
        weight = (self.weight.view(out_channels, in_channels, 2, 2, 2, 2).permute(0, 1, 3, 5, 2, 4)
                  .reshape(out_channels, in_channels * 4, 2, 2))
        return F.conv2d(F.pixel_unshuffle(F.pad(x, (1, 1, 1, 1)), 2), weight, self.bias)


class SpaceToDepthConvTranspose(torch.nn.ConvTranspose2d):
    """The 4x4 stride-2 padding-1 transposed convolution as a 2x2 stride-1 one, then depth-to-space."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        in_channels, out_channels = self.weight.shape[:2]
        weight = (self.weight.view(in_channels, out_channels, 2, 2, 2, 2).permute(0, 1, 3, 5, 2, 4)
                  .reshape(in_channels, out_channels * 4, 2, 2))
        wide = F.conv_transpose2d(x, weight, self.bias.repeat_interleave(4))
        return F.pixel_shuffle(wide, 2)[:, :, 1:-1, 1:-1]


def one_pass(images: torch.Tensor, batch_size: int = 128, channels_last: bool = False,
             compile_model: bool = False, fused_adam: bool = False,
             space_to_depth: bool = False, precision: str = "fp32",
             onednn_last_layer: bool = False) -> tuple[float, float]:
    torch.manual_seed(0)
    model = use_fast_cpu_kernels(ConvVAE(VAEConfig(latent_dim=20)))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    if space_to_depth:  # the 1-channel ends: first convolution, last transposed convolution
        model.encoder[0].__class__ = SpaceToDepthConv
        model.decoder[-1].__class__ = SpaceToDepthConvTranspose
    if onednn_last_layer:
        model.decoder[-1].__class__ = torch.nn.ConvTranspose2d
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused_adam)
    trained = torch.compile(model) if compile_model else model
    generator = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    train_epoch(trained, optimizer, images[:1024], torch.arange(1024), batch_size, 1.0, generator,
                precision=precision)  # warm-up
    warm_up = time.perf_counter() - started
    started = time.perf_counter()
    train_epoch(trained, optimizer, images, epoch_permutation(len(images), 0, 1), batch_size, 1.0, generator,
                precision=precision)
    return len(images) / (time.perf_counter() - started), warm_up


@torch.no_grad()
def decode_rate(onednn_last_layer: bool, latents: torch.Tensor, calls: int = 3) -> float:
    torch.manual_seed(0)
    model = use_fast_cpu_kernels(ConvVAE(VAEConfig(latent_dim=latents.shape[1]))).eval()
    if onednn_last_layer:
        model.decoder[-1].__class__ = torch.nn.ConvTranspose2d
    model.decode(latents)  # warm-up
    started = time.perf_counter()
    for _ in range(calls):
        model.decode(latents)
    return calls * len(latents) / (time.perf_counter() - started)


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
    latents = torch.randn(8000, 20, generator=torch.Generator().manual_seed(0))
    decoding: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.repeats):
        for onednn in decoding:
            decoding[onednn].append(decode_rate(onednn, latents))
    aten, onednn = (statistics.median(decoding[key]) for key in (False, True))
    print(f"decoding 8,000 latent codes per call: last layer on ATen (default) {aten:,.0f}/s, "
          f"on oneDNN {onednn:,.0f}/s, x{aten / onednn:.2f}")


if __name__ == "__main__":
    main()
