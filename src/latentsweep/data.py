"""The images: locating or downloading a data set, reading it (IDX for MNIST and Fashion-MNIST, CIFAR-10's
binary records, a folder of PNGs and JPEGs), and the splits.

The whole data set is held in memory as tensors of shape (N, C, H, W): the training splits as uint8
pixels, the scored ones as float intensities in [0, 1] (see Split). At MNIST's 60,000 28x28 images that is
under 200 MB, and indexing one tensor per batch is far faster than a per-item DataLoader. A published
test split is kept intact; validation images are taken from the training split, stratified by class and seeded.
"""

from __future__ import annotations

import gzip
import logging
import hashlib
import os
import urllib.error
import urllib.request
import zlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from latentsweep.config import DataConfig, parse_image_size
from latentsweep.errors import ConfigError, DataError
from latentsweep.storage import atomic_write_bytes

log = logging.getLogger(__name__)

# IDX type codes (http://yann.lecun.com/exdb/mnist/): all multi-byte values are big-endian.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

ENV_DATA_DIR = "LATENTSWEEP_DATA_DIR"


@dataclass(frozen=True)
class IdxFile:
    stem: str  # file name without ".gz"
    sha256: str  # SHA-256 of the decompressed content, the same whichever mirror compressed it


# Pairs of classes whose interpolations the report shows, and the class whose first test image the latent
# traversal starts from, where a data set defines them (MNIST's look-alike and unlike digits); any other data
# set pairs each of its first five classes with the one half-way round and traverses from its first class.
MNIST_INTERPOLATION_PAIRS = ((1, 7), (3, 8), (4, 9), (0, 6), (2, 5))
MNIST_TRAVERSED_CLASS = 8


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    class_names: tuple[str, ...]
    mirrors: tuple[str, ...]
    train_images: IdxFile
    train_labels: IdxFile
    test_images: IdxFile
    test_labels: IdxFile
    interpolation_pairs: tuple[tuple[int, int], ...] = ()  # see MNIST_INTERPOLATION_PAIRS
    traversed_class: int = 0

    @property
    def files(self) -> tuple[IdxFile, ...]:
        return (self.train_images, self.train_labels, self.test_images, self.test_labels)


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist",
        class_names=tuple(str(digit) for digit in range(10)),
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        train_images=IdxFile("train-images-idx3-ubyte", "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
        train_labels=IdxFile("train-labels-idx1-ubyte", "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
        test_images=IdxFile("t10k-images-idx3-ubyte", "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
        test_labels=IdxFile("t10k-labels-idx1-ubyte", "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
        interpolation_pairs=MNIST_INTERPOLATION_PAIRS,
        traversed_class=MNIST_TRAVERSED_CLASS,
    ),
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                     "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        mirrors=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        ),
        train_images=IdxFile("train-images-idx3-ubyte", "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
        train_labels=IdxFile("train-labels-idx1-ubyte", "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
        test_images=IdxFile("t10k-images-idx3-ubyte", "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
        test_labels=IdxFile("t10k-labels-idx1-ubyte", "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
    ),
}


# ----------------------------------------------------------------------------------------
# IDX parsing


def read_file_bytes(path: Path) -> bytes:
    """The file's content, decompressed if its name ends in .gz."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected an IDX file") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: damaged gzip data ({exc or 'truncated'})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None


def parse_idx(content: bytes, source: str) -> np.ndarray:
    """Parse IDX bytes into an array, checking every field; `source` names the file in errors."""
    if len(content) < 4:
        raise DataError(f"{source}: too short for an IDX header ({len(content)} bytes)")
    if content[0] != 0 or content[1] != 0:
        raise DataError(f"{source}: wrong magic number (first two bytes {content[0]:#04x} {content[1]:#04x}, expected 0x00 0x00)")
    type_code, ndim = content[2], content[3]
    if type_code not in IDX_DTYPES:
        raise DataError(f"{source}: unknown IDX data type code {type_code:#04x}")
    if ndim == 0:
        raise DataError(f"{source}: IDX header declares zero dimensions")
    header_size = 4 + 4 * ndim
    if len(content) < header_size:
        raise DataError(f"{source}: truncated header ({len(content)} bytes, {header_size} needed for {ndim} dimensions)")
    shape = tuple(int.from_bytes(content[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = IDX_DTYPES[type_code]
    expected = header_size + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(content) != expected:
        problem = "truncated" if len(content) < expected else "has trailing bytes"
        raise DataError(f"{source}: {problem}: {len(content)} bytes, but header shape {shape} of {dtype.name} needs {expected}")
    return np.frombuffer(content, dtype=dtype, offset=header_size).reshape(shape)


def read_idx(path: str | Path) -> np.ndarray:
    path = Path(path)
    return parse_idx(read_file_bytes(path), str(path))


# ----------------------------------------------------------------------------------------
# Locating and downloading


def cache_root() -> Path:
    """~/.cache/latentsweep, or $XDG_CACHE_HOME/latentsweep."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "latentsweep"


def default_cache_dir(dataset: str) -> Path:
    return cache_root() / "datasets" / dataset


def find_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def missing_files(folder: Path, spec: DatasetSpec) -> list[str]:
    return [f"{f.stem}[.gz]" for f in spec.files if find_file(folder, f.stem) is None]


Opener = Callable[..., "urllib.response.addinfourl"]


def download_dataset(spec: DatasetSpec, folder: Path, opener: Opener = urllib.request.urlopen) -> None:
    """Fetch the data set's missing files from its mirrors into `folder`, verifying each by checksum.

    `opener(url, timeout=...)` is `urllib.request.urlopen` in use; tests pass their own.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for idx_file in spec.files:
        if find_file(folder, idx_file.stem) is not None:
            continue
        def check(compressed: bytes, expected: str = idx_file.sha256) -> str | None:
            digest = hashlib.sha256(gzip.decompress(compressed)).hexdigest()  # of the content, whoever compressed it
            return None if digest == expected else f"checksum mismatch (SHA-256 {digest[:12]}...)"

        compressed, failures = fetch_first([f"{mirror}{idx_file.stem}.gz" for mirror in spec.mirrors], check, opener, 60)
        if compressed is not None:
            atomic_write_bytes(folder / f"{idx_file.stem}.gz", compressed)
        else:
            raise DataError(
                f"could not download {spec.name} file {idx_file.stem}.gz ({'; '.join(failures)}); "
                f"offline? put the four IDX files ({', '.join(f.stem + '.gz' for f in spec.files)}) "
                f"in {folder} or pass --data-dir / set {ENV_DATA_DIR}"
            )


def fetch_first(urls: list[str] | tuple[str, ...], check: Callable[[bytes], str | None], opener: Opener,
                timeout: float) -> tuple[bytes | None, list[str]]:
    """The content of the first URL that serves bytes `check` accepts (it returns None, or what is wrong with
    them), and why each URL before it failed; (None, every failure) when none does."""
    failures = []
    for url in urls:
        try:
            with opener(url, timeout=timeout) as response:
                content = response.read()
            problem = check(content)
        except (urllib.error.URLError, OSError, EOFError, zlib.error) as exc:
            failures.append(f"{url}: {getattr(exc, 'reason', None) or exc}")
            continue
        if problem is None:
            return content, failures
        failures.append(f"{url}: {problem}")
    return None, failures


def resolve_data_dir(spec: DatasetSpec, data_dir: str | Path | None, opener: Opener = urllib.request.urlopen) -> Path:
    """Where the data set's files are: --data-dir, else $LATENTSWEEP_DATA_DIR, else the user cache.

    A folder given by flag or variable may hold the files itself or in a sub-folder named after the
    data set. Only the cache folder is filled by downloading; a folder the user named is never
    written to.
    """
    return find_data_folder(spec.name, data_dir, lambda folder: not missing_files(folder, spec),
                            lambda folder: f"missing {', '.join(missing_files(folder, spec))}",
                            lambda folder: download_dataset(spec, folder, opener))


def find_data_folder(name: str, data_dir: str | Path | None, holds_data: Callable[[Path], bool],
                     what_is_missing: Callable[[Path], str], download: Callable[[Path], object]) -> Path:
    """The rules of resolve_data_dir for any data set: `holds_data(folder)` says whether a folder has it,
    `what_is_missing(folder)` ends the error where a named folder does not, `download(folder)` fills the cache."""
    named = data_dir if data_dir not in (None, "") else os.environ.get(ENV_DATA_DIR) or None
    if named is not None:
        folder = Path(named).expanduser()
        origin = "--data-dir" if data_dir not in (None, "") else f"${ENV_DATA_DIR}"
        if not folder.exists():
            raise DataError(f"{folder} ({origin}): folder does not exist")
        if not folder.is_dir():
            raise DataError(f"{folder} ({origin}): not a folder")
        if holds_data(folder):
            return folder
        nested = folder / name
        if nested.is_dir() and holds_data(nested):
            return nested
        raise DataError(f"{folder} ({origin}): no {name} data; {what_is_missing(folder)}")
    folder = default_cache_dir(name)
    if not holds_data(folder):
        download(folder)
    return folder


# ----------------------------------------------------------------------------------------
# Loading and splitting


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


def load_pair(folder: Path, images_file: IdxFile, labels_file: IdxFile, verify: bool,
              classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Read one images/labels pair and check that together they form a labelled set of 28x28 images in `classes` classes."""
    arrays = []
    for idx_file in (images_file, labels_file):
        path = find_file(folder, idx_file.stem)
        if path is None:
            raise DataError(f"{folder}: missing {idx_file.stem}[.gz]")
        content = read_file_bytes(path)
        array = parse_idx(content, str(path))
        if verify and hashlib.sha256(content).hexdigest() != idx_file.sha256:
            raise DataError(f"{path}: content differs from the canonical file (SHA-256 mismatch); "
                            "pass --no-verify-data to use a modified copy")
        arrays.append((path, array))
    (images_path, images), (labels_path, labels) = arrays
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"{images_path}: expected 3-D unsigned-byte images, found {images.ndim}-D {images.dtype.name}")
    if images.shape[1:] != (28, 28):
        raise DataError(f"{images_path}: expected 28x28 images, found {images.shape[1]}x{images.shape[2]}")
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DataError(f"{labels_path}: expected 1-D unsigned-byte labels, found {labels.ndim}-D {labels.dtype.name}")
    if len(images) != len(labels):
        raise DataError(f"{labels_path}: {len(labels)} labels for {len(images)} images in {images_path.name}")
    if len(labels) and labels.max() >= classes:
        raise DataError(f"{labels_path}: label {int(labels.max())} outside 0-{classes - 1}")
    return images, labels


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


def load_dataset(
    spec: DatasetSpec,
    folder: Path,
    val_size: int = 5000,
    train_subset: int | None = None,
    split_seed: int = 0,
    verify: bool = True,
) -> Dataset:
    classes = len(spec.class_names)
    train_images, train_labels = load_pair(folder, spec.train_images, spec.train_labels, verify, classes)
    test_images, test_labels = load_pair(folder, spec.test_images, spec.test_labels, verify, classes)
    dataset = make_splits(spec.name, spec.class_names, folder, (train_images, train_labels), (test_images, test_labels),
                          val_size, train_subset, split_seed)
    return dataclasses.replace(dataset, interpolation_pairs=spec.interpolation_pairs, traversed_class=spec.traversed_class)


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


# ----------------------------------------------------------------------------------------
# A folder of the user's own images: PNG or JPEG, listed with their labels in labels.csv
#
# Every image becomes 8-bit grey (1 channel) or 8-bit RGB (3 channels) by these rules (docs/data.md):
#   1-bit and 8-bit grey as they are; 16-bit grey scaled to 8 bits (value * 255 / 65535, rounded);
#   RGB, CMYK and YCbCr JPEGs as RGB; a palette image as the RGB colours of its palette;
#   an alpha channel dropped where every pixel is opaque, and the image refused where one is not
#   (flattening onto a background is the user's choice, not ours); any other mode refused.
# Then `channels` (--channels) converts grey to RGB (the value in each channel) or RGB to grey (ITU-R
# 601-2 luma, Pillow's "L"), and `image_size` (--image-size) resizes with Pillow's Lanczos filter,
# antialiased (its support widens with the reduction). Without them, every image must have the first's
# channels and size, and the first that differs is named.


FOLDER_DATASET = "folder"
LABELS_FILE = "labels.csv"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")  # what a folder without labels.csv is searched for, in any case
FOLDER_TEST_SHARE = 1 / 7  # MNIST's 10,000 of 70,000, used when labels.csv has no split column
SPLITS = ("train", "test")
IMAGE_FORMATS = ("PNG", "JPEG")
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I")


def read_image_folder(folder: Path, image_size: tuple[int, int] | None = None,
                      channels: int | None = None) -> tuple[np.ndarray, list[str] | None, list[str] | None]:
    """Images (N, C, H, W) uint8, their labels and, when labels.csv has a `split` column, their splits.

    labels.csv has a header with `file` (a path relative to the folder) and `label` (any text: a
    digit, a word); an optional `split` column says train or test for each image. Without labels.csv,
    every PNG and JPEG under the folder (searched recursively, in sorted path order) is an image and the
    labels are None. `image_size` (height, width) and `channels` convert every image; without them all
    must agree with the first.
    """
    listing = folder / LABELS_FILE
    if not listing.is_file():
        return read_images(folder, unlabelled_images(folder), image_size, channels), None, None
    names, labels, splits = read_listing(listing)
    return read_images(folder, [(name, f"{folder / name} ({listing}, line {number + 2})")
                                for number, name in enumerate(names)], image_size, channels), labels, splits


def unlabelled_images(folder: Path) -> list[tuple[str, str]]:
    """(path relative to `folder`, how errors name it) of every PNG and JPEG under it, in sorted path order."""
    found = sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*")
                   if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file())
    if not found:
        raise DataError(f"{folder}: no {LABELS_FILE} and no PNG or JPEG images under it (searched recursively for "
                        f"{', '.join(IMAGE_SUFFIXES)})")
    return [(name, str(folder / name)) for name in found]


def read_listing(listing: Path) -> tuple[list[str], list[str], list[str] | None]:
    """labels.csv's files, labels and (when it has the column) splits, each line checked."""
    import csv

    try:
        with listing.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{listing}: not a readable CSV file ({exc})") from None
    missing = [column for column in ("file", "label") if column not in columns]
    if missing:
        raise DataError(f"{listing}: missing column(s) {', '.join(missing)}; the header must name file,label[,split], "
                        f"found {','.join(columns) or 'nothing'}")
    if not rows:
        raise DataError(f"{listing}: lists no images")
    has_split = "split" in columns
    names, labels, splits = [], [], []
    for number, row in enumerate(rows):
        line = f"{listing}, line {number + 2}"
        name, label = (row.get("file") or "").strip(), (row.get("label") or "").strip()
        if not name or not label:
            raise DataError(f"{line}: empty file or label")
        if has_split:
            split = (row.get("split") or "").strip().lower()
            if split not in SPLITS:
                raise DataError(f"{line}: split {row.get('split')!r} is not train or test")
            splits.append(split)
        names.append(name)
        labels.append(label)
    return names, labels, splits if has_split else None


def read_images(folder: Path, files: list[tuple[str, str]], image_size: tuple[int, int] | None,
                channels: int | None) -> np.ndarray:
    """(N, C, H, W) uint8 pixels of `files`, (path relative to `folder`, how errors name it); all must agree
    with the first in channels and size unless `channels` and `image_size` convert them."""
    from tqdm.auto import tqdm

    images: np.ndarray | None = None
    first = ""
    # A bar on a terminal only (disable=None), as for training: 50,000 PNGs take the better part of a minute.
    for number, (name, where) in enumerate(tqdm(files, desc="reading images", unit="img", leave=False, disable=None,
                                                dynamic_ncols=True)):
        path = folder / name
        pixels = read_image(path, where, image_size, channels)
        if images is None:
            images, first = np.empty((len(files), *pixels.shape), dtype=np.uint8), str(path)
        elif pixels.shape[0] != images.shape[1]:
            raise DataError(f"{where}: {pixels.shape[0]} channel(s), but {first} has {images.shape[1]}; pass "
                            "--channels 1 or 3 to convert every image")
        elif pixels.shape != images.shape[1:]:
            raise DataError(f"{where}: {pixels.shape[2]}x{pixels.shape[1]} pixels (width x height), but {first} "
                            f"is {images.shape[3]}x{images.shape[2]}; pass --image-size to resize every image")
        images[number] = pixels
    return images


def read_image(path: Path, where: str, image_size: tuple[int, int] | None = None,
               channels: int | None = None) -> np.ndarray:
    """One PNG or JPEG as (C, H, W) uint8 by the rules above; `where` names it in errors."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.format not in IMAGE_FORMATS:
                raise DataError(f"{where}: not a PNG or JPEG file (found {image.format})")
            picture = Image.fromarray(image_pixels(image, where))
    except FileNotFoundError:
        raise DataError(f"{where}: file not found") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{where}: not a readable image ({exc})") from None
    if channels is not None and len(picture.getbands()) != channels:
        picture = picture.convert("L" if channels == 1 else "RGB")
    if image_size is not None and picture.size != (image_size[1], image_size[0]):
        picture = picture.resize((image_size[1], image_size[0]), Image.Resampling.LANCZOS)
    pixels = np.asarray(picture, dtype=np.uint8)
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1).copy()


def image_pixels(image, where: str) -> np.ndarray:
    """(H, W) grey or (H, W, 3) RGB uint8 pixels of an open image, by the rules above."""
    mode = image.mode
    if mode in ("1", "L"):
        return np.asarray(image.convert("L"), dtype=np.uint8)
    if mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image, dtype=np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise DataError(f"{where}: {mode} pixels outside 0..65535; save it as 8- or 16-bit greyscale")
        return ((values * 255 + 65535 // 2) // 65535).astype(np.uint8)
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("LA", "RGBA", "PA"):
        if np.asarray(image.getchannel("A")).min() < 255:
            raise DataError(f"{where}: has transparent pixels ({mode}); flatten it onto a background first")
        return np.asarray(image.convert("L" if mode == "LA" else "RGB"), dtype=np.uint8)
    if mode in ("RGB", "CMYK", "YCbCr"):
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    raise DataError(f"{where}: unsupported image mode {mode}; save it as 8-bit greyscale or RGB")


def class_order(labels: list[str]) -> tuple[str, ...]:
    """The class names in order: numerically when every label is an integer, else alphabetically."""
    names = set(labels)
    if all(name.lstrip("-").isdigit() for name in names):
        return tuple(sorted(names, key=int))
    return tuple(sorted(names))


def load_image_folder(folder: Path, val_size: int = 5000, train_subset: int | None = None,
                      split_seed: int = 0, image_size: tuple[int, int] | None = None,
                      channels: int | None = None) -> Dataset:
    """The folder's images as a Dataset: the test split from labels.csv's split column, or else a
    stratified, seeded seventh of the images; validation from the rest, as for MNIST. Without labels.csv
    the data set has no class names and every label is 0 (the seventh is then a plain seeded draw)."""
    images, label_text, splits = read_image_folder(folder, image_size, channels)
    if label_text is None:
        class_names: tuple[str, ...] = ()
        labels = np.zeros(len(images), dtype=np.uint8)
    else:
        class_names = class_order(label_text)
        index = {name: i for i, name in enumerate(class_names)}
        labels = np.array([index[name] for name in label_text], dtype=np.uint8 if len(class_names) <= 256 else np.int64)
    if splits is not None:
        is_test = np.array([split == "test" for split in splits])
    else:
        rng = np.random.default_rng([split_seed, 7])  # its own stream: the validation draw stays as without it
        is_test = np.zeros(len(labels), dtype=bool)
        is_test[stratified_sample(labels, max(len(class_names), 1, round(len(labels) * FOLDER_TEST_SHARE)), rng)] = True
    if is_test.all() or not is_test.any():
        raise DataError(f"{folder}: {len(labels)} image(s) cannot make both a training and a test split")
    for split, mask in (("training", ~is_test), ("test", is_test)):
        absent = [name for i, name in enumerate(class_names) if not np.any(labels[mask] == i)]
        if absent:
            raise DataError(f"{folder / LABELS_FILE}: no {split} images of class(es) {', '.join(absent)}; "
                            "every class needs images in both splits")
    return make_splits(FOLDER_DATASET, class_names, folder, (images[~is_test], labels[~is_test]),
                       (images[is_test], labels[is_test]), val_size, train_subset, split_seed)


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


# ----------------------------------------------------------------------------------------
# CIFAR-10, binary version (https://www.cs.toronto.edu/~kriz/cifar.html): five training batches and one test
# batch of records, each one label byte (0-9) then 3,072 pixel bytes: the red, green and blue 32x32 planes,
# rows top to bottom. Read from the extracted files or straight from the archive, whose MD5 the page publishes.


@dataclass(frozen=True)
class RecordArchive:
    name: str
    class_names: tuple[str, ...]
    urls: tuple[str, ...]
    archive: str  # the archive's file name
    md5: str  # of the archive, as its authors publish it
    member_folder: str  # the folder the archive unpacks into
    train_files: tuple[str, ...]
    test_file: str
    image_shape: tuple[int, int, int]
    records_per_file: int  # in the official files; --no-verify-data accepts other counts (the tests' small files)

    @property
    def record_size(self) -> int:
        channels, height, width = self.image_shape
        return 1 + channels * height * width

    @property
    def files(self) -> tuple[str, ...]:
        return (*self.train_files, self.test_file)


CIFAR10 = RecordArchive(
    name="cifar10",
    class_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    urls=("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",),
    archive="cifar-10-binary.tar.gz",
    md5="c32a1d4ab5d03f1284b67883e8d87530",
    member_folder="cifar-10-batches-bin",
    train_files=tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
    test_file="test_batch.bin",
    image_shape=(3, 32, 32),
    records_per_file=10_000,
)


def parse_records(content: bytes, source: str, spec: RecordArchive, verify: bool) -> tuple[np.ndarray, np.ndarray]:
    """One batch file's (images (N, C, H, W) uint8, labels (N,) uint8), checking its structure; `source` names it."""
    size = spec.record_size
    if not content:
        raise DataError(f"{source}: empty file")
    if len(content) % size:
        raise DataError(f"{source}: truncated or damaged: {len(content):,} bytes is not a whole number of "
                        f"{size:,}-byte records (label byte + {size - 1:,} pixel bytes)")
    count = len(content) // size
    if verify and count != spec.records_per_file:
        raise DataError(f"{source}: {count:,} records, the official file has {spec.records_per_file:,}; "
                        "pass --no-verify-data to use a modified copy")
    records = np.frombuffer(content, dtype=np.uint8).reshape(count, size)
    labels = records[:, 0].copy()
    if labels.max() >= len(spec.class_names):
        bad = int(np.flatnonzero(labels >= len(spec.class_names))[0])
        raise DataError(f"{source}: record {bad} has label {int(labels[bad])}, outside 0-{len(spec.class_names) - 1}")
    return records[:, 1:].reshape(count, *spec.image_shape).copy(), labels


def record_sources(folder: Path, spec: RecordArchive) -> dict[str, Path] | Path | None:
    """Where the batch files are in `folder`: {file: path} when all are there extracted (in the folder itself or in
    the archive's own sub-folder), else the archive's path when it is there, else None."""
    for place in (folder, folder / spec.member_folder):
        found = {name: place / name for name in spec.files}
        if all(path.is_file() for path in found.values()):
            return found
    archive = folder / spec.archive
    return archive if archive.is_file() else None


def read_record_files(folder: Path, spec: RecordArchive, verify: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every batch file's images and labels, from the extracted files or from the archive (MD5-checked when `verify`)."""
    import tarfile

    sources = record_sources(folder, spec)
    if sources is None:
        raise DataError(f"{folder}: no {spec.name} data; expected {spec.archive} or the files of {spec.member_folder}/ "
                        f"({', '.join(spec.files)})")
    if isinstance(sources, dict):
        return {name: parse_records(read_file_bytes(path), str(path), spec, verify) for name, path in sources.items()}
    if verify:
        digest = hashlib.md5(sources.read_bytes()).hexdigest()
        if digest != spec.md5:
            raise DataError(f"{sources}: MD5 {digest} differs from the published {spec.md5}; the archive is damaged or "
                            "not the official one (pass --no-verify-data to use a modified copy)")
    read = {}
    try:
        with tarfile.open(sources, "r:gz") as archive:
            for name in spec.files:
                member = f"{spec.member_folder}/{name}"
                try:
                    handle = archive.extractfile(member)
                except KeyError:
                    handle = None
                if handle is None:
                    raise DataError(f"{sources}: has no file {member}")
                read[name] = parse_records(handle.read(), f"{sources}:{member}", spec, verify)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DataError(f"{sources}: not a readable tar.gz archive ({exc or 'truncated'})") from None
    return read


def download_archive(spec: RecordArchive, folder: Path, opener: Opener = urllib.request.urlopen) -> Path:
    """Fetch the archive into `folder`, verified against its published MD5; the first URL that serves it wins."""
    folder.mkdir(parents=True, exist_ok=True)

    def check(content: bytes) -> str | None:
        digest = hashlib.md5(content).hexdigest()
        return None if digest == spec.md5 else f"checksum mismatch (MD5 {digest}, published {spec.md5})"

    content, failures = fetch_first(spec.urls, check, opener, 600)
    if content is not None:
        atomic_write_bytes(folder / spec.archive, content)
        return folder / spec.archive
    raise DataError(f"could not download {spec.name} ({'; '.join(failures)}); offline? put {spec.archive} or the "
                    f"extracted {spec.member_folder}/ in {folder} or pass --data-dir / set {ENV_DATA_DIR}")


def resolve_record_dir(spec: RecordArchive, data_dir: str | Path | None, opener: Opener = urllib.request.urlopen) -> Path:
    """Where the data set is, by the rules of resolve_data_dir: --data-dir, else $LATENTSWEEP_DATA_DIR, else the
    user cache, which alone is filled by downloading. A named folder may hold it itself or in a sub-folder
    named after the data set."""
    return find_data_folder(spec.name, data_dir, lambda folder: record_sources(folder, spec) is not None,
                            lambda folder: f"expected {spec.archive} or the files of {spec.member_folder}/ "
                                           f"({', '.join(spec.files)})",
                            lambda folder: download_archive(spec, folder, opener))


def load_record_dataset(spec: RecordArchive, folder: Path, val_size: int = 5000, train_subset: int | None = None,
                        split_seed: int = 0, verify: bool = True) -> Dataset:
    batches = read_record_files(folder, spec, verify)
    train = tuple(np.concatenate(parts) for parts in zip(*(batches[name] for name in spec.train_files)))
    return make_splits(spec.name, spec.class_names, folder, train, batches[spec.test_file], val_size, train_subset,
                       split_seed)


# ----------------------------------------------------------------------------------------
# A study's data, from its settings


def locate_data(data: DataConfig) -> Path:
    """The data folder: --data-dir for a folder of images; for MNIST-style sets also the environment
    variable or the download cache (see data.resolve_data_dir)."""
    if data.dataset == CIFAR10.name:
        return resolve_record_dir(CIFAR10, data.data_dir)
    if data.dataset != FOLDER_DATASET:
        return resolve_data_dir(DATASETS[data.dataset], data.data_dir)
    if not data.data_dir:
        raise ConfigError(f"--dataset {FOLDER_DATASET}: needs --data-dir, the folder with {LABELS_FILE} and the PNGs")
    folder = Path(data.data_dir).expanduser()
    if not folder.is_dir():
        raise DataError(f"{folder} (--data-dir): folder does not exist")
    return folder


def load_data(data: DataConfig) -> tuple[Dataset, Path]:
    data_dir = locate_data(data)
    log.info("loading %s from %s", data.dataset, data_dir)
    if data.dataset == FOLDER_DATASET:
        dataset = load_image_folder(data_dir, val_size=data.val_size, train_subset=data.train_subset,
                                    split_seed=data.split_seed, image_size=parse_image_size(data.image_size),
                                    channels=data.channels)
    elif data.dataset == CIFAR10.name:
        dataset = load_record_dataset(CIFAR10, data_dir, val_size=data.val_size, train_subset=data.train_subset,
                                      split_seed=data.split_seed, verify=data.verify_data)
    else:
        dataset = load_dataset(DATASETS[data.dataset], data_dir, val_size=data.val_size,
                               train_subset=data.train_subset, split_seed=data.split_seed, verify=data.verify_data)
    log.info("%d training, %d validation, %d test images, %s", len(dataset.train), len(dataset.val), len(dataset.test),
             describe_shape(dataset.image_shape))
    return dataset, data_dir


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
