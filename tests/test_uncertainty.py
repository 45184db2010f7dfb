"""How sure the answer is: known answers for the per-seed rule, the selection bootstrap and the tests."""

import numpy as np
import pytest
from scipy import stats

from latentsweep.uncertainty import (paired_comparison, seed_comparison, selected_per_seed, selection_probabilities,
                                     selection_rule)

RECONSTRUCTION_ONLY = selection_rule(tolerance_db=0.5, fd_tolerance=0.10)


def columns(*per_seed: list[float]) -> np.ndarray:
    """A (seeds, images) array from each seed's per-image PSNR."""
    return np.array(per_seed, dtype=np.float64)


def test_the_rule_per_seed_picks_from_each_seeds_models_alone():
    psnr = {5: columns([19.0, 19.0], [19.8, 19.8], [19.6, 19.4]), 10: columns([20.0, 20.0], [20.0, 20.0], [20.0, 20.0])}
    # Seed 0: 19.0 is 1 dB below 20; seed 1: 19.8 within 0.5; seed 2: 19.5 exactly at the threshold.
    assert selected_per_seed(psnr, None, RECONSTRUCTION_ONLY) == [10, 5, 5]


def test_a_size_that_wins_every_draw_is_selected_with_probability_one():
    """Size 10 is 0.1-0.2 dB below size 15 on each image and size 5 10 dB below, whatever is drawn."""
    psnr = {5: columns([10.0, 11.0], [10.5, 10.0]), 10: columns([20.0, 21.0], [20.0, 21.0]),
            15: columns([20.2, 21.1], [20.2, 21.1])}
    assert selection_probabilities(psnr, None, RECONSTRUCTION_ONLY, replicates=300) == {5: 0.0, 10: 1.0, 15: 0.0}


def test_resampling_seeds_gives_the_exact_share_of_passing_seed_means():
    """One image, two seeds at size 5 (19.0 and 19.8 dB): a draw of two seeds averages 19.0 (1/4),
    19.4 (1/2) or 19.8 (1/4), and only 19.8 is within 0.5 dB of size 10's 20.0: P(5) = 1/4."""
    psnr = {5: columns([19.0], [19.8]), 10: columns([20.0], [20.0])}
    shares = selection_probabilities(psnr, None, RECONSTRUCTION_ONLY, replicates=4000)
    assert shares[5] == pytest.approx(0.25, abs=0.025) and shares[5] + shares[10] == pytest.approx(1.0)


def test_resampling_test_images_gives_the_exact_share_of_passing_image_means():
    """One seed, two images at size 5 (19 and 20 dB): a draw of two images averages 19 (1/4), 19.5 (1/2)
    or 20 (1/4); 19.5 and 20 pass against size 10's 20 dB: P(5) = 3/4."""
    psnr = {5: columns([19.0, 20.0]), 10: columns([20.0, 20.0])}
    shares = selection_probabilities(psnr, None, RECONSTRUCTION_ONLY, replicates=4000)
    assert shares[5] == pytest.approx(0.75, abs=0.025)


def test_the_same_image_draw_serves_every_size():
    """Sizes whose per-image PSNR differ by a constant 0.4 dB: whatever images are drawn, size 5 is
    0.4 dB below size 10 and passes. Independent draws per size would often fail it."""
    rng = np.random.default_rng(0)
    base = rng.normal(20, 3, size=(1, 200))
    shares = selection_probabilities({5: base, 10: base + 0.4}, None, RECONSTRUCTION_ONLY, replicates=500)
    assert shares == {5: 1.0, 10: 0.0}


def test_the_combined_rule_resamples_the_frechet_distance_over_seeds():
    """Equal PSNR; size 5's FD is 10 or 30 by seed, size 10's 20. Draws averaging FD 10 or 20 keep size 5
    within 10% of the best (or best itself), 30 does not: P(5) = 3/4."""
    psnr = {5: columns([20.0], [20.0]), 10: columns([20.0], [20.0])}
    fd = {5: np.array([10.0, 30.0]), 10: np.array([20.0, 20.0])}
    shares = selection_probabilities(psnr, fd, selection_rule(0.5, 0.10), replicates=4000)
    assert shares[5] == pytest.approx(0.75, abs=0.025)
    assert selected_per_seed(psnr, fd, selection_rule(0.5, 0.10)) == [5, 10]


