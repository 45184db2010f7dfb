"""Does the grid bracket the answer? The saturation test on crafted curves, and a study whose top is not saturated
extending its grid up to --max-latent-dim, where the answer is reported as a lower bound."""

from __future__ import annotations

import json

import pytest

from conftest import SMALL_EVAL
from latentsweep.cli import main
from latentsweep.config import build_config
from latentsweep.errors import ConfigError
from latentsweep.selection import saturation


def test_the_top_is_saturated_when_its_last_step_gained_at_most_the_tolerance():
    # MNIST's default study (README): 15 -> 20 gained 0.18 dB, 14.7 of 20 units active
    mnist = saturation({5: 17.76, 10: 20.49, 15: 21.40, 20: 21.58}, {20: 14.7}, 0.5)
    assert mnist.saturated and (mnist.top, mnist.below, round(mnist.gain_db, 2)) == (20, 15, 0.18)
    assert mnist.sentence(0.5) == ("The top of the grid, 20, is saturated. From 15 to 20 the PSNR changed by +0.18 dB "
                                   "(tolerance 0.5 dB); 14.7 of its 20 units are active.")
    # the 30-dimensional folder's quick study (docs/performance.md): 15 -> 20 gained 0.88 dB
    folder = saturation({5: 12.15, 10: 14.07, 15: 16.17, 20: 17.05}, {20: 20.0}, 0.5)
    assert not folder.saturated and folder.sentence(0.5).startswith("The top of the grid, 20, is not saturated")
    # the order of the sizes does not matter, a fall counts as no gain, one size says nothing
    assert saturation({20: 15.0, 10: 15.4}, {}, 0.5).saturated
    single = saturation({20: 15.0}, {}, 0.5)
    assert not single.saturated and single.below is None and "Only one size, 20" in single.sentence(0.5)


def test_max_latent_dim_below_the_grid_is_one_line():
    with pytest.raises(ConfigError, match="--max-latent-dim: 10 is below the grid's largest size, 20"):
        build_config({"max_latent_dim": 10})
    assert build_config({}).selection.extend and build_config({"preset": "quick"}).selection.extend


@pytest.mark.slow  # a study of three sizes, 8 epochs each
def test_an_unsaturated_top_is_extended_to_the_cap_and_the_answer_called_a_lower_bound(tmp_path):
    """Images on a 10-dimensional manifold, sizes 2 and 3 with no tolerance: every step gains, so 3 is not saturated,
    6 is added (twice 3, the cap), and at the cap the report calls the answer a lower bound."""
    from synthetic_images import manifold_images, write_image_folder

    folder = write_image_folder(tmp_path / "images", manifold_images(1500, 12, 12, 1, dimension=10, seed=1), None)
    out = tmp_path / "study"
    assert main(["-q", "run", "--dataset", "folder", "--data-dir", str(folder), "--out", str(out), "--workers", "1",
                 "--latent-dims", "2,3", "--seeds", "0", "--val-size", "100", "--epochs", "8", "--no-refine",
                 "--no-check-training", "--tolerance-db", "0", "--max-latent-dim", "6", *SMALL_EVAL,
                 "--representatives-per-class", "2", "--iwae-images", "20", "--tsne-points", "50"]) == 0
    info = json.loads((out / "config.json").read_text())
    assert info["extension"] == [6] and info["config"]["model"]["latent_dims"] == [2, 3, 6]
    rows = json.loads((out / "results.json").read_text())
    assert {row["latent_dim"] for row in rows if row["latent_dim"] is not None} == {2, 3, 6}
    report = (out / "report.md").read_text()
    assert "## Does the grid bracket the answer?" in report and "--extend added 6 to the grid" in report
    assert "Lower bound: the top of the grid, 6, is not saturated" in report
    assert "it reached --max-latent-dim (6)" in report


def test_the_dry_run_states_the_extensions_worst_case(fake_data, capsys):
    from latentsweep.plan import extension_sizes

    assert extension_sizes((5, 10, 15, 20), 256) == [40, 80, 160, 256]
    assert extension_sizes((5, 10), 10) == [] and extension_sizes((3,), 7) == [6, 7]
    assert main(["run", "--data-dir", str(fake_data), "--no-verify-data", "--out", str(fake_data.parent / "s"),
                 "--latent-dims", "2,3", "--seeds", "0", "--epochs", "1", "--train-subset", "100", "--val-size", "50",
                 "--max-latent-dim", "10", "--no-refine", "--dry-run"]) == 0
    assert "Extension (--extend), worst case: the top never saturated, sizes 6, 10 added one after another (up to " \
           "--max-latent-dim 10), 2 trial(s)" in capsys.readouterr().out


@pytest.mark.slow  # the same study twice
def test_a_study_killed_while_an_added_size_trains_finishes_that_size_when_run_again(tmp_path):
    """The size --extend added is part of the recorded grid: run again after a kill, the study trains it to the end
    rather than judging the top from the sizes before it."""
    from synthetic_images import manifold_images, write_image_folder

    folder = write_image_folder(tmp_path / "images", manifold_images(1500, 12, 12, 1, dimension=10, seed=1), None)
    out = tmp_path / "study"
    command = ["-q", "run", "--dataset", "folder", "--data-dir", str(folder), "--out", str(out), "--workers", "1",
               "--latent-dims", "2,3", "--seeds", "0", "--val-size", "100", "--epochs", "8", "--no-refine",
               "--no-check-training", "--tolerance-db", "0", "--max-latent-dim", "6", *SMALL_EVAL,
               "--representatives-per-class", "2", "--iwae-images", "20", "--tsne-points", "50"]
    assert main(command) == 0
    added = out / "models" / "conv_beta1_latent006_seed0"
    (added / "DONE").unlink()  # as if killed after its last epoch's checkpoint, before its evaluation was marked
    (out / "results.json").unlink()
    assert main(command) == 0
    assert (added / "DONE").is_file()
    rows = json.loads((out / "results.json").read_text())
    assert {row["latent_dim"] for row in rows if row["latent_dim"] is not None} == {2, 3, 6}
    assert json.loads((out / "config.json").read_text())["extension"] == [6]
