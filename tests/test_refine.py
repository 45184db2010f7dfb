"""Refining the answer to one dimension: the rule against the grid's frozen reference, the probe sizes of each
round, and the sentences, on crafted result tables with known answers."""

import pytest

from latentsweep.selection import (Refined, apply_rule, decide, predicted_answer, probe_sizes, refine_answer,
                                  worst_case_probes)
from latentsweep.runner import probes_per_round

from test_selection import DIGITS, table, with_fd


def refine_to_the_end(grid, truth, count=1, fd=None, tolerance_db=0.5, fd_tolerance=0.10, failing=(), predict=True):
    """Run the refinement's rounds against `truth` ({size: mean PSNR}; sizes in `failing` cannot be trained):
    test the grid, then each round's probes (placed as study.next_probes places them: around the predicted
    answer where `predict`), until none is left. Returns the decision and each round's probe sizes."""
    tested = {size: truth[size] for size in grid}
    attempted, rounds = set(grid), []
    while True:
        tested_fd = fd and {s: fd[s] for s in tested}
        decision = apply_rule(tested, tested_fd, tolerance_db, fd_tolerance, grid)
        guess = predicted_answer(tested, tested_fd, decision) if predict else None
        sizes = probe_sizes(decision.refined, attempted, count, guess)
        if not sizes:
            return decision, rounds
        rounds.append(sizes)
        assert all(decision.refined.below < size < decision.refined.selected for size in sizes)
        assert not set(sizes) & attempted, "a size is never tried twice"
        attempted |= set(sizes)
        tested.update({size: truth[size] for size in sizes if size not in failing})


def smooth_truth(crossing):
    """PSNR rising with size, by 1 dB at `crossing`: with a 0.5 dB tolerance, the sizes from `crossing` on pass."""
    return {size: (22.0 if size >= crossing else 21.0) + 0.001 * size for size in range(1, 41)}


def saturating(size):
    """A PSNR curve that saturates as reconstructions do: steep at small sizes, then flat."""
    import math

    return 24.0 - 8.0 * math.exp(-size / 4.0)


def tolerance_for(crossing, best=40):
    """The tolerance (dB) against `best`'s PSNR that puts the threshold halfway between crossing - 1 and crossing."""
    return saturating(best) - (saturating(crossing) + saturating(crossing - 1)) / 2


@pytest.mark.parametrize("width", range(1, 11))
@pytest.mark.parametrize("count", [1, 2, 3])
@pytest.mark.parametrize("predict", [False, True])
def test_bisection_finds_every_answer_in_an_interval_of_every_width(width, count, predict):
    """Grid sizes 10 and 10 + width: whatever size in between first passes, the rounds find it, within the
    worst case computed for the dry run, with the probes placed by k-section alone or around predictions."""
    grid = (10, 10 + width)
    for crossing in range(11, 10 + width + 1):
        decision, rounds = refine_to_the_end(grid, smooth_truth(crossing), count, predict=predict)
        assert decision.selected == crossing and decision.refined.below == crossing - 1
        assert decision.refined.grid_selected == 10 + width
        assert len(rounds) <= worst_case_rounds(width - 1, count)
        assert sum(map(len, rounds)) <= sum(worst_case_probes(width - 1, count))


def worst_case_rounds(candidates: int, count: int) -> int:
    """k-section's worst case from its definition: each round of `count` probes splits the open sizes into
    count + 1 runs, so r rounds settle up to (count + 1)^r - 1 sizes."""
    rounds = 0
    while (count + 1) ** rounds - 1 < candidates:
        rounds += 1
    return rounds


def test_the_worst_case_rounds():
    assert [worst_case_rounds(c, 1) for c in range(8)] == [0, 1, 2, 2, 3, 3, 3, 3]  # ceil(log2(c + 1))
    assert [worst_case_rounds(c, 2) for c in range(9)] == [0, 1, 1, 2, 2, 2, 2, 2, 2]  # ceil(log3(c + 1))
    # the dry run's worst case (selection.worst_case_probes) has exactly k-section's rounds
    assert all(len(worst_case_probes(c, k)) == worst_case_rounds(c, k) for c in range(30) for k in (1, 2, 3))


def test_the_smallest_grid_size_passing_is_refined_down_to_one():
    decision, _ = refine_to_the_end((5, 10, 15, 20), smooth_truth(1))
    assert (decision.selected, decision.refined.below) == (1, 0)
    decision, _ = refine_to_the_end((5, 10, 15, 20), smooth_truth(3))
    assert (decision.selected, decision.refined.below) == (3, 2)


