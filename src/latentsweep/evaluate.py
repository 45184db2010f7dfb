"""Evaluating a trained model on the test set (the data set's official one where it has one).

Reconstructions are decoded from the posterior mean (z = mu(x)), not from a random sample, so
they are deterministic and show what the code of an image holds. The negative ELBO uses one
seeded sample of z per image, as in training.

Two protocols, both aggregated per class (each row named by its label text) and overall:
  representative  the first `per_class` test images of each class in the test order (10 per class
                  by default; the first test images when unlabelled): a fixed, documented choice
                  that anyone can redo
  test_set        every test image, mean with 95% confidence interval

With a `Reference` (the feature classifier and what it says of the test set, computed once per
study), also:
  prior_samples     generation metrics on images decoded from z ~ N(0, I) (default 10,000)
  reconstructions   the same metrics on the posterior-mean reconstructions of the test set
  likelihood        IWAE estimate of -log p(x) and the negative ELBO on a stratified test subset
  test_set          active units, and the linear probe's accuracy per class
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from latentsweep import latent
from latentsweep.classifier import FeatureClassifier, predict
from latentsweep.data import to_pictures
from latentsweep.dimension import code_dimension
from latentsweep.metrics import (REGISTRY, active_units, class_histogram, confident_share, entropy_bits, frechet_distance,
                                 inception_score, kernel_distance, kl_per_dimension, per_image_metrics, summarize_by_class)
from latentsweep.model import vae_forward, vae_loss_terms



def per_image_fields() -> list[str]:
    """per_image.csv's columns: the test index, the label, every per-image metric of the registry."""
    return ["index", "label", *per_image_metrics()]


def representative_indices(labels: np.ndarray, per_class: int, num_classes: int | None = None) -> np.ndarray:
    """The first `per_class` indices of each class, class by class (0s first, then 1s, ...);
    the classes are 0 to the largest label unless `num_classes` says otherwise."""
    chosen = []
    for cls in range(int(labels.max()) + 1 if num_classes is None else num_classes):
        members = np.flatnonzero(labels == cls)[:per_class]
        chosen.append(members)
    return np.concatenate(chosen)


