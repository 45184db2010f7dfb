import pytest

from latentsweep.selection import conclusion, easiest_and_hardest, select_latent_dim


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


def test_conclusion_sentences_carry_the_measured_numbers():
    rows = table({5: 17.0, 10: 19.6, 15: 20.0}, per_digit={1: 24.25, 2: 16.5})
    selection, sentences = conclusion(rows, 0.5, [str(d) for d in range(10)])
    text = " ".join(sentences)
    assert selection.selected == 10
    assert "Selected latent size: 10" in text and "within 0.5 dB" in text
    assert "15 with 20.00 dB" in text and "0.40 dB below" in text
    assert "The next smaller size, 5, reaches 17.00 dB, 3.00 dB below the best" in text
    assert "easiest digit is 1 (24.25 dB) and the hardest is 2 (16.50 dB)" in text
    assert "5->10: +2.60 dB" in text


def test_conclusion_when_the_selected_size_is_also_the_best():
    _, sentences = conclusion(table({5: 21.0, 10: 20.0}), 0.5, [str(d) for d in range(10)])
    assert "Latent size 5 is also the best, with 21.00 dB." in sentences
    assert not any("0.00 dB below" in sentence for sentence in sentences)
