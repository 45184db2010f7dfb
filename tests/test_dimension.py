"""The intrinsic dimension estimators on points of known dimension, the data set's rows and their cache,
the code dimension, and `latentsweep dimension`."""

import json
import math

import numpy as np
import pytest

from latentsweep.cli import main
from latentsweep.dimension import (ESTIMATE_METRICS, cached_dimension_rows, code_dimension, dimension_rows, estimate)
from latentsweep.metrics import REGISTRY, data_metrics

from conftest import write_fake_dataset


def embedded_gaussian(dimension: int, points: int = 4000, ambient: int = 784, seed: int = 0) -> np.ndarray:
    """A `dimension`-d standard Gaussian mapped linearly into `ambient` dimensions."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(points, dimension)) @ rng.normal(size=(dimension, ambient))


def test_twonn_and_mle_find_the_dimension_of_a_linearly_embedded_gaussian():
    points = embedded_gaussian(10)
    assert estimate(points, "twonn") == pytest.approx(10, abs=1)
    assert estimate(points, "mle") == pytest.approx(10, abs=1.5)  # MLE reads a Gaussian's tails somewhat low
    assert estimate(embedded_gaussian(3), "twonn") == pytest.approx(3, abs=0.5)
    with pytest.raises(ValueError, match="unknown estimator"):
        estimate(points, "pca")


def test_code_dimension_of_codes_that_span_two_of_five_axes():
    rng = np.random.default_rng(1)
    codes = np.zeros((3000, 5))
    codes[:, :2] = rng.normal(size=(3000, 2))  # three units unused, as inactive latent dimensions
    assert code_dimension(codes) == pytest.approx(2, abs=0.3)
    assert math.isnan(code_dimension(np.zeros((100, 5))))  # all codes equal: no dimension to measure


def test_rows_for_all_images_and_every_class_with_an_interval_around_the_estimate():
    labels = np.repeat(np.arange(3), 400)
    # class c lives on a (2 + 2c)-d Gaussian, so the classes' dimensions differ and rank 0 < 1 < 2
    images = np.concatenate([embedded_gaussian(2 + 2 * c, 400, 64, seed=c) for c in range(3)])
    images = (images - images.min()) / (images.max() - images.min())
    rows = dimension_rows(images, labels, ["a", "b", "c"], halves=4)
    # classes by their label text; every estimate is a metric of the images in the registry
    assert {(row["class"], row["metric"]) for row in rows} == {(c, m) for c in ("all", "a", "b", "c") for m in data_metrics()}
    assert set(ESTIMATE_METRICS.values()) == set(data_metrics()) and all(REGISTRY[m].of_data for m in data_metrics())
    twonn = {row["class"]: row for row in rows if row["metric"] == "intrinsic_dimension_twonn"}
    assert twonn["a"]["mean"] < twonn["b"]["mean"] < twonn["c"]["mean"]
    assert twonn["a"]["mean"] == pytest.approx(2, abs=0.5) and twonn["all"]["n"] == 1200 and twonn["b"]["n"] == 400
    assert all(row["ci_low"] < row["mean"] < row["ci_high"] for row in rows)


def test_the_rows_are_cached_per_data_content(tmp_path):
    images = embedded_gaussian(4, 300, 16)
    labels = np.repeat(np.arange(2), 150)
    first = cached_dimension_rows(tmp_path, "toy", images, labels, ["a", "b"])
    (cached,) = tmp_path.glob("toy-*.json")
    doctored = [{**row, "mean": 99.0} for row in first]
    cached.write_text(json.dumps(doctored))
    assert cached_dimension_rows(tmp_path, "toy", images, labels, ["a", "b"])[0]["mean"] == 99.0  # read, not recomputed
    other = cached_dimension_rows(tmp_path, "toy", images[::-1].copy(), labels, ["a", "b"])  # other content: its own file
    assert other[0]["mean"] != 99.0 and len(list(tmp_path.glob("toy-*.json"))) == 2
    cached.write_text("{ damaged")
    assert cached_dimension_rows(tmp_path, "toy", images, labels, ["a", "b"])[0]["mean"] == pytest.approx(first[0]["mean"])


def test_the_dimension_command_prints_the_table(tmp_path, capsys):
    data = write_fake_dataset(tmp_path / "data", train=100, test=600)
    assert main(["dimension", "--data-dir", str(data), "--no-verify-data"]) == 0
    printed = capsys.readouterr().out
    assert "Intrinsic dimension of the mnist test split (600 images" in printed
    lines = {line.split()[0]: line for line in printed.splitlines()[2:]}
    assert set(lines) == {"all", *map(str, range(10))}
    assert "600" in lines["all"] and "[" in lines["3"]


def test_the_dimension_command_names_a_folders_classes_by_their_words(tmp_path, capsys):
    """Rows name classes by their label text; the table once looked them up by index and left every word out."""
    import csv

    from synthetic_images import synthetic_images, write_image_folder

    images, labels = synthetic_images(700, 8, 8, 1, classes=2)
    folder = write_image_folder(tmp_path / "images", images, None)
    with (folder / "labels.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([("file", "label"), *((f"img/{i:05d}.png", ("circle", "square")[label])
                                                          for i, label in enumerate(labels))])
    assert main(["dimension", "--dataset", "folder", "--data-dir", str(folder)]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[2:]}
    assert set(lines) == {"all", "circle", "square"}