def test_probe_sizes_split_the_possible_answers_evenly():
    interval = Refined(selected=15, grid_selected=15, below=10, out_of_order=())
    assert probe_sizes(interval, {10, 15}, 1) == [13]  # answers 11..15: {11, 12, 13} | {14, 15}
    assert probe_sizes(interval, {10, 15}, 2) == [12, 14]  # {11, 12} | {13, 14} | {15}
    assert probe_sizes(interval, {10, 15}, 9) == [11, 12, 13, 14]  # no more than there are sizes to try
    assert probe_sizes(interval, {10, 12, 15}, 1) == [13]  # 12 was tried (every trial failed): not again
    assert probe_sizes(Refined(13, 15, 12, ()), {12, 13}, 2) == []  # exact


def test_the_reference_is_the_grids_and_frozen():
    """A probe better than the grid's best does not raise the threshold: 12 is judged against 15's PSNR."""
    psnr = {5: 15.0, 10: 20.0, 12: 23.0, 11: 21.4, 15: 22.0, 20: 21.9}
    decision = apply_rule(psnr, None, 0.5, 0.10, grid_sizes=(5, 10, 15, 20))
    assert decision.reconstruction.best == 15 and decision.reconstruction.threshold_db == pytest.approx(21.5)
    assert (decision.selected, decision.refined.below) == (12, 11)
    everything = apply_rule(psnr, None, 0.5, 0.10)  # all sizes as the grid: 12 would be the best, 11 still fails
    assert everything.reconstruction.best == 12


def test_a_non_monotone_probe_is_named_and_does_not_become_the_answer():
    """11 passes, 12 fails, 13 passes: the answer is 13, and 11 is named out of order."""
    refined = refine_answer({10: False, 11: True, 12: False, 13: True, 15: True}, grid_selected=15, grid_below=10)
    assert (refined.selected, refined.below, refined.out_of_order) == (13, 12, (11,))
    rows = table({10: 20.0, 11: 21.6, 12: 21.0, 13: 21.7, 15: 22.0, 20: 21.8})
    answer = decide(rows, 0.5, 0.10, DIGITS, grid_sizes=(10, 15, 20))
    assert answer.selected == 13 and answer.exact and answer.probes == (11, 12, 13)
    text = " ".join(answer.sentences)
    assert "Not monotone: tested size(s) 11 pass although 12, larger, fails" in text
    assert "Resolution: 13 is exact to one dimension: 12 fails by 0.50 dB (threshold 21.50 dB); 13 passes (+0.20 dB" in text
    assert "Sizes tried beyond the grid to refine it: 11, 12, 13." in text


def test_a_probe_whose_every_trial_failed_is_left_out_and_said():
    """Size 12 diverges (NaN: no rows, as a failed grid trial has none); the rounds go on around it."""
    decision, _ = refine_to_the_end((10, 15), smooth_truth(12), count=1, failing={12})
    assert (decision.selected, decision.refined.below) == (13, 11)
    rows = table({10: 20.0, 11: 21.0, 13: 21.6, 15: 22.0})
    answer = decide(rows, 0.5, 0.10, DIGITS, grid_sizes=(10, 15), untestable=(12,))
    assert (answer.selected, answer.below, answer.exact, answer.untestable) == (13, 11, False, (12,))
    assert "lies in 12..12 or is 13" in answer.sentences[2] and "sizes 12 could not be trained" in answer.sentences[2]


def test_one_variant_refined_while_another_is_already_exact():
    """Two variants' grids: (1, 2) is exact as it stands (1 fails, 2 passes), (5, 10) needs rounds; the round
    probes only the second, and its workers' share follows."""
    exact = apply_rule({1: 10.0, 2: 20.0}, None, 0.5, 0.10, (1, 2)).refined
    open_interval = apply_rule({5: 10.0, 10: 20.0}, None, 0.5, 0.10, (5, 10)).refined
    assert probe_sizes(exact, {1, 2}, 2) == [] and probe_sizes(open_interval, {5, 10}, 2) == [7, 9]
    assert probes_per_round(variants=1, seeds=3, workers=2) == 2  # six trials on two workers, none idle
    assert probes_per_round(variants=2, seeds=1, workers=2) == 1
    assert probes_per_round(variants=4, seeds=1, workers=2) == 1
    assert probes_per_round(variants=1, seeds=3, workers=16) == 5  # 15 trials: one worker idle, not 14 of 32
    assert probes_per_round(variants=1, seeds=3, workers=1) == 1 and probes_per_round(1, 3, None) == 1


