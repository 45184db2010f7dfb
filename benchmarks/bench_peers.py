"""Our VAE against faithful re-implementations of two peers, measured in one run on one machine.

    python benchmarks/bench_peers.py --data-dir ../shared/datasets/mnist

Peers, re-implemented inside this harness from their published descriptions:
  pytorch/examples VAE  MLP 784-400-20 (fc1, fc21/fc22, fc3, fc4), BCE summed, Adam 1e-3, batch 128,
                        trained through a torch DataLoader over per-item tensors as that example does
                        (its dataset converts one image at a time; here a Dataset does the same from the
                        uint8 array, since torchvision is unavailable)
  pythae conv VAE       encoder convs 1-128-256-512-1024 (4x4, stride 2, BatchNorm, ReLU) then linear
                        1024 -> z for mean and log-variance; decoder linear z -> 1024x4x4, transposed convs
                        1024-512-256-1 (3x3, stride 2, BatchNorm, ReLU, sigmoid); batch 100
  latentsweep           the default ConvVAE, our own training loop (data held as one tensor), batch 128;
                        also with --precision bf16 (bfloat16 autocast: the same model FLOPs, in bf16
                        arithmetic where the CPU has it, so its "% peak" is against the fp32 peak)

For each: training and evaluation images per second (after a warm-up), training FLOPs per image
counted with torch.utils.flop_counter (forward + backward of one step), the achieved FLOP/s, and
that as a share of a measured fp32 matmul peak on this machine. Ratios are against ours.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from latentsweep.data import DATASETS, read_idx, resolve_data_dir
from latentsweep.kernels import use_fast_cpu_kernels
from latentsweep.model import ConvVAE, VAEConfig, vae_loss_terms
from latentsweep.train import epoch_permutation, train_epoch

LATENT = 20


class ExamplesVAE(nn.Module):
    """pytorch/examples vae/main.py's model: an MLP with one hidden layer of 400 units."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc21, self.fc22 = nn.Linear(784, 400), nn.Linear(400, LATENT), nn.Linear(400, LATENT)
        self.fc3, self.fc4 = nn.Linear(LATENT, 400), nn.Linear(400, 784)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        hidden = F.relu(self.fc1(x.view(-1, 784)))
        mu, log_var = self.fc21(hidden), self.fc22(hidden)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * log_var)
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z)))), mu, log_var


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 4, 2, padding=1), nn.BatchNorm2d(cout), nn.ReLU())


def _deconv_block(cin: int, cout: int, output_padding: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 3, 2, padding=1, output_padding=output_padding),
                         nn.BatchNorm2d(cout), nn.ReLU())


class PythaeConvVAE(nn.Module):
    """pythae's Encoder_Conv_VAE_MNIST / Decoder_Conv_AE_MNIST architecture."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(_conv_block(1, 128), _conv_block(128, 256), _conv_block(256, 512),
                                     _conv_block(512, 1024), nn.Flatten())
        self.mean, self.log_var = nn.Linear(1024, LATENT), nn.Linear(1024, LATENT)
        self.fc = nn.Linear(LATENT, 1024 * 4 * 4)
        self.decoder = nn.Sequential(_deconv_block(1024, 512, 0), _deconv_block(512, 256, 1),
                                     nn.ConvTranspose2d(256, 1, 3, 2, padding=1, output_padding=1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features = self.encoder(x)
        mu, log_var = self.mean(features), self.log_var(features)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * log_var)
        return self.decoder(self.fc(z).view(-1, 1024, 4, 4)), mu, log_var


def peer_loss(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    recon, mu, log_var = model(x)
    bce = F.binary_cross_entropy(recon.view(len(x), -1), x.view(len(x), -1), reduction="sum")
    return bce - 0.5 * torch.sum(1 + log_var - mu.pow(2) - log_var.exp())


class PerItemMNIST(Dataset):
    """Like torchvision's MNIST with ToTensor: one uint8 image converted to a float tensor per item."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(self.images[index].astype(np.float32) / 255.0).unsqueeze(0)


@dataclass
class Result:
    name: str
    train_rate: float
    eval_rate: float
    flops_per_image: float


