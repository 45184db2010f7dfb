"""Images in memory and their splits: the Dataset every data source loads into, the stratified and seeded
validation split and training subset, and the conversions the rest of the code shares.

The whole data set is held in memory as tensors of shape (N, C, H, W): the training splits as uint8
pixels, the scored ones as float intensities in [0, 1] (see Split). At MNIST's 60,000 28x28 images that is
under 200 MB, and indexing one tensor per batch is far faster than a per-item DataLoader. A published
test split is kept intact; validation images are taken from the training split, stratified by class and seeded.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from latentsweep.errors import DataError

if TYPE_CHECKING:
    from latentsweep.config import DataConfig

log = logging.getLogger(__name__)

@dataclass
class Split:
    # (N, C, H, W): the training splits (train, full_train) as uint8 pixels, which every consumer turns into
    # intensities a batch at a time (`intensities`), so that a 50,000-image colour set takes a quarter of the
    # memory; the scored splits (val, test) as float32 intensities in [0, 1], which evaluation reads whole.
    images: torch.Tensor
    labels: torch.Tensor  # int64, (N,)

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class Dataset:
    name: str
    class_names: tuple[str, ...]  # empty for a folder without labels.csv: every label is then 0
    source: Path
    train: Split
    val: Split
    test: Split
    full_train: Split  # the whole official training split, for the feature classifier
    interpolation_pairs: tuple[tuple[int, int], ...] = ()  # the data set's own (DatasetSpec); () for the default pairs
    traversed_class: int = 0

    @property
    def labelled(self) -> bool:
        """Whether the images have classes; without, per-class results and the classifier's measures are left out."""
        return bool(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of every image, which the models are built for."""
        channels, height, width = self.test.images.shape[1:]
        return (int(channels), int(height), int(width))


def stratified_sample(labels: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` indices whose class proportions match `labels` as closely as integers allow.

    Each class gets its proportional share rounded down; the leftover places go to the classes
    with the largest remainders (Hamilton's method), so the total is exactly `count`.
    """
    if not 0 <= count <= len(labels):
        raise ValueError(f"cannot take {count} of {len(labels)} items")
    classes, sizes = np.unique(labels, return_counts=True)
    exact = sizes * count / len(labels)
    quotas = np.floor(exact).astype(int)
    leftover = count - quotas.sum()
    quotas[np.argsort(-(exact - quotas), kind="stable")[:leftover]] += 1
    chosen = [rng.permutation(np.flatnonzero(labels == cls))[:quota] for cls, quota in zip(classes, quotas)]
    return np.sort(np.concatenate(chosen))


def to_split(images: np.ndarray, labels: np.ndarray, as_pixels: bool = False) -> Split:
    """(N, H, W) grey or (N, C, H, W) uint8 images as (N, C, H, W): float intensities in [0, 1], or with
    `as_pixels` the uint8 values themselves (see Split)."""
    # np.array copies: arrays parsed from bytes are read-only, which torch warns about.
    pixels = torch.from_numpy(np.array(images, dtype=np.uint8))
    pixels = pixels.unsqueeze(1) if pixels.ndim == 3 else pixels
    return Split(images=pixels if as_pixels else intensities(pixels), labels=torch.from_numpy(labels.astype(np.int64)))


def intensities(images: torch.Tensor) -> torch.Tensor:
    """Float32 intensities in [0, 1] of uint8 pixels (value / 255), or float images as they are. Dividing a batch
    gives exactly the floats that dividing the whole set would."""
    return images.float().div_(255.0) if images.dtype == torch.uint8 else images


def make_splits(name: str, class_names: tuple[str, ...], folder: Path, train: tuple[np.ndarray, np.ndarray],
                test: tuple[np.ndarray, np.ndarray], val_size: int, train_subset: int | None,
                split_seed: int) -> Dataset:
    """Validation (stratified, seeded) and the optional training subset from the training split;
    the test split is kept as it is."""
    (train_images, train_labels), (test_images, test_labels) = train, test
    for option, count in (("--val-size", val_size), ("--train-subset", train_subset)):
        if count is not None and count < len(class_names):
            raise DataError(f"{option}: {count} images cannot hold one of each of the {len(class_names)} classes in "
                            f"{folder}; use at least {len(class_names)}")
    if val_size >= len(train_labels):
        raise DataError(f"{folder}: validation size {val_size} leaves no training images ({len(train_labels)} in total); "
                        "lower --val-size")
    rng = np.random.default_rng(split_seed)
    val_idx = stratified_sample(train_labels, val_size, rng)
    train_idx = np.setdiff1d(np.arange(len(train_labels)), val_idx)
    if train_subset is not None:
        if train_subset > len(train_idx):  # a ceiling: the quick preset's 10,000 on a smaller set of one's own
            log.warning("--train-subset %d: only %d training images are left after validation; training on all of them",
                        train_subset, len(train_idx))
        train_idx = train_idx[stratified_sample(train_labels[train_idx], min(train_subset, len(train_idx)), rng)]
    return Dataset(
        name=name,
        class_names=class_names,
        source=folder,
        train=to_split(train_images[train_idx], train_labels[train_idx], as_pixels=True),
        val=to_split(train_images[val_idx], train_labels[val_idx]),
        test=to_split(test_images, test_labels),
        full_train=to_split(train_images, train_labels, as_pixels=True),
    )


def describe_shape(shape: tuple[int, int, int]) -> str:
    """(channels, height, width) as people say it: "28x28 grey", "32x32 RGB" (width x height)."""
    channels, height, width = shape
    return f"{width}x{height} " + ("grey" if channels == 1 else "RGB")


def to_pictures(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) images as float32 arrays to draw or store: (N, H, W) when grey, (N, H, W, 3) when colour
    (matplotlib's layouts; a grey study's stored arrays keep the shape they had before colour existed)."""
    pictures = images.detach().float().cpu()
    return (pictures.squeeze(1) if pictures.shape[1] == 1 else pictures.permute(0, 2, 3, 1)).numpy()


def fingerprint(images: torch.Tensor, labels: torch.Tensor) -> str:
    """A short hash of labelled images, so caches keyed by it never mix two data sets."""
    pixels = images if images.dtype == torch.uint8 else images.detach().mul(255).round().to(torch.uint8)
    digest = hashlib.sha256(pixels.cpu().numpy().tobytes())
    digest.update(labels.detach().cpu().numpy().astype(np.int64).tobytes())
    return digest.hexdigest()[:12]


def binarize(images: torch.Tensor, seed: int) -> torch.Tensor:
    """A fixed stochastic binarisation: each pixel is 1 with probability its intensity."""
    generator = torch.Generator(device=images.device).manual_seed(seed)
    return torch.bernoulli(images, generator=generator)


def binarize_scored_images(dataset: Dataset, data: DataConfig) -> None:
    """In binarised mode, the validation and test images as every model is scored on them: binarised
    once, with seeds fixed by the split seed. Grey images stay as they are."""
    if data.binarize:
        dataset.val.images = binarize(dataset.val.images, data.split_seed + 1)
        dataset.test.images = binarize(dataset.test.images, data.split_seed + 2)
