"""IWAE bound, binarisation, the feature classifier, latent-space helpers and the issue-3 selection rules."""

import numpy as np
import pytest
import torch

from latentsweep import latent
from latentsweep.classifier import ClassifierConfig, FeatureClassifier, load_or_train, predict
from latentsweep.data import binarize
from latentsweep.evaluate import iwae_nll
from latentsweep.model import ConvVAE, VAEConfig, vae_loss_terms
from latentsweep.selection import select_combined

SMALL = VAEConfig(latent_dim=3, conv_channels=(4, 8), hidden_dim=16)


@pytest.fixture(scope="module")
def trained_small_vae():
    torch.manual_seed(0)
    model = ConvVAE(SMALL)
    images = torch.bernoulli(torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 0.6,
                             generator=torch.Generator().manual_seed(2))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(60):
        terms = vae_loss_terms(model(images), images)
        loss = (terms.reconstruction + terms.kl).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), images


def test_iwae_bound_is_below_the_elbo_and_tightens_with_more_samples(trained_small_vae):
    model, images = trained_small_vae
    with torch.no_grad():
        elbo_estimates = [(lambda t: (t.reconstruction + t.kl))(vae_loss_terms(model(images, generator=torch.Generator().manual_seed(s)), images))
                          for s in range(50)]
    neg_elbo = torch.stack(elbo_estimates).mean().item()
    k1 = iwae_nll(model, images, samples=1, seed=0).mean()
    k10 = iwae_nll(model, images, samples=10, seed=0).mean()
    k200 = iwae_nll(model, images, samples=200, seed=0).mean()
    assert k1 == pytest.approx(neg_elbo, rel=0.02)  # K = 1 is the ELBO in expectation
    assert k200 < k10 < k1
    assert k200 <= neg_elbo


def test_iwae_is_reproducible_and_decoding_in_slices_does_not_change_it(trained_small_vae):
    model, images = trained_small_vae
    a = iwae_nll(model, images[:8], samples=20, seed=3, images_per_chunk=8)
    b = iwae_nll(model, images[:8], samples=20, seed=3, images_per_chunk=8)
    np.testing.assert_array_equal(a, b)
    # Decoding the codes in slices (any size, even one not dividing K) changes only float rounding.
    for decode_rows in (7, 20, 10_000):
        sliced = iwae_nll(model, images[:8], samples=20, seed=3, images_per_chunk=8, decode_rows=decode_rows)
        np.testing.assert_allclose(sliced, a, rtol=1e-5)


def test_binarize_is_fixed_for_a_seed_and_follows_intensities():
    images = torch.full((2000, 1, 28, 28), 0.25)
    first, second = binarize(images, 5), binarize(images, 5)
    assert torch.equal(first, second) and set(first.unique().tolist()) <= {0.0, 1.0}
    assert first.mean().item() == pytest.approx(0.25, abs=0.01)
    assert not torch.equal(first, binarize(images, 6))


def test_classifier_is_trained_once_then_loaded_from_its_checksummed_cache(tmp_path):
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(200) % 10
    images = torch.rand(200, 1, 28, 28, generator=generator) * 0.2
    for i, label in enumerate(labels):
        images[i, 0, 2 * label: 2 * label + 6, 4:24] = 1.0  # a learnable class signal
    config = ClassifierConfig(epochs=15)
    first, record = load_or_train(tmp_path, "toy", images, labels, images, labels, 10, config)
    assert not record["cached"] and record["test_accuracy"] > 0.9 and len(record["sha256"]) == 64
    again, cached = load_or_train(tmp_path, "toy", images, labels, images, labels, 10, config)
    assert cached["cached"] and cached["test_accuracy"] == record["test_accuracy"]
    # The record a study writes into metrics.json must not depend on whether the cache was warm.
    assert cached["sha256"] == record["sha256"]
    assert {k: v for k, v in cached.items() if k not in ("cached", "train_seconds")} == \
        {k: v for k, v in record.items() if k not in ("cached", "train_seconds")}
    for name, tensor in first.state_dict().items():
        assert torch.equal(tensor, again.state_dict()[name])
    weights = next(tmp_path.glob("*.pt"))
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")  # damaged: checksum no longer matches
    _, retrained = load_or_train(tmp_path, "toy", images, labels, images, labels, 10, config)
    assert not retrained["cached"]


