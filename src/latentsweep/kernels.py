"""CPU kernel choices that make training and evaluation faster without changing what a model is.

Applied by training and evaluation to the model they run (`use_fast_cpu_kernels`), never inside
model.py: the networks stay plain PyTorch, and a checkpoint or export holds the same weights and
names either way.

One choice today: a transposed convolution with few output channels (the conv VAE's image layer)
runs on ATen's own kernel on a CPU. For a 1-channel output oneDNN (PyTorch's default CPU backend)
picks a kernel that took 1.8 ms per 128-image batch here (ONEDNN_VERBOSE=1), against about 0.45 ms
for ATen's im2col-and-matrix-product kernel, with the same result up to rounding; `python
benchmarks/bench_cpu_levers.py` measures what it gives the whole model (docs/performance.md).
"""

from __future__ import annotations

import torch
from torch import nn

IMAGE_CHANNELS_AT_MOST = 3  # grey or RGB output layers; wider layers are oneDNN's strength


class AtenConvTranspose2d(nn.ConvTranspose2d):
    """nn.ConvTranspose2d whose fp32 forward on a CPU runs on ATen's kernel; gradients still come from
    the default backend. Elsewhere (GPU, other dtypes, autocast, torch.compile or torch.export
    tracing) it is the plain layer."""

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if (output_size is None and self.groups == 1 and x.device.type == "cpu" and x.dtype == self.weight.dtype == torch.float32
                and not torch.is_autocast_enabled("cpu") and not torch.compiler.is_compiling()):
            return torch.ops.aten.slow_conv_transpose2d(x, self.weight, self.kernel_size, self.bias, self.stride,
                                                        self.padding, self.output_padding, self.dilation)
        return super().forward(x, output_size)


def use_fast_cpu_kernels(model: nn.Module) -> nn.Module:
    """Switch `model`'s image-producing transposed convolutions to AtenConvTranspose2d, in place.

    Only the class changes (same parameters, same state_dict), so this is safe on any model,
    a user's included; returns the model.
    """
    for module in model.modules():
        if type(module) is nn.ConvTranspose2d and module.out_channels <= IMAGE_CHANNELS_AT_MOST:
            module.__class__ = AtenConvTranspose2d
    return model
