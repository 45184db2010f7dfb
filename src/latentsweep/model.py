"""The VAEs latentsweep trains: plain networks for images of any size, grey or colour. Imports only torch.

Every model offers `encode(images) -> (mean, log_var)` and `decode(latents) -> logits` (Bernoulli
logits shaped like the images); `vae_forward` turns those two into one training forward pass, so a
user's own network needs nothing else (architectures.py checks it).

ConvVAE ("conv", the default), derived from the image shape (C, H, W):
  Encoder: stages of conv 4x4 stride 2 padding 1 -> ReLU, each halving the feature map (rounding down)
           with wider channels (16, 32, 64, ...), until its longer side is at most 8 (at least one stage)
           -> flatten -> linear (hidden) -> ReLU -> linear (2 * latent_dim) = mean, log-variance
  Decoder: linear (hidden) -> ReLU -> linear (features) -> ReLU -> the stages mirrored as transposed
           convs 4x4 stride 2, each doubling the map (plus one row or column where the encoder rounded
           down: output_padding), the last to C channels = Bernoulli logits per pixel, exactly H x W.
  For 1x28x28: two stages (28 -> 14 -> 7, channels 16 and 32), hidden 256, about 0.84 M parameters,
  the same layers in the same order as before the shape was a parameter, so a seed gives the same
  weights; the fully connected layer gives the decoder enough capacity that the latent size, not the
  network, limits quality.

MlpVAE ("mlp"): the pytorch/examples VAE, pixels -> 400 -> (mean, log-variance) and z -> 400 -> pixels.

A checkpoint stores `dataclasses.asdict(config)` as "model_config", so a model is rebuilt with
`ConvVAE(VAEConfig(**checkpoint["model_config"]))` (or MlpVAE(MlpConfig(...))); a config written
before `image_width` existed reads as square.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


MNIST_SHAPE = (1, 28, 28)  # (channels, height, width): the default, and what files written before shapes were recorded hold
MAX_FEATURE_SIDE = 8  # the conv encoder halves the map until its longer side is at most this
FIRST_CHANNELS = 16  # the first stage's channels; each later stage doubles them


def conv_stage_sides(height: int, width: int) -> list[tuple[int, int]]:
    """The feature map's (height, width) after each stride-2 stage: conv 4x4 stride 2 padding 1 maps a side
    n to n // 2; stages go on until the longer side is at most MAX_FEATURE_SIDE, at least one."""
    sides = [(height // 2, width // 2)]
    while max(sides[-1]) > MAX_FEATURE_SIDE:
        sides.append((sides[-1][0] // 2, sides[-1][1] // 2))
    return sides


@dataclass(frozen=True)
class VAEConfig:
    latent_dim: int = 10
    image_size: int = 28  # the height, and the width unless image_width says otherwise
    image_channels: int = 1
    conv_channels: tuple[int, ...] | None = None  # one per stage; None: derived from the shape (16, 32, ...)
    hidden_dim: int = 256
    image_width: int | None = None  # None: square

    def __post_init__(self) -> None:
        # JSON round trips turn tuples into lists; keep the config hashable and comparable.
        width = self.image_size if self.image_width is None else int(self.image_width)
        object.__setattr__(self, "image_width", width)
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim must be at least 1, got {self.latent_dim}")
        if min(self.image_size, width) < 2:
            raise ValueError(f"the image must be at least 2x2 pixels, got {self.image_size}x{width}")
        stages = len(conv_stage_sides(self.image_size, width))
        channels = (tuple(FIRST_CHANNELS * 2 ** stage for stage in range(stages)) if self.conv_channels is None
                    else tuple(int(c) for c in self.conv_channels))
        object.__setattr__(self, "conv_channels", channels)
        if len(channels) != stages or min(channels) < 1:
            raise ValueError(f"conv_channels must be {stages} positive integers for "
                             f"{self.image_size}x{width} images (one per stage), got {channels}")
        if self.hidden_dim < 1 or self.image_channels < 1:
            raise ValueError("hidden_dim and image_channels must be positive")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.image_channels, self.image_size, self.image_width)


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
    title: str  # what the network is, in a few words

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_var = self.encoder(images).chunk(2, dim=1)
        return mean, log_var

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits; `torch.sigmoid` of them is the reconstructed image in [0, 1]."""
        return self.decoder(latents)

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> VAEOutput:
        return vae_forward(self, images, generator)

    def describe(self) -> str:
        """The network's layers in words, read from its own modules (ReLUs and reshapes left out), e.g.
        'encoder conv 4x4/2 (1->16) -> ... -> linear 256->10 (mean and log-variance); decoder linear 5->256 -> ...'."""
        return (f"encoder {layers_text(self.encoder)} (mean and log-variance); "
                f"decoder {layers_text(self.decoder)} (Bernoulli logits)")


def layers_text(network: nn.Module) -> str:
    """The convolutions and linear maps of `network`, in order: 'conv 4x4/2 (1->16) -> linear 3136->256'."""
    names = []
    for layer in network.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
            kind = "transposed conv" if isinstance(layer, nn.ConvTranspose2d) else "conv"
            names.append(f"{kind} {layer.kernel_size[0]}x{layer.kernel_size[1]}/{layer.stride[0]} "
                         f"({layer.in_channels}->{layer.out_channels})")
        elif isinstance(layer, nn.Linear):
            names.append(f"linear {layer.in_features}->{layer.out_features}")
    return " -> ".join(names)


class ConvVAE(VAE):
    title = "convolutional VAE"

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        channels, height, width = config.image_shape
        sides = conv_stage_sides(height, width)
        self.feature_shape = (config.conv_channels[-1], *sides[-1])
        features = config.conv_channels[-1] * sides[-1][0] * sides[-1][1]
        encoder: list[nn.Module] = []
        for into, out in zip((channels, *config.conv_channels), config.conv_channels):
            encoder += [nn.Conv2d(into, out, kernel_size=4, stride=2, padding=1), nn.ReLU()]
        self.encoder = nn.Sequential(
            *encoder,
            nn.Flatten(),
            nn.Linear(features, config.hidden_dim),
            nn.ReLU(),
            nn.Linear(config.hidden_dim, 2 * config.latent_dim),
        )
        decoder: list[nn.Module] = [
            nn.Linear(config.latent_dim, config.hidden_dim),
            nn.ReLU(),
            nn.Linear(config.hidden_dim, features),
            nn.ReLU(),
            nn.Unflatten(1, self.feature_shape),
        ]
        # Mirror the stages: from each map's side back to the side before it, one more where it was odd.
        before = [(height, width), *sides[:-1]]
        outs = [*reversed(config.conv_channels[:-1]), channels]
        for stage, (into, out) in enumerate(zip(reversed(config.conv_channels), outs)):
            (target_h, target_w), (side_h, side_w) = before[-1 - stage], sides[-1 - stage]
            decoder.append(nn.ConvTranspose2d(into, out, kernel_size=4, stride=2, padding=1,
                                              output_padding=(target_h - 2 * side_h, target_w - 2 * side_w)))
            if stage < len(sides) - 1:  # ReLU between stages; the last gives logits
                decoder.append(nn.ReLU())
        self.decoder = nn.Sequential(*decoder)


@dataclass(frozen=True)
class MlpConfig:
    latent_dim: int = 10
    image_size: int = 28  # the height, and the width unless image_width says otherwise
    image_channels: int = 1
    hidden_dim: int = 400
    image_width: int | None = None  # None: square

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_width", self.image_size if self.image_width is None else int(self.image_width))
        if min(self.latent_dim, self.hidden_dim, self.image_size, self.image_width, self.image_channels) < 1:
            raise ValueError(f"every size of an MLP VAE must be positive, got {self}")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.image_channels, self.image_size, self.image_width)


class MlpVAE(VAE):
    """The fully connected VAE of pytorch/examples (mnist VAE): one hidden layer of 400 units each way."""

    title = "fully connected VAE, as in pytorch/examples"

    def __init__(self, config: MlpConfig) -> None:
        super().__init__()
        self.config = config
        self.image_shape = config.image_shape
        pixels = config.image_channels * config.image_size * config.image_width
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(pixels, config.hidden_dim), nn.ReLU(),
                                     nn.Linear(config.hidden_dim, 2 * config.latent_dim))
        self.decoder = nn.Sequential(nn.Linear(config.latent_dim, config.hidden_dim), nn.ReLU(),
                                     nn.Linear(config.hidden_dim, pixels), nn.Unflatten(1, self.image_shape))


def vae_forward(model: nn.Module, images: torch.Tensor, generator: torch.Generator | None = None,
                prefix_sizes: torch.Tensor | None = None) -> VAEOutput:
    """Encode, draw one latent sample per image by reparameterisation, decode: any model with
    `encode` and `decode`. The noise comes from `generator` when given, so training can be replayed.
    With `prefix_sizes` (N,), image i is decoded from its code's first prefix_sizes[i] units, the rest at the
    prior's mean, 0: the size-k model inside an ordered one (nested dropout, below)."""
    mean, log_var = model.encode(images)
    noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    latents = mean + noise * torch.exp(0.5 * log_var)
    if prefix_sizes is not None:
        latents = keep_prefix(latents, prefix_sizes)
    return VAEOutput(model.decode(latents), mean, log_var)


def vae_loss_terms(output: VAEOutput, images: torch.Tensor, prefix_sizes: torch.Tensor | None = None) -> LossTerms:
    """Per-sample negative ELBO terms, in nats: the Bernoulli decoder's -log p(x|z) summed over pixels, and the KL
    divergence of the Gaussian posterior from N(0, I) in closed form, -1/2 sum(1 + log s^2 - m^2 - s^2) (Kingma and
    Welling 2014, "Auto-Encoding Variational Bayes", Appendix B). The training loss is mean(reconstruction + beta * kl).
    With `prefix_sizes`, the KL of each image's prefix alone: the negative ELBO of the size-k model it was decoded by."""
    reconstruction = F.binary_cross_entropy_with_logits(output.logits, images, reduction="none").flatten(1).sum(1)
    per_unit = -0.5 * (1 + output.log_var - output.mean.pow(2) - output.log_var.exp())
    if prefix_sizes is not None:
        per_unit = per_unit * prefix_mask(prefix_sizes, per_unit.shape[1]).to(per_unit.dtype)
    return LossTerms(reconstruction, per_unit.sum(1))


# An ordered code (nested dropout, Rippel, Gelbart and Adams 2014): each training image is decoded from a prefix of
# its code, the first k units with k drawn uniformly from 1..T, so that every prefix is trained to be a size-k VAE and
# the first units carry the most. Uniform, not the paper's geometric, because every prefix size is to be read as a
# model of its own. The expected loss is the mean over k of the size-k models' negative ELBOs, at one decode a step.
def prefix_mask(prefix_sizes: torch.Tensor, latent_dim: int) -> torch.Tensor:
    """(N, latent_dim) booleans: unit j of row i is inside its prefix, j < prefix_sizes[i]."""
    return torch.arange(latent_dim, device=prefix_sizes.device) < prefix_sizes[:, None]


def keep_prefix(latents: torch.Tensor, prefix_sizes: torch.Tensor) -> torch.Tensor:
    """`latents` (N, latent_dim) with each row's units past its prefix size set to the prior's mean, 0."""
    return latents * prefix_mask(prefix_sizes, latents.shape[1]).to(latents.dtype)


def nested_prefix_sizes(count: int, latent_dim: int, generator: torch.Generator | None,
                        device: torch.device) -> torch.Tensor | None:
    """Each of `count` images' prefix size, uniform on 1..latent_dim; None for a one-unit code, whose only prefix is
    the whole code (so an ordered size-1 model trains exactly as a plain one, drawing nothing)."""
    if latent_dim == 1:
        return None
    return torch.randint(1, latent_dim + 1, (count,), generator=generator, device=device)


class Prefix(nn.Module):
    """The size-k model inside an ordered one (`model`, trained with nested dropout): it encodes to the first k units
    of the code and decodes a k-unit code with the units past it at the prior's mean, 0, as training decoded them.
    Everything that measures a model measures it as it would a plain size-k VAE."""

    def __init__(self, model: nn.Module, size: int, latent_dim: int) -> None:
        super().__init__()
        if not 1 <= size <= latent_dim:
            raise ValueError(f"a prefix of a {latent_dim}-unit code has 1 to {latent_dim} units, not {size}")
        self.model, self.size, self.latent_dim = model, size, latent_dim

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_var = self.model.encode(images)
        return mean[:, :self.size], log_var[:, :self.size]

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        rest = latents.new_zeros(len(latents), self.latent_dim - self.size)
        return self.model.decode(torch.cat([latents, rest], 1))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
