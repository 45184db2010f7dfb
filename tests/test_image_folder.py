"""The third data source: a folder of the user's own PNG or JPEG images, labelled in labels.csv."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import SMALL_EVAL, assert_trained_for
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
    assert read.shape == (6, 1, 28, 28) and np.array_equal(read[:, 0], images)
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
    (replace_csv("path,class\nimg/00000.png,a\n"), "missing column(s) file, label"),
    (replace_csv("file,label\n"), "lists no images"),
    (replace_csv("file,label\nimg/00000.png,\n"), "line 2: empty file or label"),
    (replace_csv("file,label\nimg/99999.png,a\n"), "img/99999.png (" ),
    (replace_csv("file,label,split\nimg/00000.png,a,validation\n"), "split 'validation' is not train or test"),
    (save("img/00001.png", Image.new("L", (32, 30))), "img/00001.png (" ),
    (save("img/00001.png", Image.new("L", (32, 30))), "32x30 pixels (width x height), but "),
    (save("img/00001.png", Image.new("RGB", (28, 28), (255, 0, 0))), "3 channel(s), but "),
    (save("img/00001.png", Image.new("L", (28, 28)), "GIF"), "not a PNG or JPEG file (found GIF)"),
    (save("img/00001.png", Image.new("RGBA", (28, 28), (9, 9, 9, 100))), "has transparent pixels (RGBA)"),
    (save("img/00001.png", Image.new("F", (28, 28)), "TIFF"), "not a PNG or JPEG file (found TIFF)"),
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
                 "--val-size", "30", "--epochs", "2", "--no-check-training", "--no-extend", *SMALL_EVAL, "--representatives-per-class", "5",
                 "--iwae-images", "30", "--tsne-points", "60"]) == 0
    info = json.loads((out / "config.json").read_text())
    assert info["class_names"] == ["one", "seven", "zero"]
    assert info["split_sizes"] == {"train": 330, "val": 30, "test": 60}
    with (out / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    psnr_classes = {r["class"] for r in rows if (r["protocol"], r["metric"]) == ("test_set", "psnr")}
    assert psnr_classes == {"one", "seven", "zero", "all"}  # the label text, as docs/data.md promises
    report = (out / "report.md").read_text()
    assert "| seven |" in report and "the easiest class is" in report
    assert (out / "figures" / "reconstructions.png").is_file()
    # The explorer page carries the folder's class names for its test images.
    assert '"class_names":["one","seven","zero"]' in (out / "explorer.html").read_text()
    assert main(["reconstruct", str(out / "models" / "conv_beta1_latent004_seed0" / "best.pt"), "--dataset", "folder",
                 "--data-dir", str(folder), "--per-class", "4", "--out", str(tmp_path / "recon.png")]) == 0


# --- Any size, grey or colour (issue 24) ---------------------------------------------------------

def write_images(folder: Path, images: list[Image.Image], image_format: str = "PNG") -> Path:
    """Images saved as they are (any mode and size), labelled a, b, a, b, ... in labels.csv."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = {"PNG": "png", "JPEG": "jpg"}[image_format]
    with (folder / "labels.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "label"])
        for i, image in enumerate(images):
            image.save(folder / f"{i:03d}.{suffix}", format=image_format)
            writer.writerow([f"{i:03d}.{suffix}", "ab"[i % 2]])
    return folder


def rgb(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def test_colour_and_odd_sizes_read_back_exactly_as_channels_first(tmp_path):
    pixels = [rgb(26, 30, seed) for seed in range(3)]  # 30 wide, 26 high
    read, labels, _ = read_image_folder(write_images(tmp_path / "rgb", [Image.fromarray(p) for p in pixels]))
    assert read.shape == (3, 3, 26, 30) and read.dtype == np.uint8 and labels == ["a", "b", "a"]
    assert np.array_equal(read, np.stack(pixels).transpose(0, 3, 1, 2))
    grey = np.random.default_rng(5).integers(0, 256, size=(2, 40, 40), dtype=np.uint8)
    read, _, _ = read_image_folder(write_images(tmp_path / "grey", [Image.fromarray(g) for g in grey]))
    assert read.shape == (2, 1, 40, 40) and np.array_equal(read[:, 0], grey)


def test_the_conversion_rules_for_palette_alpha_and_sixteen_bit_images(tmp_path):
    palette = Image.new("P", (4, 2))
    palette.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    palette.putpixel((1, 0), 1)
    opaque = Image.fromarray(np.dstack([rgb(2, 4, 1), np.full((2, 4), 255, np.uint8)]), mode="RGBA")
    deep = Image.fromarray(np.array([[0, 257, 32896, 65535]] * 2, dtype=np.uint16))  # 16-bit grey
    assert deep.mode.startswith("I")
    read = [read_image_folder(write_images(tmp_path / name, [image, image]))[0][0]
            for name, image in (("p", palette), ("rgba", opaque), ("deep", deep))]
    assert read[0].shape == (3, 2, 4) and read[0][:, 0, 1].tolist() == [200, 100, 50] and read[0][:, 0, 0].tolist() == [0, 0, 0]
    assert np.array_equal(read[1], rgb(2, 4, 1).transpose(2, 0, 1))  # opaque alpha dropped
    assert read[2].shape == (1, 2, 4) and read[2][0, 0].tolist() == [0, 1, 128, 255]  # value * 255 / 65535, rounded


def test_image_size_resizes_and_channels_convert_every_image(tmp_path):
    images = [Image.fromarray(rgb(32, 32, 0)), Image.fromarray(rgb(40, 24, 1)), Image.fromarray(rgb(28, 28, 2)).convert("L")]
    folder = write_images(tmp_path / "mixed", images)
    with pytest.raises(DataError, match=r"001.png .*24x40 pixels \(width x height\), but .*000.png is 32x32; pass --image-size"):
        read_image_folder(folder)
    read, _, _ = read_image_folder(folder, image_size=(20, 16), channels=3)
    assert read.shape == (3, 3, 20, 16)
    assert np.array_equal(read[2][0], read[2][1]) and np.array_equal(read[2][0], read[2][2])  # grey to RGB: copies
    grey, _, _ = read_image_folder(folder, image_size=(32, 32), channels=1)
    luma = np.asarray(Image.fromarray(rgb(32, 32, 0)).convert("L"))  # ITU-R 601-2, no resize at the same size
    assert grey.shape == (3, 1, 32, 32) and np.array_equal(grey[0, 0], luma)
    flat = np.full((32, 32, 3), 77, np.uint8)  # antialiased resizing keeps a flat image flat
    small, _, _ = read_image_folder(write_images(tmp_path / "flat", [Image.fromarray(flat)] * 2), image_size=(7, 9))
    assert small.shape == (2, 3, 7, 9) and np.all(small == 77)


def test_mixed_channels_are_refused_naming_the_first_that_differs(tmp_path):
    folder = write_images(tmp_path / "c", [Image.fromarray(rgb(8, 8, 0)).convert("L"), Image.fromarray(rgb(8, 8, 1))])
    with pytest.raises(DataError, match=r"001.png .*3 channel\(s\), but .*000.png has 1; pass --channels 1 or 3"):
        read_image_folder(folder)


def test_jpeg_reads_at_its_own_shape_or_converted_and_the_dry_run_plans_for_it(tmp_path, capsys):
    from latentsweep.config import build_config
    from latentsweep.data import load_data

    images = [Image.fromarray(rgb(32, 32, seed)) for seed in range(70)]
    folder = write_images(tmp_path / "jpeg", images, "JPEG")
    settings = {"dataset": "folder", "data_dir": str(folder), "val_size": 10}
    dataset, _ = load_data(build_config(settings).data)
    assert dataset.image_shape == (3, 32, 32) and len(dataset.test) == 10
    dataset, _ = load_data(build_config({**settings, "image_size": "28", "channels": "1"}).data)
    assert dataset.image_shape == (1, 28, 28) and tuple(dataset.test.images.shape[1:]) == (1, 28, 28)
    assert main(["run", "--dataset", "folder", "--data-dir", str(folder), "--out", str(tmp_path / "s"), "--dry-run",
                 "--val-size", "10", "--image-size", "24x20"]) == 0
    assert "test images of 20x24 RGB;" in capsys.readouterr().out  # width x height


@pytest.mark.parametrize("flags, message", [
    (["--image-size", "32x"], "--image-size: '32x' is not N or HxW"),
    (["--image-size", "1"], "each side must be between 2 and 4096"),
    (["--channels", "2"], "--channels: must be 1 (grey) or 3 (RGB), got 2"),
    (["--dataset", "mnist", "--channels", "1"], "--image-size and --channels: only used with --dataset folder"),
])
def test_bad_image_options_are_one_line_errors(tmp_path, capsys, flags, message):
    base = ["run", "--data-dir", str(tmp_path), "--out", str(tmp_path / "s"), "--dry-run"]
    assert main(base + (["--dataset", "folder"] if "--dataset" not in flags else []) + flags) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


# --- A folder without labels.csv ----------------------------------------------------------------

def test_without_labels_every_png_and_jpeg_under_the_folder_is_an_image_in_sorted_path_order(tmp_path):
    pixels = [rgb(6, 5, seed) for seed in range(3)] + [np.full((6, 5, 3), (200, 100, 50), np.uint8)]
    (tmp_path / "b" / "deeper").mkdir(parents=True)
    Image.fromarray(pixels[0]).save(tmp_path / "b" / "deeper" / "z.PNG")
    Image.fromarray(pixels[1]).save(tmp_path / "b" / "a.png")
    Image.fromarray(pixels[2]).save(tmp_path / "a.png")
    Image.fromarray(pixels[3]).save(tmp_path / "c.jpeg", quality=100)
    (tmp_path / "notes.txt").write_text("not an image")
    read, labels, splits = read_image_folder(tmp_path)
    assert labels is None and splits is None and read.shape == (4, 3, 6, 5)
    # a.png, b/a.png, b/deeper/z.PNG, c.jpeg
    assert [np.array_equal(read[i], pixels[p].transpose(2, 0, 1)) for i, p in enumerate((2, 1, 0))] == [True] * 3
    assert np.abs(read[3].astype(int) - pixels[3].transpose(2, 0, 1)).max() < 10  # JPEG: lossy, a flat colour nearly kept
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: no labels.csv and no PNG or JPEG images under it"):
        read_image_folder(tmp_path / "empty")


def test_without_labels_a_seeded_seventh_is_the_test_set_and_there_are_no_classes(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, size=(70, 8, 8), dtype=np.uint8)
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"{i:02d}.png")
    dataset = load_image_folder(tmp_path, val_size=6, split_seed=2)
    assert dataset.class_names == () and not dataset.labelled and dataset.image_shape == (1, 8, 8)
    assert (len(dataset.train), len(dataset.val), len(dataset.test)) == (54, 6, 10)
    assert set(dataset.test.labels.tolist()) == {0}
    again, other = load_image_folder(tmp_path, val_size=6, split_seed=2), load_image_folder(tmp_path, val_size=6, split_seed=3)
    assert torch.equal(dataset.test.images, again.test.images) and not torch.equal(dataset.test.images, other.test.images)


def read_rows(study: Path) -> list[dict]:
    with (study / "results.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_an_unlabelled_grey_40x40_study_has_no_classes_and_no_classifier_measures_and_says_why(unlabelled_study):
    rows = read_rows(unlabelled_study)
    assert {r["class"] for r in rows} == {"all"}
    measured = {r["metric"] for r in rows}
    assert {"psnr", "ssim", "iwae_nll", "active_units"} <= measured and not {"fd", "kid", "probe_accuracy"} & measured
    info = json.loads((unlabelled_study / "config.json").read_text())
    assert info["class_names"] == [] and info["image_shape"] == [1, 40, 40]
    report = (unlabelled_study / "report.md").read_text()
    assert report.count("The images have no labels (the folder has no labels.csv), so there are no per-class results") == 2
    assert "the reconstruction rule alone selects the latent size" in report and "easiest" not in report
    folder = unlabelled_study / "models" / "conv_beta1_latent002_seed0"
    assert_trained_for(folder, 2, (1, 40, 40))
    with np.load(folder / "images.npz") as arrays:
        assert arrays["originals"].shape == (2, 40, 40)  # the first representatives_per_class test images
    with np.load(folder / "analysis.npz") as arrays:
        assert arrays["interpolations"].shape[2:] == (40, 40) and len(arrays["interpolations"]) == 5


def test_a_colour_study_of_an_odd_size_keeps_colour_and_shape_from_file_to_figure(colour_study):
    folder = colour_study / "models" / "conv_beta1_latent003_seed0"
    assert_trained_for(folder, 3, (3, 26, 30))
    with np.load(folder / "images.npz") as arrays:
        originals, reconstructions = arrays["originals"], arrays["reconstructions"]
    assert originals.shape == (20, 26, 30, 3) and reconstructions.shape == (20, 26, 30, 3)
    # The stored PSNR of the representatives is the formula's on these very arrays (to float32 rounding).
    rows = [r for r in read_rows(colour_study) if (r["latent_dim"], r["protocol"], r["class"], r["metric"])
            == ("3", "representative", "all", "psnr")]
    mse = ((originals.astype(np.float64) - reconstructions) ** 2).reshape(20, -1).mean(1)
    assert float(rows[0]["mean"]) == pytest.approx(np.mean(10 * np.log10(1 / mse)), abs=1e-4)
    figure = np.asarray(Image.open(colour_study / "figures" / "reconstructions.png").convert("RGB")).astype(int)
    assert (np.abs(figure[..., 0] - figure[..., 2]) > 100).sum() > 100  # coloured pixels, not grey
    assert "(30x26 RGB images)" in (colour_study / "report.md").read_text()


def test_the_run_command_refuses_mixed_sizes_and_channels_in_one_line_and_converts_when_told(tmp_path, capsys):
    images = [Image.fromarray(rgb(20 + i % 3, 20, i)) if i % 5 else Image.fromarray(rgb(20, 20, i)).convert("L")
              for i in range(70)]
    folder = write_images(tmp_path / "mixed", images)
    base = ["run", "--dataset", "folder", "--data-dir", str(folder), "--out", str(tmp_path / "s"), "--dry-run",
            "--val-size", "10"]
    assert main(base) == 2
    err = capsys.readouterr().err
    assert "001.png" in err and "3 channel(s), but" in err and "000.png has 1; pass --channels" in err and err.count("\n") == 1
    assert main(base + ["--channels", "3"]) == 2
    err = capsys.readouterr().err
    assert "001.png" in err and "20x21 pixels (width x height), but" in err and err.count("\n") == 1
    assert main(base + ["--channels", "3", "--image-size", "16x18"]) == 0
    assert "test images of 18x16 RGB;" in capsys.readouterr().out


def test_one_model_trains_on_labelled_grey_40x40_images_with_per_class_and_generation_results(tmp_path, capsys):
    from synthetic_images import synthetic_images, write_image_folder

    images, labels = synthetic_images(140, 40, 40, 1, seed=4)
    folder = write_image_folder(tmp_path / "grey40", images, labels)
    out = tmp_path / "model"
    assert main(["train", "--dataset", "folder", "--data-dir", str(folder), "--latent-dim", "2", "--out", str(out),
                 "--val-size", "20", "--epochs", "1", *SMALL_EVAL, "--representatives-per-class", "1",
                 "--iwae-images", "10", "--tsne-points", "50"]) == 0
    assert_trained_for(out, 2, (1, 40, 40))
    rows = json.loads((out / "metrics.json").read_text())["rows"]
    psnr = {r["class"]: r["mean"] for r in rows if (r["protocol"], r["metric"]) == ("test_set", "psnr")}
    assert set(psnr) == {*map(str, range(10)), "all"}
    assert f"test PSNR dB {psnr['all']:.2f}" in capsys.readouterr().out
    assert {r["metric"] for r in rows if r["protocol"] == "prior_samples"} >= {"fd", "kid", "inception_score"}


def test_a_class_with_fewer_test_images_than_its_representatives_still_gets_its_report(tmp_path):
    """Found trying the preview on colour images: 300 labelled images leave about 4 test images a class, fewer than
    --representatives-per-class 10, and the report's reconstruction grid then failed with a traceback."""
    from conftest import IMAGE_STUDY
    from synthetic_images import synthetic_images, write_image_folder

    images, labels = synthetic_images(300, 9, 11, 3, seed=3)
    write_image_folder(tmp_path / "images", images, labels)
    out = tmp_path / "study"
    assert main(["-q", "run", "--dataset", "folder", "--data-dir", str(tmp_path / "images"), "--out", str(out),
                 *IMAGE_STUDY, "--representatives-per-class", "10"]) == 0
    with np.load(out / "models" / "conv_beta1_latent002_seed0" / "images.npz") as arrays:
        shown = len(arrays["representatives"])
    assert shown < 10 * len(set(labels.tolist()))  # some class had fewer than 10 test images
    assert (out / "figures" / "reconstructions.png").is_file() and (out / "report.md").is_file()
