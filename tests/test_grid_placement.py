"""The grid placed by the data (--latent-dims auto) and FONDUE's signal beside the rule (issue 31, items 3 and 4):
the formula's known answers, when a study asks for it, the placement on generated images of known dimension, the
one-line errors, the dry run's and the report's sentences, and FONDUE's criterion on crafted code dimensions."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from latentsweep.cli import main
from latentsweep.dimension import grid_from_dimension, placed_dimension, placement_sentence
from latentsweep.errors import ConfigError
from latentsweep.evaluate import AnalysisSettings, Reference, analyse
from latentsweep.selection import FONDUE_DIVERGENCE_DIMS, fondue_choice
from latentsweep.study import place_grid, wants_auto_grid


def test_the_auto_grid_is_a_quarter_a_half_once_and_twice_the_dimension_rounded_up():
    assert placed_dimension([13.56, 11.85]) == 14 and placed_dimension([0.4, 0.7]) == 1
    assert grid_from_dimension(placed_dimension([13.56, 11.85]), 256) == (4, 7, 14, 28)  # MNIST's test split
    assert grid_from_dimension(7, 256) == (2, 4, 7, 14)
    assert grid_from_dimension(placed_dimension([29.8, 26.4]), 256) == (8, 15, 30, 60)  # the folder
    assert grid_from_dimension(1, 256) == (1, 2)  # never below 1, no size twice
    assert grid_from_dimension(200, 256) == (50, 100, 200, 256)  # 2d capped by --max-latent-dim
    assert grid_from_dimension(3, 5) == (1, 2, 3, 5)


def test_which_studies_place_their_grid_from_the_data():
    assert not wants_auto_grid({})  # MNIST keeps the grid the question was asked on
    assert not wants_auto_grid({"dataset": "fashion-mnist"})
    assert wants_auto_grid({"dataset": "folder"}) and wants_auto_grid({"dataset": "cifar10"})
    assert not wants_auto_grid({"dataset": "folder", "latent_dims": "5,10"})
    assert not wants_auto_grid({"dataset": "folder", "latent_dims": (3, 6)})
    assert wants_auto_grid({"latent_dims": "auto"}) and wants_auto_grid({"latent_dims": ["Auto"]})  # flag or TOML
    assert place_grid({"latent_dims": "5,10"}) == ({"latent_dims": "5,10"}, None)  # nothing loaded or estimated


def test_auto_places_the_grid_around_a_generated_manifolds_dimension(tmp_path, capsys):
    from synthetic_images import manifold_images, write_image_folder

    folder = write_image_folder(tmp_path / "images", manifold_images(2100, 12, 12, 1, dimension=5, seed=2), None)
    settings, placement = place_grid({"dataset": "folder", "data_dir": str(folder), "val_size": 100})
    assert set(placement["estimates"]) == {"twonn", "mle"}
    assert placement["dimension"] == math.ceil(max(placement["estimates"].values()))
    # a study folder that exists keeps its recorded grid; --latent-dims still decides where given
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "config.json").write_text(json.dumps({"config": {"model": {"latent_dims": [3, 9, 27]}}}))
    again = {"dataset": "folder", "data_dir": str(folder), "val_size": 100, "out": str(tmp_path / "old")}
    assert place_grid(again) == ({**again, "latent_dims": (3, 9, 27)}, None)
    assert place_grid({**again, "latent_dims": "auto"})[0]["latent_dims"] == settings["latent_dims"]
    assert 4 <= placement["dimension"] <= 7  # five directions, 300 test images: near 5 (both estimators read low)
    assert settings["latent_dims"] == grid_from_dimension(placement["dimension"], 256)
    assert tuple(placement["latent_dims"]) == settings["latent_dims"]
    assert placement_sentence(placement).startswith("The grid was placed from the data's intrinsic dimension "
                                                    f"(--latent-dims auto): TwoNN {placement['estimates']['twonn']:.2f}, "
                                                    f"MLE (K=20) {placement['estimates']['mle']:.2f} on the test split")
    # the dry run says so before its plan, with the sizes it will train
    assert main(["run", "--dataset", "folder", "--data-dir", str(folder), "--val-size", "100", "--out",
                 str(tmp_path / "study"), "--preset", "quick", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    sizes = ", ".join(map(str, settings["latent_dims"]))
    assert printed.startswith("The grid was placed from the data's intrinsic dimension") and sizes in printed
    assert f"latent{settings['latent_dims'][-1]:03d}_seed0" in printed and "latent005" not in printed


def test_auto_on_too_few_test_images_is_one_line(tmp_path, capsys):
    from synthetic_images import manifold_images, write_image_folder

    folder = write_image_folder(tmp_path / "images", manifold_images(140, 8, 8, 1, dimension=3), None)
    with pytest.raises(ConfigError, match=r"--latent-dims auto: the test split has 20 images; estimating the data's "
                                          r"intrinsic dimension needs at least 42: give the sizes instead"):
        place_grid({"dataset": "folder", "data_dir": str(folder), "val_size": 10, "latent_dims": "auto"})
    assert main(["run", "--dataset", "folder", "--data-dir", str(folder), "--val-size", "10", "--out",
                 str(tmp_path / "study"), "--latent-dims", "auto", "--dry-run"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "needs at least 42" in error
    assert not (tmp_path / "study").exists()
    # where the data set's default asked for it, the fixed grid instead, with a warning
    settings = {"dataset": "folder", "data_dir": str(folder), "val_size": 10}
    assert place_grid(settings) == (settings, None)


def test_fondue_chooses_the_largest_size_before_the_sampled_codes_diverge_from_the_means():
    means = {5: 4.73, 10: 7.33, 15: 7.82, 20: 7.98}  # the MNIST quick study's TwoNN of posterior means
    sampled = {5: 4.95, 10: 8.27, 15: 11.72, 20: 14.26}  # and of sampled codes (docs/performance.md)
    choice = fondue_choice(means, sampled)
    assert (choice.size, choice.diverges_at) == (10, 15)
    assert choice.gaps[15] == pytest.approx(3.90) and choice.gaps[10] <= FONDUE_DIVERGENCE_DIMS
    assert choice.sentence(15).endswith("It diverges first at 15, so FONDUE's criterion would choose 10, against the "
                                        "rule's 15.")
    never = fondue_choice({2: 2.0, 4: 3.9}, {2: 2.1, 4: 4.2})
    assert (never.size, never.diverges_at) == (4, None) and "at least the top, 4" in never.sentence(4)
    at_once = fondue_choice({8: 3.0, 16: 3.1}, {8: 6.0, 16: 12.0})
    assert (at_once.size, at_once.diverges_at) == (None, 8) and "smaller size than any tested" in at_once.sentence(8)
    assert fondue_choice({2: 2.0, 4: 3.0}, {2: float("nan"), 4: 3.1}).diverges_at == 2  # no spread: not evidence of use
    assert fondue_choice({5: 4.0}, {}) is None  # a study evaluated before the sampled codes were


def test_sampled_codes_span_the_passive_units_that_the_posterior_means_do_not():
    """A model whose last three of five units are passive (mean 0, variance 1: the prior) and first two active: the
    means span about 2 dimensions, the sampled codes about 5."""
    import torch
    from torch import nn

    class HalfPassive(nn.Module):
        def encode(self, x):
            flat = x.flatten(1)
            mean = torch.zeros(len(x), 5)
            mean[:, :2] = torch.stack([flat[:, :10].mean(1), flat[:, 10:20].mean(1)], 1) * 20
            log_var = torch.zeros(len(x), 5)
            log_var[:, :2] = -12.0  # the active units' posteriors are sharp
            return mean, log_var

        def decode(self, z):
            return torch.zeros(len(z), 1, 8, 8)

    rng = np.random.default_rng(0)
    images = torch.as_tensor(rng.random((1500, 1, 8, 8)), dtype=torch.float32)
    unlabelled = Reference((), None, None, None, images[:10], np.zeros(10, np.int64), np.arange(20), np.arange(50))
    rows, _, _ = analyse(HalfPassive(), 5, images, np.zeros(1500, np.int64), 0, unlabelled,
                         AnalysisSettings(generation_samples=100, iwae_samples=2, describe=False), batch_size=500)
    found = {row["metric"]: row["mean"] for row in rows if row["metric"] in ("code_dimension", "sampled_code_dimension")}
    assert found["code_dimension"] == pytest.approx(2, abs=0.4)
    assert found["sampled_code_dimension"] == pytest.approx(5, abs=1.0)


def test_the_psnr_figure_shades_added_sizes_and_crosses_out_left_out_models(tmp_path):
    from PIL import Image

    from latentsweep.plots import psnr_by_seed

    rows = [{"latent_dim": size, "protocol": "test_set", "class": "all", "metric": "psnr", "mean": psnr,
             "ci_low": psnr - 0.1, "ci_high": psnr + 0.1} for size, psnr in ((5, 12.0), (10, 14.0), (20, 15.0))]
    seed_means = {row["latent_dim"]: {0: row["mean"]} for row in rows}
    plain = np.asarray(Image.open(psnr_by_seed(seed_means, rows, 10, tmp_path / "plain.png")).convert("RGB"), float)
    marked = np.asarray(Image.open(psnr_by_seed(seed_means, rows, 10, tmp_path / "marked.png", added=[20],
                                                left_out=[(40, 0)])).convert("RGB"), float)

    def crimson(pixels):  # the crosses, and the selected size's circle in both
        return ((pixels[..., 0] > 180) & (pixels[..., 1] < 60) & (pixels[..., 2] < 90)).sum()

    def shaded(pixels):  # tab:blue at 12% over white
        return (np.abs(pixels - [227, 237, 244]).max(-1) < 8).sum()

    assert crimson(marked) > crimson(plain) + 20
    assert shaded(marked) > 1000 and shaded(plain) < 50


def test_the_report_states_the_placement_fondue_and_marks_excluded_models(study, tmp_path):
    """A finished study's config.json given a placement, an added size and a left-out model: the bracket section
    says how the grid was placed and FONDUE's choice, and the figure's caption names the marks."""
    import json
    import shutil

    from latentsweep.layout import EXCLUDED_KEY, GRID_KEY
    from latentsweep.report import render_report

    source, _ = study
    folder = tmp_path / "study"
    shutil.copytree(source, folder)
    info = json.loads((folder / "config.json").read_text())
    placement = {"estimates": {"twonn": 3.4, "mle": 2.9}, "dimension": 4, "latent_dims": [1, 2, 4, 8]}
    info[GRID_KEY] = placement
    info[EXCLUDED_KEY] = [{"trial": "conv_beta1_latent099_seed0", "architecture": "conv", "beta": 1.0, "latent_dim": 99,
                           "seed": 0, "signs": ["made up for the test"]}]
    (folder / "config.json").write_text(json.dumps(info))
    render_report(folder)
    report = (folder / "report.md").read_text()
    bracket = report.split("## Does the grid bracket the answer?")[1].split("\n## ")[0]
    assert placement_sentence(placement) in bracket
    assert "FONDUE's signal of passive units" in bracket and "FONDUE's criterion would choose" in bracket
    assert "models left out as failed training runs as red crosses" in report
