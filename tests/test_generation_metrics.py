"""Generation and latent-space metrics: known answers and agreement with torchmetrics."""

import math

import numpy as np
import pytest
import torch

from latentsweep.metrics import (active_units, class_histogram, confident_share, entropy_bits, frechet_distance,
                                 inception_score, kernel_distance, kl_per_dimension)


class FeatureExtractor(torch.nn.Module):
    """A classifier's penultimate features as torchmetrics' FrechetInceptionDistance(feature=...) takes them."""

    def __init__(self, classifier) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, images):
        return self.classifier.features(images)


@pytest.fixture
def features():
    rng = np.random.default_rng(0)
    return rng.normal(size=(600, 8)), rng.normal(loc=0.5, scale=1.3, size=(500, 8))


def test_frechet_distance_of_a_set_with_itself_is_zero(features):
    a, _ = features
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_of_gaussians_matches_the_closed_form():
    # Two isotropic Gaussians N(0, I) and N(m, s^2 I) in d dims: |m|^2 + d (1 - s)^2.
    rng = np.random.default_rng(1)
    a = rng.normal(size=(200_000, 3))
    b = rng.normal(size=(200_000, 3)) * 2.0 + 1.0
    assert frechet_distance(a, b) == pytest.approx(3 * 1.0 + 3 * (1 - 2.0) ** 2, rel=0.02)


def test_frechet_distance_matches_torchmetrics_with_our_feature_network():
    from torchmetrics.image.fid import FrechetInceptionDistance

    from latentsweep.classifier import FeatureClassifier, predict

    torch.manual_seed(0)
    classifier = FeatureClassifier(10, (1, 28, 28)).eval()
    real = torch.rand(300, 1, 28, 28)
    fake = (torch.rand(300, 1, 28, 28) * 0.5).clamp(0, 1)
    fid = FrechetInceptionDistance(feature=FeatureExtractor(classifier), input_img_size=(1, 28, 28), normalize=True)
    fid.update(real, real=True)
    fid.update(fake, real=False)
    ours = frechet_distance(predict(classifier, fake)[0].double().numpy(), predict(classifier, real)[0].double().numpy())
    assert ours == pytest.approx(float(fid.compute()), rel=1e-3)


def test_kernel_distance_matches_torchmetrics_on_one_full_subset(features):
    from torchmetrics.image.kid import KernelInceptionDistance

    a, b = features
    a, b = a[:400], b[:400]
    kid = KernelInceptionDistance(feature=torch.nn.Identity(), subsets=1, subset_size=400)
    kid.update(torch.tensor(a), real=True)
    kid.update(torch.tensor(b), real=False)
    expected, _ = kid.compute()
    ours, spread = kernel_distance(b, a, subsets=1, subset_size=400)
    assert ours == pytest.approx(float(expected), rel=1e-6)
    assert spread == 0.0


def test_kernel_distance_is_near_zero_for_the_same_distribution_and_large_for_another(features):
    rng = np.random.default_rng(3)
    same, _ = kernel_distance(rng.normal(size=(2000, 8)), rng.normal(size=(2000, 8)), subsets=20, subset_size=500)
    a, b = features
    different, _ = kernel_distance(a, b, subsets=20, subset_size=400)
    assert abs(same) < 0.01 and different > 10 * abs(same)


def test_inception_score_known_answers():
    confident_uniform = np.eye(10)[np.arange(1000) % 10]
    assert inception_score(confident_uniform) == pytest.approx(10.0, rel=1e-6)
    one_class = np.eye(10)[np.zeros(100, int)]
    assert inception_score(one_class) == pytest.approx(1.0, rel=1e-6)
    undecided = np.full((50, 10), 0.1)
    assert inception_score(undecided) == pytest.approx(1.0, rel=1e-6)


def test_class_histogram_entropy_and_confidence():
    probabilities = np.array([[0.95, 0.05], [0.6, 0.4], [0.1, 0.9], [0.02, 0.98]])
    np.testing.assert_allclose(class_histogram(probabilities), [0.5, 0.5])
    assert entropy_bits(class_histogram(probabilities)) == pytest.approx(1.0)
    assert entropy_bits(np.full(10, 0.1)) == pytest.approx(math.log2(10))
    assert entropy_bits(np.array([1.0, 0.0])) == 0.0
    assert confident_share(probabilities, 0.9) == pytest.approx(0.5)


def test_kl_per_dimension_and_active_units():
    rng = np.random.default_rng(0)
    means = np.column_stack([rng.normal(size=1000), np.full(1000, 0.3), rng.normal(scale=0.05, size=1000)])
    log_vars = np.column_stack([np.full(1000, -2.0), np.zeros(1000), np.zeros(1000)])
    kl = kl_per_dimension(means, log_vars)
    expected_first = 0.5 * (np.exp(-2.0) + (means[:, 0] ** 2).mean() - 1 + 2.0)
    assert kl[0] == pytest.approx(expected_first)
    assert kl[1] == pytest.approx(0.5 * 0.09)
    assert active_units(means) == 1  # only the first dimension's mean varies by more than 0.01
    assert active_units(means, threshold=0.001) == 2
