"""Figures as PNG files. Each function takes plain data and a path and writes one figure.

Uses matplotlib's object API (Figure, not pyplot), so no global figure state and no display
backend is involved.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from latentsweep.metrics import REGISTRY, generation_metrics, headline_metrics, lookup, variant_rows, variants
from latentsweep.storage import atomic_write_bytes

UNLABELLED_GROUP = "test images"  # the one row or legend entry of an unlabelled data set's figures
PROTOCOL_TITLES = {"representative": "representative test images (the first of each class)",
                   "test_set": "whole test set, 95% CI"}


def save(figure: Figure, path: Path, dpi: int = 110) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _colors(count: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(0.1 + 0.8 * i / max(count - 1, 1)) for i in range(count)]


def class_colors(count: int) -> np.ndarray:
    """(count, 4) RGBA colours, one per class and all distinct: tab10 or tab20 where they suffice, else evenly
    spaced on viridis."""
    from matplotlib import colormaps

    if count <= 20:
        cmap = colormaps["tab10" if count <= 10 else "tab20"]
        return np.array([cmap(i) for i in range(max(count, 1))])
    return np.array(_colors(count))


def _error_bars(rows: Sequence[Mapping[str, Any]]) -> np.ndarray | None:
    lows = np.array([r["ci_low"] if r["ci_low"] is not None else math.nan for r in rows], dtype=float)
    highs = np.array([r["ci_high"] if r["ci_high"] is not None else math.nan for r in rows], dtype=float)
    means = np.array([r["mean"] for r in rows], dtype=float)
    if np.isnan(lows).all():
        return None
    return np.nan_to_num(np.vstack([means - lows, highs - means]))


def loss_curves(histories: Mapping[int, Sequence[Mapping[str, float]]], path: Path) -> Path:
    """Train (solid) and validation (dashed) loss per epoch, and the validation loss's two terms."""
    figure = Figure(figsize=(14, 4.2))
    axes = figure.subplots(1, 3)
    for color, (latent_dim, history) in zip(_colors(len(histories)), sorted(histories.items())):
        epochs = [row["epoch"] for row in history]
        axes[0].plot(epochs, [row["train_loss"] for row in history], color=color, label=f"z={latent_dim} train")
        axes[0].plot(epochs, [row["val_loss"] for row in history], color=color, linestyle="--", label=f"z={latent_dim} val")
        axes[1].plot(epochs, [row["val_reconstruction"] for row in history], color=color, label=f"z={latent_dim}")
        axes[2].plot(epochs, [row["val_kl"] for row in history], color=color, label=f"z={latent_dim}")
    titles = ("loss (negative ELBO), nats per image", "validation reconstruction term, nats", "validation KL term, nats")
    for axis, title in zip(axes, titles):
        axis.set_title(title)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    axes[1].legend(fontsize=8)
    return save(figure, path)


def metric_by_class(rows: Sequence[Mapping[str, Any]], metric: str, class_names: Sequence[str], path: Path) -> Path:
    """Grouped bars: one group per class, one bar per latent size; both protocols side by side."""
    latent_dims = sorted({row["latent_dim"] for row in rows})
    figure = Figure(figsize=(15, 4.5))
    axes = figure.subplots(1, 2, sharey=True)
    width = 0.8 / len(latent_dims)
    positions = np.arange(len(class_names))
    for axis, protocol in zip(axes, ("representative", "test_set")):
        for offset, (color, latent_dim) in enumerate(zip(_colors(len(latent_dims)), latent_dims)):
            of_class = {r["class"]: r for r in lookup(rows, metric=metric, protocol=protocol, latent_dim=latent_dim)}
            selected = [of_class[name] for name in class_names]
            axis.bar(positions + (offset - (len(latent_dims) - 1) / 2) * width, [r["mean"] for r in selected], width,
                     yerr=_error_bars(selected), capsize=1.5, color=color, label=f"z={latent_dim}")
        axis.set_title(PROTOCOL_TITLES[protocol])
        axis.set_xticks(positions, class_names, rotation=30 if max(map(len, class_names)) > 2 else 0)
        axis.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel(REGISTRY[metric].axis_label)
    axes[0].legend(title="latent size", fontsize=8)
    if metric == "psnr":
        lowest = min(r["mean"] for r in lookup(rows, metric=metric))
        axes[0].set_ylim(bottom=max(0.0, math.floor(lowest) - 2))
    return save(figure, path)


