import dataclasses

import numpy as np
import pytest
import torch

from torch.profiler import profile

from latentsweep.model import ConvVAE, MlpConfig, MlpVAE, VAEConfig, count_parameters, vae_forward, vae_loss_terms


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


def test_the_mlp_is_the_pytorch_examples_shape():
    model = MlpVAE(MlpConfig(latent_dim=20))
    shapes = [tuple(p.shape) for p in model.parameters()]
    # fc1 784->400, fc2 400->2z (mean and log-variance together), fc3 z->400, fc4 400->784
    assert shapes == [(400, 784), (400,), (40, 400), (40,), (400, 20), (400,), (784, 400), (784,)]
    assert count_parameters(model) == 784 * 400 + 400 + 400 * 40 + 40 + 20 * 400 + 400 + 400 * 784 + 784
    output = vae_forward(model, torch.rand(3, 1, 28, 28), torch.Generator().manual_seed(0))
    assert output.logits.shape == (3, 1, 28, 28) and output.mean.shape == (3, 20)
