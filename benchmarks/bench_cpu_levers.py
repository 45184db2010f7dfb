"""CPU levers for the default model's training step, each measured alone in one run.

    python benchmarks/bench_cpu_levers.py

Baseline (batch 128) against: batch 256 (changes the optimisation, so not a free speed-up),
channels_last memory format, flushing denormals, torch.compile (its compile time shown), and
channels_last with denormal flushing together. Random images; figures are noisy on a shared
machine (repeat it), and only ratios within one run mean anything.
"""

from __future__ import annotations

import time

import torch

from latentsweep.model import ConvVAE, VAEConfig, vae_loss_terms

IMAGES = torch.rand(8192, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def rate(batch_size: int = 128, channels_last: bool = False, flush_denormals: bool = False,
         compile_step: bool = False) -> tuple[float, float]:
    torch.set_flush_denormal(flush_denormals)
    torch.manual_seed(0)
    model = ConvVAE(VAEConfig(latent_dim=20))
    images = IMAGES
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = IMAGES.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(batch: torch.Tensor) -> None:
        terms = vae_loss_terms(model(batch), batch)
        optimizer.zero_grad()
        (terms.reconstruction + terms.kl).mean().backward()
        optimizer.step()

    if compile_step:
        step = torch.compile(step)
    started = time.perf_counter()
    for _ in range(3):
        step(images[:batch_size])
    warm_up = time.perf_counter() - started
    started = time.perf_counter()
    count = 0
    for start in range(0, len(images) - batch_size + 1, batch_size):
        step(images[start:start + batch_size])
        count += batch_size
    torch.set_flush_denormal(False)
    return count / (time.perf_counter() - started), warm_up


def main() -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, latent size 20")
    baseline = None
    for label, kwargs in [("baseline, batch 128", {}), ("batch 256", {"batch_size": 256}),
                          ("channels_last", {"channels_last": True}), ("flush denormals", {"flush_denormals": True}),
                          ("channels_last + flush denormals", {"channels_last": True, "flush_denormals": True}),
                          ("torch.compile", {"compile_step": True})]:
        images_per_second, warm_up = rate(**kwargs)
        baseline = baseline or images_per_second  # the first row
        print(f"{label:<34} {images_per_second:>8,.0f} img/s  x{images_per_second / baseline:.2f}  (first 3 steps {warm_up:.1f} s)")


if __name__ == "__main__":
    main()
