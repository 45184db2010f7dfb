"""Image-quality metrics and their summaries: pure functions on tensors and arrays.

Definitions (intensities in [0, 1]):
  MSE  = mean over every pixel of every channel (C * H * W values) of (original - reconstruction)^2,
         per image
  PSNR = 10 * log10(1 / MSE) dB, per image; identical images would give infinity, so MSE is
         floored at 1e-10, which caps PSNR at 100 dB
  SSIM = structural similarity (Wang et al. 2004) with an 11x11 Gaussian window, sigma 1.5,
         data range 1, computed by torchmetrics, per image: the image is reflect-padded by 5
         pixels so the SSIM map covers every pixel, and the map is averaged; for colour images
         each channel has its own map, so this is the mean of the channels' SSIMs
Summaries are the mean over images with a 95% Student-t confidence interval for the mean.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from scipy import stats

from latentsweep.config import AXES, LEGACY_AXIS_VALUES, VARIANT_AXES
from latentsweep.dimension import ESTIMATOR_LABELS, MLE_NEIGHBOURS
from torchmetrics.functional.image import structural_similarity_index_measure

PSNR_CAP_DB = 100.0
MSE_FLOOR = 10 ** (-PSNR_CAP_DB / 10)  # MSE at which PSNR reaches the cap (data range 1)

AXIS_FIELDS = [axis.name for axis in AXES]  # the trial's coordinates
TIDY_FIELDS = [*AXIS_FIELDS, "protocol", "class", "n", "metric", "mean", "ci_low", "ci_high"]


PerImageScore = Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]  # (images, reconstructions, loss terms) -> (N,)


@dataclass(frozen=True)
class Metric:
    name: str  # the tidy table's "metric" column
    label: str  # short, for table headers: "PSNR dB"
    axis_label: str  # long, for figure axes: "PSNR, dB (higher is better)"
    digits: int  # decimals in tables and the summary
    better: str | None  # "higher", "lower", or None where neither is better
    protocols: tuple[str, ...]  # what it is measured on (evaluate.py's protocols)
    # A per-image score, computed by evaluation for every test image from the image, its posterior-mean
    # reconstruction and the loss terms (model.LossTerms: per-image reconstruction and KL, nats): per_image.csv's
    # column, summarised per class with a CI. None: computed by evaluate.analyse or dimension.py.
    score: PerImageScore | None = None
    headline: int = 0  # position among the headline columns (results table, overall figure, CLI summary); 0: not one
    by_class: bool = False  # a column of the per-class tables and a per-class figure
    selection: bool = False  # feeds the selection rule (selection.py)
    column: bool = True  # a column of the report's tables for its protocols (class_share has a figure instead)
    of_data: bool = False  # a property of the images, not of a model: rows without axis values (dimension.py)
    tensorboard: dict[str, str] = dataclass_field(default_factory=dict)  # protocol -> TensorBoard tag of the final value

    @property
    def per_image(self) -> bool:
        return self.score is not None


def mse_per_image(originals: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
    return (originals - reconstructions).pow(2).flatten(1).mean(1)


def psnr_from_mse(mse: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10(1.0 / mse.clamp_min(MSE_FLOOR))


def ssim_per_image(originals: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
    return structural_similarity_index_measure(
        reconstructions, originals, data_range=1.0, gaussian_kernel=True, sigma=1.5, kernel_size=11,
        reduction="none",
    )


RECONSTRUCTION_PROTOCOLS = ("representative", "test_set")
GENERATION_PROTOCOLS = ("prior_samples", "reconstructions")
# The registry: one entry per metric of the tidy table, read by evaluation (which per-image scores it computes),
# the report's tables, the figures, TensorBoard, the explorer and the command line's summaries.
REGISTRY: dict[str, Metric] = {metric.name: metric for metric in (
    Metric("mse", "MSE", "MSE (lower is better)", 4, "lower", RECONSTRUCTION_PROTOCOLS,
           score=lambda images, reconstructions, terms: mse_per_image(images, reconstructions), headline=2,
           by_class=True, tensorboard={"test_set": "test/mse"}),
    Metric("psnr", "PSNR dB", "PSNR, dB (higher is better)", 2, "higher", RECONSTRUCTION_PROTOCOLS,
           score=lambda images, reconstructions, terms: psnr_from_mse(mse_per_image(images, reconstructions)),
           headline=1, by_class=True, selection=True, tensorboard={"test_set": "test/psnr_db"}),
    Metric("ssim", "SSIM", "SSIM (higher is better)", 3, "higher", RECONSTRUCTION_PROTOCOLS,
           score=lambda images, reconstructions, terms: ssim_per_image(images, reconstructions), headline=3,
           by_class=True, tensorboard={"test_set": "test/ssim"}),
    Metric("neg_elbo", "neg. ELBO nats", "negative ELBO, nats (lower is better)", 1, "lower",
           (*RECONSTRUCTION_PROTOCOLS, "likelihood"), score=lambda images, reconstructions, terms: terms.reconstruction + terms.kl,
           headline=4, tensorboard={"test_set": "test/neg_elbo"}),
    Metric("reconstruction", "distortion: reconstruction, nats", "reconstruction term, nats (lower is better)", 2, "lower",
           RECONSTRUCTION_PROTOCOLS, score=lambda images, reconstructions, terms: terms.reconstruction),
    Metric("kl", "rate: KL, nats", "KL term, nats", 2, None, RECONSTRUCTION_PROTOCOLS,
           score=lambda images, reconstructions, terms: terms.kl),
    Metric("fd", "FD", "Fréchet distance (lower is better)", 2, "lower", GENERATION_PROTOCOLS, selection=True,
           tensorboard={"prior_samples": "samples/frechet_distance"}),
    Metric("kid", "KID", "KID (lower is better)", 4, "lower", GENERATION_PROTOCOLS),
    Metric("inception_score", "IS", "classifier Inception Score (higher is better)", 2, "higher", GENERATION_PROTOCOLS),
    Metric("class_entropy_bits", "entropy bits", "class entropy, bits", 3, "higher", GENERATION_PROTOCOLS),
    Metric("confident_share", "confident", "share classified with p > 0.9", 3, "higher", GENERATION_PROTOCOLS),
    Metric("class_share", "share", "share of images assigned to the class", 3, None, GENERATION_PROTOCOLS, column=False),
    Metric("iwae_nll", "IWAE -log p(x), nats", "IWAE -log p(x), nats (lower is better)", 2, "lower", ("likelihood",),
           tensorboard={"likelihood": "test/iwae_nll"}),
    Metric("active_units", "active units", "active units", 1, None, ("test_set",)),
    Metric("code_dimension", "code dimension", "code dimension (TwoNN of the posterior means)", 1, None, ("test_set",)),
    # FONDUE's signal (Bonheme and Grzes 2022): passive units add noise to sampled codes but not to the means.
    Metric("sampled_code_dimension", "sampled code dimension", "code dimension of sampled codes (TwoNN of z ~ q(z|x))",
           1, None, ("test_set",)),
    Metric("probe_accuracy", "probe test accuracy", "linear probe accuracy", 4, "higher", ("test_set",)),
    Metric("intrinsic_dimension_twonn", ESTIMATOR_LABELS["twonn"], "intrinsic dimension (TwoNN)", 2, None, ("test_set",), of_data=True),
    Metric("intrinsic_dimension_mle", ESTIMATOR_LABELS["mle"], f"intrinsic dimension (MLE, K = {MLE_NEIGHBOURS})", 2,
           None, ("test_set",), of_data=True),
)}
# What "why it saturates" tabulates for each latent size: how much of the code is used, and the rate and distortion.
SATURATION_METRICS = ("active_units", "code_dimension", "sampled_code_dimension", "kl", "reconstruction")
# What the comparison of variants shows at each variant's answer, beside the answer itself.
COMPARISON_METRICS = ("psnr", "active_units", "neg_elbo")


# The registry's groups, read when used (not frozen at import), so that a metric added to REGISTRY joins them.
def headline_metrics() -> tuple[str, ...]:
    """The headline columns in their order: the report's results table, the overall figure, the CLI summaries."""
    return tuple(sorted((name for name, metric in REGISTRY.items() if metric.headline),
                        key=lambda name: REGISTRY[name].headline))


