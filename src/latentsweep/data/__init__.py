"""The images: one entry per data set in SOURCES (its name, how to find its files, how to load them), and a
study's data from its settings.

  fetch    where files are (--data-dir, $LATENTSWEEP_DATA_DIR, the user cache) and downloading into the cache
  idx      MNIST and Fashion-MNIST: the IDX format and the published files
  cifar    CIFAR-10's binary records, extracted or in their archive
  folder   a folder of the user's PNGs and JPEGs, with labels.csv or without
  splits   the Dataset every source loads into, validation and training subsets, shared conversions

A new data set is an entry in SOURCES; config's list of --dataset names (DATASET_NAMES) is read from it.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from latentsweep.data import cifar, folder, idx
from latentsweep.data.cifar import CIFAR10, RecordArchive, load_record_dataset, read_record_files, resolve_record_dir
from latentsweep.data.fetch import ENV_DATA_DIR, cache_root, default_cache_dir, find_file, read_file_bytes
from latentsweep.data.folder import FOLDER_DATASET, LABELS_FILE, class_order, load_image_folder, read_image_folder
from latentsweep.data.idx import DATASETS, DatasetSpec, IdxFile, download_dataset, load_dataset, parse_idx, read_idx, resolve_data_dir
from latentsweep.data.splits import (Dataset, Split, binarize, binarize_scored_images, describe_shape, fingerprint,
                                     intensities, make_splits, stratified_sample, to_pictures)

if TYPE_CHECKING:
    from latentsweep.config import DataConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataSource:
    """One data set: `locate(settings)` gives the folder holding it (downloading into the cache where the source
    can), `load(folder, settings)` its splits."""

    name: str
    locate: Callable[[DataConfig], Path]
    load: Callable[[Path, DataConfig], Dataset]
    # A new study's grid: config.AXES's fixed sizes, or (True) placed from the data's intrinsic dimension
    # (--latent-dims auto), for data sets whose dimension nobody tuned the fixed grid to.
    auto_grid: bool = False


SOURCES: dict[str, DataSource] = {source.name: source for source in (
    *(DataSource(spec.name, functools.partial(idx.locate, spec), functools.partial(idx.load, spec))
      for spec in DATASETS.values()),
    DataSource(CIFAR10.name, functools.partial(cifar.locate, CIFAR10), functools.partial(cifar.load, CIFAR10),
               auto_grid=True),
    DataSource(FOLDER_DATASET, folder.locate, folder.load, auto_grid=True),
)}
DATASET_NAMES = tuple(SOURCES)  # what --dataset accepts


def locate_data(data: DataConfig) -> Path:
    """The data set's folder: --data-dir for a folder of images; for published sets also the environment
    variable or the download cache (fetch.find_data_folder)."""
    return SOURCES[data.dataset].locate(data)  # a name config.validate accepted


def load_data(data: DataConfig) -> tuple[Dataset, Path]:
    data_dir = locate_data(data)
    log.info("loading %s from %s", data.dataset, data_dir)
    dataset = SOURCES[data.dataset].load(data_dir, data)
    log.info("%d training, %d validation, %d test images, %s", len(dataset.train), len(dataset.val), len(dataset.test),
             describe_shape(dataset.image_shape))
    return dataset, data_dir


__all__ = ["CIFAR10", "DATASETS", "DATASET_NAMES", "ENV_DATA_DIR", "FOLDER_DATASET", "LABELS_FILE", "SOURCES",
           "DataSource", "Dataset", "DatasetSpec", "IdxFile", "RecordArchive", "Split", "binarize",
           "binarize_scored_images", "cache_root", "class_order", "default_cache_dir", "describe_shape",
           "download_dataset", "find_file", "fingerprint", "intensities", "load_data", "load_dataset",
           "load_image_folder", "load_record_dataset", "locate_data", "make_splits", "parse_idx", "read_file_bytes",
           "read_idx", "read_image_folder", "read_record_files", "resolve_data_dir", "resolve_record_dir",
           "stratified_sample", "to_pictures"]
