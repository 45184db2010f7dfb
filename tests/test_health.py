"""A model that failed to train is caught and left out: the checks on crafted lines of models (known answers),
the constant image's PSNR against its formula, and a study with an architecture that collapses on purpose."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from conftest import TINIEST, write_fake_dataset
from latentsweep.health import ModelHealth, failures
from latentsweep.layout import Trial
from latentsweep.metrics import constant_image_psnr

CONSTANT = 11.41  # dB: the issue's folder, where every collapsed model scored this


def line(*models: tuple[int, float, float, float], seed: int = 0, architecture: str = "conv") -> list[ModelHealth]:
    """One variant and seed's models: (latent size, PSNR, KL, active units) each."""
    return [ModelHealth(Trial(architecture, 1.0, size, seed), psnr, kl, units) for size, psnr, kl, units in models]


def failed_sizes(models: list[ModelHealth], constant: float = CONSTANT) -> dict[int, list[str]]:
    return {trial.latent_dim: signs for trial, signs in failures(models, constant).items()}


def test_the_mnist_quick_studys_models_all_pass():
    # whole-test-set PSNR, KL and active units of the MNIST quick study (README's sizes); constant image about 11 dB
    assert failed_sizes(line((5, 16.34, 16.9, 5), (10, 18.27, 25.1, 10), (15, 18.65, 26.3, 13), (20, 18.89, 26.9, 15)),
                        constant=11.0) == {}


def test_the_issues_collapsed_top_size_is_caught_with_its_numbers():
    """The folder of 16x16 images: size 20 collapsed (0 of 20 active units, KL 0.00, 1.9 dB below 15)."""
    failed = failed_sizes(line((5, 13.9, 9.0, 5), (10, 14.9, 12.0, 10), (15, 15.4, 14.0, 15), (20, 13.5, 0.001, 0)))
    assert list(failed) == [20]
    assert failed[20][0] == "posterior collapse: mean KL 0.001 nats per image, below 0.1"
    assert failed[20][1] == ("worse than a smaller size: PSNR 13.50 dB, 1.90 dB below size 15's 15.40 dB "
                             "(more than 1 dB)")


def test_each_sign_alone_and_only_passed_models_as_the_reference():
    # nearly collapsed: KL 1 nat, most units "active", but no better than the mean image
    assert failed_sizes(line((20, 12.0, 2.0, 18), (40, 11.67, 1.0, 35)))[40] == [
        "no better than a constant image: PSNR 11.67 dB against 11.41 dB for the training images' mean image "
        "(less than 0.5 dB above it)"]
    # far fewer active units than the smaller size, though reconstructions are fine
    assert failed_sizes(line((10, 20.0, 20.0, 10), (15, 20.2, 15.0, 4))) == {
        15: ["posterior collapse: 4 active units, fewer than half of size 10's 10"]}
    assert failed_sizes(line((10, 20.0, 20.0, 10), (15, 20.2, 15.0, 0))) == {15: ["posterior collapse: no active unit"]}
    # a drop within 1 dB is training noise, not failure
    assert failed_sizes(line((10, 20.0, 20.0, 10), (15, 19.1, 20.0, 10))) == {}
    # 15 failed, so 20 is judged against 10 (which it beats), not against 15
    assert failed_sizes(line((10, 20.0, 20.0, 10), (15, 11.5, 0.0, 0), (20, 20.5, 21.0, 12))).keys() == {15}
    # lines are per variant and seed: another seed's better model does not make this one worse
    models = line((10, 20.0, 20.0, 10), seed=0) + line((15, 19.5, 20.0, 12), seed=1)
    assert failed_sizes(models) == {}


def test_the_constant_image_psnr_is_the_mean_images_by_its_formula():
    generator = torch.Generator().manual_seed(0)
    train = torch.randint(0, 256, (50, 1, 3, 4), dtype=torch.uint8, generator=generator)
    test = torch.rand(7, 1, 3, 4, generator=generator)
    mean_image = train.double().mean(0) / 255
    expected = sum(10 * math.log10(1 / float(((image.double() - mean_image) ** 2).mean())) for image in test) / 7
    assert constant_image_psnr(train, test, batch_size=6) == pytest.approx(expected, rel=1e-12)
    assert constant_image_psnr(train.float() / 255, test) == pytest.approx(expected, rel=1e-6)  # intensities too