def overall_vs_latent(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Whole-test-set mean of each metric against latent size, with 95% CI."""
    metrics = [m for m in headline_metrics() if lookup(rows, metric=m)]
    figure = Figure(figsize=(4.2 * len(metrics), 3.8))
    axes = np.atleast_1d(figure.subplots(1, len(metrics)))
    for axis, metric in zip(axes, metrics):
        for protocol, style in (("test_set", "o-"), ("representative", "s:")):
            selected = sorted(lookup(rows, metric=metric, protocol=protocol, cls="all"), key=lambda r: r["latent_dim"])
            axis.errorbar([r["latent_dim"] for r in selected], [r["mean"] for r in selected], yerr=_error_bars(selected),
                          fmt=style, capsize=3, label=PROTOCOL_TITLES[protocol])
        axis.set_xlabel("latent size")
        axis.set_title(REGISTRY[metric].axis_label, fontsize=10)
        axis.set_xticks(sorted({row["latent_dim"] for row in rows}))
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return save(figure, path)


def psnr_by_seed(seed_means: Mapping[int, Mapping[int, float]], rows: Sequence[Mapping[str, Any]], selected: int,
                 path: Path, added: Sequence[int] = (), left_out: Sequence[tuple[int, int]] = ()) -> Path:
    """Whole-test-set PSNR against latent size: each seed's model as a point (one marker per seed), the
    mean over seeds with its 95% interval as a bar, the selected size marked. seed_means[size][seed]. The sizes
    --extend `added` are shaded; each model `left_out` (latent size, seed) as a failed training run is a red cross
    at the bottom, since its numbers are not evidence."""
    figure = Figure(figsize=(7, 4.2))
    axis = figure.subplots()
    sizes = sorted(seed_means)
    for number, size in enumerate(sorted(added)):
        axis.axvspan(size - 0.4, size + 0.4, color="tab:blue", alpha=0.12, linewidth=0,
                     label="added by --extend" if number == 0 else None)
    if left_out:
        axis.scatter([size for size, _ in left_out], [0.04] * len(left_out), marker="x", color="crimson", s=60,
                     transform=axis.get_xaxis_transform(), zorder=5, clip_on=False,
                     label="left out: failed to train (" + ", ".join(f"{size} seed {seed}" for size, seed in left_out) + ")")
    seeds = sorted({seed for values in seed_means.values() for seed in values})
    markers = "osD^v<>ph*"
    spread = 0.12 * (min(np.diff(sizes)) if len(sizes) > 1 else 1.0)  # side by side, not on top of each other
    for index, seed in enumerate(seeds):
        offset = spread * (index - (len(seeds) - 1) / 2) / max(len(seeds) - 1, 1)
        points = [(size + offset, seed_means[size][seed]) for size in sizes if seed in seed_means[size]]
        axis.scatter(*zip(*points), marker=markers[index % len(markers)], s=22, alpha=0.8, label=f"seed {seed}", zorder=3)
    means = [lookup(rows, latent_dim=size, protocol="test_set", cls="all", metric="psnr")[0] for size in sizes]
    bars = _error_bars(means)
    axis.errorbar(sizes, [row["mean"] for row in means], yerr=bars, color="black", capsize=5, linewidth=1.2,
                  label="mean, 95% CI across seeds" if len(seeds) > 1 else "mean, 95% CI across test images", zorder=2)
    selected_mean = next(row["mean"] for size, row in zip(sizes, means) if size == selected)
    axis.scatter([selected], [selected_mean], s=160, facecolors="none", edgecolors="crimson", linewidths=1.5,
                 label=f"selected: {selected}", zorder=4)
    axis.set_xticks(sorted({*sizes, *(size for size, _ in left_out)}))
    axis.set_xlabel("latent size")
    axis.set_ylabel(REGISTRY["psnr"].axis_label)
    axis.set_title("Whole-test-set PSNR of every trained model")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return save(figure, path)


def tile(images: np.ndarray, columns: int, gap: int = 1) -> np.ndarray:
    """Arrange (N, H, W) grey or (N, H, W, 3) colour pictures (data.to_pictures) on a grid `columns` wide,
    separated by `gap` white pixels."""
    count, height, width = images.shape[:3]
    rows = math.ceil(count / columns)
    canvas = np.ones((rows * (height + gap) - gap, columns * (width + gap) - gap, *images.shape[3:]), dtype=np.float32)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        canvas[r * (height + gap): r * (height + gap) + height, c * (width + gap): c * (width + gap) + width] = image
    return canvas


def reconstruction_grid(originals: np.ndarray, reconstructions: Mapping[int, np.ndarray], class_names: Sequence[str],
                        path: Path) -> Path:
    """One row per class: the original test image, then its reconstruction at each latent size.

    `originals` is (classes, K, H, W) grey or (classes, K, H, W, 3) colour, and each reconstruction array has
    the same shape; K images per class are shown side by side in every column.
    """
    columns = [("original", originals)] + [(f"z={dim}", recon) for dim, recon in sorted(reconstructions.items())]
    per_class = originals.shape[1]
    figure = Figure(figsize=(1.0 + 0.55 * per_class * len(columns), 0.6 * len(class_names) + 0.6))
    axes = np.atleast_1d(figure.subplots(1, len(columns)))
    for axis, (title, images) in zip(axes, columns):
        stacked = np.concatenate([tile(images[c], per_class) for c in range(len(class_names))], axis=0)
        axis.imshow(stacked, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axis.set_title(title)
        axis.set_xticks([])
        axis.set_yticks([(c + 0.5) * originals.shape[2] for c in range(len(class_names))], class_names)
    for axis in axes[1:]:
        axis.set_yticks([])
    return save(figure, path)


def sample_grid(samples: Mapping[int, np.ndarray], path: Path, columns: int = 8) -> Path:
    """Images decoded from z ~ N(0, I): one panel per latent size."""
    figure = Figure(figsize=(3.2 * len(samples), 3.5))
    axes = np.atleast_1d(figure.subplots(1, len(samples)))
    for axis, (latent_dim, images) in zip(axes, sorted(samples.items())):
        axis.imshow(tile(images, columns), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axis.set_title(f"z={latent_dim}")
        axis.axis("off")
    return save(figure, path)


# ----------------------------------------------------------------------------------------
# Generation, likelihood and latent-space figures


def generation_vs_latent(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Every generation metric (metrics.generation_metrics) against latent size, for prior samples and reconstructions."""
    metrics = [metric for metric in generation_metrics() if lookup(rows, metric=metric)]
    figure = Figure(figsize=(4 * len(metrics), 3.8))
    axes = figure.subplots(1, len(metrics))
    for axis, metric in zip(axes, metrics):
        for protocol, style, label in (("prior_samples", "o-", "prior samples"), ("reconstructions", "s--", "test reconstructions")):
            selected = sorted(lookup(rows, metric=metric, protocol=protocol, cls="all"), key=lambda r: r["latent_dim"])
            axis.errorbar([r["latent_dim"] for r in selected], [r["mean"] for r in selected], yerr=_error_bars(selected),
                          fmt=style, capsize=3, label=label)
        axis.set_title(REGISTRY[metric].axis_label, fontsize=10)
        axis.set_xlabel("latent size")
        axis.set_xticks(sorted({row["latent_dim"] for row in rows}))
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return save(figure, path)


def class_histogram(rows: Sequence[Mapping[str, Any]], class_names: Sequence[str], path: Path) -> Path:
    """Share of prior samples the classifier assigns to each class, per latent size (1 / classes each would be uniform)."""
    latent_dims = sorted({row["latent_dim"] for row in lookup(rows, metric="class_share")})
    figure = Figure(figsize=(10, 3.8))
    axis = figure.subplots()
    width = 0.8 / max(len(latent_dims), 1)
    positions = np.arange(len(class_names))
    for offset, (color, latent_dim) in enumerate(zip(_colors(len(latent_dims)), latent_dims)):
        shares = {r["class"]: r["mean"] for r in lookup(rows, metric="class_share", protocol="prior_samples", latent_dim=latent_dim)}
        axis.bar(positions + (offset - (len(latent_dims) - 1) / 2) * width, [shares.get(name, 0) for name in class_names],
                 width, color=color, label=f"z={latent_dim}")
    axis.axhline(1 / len(class_names), color="grey", linestyle=":", label="uniform")
    axis.set_xticks(positions, class_names)
    axis.set_ylabel("share of prior samples")
    axis.legend(fontsize=8, ncol=2)
    axis.grid(axis="y", alpha=0.3)
    return save(figure, path)


def kl_per_dimension(kl: Mapping[int, np.ndarray], path: Path) -> Path:
    """Each latent dimension's mean KL, sorted, one panel per latent size: unused dimensions sit near 0."""
    figure = Figure(figsize=(3.6 * len(kl), 3.4))
    axes = np.atleast_1d(figure.subplots(1, len(kl), sharey=True))
    for axis, (latent_dim, values) in zip(axes, sorted(kl.items())):
        ordered = np.sort(np.asarray(values))[::-1]
        axis.bar(np.arange(1, len(ordered) + 1), ordered, color="#3b6ea5")
        axis.set_title(f"z={latent_dim}")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_xlabel("dimension (sorted)")
        axis.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("mean KL per dimension, nats")
    return save(figure, path)


def rate_distortion(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Test-set mean KL (rate) against mean reconstruction term (distortion), one point per latent size."""
    figure = Figure(figsize=(5.2, 4.2))
    axis = figure.subplots()
    rate = {r["latent_dim"]: r["mean"] for r in lookup(rows, metric="kl", protocol="test_set", cls="all")}
    distortion = {r["latent_dim"]: r["mean"] for r in lookup(rows, metric="reconstruction", protocol="test_set", cls="all")}
    dims = sorted(set(rate) & set(distortion))
    axis.plot([rate[d] for d in dims], [distortion[d] for d in dims], "o-")
    for d in dims:
        axis.annotate(f"z={d}", (rate[d], distortion[d]), textcoords="offset points", xytext=(5, 5), fontsize=9)
    axis.set_xlabel("rate: KL(q(z|x) || p(z)), nats")
    axis.set_ylabel("distortion: -log p(x|z), nats")
    axis.grid(alpha=0.3)
    return save(figure, path)


def latent_2d(views: Mapping[int, Mapping[str, np.ndarray]], class_names: Sequence[str], path: Path) -> Path:
    """Posterior means in 2-D (PCA, t-SNE), coloured by class (label i in colour i); one column per latent size."""
    colors = class_colors(len(class_names))
    figure = Figure(figsize=(3.6 * len(views), 7.4))
    axes = np.atleast_2d(figure.subplots(2, len(views))).reshape(2, len(views))
    for column, (latent_dim, arrays) in enumerate(sorted(views.items())):
        for row, (key, title) in enumerate((("pca", "PCA"), ("tsne", "t-SNE"))):
            axis = axes[row, column]
            points, labels = arrays[key], arrays[f"{key}_labels"]
            axis.scatter(points[:, 0], points[:, 1], c=colors[labels.astype(int)], s=2, alpha=0.6, rasterized=True)
            axis.set_title(f"z={latent_dim}, {title}", fontsize=10)
            axis.set_xticks([])
            axis.set_yticks([])
    handles = [axes[0, 0].scatter([], [], color=colors[i], label=name) for i, name in enumerate(class_names)]
    figure.legend(handles=handles, loc="lower center", ncol=min(10, len(class_names)), fontsize=8, markerscale=2)
    return save(figure, path)


def image_rows(images: np.ndarray, row_labels: Sequence[str], column_labels: Sequence[str], title: str, path: Path) -> Path:
    """A (rows, columns, H, W[, 3]) array of pictures as a labelled grid: interpolations and traversals."""
    rows, columns = images.shape[:2]
    figure = Figure(figsize=(0.75 * columns + 1.2, 0.75 * rows + 0.8))
    axis = figure.subplots()
    axis.imshow(tile(images.reshape(rows * columns, *images.shape[2:]), columns), cmap="gray", vmin=0, vmax=1,
                interpolation="nearest")
    row_height, column_width = images.shape[2] + 1, images.shape[3] + 1  # a picture and tile()'s one-pixel gap
    axis.set_yticks([(r + 0.5) * row_height for r in range(rows)], row_labels)
    axis.set_xticks([(c + 0.5) * column_width for c in range(columns)], column_labels, fontsize=8)
    axis.set_title(title, fontsize=10)
    return save(figure, path)


# ----------------------------------------------------------------------------------------
# Comparing variants: (architecture, beta) pairs


def variants_vs_latent(rows: Sequence[Mapping[str, Any]], names: Mapping[tuple, str], path: Path) -> Path:
    """Whole-test-set PSNR (95% CI) and active units against latent size, one line per variant (named by `names`)."""
    panels = [(name, REGISTRY[name].axis_label) for name in ("psnr", "active_units")]
    figure = Figure(figsize=(11, 4.0))
    axes = figure.subplots(1, len(panels))
    pairs = variants(rows)
    for color, variant in zip(_colors(len(pairs)), pairs):
        own = variant_rows(rows, variant)
        for axis, (metric, _) in zip(axes, panels):
            selected = sorted(lookup(own, metric=metric, protocol="test_set", cls="all"), key=lambda r: r["latent_dim"])
            if selected:
                axis.errorbar([r["latent_dim"] for r in selected], [r["mean"] for r in selected],
                              yerr=_error_bars(selected), fmt="o-", capsize=3, color=color, label=names[variant])
    dims = sorted({row["latent_dim"] for row in rows})
    for axis, (metric, label) in zip(axes, panels):
        axis.set_title(label, fontsize=10)
        axis.set_xlabel("latent size")
        axis.set_xticks(dims)
        axis.grid(alpha=0.3)
    axes[1].plot(dims, dims, color="grey", linestyle=":", label="all units active")
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=8)
    return save(figure, path)


def psnr_refinement(psnr_rows: Sequence[Mapping[str, Any]], grid: Sequence[int], threshold_db: float, selected: int,
                    path: Path) -> Path:
    """Whole-test-set PSNR (95% CI) against latent size: grid sizes as circles, the refinement's probes as
    diamonds, the rule's threshold as a dashed line and the answer circled."""
    rows = sorted(psnr_rows, key=lambda row: row["latent_dim"])
    figure = Figure(figsize=(7, 4.2))
    axis = figure.subplots()
    sizes = [row["latent_dim"] for row in rows]
    means = [row["mean"] for row in rows]
    axis.plot(sizes, means, color="0.6", linewidth=1, zorder=1)
    for is_grid, marker, label in ((True, "o", "grid size"), (False, "D", "probe (refinement)")):
        mine = [row for row in rows if (row["latent_dim"] in grid) == is_grid]
        if mine:
            axis.errorbar([r["latent_dim"] for r in mine], [r["mean"] for r in mine], yerr=_error_bars(mine), fmt=marker,
                          capsize=3, label=label, zorder=2)
    axis.axhline(threshold_db, color="tab:red", linestyle="--", linewidth=1, label=f"threshold {threshold_db:.2f} dB")
    circle_answer(axis, rows, selected, "black", f"answer: {selected}")
    return save_psnr_by_size(figure, axis, path)


def circle_answer(axis, rows: Sequence[Mapping[str, Any]], size: int, color: str, label: str) -> None:
    """Circle the answer `size` on a PSNR-against-size curve of `rows`."""
    value = next(row["mean"] for row in rows if row["latent_dim"] == size)
    axis.scatter([size], [value], s=260, facecolors="none", edgecolors=color, linewidths=1.5, label=label, zorder=3)


def save_psnr_by_size(figure: Figure, axis, path: Path) -> Path:
    """The axes, grid and legend of a figure of PSNR against latent size, saved."""
    axis.set_xlabel("latent size")
    axis.set_ylabel(REGISTRY["psnr"].axis_label)
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return save(figure, path)


def dimension_vs_psnr(dimension: Mapping[str, Mapping[str, Any]], psnr: Mapping[str, Mapping[str, Any]],
                      estimator_label: str, selected: int, path: Path) -> Path:
    """Per class: the data's intrinsic dimension (95% interval) against the class's whole-test-set PSNR at the answer."""
    classes = [name for name in dimension if name in psnr]
    figure = Figure(figsize=(6.5, 4.5))
    axis = figure.subplots()
    x = [psnr[name]["mean"] for name in classes]
    y = [dimension[name]["mean"] for name in classes]
    axis.errorbar(x, y, yerr=_error_bars([dimension[name] for name in classes]), fmt="o", capsize=3)
    for name, px, py in zip(classes, x, y):
        axis.annotate(name, (px, py), textcoords="offset points", xytext=(5, 4), fontsize=9)
    axis.set_xlabel(f"PSNR at latent size {selected}, dB (whole test set)")
    axis.set_ylabel(f"intrinsic dimension of the class ({estimator_label})")
    axis.grid(alpha=0.3)
    return save(figure, path)


def preview_beside(independent: Sequence[Mapping[str, Any]], preview: Sequence[Mapping[str, Any]], answers: tuple[int, int],
                   path: Path) -> Path:
    """Whole-test-set PSNR (95% CI) against latent size of the independent models (circles) and of the preview's
    prefixes (a line in a band), each answer marked: `answers` is (the independent models', the preview's)."""
    figure = Figure(figsize=(7, 4.2))
    axis = figure.subplots()
    rows = sorted(preview, key=lambda row: row["latent_dim"])
    sizes, means = [r["latent_dim"] for r in rows], np.array([r["mean"] for r in rows], dtype=float)
    axis.plot(sizes, means, color="tab:orange", label="preview: prefixes of one ordered model per seed")
    bars = _error_bars(rows)
    if bars is not None:
        axis.fill_between(sizes, means - bars[0], means + bars[1], color="tab:orange", alpha=0.2, linewidth=0)
    mine = sorted(independent, key=lambda row: row["latent_dim"])
    axis.errorbar([r["latent_dim"] for r in mine], [r["mean"] for r in mine], yerr=_error_bars(mine), fmt="o",
                  color="tab:blue", capsize=3, label="models trained at each size")
    circle_answer(axis, mine, answers[0], "tab:blue", f"independent answer: {answers[0]}")
    circle_answer(axis, rows, answers[1], "tab:orange", f"preview answer: {answers[1]}")
    return save_psnr_by_size(figure, axis, path)
