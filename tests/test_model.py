import dataclasses

import numpy as np
import pytest
import torch

from torch.profiler import profile

from latentsweep.model import ConvVAE, ImageConvTranspose2d, VAEConfig, count_parameters, vae_loss_terms


@pytest.mark.parametrize("latent_dim", [1, 5, 20])
def test_shapes(latent_dim):
    model = ConvVAE(VAEConfig(latent_dim=latent_dim))
    images = torch.rand(3, 1, 28, 28)
    output = model(images, generator=torch.Generator().manual_seed(0))
    assert output.logits.shape == images.shape
    assert output.mean.shape == output.log_var.shape == (3, latent_dim)
    assert model.decode(torch.zeros(2, latent_dim)).shape == (2, 1, 28, 28)


def test_default_parameter_count_is_documented():
    # README and model docstring say "about 0.84 M parameters" for the default architecture.
    assert count_parameters(ConvVAE(VAEConfig(latent_dim=20))) == 837_257


def test_loss_terms_match_independent_formulas():
    torch.manual_seed(0)
    model = ConvVAE(VAEConfig(latent_dim=4))
    images = torch.rand(5, 1, 28, 28)
    output = model(images, generator=torch.Generator().manual_seed(1))
    terms = vae_loss_terms(output, images)
    x = images.flatten(1).double().numpy()
    p = torch.sigmoid(output.logits).flatten(1).double().detach().numpy()
    bce = -(x * np.log(p) + (1 - x) * np.log(1 - p)).sum(1)
    mu, log_var = output.mean.double().detach().numpy(), output.log_var.double().detach().numpy()
    kl = 0.5 * (np.exp(log_var) + mu**2 - 1 - log_var).sum(1)
    np.testing.assert_allclose(terms.reconstruction.detach().numpy(), bce, rtol=1e-4)
    np.testing.assert_allclose(terms.kl.detach().numpy(), kl, rtol=1e-4, atol=1e-6)
    assert terms.reconstruction.shape == terms.kl.shape == (5,)


def test_kl_is_zero_when_the_posterior_is_the_prior():
    model = ConvVAE(VAEConfig(latent_dim=3))
    output = model(torch.rand(2, 1, 28, 28))
    zero = output._replace(mean=torch.zeros(2, 3), log_var=torch.zeros(2, 3))
    assert torch.equal(vae_loss_terms(zero, torch.rand(2, 1, 28, 28)).kl, torch.zeros(2))


def test_the_generator_makes_sampling_reproducible():
    model = ConvVAE(VAEConfig(latent_dim=3))
    images = torch.rand(2, 1, 28, 28)
    first = model(images, generator=torch.Generator().manual_seed(7)).logits
    second = model(images, generator=torch.Generator().manual_seed(7)).logits
    assert torch.equal(first, second)


def test_config_round_trips_through_a_checkpoint_dict():
    config = VAEConfig(latent_dim=7, conv_channels=(8, 16), hidden_dim=32)
    stored = dataclasses.asdict(config)
    stored["conv_channels"] = list(stored["conv_channels"])  # as JSON would give it back
    assert VAEConfig(**stored) == config
    model = ConvVAE(config)
    rebuilt = ConvVAE(VAEConfig(**stored))
    rebuilt.load_state_dict(model.state_dict())


@pytest.mark.parametrize("kwargs", [{"latent_dim": 0}, {"latent_dim": -3}, {"image_size": 30}, {"conv_channels": (16,)}])
def test_invalid_configs_are_refused(kwargs):
    with pytest.raises(ValueError):
        VAEConfig(**kwargs)


def _image_layers(channels_out=1):
    torch.manual_seed(0)
    plain = torch.nn.ConvTranspose2d(16, channels_out, kernel_size=4, stride=2, padding=1)
    native = ImageConvTranspose2d(16, channels_out, kernel_size=4, stride=2, padding=1)
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
        assert "aten::slow_conv_transpose2d" not in _aten_ops(lambda: native(x))
        expected, got = plain(x), native(x)
    assert got.dtype == torch.bfloat16
    assert torch.equal(got, expected)
    plain, native = plain.double(), native.double()
    assert torch.equal(native(x.double()), plain(x.double()))


def test_weights_of_the_earlier_plain_layer_load_and_decode_the_same():
    # Checkpoints written before the image layer existed hold a plain ConvTranspose2d's weights.
    torch.manual_seed(0)
    earlier = ConvVAE(VAEConfig(latent_dim=3))
    earlier.decoder[-1] = torch.nn.ConvTranspose2d(16, 1, kernel_size=4, stride=2, padding=1)
    model = ConvVAE(VAEConfig(latent_dim=3))
    model.load_state_dict(earlier.state_dict(), strict=True)
    latents = torch.randn(5, 3)
    torch.testing.assert_close(model.decode(latents), earlier.decode(latents), rtol=1e-5, atol=1e-5)
