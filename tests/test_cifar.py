"""CIFAR-10's binary version: small files written in the official format (tests/synthetic_images.py), read
extracted or from the archive, refused when damaged, downloaded and checked by MD5, and a real study on them."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from dataclasses import replace

import numpy as np
import pytest

from conftest import SMALL_EVAL, assert_trained_for
from latentsweep.cli import main
from latentsweep.data import CIFAR10, load_record_dataset, read_record_files, resolve_record_dir
from latentsweep.errors import DataError
from synthetic_images import CIFAR_FILES, write_cifar_folder

RECORDS = 60  # per file: 300 training and 60 test images


def test_records_read_back_exactly_extracted_or_from_the_archive(tmp_path):
    images, labels = write_cifar_folder(tmp_path / "files", RECORDS, seed=1)
    write_cifar_folder(tmp_path / "archive", RECORDS, seed=1, archive=True)
    for folder in (tmp_path / "files", tmp_path / "archive"):
        dataset = load_record_dataset(CIFAR10, folder, val_size=30, verify=False)
        assert dataset.image_shape == (3, 32, 32) and dataset.class_names[0] == "airplane"
        test = slice(5 * RECORDS, None)  # the test batch is written last
        assert np.array_equal(np.rint(dataset.test.images.numpy() * 255).astype(np.uint8), images[test])
        assert dataset.test.labels.tolist() == labels[test].tolist()
        assert len(dataset.full_train) == 5 * RECORDS and len(dataset.train) == 5 * RECORDS - 30
    # The record layout: label byte, then the red, green, blue planes, rows top to bottom.
    batch = (tmp_path / "files" / "cifar-10-batches-bin" / "data_batch_1.bin").read_bytes()
    first = read_record_files(tmp_path / "files", CIFAR10, verify=False)["data_batch_1.bin"][0][0]
    assert batch[0] == labels[0] and first[0, 0, 1] == batch[2] and first[2, 31, 31] == batch[3072]


def truncate(path, by):
    path.write_bytes(path.read_bytes()[:-by])


@pytest.mark.parametrize("damage, message", [
    (lambda f: truncate(f / "cifar-10-batches-bin" / "data_batch_3.bin", 100),
     "data_batch_3.bin: truncated or damaged: 184,280 bytes is not a whole number of 3,073-byte records"),
    (lambda f: (f / "cifar-10-batches-bin" / "test_batch.bin").write_bytes(b""), "test_batch.bin: empty file"),
    (lambda f: (f / "cifar-10-batches-bin" / "data_batch_2.bin").write_bytes(bytes([10]) + bytes(3072)),
     "data_batch_2.bin: record 0 has label 10, outside 0-9"),
])
def test_damaged_files_are_refused_naming_the_file(tmp_path, damage, message):
    write_cifar_folder(tmp_path, RECORDS)
    damage(tmp_path)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_record_dataset(CIFAR10, tmp_path, val_size=30, verify=False)


def test_a_truncated_archive_or_one_with_another_checksum_is_refused(tmp_path):
    write_cifar_folder(tmp_path, RECORDS, archive=True)
    archive = tmp_path / "cifar-10-binary.tar.gz"
    with pytest.raises(DataError, match=r"cifar-10-binary.tar.gz: MD5 [0-9a-f]{32} differs from the published "
                                        "c32a1d4ab5d03f1284b67883e8d87530"):
        load_record_dataset(CIFAR10, tmp_path, val_size=30, verify=True)
    truncate(archive, 5000)
    with pytest.raises(DataError, match="cifar-10-binary.tar.gz: not a readable tar.gz archive"):
        load_record_dataset(CIFAR10, tmp_path, val_size=30, verify=False)


def test_verification_wants_the_official_record_counts(tmp_path):
    write_cifar_folder(tmp_path, RECORDS)
    with pytest.raises(DataError, match="data_batch_1.bin: 60 records, the official file has 10,000; pass --no-verify-data"):
        load_record_dataset(CIFAR10, tmp_path, val_size=30, verify=True)


class Served:
    """What urllib.request.urlopen returns, for bytes held here."""

    def __init__(self, content: bytes) -> None:
        self.stream = io.BytesIO(content)

    def read(self) -> bytes:
        return self.stream.read()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None


def test_download_fills_the_cache_and_checks_the_published_md5(tmp_path, monkeypatch):
    write_cifar_folder(tmp_path / "served", RECORDS, archive=True)
    content = (tmp_path / "served" / "cifar-10-binary.tar.gz").read_bytes()
    calls = []

    def opener(url, timeout):
        calls.append(url)
        if "unreachable" in url:
            raise OSError("connection refused")
        return Served(content)

    monkeypatch.delenv("LATENTSWEEP_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    spec = replace(CIFAR10, urls=("http://unreachable.invalid/a.tar.gz", "http://mirror/a.tar.gz"),
                   md5=hashlib.md5(content).hexdigest(), records_per_file=RECORDS)
    folder = resolve_record_dir(spec, None, opener=opener)
    assert folder == tmp_path / "cache" / "latentsweep" / "datasets" / "cifar10" and len(calls) == 2
    assert (folder / "cifar-10-binary.tar.gz").read_bytes() == content
    assert len(load_record_dataset(spec, folder, val_size=30, verify=True).test) == RECORDS
    resolve_record_dir(spec, None, opener=opener)  # present: nothing fetched again
    assert len(calls) == 2
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "other"))
    with pytest.raises(DataError, match=r"could not download cifar10 \(.*connection refused.*checksum mismatch \(MD5 "
                                        r"[0-9a-f]{32}, published c32a1d4a.*offline\? put cifar-10-binary.tar.gz"):
        resolve_record_dir(replace(spec, md5=CIFAR10.md5), None, opener=opener)
    assert not list((tmp_path / "other").rglob("*.tar.gz"))


def test_a_named_folder_without_cifar_is_one_line_naming_what_is_expected(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["run", "--dataset", "cifar10", "--data-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "s"),
                 "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "(--data-dir): no cifar10 data; expected cifar-10-binary.tar.gz or the files of cifar-10-batches-bin/" in err
    assert err.count("\n") == 1


def test_a_study_on_cifar_format_records_runs_in_colour_end_to_end(tmp_path):
    write_cifar_folder(tmp_path / "data", RECORDS, seed=2)
    out = tmp_path / "study"
    assert main(["-q", "run", "--dataset", "cifar10", "--data-dir", str(tmp_path / "data"), "--no-verify-data",
                 "--out", str(out), "--latent-dims", "2,3", "--seeds", "0", "--val-size", "30", "--epochs", "1",
                 "--no-refine", "--no-check-training", "--no-extend", *SMALL_EVAL, "--representatives-per-class", "2", "--iwae-images", "20",
                 "--tsne-points", "50"]) == 0
    info = json.loads((out / "config.json").read_text())
    assert info["class_names"][:2] == ["airplane", "automobile"] and info["split_sizes"]["test"] == RECORDS
    folder = out / "models" / "conv_beta1_latent003_seed0"
    assert_trained_for(folder, 3, (3, 32, 32))
    with np.load(folder / "images.npz") as arrays:
        assert len(arrays["originals"]) == 20  # two per class
    report = (out / "report.md").read_text()
    assert "| airplane |" in report and "cifar10 (32x32 RGB images)" in report
    assert "encoder conv 4x4/2 (3->16) -> conv 4x4/2 (16->32) -> linear 2048->256" in report
    assert "For colour images that is not a likelihood of the data" in report
    accuracy = json.loads((folder / "metrics.json").read_text())["classifier"]["test_accuracy"]
    assert accuracy < 0.9 and f"the classifier recognises only {100 * accuracy:.1f}% of the test images" in report
