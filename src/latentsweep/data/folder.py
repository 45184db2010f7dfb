"""A folder of the user's own images: PNG or JPEG, listed with their labels in labels.csv, or without it every
image under the folder, unlabelled.

Every image becomes 8-bit grey (1 channel) or 8-bit RGB (3 channels) by these rules (docs/data.md):
  1-bit and 8-bit grey as they are; 16-bit grey scaled to 8 bits (value * 255 / 65535, rounded);
  RGB, CMYK and YCbCr JPEGs as RGB; a palette image as the RGB colours of its palette;
  an alpha channel dropped where every pixel is opaque, and the image refused where one is not
  (flattening onto a background is the user's choice, not ours); any other mode refused.
Then `channels` (--channels) converts grey to RGB (the value in each channel) or RGB to grey (ITU-R
601-2 luma, Pillow's "L"), and `image_size` (--image-size) resizes with Pillow's Lanczos filter,
antialiased (its support widens with the reduction). Without them, every image must have the first's
channels and size, and the first that differs is named.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from latentsweep.data.splits import Dataset, make_splits, stratified_sample
from latentsweep.errors import ConfigError, DataError

if TYPE_CHECKING:
    from latentsweep.config import DataConfig

FOLDER_DATASET = "folder"
LABELS_FILE = "labels.csv"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")  # what a folder without labels.csv is searched for, in any case
FOLDER_TEST_SHARE = 1 / 7  # MNIST's 10,000 of 70,000, used when labels.csv has no split column
SPLITS = ("train", "test")
IMAGE_FORMATS = ("PNG", "JPEG")
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I")


def parse_image_size(text: str | None) -> tuple[int, int] | None:
    """--image-size: "N" (N x N) or "HxW" as (height, width); a one-line error naming the option otherwise."""
    if text is None:
        return None
    parts = str(text).lower().replace(" ", "").split("x")
    if len(parts) not in (1, 2) or not all(part.isdigit() for part in parts):
        raise ConfigError(f"--image-size: {text!r} is not N or HxW (for example 32 or 64x48)")
    height, width = int(parts[0]), int(parts[-1])
    if min(height, width) < 2 or max(height, width) > 4096:
        raise ConfigError(f"--image-size: {text!r}: each side must be between 2 and 4096 pixels")
    return height, width


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


def locate(data: DataConfig) -> Path:
    """The folder named by --data-dir: a folder of one's own images is never looked for elsewhere."""
    if not data.data_dir:
        raise ConfigError(f"--dataset {FOLDER_DATASET}: needs --data-dir, the folder with {LABELS_FILE} and the PNGs")
    folder = Path(data.data_dir).expanduser()
    if not folder.is_dir():
        raise DataError(f"{folder} (--data-dir): folder does not exist")
    return folder


def load(folder: Path, data: DataConfig) -> Dataset:
    return load_image_folder(folder, val_size=data.val_size, train_subset=data.train_subset,
                             split_seed=data.split_seed, image_size=parse_image_size(data.image_size),
                             channels=data.channels)
