"""A lean convolutional VAE for 28x28 grey images. Imports only torch.

Encoder:  conv 4x4 stride 2 (1 -> c1) -> ReLU -> conv 4x4 stride 2 (c1 -> c2) -> ReLU
          -> flatten (c2*7*7) -> linear (hidden) -> ReLU -> linear (2 * latent_dim) = mean, log-variance
Decoder:  linear (hidden) -> ReLU -> linear (c2*7*7) -> ReLU -> transposed conv 4x4 stride 2 (c2 -> c1)
          -> ReLU -> transposed conv 4x4 stride 2 (c1 -> 1) = Bernoulli logits per pixel

With the defaults (c1=16, c2=32, hidden=256) it has about 0.84 M parameters and trains at several
thousand images per second on a 2-core CPU; the fully connected layer gives the decoder enough
capacity that the latent size, not the network, limits reconstruction quality.

A checkpoint stores `dataclasses.asdict(config)` as "model_config", so a model is rebuilt with
`ConvVAE(VAEConfig(**checkpoint["model_config"]))`.

`StackedConvVAE` computes several ConvVAEs that differ only in latent size as one network, so a
sweep's latent sizes train in one pass over the data (`latentsweep run --stack-sizes`); each
member's arithmetic is its own model's, so training the stack is training the models one by one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple, Sequence

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


class ImageConvTranspose2d(nn.ConvTranspose2d):
    """The decoder's last layer, few channels out: nn.ConvTranspose2d, run on a CPU by ATen's own kernel.

    For a 1-channel output oneDNN (PyTorch's default CPU backend) picks a kernel that took 1.8 ms per
    128-image batch here (ONEDNN_VERBOSE=1), against about 0.45 ms for ATen's im2col-and-matrix-product
    kernel, with the same result up to rounding; `python benchmarks/bench_cpu_levers.py` measures what
    it gives the whole model (README, Speed). The gradients still come from the default backend.
    Elsewhere (GPU, other dtypes, autocast, and while torch.export traces the model for ONNX) this is
    the plain layer.
    """

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if (output_size is None and self.groups == 1 and x.device.type == "cpu" and x.dtype == self.weight.dtype == torch.float32
                and not torch.is_autocast_enabled("cpu") and not torch.compiler.is_compiling()):
            return torch.ops.aten.slow_conv_transpose2d(x, self.weight, self.kernel_size, self.bias, self.stride,
                                                        self.padding, self.output_padding, self.dilation)
        return super().forward(x, output_size)


class ConvVAE(nn.Module):
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
            ImageConvTranspose2d(c1, config.image_channels, kernel_size=4, stride=2, padding=1),
        )

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_var = self.encoder(images).chunk(2, dim=1)
        return mean, log_var

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits; `torch.sigmoid` of them is the reconstructed image in [0, 1]."""
        return self.decoder(latents)

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> VAEOutput:
        """Encode, draw one latent sample per image by reparameterisation, decode.

        The noise comes from `generator` when given, so training can be replayed exactly.
        """
        mean, log_var = self.encode(images)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        latents = mean + noise * torch.exp(0.5 * log_var)
        return VAEOutput(self.decode(latents), mean, log_var)


def vae_loss_terms(output: VAEOutput, images: torch.Tensor) -> LossTerms:
    """Per-sample negative ELBO terms; the training loss is mean(reconstruction + beta * kl)."""
    reconstruction = F.binary_cross_entropy_with_logits(output.logits, images, reduction="none").flatten(1).sum(1)
    kl = -0.5 * (1 + output.log_var - output.mean.pow(2) - output.log_var.exp()).sum(1)
    return LossTerms(reconstruction, kl)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class StackedConvVAE(nn.Module):
    """K ConvVAEs that differ only in latent size, as one network whose layers are K times wider.

    Every ConvVAE parameter becomes one tensor with a leading member axis: the convolutions run
    as grouped convolutions (groups=K), the linear layers as batched matrix products. Latent
    sizes smaller than the largest, D, are zero-padded: the padded rows of the encoder's last
    layer and columns of the decoder's first are zero and the padded noise is zero, so the padded
    latent slots are exactly 0, add exactly 0 to the KL term and get exactly zero gradients, and
    Adam leaves them at zero. Each member therefore computes what its own ConvVAE computes, up to
    the rounding of the wider kernels. `load_member`/`member_tensors` move weights (or any tensors
    shaped like them, such as Adam's moments) between a member and the stack.
    """

    # The ConvVAE parameters whose latent-size axis is padded to D in the stack.
    _MEAN_AND_LOG_VAR = ("encoder.7.weight", "encoder.7.bias")  # (2d, ...) stacked as (K, 2, D, ...)
    _LATENT_INPUT = "decoder.0.weight"  # (hidden, d) stacked as (K, hidden, D)

    def __init__(self, configs: Sequence[VAEConfig]) -> None:
        super().__init__()
        if not configs:
            raise ValueError("a stack needs at least one model config")
        shared = {**dataclasses.asdict(configs[0]), "latent_dim": 0}
        if any({**dataclasses.asdict(config), "latent_dim": 0} != shared for config in configs):
            raise ValueError("stacked models must differ in latent_dim only")
        self.configs = tuple(configs)
        self.latent_dims = tuple(config.latent_dim for config in configs)
        self.max_latent_dim = max(self.latent_dims)
        template = ConvVAE(dataclasses.replace(configs[0], latent_dim=self.max_latent_dim))
        self.feature_shape = template.feature_shape
        self.names = [name for name, _ in template.named_parameters()]
        self.stacked = nn.ParameterDict()
        for name, parameter in template.named_parameters():
            shape = parameter.shape
            if name in self._MEAN_AND_LOG_VAR:
                shape = (2, self.max_latent_dim, *shape[1:])
            self.stacked[self._key(name)] = nn.Parameter(torch.zeros(len(configs), *shape))

    @staticmethod
    def _key(name: str) -> str:
        return name.replace(".", "_")  # ParameterDict keys cannot contain dots

    def member_slot(self, tensor: torch.Tensor, name: str, member: int) -> torch.Tensor:
        """The view of a stacked `tensor` (a parameter, or a tensor shaped like it) that holds member's `name`."""
        latent_dim = self.latent_dims[member]
        if name in self._MEAN_AND_LOG_VAR or name == self._LATENT_INPUT:
            return tensor[member, :, :latent_dim]
        return tensor[member]

    @torch.no_grad()
    def load_member(self, member: int, tensors: dict[str, torch.Tensor],
                    into: dict[str, torch.Tensor] | None = None) -> None:
        """Copy a ConvVAE's `tensors` (by parameter name) into member's slots of `into` (default: the weights)."""
        into = into if into is not None else self.stacked_by_name()
        for name in self.names:
            slot = self.member_slot(into[name], name, member)
            slot.copy_(tensors[name].reshape(slot.shape))

    @torch.no_grad()
    def member_tensors(self, member: int, source: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Member's slots of `source` (default: the weights) as a copy shaped like its ConvVAE's parameters."""
        source = source if source is not None else self.stacked_by_name()
        result = {}
        for name in self.names:
            slot = self.member_slot(source[name], name, member)
            result[name] = (slot.flatten(0, 1) if name in self._MEAN_AND_LOG_VAR else slot).clone()
        return result

    def stacked_by_name(self) -> dict[str, torch.Tensor]:
        """The stacked parameters keyed by the ConvVAE parameter names they hold."""
        return {name: self.stacked[self._key(name)] for name in self.names}

    def forward(self, images: torch.Tensor, generators: Sequence[torch.Generator | None]) -> VAEOutput:
        """images: (N, C, H, W) seen by every member, or (K, N, C, H, W) one batch per member.

        Member k draws its reparameterisation noise from generators[k] exactly as its ConvVAE's
        forward would (same shape, dtype and order); the outputs are (K, N, ...), with mean and
        log-variance zero beyond each member's latent size.
        """
        mean, log_var = self.encode(images)
        noise = torch.zeros_like(mean)
        for member, (generator, latent_dim) in enumerate(zip(generators, self.latent_dims, strict=True)):
            noise[member, :, :latent_dim] = torch.randn((mean.shape[1], latent_dim), generator=generator,
                                                        device=mean.device, dtype=mean.dtype)
        return VAEOutput(self.decode(mean + noise * torch.exp(0.5 * log_var)), mean, log_var)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.stacked_by_name()
        members = len(self.latent_dims)
        if images.dim() == 4:  # one batch for all members
            images = images.unsqueeze(0).expand(members, *images.shape)
        # Members side by side as channel groups, channels-last: in that layout oneDNN's grouped
        # convolutions skip the layout conversions they make around each call in the default one.
        x = images.transpose(0, 1).flatten(1, 2).contiguous(memory_format=torch.channels_last)
        x = F.relu(F.conv2d(x, p["encoder.0.weight"].flatten(0, 1), p["encoder.0.bias"].flatten(), stride=2,
                            padding=1, groups=members))
        x = F.relu(F.conv2d(x, p["encoder.2.weight"].flatten(0, 1), p["encoder.2.bias"].flatten(),
                            stride=2, padding=1, groups=members))
        x = x.unflatten(1, (members, -1)).flatten(2).transpose(0, 1)  # (K, N, features), as ConvVAE flattens
        x = F.relu(_batched_linear(x, p["encoder.5.weight"], p["encoder.5.bias"]))
        statistics = _batched_linear(x, p["encoder.7.weight"].flatten(1, 2), p["encoder.7.bias"].flatten(1))
        mean, log_var = statistics.chunk(2, dim=2)
        return mean, log_var

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(K, N, D) latents -> (K, N, C, H, W) Bernoulli logits."""
        p = self.stacked_by_name()
        members, count = latents.shape[:2]
        x = F.relu(_batched_linear(latents, p["decoder.0.weight"], p["decoder.0.bias"]))
        x = F.relu(_batched_linear(x, p["decoder.2.weight"], p["decoder.2.bias"]))
        x = x.transpose(0, 1).reshape(count, members * self.feature_shape[0], *self.feature_shape[1:]).contiguous(
            memory_format=torch.channels_last)
        x = F.relu(F.conv_transpose2d(x, p["decoder.5.weight"].flatten(0, 1), p["decoder.5.bias"].flatten(),
                                      stride=2, padding=1, groups=members))
        x = F.conv_transpose2d(x, p["decoder.7.weight"].flatten(0, 1), p["decoder.7.bias"].flatten(),
                               stride=2, padding=1, groups=members)
        return x.unflatten(1, (members, -1)).transpose(0, 1)


def _batched_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """nn.Linear for each member: x (K, N, in), weight (K, out, in), bias (K, out) -> (K, N, out)."""
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))
