"""Evaluating a trained model on the official test set.

Reconstructions are decoded from the posterior mean (z = mu(x)), not from a random sample, so
they are deterministic and show what the code of an image holds. The negative ELBO uses one
seeded sample of z per image, as in training.

Two protocols, both aggregated per class 0-9 and overall:
  representative  the first `per_class` test images of each class in the official test order
                  (10 per class by default): a fixed, documented choice that anyone can redo
  test_set        all 10,000 test images, mean with 95% confidence interval
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from latentsweep.metrics import mse_per_image, psnr_from_mse, ssim_per_image, summarize_by_class
from latentsweep.model import ConvVAE, vae_loss_terms

METRICS = ("mse", "psnr", "ssim", "neg_elbo")
PER_IMAGE_FIELDS = ["index", "label", "mse", "psnr", "ssim", "neg_elbo", "reconstruction", "kl"]


def representative_indices(labels: np.ndarray, per_class: int, num_classes: int = 10) -> np.ndarray:
    """The first `per_class` indices of each class, class by class (0s first, then 1s, ...)."""
    chosen = []
    for cls in range(num_classes):
        members = np.flatnonzero(labels == cls)[:per_class]
        chosen.append(members)
    return np.concatenate(chosen)


@torch.no_grad()
def reconstruct(model: ConvVAE, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Posterior-mean reconstructions in [0, 1], same shape as `images`."""
    model.eval()
    parts = [torch.sigmoid(model.decode(model.encode(images[i:i + batch_size])[0]))
             for i in range(0, len(images), batch_size)]
    return torch.cat(parts)


@torch.no_grad()
def sample_prior(model: ConvVAE, count: int, seed: int, device: torch.device) -> torch.Tensor:
    """Images decoded (as Bernoulli means) from z ~ N(0, I), reproducible for a given seed."""
    model.eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    latents = torch.randn(count, model.config.latent_dim, generator=generator, device=device)
    return torch.sigmoid(model.decode(latents))


@torch.no_grad()
def per_image_scores(model: ConvVAE, images: torch.Tensor, batch_size: int, seed: int) -> dict[str, np.ndarray]:
    """Every metric for every image, as float64 arrays of length N."""
    model.eval()
    generator = torch.Generator(device=images.device).manual_seed(seed)
    columns: dict[str, list[torch.Tensor]] = {name: [] for name in ("mse", "psnr", "ssim", "neg_elbo", "reconstruction", "kl")}
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        output = model(batch, generator=generator)
        terms = vae_loss_terms(output, batch)
        recon = torch.sigmoid(model.decode(output.mean))
        mse = mse_per_image(batch, recon)
        columns["mse"].append(mse)
        columns["psnr"].append(psnr_from_mse(mse))
        columns["ssim"].append(ssim_per_image(batch, recon))
        columns["neg_elbo"].append(terms.reconstruction + terms.kl)
        columns["reconstruction"].append(terms.reconstruction)
        columns["kl"].append(terms.kl)
    return {name: torch.cat(parts).double().cpu().numpy() for name, parts in columns.items()}


@dataclass
class Evaluation:
    rows: list[dict]  # tidy: latent_dim, seed, protocol, digit, n, metric, mean, ci_low, ci_high
    per_image: dict[str, np.ndarray]
    representatives: np.ndarray  # test indices of the representative images
    representative_originals: np.ndarray  # (len(representatives), 28, 28) float32
    representative_reconstructions: np.ndarray  # (len(representatives), 28, 28) float32
    samples: np.ndarray  # (num_samples, 28, 28) float32, decoded from the prior


def evaluate_model(
    model: ConvVAE,
    test_images: torch.Tensor,
    test_labels: torch.Tensor,
    latent_dim: int,
    seed: int,
    per_class: int = 10,
    num_samples: int = 64,
    batch_size: int = 1000,
) -> Evaluation:
    device = next(model.parameters()).device
    images = test_images.to(device)
    labels = test_labels.cpu().numpy()
    scores = per_image_scores(model, images, batch_size, seed)
    representatives = representative_indices(labels, per_class)
    metric_scores = {name: scores[name] for name in METRICS}
    rows = []
    for protocol, subset in (("representative", representatives), ("test_set", np.arange(len(labels)))):
        for row in summarize_by_class({k: v[subset] for k, v in metric_scores.items()}, labels[subset]):
            rows.append({"latent_dim": latent_dim, "seed": seed, "protocol": protocol, **row})
    originals = images[torch.as_tensor(representatives, device=device)]
    recon = reconstruct(model, originals, batch_size)
    samples = sample_prior(model, num_samples, seed, device)
    return Evaluation(
        rows=rows,
        per_image={"index": np.arange(len(labels)), "label": labels, **scores},
        representatives=representatives,
        representative_originals=originals.squeeze(1).float().cpu().numpy(),
        representative_reconstructions=recon.squeeze(1).float().cpu().numpy(),
        samples=samples.squeeze(1).float().cpu().numpy(),
    )