def per_image_metrics() -> tuple[str, ...]:
    """per_image.csv's metric columns, in registry order."""
    return tuple(name for name, metric in REGISTRY.items() if metric.per_image)


def by_class_metrics() -> tuple[str, ...]:
    """The metrics of the per-class tables and figures, in registry order."""
    return tuple(name for name, metric in REGISTRY.items() if metric.by_class)


def generation_metrics() -> tuple[str, ...]:
    """The generation table's and figure's metrics: measured on GENERATION_PROTOCOLS, one number per model."""
    return tuple(name for name, metric in REGISTRY.items() if metric.protocols == GENERATION_PROTOCOLS and metric.column)


def data_metrics() -> tuple[str, ...]:
    """The metrics of the images themselves (dimension.py's rows, without axis values)."""
    return tuple(name for name, metric in REGISTRY.items() if metric.of_data)


def constant_image_psnr(train_images: torch.Tensor, test_images: torch.Tensor, batch_size: int = 5000) -> float:
    """Mean PSNR over `test_images` of one constant image, the mean of `train_images` (uint8 pixels or intensities):
    what a model that decodes the same image for every input scores at best, in float64."""
    total = torch.zeros(train_images.shape[1:], dtype=torch.float64)
    for start in range(0, len(train_images), batch_size):
        batch = train_images[start:start + batch_size].double()
        total += (batch / 255 if train_images.dtype == torch.uint8 else batch).sum(0)
    mean_image = total / len(train_images)
    scores = [psnr_from_mse(mse_per_image(test_images[start:start + batch_size].double(), mean_image[None]))
              for start in range(0, len(test_images), batch_size)]
    return float(torch.cat(scores).mean())


