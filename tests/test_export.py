"""Export: safetensors weights and config round-trip exactly; the ONNX decoder matches PyTorch."""

import json

import numpy as np
import pytest
import torch

from latentsweep.errors import LatentsweepError
from latentsweep.architectures import ModelSpec
from latentsweep.export import DecoderToImage, export_model, load_exported
from latentsweep.model import MNIST_SHAPE, ConvVAE, VAEConfig
from latentsweep.storage import state_dict_sha256


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = ConvVAE(VAEConfig(latent_dim=6)).eval()
    out = tmp_path_factory.mktemp("export") / "model"
    paths = export_model(model, ModelSpec("conv", 6, MNIST_SHAPE), out, {"latent_dim": 6, "seed": 0})
    return model, out, paths


def test_export_writes_three_files_and_the_weights_round_trip_exactly(exported):
    model, out, paths = exported
    assert [p.name for p in paths] == ["model.safetensors", "config.json", "decoder.onnx"]
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths)
    assert sorted(q.name for q in out.iterdir()) == ["config.json", "decoder.onnx", "model.safetensors"]
    config = json.loads((out / "config.json").read_text())
    assert config["model_config"]["latent_dim"] == 6 and config["seed"] == 0
    assert state_dict_sha256(load_exported(out).state_dict()) == state_dict_sha256(model.state_dict())


@pytest.mark.parametrize("batch", [1, 5, 64])
def test_onnx_decoder_matches_pytorch_within_1e_5(exported, batch):
    import onnxruntime

    model, out, _ = exported
    latents = torch.randn(batch, 6, generator=torch.Generator().manual_seed(batch))
    session = onnxruntime.InferenceSession(str(out / "decoder.onnx"), providers=["CPUExecutionProvider"])
    (onnx_images,) = session.run(["image"], {"z": latents.numpy()})
    with torch.no_grad():
        torch_images = DecoderToImage(model)(latents).numpy()
    assert onnx_images.shape == (batch, 1, 28, 28)
    np.testing.assert_allclose(onnx_images, torch_images, atol=1e-5, rtol=0)


def test_export_into_a_file_path_is_refused(tmp_path):
    (tmp_path / "taken").write_text("x")
    with pytest.raises(LatentsweepError, match="exists and is not a folder"):
        export_model(ConvVAE(VAEConfig(latent_dim=2)), ModelSpec("conv", 2, MNIST_SHAPE), tmp_path / "taken", {})


def test_a_colour_model_of_an_odd_size_exports_a_decoder_of_its_shape(tmp_path):
    import onnxruntime

    spec = ModelSpec("conv", 4, (3, 26, 30))
    model = spec.build(seed=1).eval()
    export_model(model, spec, tmp_path / "colour", {"latent_dim": 4})
    config = json.loads((tmp_path / "colour" / "config.json").read_text())
    shape = config["model_config"]
    assert (shape["image_channels"], shape["image_size"], shape["image_width"]) == (3, 26, 30)
    latents = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    session = onnxruntime.InferenceSession(str(tmp_path / "colour" / "decoder.onnx"), providers=["CPUExecutionProvider"])
    (onnx_images,) = session.run(["image"], {"z": latents.numpy()})
    with torch.no_grad():
        torch_images = DecoderToImage(model)(latents).numpy()
    assert onnx_images.shape == (3, 3, 26, 30)
    np.testing.assert_allclose(onnx_images, torch_images, atol=1e-5, rtol=0)
