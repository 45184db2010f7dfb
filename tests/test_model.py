import dataclasses

import numpy as np
import pytest
import torch

from torch.profiler import profile

from latentsweep.model import (ConvVAE, MlpConfig, MlpVAE, VAEConfig, conv_stage_sides, count_parameters, vae_forward,
                               vae_loss_terms)


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


@pytest.mark.parametrize("kwargs", [{"latent_dim": 0}, {"latent_dim": -3}, {"image_size": 1}, {"conv_channels": (16,)},
                                    {"image_size": 64, "conv_channels": (16, 32)}])
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


# --- The conv network derived from the image shape (issue 24) ------------------------------------

@pytest.mark.parametrize("shape, channels, feature_map", [
    ((1, 28, 28), (16, 32), (7, 7)),  # MNIST: two stages, as always
    ((3, 32, 32), (16, 32), (8, 8)),  # CIFAR-10
    ((1, 40, 40), (16, 32, 64), (5, 5)),
    ((3, 30, 26), (16, 32), (7, 6)),  # odd sides on the way down: 15 and 13
    ((3, 128, 96), (16, 32, 64, 128), (8, 6)),
    ((1, 7, 5), (16,), (3, 2)),  # already small: one stage
])
def test_the_conv_network_follows_the_image_shape_back_to_exactly_its_size(shape, channels, feature_map):
    """Stride-2 stages until the longer side is at most 8, channels doubling; the decoder returns exactly
    the input's shape, odd sides included."""
    config = VAEConfig(latent_dim=5, image_channels=shape[0], image_size=shape[1], image_width=shape[2])
    model = ConvVAE(config)
    assert config.conv_channels == channels and model.feature_shape == (channels[-1], *feature_map)
    assert conv_stage_sides(*shape[1:])[-1] == feature_map
    images = torch.rand(2, *shape)
    output = model(images, generator=torch.Generator().manual_seed(0))
    assert output.logits.shape == images.shape and output.mean.shape == (2, 5)
    assert model.decode(torch.zeros(3, 5)).shape == (3, *shape)
    mlp = MlpVAE(MlpConfig(latent_dim=5, image_channels=shape[0], image_size=shape[1], image_width=shape[2]))
    assert mlp(images).logits.shape == images.shape


def legacy_conv_vae(latent_dim: int) -> torch.nn.Module:
    """The conv network as model.py wrote it before the shape was a parameter (two fixed stages for 1x28x28),
    typed out again here so that the derived network can be held against it."""
    from torch import nn

    encoder = nn.Sequential(nn.Conv2d(1, 16, 4, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 4, 2, 1), nn.ReLU(), nn.Flatten(),
                            nn.Linear(32 * 7 * 7, 256), nn.ReLU(), nn.Linear(256, 2 * latent_dim))
    decoder = nn.Sequential(nn.Linear(latent_dim, 256), nn.ReLU(), nn.Linear(256, 32 * 7 * 7), nn.ReLU(),
                            nn.Unflatten(1, (32, 7, 7)), nn.ConvTranspose2d(32, 16, 4, 2, 1), nn.ReLU(),
                            nn.ConvTranspose2d(16, 1, 4, 2, 1))
    return nn.ModuleDict({"encoder": encoder, "decoder": decoder})


def test_for_mnist_the_network_and_its_seeded_weights_are_the_legacy_ones():
    torch.manual_seed(3)
    legacy = legacy_conv_vae(13)
    torch.manual_seed(3)
    derived = ConvVAE(VAEConfig(latent_dim=13))
    legacy_state, derived_state = legacy.state_dict(), derived.state_dict()
    assert list(derived_state) == list(legacy_state)
    for name, tensor in legacy_state.items():
        assert torch.equal(derived_state[name], tensor), name
    assert [type(m).__name__ for m in derived.decoder] == [type(m).__name__ for m in legacy["decoder"]]
    images = torch.rand(2, 1, 28, 28)
    assert torch.equal(derived.decode(derived.encode(images)[0]), legacy["decoder"](legacy["encoder"](images)[:, :13]))


def test_a_config_written_before_image_width_reads_as_square():
    from latentsweep.architectures import stored_model_config

    old = {"latent_dim": 4, "image_size": 28, "image_channels": 1, "conv_channels": [16, 32], "hidden_dim": 256}
    assert VAEConfig(**old).image_shape == (1, 28, 28)
    assert stored_model_config("conv", old) == dataclasses.asdict(VAEConfig(latent_dim=4))
    assert stored_model_config("conv", {**old, "image_width": 20}) != dataclasses.asdict(VAEConfig(latent_dim=4))


def test_the_feature_classifier_for_mnist_is_the_legacy_network_and_follows_other_shapes():
    from torch import nn

    from latentsweep.classifier import FeatureClassifier

    # As classifier.py wrote it before the shape was a parameter.
    torch.manual_seed(5)
    legacy = nn.ModuleDict({
        "body": nn.Sequential(nn.Conv2d(1, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(), nn.Flatten(),
                              nn.Dropout(0.25), nn.Linear(64 * 7 * 7, 128), nn.ReLU()),
        "head": nn.Sequential(nn.Dropout(0.25), nn.Linear(128, 10))})
    torch.manual_seed(5)
    derived = FeatureClassifier(10, (1, 28, 28))
    assert list(derived.state_dict()) == list(legacy.state_dict())
    assert all(torch.equal(derived.state_dict()[name], tensor) for name, tensor in legacy.state_dict().items())
    colour = FeatureClassifier(4, (3, 26, 30))
    assert [m.in_channels for m in colour.body if isinstance(m, nn.Conv2d)] == [3, 32]
    assert tuple(colour(torch.rand(2, 3, 26, 30)).shape) == (2, 4)
    assert tuple(colour.features(torch.rand(2, 3, 26, 30)).shape) == (2, 128)


def test_a_network_describes_its_own_layers_for_any_shape():
    """The report's model sentence is read from the modules (architectures.describe), not restated beside them."""
    from latentsweep.architectures import describe

    conv = describe("conv", 4, (3, 26, 30))
    # 26x30 -> 13x15 -> 6x7: two stages, 32 channels of 6x7 features flattened into the hidden layer
    assert conv.startswith("convolutional VAE (conv); encoder conv 4x4/2 (3->16) -> conv 4x4/2 (16->32) -> "
                           "linear 1344->256 -> linear 256->8 (mean and log-variance)")
    assert conv.endswith("transposed conv 4x4/2 (32->16) -> transposed conv 4x4/2 (16->3) (Bernoulli logits)")
    assert describe("mlp", 2, (1, 28, 28)).endswith("encoder linear 784->400 -> linear 400->4 (mean and log-variance); "
                                                    "decoder linear 2->400 -> linear 400->784 (Bernoulli logits)")
    assert describe("my_pkg.vae:build", 2, (1, 28, 28)) == ("the user's architecture my_pkg.vae:build (its builder's "
                                                           "module, imported by name)")