def test_the_combined_rule_refines_with_both_tests():
    """The generation test refuses 12 (FD 30% above the lowest) although its PSNR passes: the answer is 13."""
    psnr = {10: 20.0, 12: 21.8, 13: 21.8, 15: 22.0}
    fd = {10: 40.0, 12: 13.0, 13: 10.5, 15: 10.0}
    decision = apply_rule(psnr, fd, 0.5, 0.10, (10, 15))
    assert decision.combined is not None and (decision.selected, decision.refined.below) == (13, 12)
    assert decision.reconstruction_refined.selected == 12  # the reconstruction rule alone would take 12
    answer = decide(with_fd(table(psnr), fd), 0.5, 0.10, DIGITS, grid_sizes=(10, 15))
    assert answer.rule == "combined" and answer.selected == 13
    assert "12 is within the PSNR tolerance but its Fréchet distance, 13.00, is more than 10% above the lowest (10.00)" \
        in " ".join(answer.sentences)


def test_without_probes_the_rule_is_the_grids():
    """No probes: apply_rule gives what select_latent_dim gives, and the answer says how wide its interval is."""
    psnr = {5: 17.0, 10: 19.6, 15: 20.0, 20: 19.9}
    assert apply_rule(psnr, None, 0.5, 0.10).selected == 10 == apply_rule(psnr, None, 0.5, 0.10, (5, 10, 15, 20)).selected
    assert apply_rule(psnr, None, 0.5, 0.10).reconstruction.best_psnr == 20.0


def test_the_worst_case_of_the_probes():
    from latentsweep.selection import widest_gap, worst_case_probes

    assert widest_gap((5, 10, 15, 20)) == 4 and widest_gap((2, 3)) == 1 and widest_gap((1, 2)) == 0
    # four sizes, two a round: k-section probes 2 then 1, but a prediction may place the first two at one end
    assert worst_case_probes(4, 2) == (2, 2) and worst_case_probes(4, 1) == (1, 1, 1) and worst_case_probes(0, 2) == ()