@torch.no_grad()
def reconstruct(model: nn.Module, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Posterior-mean reconstructions in [0, 1], same shape as `images`."""
    model.eval()
    parts = [torch.sigmoid(model.decode(model.encode(images[i:i + batch_size])[0]))
             for i in range(0, len(images), batch_size)]
    return torch.cat(parts)


@torch.no_grad()
def sample_prior(model: nn.Module, latent_dim: int, count: int, seed: int, device: torch.device) -> torch.Tensor:
    """Images decoded (as Bernoulli means) from z ~ N(0, I), reproducible for a given seed."""
    model.eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    latents = torch.randn(count, latent_dim, generator=generator, device=device)
    return torch.sigmoid(model.decode(latents))


@torch.no_grad()
def per_image_scores(model: nn.Module, images: torch.Tensor, batch_size: int, seed: int) -> dict[str, np.ndarray]:
    """Every per-image metric of the registry (each Metric's score) for every image, as float64 arrays of length N."""
    model.eval()
    generator = torch.Generator(device=images.device).manual_seed(seed)
    scored = {name: REGISTRY[name].score for name in per_image_metrics()}
    columns: dict[str, list[torch.Tensor]] = {name: [] for name in scored}
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        output = vae_forward(model, batch, generator)
        terms = vae_loss_terms(output, batch)
        recon = torch.sigmoid(model.decode(output.mean))
        for name, score in scored.items():
            columns[name].append(score(batch, recon, terms))
    return {name: torch.cat(parts).double().cpu().numpy() for name, parts in columns.items()}


def active_units_of(means: np.ndarray) -> dict:
    """The tidy row (without the trial's axes) of the active units among posterior means (N, latent_dim)."""
    return {"protocol": "test_set", "class": "all", "n": len(means), "metric": "active_units",
            "mean": float(active_units(means)), "ci_low": math.nan, "ci_high": math.nan}


def active_units_row(model: nn.Module, images: torch.Tensor) -> dict:
    """active_units_of the model's posterior means of `images`."""
    return active_units_of(latent.posterior_parameters(model, images)[0])


@dataclass
class Evaluation:
    rows: list[dict]  # tidy: the trial's axes, protocol, class, n, metric, mean, ci_low, ci_high
    per_image: dict[str, np.ndarray]
    representatives: np.ndarray  # test indices of the representative images
    # Images as data.to_pictures gives them: (count, H, W) grey or (count, H, W, 3) colour, float32 in [0, 1].
    representative_originals: np.ndarray  # the representative test images
    representative_reconstructions: np.ndarray  # their posterior-mean reconstructions
    samples: np.ndarray  # decoded from the prior
    analysis: dict[str, np.ndarray] | None = None  # arrays for the latent-space figures (see analyse)
    summary: dict | None = None  # scalars not in the tidy rows: KL per dimension, KID spread, classifier
    seconds: dict[str, float] = field(default_factory=dict)  # wall time of each part, for timing.json


def evaluate_model(
    model: nn.Module,
    test_images: torch.Tensor,
    test_labels: torch.Tensor,
    latent_dim: int,
    seed: int,
    axes: dict | None = None,
    per_class: int = 10,
    num_samples: int = 64,
    batch_size: int = 1000,
    reference: Reference | None = None,
    settings: AnalysisSettings | None = None,
    class_names: Sequence[str] | None = None,
) -> Evaluation:
    """Reconstruction metrics on both protocols; with a `reference`, everything `analyse` adds.

    Every tidy row starts with `axes` (the trial's axis values; default latent_dim and seed). Label i is the
    class `class_names[i]`; without names the classes are 0 to the largest label. Empty `class_names` means
    unlabelled images: rows for "all" alone, and the first `per_class` test images as the representatives.
    """
    axes = axes if axes is not None else {"latent_dim": latent_dim, "seed": seed}
    device = next(model.parameters()).device
    images = test_images.to(device)
    labels = test_labels.cpu().numpy()
    seconds: dict[str, float] = {}
    with timed(seconds, "reconstruction"):
        scores = per_image_scores(model, images, batch_size, seed)
    representatives = representative_indices(labels, per_class, None if class_names is None else max(1, len(class_names)))
    rows = []
    for protocol, subset in (("representative", representatives), ("test_set", np.arange(len(labels)))):
        for row in summarize_by_class({k: v[subset] for k, v in scores.items()}, labels[subset], class_names):
            rows.append({**axes, "protocol": protocol, **row})
    originals = images[torch.as_tensor(representatives, device=device)]
    recon = reconstruct(model, originals, batch_size)
    samples = sample_prior(model, latent_dim, num_samples, seed, device)
    analysis, summary = None, None
    if reference is not None:
        if settings is None:
            raise ValueError("evaluate_model needs AnalysisSettings together with a Reference")
        extra_rows, analysis, summary = analyse(model, latent_dim, images, labels, seed, reference, settings, batch_size,
                                                seconds)
        rows += [{**axes, **row} for row in extra_rows]
    return Evaluation(
        rows=rows,
        per_image={"index": np.arange(len(labels)), "label": labels, **scores},
        representatives=representatives,
        representative_originals=to_pictures(originals),
        representative_reconstructions=to_pictures(recon),
        samples=to_pictures(samples),
        analysis=analysis,
        summary=summary,
        seconds=seconds,
    )


@contextlib.contextmanager
def timed(seconds: dict[str, float], part: str) -> Iterator[None]:
    """Add the block's wall time to seconds[part]."""
    started = time.perf_counter()
    try:
        yield
    finally:
        seconds[part] = seconds.get(part, 0.0) + time.perf_counter() - started


# ----------------------------------------------------------------------------------------
# Likelihood


@torch.no_grad()
def iwae_nll(model: nn.Module, images: torch.Tensor, samples: int, seed: int, images_per_chunk: int = 8,
             decode_rows: int | None = None) -> np.ndarray:
    """Per-image importance-weighted estimate of -log p(x) (Burda et al. 2016), in nats.

    -log (1/K sum_k p(x|z_k) p(z_k) / q(z_k|x)) with z_k ~ q(z|x). With K = 1 its expectation is
    the negative ELBO; it decreases towards -log p(x) as K grows. p(x|z) is the decoder's
    Bernoulli likelihood, a proper likelihood for binary images (see --binarize).

    The latent codes of a chunk are decoded `decode_rows` at a time: on a CPU this bound ran at about
    twice the codes per second decoding 256 at a time as decoding a chunk's 8,000 in one batch, whose
    activations (100 MB for one layer) overflow the caches (benchmarks/bench_eval.py). Other devices (a GPU)
    decode a whole chunk at once unless `decode_rows` is given.
    """
    model.eval()
    if decode_rows is None:
        decode_rows = 256 if images.device.type == "cpu" else images_per_chunk * samples
    generator = torch.Generator(device=images.device).manual_seed(seed)
    log_2pi = math.log(2 * math.pi)
    results = []
    for start in range(0, len(images), images_per_chunk):
        batch = images[start:start + images_per_chunk]
        mean, log_var = model.encode(batch)
        noise = torch.randn((len(batch), samples, mean.shape[1]), generator=generator, device=batch.device)
        latents = mean[:, None] + noise * torch.exp(0.5 * log_var)[:, None]
        image_of_row = torch.arange(len(batch) * samples, device=batch.device) // samples
        log_px_z = torch.cat([
            -F.binary_cross_entropy_with_logits(model.decode(rows), batch[images_of_rows], reduction="none").flatten(1).sum(1)
            for rows, images_of_rows in zip(latents.flatten(0, 1).split(decode_rows), image_of_row.split(decode_rows))])
        log_pz = (-0.5 * (latents.pow(2) + log_2pi)).sum(2)
        log_qz_x = (-0.5 * (noise.pow(2) + log_var[:, None] + log_2pi)).sum(2)
        log_weights = log_px_z.view(len(batch), samples) + log_pz - log_qz_x
        results.append(-(torch.logsumexp(log_weights, dim=1) - math.log(samples)))
    return torch.cat(results).double().cpu().numpy()


@torch.no_grad()
def likelihood_scores(model: nn.Module, images: torch.Tensor, samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per image, in nats: the IWAE bound with `samples` importance samples and the one-sample negative
    ELBO on the same images, both seeded by `seed` (the study's likelihood rows and `latentsweep likelihood`)."""
    nll = iwae_nll(model, images, samples, seed)  # leaves the model in eval mode
    terms = vae_loss_terms(vae_forward(model, images, torch.Generator(device=images.device).manual_seed(seed)), images)
    return nll, (terms.reconstruction + terms.kl).double().cpu().numpy()


# ----------------------------------------------------------------------------------------
# Generation quality, likelihood and the latent space, measured against a study-wide reference


@dataclass(frozen=True)
class AnalysisSettings:
    """How much work the analysis does; the defaults live in StudyConfig, which builds this."""

    generation_samples: int
    iwae_samples: int
    interpolation_steps: int = 10
    traversal_steps: int = 9
    # The views that describe one model rather than compare sizes (PCA, t-SNE, interpolations,
    # traversals): a study draws them for its first seed only (trial.evaluate_trial).
    describe: bool = True


@dataclass
class Reference:
    """What every model of a study is measured against; computed once per study."""

    class_names: tuple[str, ...]  # label i's text; empty for unlabelled images
    classifier: FeatureClassifier | None  # None for unlabelled images: no generation metrics then
    classifier_record: dict | None
    test_features: np.ndarray | None
    train_images: torch.Tensor  # for the linear probe
    train_labels: np.ndarray
    likelihood_indices: np.ndarray  # stratified test subset for the IWAE estimate
    tsne_indices: np.ndarray  # stratified test subset for t-SNE
    interpolation_pairs: tuple[tuple[int, int], ...] = ()  # the data set's class pairs (data.Dataset), else derived
    traversed_class: int = 0  # the class whose first test image the traversal starts from

    @property
    def labelled(self) -> bool:
        return bool(self.class_names)


def generation_rows(features: np.ndarray, probabilities: np.ndarray, reference: Reference,
                    protocol: str, seed: int) -> tuple[list[dict], dict]:
    """Tidy rows of FD, KID, IS, class shares, their entropy and the confident share."""
    kid_mean, kid_std = kernel_distance(features, reference.test_features, seed=seed)
    shares = class_histogram(probabilities)
    count = len(features)
    values = {"fd": frechet_distance(features, reference.test_features), "kid": kid_mean,
              "inception_score": inception_score(probabilities), "class_entropy_bits": entropy_bits(shares),
              "confident_share": confident_share(probabilities, 0.9)}
    rows = [{"protocol": protocol, "class": "all", "n": count, "metric": metric, "mean": value,
             "ci_low": math.nan, "ci_high": math.nan} for metric, value in values.items()]
    rows += [{"protocol": protocol, "class": name, "n": count, "metric": "class_share", "mean": float(share),
              "ci_low": math.nan, "ci_high": math.nan} for name, share in zip(reference.class_names, shares)]
    return rows, {f"{protocol}_kid_std": kid_std}


@torch.no_grad()
def analyse(model: nn.Module, latent_dim: int, test_images: torch.Tensor, labels: np.ndarray, seed: int, reference: Reference,
            settings: AnalysisSettings, batch_size: int,
            seconds: dict[str, float] | None = None) -> tuple[list[dict], dict[str, np.ndarray], dict]:
    """Everything beyond reconstruction for one model: (tidy rows, arrays for figures, extra scalars).
    Each part's wall time is added to `seconds` (generation, likelihood, latent_space, views). Unlabelled
    images (no class names, no classifier in the reference) have no generation metrics and no linear probe."""
    device = test_images.device
    rows: list[dict] = []
    extra: dict = {}
    seconds = {} if seconds is None else seconds
    # Generation: prior samples and test-set reconstructions through the feature classifier.
    if reference.classifier is not None:
        with timed(seconds, "generation"):
            samples = sample_prior(model, latent_dim, settings.generation_samples, seed + 1, device)
            reconstructions = reconstruct(model, test_images, batch_size)
            for protocol, images in (("prior_samples", samples), ("reconstructions", reconstructions)):
                features, probabilities = predict(reference.classifier, images)
                protocol_rows, protocol_extra = generation_rows(features.double().cpu().numpy(),
                                                                probabilities.double().cpu().numpy(), reference, protocol,
                                                                seed)
                rows += protocol_rows
                extra.update(protocol_extra)

    # Likelihood on a stratified test subset: IWAE bound with K samples, and the ELBO on the same images.
    with timed(seconds, "likelihood"):
        subset = torch.as_tensor(reference.likelihood_indices, device=device)
        nll, neg_elbo = likelihood_scores(model, test_images[subset], settings.iwae_samples, seed)
        for row in summarize_by_class({"iwae_nll": nll, "neg_elbo": neg_elbo}, labels[reference.likelihood_indices],
                                      reference.class_names):
            rows.append({"protocol": "likelihood", **row})
        extra["iwae_samples"] = settings.iwae_samples

    # The latent space: KL per dimension, active units, the codes' intrinsic dimension, the linear probe.
    with timed(seconds, "latent_space"):
        means, log_vars = latent.posterior_parameters(model, test_images)
        per_dimension = kl_per_dimension(means, log_vars)
        extra["kl_per_dimension"] = per_dimension.tolist()
        extra["posterior_mean_variance"] = np.asarray(means, np.float64).var(0).tolist()  # > 0.01: an active unit
        rows.append(active_units_of(means))
        rows.append({"protocol": "test_set", "class": "all", "n": len(means), "metric": "code_dimension",
                     "mean": code_dimension(means), "ci_low": math.nan, "ci_high": math.nan})
        # One code per image drawn from q(z|x), from its own generator so the other measures' draws stay as they were.
        sampled = means + np.exp(0.5 * log_vars) * np.random.default_rng(seed).standard_normal(means.shape)
        rows.append({"protocol": "test_set", "class": "all", "n": len(means), "metric": "sampled_code_dimension",
                     "mean": code_dimension(sampled), "ci_low": math.nan, "ci_high": math.nan})
        if reference.labelled:
            train_means, _ = latent.posterior_parameters(model, reference.train_images.to(device))
            correct = latent.linear_probe(train_means, reference.train_labels, means, labels)
            rows += [{"protocol": "test_set", **row} for row in summarize_by_class({"probe_accuracy": correct}, labels,
                                                                                     reference.class_names)]

    if not settings.describe:
        return rows, {"kl_per_dimension": per_dimension}, extra
    # The views of one model: 2-D maps, interpolations, traversals.
    with timed(seconds, "views"):
        arrays = describe_latent_space(model, test_images, labels, means, per_dimension, seed, reference, settings)
    return rows, arrays, extra


def describe_latent_space(model: nn.Module, test_images: torch.Tensor, labels: np.ndarray, means: np.ndarray,
                          per_dimension: np.ndarray, seed: int, reference: Reference,
                          settings: AnalysisSettings) -> dict[str, np.ndarray]:
    """PCA and t-SNE of the posterior means, interpolations between classes, traversals of the
    dimensions with the most KL: the arrays of the report's latent-space figures."""
    class_count = len(reference.class_names)
    first_of_class = [int(np.flatnonzero(labels == c)[0]) for c in range(max(class_count, 1))]
    if class_count <= 1:  # one class, or unlabelled images: between the first test images, two by two
        pairs = [(2 * i, 2 * i + 1) for i in range(min(5, len(labels) // 2))]
    else:
        class_pairs = (reference.interpolation_pairs or
                       [(c, (c + class_count // 2) % class_count) for c in range(min(5, class_count))])
        pairs = [(first_of_class[a], first_of_class[b]) for a, b in class_pairs]
    interpolations = np.stack([latent.interpolate(model, test_images[a], test_images[b], settings.interpolation_steps)
                               for a, b in pairs])
    order = np.argsort(-per_dimension)
    traversed = list(order[: min(8, len(order))])
    values = np.linspace(-3, 3, settings.traversal_steps)
    traversed_image = first_of_class[reference.traversed_class]
    traversals = latent.traverse(model, test_images[traversed_image], traversed, values)
    return {
        "kl_per_dimension": per_dimension,
        "pca": latent.pca_2d(means).astype(np.float32),
        "pca_labels": labels,  # as loaded: a narrower type would overflow for folders with many classes
        "tsne": latent.tsne_2d(means[reference.tsne_indices], seed).astype(np.float32),
        "tsne_labels": labels[reference.tsne_indices],
        "interpolations": interpolations.astype(np.float32),
        "interpolation_pairs": np.array([[labels[a], labels[b]] for a, b in pairs]),
        "traversals": traversals.astype(np.float32),
        "traversal_dimensions": np.array(traversed),
        "traversal_values": values,
    }
