"""What the latent space holds: posterior statistics, a linear probe, 2-D views, interpolations
and traversals. Functions take a model and tensors and return numpy arrays.

- Linear probe: multinomial logistic regression (scikit-learn) on standardised posterior means,
  fitted on the training split and scored on the test split: how linearly the code separates
  the classes.
- 2-D views of posterior means coloured by class: PCA (exact, all test images) and t-SNE
  (scikit-learn, on a stratified subset, seeded).
- Interpolations decode evenly spaced points on the line between two test images' posterior
  means; traversals vary one latent dimension at a time around a test image's posterior mean.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from latentsweep.data import intensities, to_pictures


@torch.no_grad()
def posterior_parameters(model: nn.Module, images: torch.Tensor, batch_size: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """(means, log-variances) of q(z|x) for every image, float64 arrays of shape (N, latent_dim)."""
    model.eval()
    means, log_vars = [], []
    for start in range(0, len(images), batch_size):
        mean, log_var = model.encode(intensities(images[start:start + batch_size]))
        means.append(mean)
        log_vars.append(log_var)
    return torch.cat(means).double().cpu().numpy(), torch.cat(log_vars).double().cpu().numpy()


def linear_probe(train_codes: np.ndarray, train_labels: np.ndarray, test_codes: np.ndarray,
                 test_labels: np.ndarray) -> np.ndarray:
    """Per test image: 1.0 if the probe classifies it correctly, else 0.0 (its mean is the accuracy)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_codes)
    probe = LogisticRegression(max_iter=500)
    with warnings.catch_warnings():  # a probe that stops at max_iter is still a fair probe
        warnings.simplefilter("ignore")
        probe.fit(scaler.transform(train_codes), train_labels)
    return (probe.predict(scaler.transform(test_codes)) == test_labels).astype(np.float64)


def pca_2d(codes: np.ndarray) -> np.ndarray:
    """Projection onto the two principal components (via SVD of the centred codes)."""
    centred = codes - codes.mean(0)
    if codes.shape[1] == 1:
        return np.hstack([centred, np.zeros_like(centred)])
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    return centred @ components[:2].T


def tsne_2d(codes: np.ndarray, seed: int) -> np.ndarray:
    """t-SNE of the codes in 2-D; all at the origin where fewer than three codes differ (a collapsed model's codes
    are all the same, and scikit-learn's Barnes-Hut t-SNE crashes the process on points at zero distance)."""
    from sklearn.manifold import TSNE

    if len(np.unique(codes, axis=0)) < 3:
        return np.zeros((len(codes), 2))
    perplexity = min(30.0, max(2.0, (len(codes) - 1) / 3))
    init = "pca" if codes.shape[1] >= 2 else "random"  # one latent dimension has no second principal component
    return TSNE(n_components=2, perplexity=perplexity, init=init, random_state=seed).fit_transform(codes)


@torch.no_grad()
def interpolate(model: nn.Module, start_image: torch.Tensor, end_image: torch.Tensor, steps: int) -> np.ndarray:
    """`steps` pictures (data.to_pictures) decoded along the straight line between two posterior means."""
    model.eval()
    start_mean, _ = model.encode(start_image[None])
    end_mean, _ = model.encode(end_image[None])
    weights = torch.linspace(0, 1, steps, device=start_mean.device)[:, None]
    latents = (1 - weights) * start_mean + weights * end_mean
    return to_pictures(torch.sigmoid(model.decode(latents)))


@torch.no_grad()
def traverse(model: nn.Module, image: torch.Tensor, dimensions: list[int], values: np.ndarray) -> np.ndarray:
    """(len(dimensions), len(values), *picture) pictures (data.to_pictures): dimension d of the image's posterior
    mean set to each value."""
    model.eval()
    mean, _ = model.encode(image[None])
    latents = mean.repeat(len(dimensions) * len(values), 1)
    for row, dimension in enumerate(dimensions):
        latents[row * len(values):(row + 1) * len(values), dimension] = torch.as_tensor(values, dtype=latents.dtype)
    decoded = to_pictures(torch.sigmoid(model.decode(latents)))
    return decoded.reshape(len(dimensions), len(values), *decoded.shape[1:])