def slow_conv_transpose2d_flops(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of ATen's own transposed convolution (our last layer on a CPU), which the flop
    counter does not know: the same count as for torch's transposed convolution of those shapes."""
    return conv_flop_count(x_shape, w_shape, out_shape, transposed=True)


def training_flops(step: Callable[[torch.Tensor], None], batch: torch.Tensor) -> float:
    mapping = {torch.ops.aten.slow_conv_transpose2d: slow_conv_transpose2d_flops}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        step(batch)
    return counter.get_total_flops() / len(batch)


def timed(run: Callable[[], int]) -> float:
    started = time.perf_counter()
    images = run()
    return images / (time.perf_counter() - started)


def measure_peer(name: str, model: nn.Module, images_u8: np.ndarray, images: torch.Tensor, batch_size: int,
                 train_images: int, loader: bool) -> Result:
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(batch: torch.Tensor) -> None:
        model.train()
        optimizer.zero_grad()
        peer_loss(model, batch).backward()
        optimizer.step()

    for start in range(0, 3 * batch_size, batch_size):  # warm-up
        step(images[start:start + batch_size])
    flops = training_flops(step, images[:batch_size])

    def train() -> int:
        count = 0
        if loader:
            data = DataLoader(PerItemMNIST(images_u8[:train_images]), batch_size=batch_size, shuffle=True)
            for batch in data:
                step(batch)
                count += len(batch)
        else:
            order = torch.randperm(train_images)
            for start in range(0, train_images, batch_size):
                step(images[order[start:start + batch_size]])
                count += len(order[start:start + batch_size])
        return count

    @torch.no_grad()
    def evaluate() -> int:
        model.eval()
        for start in range(0, train_images, 1000):
            peer_loss(model, images[start:start + 1000])
        return train_images

    return Result(name, timed(train), timed(evaluate), flops)


def measure_ours(images: torch.Tensor, train_images: int, precision: str = "fp32") -> Result:
    torch.manual_seed(0)
    model = use_fast_cpu_kernels(ConvVAE(VAEConfig(latent_dim=LATENT)))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    subset = images[:train_images]
    train_epoch(model, optimizer, subset[:512], torch.arange(512), 128, 1.0, generator, precision=precision)  # warm-up

    def step(batch: torch.Tensor) -> None:
        terms = vae_loss_terms(model(batch, generator=generator), batch)
        optimizer.zero_grad()
        (terms.reconstruction + terms.kl).mean().backward()
        optimizer.step()

    flops = training_flops(step, images[:128])
    order = epoch_permutation(train_images, 0, 1)

    def train() -> int:
        train_epoch(model, optimizer, subset, order, 128, 1.0, generator, precision=precision)
        return train_images

    @torch.no_grad()
    def evaluate() -> int:
        model.eval()
        for start in range(0, train_images, 1000):
            batch = subset[start:start + 1000]
            vae_loss_terms(model(batch, generator=generator), batch)
        return train_images

    name = "latentsweep ConvVAE" + (", bf16 autocast" if precision == "bf16" else "")
    return Result(name, timed(train), timed(evaluate), flops)


def flop_rate(work: Callable[[], None], flops: float, repeats: int) -> float:
    """FLOP/s of `work` (`flops` per call), timed over `repeats` calls after one warm-up call."""
    work()
    started = time.perf_counter()
    for _ in range(repeats):
        work()
    return repeats * flops / (time.perf_counter() - started)


def matmul_peak(size: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    return flop_rate(lambda: a @ b, 2 * size**3, repeats)


def layer_gemm_rate(batch: int = 128, features: int = 1568, hidden: int = 256, repeats: int = 50) -> float:
    """FLOP/s of our largest layer's three training GEMMs (forward, input grad, weight grad) run alone.

    These are the best-shaped products in our step; a step whose convolutions, elementwise work and
    Adam all ran this well would reach this rate, so it shows how far the rest of the step lags.
    """
    x, weight, grad = torch.randn(batch, features), torch.randn(hidden, features), torch.randn(batch, hidden)

    def gemms() -> None:
        x @ weight.T
        grad @ weight
        grad.T @ x

    return flop_rate(gemms, 3 * 2 * batch * features * hidden, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir")
    parser.add_argument("--images", type=int, default=10_000, help="training images per timed pass (default 10000)")
    parser.add_argument("--pythae-images", type=int, default=1_000, help="fewer for the heavy pythae model (default 1000)")
    args = parser.parse_args()

    spec = DATASETS["mnist"]
    folder = resolve_data_dir(spec, args.data_dir)
    from latentsweep.data import find_file

    images_u8 = read_idx(find_file(folder, spec.train_images.stem))
    images = torch.from_numpy(images_u8[: args.images].astype(np.float32) / 255.0).unsqueeze(1)
    peak = matmul_peak()
    layer_rate = layer_gemm_rate()
    results = [
        measure_ours(images, args.images),
        measure_peer("pytorch/examples VAE (MLP, DataLoader)", ExamplesVAE(), images_u8, images, 128, args.images, loader=True),
        measure_peer("pythae conv VAE (batch 100)", PythaeConvVAE(), images_u8, images, 100, args.pythae_images, loader=False),
        measure_ours(images, args.images, precision="bf16"),
    ]
    ours = results[0]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; measured fp32 matmul peak "
          f"{peak / 1e9:.1f} GFLOP/s (2048x2048)")
    print(f"{'model':<40} {'train img/s':>11} {'eval img/s':>10} {'MFLOP/img':>9} {'GFLOP/s':>8} {'% peak':>6} "
          f"{'ours/it img/s':>13} {'ours/it FLOP/s':>14}")
    for r in results:
        achieved = r.train_rate * r.flops_per_image
        print(f"{r.name:<40} {r.train_rate:>11,.0f} {r.eval_rate:>10,.0f} {r.flops_per_image / 1e6:>9.2f} "
              f"{achieved / 1e9:>8.2f} {100 * achieved / peak:>6.1f} {ours.train_rate / r.train_rate:>13.2f} "
              f"{ours.train_rate * ours.flops_per_image / achieved:>14.2f}")
    examples = results[1]
    needed = 2 * examples.train_rate * examples.flops_per_image
    print(f"2x the pytorch/examples VAE's images/s per FLOP needs our step at {needed / 1e9:.1f} GFLOP/s "
          f"({100 * needed / peak:.0f}% of peak); our largest layer's training GEMMs (128x1568x256) run alone at "
          f"{layer_rate / 1e9:.1f} GFLOP/s ({100 * layer_rate / peak:.0f}% of peak)")


if __name__ == "__main__":
    main()
