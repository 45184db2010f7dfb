import math

import numpy as np
import pytest
import torch
from scipy import signal, stats

from latentsweep.metrics import (PSNR_CAP_DB, combine_seeds, lookup, mean_confidence_interval, mse_per_image,
                                 psnr_from_mse, ssim_per_image, summarize_by_class)


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    originals = rng.random((6, 1, 28, 28))
    recon = np.clip(originals + rng.normal(0, 0.1, originals.shape), 0, 1)
    return originals, recon


def test_mse_and_psnr_match_numpy(pair):
    originals, recon = pair
    mse = mse_per_image(torch.tensor(originals), torch.tensor(recon)).numpy()
    expected = ((originals - recon) ** 2).reshape(6, -1).mean(1)
    np.testing.assert_allclose(mse, expected, rtol=1e-12)
    np.testing.assert_allclose(psnr_from_mse(torch.tensor(mse)).numpy(), 10 * np.log10(1 / expected), rtol=1e-12)


def test_identical_images_give_zero_mse_and_the_documented_psnr_cap():
    images = torch.rand(3, 1, 28, 28)
    mse = mse_per_image(images, images)
    assert torch.equal(mse, torch.zeros(3))
    assert torch.allclose(psnr_from_mse(mse), torch.full((3,), PSNR_CAP_DB, dtype=mse.dtype))
    assert torch.allclose(ssim_per_image(images, images), torch.ones(3))


def test_known_psnr_values():
    # An image off by exactly 0.1 everywhere has MSE 0.01 and PSNR 20 dB.
    a = torch.full((1, 1, 28, 28), 0.5, dtype=torch.float64)
    assert psnr_from_mse(mse_per_image(a, a + 0.1)).item() == pytest.approx(20.0)


def reference_ssim(x: np.ndarray, y: np.ndarray, sigma: float = 1.5, size: int = 11) -> float:
    """SSIM of Wang et al. (2004), Gaussian-weighted, the image reflect-padded by half a window so the
    SSIM map covers every pixel, then averaged (the definition latentsweep documents)."""
    coords = np.arange(size) - (size - 1) / 2
    g = np.exp(-coords**2 / (2 * sigma**2))
    window = np.outer(g, g) / np.outer(g, g).sum()

    half = size // 2

    def filt(image):
        return signal.correlate2d(np.pad(image, half, mode="reflect"), window, mode="valid")

    mu_x, mu_y = filt(x), filt(y)
    var_x = filt(x * x) - mu_x**2
    var_y = filt(y * y) - mu_y**2
    cov = filt(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(ssim_map.mean())


def test_ssim_matches_an_independent_implementation(pair):
    originals, recon = pair
    ours = ssim_per_image(torch.tensor(originals), torch.tensor(recon)).numpy()
    expected = [reference_ssim(o[0], r[0]) for o, r in zip(originals, recon)]
    np.testing.assert_allclose(ours, expected, atol=1e-6)


def test_confidence_interval_matches_scipy():
    values = np.random.default_rng(1).normal(10, 2, size=50)
    mean, low, high = mean_confidence_interval(values)
    expected_low, expected_high = stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=stats.sem(values))
    assert mean == pytest.approx(values.mean())
    assert (low, high) == pytest.approx((expected_low, expected_high))


def test_confidence_interval_degenerate_cases():
    assert mean_confidence_interval([3.0, 3.0, 3.0]) == (3.0, 3.0, 3.0)
    mean, low, high = mean_confidence_interval([4.0])
    assert mean == 4.0 and math.isnan(low) and math.isnan(high)
    assert all(math.isnan(v) for v in mean_confidence_interval([]))


def test_summarize_by_class_groups_and_counts():
    labels = np.array([0, 0, 1, 1, 1, 2])
    scores = {"mse": np.array([1.0, 3.0, 2.0, 2.0, 2.0, 5.0])}
    rows = summarize_by_class(scores, labels, ["circle", "square", "triangle"])  # rows named by the label text
    by_class = {row["class"]: row for row in rows}
    assert list(by_class) == ["circle", "square", "triangle", "all"]
    assert by_class["circle"]["mean"] == 2.0 and by_class["circle"]["n"] == 2
    assert by_class["square"]["ci_low"] == by_class["square"]["ci_high"] == 2.0
    assert by_class["triangle"]["n"] == 1 and math.isnan(by_class["triangle"]["ci_low"])
    assert by_class["all"]["n"] == 6 and by_class["all"]["mean"] == pytest.approx(15 / 6)
    # without names, classes 0 to the largest label by index; unlabelled (no names): "all" alone
    assert [row["class"] for row in summarize_by_class(scores, labels)] == ["0", "1", "2", "all"]
    assert [row["class"] for row in summarize_by_class(scores, np.zeros(6, int), ())] == ["all"]


def test_combine_seeds_passes_one_seed_through_and_averages_several():
    row = {"latent_dim": 5, "protocol": "test_set", "class": "all", "metric": "psnr", "n": 100, "ci_low": 1.0, "ci_high": 3.0}
    single = combine_seeds([{**row, "seed": 0, "mean": 2.0}])
    assert single[0]["mean"] == 2.0 and single[0]["ci_over"] == "images" and single[0]["n"] == 100
    several = combine_seeds([{**row, "seed": s, "mean": m} for s, m in [(0, 10.0), (1, 12.0), (2, 14.0)]])
    assert len(several) == 1
    assert several[0]["mean"] == pytest.approx(12.0) and several[0]["n"] == 3 and several[0]["ci_over"] == "seeds"
    assert several[0]["ci_low"] == pytest.approx(12.0 - stats.t.ppf(0.975, 2) * 2.0 / math.sqrt(3))
    assert lookup(several, metric="psnr", cls="all")[0]["seeds"] == [0, 1, 2]


def test_psnr_of_a_colour_pair_has_its_known_value_and_ssim_averages_the_channels():
    """A 3x2x2 pair differing by 0.1 in one red pixel and 0.2 in one blue pixel: MSE = (0.01 + 0.04) / 12,
    PSNR = 10 log10(12 / 0.05) = 23.80 dB; the colour SSIM is the mean of the three channels' SSIMs."""
    original = torch.full((1, 3, 2, 2), 0.5)
    changed = original.clone()
    changed[0, 0, 0, 0] += 0.1
    changed[0, 2, 1, 1] -= 0.2
    mse = mse_per_image(original, changed)
    assert mse.item() == pytest.approx(0.05 / 12, rel=1e-5)
    assert psnr_from_mse(mse).item() == pytest.approx(10 * math.log10(12 / 0.05), abs=1e-4)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 20, 18, generator=generator)
    noisy = (images + 0.1 * torch.rand(2, 3, 20, 18, generator=generator)).clamp(0, 1)
    per_channel = torch.stack([ssim_per_image(images[:, [c]], noisy[:, [c]]) for c in range(3)]).mean(0)
    torch.testing.assert_close(ssim_per_image(images, noisy), per_channel, rtol=1e-5, atol=1e-6)
