import gzip
import hashlib
import http.server
import threading
import urllib.request
from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import idx_bytes, write_fake_dataset, write_idx
from latentsweep.data import (DATASET_NAMES, DATASETS, IdxFile, download_dataset, intensities, load_dataset, parse_idx,
                              read_idx, resolve_data_dir, stratified_sample)
from latentsweep.errors import ConfigError, DataError

MNIST = DATASETS["mnist"]


# --- IDX parsing -------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["u1", "i1", ">i2", ">i4", ">f4", ">f8"])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_round_trips_every_type(tmp_path, dtype, suffix):
    array = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype) if dtype != "u1" else np.arange(24, dtype="u1").reshape(2, 3, 4)
    path = write_idx(tmp_path / f"data.idx{suffix}", array)
    np.testing.assert_array_equal(read_idx(path), array)


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b[:-1], "truncated"),
    (lambda b: b + b"\x00", "trailing bytes"),
    (lambda b: b"\x01" + b[1:], "wrong magic number"),
    (lambda b: b[:2] + b"\x07" + b[3:], "unknown IDX data type code 0x07"),
    (lambda b: b[:3] + b"\x00" + b[4:], "zero dimensions"),
    (lambda b: b[:6], "truncated header"),
    (lambda b: b[:2], "too short"),
    (lambda b: b"", "too short"),
])
def test_parse_idx_rejects_damage_with_a_message_naming_the_file(mutate, message):
    good = idx_bytes(np.zeros((3, 28, 28), dtype=np.uint8))
    with pytest.raises(DataError, match=message) as info:
        parse_idx(mutate(good), "some/file.idx")
    assert str(info.value).startswith("some/file.idx: ")
    assert "\n" not in str(info.value)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_parse_idx_never_fails_with_anything_but_data_error(content):
    try:
        parse_idx(content, "fuzz")
    except DataError as exc:
        assert str(exc).startswith("fuzz: ")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=1, max_size=3), st.sampled_from(["u1", ">i2", ">f4"]))
def test_parse_idx_round_trips_random_shapes(shape, dtype):
    array = np.ones(shape, dtype=dtype)
    np.testing.assert_array_equal(parse_idx(idx_bytes(array), "x"), array)


# --- Loading and validating pairs ----------------------------------------------------------

def test_wrong_image_size_is_reported(fake_data):
    write_idx(fake_data / "t10k-images-idx3-ubyte.gz", np.zeros((120, 32, 32), np.uint8))
    with pytest.raises(DataError, match="expected 28x28 images, found 32x32"):
        load_dataset(MNIST, fake_data, val_size=50, verify=False)


def test_checksum_verification_rejects_non_canonical_content(fake_data):
    with pytest.raises(DataError, match="SHA-256 mismatch"):
        load_dataset(MNIST, fake_data, val_size=50, verify=True)


def test_uncompressed_files_are_found_too(tmp_path):
    folder = write_fake_dataset(tmp_path / "plain", gz=False)
    dataset = load_dataset(MNIST, folder, val_size=50, verify=False)
    assert len(dataset.test) == 120


