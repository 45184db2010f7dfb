"""The latent explorer: one offline HTML page that runs a study's models in the browser.

`write_explorer(study_dir)` writes STUDY_DIR/explorer.html from the folder's files alone: for each
variant (architecture, beta) and latent size the best weights of one seed's model (the study's first seed
that finished; in an ordered study, --ordered, every size is the first units of one model, carried once), the
representative test images, each size's headline numbers and each latent dimension's mean KL and activity. The page's script (explorer.js beside this file) runs the
encoders and decoders in plain JavaScript, so the file needs no server, no network and no
library: open it from disk.

Weights travel as float16 (base64), half the bytes of float32; decoded images then differ from
PyTorch's float32 ones by well under 0.01 per pixel (tests/test_explorer.py measures it in
Chromium). Only the built-in networks are described layer by layer (conv, mlp); a user's own
architecture is listed on the page as one the page cannot run. Any image shape runs; drawing an input
is offered for grey data sets only (MNIST's own preprocessing of a drawing for 28x28, the drawing
scaled to the data set's size otherwise), and every data set's representative test images can be picked.
"""

from __future__ import annotations

import base64
import html
import json
import math
from importlib import resources
from pathlib import Path
from typing import Any, Container

import numpy as np
import torch
from torch import nn

from latentsweep.architectures import model_from_checkpoint
from latentsweep.config import BUILTIN_ARCHITECTURES, VARIANT_AXES
from latentsweep.errors import LatentsweepError
from latentsweep.layout import (BEST_CHECKPOINT, EXPLORER_FILE, IMAGES_FILE, METRICS_FILE, PER_IMAGE_FILE, Trial, is_done,
                                model_folder, trial_dir, variant_name)
from latentsweep.metrics import ACTIVE_UNIT_THRESHOLD, REGISTRY, lookup
from latentsweep.results import read_labels, read_results
from latentsweep.storage import atomic_write_text, read_json
from latentsweep.train import load_checkpoint

PAGE_METRICS = ("mse", "psnr", "kl", "active_units")  # what the page shows; labels and decimals from the registry


def f16_base64(tensor: torch.Tensor) -> str:
    """A tensor's values as little-endian float16 bytes, base64: what the page decodes (biases)."""
    return base64.b64encode(tensor.detach().cpu().to(torch.float16).numpy().astype("<f2").tobytes()).decode("ascii")


def int8_base64(tensor: torch.Tensor) -> dict[str, str]:
    """A weight tensor as int8 with one float32 scale per slice of its first axis (an output channel, or a
    transposed convolution's input channel), symmetric: value = q * scale, q in -127..127. Half the bytes of
    float16, so that a study's every tested size fits one page (the default study's, with its probes, under 12 MB);
    the page's decoded pixels then differ from PyTorch's by at most a few hundredths (tests/test_explorer.py)."""
    flat = tensor.detach().cpu().double().reshape(tensor.shape[0], -1)
    scale = flat.abs().amax(1, keepdim=True) / 127
    scale[scale == 0] = 1.0  # an all-zero slice: any scale decodes it to zeros
    quantised = torch.round(flat / scale).clamp(-127, 127).to(torch.int8)
    return {"q": base64.b64encode(quantised.numpy().tobytes()).decode("ascii"),
            "scale": base64.b64encode(scale.squeeze(1).numpy().astype("<f4").tobytes()).decode("ascii")}


def describe_layers(sequential: nn.Sequential) -> list[dict[str, Any]]:
    """The layers of an nn.Sequential as the page's script runs them; LatentsweepError for a layer it
    cannot run. Convolutions keep PyTorch's weight layouts: (out, in, k, k) and, transposed, (in, out, k, k)."""
    layers = []
    for layer in sequential:
        if isinstance(layer, nn.Conv2d):
            kind = "conv2d"
        elif isinstance(layer, nn.ConvTranspose2d):
            kind = "conv_transpose2d"
        elif isinstance(layer, nn.Linear):
            layers.append({"type": "linear", "in": layer.in_features, "out": layer.out_features,
                           "weight": int8_base64(layer.weight), "bias": f16_base64(layer.bias)})
            continue
        elif isinstance(layer, nn.ReLU):
            layers.append({"type": "relu"})
            continue
        elif isinstance(layer, nn.Flatten):
            layers.append({"type": "flatten"})
            continue
        elif isinstance(layer, nn.Unflatten):
            layers.append({"type": "unflatten", "shape": list(layer.unflattened_size)})
            continue
        else:
            raise LatentsweepError(f"the explorer cannot run a {type(layer).__name__} layer")
        if layer.groups != 1 or layer.dilation != (1, 1) or layer.padding_mode != "zeros" or \
                layer.kernel_size[0] != layer.kernel_size[1] or layer.stride[0] != layer.stride[1] or \
                layer.padding[0] != layer.padding[1]:
            raise LatentsweepError(f"the explorer runs square, ungrouped convolutions only, not {layer}")
        described = {"type": kind, "in": layer.in_channels, "out": layer.out_channels,
                     "kernel": layer.kernel_size[0], "stride": layer.stride[0], "padding": layer.padding[0],
                     "weight": int8_base64(layer.weight), "bias": f16_base64(layer.bias)}
        if kind == "conv_transpose2d":  # (rows, columns) added where the encoder rounded an odd side down
            described["output_padding"] = list(layer.output_padding)
        layers.append(described)
    return layers


def describe_model(model: nn.Module) -> dict[str, Any]:
    """encoder and decoder layers of a built-in VAE, whose encode() splits the encoder's output into
    (mean, log_var) halves and whose decode() is the decoder (model.py)."""
    return {"encoder": describe_layers(model.encoder), "decoder": describe_layers(model.decoder)}