def test_the_seed_test_is_welchs_t_test():
    """[1, 2, 3] against [2, 3, 4]: difference 1, t = 1 / sqrt(1/3 + 1/3), 4 degrees of freedom."""
    result = seed_comparison(5, 10, np.array([1.0, 2.0, 3.0]), np.array([2.0, 3.0, 4.0]))
    t = 1 / np.sqrt(2 / 3)
    assert result.mean_difference_db == pytest.approx(1.0)
    assert result.p_value == pytest.approx(2 * stats.t.sf(t, 4))
    half_width = stats.t.ppf(0.975, 4) * np.sqrt(2 / 3)
    assert (result.ci_low, result.ci_high) == pytest.approx((1 - half_width, 1 + half_width))
    assert "does not differ significantly" in result.sentence() and "training seeds" in result.sentence()
    with pytest.raises(ValueError, match="at least two seeds"):
        seed_comparison(5, 10, np.array([1.0]), np.array([2.0, 3.0]))


def test_paired_comparison_detects_a_consistent_gain_and_not_noise():
    rng = np.random.default_rng(0)
    base = rng.normal(20, 3, size=(2, 5000))
    better = base + 0.2 + rng.normal(0, 0.5, size=base.shape)
    result = paired_comparison(10, 15, base, better)
    assert result.mean_difference_db == pytest.approx(0.2, abs=0.03) and result.t_p_value < 1e-6
    assert "p < 1e-16" in result.sentence()  # the p-value underflows; said as a bound, not "p = 0"
    assert result.n_images == 5000 and result.n_seeds == 2
    assert "differs significantly" in result.sentence() and "test images" in result.sentence()
    noise = paired_comparison(10, 15, base, base + rng.normal(0, 0.5, size=base.shape))
    assert noise.t_p_value > 0.001 or abs(noise.mean_difference_db) < 0.02
    same = paired_comparison(10, 15, base, base)
    assert same.t_p_value == 1.0 and "does not differ significantly" in same.sentence()


def test_the_rule_falls_back_to_reconstruction_where_a_size_lacks_its_frechet_distance():
    """As the study's answer does (selection.final_selection): size 5 passes on PSNR; with size 10's FD
    missing the combined rule, which would refuse size 5 for its FD of 30 against 10, does not apply."""
    rule = selection_rule(0.5, 0.10)
    psnr = {5: 19.8, 10: 20.0}
    assert rule(psnr, {5: 30.0, 10: 10.0}) == 10
    assert rule(psnr, {5: 30.0}) == 5 and rule(psnr, {}) == 5 and rule(psnr, None) == 5


def test_the_answers_likely_sizes_are_the_fewest_covering_95_percent_of_the_replicates():
    from latentsweep.uncertainty import Evidence

    def evidence(probabilities):
        return Evidence(13, [0, 1, 2], [13, 13, 13], probabilities, 2000, {13: {0: 21.2}}, None, None)

    # the MNIST default study's bootstrap (README): 13 and 15 cover 91.7%, 12 brings it to 97.9%
    shares = {13: 0.783, 15: 0.134, 12: 0.062, 20: 0.021}
    assert evidence(shares).likely_sizes() == ([12, 13, 15], pytest.approx(0.979))
    assert evidence(shares).likely_sizes(0.75) == ([13], pytest.approx(0.783))
    assert evidence({13: 0.97, 15: 0.03}).sentences()[0].startswith("How sure: the bootstrap selects size 13 in 97.0%")
    assert "one of sizes 12, 13, 15 in 97.9% of its replicates" in evidence(shares).sentences()[0]
