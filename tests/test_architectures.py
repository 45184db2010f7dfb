"""Architectures as an axis: conv and mlp built in, a user's builder checked against the protocol,
checkpoints that never import a module by themselves, and the Python entry points."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import TINIEST, cli, expected_answers, tiny_options
from latentsweep.architectures import ModelSpec, model_from_checkpoint
from latentsweep.errors import CheckpointError, ConfigError
from latentsweep.model import MNIST_SHAPE, ConvVAE, VAEConfig
from latentsweep.storage import state_dict_sha256

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TINY_RUN = tiny_options(**TINIEST)


class NoDecode(nn.Module):
    def __init__(self, latent_dim, image_shape):
        super().__init__()
        self.layer = nn.Linear(784, 2 * latent_dim)

    def encode(self, images):
        return self.layer(images.flatten(1)).chunk(2, dim=1)


class WrongImage(NoDecode):
    def decode(self, latents):
        return torch.zeros(len(latents), 1, 27, 27)


class OneOutput(WrongImage):
    def encode(self, images):
        return self.layer(images.flatten(1))


def no_decode(latent_dim, image_shape):
    return NoDecode(latent_dim, image_shape)


def wrong_image(latent_dim, image_shape):
    return WrongImage(latent_dim, image_shape)


def one_output(latent_dim, image_shape):
    return OneOutput(latent_dim, image_shape)


def not_a_module(latent_dim, image_shape):
    return "model"


@pytest.mark.parametrize("builder, message", [
    ("no_decode", r"the model has no decode\(\) method"),
    ("wrong_image", r"decode\(\) returned \(2, 1, 27, 27\) for 2 latent codes; expected logits of shape \(2, 1, 28, 28\)"),
    ("one_output", r"encode\(\) must return a pair \(mean, log_var\) of tensors, got Tensor"),
    ("not_a_module", r"the builder returned str, not a torch\.nn\.Module"),
])
def test_a_model_that_breaks_the_protocol_is_named_in_one_line(builder, message):
    with pytest.raises(ConfigError, match=f"--architecture test_architectures:{builder}: {message}"):
        ModelSpec(f"test_architectures:{builder}", 3, MNIST_SHAPE).build(seed=0)


def test_a_builder_that_does_not_import_names_the_module():
    with pytest.raises(ConfigError, match="cannot import module 'no_such_package.vae'.*PYTHONPATH"):
        ModelSpec("no_such_package.vae:build", 3, MNIST_SHAPE).build(seed=0)
    with pytest.raises(ConfigError, match="module test_architectures has no function 'missing'"):
        ModelSpec("test_architectures:missing", 3, MNIST_SHAPE).build(seed=0)


def test_conv_weights_for_a_seed_are_those_of_the_network_built_directly():
    torch.manual_seed(7)
    direct = ConvVAE(VAEConfig(latent_dim=5))
    assert state_dict_sha256(ModelSpec("conv", 5, MNIST_SHAPE).build(seed=7).state_dict()) == state_dict_sha256(direct.state_dict())
    assert ModelSpec("mlp", 5, MNIST_SHAPE).build(seed=7).state_dict()["encoder.1.weight"].shape == (400, 784)


def test_a_user_checkpoint_is_rebuilt_only_when_its_architecture_is_named():
    spec = ModelSpec("my_vae:build", 4, MNIST_SHAPE)
    sys.path.insert(0, str(EXAMPLES))
    try:
        model = spec.build(seed=0)
        checkpoint = {**spec.checkpoint_fields(), "model_state": model.state_dict()}
        with pytest.raises(CheckpointError, match="made with the user architecture my_vae:build; pass --architecture"):
            model_from_checkpoint(checkpoint, "best.pt")
        rebuilt, rebuilt_spec = model_from_checkpoint(checkpoint, "best.pt", trusted=["my_vae:build"])
    finally:
        sys.path.remove(str(EXAMPLES))
    assert rebuilt_spec == spec
    assert state_dict_sha256(rebuilt.state_dict()) == state_dict_sha256(model.state_dict())


@pytest.mark.slow  # a subprocess or several trainings
def test_the_example_architecture_runs_end_to_end_and_its_checkpoints_need_it_named(fake_data, tmp_path):
    out = tmp_path / "study"
    env = {"PYTHONPATH": os.pathsep.join([str(EXAMPLES), os.environ.get("PYTHONPATH", "")])}
    result = cli("run", "--data-dir", str(fake_data), "--out", str(out), *TINY_RUN, "--architecture", "my_vae:build,mlp",
                 env=env)
    assert result.returncode == 0, result.stderr
    rows = json.loads((out / "results.json").read_text())
    assert {row["architecture"] for row in rows if row["latent_dim"] is not None} == {"my_vae:build", "mlp"}
    report = (out / "report.md").read_text()
    assert "architecture my_vae:build, beta 1: smallest latent size" in report
    assert "the user's architecture my_vae:build" in report
    # The explorer runs the built-in mlp and names the user's architecture as one it cannot run.
    explorer = (out / "explorer.html").read_text()
    assert '"axes":{"architecture":"my_vae:build","beta":1.0},"name":"architecture my_vae:build, beta 1"' in explorer
    assert '"runnable":false' in explorer
    assert '"axes":{"architecture":"mlp","beta":1.0}' in explorer and '"runnable":true' in explorer
    checkpoint = out / "models" / "my_vae-build_beta1_latent002_seed0" / "best.pt"
    refused = cli("sample", str(checkpoint), "--out", str(tmp_path / "s.png"), env=env)
    assert refused.returncode == 2 and "pass --architecture my_vae:build" in refused.stderr
    assert "Traceback" not in refused.stderr
    sampled = cli("sample", str(checkpoint), "--out", str(tmp_path / "s.png"), "--architecture", "my_vae:build", env=env)
    assert sampled.returncode == 0, sampled.stderr
    assert (tmp_path / "s.png").stat().st_size > 0


@pytest.mark.slow  # a subprocess or several trainings
def test_a_protocol_error_stops_the_run_before_training_with_exit_2(fake_data, tmp_path):
    env = {"PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    result = cli("run", "--data-dir", str(fake_data), "--out", str(tmp_path / "study"), *TINY_RUN,
                 "--architecture", "test_architectures:wrong_image", env=env)
    assert result.returncode == 2
    assert "decode() returned (2, 1, 27, 27)" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "study" / "models" / "test_architectures-wrong_image_beta1_latent002_seed0" / "last.pt").exists()


def small_mlp(latent_dim, image_shape):
    """A notebook user's own builder, handed to run_study as a callable."""
    from latentsweep.model import MlpConfig, MlpVAE

    return MlpVAE(MlpConfig(latent_dim=latent_dim, hidden_dim=32))


