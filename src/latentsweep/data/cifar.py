"""CIFAR-10, binary version (https://www.cs.toronto.edu/~kriz/cifar.html): five training batches and one test
batch of records, each one label byte (0-9) then 3,072 pixel bytes: the red, green and blue 32x32 planes,
rows top to bottom. Read from the extracted files or straight from the archive, whose MD5 the page publishes.
"""

from __future__ import annotations

import hashlib
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from latentsweep.data.fetch import ENV_DATA_DIR, Opener, fetch_first, find_data_folder, read_file_bytes
from latentsweep.data.splits import Dataset, make_splits
from latentsweep.errors import DataError
from latentsweep.storage import atomic_write_bytes

if TYPE_CHECKING:
    from latentsweep.config import DataConfig

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


def locate(spec: RecordArchive, data: DataConfig) -> Path:
    """The folder of the extracted batch files or the archive, by the shared rules (fetch.find_data_folder)."""
    return resolve_record_dir(spec, data.data_dir)


def load(spec: RecordArchive, folder: Path, data: DataConfig) -> Dataset:
    return load_record_dataset(spec, folder, val_size=data.val_size, train_subset=data.train_subset,
                               split_seed=data.split_seed, verify=data.verify_data)
