"""The VAEs latentsweep trains: plain networks for 28x28 grey images. Imports only torch.

Every model offers `encode(images) -> (mean, log_var)` and `decode(latents) -> logits` (Bernoulli
logits shaped like the images); `vae_forward` turns those two into one training forward pass, so a
user's own network needs nothing else (architectures.py checks it).

ConvVAE ("conv", the default):
  Encoder: conv 4x4 stride 2 (1 -> c1) -> ReLU -> conv 4x4 stride 2 (c1 -> c2) -> ReLU
           -> flatten (c2*7*7) -> linear (hidden) -> ReLU -> linear (2 * latent_dim) = mean, log-variance
  Decoder: linear (hidden) -> ReLU -> linear (c2*7*7) -> ReLU -> transposed conv 4x4 stride 2 (c2 -> c1)
           -> ReLU -> transposed conv 4x4 stride 2 (c1 -> 1) = Bernoulli logits per pixel
  With the defaults (c1=16, c2=32, hidden=256) it has about 0.84 M parameters; the fully connected
  layer gives the decoder enough capacity that the latent size, not the network, limits quality.

MlpVAE ("mlp"): the pytorch/examples VAE, 784 -> 400 -> (mean, log-variance) and z -> 400 -> 784.

A checkpoint stores `dataclasses.asdict(config)` as "model_config", so a model is rebuilt with
`ConvVAE(VAEConfig(**checkpoint["model_config"]))` (or MlpVAE(MlpConfig(...))).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class VAEConfig:
    latent_dim: int = 10
    image_size: int = 28
    image_channels: int = 1
    conv_channels: tuple[int, int] = (16, 32)
    hidden_dim: int = 256

    def __post_init__(self) -> None:
        # JSON round trips turn tuples into lists; keep the config hashable and comparable.
        object.__setattr__(self, "conv_channels", tuple(int(c) for c in self.conv_channels))
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim must be at least 1, got {self.latent_dim}")
        if self.image_size % 4 != 0 or self.image_size < 4:
            raise ValueError(f"image_size must be a positive multiple of 4, got {self.image_size}")
        if len(self.conv_channels) != 2 or min(self.conv_channels) < 1:
            raise ValueError(f"conv_channels must be two positive integers, got {self.conv_channels}")
        if self.hidden_dim < 1 or self.image_channels < 1:
            raise ValueError("hidden_dim and image_channels must be positive")


class VAEOutput(NamedTuple):
    logits: torch.Tensor  # (N, C, H, W) Bernoulli logits of the reconstruction
    mean: torch.Tensor  # (N, latent_dim) posterior mean
    log_var: torch.Tensor  # (N, latent_dim) posterior log-variance


class LossTerms(NamedTuple):
    reconstruction: torch.Tensor  # (N,) summed Bernoulli negative log-likelihood, nats
    kl: torch.Tensor  # (N,) KL(q(z|x) || N(0, I)), nats


class VAE(nn.Module):
    """What every built-in network shares: an `encoder` whose output is split into mean and log-variance,
    a `decoder` from latent codes to Bernoulli logits, and the training forward pass."""

    encoder: nn.Module
    decoder: nn.Module

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_var = self.encoder(images).chunk(2, dim=1)
        return mean, log_var

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits; `torch.sigmoid` of them is the reconstructed image in [0, 1]."""
        return self.decoder(latents)

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> VAEOutput:
        return vae_forward(self, images, generator)


class ConvVAE(VAE):
    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        c1, c2 = config.conv_channels
        side = config.image_size // 4
        self.feature_shape = (c2, side, side)
        features = c2 * side * side
        self.encoder = nn.Sequential(
            nn.Conv2d(config.image_channels, c1, kernel_size=4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(c1, c2, kernel_size=4, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(features, config.hidden_dim),
            nn.ReLU(),
            nn.Linear(config.hidden_dim, 2 * config.latent_dim),
        )
        self.decoder = nn.Sequential(
            nn.Linear(config.latent_dim, config.hidden_dim),
            nn.ReLU(),
            nn.Linear(config.hidden_dim, features),
            nn.ReLU(),
            nn.Unflatten(1, self.feature_shape),
            nn.ConvTranspose2d(c2, c1, kernel_size=4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(c1, config.image_channels, kernel_size=4, stride=2, padding=1),
        )


@dataclass(frozen=True)
class MlpConfig:
    latent_dim: int = 10
    image_size: int = 28
    image_channels: int = 1
    hidden_dim: int = 400

    def __post_init__(self) -> None:
        if self.latent_dim < 1 or self.hidden_dim < 1 or self.image_size < 1 or self.image_channels < 1:
            raise ValueError(f"every size of an MLP VAE must be positive, got {self}")


class MlpVAE(VAE):
    """The fully connected VAE of pytorch/examples (mnist VAE): one hidden layer of 400 units each way."""

    def __init__(self, config: MlpConfig) -> None:
        super().__init__()
        self.config = config
        self.image_shape = (config.image_channels, config.image_size, config.image_size)
        pixels = config.image_channels * config.image_size * config.image_size
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(pixels, config.hidden_dim), nn.ReLU(),
                                     nn.Linear(config.hidden_dim, 2 * config.latent_dim))
        self.decoder = nn.Sequential(nn.Linear(config.latent_dim, config.hidden_dim), nn.ReLU(),
                                     nn.Linear(config.hidden_dim, pixels), nn.Unflatten(1, self.image_shape))


def vae_forward(model: nn.Module, images: torch.Tensor, generator: torch.Generator | None = None) -> VAEOutput:
    """Encode, draw one latent sample per image by reparameterisation, decode: any model with
    `encode` and `decode`. The noise comes from `generator` when given, so training can be replayed."""
    mean, log_var = model.encode(images)
    noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    latents = mean + noise * torch.exp(0.5 * log_var)
    return VAEOutput(model.decode(latents), mean, log_var)


def vae_loss_terms(output: VAEOutput, images: torch.Tensor) -> LossTerms:
    """Per-sample negative ELBO terms; the training loss is mean(reconstruction + beta * kl)."""
    reconstruction = F.binary_cross_entropy_with_logits(output.logits, images, reduction="none").flatten(1).sum(1)
    kl = -0.5 * (1 + output.log_var - output.mean.pow(2) - output.log_var.exp()).sum(1)
    return LossTerms(reconstruction, kl)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
