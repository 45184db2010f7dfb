"""The ordered-latent VAE (issue 32, item 1): nested dropout's known cases. With T = 1 it is the plain VAE; a
prefix decode is the model decoding zeros in the remaining units; a prefix's KL is that of its units alone; the
prefix sizes are uniform on 1..T and replayable; a step trains only what its prefixes use; a killed ordered run
resumes bit-identically."""

from __future__ import annotations

import torch
from torch.distributions import Normal, kl_divergence

from latentsweep.architectures import ModelSpec
from latentsweep.evaluate import per_image_scores
from latentsweep.model import (MNIST_SHAPE, ConvVAE, Prefix, VAEConfig, nested_prefix_sizes, prefix_mask,
                               vae_forward, vae_loss_terms)
from latentsweep.storage import state_dict_sha256
from latentsweep.train import LAST_CHECKPOINT, TrainConfig, load_checkpoint, train_epoch, train_model

CPU = torch.device("cpu")


def small(latent_dim: int, seed: int = 0) -> ConvVAE:
    torch.manual_seed(seed)
    return ConvVAE(VAEConfig(latent_dim=latent_dim, conv_channels=(4, 8), hidden_dim=16))


def images(count: int = 64) -> torch.Tensor:
    return torch.rand(count, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def test_an_ordered_one_unit_model_trains_exactly_as_the_plain_one():
    trained = []
    for ordered_size in (None, 1):
        model = small(1)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        train_epoch(model, optimizer, images(), torch.arange(64), 16, 1.0, torch.Generator().manual_seed(0),
                    ordered_size=ordered_size)
        trained.append(state_dict_sha256(model.state_dict()))
    assert trained[0] == trained[1]
    assert nested_prefix_sizes(5, 1, torch.Generator(), CPU) is None  # nothing drawn: the same noise follows


def test_a_prefix_decode_is_the_model_decoding_zeros_in_the_remaining_units():
    model, batch = small(6).eval(), images(40)
    with torch.no_grad():
        mean, log_var = model.encode(batch)
        by_hand = torch.sigmoid(model.decode(torch.cat([mean[:, :2], torch.zeros(40, 4)], 1)))
    scores = per_image_scores(Prefix(model, 2, 6), batch, 16, seed=0)
    assert torch.allclose(torch.as_tensor(scores["mse"]), (batch - by_hand).pow(2).flatten(1).mean(1).double(), atol=1e-7)
    # the whole code is the plain model, to the bit; a shorter prefix is another model
    assert all((per_image_scores(Prefix(model, 6, 6), batch, 16, 0)[name] == plain).all()
               for name, plain in per_image_scores(model, batch, 16, 0).items())
    assert scores["mse"].mean() != per_image_scores(model, batch, 16, 0)["mse"].mean()
    # the prefix's KL is its first units' in closed form, as training's prefix loss counts it
    with torch.no_grad():
        terms = vae_loss_terms(vae_forward(model, batch, torch.Generator().manual_seed(0), torch.full((40,), 2)), batch,
                               torch.full((40,), 2))
    assert torch.allclose(torch.as_tensor(scores["kl"]).float(), terms.kl, atol=1e-5)


def test_a_prefixs_kl_is_the_kl_of_its_own_units_and_its_decoder_sees_only_them():
    model, batch = small(5), images(8)
    sizes = torch.tensor([1, 2, 3, 4, 5, 5, 2, 1])
    output = vae_forward(model, batch, torch.Generator().manual_seed(3), sizes)
    terms = vae_loss_terms(output, batch, sizes)
    posterior = Normal(output.mean, torch.exp(0.5 * output.log_var))
    per_unit = kl_divergence(posterior, Normal(torch.zeros_like(output.mean), torch.ones_like(output.mean)))
    expected = torch.stack([per_unit[row, :size].sum() for row, size in enumerate(sizes.tolist())])
    assert torch.allclose(terms.kl, expected, atol=1e-5)
    assert prefix_mask(torch.tensor([0, 2, 5]), 4).tolist() == [[False] * 4, [True, True, False, False], [True] * 4]
    # every image decoded from its first unit alone: the decoder's weights from units 2..5 get no gradient
    ones = torch.ones(8, dtype=torch.long)
    model.zero_grad()
    vae_loss_terms(vae_forward(model, batch, torch.Generator().manual_seed(3), ones), batch, ones).reconstruction.sum().backward()
    first_layer = next(layer for layer in model.decoder if isinstance(layer, torch.nn.Linear))
    assert first_layer.weight.grad[:, 1:].abs().max() == 0 and first_layer.weight.grad[:, 0].abs().max() > 0


def test_prefix_sizes_are_uniform_on_one_to_t_and_replayable():
    drawn = nested_prefix_sizes(20_000, 4, torch.Generator().manual_seed(1), CPU)
    counts = torch.bincount(drawn, minlength=5).tolist()
    assert counts[0] == 0 and all(abs(count - 5000) < 300 for count in counts[1:])
    again = nested_prefix_sizes(20_000, 4, torch.Generator().manual_seed(1), CPU)
    assert torch.equal(drawn, again)


def test_ordered_training_differs_from_plain_and_a_killed_ordered_run_resumes_bit_identically(tmp_path):
    spec = ModelSpec("conv", 3, MNIST_SHAPE)
    data = images()

    def train(folder, epochs, ordered=True):
        return train_model(tmp_path / folder, spec, TrainConfig(epochs=epochs, batch_size=16, ordered=ordered),
                           data[:48], data[48:], CPU, show_progress=False)

    train("straight", 3)
    train("killed", 1)  # as if killed after epoch 1's checkpoint
    resumed = train("killed", 3)
    train("plain", 3, ordered=False)
    straight, continued, plain = (load_checkpoint(tmp_path / name / LAST_CHECKPOINT) for name in ("straight", "killed", "plain"))
    assert state_dict_sha256(straight["model_state"]) == state_dict_sha256(continued["model_state"])
    assert [row["val_loss"] for row in straight["history"]] == [row["val_loss"] for row in resumed.history]
    assert state_dict_sha256(plain["model_state"]) != state_dict_sha256(straight["model_state"])
    assert straight["train_config"]["ordered"] is True
