"""TensorBoard logs: written by a real run, read back with TensorBoard's own reader."""

from __future__ import annotations

import pytest
import torch

from latentsweep.cli import main
from latentsweep.model import ConvVAE, VAEConfig
from latentsweep.storage import read_json
from latentsweep.tracking import TrialLog, image_grid
from latentsweep.storage import state_dict_sha256
from latentsweep.train import load_checkpoint

from test_plan import TINY

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
plugin_data_pb2 = pytest.importorskip("tensorboard.plugins.hparams.plugin_data_pb2")


def read_events(folder):
    events = event_accumulator.EventAccumulator(str(folder), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    events.Reload()
    return events


def test_image_grid_places_images_row_by_row():
    images = torch.arange(6, dtype=torch.float32).view(6, 1, 1, 1).expand(6, 1, 2, 3)
    grid = image_grid(images, columns=3)
    assert grid.shape == (1, 4, 9)
    assert grid[0, 0, ::3].tolist() == [0, 1, 2] and grid[0, 2, ::3].tolist() == [3, 4, 5]


@pytest.mark.slow  # a subprocess or several trainings
def test_run_with_tensorboard_logs_every_epoch_and_trains_the_same_weights(fake_data, tmp_path):
    logged, plain = tmp_path / "logged", tmp_path / "plain"
    assert main(["-q", "run", "--data-dir", str(fake_data), "--out", str(logged), *TINY, "--tensorboard"]) == 0
    assert main(["-q", "run", "--data-dir", str(fake_data), "--out", str(plain), *TINY]) == 0
    for trial in ("conv_beta1_latent002_seed0", "conv_beta1_latent003_seed0"):
        weights = [state_dict_sha256(load_checkpoint(out / "models" / trial / "best.pt")["model_state"])
                   for out in (logged, plain)]
        assert weights[0] == weights[1], "logging changed the training"

        events = read_events(logged / "tensorboard" / trial)
        tags = events.Tags()
        assert {"train/loss", "train/reconstruction", "train/kl", "val/loss", "val/kl"} <= set(tags["scalars"])
        assert [e.step for e in events.Scalars("val/loss")] == [1, 2, 3]
        history = read_json(logged / "models" / trial / "metrics.json")
        val_losses = [float(line.split(",")[4]) for line in
                      (logged / "models" / trial / "history.csv").read_text().splitlines()[1:]]
        assert [e.value for e in events.Scalars("val/loss")] == pytest.approx(val_losses, rel=1e-6)
        assert {"samples/prior", "reconstructions/validation_above_reconstruction"} <= set(tags["images"])
        sample_images = events.Images("samples/prior")
        assert [image.step for image in sample_images] == [1, 2, 3]
        assert (sample_images[0].width, sample_images[0].height) == (4 * 28, 4 * 28)

        hparams = read_events(logged / "tensorboard" / trial / "hparams")
        psnr = next(row["mean"] for row in history["rows"]
                    if (row["protocol"], row["class"], row["metric"]) == ("test_set", "all", "psnr"))
        assert hparams.Scalars("test/psnr_db")[0].value == pytest.approx(psnr, rel=1e-6)
        session = plugin_data_pb2.HParamsPluginData.FromString(
            hparams.PluginTagToContent("hparams")["_hparams_/session_start_info"]).session_start_info
        assert session.hparams["latent_dim"].number_value == int(trial.split('latent')[1][:3])
        assert session.hparams["epochs"].number_value == 3


def test_a_resumed_trial_purges_the_epochs_it_repeats(tmp_path):
    model = ConvVAE(VAEConfig(latent_dim=2))
    val = torch.rand(8, 1, 28, 28)
    first = TrialLog(tmp_path, val, seed=0, latent_dim=2)
    for epoch, loss in ((1, 5.0), (2, 4.0), (3, 3.0)):  # epoch 3 logged, then the process dies before its checkpoint
        first.epoch_end({"epoch": epoch, "val_loss": loss}, model)
    first.close()
    resumed = TrialLog(tmp_path, val, seed=0, latent_dim=2)
    resumed.epoch_end({"epoch": 3, "val_loss": 2.5}, model)
    resumed.close()
    assert [(e.step, e.value) for e in read_events(tmp_path).Scalars("val/loss")] == [(1, 5.0), (2, 4.0), (3, 2.5)]


def test_tensorboard_log_leaves_the_random_state_alone():
    model, val = ConvVAE(VAEConfig(latent_dim=3)), torch.rand(8, 1, 28, 28)
    before = torch.get_rng_state()
    samples, reconstructions = TrialLog(None, val, seed=1, latent_dim=3)._pictures(model)
    assert samples.shape == (16, 1, 28, 28) and reconstructions.shape == (8, 1, 28, 28)
    assert torch.equal(before, torch.get_rng_state()) and model.training


def test_tensorboard_missing_is_a_one_line_error_before_training(fake_data, tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if the extra were not installed
    assert main(["run", "--data-dir", str(fake_data), "--out", str(tmp_path / "s"), *TINY, "--tensorboard"]) == 2
    assert 'pip install "latentsweep[tensorboard]"' in capsys.readouterr().err
    assert not list((tmp_path / "s").glob("models/*/last.pt"))
