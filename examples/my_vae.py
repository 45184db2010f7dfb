"""A complete user architecture for latentsweep: a two-hidden-layer MLP VAE with batch norm,
written against the protocol alone (a builder, encode and decode).

Run it (from the repository root):

    PYTHONPATH=examples latentsweep run --architecture my_vae:build --data-dir ../shared/datasets/mnist \
        --out runs/mine --preset quick

The protocol:
  build(latent_dim, image_shape) -> torch.nn.Module, image_shape = (channels, height, width), (1, 28, 28) here
  model.encode(images) -> (mean, log_var), each of shape (N, latent_dim)
  model.decode(latents) -> Bernoulli logits of shape (N, *image_shape)
latentsweep draws the latent sample, computes the loss, trains, evaluates and reports; the model
needs no forward(). The module must be importable where the trials run (same PYTHONPATH on Dask
workers).
"""

from __future__ import annotations

import torch
from torch import nn


class TwoLayerVAE(nn.Module):
    def __init__(self, latent_dim: int, image_shape: tuple[int, int, int], hidden: int = 256) -> None:
        super().__init__()
        pixels = image_shape[0] * image_shape[1] * image_shape[2]
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(pixels, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                                     nn.Linear(hidden, hidden), nn.ReLU())
        self.to_mean = nn.Linear(hidden, latent_dim)
        self.to_log_var = nn.Linear(hidden, latent_dim)
        self.decoder = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                     nn.Linear(hidden, pixels), nn.Unflatten(1, image_shape))

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.encoder(images)
        return self.to_mean(features), self.to_log_var(features)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.decoder(latents)


def build(latent_dim: int, image_shape: tuple[int, int, int]) -> nn.Module:
    return TwoLayerVAE(latent_dim, image_shape)