def chosen_trials(study_dir: Path, trials: list[Trial], excluded: Container[str] = ()) -> dict[tuple[tuple, int], Trial]:
    """For each (variant, latent size), grid or probe, the trial the page shows: the first seed that finished and
    trained (not `excluded` by the health checks)."""
    chosen: dict[tuple[tuple, int], Trial] = {}
    for trial in trials:
        key = (trial.variant, trial.latent_dim)
        if key not in chosen and is_done(trial_dir(study_dir, trial)) and trial.name not in excluded:
            chosen[key] = trial
    return chosen


def page_data(study_dir: Path) -> dict[str, Any]:
    """Everything the page shows, as JSON-ready data."""
    results = read_results(study_dir)
    info, config = results.info, results.config
    selection = config.selection
    variants_data, representatives = [], None
    chosen = chosen_trials(study_dir, results.trials, results.excluded)
    for variant, answer in results.answers.items():
        rows, selected = results.rows_of(variant), answer.selected
        sizes, networks = [], {}
        for (trial_variant, latent_dim), trial in sorted(chosen.items()):
            if trial_variant != variant:
                continue
            folder = trial_dir(study_dir, trial)
            psnr = lookup(rows, latent_dim=latent_dim, protocol="test_set", cls="all", metric="psnr")
            units = lookup(rows, latent_dim=latent_dim, protocol="test_set", cls="all", metric="active_units")
            # The model the size runs: its own, or for a prefix of an ordered model that model's first latent_dim
            # units, its network carried once for all its prefixes and its units' measures read from it.
            source = model_folder(folder)
            analysis = read_json(source / METRICS_FILE).get("analysis") or {}
            if source != folder:
                analysis = {key: analysis[key][:latent_dim] for key in ("kl_per_dimension", "posterior_mean_variance")
                            if key in analysis}
            entry: dict[str, Any] = {
                "latent_dim": latent_dim, "seed": trial.seed, "trial": trial.name, "selected": latent_dim == selected,
                "psnr": _number(psnr[0]["mean"]) if psnr else None,
                "psnr_ci": [_number(psnr[0]["ci_low"]), _number(psnr[0]["ci_high"])] if psnr else None,
                "ci_over": psnr[0].get("ci_over", "images") if psnr else None,
                "active_units": _number(units[0]["mean"]) if units else None,
                "kl_per_dimension": analysis.get("kl_per_dimension"),
                "posterior_mean_variance": analysis.get("posterior_mean_variance"),
            }
            entry["network"] = None  # a user's own architecture: the page names it as one it cannot run
            if trial.architecture in BUILTIN_ARCHITECTURES:
                if source.name not in networks:
                    checkpoint = source / BEST_CHECKPOINT
                    model, spec = model_from_checkpoint(load_checkpoint(checkpoint), checkpoint)
                    networks[source.name] = {**describe_model(model), "code_size": spec.latent_dim}
                entry["network"] = source.name
            sizes.append(entry)
            if representatives is None:  # the same images for every model; their labels from this one's scores
                with np.load(folder / IMAGES_FILE) as images:
                    representatives = (images["originals"], images["representatives"], folder)
        axes = dict(zip(VARIANT_AXES, variant))
        variants_data.append({"axes": axes, "name": variant_name(variant), "selected": selected,
                              "runnable": axes["architecture"] in BUILTIN_ARCHITECTURES, "sizes": sizes,
                              "networks": networks})
    if representatives is None:
        raise LatentsweepError(f"{study_dir}: no finished model to explore")
    originals, indices, scored_folder = representatives
    labels = read_labels(scored_folder, indices[:len(originals)])
    # Stored pictures are (N, H, W) grey or (N, H, W, 3) colour (data.to_pictures); the page reads (N, C, H, W).
    originals = originals[:, None] if originals.ndim == 3 else originals.transpose(0, 3, 1, 2)
    class_names = info["class_names"]
    return {
        "title": f"latentsweep explorer: {config.data.dataset}",
        "dataset": config.data.dataset,
        "class_names": class_names,
        "image_shape": list(originals.shape[1:]),  # (channels, height, width)
        "seeds": list(config.training.seeds),
        "active_threshold": ACTIVE_UNIT_THRESHOLD,
        "tolerance_db": selection.tolerance_db,
        "variant_axes": list(VARIANT_AXES),
        "variants": variants_data,
        # How the page shows the numbers it computes or reads: each metric's label and decimals.
        "metrics": {name: {"label": REGISTRY[name].label, "digits": REGISTRY[name].digits} for name in PAGE_METRICS},
        # Representative test images as bytes 0-255 (the page divides by 255), with their labels.
        "images": base64.b64encode(np.clip(np.rint(originals * 255), 0, 255).astype(np.uint8).tobytes()).decode("ascii"),
        "image_labels": labels,
        "image_indices": [int(i) for i in indices],
    }


def _number(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def render_page(data: dict[str, Any]) -> str:
    """The HTML page: its style, its script and its data inline."""
    assets = resources.files("latentsweep") / "assets"
    script = (assets / "explorer.js").read_text(encoding="utf-8")
    style = (assets / "explorer.css").read_text(encoding="utf-8")
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")  # nothing in it may close the script tag
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:">
<title>{html.escape(data['title'])}</title>
<style>{style}</style>
</head>
<body>
<noscript>This page runs the study's models in JavaScript; please allow scripts for this file.</noscript>
<script type="application/json" id="study-data">{payload}</script>
<script>{script}</script>
</body>
</html>
"""


def write_explorer(study_dir: str | Path) -> Path:
    """Write STUDY_DIR/explorer.html; returns its path."""
    study_dir = Path(study_dir)
    path = study_dir / EXPLORER_FILE
    atomic_write_text(path, render_page(page_data(study_dir)))
    return path