class SaysNothing(nn.Module):
    """A VAE that collapses on purpose: its encoder always answers the prior (mean 0, log-variance 0) and its
    decoder ignores the code, learning one image."""

    def __init__(self, latent_dim: int, image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.image = nn.Parameter(torch.zeros(image_shape))

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        zeros = images.new_zeros(len(images), self.latent_dim)
        return zeros, zeros

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.image.expand(len(latents), *self.image.shape)


def collapsing_at_3(latent_dim: int, image_shape: tuple[int, int, int]) -> nn.Module:
    """The conv VAE at latent size 2, SaysNothing from 3 on."""
    from latentsweep.architectures import builder

    return SaysNothing(latent_dim, image_shape) if latent_dim >= 3 else builder("conv")(latent_dim, image_shape)


def test_a_model_that_collapses_on_purpose_is_caught_left_out_and_reported(tmp_path, capsys):
    import latentsweep
    from latentsweep.cli import print_summary

    data = write_fake_dataset(tmp_path / "data", train=700, test=60)
    out = tmp_path / "study"
    # Enough training that the conv model at size 2 trains (the checks would rightly leave out an untrained one).
    settings = {**{key: value for key, value in TINIEST.items() if key != "no_verify_data"}, "train_subset": 600}
    results = latentsweep.run_study(architecture=[collapsing_at_3], data_dir=str(data), verify_data=False, out=str(out),
                                    seeds=(0,), epochs=4, workers=1, refine=False, extend=False,
                                    check_training=True, **settings)
    info = json.loads((out / "config.json").read_text())
    [excluded] = info["excluded"]
    assert excluded["latent_dim"] == 3 and excluded["trial"].endswith("_latent003_seed0")
    assert excluded["signs"][0] == "posterior collapse: mean KL 0.000 nats per image, below 0.1"
    assert info["constant_image_psnr_db"] > 5
    # retrained once with the remedy (a KL warm-up over half the steps) before it was left out; the first attempt kept
    [retrained] = info["retrained"]
    assert retrained["trial"] == excluded["trial"] and retrained["signs"][0].startswith("posterior collapse")
    trial_config = json.loads((out / "models" / excluded["trial"] / "config.json").read_text())
    assert trial_config["train_config"]["kl_warmup"] == 0.5
    first = json.loads((out / "failed_attempts" / excluded["trial"] / "config.json").read_text())
    assert first["train_config"]["kl_warmup"] == 0.0
    healthy = json.loads((out / "models" / excluded["trial"].replace("latent003", "latent002") / "config.json").read_text())
    assert healthy["train_config"]["kl_warmup"] == 0.0  # only the failed model was retrained
    # left out of the results and the answer; the report and the summary name it with its signs
    rows = json.loads((out / "results.json").read_text())
    assert {row["latent_dim"] for row in rows if row["latent_dim"] is not None} == {2}
    assert list(results.selection.values()) == [2]
    report = (out / "report.md").read_text()
    assert "1 model(s) failed to train at first and were retrained once with the KL weight rising to beta over the " \
           "first 50% of the steps: latent size 3, seed 0 (first attempt: posterior collapse" in report
    assert "; failed again)." in report
    assert "1 model(s) failed to train and are left out of the answer: latent size 3, seed 0 (posterior collapse" in report
    assert "latent size 3, seed 0: excluded (posterior collapse: mean KL 0.000 nats" in report
    print_summary(out)
    assert "left out, failed to train: " + excluded["trial"] + " (posterior collapse" in capsys.readouterr().out


def test_the_readmes_default_study_passes_every_check_and_its_top_is_saturated():
    """The default study's recorded results (docs/study/results.csv, 3 seeds, sizes 5-20 and the probes 12, 13): no
    model fails a check, so nothing would be retrained or left out, and 20 is saturated, so nothing would be added."""
    import csv
    from pathlib import Path

    from latentsweep.metrics import combine_seeds, lookup
    from latentsweep.selection import overall_active_units, overall_psnr, saturation

    path = Path(__file__).parent.parent / "docs" / "study" / "results.csv"
    with path.open(newline="") as handle:
        rows = [{**row, "latent_dim": int(row["latent_dim"]), "seed": int(row["seed"]), "beta": float(row["beta"]),
                 "mean": float(row["mean"])} for row in csv.DictReader(handle) if row["latent_dim"]]
    models = []
    for size, seed in sorted({(row["latent_dim"], row["seed"]) for row in rows}):
        mine = [row for row in rows if (row["latent_dim"], row["seed"]) == (size, seed)]
        models.append(ModelHealth.from_rows(Trial("conv", 1.0, size, seed), mine))
    assert len(models) == 18 and all(model.kl > 10 for model in models)  # 6 sizes, 3 seeds
    assert failures(models, 12.0) == {}  # the mean training image scores under 12 dB on MNIST (quick study: 11.86)
    grid = [row for row in rows if row["latent_dim"] in (5, 10, 15, 20)]
    combined = combine_seeds(grid)
    assert lookup(combined, protocol="test_set", cls="all", metric="psnr")
    assert saturation(overall_psnr(combined), overall_active_units(combined), 0.5).saturated
