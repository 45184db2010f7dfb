"""Image-quality metrics and their summaries: pure functions on tensors and arrays.

Definitions (intensities in [0, 1]):
  MSE  = mean over the 784 pixels of (original - reconstruction)^2, per image
  PSNR = 10 * log10(1 / MSE) dB, per image; identical images would give infinity, so MSE is
         floored at 1e-10, which caps PSNR at 100 dB
  SSIM = structural similarity (Wang et al. 2004) with an 11x11 Gaussian window, sigma 1.5,
         data range 1, computed by torchmetrics, per image: the image is reflect-padded by 5
         pixels so the SSIM map covers all 28x28 pixels, and the map is averaged
Summaries are the mean over images with a 95% Student-t confidence interval for the mean.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from scipy import stats
from torchmetrics.functional.image import structural_similarity_index_measure

PSNR_CAP_DB = 100.0
MSE_FLOOR = 10 ** (-PSNR_CAP_DB / 10)  # MSE at which PSNR reaches the cap (data range 1)

TIDY_FIELDS = ["latent_dim", "seed", "protocol", "digit", "n", "metric", "mean", "ci_low", "ci_high"]


def mse_per_image(originals: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
    return (originals - reconstructions).pow(2).flatten(1).mean(1)


def psnr_from_mse(mse: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10(1.0 / mse.clamp_min(MSE_FLOOR))


def ssim_per_image(originals: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
    return structural_similarity_index_measure(
        reconstructions, originals, data_range=1.0, gaussian_kernel=True, sigma=1.5, kernel_size=11,
        reduction="none",
    )


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
    scores: Mapping[str, np.ndarray], labels: np.ndarray, num_classes: int = 10
) -> list[dict[str, Any]]:
    """One row per (class or "all", metric) with n, mean and 95% CI; `scores` holds per-image arrays."""
    rows = []
    groups = [(str(c), labels == c) for c in range(num_classes)] + [("all", np.ones_like(labels, dtype=bool))]
    for digit, mask in groups:
        for metric, values in scores.items():
            mean, low, high = mean_confidence_interval(values[mask])
            rows.append({"digit": digit, "n": int(mask.sum()), "metric": metric, "mean": mean, "ci_low": low, "ci_high": high})
    return rows


def combine_seeds(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Collapse tidy rows over seeds: one row per (latent_dim, protocol, digit, metric).

    With one seed the rows pass through (their CI is over images). With several, the mean is the
    mean of the seeds' means and the CI is the Student-t interval across seeds, so it reflects
    training randomness; `n` then counts seeds and `seeds` lists them.
    """
    grouped: dict[tuple, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        grouped[(row["latent_dim"], row["protocol"], row["digit"], row["metric"])].append(row)
    combined = []
    for (latent_dim, protocol, digit, metric), members in grouped.items():
        if len(members) == 1:
            combined.append({**members[0], "seeds": [members[0]["seed"]], "ci_over": "images"})
            continue
        mean, low, high = mean_confidence_interval([m["mean"] for m in members])
        combined.append({"latent_dim": latent_dim, "protocol": protocol, "digit": digit, "metric": metric,
                         "n": len(members), "mean": mean, "ci_low": low, "ci_high": high,
                         "seeds": sorted(m["seed"] for m in members), "ci_over": "seeds"})
    return sorted(combined, key=lambda r: (r["latent_dim"], r["protocol"], r["metric"], _digit_order(r["digit"])))


def _digit_order(digit: str) -> int:
    return 10**6 if digit == "all" else int(digit)


def lookup(rows: Iterable[Mapping[str, Any]], **where: Any) -> list[Mapping[str, Any]]:
    """Rows whose fields equal every keyword given, e.g. lookup(rows, metric="psnr", digit="all")."""
    return [row for row in rows if all(row.get(key) == value for key, value in where.items())]
