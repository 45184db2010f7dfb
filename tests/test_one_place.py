"""Each idea in one place: a metric added through its registry entry alone reaches every layer that shows metrics."""

from __future__ import annotations

import csv
import re

import numpy as np
import pytest

from conftest import TINIEST, tiny_options, write_fake_dataset
from latentsweep import metrics
from latentsweep.cli import main

MADE_UP = metrics.Metric(
    "made_up_mae", "MAE (made up)", "mean absolute error (lower is better)", 3, "lower", metrics.RECONSTRUCTION_PROTOCOLS,
    score=lambda images, reconstructions, terms: (images - reconstructions).abs().flatten(1).mean(1),
    headline=len(metrics.headline_metrics()) + 1, by_class=True)


def table_header(report: str, first_cell: str) -> list[str]:
    """The header cells of every Markdown table in `report` whose first header cell is `first_cell`."""
    return [line for line in report.splitlines() if line.startswith(f"| {first_cell} |")]


def test_a_metric_added_to_the_registry_alone_reaches_results_report_and_summary(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(metrics.REGISTRY, MADE_UP.name, MADE_UP)
    data = write_fake_dataset(tmp_path / "data", train=200, test=60)
    out = tmp_path / "study"
    # One worker: the trials run in this process, where the registry holds the new entry.
    assert main(["run", "--data-dir", str(data), "--out", str(out), "--workers", "1",
                 *tiny_options(**TINIEST, epochs=1)]) == 0

    # results.csv: the new metric per class and overall, on both reconstruction protocols ...
    with (out / "results.csv").open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["metric"] == MADE_UP.name]
    assert {(row["protocol"], row["class"]) for row in rows} == {
        (protocol, name) for protocol in metrics.RECONSTRUCTION_PROTOCOLS for name in [*map(str, range(10)), "all"]}
    # ... and its whole-test-set mean is the mean of its per-image column, recomputed here from the images' own scores
    folder = out / "models" / "conv_beta1_latent002_seed0"
    with (folder / "per_image.csv").open(newline="") as handle:
        per_image = [float(row[MADE_UP.name]) for row in csv.DictReader(handle)]
    overall = next(row for row in rows if row["protocol"] == "test_set" and row["class"] == "all"
                   and row["latent_dim"] == "2")
    assert len(per_image) == 60 and float(overall["mean"]) == pytest.approx(np.mean(per_image), rel=1e-12)
    assert 0 < float(overall["mean"]) < 1

    # The report: a column of the headline table and of every per-class table, and a per-class figure.
    report = (out / "report.md").read_text()
    [headline] = table_header(report, "latent size")[:1]
    assert MADE_UP.label in headline
    per_class = table_header(report, "digit")
    assert per_class and all(f"{MADE_UP.label} (test)" in header and f"{MADE_UP.label} (repr.)" in header
                             for header in per_class if "(test)" in header)
    assert (out / "figures" / f"{MADE_UP.name}_by_class.png").is_file()

    # The command line's summary: a column with the registry's label and decimals.
    summary = capsys.readouterr().out
    assert MADE_UP.label in summary
    value_row = next(line for line in summary.splitlines() if re.match(r"\s+2\s", line))
    assert f"{float(overall['mean']):.{MADE_UP.digits}f}" in value_row.split()


def test_a_folder_labelled_with_words_is_reported_by_its_words_everywhere(tmp_path):
    """Classes are named by their label text in results.csv, the per-class tables and the sentences, and three
    classes are three (the shares of prior samples, the interpolation pairs), on non-square images."""
    import csv as csv_module

    from conftest import IMAGE_STUDY
    from synthetic_images import synthetic_images, write_image_folder

    words = ["circle", "square", "triangle"]
    images, labels = synthetic_images(120, 12, 20, 1, classes=3, seed=5)
    folder = write_image_folder(tmp_path / "shapes", images, None)
    with (folder / "labels.csv").open("w", newline="") as handle:
        writer = csv_module.writer(handle)
        writer.writerow(["file", "label"])
        writer.writerows((f"img/{i:05d}.png", words[label]) for i, label in enumerate(labels))
    out = tmp_path / "study"
    assert main(["-q", "run", "--dataset", "folder", "--data-dir", str(folder), "--out", str(out), "--workers", "1",
                 *IMAGE_STUDY]) == 0
    with (out / "results.csv").open(newline="") as handle:
        rows = list(csv_module.DictReader(handle))
    assert {row["class"] for row in rows if row["metric"] == "psnr"} == {*words, "all"}
    assert {row["class"] for row in rows if row["metric"] == "class_share"} == set(words)
    report = (out / "report.md").read_text()
    for word in words:
        assert f"| {word} |" in report  # a row of each per-class table
    assert "the easiest class is" in report
    with np.load(out / "models" / "conv_beta1_latent002_seed0" / "analysis.npz") as arrays:
        pairs = arrays["interpolation_pairs"]
    assert pairs.tolist() == [[0, 1], [1, 2], [2, 0]]  # each of the three with the one half-way round


MADE_UP_AXIS = '''    Axis("tag", "tags", ("a",), "tag{}", "{}", per_variant=True, section="training", value_type=str,
         help="a made-up axis: a label that changes nothing in the model"),
'''


@pytest.mark.slow  # a subprocess running a copy of the package
def test_an_axis_added_to_config_axes_alone_reaches_results_report_and_summary(tmp_path):
    """A copy of the package whose config.AXES has one entry more and no other change: its settings field, its
    trials, results.csv's column, the report's comparison and the command line's summary all follow."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import latentsweep

    package = tmp_path / "copy" / "latentsweep"
    shutil.copytree(Path(latentsweep.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__"))
    config_py = package / "config.py"
    source = config_py.read_text()
    marker = 'Axis("seed", "seeds"'
    assert source.count(marker) == 1
    config_py.write_text(source.replace("    " + marker, MADE_UP_AXIS + "    " + marker))
    data = write_fake_dataset(tmp_path / "data", train=200, test=60)
    out = tmp_path / "study"
    result = subprocess.run(
        [sys.executable, "-m", "latentsweep", "run", "--data-dir", str(data), "--out", str(out), "--workers", "1",
         "--tags", "a,b", *tiny_options(**TINIEST, epochs=1)],
        capture_output=True, text=True, env={**__import__("os").environ, "PYTHONPATH": str(package.parent)}, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(path.name for path in (out / "models").iterdir()) == sorted(
        f"conv_beta1_latent00{size}_tag{tag}_seed0" for tag in "ab" for size in (2, 3))
    with (out / "results.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert "tag" in rows[0] and {row["tag"] for row in rows if row["latent_dim"]} == {"a", "b"}
    report = (out / "report.md").read_text()
    assert "Comparison across architectures and betas and tags" in report
    assert "| architecture | beta | tag | selected latent size |" in report
    assert "architecture conv, beta 1, tag a" in result.stdout and "architecture conv, beta 1, tag b" in result.stdout