def test_classifier_outputs_features_and_probabilities():
    features, probabilities = predict(FeatureClassifier(10, (1, 28, 28)), torch.rand(5, 1, 28, 28))
    assert features.shape == (5, 128) and probabilities.shape == (5, 10)
    assert torch.allclose(probabilities.sum(1), torch.ones(5))


def test_linear_probe_separates_separable_codes():
    rng = np.random.default_rng(0)
    labels = np.arange(400) % 4
    codes = np.eye(4)[labels] * 5 + rng.normal(scale=0.3, size=(400, 4))
    correct = latent.linear_probe(codes[:300], labels[:300], codes[300:], labels[300:])
    assert correct.shape == (100,) and correct.mean() == 1.0
    random_codes = rng.normal(size=(400, 4))
    assert latent.linear_probe(random_codes[:300], labels[:300], random_codes[300:], labels[300:]).mean() < 0.5


def test_pca_and_tsne_shapes_and_pca_finds_the_main_axis():
    rng = np.random.default_rng(0)
    codes = np.column_stack([rng.normal(scale=10, size=300), rng.normal(size=300), rng.normal(size=300)])
    projected = latent.pca_2d(codes)
    assert projected.shape == (300, 2)
    assert abs(np.corrcoef(projected[:, 0], codes[:, 0])[0, 1]) > 0.99
    assert latent.tsne_2d(codes[:60], seed=0).shape == (60, 2)
    # a collapsed model's codes, all the same: at the origin (scikit-learn's t-SNE would crash the process)
    assert (latent.tsne_2d(np.zeros((60, 3)), seed=0) == 0).all() and latent.tsne_2d(np.zeros((60, 3)), 0).shape == (60, 2)
    assert latent.pca_2d(codes[:, :1]).shape == (300, 2)


def test_interpolation_ends_at_the_two_reconstructions_and_traversal_changes_one_dimension(trained_small_vae):
    model, images = trained_small_vae
    path = latent.interpolate(model, images[0], images[1], steps=5)
    assert path.shape == (5, 28, 28)
    with torch.no_grad():
        ends = torch.sigmoid(model.decode(model.encode(images[:2])[0])).squeeze(1).numpy()
    np.testing.assert_allclose(path[0], ends[0], atol=1e-6)
    np.testing.assert_allclose(path[-1], ends[1], atol=1e-6)
    grid = latent.traverse(model, images[0], [0, 2], np.linspace(-2, 2, 4))
    assert grid.shape == (2, 4, 28, 28)
    assert not np.allclose(grid[0, 0], grid[0, -1])


def test_combined_rule_needs_both_tests_and_falls_back_to_reconstruction():
    psnr = {5: 17.0, 10: 19.7, 15: 20.0, 20: 20.1}
    chosen = select_combined(psnr, {5: 10.0, 10: 30.0, 15: 12.0, 20: 11.0}, 0.5, 0.10)
    assert chosen.passes_reconstruction == (10, 15, 20) and chosen.passes_generation == (5, 20)
    assert chosen.selected == 20 and not chosen.fell_back
    loose = select_combined(psnr, {5: 10.0, 10: 10.5, 15: 12.0, 20: 11.0}, 0.5, 0.10)
    assert loose.selected == 10
    none = select_combined(psnr, {5: 10.0, 10: 30.0, 15: 30.0, 20: 30.0}, 0.5, 0.10)
    assert none.fell_back and none.selected == 10 and none.best_fd_size == 5


def test_a_cached_classifier_for_other_shaped_images_with_the_same_pixels_is_not_reused(tmp_path, caplog):
    pixels = (torch.arange(40 * 24 * 20) % 256).to(torch.uint8)  # the same bytes, two shapes
    labels = torch.arange(40) % 2
    config = ClassifierConfig(epochs=1)
    wide, _ = load_or_train(tmp_path, "toy", pixels.reshape(40, 1, 20, 24), labels, pixels.reshape(40, 1, 20, 24).float() / 255,
                            labels, 2, config)
    tall, record = load_or_train(tmp_path, "toy", pixels.reshape(40, 1, 24, 20), labels,
                                 pixels.reshape(40, 1, 24, 20).float() / 255, labels, 2, config)
    assert len(list(tmp_path.glob("*.pt"))) == 1 and not record["cached"]  # same key, so it is retrained
    assert "holds a classifier for (1, 20, 24) images; retraining for (1, 24, 20)" in caplog.text
    assert tuple(tall(torch.rand(3, 1, 24, 20)).shape) == (3, 2)