def test_the_dry_run_estimates_the_grid_and_the_probes_worst_case(fake_data, tmp_path, capsys):
    from latentsweep.cli import main
    from conftest import TINIEST, tiny_options

    out = tmp_path / "study"
    flags = tiny_options(**{**TINIEST, "latent_dims": "2,6", "no_refine": None, "refine": True, "workers": 2})
    assert main(["run", "--data-dir", str(fake_data), "--out", str(out), *flags, "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert not out.exists()
    # gap 3..5 (three sizes) with one variant, one seed, two workers: two sizes per round, then one
    assert "Refinement (--refine), worst case: 2 round(s) of probes after the grid, 3 probe size(s) per variant (2, 1 " \
           "per round), 3 trial(s) at every seed" in printed
    assert main(["run", "--data-dir", str(fake_data), "--out", str(out), *flags, "--no-refine", "--dry-run"]) == 0
    assert "Refinement" not in capsys.readouterr().out


@pytest.mark.slow  # several trainings
def test_a_refined_study_end_to_end(fake_data, tmp_path):
    """Grid 2 and 6, then probes until the answer is exact; the probes are ordinary trials everywhere: their
    folders, results rows, load_study, the report (marked as probes) and the explorer."""
    import json

    import latentsweep
    from latentsweep.cli import main
    from conftest import TINIEST, expected_answers, tiny_options

    out = tmp_path / "study"
    flags = tiny_options(**{**TINIEST, "latent_dims": "2,6", "no_refine": None, "refine": True})
    assert main(["run", "--data-dir", str(fake_data), "--out", str(out), *flags]) == 0
    probes = json.loads((out / "config.json").read_text())["probes"]
    sizes = sorted(probe["latent_dim"] for probe in probes)
    assert sizes and all(size in (1, 3, 4, 5) for size in sizes)
    rows = json.loads((out / "results.json").read_text())
    assert {row["latent_dim"] for row in rows if row["latent_dim"] is not None} == {2, 6, *sizes}
    results = latentsweep.load_study(out)
    (answer,) = results.selection.values()
    assert {record.trial.latent_dim for record in results.trials} == {2, 6, *sizes}
    assert {record.status for record in results.trials} == {"done"}
    grid_rows = [row for row in rows if row["latent_dim"] in (2, 6)]
    assert answer in (1, 2, 3, 4, 5, 6) and (answer == expected_answers(grid_rows)[("conv", 1.0)] or answer in sizes)
    report = (out / "report.md").read_text()
    assert f"Resolution: {answer} is exact to one dimension" in report
    assert "Sizes tried beyond the grid to refine it: " + ", ".join(map(str, sizes)) in report
    assert (out / "figures" / "psnr_refinement.png").is_file()
    # 120 test images: the data's dimension over all of them; 12 per class are too few for MLE's 20 neighbours
    dimension = [row for row in rows if row["metric"].startswith("intrinsic_dimension")]
    assert {(row["class"], row["n"], row["latent_dim"]) for row in dimension} == {("all", 120, None)} and len(dimension) == 2
    assert not (out / "figures" / "dimension_vs_psnr.png").exists()
    page = (out / "explorer.html").read_text()
    shown = json.loads(page.split('id="study-data">', 1)[1].split("</script>", 1)[0])
    assert sorted(size["latent_dim"] for size in shown["variants"][0]["sizes"]) == sorted({2, 6, *sizes})


def test_a_prediction_places_the_probes_around_the_predicted_answer():
    """The default study's grid (MNIST, runs/study): 10 fails, 15 passes; the monotone cubic through the grid
    crosses the threshold between 12 and 13, so the round probes 12 and 13 (k-section would probe 12 and 14);
    the probes found 12 failing and 13 passing, which settles the answer in that one round."""
    psnr = {5: 17.7629, 10: 20.4909, 15: 21.4007, 20: 21.5833}
    fd = {5: 104.285, 10: 105.922, 15: 104.799, 20: 102.267}
    decision = apply_rule(psnr, fd, 0.5, 0.10, (5, 10, 15, 20))
    assert (decision.selected, decision.refined.below) == (15, 10) and decision.fd_ceiling == pytest.approx(102.267 * 1.1)
    assert predicted_answer(psnr, fd, decision) == 13
    assert probe_sizes(decision.refined, set(psnr), 2, predicted=13) == [12, 13]
    assert probe_sizes(decision.refined, set(psnr), 2) == [12, 14]
    assert probe_sizes(decision.refined, set(psnr), 1, predicted=13) == [12]
    assert probe_sizes(decision.refined, set(psnr), 2, predicted=15) == [13, 14]  # "none between passes"
    assert probe_sizes(decision.refined, set(psnr), 2, predicted=11) == [11, 12]


def test_a_prediction_that_could_add_a_round_is_not_followed():
    """Twenty sizes open, two a round: k-section needs at most 3 rounds; any two neighbours leave 9 or more open
    on one side (3 more rounds), so predictions are ignored. Nine open: k-section's worst case is 3 rounds, and
    two neighbours anywhere leave at most 7 (2 more), so the prediction is followed."""
    wide = Refined(selected=31, grid_selected=31, below=10, out_of_order=())
    assert worst_case_rounds(20, 2) == 3 and worst_case_rounds(9, 2) == 2 + 1
    assert probe_sizes(wide, {10, 31}, 2, predicted=12) == probe_sizes(wide, {10, 31}, 2) == [17, 24]
    assert probe_sizes(wide, {10, 31}, 2, predicted=21) == [17, 24]
    nine = Refined(selected=20, grid_selected=20, below=10, out_of_order=())
    assert probe_sizes(nine, {10, 20}, 2) == [14, 17]  # answers 11..20: {11..14} | {15..17} | {18..20}
    assert probe_sizes(nine, {10, 20}, 2, predicted=12) == [11, 12]
    assert probe_sizes(nine, {10, 20}, 2, predicted=15) == [14, 15]


def test_predicted_answer_interpolates_and_knows_its_limits():
    """PSNR linear from 20 dB at 10 to 25 dB at 20, tolerance 2.7 dB (threshold 22.3): the line passes from 14.6
    on, so 15 is predicted; where FD decides, its line's crossing; the smallest grid size passing gives None."""
    psnr = {10: 20.0, 20: 25.0}
    decision = apply_rule(psnr, None, 2.7, 0.10, (10, 20))
    assert decision.reconstruction.threshold_db == pytest.approx(22.3)
    assert predicted_answer(psnr, None, decision) == 15
    passing = apply_rule({5: 24.9, 10: 25.0}, None, 0.5, 0.10, (5, 10))
    assert passing.refined.below == 0 and predicted_answer({5: 24.9, 10: 25.0}, None, passing) is None
    fd_decides = apply_rule({10: 25.0, 20: 25.0}, {10: 20.0, 20: 10.0}, 0.5, 0.10, (10, 20))
    assert (fd_decides.selected, fd_decides.fd_ceiling) == (20, pytest.approx(11.0))
    assert predicted_answer({10: 25.0, 20: 25.0}, {10: 20.0, 20: 10.0}, fd_decides) == 19  # FD 11.0 at 19, 12.0 at 18


def test_predictions_settle_a_saturating_curve_in_fewer_rounds():
    """Grid 10, 15, 40 on a saturating curve, the answer at each of 11..15 in turn, two probes a round: every
    answer is found, and the predictions need fewer rounds in all than k-section."""
    truth = {size: saturating(size) for size in range(1, 41)}
    totals = {}
    for predict in (False, True):
        totals[predict] = 0
        for crossing in range(11, 16):
            decision, rounds = refine_to_the_end((10, 15, 40), truth, 2, tolerance_db=tolerance_for(crossing),
                                                 predict=predict)
            assert decision.selected == crossing
            totals[predict] += len(rounds)
    assert totals[True] < totals[False]
