"""Exporting a trained model for use outside latentsweep.

Writes, into one folder:
  model.safetensors  the weights (safetensors: no pickle, safe to load from strangers)
  config.json        the architecture and its model_config (rebuild with load_exported, or for conv with
                     ConvVAE(VAEConfig(**config["model_config"]))) and where the weights came from
                     (study, the trial's axes, test-set PSNR)
  decoder.onnx       the decoder alone, z (batch, latent_dim) -> image (batch, C, H, W) in [0, 1], the shape
                     of the images the model was trained on (1, 28, 28 for MNIST),
                     for sampling in any ONNX runtime; the batch dimension is dynamic

Needs the `export` extra (safetensors, onnx, onnxscript; onnxruntime to check the result).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from latentsweep.errors import LatentsweepError
from latentsweep.architectures import ModelSpec
from latentsweep.storage import atomic_write_bytes, write_json


class DecoderToImage(nn.Module):
    """The decoder with its sigmoid: latent codes in, Bernoulli means (images) out."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model.decode(latents))


def _require(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise LatentsweepError(f"latentsweep export needs the '{module}' package: "
                               "pip install 'latentsweep[export]'") from None


def export_model(model: nn.Module, spec: ModelSpec, out_dir: Path, provenance: dict[str, Any]) -> list[Path]:
    """Write model.safetensors, config.json and decoder.onnx into `out_dir`; returns their paths."""
    _require("safetensors")
    _require("onnxscript")
    from safetensors.torch import save as safetensors_bytes

    if out_dir.exists() and not out_dir.is_dir():
        raise LatentsweepError(f"{out_dir} (--out): exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    weights = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    atomic_write_bytes(out_dir / "model.safetensors", safetensors_bytes(weights, metadata={"format": "pt"}))
    write_json(out_dir / "config.json", {**spec.checkpoint_fields(), **provenance})

    example = torch.zeros(2, spec.latent_dim)
    batch = torch.export.Dim("batch", min=1)
    with tempfile.TemporaryDirectory(dir=out_dir) as scratch:
        temporary = Path(scratch) / "decoder.onnx"
        program = torch.onnx.export(DecoderToImage(model).eval(), (example,), dynamo=True, external_data=False,
                                    input_names=["z"], output_names=["image"], dynamic_shapes=({0: batch},))
        program.save(str(temporary), external_data=False)
        atomic_write_bytes(out_dir / "decoder.onnx", temporary.read_bytes())
    return [out_dir / "model.safetensors", out_dir / "config.json", out_dir / "decoder.onnx"]


def load_exported(out_dir: Path, trusted: tuple[str, ...] = ()) -> nn.Module:
    """Rebuild the model from an export folder (the round trip the tests check)."""
    from safetensors.torch import load_file

    from latentsweep.architectures import model_from_checkpoint
    from latentsweep.storage import read_json

    config = read_json(out_dir / "config.json")
    weights = load_file(out_dir / "model.safetensors")
    model, _ = model_from_checkpoint({**config, "model_state": weights}, out_dir / "config.json", trusted)
    return model.eval()
