"""Shared fixtures: tiny IDX files written by the tests, and the real MNIST folder when present."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
# The feature classifier is cached under $XDG_CACHE_HOME: keep the tests' copy out of the user's cache,
# shared by every test (and the subprocesses they start) in one session.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="latentsweep-test-cache-")

IDX_TYPE_CODES = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype(">i2"): 0x0B, np.dtype(">i4"): 0x0C,
                  np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding written from the format's definition, independently of the parser under test."""
    header = bytes([0, 0, IDX_TYPE_CODES[array.dtype], array.ndim])
    header += b"".join(int(size).to_bytes(4, "big") for size in array.shape)
    return header + array.tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def write_fake_dataset(folder: Path, train: int = 300, test: int = 120, seed: int = 0, gz: bool = True) -> Path:
    """A tiny MNIST-format data set with blocky class-dependent images (not MNIST; use verify=False)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for prefix, count in (("train", train), ("t10k", test)):
        labels = (np.arange(count) % 10).astype(np.uint8)
        rng.shuffle(labels)
        images = rng.integers(0, 40, size=(count, 28, 28), dtype=np.uint8)
        for i, label in enumerate(labels):
            images[i, 2 * label: 2 * label + 8, 4:24] = 230
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
    return folder


@pytest.fixture
def fake_data(tmp_path: Path) -> Path:
    return write_fake_dataset(tmp_path / "fake-mnist")


# Tests that use these fixtures are end-to-end (the real command, a browser, real MNIST or a Dask cluster):
# they are marked slow, and `make test-fast` leaves them out. Other slow tests carry @pytest.mark.slow.
SLOW_FIXTURES = {"study", "browser", "idx_data", "mnist_dir", "sequential"}


def pytest_collection_modifyitems(items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def real_mnist_dir() -> Path | None:
    folder = os.environ.get("LATENTSWEEP_DATA_DIR")
    return Path(folder) if folder and (Path(folder) / "t10k-labels-idx1-ubyte.gz").is_file() else None


NO_MNIST = ("real MNIST not found: set LATENTSWEEP_DATA_DIR to the folder with the four IDX .gz files "
            "(e.g. ../shared/datasets/mnist)")


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    folder = real_mnist_dir()
    if folder is None:
        pytest.skip(NO_MNIST)
    return folder


@dataclass(frozen=True)
class IdxData:
    """An MNIST-format folder for the end-to-end tests, and what they may expect of it."""

    source: str  # "generated" or "mnist"
    folder: Path
    canonical: bool  # the canonical bytes, which pass the SHA-256 check; generated images do not
    train_images: int  # the official training split
    test_images: int

    @property
    def options(self) -> tuple[str, ...]:
        """What a command needs beside --data-dir to read the folder."""
        return () if self.canonical else ("--no-verify-data",)


# Big enough for SMALL_RUN (500 training + 200 validation images) and for 140 test images of a class
# (test_image_folder); small enough that the classifier and the evaluation take seconds.
GENERATED_TRAIN, GENERATED_TEST = 1200, 1500


@pytest.fixture(scope="session", params=["generated", "mnist"])
def idx_data(request, tmp_path_factory) -> IdxData:
    """Each end-to-end test runs twice: on a generated IDX data set, so it runs everywhere, and on real
    MNIST where present."""
    if request.param == "generated":
        folder = write_fake_dataset(tmp_path_factory.mktemp("generated") / "mnist", train=GENERATED_TRAIN,
                                    test=GENERATED_TEST)
        return IdxData("generated", folder, False, GENERATED_TRAIN, GENERATED_TEST)
    folder = real_mnist_dir()
    if folder is None:
        pytest.skip(NO_MNIST)
    return IdxData("mnist", folder, True, 60_000, 10_000)


# For end-to-end tests whose subject does not depend on the images (where trials run, seeds, binarisation,
# the train command): the generated data set alone. Real MNIST's end to end is the `study` fixture's.
generated_only = pytest.mark.parametrize("idx_data", ["generated"], indirect=True)


# The tiny-run settings, in one place: small evaluation settings keep the suite fast (the defaults are measured in
# benchmarks/); each test that needs other values names only what it changes.
TINY_EVALUATION = {"num_samples": 16, "generation_samples": 300, "iwae_samples": 20, "iwae_images": 50, "tsne_points": 100,
                   "classifier_epochs": 1}
# No refinement unless a test asks for it (no_refine=None, refine=True): the grid's answer is what most tests check.
# No health checks either: a model trained for an epoch or two on a few hundred images has not trained, and the
# checks would rightly leave it out (tests/test_health.py turns them on).
TINY_TRAINING = {"latent_dims": "2,4", "seeds": 0, "train_subset": 500, "val_size": 200, "epochs": 2, "no_refine": True,
                 "no_check_training": True, "no_extend": True}


def tiny_options(evaluation_only: bool = False, **changes) -> list[str]:
    """The tiny run's settings as command-line flags, with `changes` (option names as in StudyConfig; None drops one).
    With `evaluation_only`, the evaluation settings alone (for 'train', which takes its own latent size)."""
    values = {**TINY_EVALUATION, **({} if evaluation_only else TINY_TRAINING), **changes}
    flags = []
    for key, value in values.items():
        if value is True:
            flags.append("--" + key.replace("_", "-"))
        elif value is not None and value is not False:
            flags += ["--" + key.replace("_", "-"), str(value)]
    return flags


SMALL_EVAL = tiny_options(evaluation_only=True)
SMALL_RUN = tiny_options()
# The smallest runs: 100 training images, sizes 2 and 3, a few images per measure.
TINIEST = dict(latent_dims="2,3", train_subset=100, val_size=50, generation_samples=100, iwae_samples=5, iwae_images=20,
               tsne_points=50, num_samples=4, no_verify_data=True)


def expected_answers(rows, tolerance_db: float = 0.5, fd_tolerance: float = 0.10) -> dict:
    """The study's rule written again from its definition, independently of selection.py: per (architecture, beta),
    each size's whole-test-set PSNR and prior-sample FD averaged over seeds; the smallest size within `tolerance_db`
    of the best PSNR whose FD is within `fd_tolerance` of the lowest; if none passes both, the smallest within the
    PSNR tolerance."""
    values: dict = {}
    for row in rows:
        if row["class"] == "all" and (row["protocol"], row["metric"]) in (("test_set", "psnr"), ("prior_samples", "fd")):
            key = (row["architecture"], float(row["beta"]))
            values.setdefault(key, {}).setdefault(row["metric"], {}).setdefault(int(row["latent_dim"]), []).append(float(row["mean"]))
    answers = {}
    for key, metrics in values.items():
        psnr = {size: sum(v) / len(v) for size, v in metrics["psnr"].items()}
        fd = {size: sum(v) / len(v) for size, v in metrics.get("fd", {}).items()}
        good_psnr = [size for size in sorted(psnr) if psnr[size] >= max(psnr.values()) - tolerance_db]
        good_fd = [size for size in fd if fd[size] <= min(fd.values()) * (1 + fd_tolerance)] if set(fd) == set(psnr) else []
        both = [size for size in good_psnr if size in good_fd]
        answers[key] = both[0] if both else good_psnr[0]
    return answers


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The installed entry point in a fresh interpreter, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "latentsweep", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)


@pytest.fixture(scope="session")
def study(idx_data, tmp_path_factory):
    """The real command on a small subset of each IDX data set, run once for every test that reads its output."""
    out = tmp_path_factory.mktemp(f"e2e-{idx_data.source}") / "study"
    result = cli("run", "--data-dir", str(idx_data.folder), *idx_data.options, "--out", str(out), *SMALL_RUN)
    assert result.returncode == 0, result.stderr
    return out, result


# The smallest study of a generated image folder (tests/synthetic_images.py): sizes 2 and 3, one epoch.
IMAGE_STUDY = ["--latent-dims", "2,3", "--seeds", "0", "--val-size", "30", "--epochs", "1", "--no-refine",
               "--no-check-training", "--no-extend", *SMALL_EVAL,
               "--representatives-per-class", "2", "--iwae-images", "20", "--tsne-points", "50"]


def image_folder_study(folder: Path, count: int, shape: tuple[int, int, int], labelled: bool) -> Path:
    """A real study (the CLI, in this process) on `count` generated images of `shape` (channels, height, width)."""
    from latentsweep.cli import main
    from synthetic_images import synthetic_images, write_image_folder

    images, labels = synthetic_images(count, shape[1], shape[2], shape[0], seed=3)
    write_image_folder(folder / "images", images, labels if labelled else None)
    out = folder / "study"
    assert main(["-q", "run", "--dataset", "folder", "--data-dir", str(folder / "images"), "--out", str(out),
                 *IMAGE_STUDY]) == 0
    return out


def assert_trained_for(folder: Path, latent_dim: int, shape: tuple[int, int, int]) -> None:
    """A trial folder's model was built for images of `shape` and decodes to it; its stored pictures have it
    too (data.to_pictures: (N, H, W) grey, (N, H, W, 3) colour)."""
    from latentsweep.architectures import model_from_checkpoint
    from latentsweep.train import load_checkpoint

    model, spec = model_from_checkpoint(load_checkpoint(folder / "best.pt"), "best.pt")
    assert spec.image_shape == shape
    with torch.no_grad():
        assert tuple(model.decode(torch.zeros(4, latent_dim)).shape) == (4, *shape)
    picture = shape[1:] if shape[0] == 1 else (*shape[1:], 3)
    with np.load(folder / "images.npz") as arrays:
        assert arrays["originals"].shape[1:] == picture and arrays["samples"].shape[1:] == picture
        assert arrays["reconstructions"].shape == arrays["originals"].shape


@pytest.fixture(scope="session")
def colour_study(tmp_path_factory) -> Path:
    """Labelled RGB images of an odd size, 30 wide and 26 high (ten classes)."""
    return image_folder_study(tmp_path_factory.mktemp("colour"), 280, (3, 26, 30), labelled=True)


@pytest.fixture(scope="session")
def unlabelled_study(tmp_path_factory) -> Path:
    """Grey 40x40 images in a folder without labels.csv."""
    return image_folder_study(tmp_path_factory.mktemp("unlabelled"), 280, (1, 40, 40), labelled=False)


def cuda_synchronisations(work) -> int:
    """How many times `work()` made the host wait for the GPU (torch's sync debug mode, as warnings)."""
    import warnings

    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            work()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(warning.message) for warning in caught)


LAPTOP = (1366, 768)


@pytest.fixture(scope="session")
def browser():
    """Debian's chromium, headless, driven by selenium through chromedriver, at a laptop's window size;
    it logs what the network layer does (performance log) so tests can check that nothing is fetched."""
    webdriver = pytest.importorskip("selenium.webdriver")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    if not chromium or not chromedriver:
        pytest.skip("chromium and chromedriver not installed (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update", "--no-first-run",
                     f"--window-size={LAPTOP[0]},{LAPTOP[1]}"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    # An explicit driver path: selenium must not try to download one.
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=chromedriver))
    yield driver
    driver.quit()