@pytest.mark.slow  # a subprocess or several trainings
def test_python_entry_points_run_and_load_a_study(fake_data, tmp_path):
    """The README's example: run_study with a callable and two betas, load_study of the folder."""
    import latentsweep

    results = latentsweep.run_study(architecture=[small_mlp, "conv"], betas=(1, 4), out=str(tmp_path / "api"),
                                    data_dir=str(fake_data), verify_data=False, latent_dims=(2, 3), train_subset=100,
                                    val_size=50, epochs=1, seeds=(0,), generation_samples=100, iwae_samples=5, iwae_images=20,
                                    tsne_points=50, classifier_epochs=1, num_samples=4, workers=1, refine=False,
                                    check_training=False, extend=False)
    assert set(results.selection) == {("test_architectures:small_mlp", 1.0), ("test_architectures:small_mlp", 4.0),
                                      ("conv", 1.0), ("conv", 4.0)}
    rows = results.table.to_dict("records") if hasattr(results.table, "to_dict") else results.table
    assert results.selection == expected_answers(rows)
    assert len(results.trials) == 8 and {record.status for record in results.trials} == {"done"}
    assert all((record.folder / "best.pt").is_file() for record in results.trials)
    table = results.table
    rows = table.to_dict("records") if hasattr(table, "to_dict") else table
    psnr = [row for row in rows if row["metric"] == "psnr" and row["protocol"] == "test_set" and row["class"] == "all"]
    assert len(psnr) == 8
    again = latentsweep.load_study(tmp_path / "api")
    assert again.selection == results.selection
