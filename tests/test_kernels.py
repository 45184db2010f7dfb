"""kernels.py: the CPU kernel choice for image layers changes speed, not results or weights."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.profiler import profile

from latentsweep.kernels import AtenConvTranspose2d, use_fast_cpu_kernels
from latentsweep.model import ConvVAE, VAEConfig
from latentsweep.storage import state_dict_sha256


def _image_layers(channels_out=1):
    torch.manual_seed(0)
    plain = torch.nn.ConvTranspose2d(16, channels_out, kernel_size=4, stride=2, padding=1)
    native = AtenConvTranspose2d(16, channels_out, kernel_size=4, stride=2, padding=1)
    native.load_state_dict(plain.state_dict())
    return plain, native


def _aten_ops(run):
    with profile() as profiler:
        run()
    return {event.key for event in profiler.key_averages()}


@pytest.mark.parametrize("channels_out", [1, 3])
def test_the_image_layer_runs_aten_on_cpu_with_the_plain_layers_outputs_and_gradients(channels_out):
    plain, native = _image_layers(channels_out)
    x = torch.rand(6, 16, 14, 14)
    upstream = torch.randn(6, channels_out, 28, 28)
    results = []
    for layer in (plain, native):
        inputs = x.clone().requires_grad_()
        output = layer(inputs)
        output.backward(upstream)
        results.append((output.detach(), inputs.grad, layer.weight.grad, layer.bias.grad))
    for expected, got in zip(*results):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert "aten::slow_conv_transpose2d" in _aten_ops(lambda: native(x))
    assert "aten::slow_conv_transpose2d" not in _aten_ops(lambda: plain(x))


def test_the_image_layer_is_the_plain_layer_under_autocast_and_in_float64():
    plain, native = _image_layers()
    x = torch.rand(4, 16, 14, 14)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        # The plain layer's own kernels, whichever the CPU's backend picks for bf16 (on a CPU without bf16
        # instructions oneDNN declines and ATen's slow_conv_transpose2d serves the plain layer too).
        assert _aten_ops(lambda: native(x)) == _aten_ops(lambda: plain(x))
        expected, got = plain(x), native(x)
    assert got.dtype == torch.bfloat16
    assert torch.equal(got, expected)
    plain, native = plain.double(), native.double()
    assert torch.equal(native(x.double()), plain(x.double()))


def test_fast_kernels_switch_only_the_image_layer_and_keep_weights_and_decodes():
    torch.manual_seed(0)
    plain = ConvVAE(VAEConfig(latent_dim=3))
    fast = copy.deepcopy(plain)
    before = state_dict_sha256(fast.state_dict())
    assert use_fast_cpu_kernels(fast) is fast
    assert type(fast.decoder[-1]) is AtenConvTranspose2d and type(fast.decoder[5]) is torch.nn.ConvTranspose2d
    assert type(plain.decoder[-1]) is torch.nn.ConvTranspose2d  # model.py stays plain
    assert state_dict_sha256(fast.state_dict()) == before
    latents = torch.randn(5, 3)
    torch.testing.assert_close(fast.decode(latents), plain.decode(latents), rtol=1e-5, atol=1e-5)
    assert "aten::slow_conv_transpose2d" in _aten_ops(lambda: fast.decode(latents))