def test_splits_are_stratified_disjoint_seeded_and_keep_the_test_set(fake_data):
    dataset = load_dataset(MNIST, fake_data, val_size=100, train_subset=50, split_seed=3, verify=False)
    assert (len(dataset.train), len(dataset.val), len(dataset.test)) == (50, 100, 120)
    assert np.bincount(dataset.val.labels.numpy(), minlength=10).tolist() == [10] * 10
    assert np.bincount(dataset.train.labels.numpy(), minlength=10).tolist() == [5] * 10
    train_rows = {row.numpy().tobytes() for row in intensities(dataset.train.images)}
    assert not train_rows & {row.numpy().tobytes() for row in dataset.val.images}
    test_labels = read_idx(fake_data / "t10k-labels-idx1-ubyte.gz")
    np.testing.assert_array_equal(dataset.test.labels.numpy(), test_labels)  # official order, untouched
    again = load_dataset(MNIST, fake_data, val_size=100, train_subset=50, split_seed=3, verify=False)
    assert (again.val.images == dataset.val.images).all()
    other = load_dataset(MNIST, fake_data, val_size=100, train_subset=50, split_seed=4, verify=False)
    assert not (other.val.images == dataset.val.images).all()
    # The training splits stay uint8 pixels, the scored ones float intensities: the same values either way.
    assert dataset.train.images.dtype == dataset.full_train.images.dtype == torch.uint8
    assert dataset.val.images.dtype == dataset.test.images.dtype == torch.float32
    pixels = read_idx(fake_data / "t10k-images-idx3-ubyte.gz")
    assert torch.equal(dataset.test.images[:, 0], torch.from_numpy(pixels.astype(np.float32)) / 255)
    assert torch.equal(intensities(dataset.full_train.images[:5]),
                       torch.from_numpy(read_idx(fake_data / "train-images-idx3-ubyte.gz")[:5, None].astype(np.float32)) / 255)


def test_a_subset_larger_than_the_training_split_takes_all_of_it_and_says_so(fake_data, caplog):
    dataset = load_dataset(MNIST, fake_data, val_size=100, train_subset=500, verify=False)
    assert len(dataset.train) == 200 and "--train-subset 500: only 200 training images are left" in caplog.text
    whole = load_dataset(MNIST, fake_data, val_size=100, verify=False)
    assert torch.equal(dataset.train.images, whole.train.images)


@pytest.mark.parametrize("count", [0, 1, 7, 10, 33, 299, 300])
def test_stratified_sample_takes_exact_proportional_counts(count):
    labels = np.repeat(np.arange(3), [150, 100, 50])
    chosen = stratified_sample(labels, count, np.random.default_rng(0))
    assert len(chosen) == len(set(chosen.tolist())) == count
    per_class = np.bincount(labels[chosen], minlength=3)
    assert np.all(np.abs(per_class - count * np.array([0.5, 1 / 3, 1 / 6])) < 1)


# --- Where data comes from ---------------------------------------------------------------

def test_data_dir_flag_beats_environment_and_accepts_a_parent_folder(tmp_path, monkeypatch):
    flagged = write_fake_dataset(tmp_path / "flag" / "mnist")
    monkeypatch.setenv("LATENTSWEEP_DATA_DIR", str(write_fake_dataset(tmp_path / "env")))
    assert resolve_data_dir(MNIST, str(tmp_path / "flag")) == flagged
    assert resolve_data_dir(MNIST, None) == tmp_path / "env"


