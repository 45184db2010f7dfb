"""The third data source: a folder of the user's own 28x28 grey PNGs, labelled in labels.csv."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import SMALL_EVAL
from latentsweep.cli import main
from latentsweep.data import class_order, load_image_folder, read_idx, read_image_folder
from latentsweep.errors import DataError

WORDS = {0: "zero", 1: "one", 7: "seven"}


def write_png_folder(folder: Path, images: np.ndarray, labels: list[str], splits: list[str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "labels.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "label", *(["split"] if splits else [])])
        for i, (image, label) in enumerate(zip(images, labels)):
            name = f"img/{i:05d}.png"
            (folder / name).parent.mkdir(exist_ok=True)
            Image.fromarray(image, mode="L").save(folder / name)
            writer.writerow([name, label, *([splits[i]] if splits else [])])
    return folder


def toy_images(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(count, 28, 28), dtype=np.uint8)


def test_pixels_labels_and_splits_read_back_exactly(tmp_path):
    images = toy_images(6)
    write_png_folder(tmp_path, images, ["b", "a", "b", "a", "b", "a"], ["train", "train", "train", "train", "test", "test"])
    read, labels, splits = read_image_folder(tmp_path)
    assert np.array_equal(read, images)
    assert labels == ["b", "a", "b", "a", "b", "a"] and splits == ["train"] * 4 + ["test"] * 2


def test_class_order_is_numeric_for_numbers_and_alphabetical_otherwise():
    assert class_order(["10", "9", "2"]) == ("2", "9", "10")
    assert class_order(["dog", "cat", "10"]) == ("10", "cat", "dog")


def test_without_a_split_column_a_stratified_seventh_is_the_test_set(tmp_path):
    labels = ["cat"] * 70 + ["dog"] * 140
    write_png_folder(tmp_path, toy_images(210), labels)
    dataset = load_image_folder(tmp_path, val_size=21, split_seed=3)
    assert dataset.class_names == ("cat", "dog")
    assert len(dataset.test) == 30 and np.bincount(dataset.test.labels.numpy()).tolist() == [10, 20]
    assert len(dataset.train) + len(dataset.val) == 180 and len(dataset.full_train) == 180
    again = load_image_folder(tmp_path, val_size=21, split_seed=3)
    assert np.array_equal(dataset.test.images.numpy(), again.test.images.numpy())


def folder_with(tmp_path: Path, edit) -> Path:
    write_png_folder(tmp_path, toy_images(4), ["a", "b", "a", "b"], ["train", "train", "test", "test"])
    edit(tmp_path)
    return tmp_path


def replace_csv(text: str):
    return lambda folder: (folder / "labels.csv").write_text(text)


def save(name: str, image: Image.Image, image_format: str = "PNG"):
    return lambda folder: image.save(folder / name, format=image_format)


@pytest.mark.parametrize("edit, message", [
    (lambda folder: (folder / "labels.csv").unlink(), "no labels.csv (a CSV with columns file,label[,split])"),
    (replace_csv("path,class\nimg/00000.png,a\n"), "missing column(s) file, label"),
    (replace_csv("file,label\n"), "lists no images"),
    (replace_csv("file,label\nimg/00000.png,\n"), "line 2: empty file or label"),
    (replace_csv("file,label\nimg/99999.png,a\n"), "img/99999.png (" ),
    (replace_csv("file,label,split\nimg/00000.png,a,validation\n"), "split 'validation' is not train or test"),
    (save("img/00001.png", Image.new("L", (32, 32))), "expected a 28x28 image, found 32x32"),
    (save("img/00001.png", Image.new("RGB", (28, 28), (255, 0, 0))), "a colour image; latentsweep needs grey images"),
    (save("img/00001.png", Image.new("L", (28, 28)), "JPEG"), "not a PNG file (found JPEG)"),
    (lambda folder: (folder / "img" / "00001.png").write_bytes(b"not an image"), "not a readable image"),
    (replace_csv("file,label,split\nimg/00000.png,a,train\nimg/00001.png,b,train\nimg/00002.png,a,test\n"),
     "no test images of class(es) b"),
])
def test_bad_folders_are_one_line_errors_naming_the_file(tmp_path, edit, message):
    folder = folder_with(tmp_path, edit)
    with pytest.raises(DataError) as caught:
        load_image_folder(folder, val_size=1)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_cli_needs_a_data_dir_for_a_folder(tmp_path, capsys):
    assert main(["run", "--dataset", "folder", "--out", str(tmp_path / "s")]) == 2
    assert "--dataset folder: needs --data-dir" in capsys.readouterr().err


def test_study_on_a_folder_of_pngs_uses_the_folders_class_names(idx_data, tmp_path):
    """PNGs of an IDX data set's test images (generated, and real MNIST where present)."""
    images = read_idx(idx_data.folder / "t10k-images-idx3-ubyte.gz")
    digits = read_idx(idx_data.folder / "t10k-labels-idx1-ubyte.gz")
    chosen = np.concatenate([np.flatnonzero(digits == digit)[:140] for digit in WORDS])
    folder = write_png_folder(tmp_path / "pngs", images[chosen], [WORDS[int(d)] for d in digits[chosen]])
    out = tmp_path / "study"
    assert main(["-q", "run", "--dataset", "folder", "--data-dir", str(folder), "--out", str(out), "--latent-dims", "2,4", "--seeds", "0",
                 "--val-size", "30", "--epochs", "2", *SMALL_EVAL, "--representatives-per-class", "5",
                 "--iwae-images", "30", "--tsne-points", "60"]) == 0
    info = json.loads((out / "config.json").read_text())
    assert info["class_names"] == ["one", "seven", "zero"]
    assert info["split_sizes"] == {"train": 330, "val": 30, "test": 60}
    with (out / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    psnr_classes = {r["class"] for r in rows if (r["protocol"], r["metric"]) == ("test_set", "psnr")}
    assert psnr_classes == {"0", "1", "2", "all"}
    report = (out / "report.md").read_text()
    assert "| seven |" in report and "the easiest class is" in report
    assert (out / "figures" / "reconstructions.png").is_file()
    # The explorer page carries the folder's class names for its test images.
    assert '"class_names":["one","seven","zero"]' in (out / "explorer.html").read_text()
    assert main(["reconstruct", str(out / "models" / "conv_beta1_latent004_seed0" / "best.pt"), "--dataset", "folder",
                 "--data-dir", str(folder), "--per-class", "4", "--out", str(tmp_path / "recon.png")]) == 0
