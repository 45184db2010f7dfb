"""MNIST and Fashion-MNIST: the IDX format, the published files with their checksums, and loading them.

IDX (http://yann.lecun.com/exdb/mnist/) stores one array per file: a magic number naming the element type
and the number of dimensions, each dimension's size, then the values, all multi-byte values big-endian.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from latentsweep.data.fetch import ENV_DATA_DIR, Opener, fetch_first, find_data_folder, find_file, read_file_bytes
from latentsweep.data.splits import Dataset, make_splits
from latentsweep.errors import DataError
from latentsweep.storage import atomic_write_bytes

if TYPE_CHECKING:
    from latentsweep.config import DataConfig

# IDX type codes (http://yann.lecun.com/exdb/mnist/): all multi-byte values are big-endian.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


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


def missing_files(folder: Path, spec: DatasetSpec) -> list[str]:
    return [f"{f.stem}[.gz]" for f in spec.files if find_file(folder, f.stem) is None]


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


def resolve_data_dir(spec: DatasetSpec, data_dir: str | Path | None, opener: Opener = urllib.request.urlopen) -> Path:
    """Where the data set's files are: --data-dir, else $LATENTSWEEP_DATA_DIR, else the user cache.

    A folder given by flag or variable may hold the files itself or in a sub-folder named after the
    data set. Only the cache folder is filled by downloading; a folder the user named is never
    written to.
    """
    return find_data_folder(spec.name, data_dir, lambda folder: not missing_files(folder, spec),
                            lambda folder: f"missing {', '.join(missing_files(folder, spec))}",
                            lambda folder: download_dataset(spec, folder, opener))


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


def locate(spec: DatasetSpec, data: DataConfig) -> Path:
    """The folder of the data set's four IDX files, by the shared rules (fetch.find_data_folder)."""
    return resolve_data_dir(spec, data.data_dir)


def load(spec: DatasetSpec, folder: Path, data: DataConfig) -> Dataset:
    return load_dataset(spec, folder, val_size=data.val_size, train_subset=data.train_subset,
                        split_seed=data.split_seed, verify=data.verify_data)