def test_missing_files_are_named(tmp_path, monkeypatch):
    monkeypatch.delenv("LATENTSWEEP_DATA_DIR", raising=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty \(--data-dir\): no mnist data; missing train-images-idx3-ubyte\[\.gz\]"):
        resolve_data_dir(MNIST, tmp_path / "empty")
    with pytest.raises(DataError, match="folder does not exist"):
        resolve_data_dir(MNIST, tmp_path / "nowhere")


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture
def local_mirror(tmp_path):
    """A real HTTP server on 127.0.0.1 serving gzipped fake IDX files, and the spec that matches them."""
    served = tmp_path / "served"
    write_fake_dataset(served, gz=True)
    files = {}
    for name in ("train_images", "train_labels", "test_images", "test_labels"):
        stem = getattr(MNIST, name).stem
        files[name] = IdxFile(stem, hashlib.sha256(gzip.decompress((served / f"{stem}.gz").read_bytes())).hexdigest())
    handler = lambda *a, **k: _Files(*a, directory=str(served), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    yield replace(MNIST, mirrors=("http://127.0.0.1:9/unreachable/", url), **files)
    server.shutdown()


def test_download_fills_the_cache_from_the_first_working_mirror(tmp_path, monkeypatch, local_mirror):
    monkeypatch.delenv("LATENTSWEEP_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = resolve_data_dir(local_mirror, None)
    assert folder == tmp_path / "cache" / "latentsweep" / "datasets" / "mnist"
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{f.stem}.gz" for f in local_mirror.files)
    dataset = load_dataset(local_mirror, folder, val_size=50)  # verified against the spec's checksums
    assert len(dataset.test) == 120


def test_download_rejects_a_checksum_mismatch_and_explains_offline_use(tmp_path, local_mirror):
    wrong = replace(local_mirror, test_labels=IdxFile(local_mirror.test_labels.stem, "0" * 64))
    with pytest.raises(DataError) as info:
        download_dataset(wrong, tmp_path / "cache")
    message = str(info.value)
    assert "checksum mismatch" in message and "unreachable" in message
    assert "put the four IDX files" in message and "\n" not in message
    assert not (tmp_path / "cache" / "t10k-labels-idx1-ubyte.gz").exists()


def test_download_uses_the_given_opener(tmp_path, local_mirror):
    calls = []

    def opener(url, timeout):
        calls.append(url)
        return urllib.request.urlopen(url, timeout=timeout)

    download_dataset(replace(local_mirror, mirrors=local_mirror.mirrors[1:]), tmp_path / "c", opener=opener)
    assert len(calls) == 4 and all(url.endswith(".gz") for url in calls)


def test_real_mnist_loads_and_matches_its_checksums(mnist_dir):
    dataset = load_dataset(MNIST, mnist_dir, val_size=5000)
    assert (len(dataset.train), len(dataset.val), len(dataset.test)) == (55000, 5000, 10000)
    assert np.bincount(dataset.test.labels.numpy()).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_every_registered_data_source_is_a_dataset_option_and_each_entry_locates_and_loads(fake_data, tmp_path):
    """--dataset accepts exactly the registry's names; an entry's locate and load are the whole way from settings to
    a Dataset (here MNIST's on generated IDX files and the folder source on a few PNGs)."""
    from PIL import Image

    from latentsweep.config import build_config
    from latentsweep.data import SOURCES, load_data

    assert DATASET_NAMES == tuple(SOURCES) == ("mnist", "fashion-mnist", "cifar10", "folder")
    for name in DATASET_NAMES:
        assert build_config({"dataset": name}).data.dataset == name
    with pytest.raises(ConfigError, match="--dataset: unknown data set 'svhn'; choose from mnist, fashion-mnist"):
        build_config({"dataset": "svhn"})
    dataset, folder = load_data(build_config({"data_dir": str(fake_data), "verify_data": False, "val_size": 50}).data)
    assert (dataset.name, folder, len(dataset.test)) == ("mnist", fake_data, 120)
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    for i in range(14):
        Image.fromarray(np.full((6, 5), 18 * i, np.uint8)).save(pictures / f"{i:02d}.png")
    dataset, _ = load_data(build_config({"dataset": "folder", "data_dir": str(pictures), "val_size": 2}).data)
    assert (dataset.name, dataset.image_shape, dataset.labelled, len(dataset.test)) == ("folder", (1, 6, 5), False, 2)


def test_validation_and_training_subsets_need_one_image_of_every_class(fake_data):
    """The classes are the data set's (ten here), not a fixed ten: a subset smaller than the class count is refused."""
    with pytest.raises(DataError, match=r"--val-size: 5 images cannot hold one of each of the 10 classes"):
        load_dataset(MNIST, fake_data, val_size=5, verify=False)
    with pytest.raises(DataError, match=r"--train-subset: 9 images cannot hold one of each of the 10 classes"):
        load_dataset(MNIST, fake_data, val_size=50, train_subset=9, verify=False)
    assert len(load_dataset(MNIST, fake_data, val_size=10, train_subset=10, verify=False).train) == 10
