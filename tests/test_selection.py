import pytest

from latentsweep.selection import decide, easiest_and_hardest, select_latent_dim


def table(psnr_by_dim, per_digit=None):
    """Seed-combined tidy rows with the given overall PSNR per latent size (and optional per-digit values)."""
    rows = []
    for dim, value in psnr_by_dim.items():
        rows.append({"latent_dim": dim, "protocol": "test_set", "class": "all", "metric": "psnr", "mean": value})
        for digit in range(10):
            digit_value = (per_digit or {}).get(digit, value)
            rows.append({"latent_dim": dim, "protocol": "test_set", "class": str(digit), "metric": "psnr", "mean": digit_value})
    return rows


def test_smallest_size_within_tolerance_of_the_best_is_chosen():
    selection = select_latent_dim({5: 17.0, 10: 19.6, 15: 20.0, 20: 19.9}, tolerance_db=0.5)
    assert (selection.selected, selection.best) == (10, 15)
    assert selection.threshold_db == pytest.approx(19.5)


def test_boundary_counts_as_within_tolerance():
    assert select_latent_dim({5: 19.5, 10: 20.0}, 0.5).selected == 5


def test_zero_tolerance_picks_the_best_and_ties_go_to_the_smaller_size():
    assert select_latent_dim({5: 18.0, 10: 20.0, 20: 20.0}, 0.0).selected == 10
    assert select_latent_dim({5: 18.0, 10: 20.0, 20: 20.0}, 0.0).best == 10


def test_a_huge_tolerance_picks_the_smallest_size():
    assert select_latent_dim({5: 10.0, 10: 20.0}, 100.0).selected == 5


def test_empty_input_is_an_error():
    with pytest.raises(ValueError):
        select_latent_dim({}, 0.5)


def test_easiest_and_hardest_digit_follow_per_digit_psnr():
    rows = table({10: 20.0}, per_digit={1: 25.0, 8: 15.0})
    assert easiest_and_hardest(rows, 10) == ("1", "8")


def with_fd(rows, fd_by_dim):
    return rows + [{"latent_dim": dim, "protocol": "prior_samples", "class": "all", "metric": "fd", "mean": value}
                   for dim, value in fd_by_dim.items()]


DIGITS = [str(d) for d in range(10)]


def test_the_answer_sentences_carry_the_measured_numbers():
    rows = table({5: 17.0, 10: 19.6, 15: 20.0}, per_digit={1: 24.25, 2: 16.5})
    answer = decide(rows, 0.5, 0.10, DIGITS)
    text = " ".join(answer.sentences)
    assert (answer.selected, answer.rule) == (10, "reconstruction")
    assert "Selected latent size: 10" in text and "within 0.5 dB" in text
    assert "15 with 20.00 dB" in text and "0.40 dB below" in text
    assert "The next smaller size, 5, reaches 17.00 dB, 3.00 dB below the best" in text
    assert "easiest digit is 1 (24.25 dB) and the hardest is 2 (16.50 dB)" in text
    assert "5->10: +2.60 dB" in text
    assert list(answer.headline) == list(answer.sentences[:3])
    assert answer.headline[2].startswith("Resolution: the smallest adequate size lies in 6..9 or is 10: 5 fails by "
                                         "2.50 dB (threshold 19.50 dB); 10 passes (+0.10 dB against the threshold)")


def test_the_answer_when_the_selected_size_is_also_the_best():
    answer = decide(table({5: 21.0, 10: 20.0}), 0.5, 0.10, DIGITS)
    assert "Latent size 5 is also the best, with 21.00 dB." in answer.sentences
    assert not any("0.00 dB below" in sentence for sentence in answer.sentences)


def test_where_the_two_rules_disagree_every_sentence_about_the_answer_names_the_combined_rules_size():
    """Size 5 passes on PSNR (0.3 dB below the best) but its samples' FD is 3 times the lowest: the combined
    rule answers 10, and the sentences about the answer (headline, easiest digit, the next smaller size) say 10."""
    rows = with_fd(table({5: 19.7, 10: 19.9, 15: 20.0}, per_digit={3: 15.0}), {5: 30.0, 10: 10.5, 15: 10.0})
    answer = decide(rows, 0.5, 0.10, DIGITS)
    assert (answer.selected, answer.rule, answer.reconstruction.selected) == (10, "combined", 5)
    assert answer.headline[0].startswith("Combined selection (reconstruction and generation): latent size 10.")
    assert "latent size 10 reaches 19.90 dB, 0.10 dB below it" in answer.headline[1]
    text = " ".join(answer.sentences)
    assert "Reconstruction rule alone, latent size: 5." in text
    assert ("The next smaller size, 5, reaches 19.70 dB, within the tolerance, but the Fréchet distance of its prior "
            "samples, 30.00, is more than 10% above the lowest (10.00).") in text
    assert "At latent size 10 the easiest" in text and "hardest is 3 (15.00 dB)" in text


def test_without_a_frechet_distance_for_every_size_the_reconstruction_rule_decides():
    rows = with_fd(table({5: 19.7, 10: 19.9, 15: 20.0}), {5: 30.0, 10: 10.5})
    answer = decide(rows, 0.5, 0.10, DIGITS)
    assert (answer.selected, answer.rule) == (5, "reconstruction")
    assert answer.headline[0].startswith("Selected latent size: 5.")
