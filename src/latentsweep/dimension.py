"""Intrinsic dimension: how many dimensions the data, and a model's codes, really span.

Estimated with scikit-dimension (skdim, BSD-3), the field's library of estimators:
  TwoNN  Facco et al. (2017): from the ratio of each point's second to first nearest-neighbour
         distance; skdim's defaults (the 10% largest ratios discarded, the linear fit)
  MLE    Levina and Bickel (2004): the maximum-likelihood estimate from each point's K = 20 nearest
         neighbours, averaged over points; skdim's defaults otherwise
Each image is one point: its pixels as a vector (784 values for MNIST), intensities in [0, 1].

The data's dimension is estimated on the whole official test split and on each class's test images.
Its 95% interval comes from half-sampling: the same estimate on 10 random halves (seeded) varies with
a standard deviation s, and an estimate on all n points varies about sqrt(1/2) as much, so the
interval is the estimate +/- 1.96 * s * sqrt(1/2). It covers the sampling of the images, not the
estimators' own biases (both read lower on fewer points, and they disagree with each other by 1-2
dimensions on MNIST, which is why both are shown). It depends on the images only, so it is computed
once per data set (by content) and cached. A model's code dimension is TwoNN on the test set's
posterior means (evaluate.analyse).

`--latent-dims auto` places the grid from the data's dimension (grid_from_dimension): d is the larger of the two
estimates on the whole test split, rounded up (both read low on fewer points, and the grid's top must reach past the
answer), and the grid is d/4, d/2, d and 2d (rounded, at least 1, at most --max-latent-dim): a factor of two either
side of d, as many sizes as the fixed grid, its bottom expected to fail the rule and its top to saturate.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from latentsweep.errors import ConfigError
from latentsweep.storage import atomic_write_text

log = logging.getLogger(__name__)

MLE_NEIGHBOURS = 20
MIN_POINTS = 2 * (MLE_NEIGHBOURS + 1)  # a half of the points must hold K = 20 neighbours of a point
HALVES = 10
ESTIMATORS = ("twonn", "mle")
ESTIMATOR_LABELS = {"twonn": "TwoNN", "mle": f"MLE (K={MLE_NEIGHBOURS})"}  # as tables and sentences name them
ESTIMATE_METRICS = {name: f"intrinsic_dimension_{name}" for name in ESTIMATORS}  # each one's metrics.REGISTRY entry
VERSION = 2  # of the cached numbers: raise it when an estimator's settings or the rows change (2: classes by name)


def _skdim():
    try:
        import skdim
    except ImportError:  # pragma: no cover - a dependency; only a broken install lacks it
        raise ConfigError("intrinsic dimension: scikit-dimension is not installed; pip install scikit-dimension") from None
    return skdim


def estimate(points: np.ndarray, estimator: str) -> float:
    """The intrinsic dimension of `points` (n, features) by `estimator` ("twonn" or "mle")."""
    skdim = _skdim()
    points = np.asarray(points, np.float64)
    if estimator == "twonn":
        model = skdim.id.TwoNN()
    elif estimator == "mle":
        model = skdim.id.MLE(K=MLE_NEIGHBOURS)
    else:
        raise ValueError(f"unknown estimator {estimator!r}; choose from {', '.join(ESTIMATORS)}")
    with np.errstate(divide="ignore", invalid="ignore"):  # duplicate points give zero distances; the estimate says so
        return float(model.fit(points).dimension_)


def code_dimension(means: np.ndarray) -> float:
    """TwoNN of posterior means (n, latent size): how many dimensions the codes really span."""
    means = np.asarray(means, np.float64)
    if len(np.unique(means, axis=0)) < 3:  # TwoNN needs two distinct neighbours
        return math.nan
    if means.shape[1] == 1:  # scikit-learn's neighbour search wants two features; a zero column keeps the distances
        means = np.hstack([means, np.zeros_like(means)])
    return estimate(means, "twonn")


GRID_FORMULA = "d/4, d/2, d and 2d"  # grid_from_dimension's sizes, as --help, the dry run and the report say them


def placed_dimension(estimates: Sequence[float]) -> int:
    """d of the --latent-dims auto grid: the larger of the data's finite intrinsic dimension `estimates`, rounded up."""
    return max(1, math.ceil(max(estimates)))


def grid_from_dimension(dimension: int, cap: int) -> tuple[int, ...]:
    """The --latent-dims auto grid (the module's text) around d = `dimension`, at most `cap`."""
    sizes = (max(1, (dimension + 2) // 4), max(1, (dimension + 1) // 2), dimension, 2 * dimension)
    return tuple(sorted({min(size, cap) for size in sizes}))


def placement_sentence(placement: dict[str, Any]) -> str:
    """How --latent-dims auto placed the grid, from its record (study.place_grid: estimates, dimension, latent_dims)."""
    estimates = ", ".join(f"{ESTIMATOR_LABELS[name]} {value:.2f}" for name, value in placement["estimates"].items())
    return (f"The grid was placed from the data's intrinsic dimension (--latent-dims auto): {estimates} on the test "
            f"split, so d = {placement['dimension']} and the latent sizes {', '.join(map(str, placement['latent_dims']))} "
            f"({GRID_FORMULA}).")


def dimension_rows(images: np.ndarray, labels: np.ndarray, class_names: Sequence[str], seed: int = 0,
                   halves: int = HALVES) -> list[dict[str, Any]]:
    """Tidy rows (no axis values): each estimator on all images and on each class (named by its label text,
    `class_names[label]`), the estimate on every point as the mean, with its half-sampling interval over `halves`
    random halves (the module's text)."""
    points = np.asarray(images, np.float32).reshape(len(images), -1)
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    groups = [("all", np.arange(len(points)))] + [(name, np.flatnonzero(labels == index))
                                                   for index, name in enumerate(class_names)]
    rows = []
    for name, members in groups:
        draws = [rng.choice(members, len(members) // 2, replace=False) for _ in range(halves)]
        for estimator, metric in ESTIMATE_METRICS.items():
            if len(members) < MIN_POINTS:
                continue
            on_halves = [estimate(points[draw], estimator) for draw in draws]
            value = estimate(points[members], estimator)
            half_width = 1.96 * float(np.std(on_halves, ddof=1)) * math.sqrt(0.5)
            rows.append({"protocol": "test_set", "class": name, "n": int(len(members)), "metric": metric,
                         "mean": value, "ci_low": value - half_width, "ci_high": value + half_width})
    return rows


def data_fingerprint(images: np.ndarray, labels: np.ndarray) -> str:
    """The test split's identity by content (8-bit intensities and labels)."""
    digest = hashlib.sha256(np.round(np.asarray(images, np.float32) * 255).astype(np.uint8).tobytes())
    digest.update(np.asarray(labels, np.int64).tobytes())
    return digest.hexdigest()[:16]


def cached_dimension_rows(cache_dir: Path, name: str, images: np.ndarray, labels: np.ndarray,
                          class_names: Sequence[str]) -> list[dict[str, Any]]:
    """dimension_rows, computed once per data set content and kept in `cache_dir` (a damaged file is recomputed)."""
    path = Path(cache_dir) / f"{name}-v{VERSION}-k{MLE_NEIGHBOURS}-h{HALVES}-{data_fingerprint(images, labels)}.json"
    if path.is_file():
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            log.warning("%s: damaged, computing the intrinsic dimension again", path)
    log.info("intrinsic dimension of the %s test split (%d images): TwoNN and MLE (K = %d), all and per class",
             name, len(images), MLE_NEIGHBOURS)
    rows = dimension_rows(images, labels, class_names)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(rows, indent=1) + "\n")
    return rows
