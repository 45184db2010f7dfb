"""Generated image data sets of any size and colour, for the tests and for benchmarks/bench_image_folder.py.

    python tests/synthetic_images.py FOLDER COUNT HEIGHT WIDTH CHANNELS [--no-labels] [--dimension D]

Each image is low noise with one bright block whose position and colour depend on its class (ten
classes), so a VAE has something to learn and a classifier something to separate. Written as PNGs
under FOLDER/img/ with a labels.csv (file,label), or without it. With --dimension D, unlabelled images
on a D-dimensional manifold instead (manifold_images): data that needs about D latent dimensions.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

CLASS_COLOURS = np.array([[230, 40, 40], [40, 230, 40], [40, 40, 230], [230, 230, 40], [230, 40, 230],
                          [40, 230, 230], [230, 140, 40], [140, 40, 230], [230, 230, 230], [120, 120, 120]], np.uint8)


def synthetic_images(count: int, height: int, width: int, channels: int, seed: int = 0,
                     classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """(count, channels, height, width) uint8 images and their int64 labels (0 .. classes - 1, balanced)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % classes
    rng.shuffle(labels)
    images = rng.integers(0, 40, size=(count, channels, height, width), dtype=np.uint8)
    block_h, block_w = max(1, height // 3), max(1, width // 3)
    for i, label in enumerate(labels):
        top = (label * (height - block_h)) // max(classes - 1, 1)
        left = ((classes - 1 - label) * (width - block_w)) // max(classes - 1, 1)
        colour = CLASS_COLOURS[label % len(CLASS_COLOURS)][:channels] if channels == 3 else [200 + 5 * (label % 10)]
        images[i, :, top:top + block_h, left:left + block_w] = np.asarray(colour, np.uint8)[:, None, None]
    return images, labels.astype(np.int64)


def write_image_folder(folder: Path, images: np.ndarray, labels: np.ndarray | None) -> Path:
    """PNGs under folder/img/ in sorted name order, and labels.csv (file,label) unless `labels` is None."""
    from PIL import Image

    (folder / "img").mkdir(parents=True, exist_ok=True)
    names = []
    for i, image in enumerate(images):
        name = f"img/{i:05d}.png"
        pixels = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
        Image.fromarray(np.ascontiguousarray(pixels)).save(folder / name)
        names.append(name)
    if labels is not None:
        with (folder / "labels.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["file", "label"])
            writer.writerows(zip(names, (int(label) for label in labels)))
    return folder


CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR_FILES = (*CIFAR_TRAIN_FILES, "test_batch.bin")


def cifar_records(images: np.ndarray, labels: np.ndarray) -> bytes:
    """CIFAR-10's binary format, written from its definition: per record a label byte, then the red,
    green and blue 32x32 planes."""
    return b"".join(bytes([int(label)]) + image.tobytes() for image, label in zip(images, labels))


def write_cifar_folder(folder: Path, records_per_file: int, seed: int = 0,
                       archive: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Five training batches and a test batch of generated 3x32x32 images in cifar-10-batches-bin/ (or, with
    `archive`, in cifar-10-binary.tar.gz); returns every image and label in file order (training, then test)."""
    import io
    import tarfile

    images, labels = synthetic_images(records_per_file * len(CIFAR_FILES), 32, 32, 3, seed)
    contents = {name: cifar_records(images[i * records_per_file:(i + 1) * records_per_file],
                                    labels[i * records_per_file:(i + 1) * records_per_file])
                for i, name in enumerate(CIFAR_FILES)}
    folder.mkdir(parents=True, exist_ok=True)
    if archive:
        with tarfile.open(folder / "cifar-10-binary.tar.gz", "w:gz") as tar:
            for name, content in contents.items():
                member = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
                member.size = len(content)
                tar.addfile(member, io.BytesIO(content))
    else:
        (folder / "cifar-10-batches-bin").mkdir(exist_ok=True)
        for name, content in contents.items():
            (folder / "cifar-10-batches-bin" / name).write_bytes(content)
    return images, labels


def manifold_images(count: int, height: int, width: int, channels: int, dimension: int, seed: int = 0) -> np.ndarray:
    """(count, channels, height, width) uint8 images that vary along `dimension` independent directions: each the
    sigmoid of a sum of `dimension` smooth random patterns weighted by N(0, 1) draws, so its intrinsic dimension is
    `dimension` (up to the 8-bit rounding)."""
    rng = np.random.default_rng(seed)
    patterns = rng.normal(size=(dimension, channels, height, width))
    for axis in (2, 3):  # smooth each pattern a little along rows and columns, as images are
        patterns = (patterns + np.roll(patterns, 1, axis) + np.roll(patterns, -1, axis)) / 3
    patterns /= patterns.reshape(dimension, -1).std(1)[:, None, None, None]
    weights = rng.normal(size=(count, dimension)) / np.sqrt(dimension)
    values = 1 / (1 + np.exp(-2 * np.tensordot(weights, patterns, axes=1)))
    return np.round(values * 255).astype(np.uint8)


def main(argv: list[str]) -> int:
    folder, count, height, width, channels = Path(argv[0]), *map(int, argv[1:5])
    if "--dimension" in argv:
        images = manifold_images(count, height, width, channels, int(argv[argv.index("--dimension") + 1]))
        write_image_folder(folder, images, None)
    else:
        images, labels = synthetic_images(count, height, width, channels)
        write_image_folder(folder, images, None if "--no-labels" in argv else labels)
    print(f"wrote {count} {channels}x{height}x{width} images to {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