def mean_confidence_interval(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and the Student-t confidence interval of the mean; the interval is NaN for n < 2."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    if values.size < 2:
        return mean, math.nan, math.nan
    half_width = float(stats.t.ppf(0.5 + confidence / 2, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size))
    return mean, mean - half_width, mean + half_width


def summarize_by_class(
    scores: Mapping[str, np.ndarray], labels: np.ndarray, class_names: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """One row per (class or "all", metric) with n, mean and 95% CI; `scores` holds per-image arrays.

    A row's class is its label text, `class_names[label]`; without names the classes are 0 to the largest
    label, named by their index. Empty `class_names` (unlabelled images): rows for "all" alone."""
    rows = []
    names = [str(c) for c in range(int(labels.max()) + 1)] if class_names is None else list(class_names)
    groups = [(name, labels == c) for c, name in enumerate(names)] + [("all", np.ones_like(labels, dtype=bool))]
    for name, mask in groups:
        for metric, values in scores.items():
            mean, low, high = mean_confidence_interval(values[mask])
            rows.append({"class": name, "n": int(mask.sum()), "metric": metric, "mean": mean, "ci_low": low, "ci_high": high})
    return rows


def combine_seeds(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Collapse tidy rows over seeds: one row per (variant, latent_dim, protocol, class, metric).

    With one seed the rows pass through (their CI is over images). With several, the mean is the
    mean of the seeds' means and the CI is the Student-t interval across seeds, so it reflects
    training randomness; `n` then counts seeds and `seeds` lists them.
    """
    grouped: dict[tuple, list[Mapping[str, Any]]] = defaultdict(list)
    class_order: dict[str, int] = {"all": 10**6}  # classes in the order the rows list them (class_names'), "all" last
    for row in rows:
        class_order.setdefault(row["class"], len(class_order))
        key = (*variant_of(row), row["latent_dim"], row["protocol"], row["class"], row["metric"])
        grouped[key].append(row)
    combined = []
    for key, members in grouped.items():
        variant, (latent_dim, protocol, name, metric) = key[:len(VARIANT_AXES)], key[len(VARIANT_AXES):]
        if len(members) == 1:
            combined.append({**members[0], "seeds": [members[0]["seed"]], "ci_over": "images"})
            continue
        mean, low, high = mean_confidence_interval([m["mean"] for m in members])
        combined.append({**dict(zip(VARIANT_AXES, variant)), "latent_dim": latent_dim, "protocol": protocol,
                         "class": name, "metric": metric, "n": len(members), "mean": mean, "ci_low": low,
                         "ci_high": high, "seeds": sorted(m["seed"] for m in members), "ci_over": "seeds"})
    return sorted(combined, key=lambda r: (*variant_of(r), r["latent_dim"],
                                           r["protocol"], r["metric"], class_order[r["class"]]))


def lookup(rows: Iterable[Mapping[str, Any]], **where: Any) -> list[Mapping[str, Any]]:
    """Rows whose fields equal every keyword given, e.g. lookup(rows, metric="psnr", cls="all").

    `cls` stands for the "class" column, a Python keyword."""
    where = {("class" if key == "cls" else key): value for key, value in where.items()}
    return [row for row in rows if all(row.get(key) == value for key, value in where.items())]


def variants(rows: Iterable[Mapping[str, Any]]) -> list[tuple]:
    """The variants in tidy rows (each a value of every per-variant axis, config.VARIANT_AXES), in order: what the
    selection rule is applied within."""
    return sorted({variant_of(row) for row in rows})


def variant_rows(rows: Iterable[Mapping[str, Any]], variant: tuple) -> list[Mapping[str, Any]]:
    return [row for row in rows if variant_of(row) == tuple(variant)]


def variant_of(row: Mapping[str, Any]) -> tuple:
    """A tidy row's variant: its value of every per-variant axis (config.VARIANT_AXES); rows written before an
    axis existed take its legacy value."""
    return tuple(row.get(name, LEGACY_AXIS_VALUES[name]) for name in VARIANT_AXES)


# ----------------------------------------------------------------------------------------
# Generation quality, on features and class probabilities of a classifier (numpy arrays)


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a) + Tr(S_b) - 2 Tr((S_a S_b)^(1/2)) between Gaussians fitted to two feature sets.

    This is FID's formula (Heusel et al. 2017) on whatever features are given; here the data set's
    classifier's penultimate layer. Tr((S_a S_b)^(1/2)) is computed as the sum of the square roots
    of the eigenvalues of the symmetric matrix S_a^(1/2) S_b S_a^(1/2), which has the same
    eigenvalues; unlike a general matrix square root this stays exact when the covariances are
    singular (ReLU features that never fire), in float64.
    """
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    middle = root_a @ cov_b @ root_a
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    distance = float(((mean_a - mean_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root)
    return max(distance, 0.0)


def kernel_distance(features_a: np.ndarray, features_b: np.ndarray, subsets: int = 100, subset_size: int = 1000,
                    seed: int = 0) -> tuple[float, float]:
    """KID (Binkowski et al. 2018): unbiased MMD^2 with the kernel (x.y / d + 1)^3, averaged over
    random subsets; returns (mean, standard deviation over subsets)."""
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    size = min(subset_size, len(a), len(b))
    rng = np.random.default_rng(seed)
    dim = a.shape[1]

    def kernel(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        gram = u @ v.T
        gram /= dim
        gram += 1
        return gram * gram * gram  # cheaper than ** 3, numpy's general power (benchmarks/bench_eval.py)

    values = []
    for _ in range(subsets):
        x = a[rng.choice(len(a), size, replace=False)]
        y = b[rng.choice(len(b), size, replace=False)]
        k_xx, k_yy, k_xy = kernel(x, x), kernel(y, y), kernel(x, y)
        off_diagonal = size * (size - 1)
        values.append((k_xx.sum() - np.trace(k_xx)) / off_diagonal + (k_yy.sum() - np.trace(k_yy)) / off_diagonal
                      - 2 * k_xy.mean())
    return float(np.mean(values)), float(np.std(values))


def inception_score(probabilities: np.ndarray) -> float:
    """exp(E_x KL(p(y|x) || p(y))) from a classifier's class probabilities: high when each image is
    confidently one class and all classes appear. Between 1 and the number of classes."""
    p = np.clip(np.asarray(probabilities, np.float64), 1e-12, 1.0)
    marginal = p.mean(0)
    return float(np.exp((p * (np.log(p) - np.log(marginal))).sum(1).mean()))


def class_histogram(probabilities: np.ndarray) -> np.ndarray:
    """Share of images assigned (argmax) to each class."""
    probabilities = np.asarray(probabilities)
    return np.bincount(probabilities.argmax(1), minlength=probabilities.shape[1]) / len(probabilities)


def entropy_bits(shares: np.ndarray) -> float:
    """Entropy of a distribution in bits: log2(10) = 3.32 for ten equally common classes, 0 for one."""
    shares = np.asarray(shares, np.float64)
    shares = shares[shares > 0]
    return float(-(shares * np.log2(shares)).sum())


def confident_share(probabilities: np.ndarray, threshold: float = 0.9) -> float:
    """Share of images whose most probable class has probability above `threshold`."""
    return float((np.asarray(probabilities).max(1) > threshold).mean())


# ----------------------------------------------------------------------------------------
# Latent-space statistics (numpy arrays of posterior means and log-variances)


def kl_per_dimension(means: np.ndarray, log_vars: np.ndarray) -> np.ndarray:
    """Mean over images of each latent dimension's KL(q(z_d|x) || N(0, 1)), in nats."""
    means, log_vars = np.asarray(means, np.float64), np.asarray(log_vars, np.float64)
    return (0.5 * (np.exp(log_vars) + means**2 - 1 - log_vars)).mean(0)


ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. 2016


def active_units(means: np.ndarray, threshold: float = ACTIVE_UNIT_THRESHOLD) -> int:
    """Latent dimensions whose posterior mean varies across images, Cov_x(E_q[z_d]) > threshold
    (Burda et al. 2016)."""
    return int((np.asarray(means, np.float64).var(0) > threshold).sum())
