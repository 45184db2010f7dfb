"""The preview (issue 32): an ordered study (--ordered, --preset preview) end to end on generated data, its rows,
folders, report and page; resuming it; --with-preview beside a study of independent models; the settings' rules."""

from __future__ import annotations

import csv
import json
import shutil
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_options, write_fake_dataset
from latentsweep.architectures import model_from_checkpoint
from latentsweep.cli import main
from latentsweep.config import build_config
from latentsweep.errors import ConfigError
from latentsweep.evaluate import per_image_scores
from latentsweep.explorer import page_data
from latentsweep.model import Prefix
from latentsweep.train import load_checkpoint

TOP = 4
SEEDS = (0, 1)


def preview_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["-q", "run", "--data-dir", str(data), "--no-verify-data", "--out", str(out),
            *tiny_options(latent_dims=str(TOP), seeds="0,1"), "--ordered", *extra]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_fake_dataset(tmp_path_factory.mktemp("data") / "fake", train=900, test=300)


@pytest.fixture(scope="module")
def preview(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("preview") / "study"
    assert main(preview_args(data, out)) == 0
    return out


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow  # the preview fixture: a real ordered study
def test_the_preview_measures_every_prefix_size_at_every_seed_and_trains_only_its_top(preview):
    rows = csv_rows(preview / "results.csv")
    overall = [row for row in rows if row["protocol"] == "test_set" and row["class"] == "all" and row["latent_dim"]]
    for metric in ("psnr", "mse", "ssim", "neg_elbo", "active_units"):
        assert sorted((int(row["latent_dim"]), int(row["seed"])) for row in overall if row["metric"] == metric) == \
            [(size, seed) for size in range(1, TOP + 1) for seed in SEEDS], metric
    # generation and likelihood are measured on the top alone, whose model it is
    measured = {int(row["latent_dim"]) for row in rows if row["metric"] in ("fd", "iwae_nll")}
    assert measured == {TOP}
    units = {int(row["latent_dim"]): float(row["mean"]) for row in overall if row["metric"] == "active_units"
             and row["seed"] == "0"}
    assert all(units[size] <= size for size in units)
    # one trained model per seed; every smaller size is a folder naming it, with no checkpoint of its own
    for seed in SEEDS:
        top = preview / "models" / f"conv_beta1_latent{TOP:03d}_seed{seed}"
        assert (top / "best.pt").is_file()
        assert load_checkpoint(top / "best.pt")["train_config"]["ordered"] is True
        for size in range(1, TOP):
            folder = preview / "models" / f"conv_beta1_latent{size:03d}_seed{seed}"
            assert json.loads((folder / "config.json").read_text())["prefix_of"] == top.name
            assert (folder / "DONE").is_file() and not list(folder.glob("*.pt"))


@pytest.mark.slow  # the preview fixture: a real ordered study
def test_a_prefixs_scores_are_its_models_first_units_decoded_with_zeros_after_them(preview, data):
    from latentsweep.data import load_data

    config = build_config({"data_dir": str(data), "verify_data": False, "train_subset": 500, "val_size": 200})
    test = load_data(config.data)[0].test.images
    checkpoint = preview / "models" / f"conv_beta1_latent{TOP:03d}_seed1" / "best.pt"
    model, _ = model_from_checkpoint(load_checkpoint(checkpoint), checkpoint)
    model.eval()
    with torch.no_grad():
        mean, _ = model.encode(test)
        decoded = torch.sigmoid(model.decode(torch.cat([mean[:, :2], torch.zeros(len(test), TOP - 2)], 1)))
    by_hand = (test - decoded).pow(2).flatten(1).mean(1).double().numpy()
    rows = csv_rows(preview / "models" / "conv_beta1_latent002_seed1" / "per_image.csv")
    written = np.array([float(row["mse"]) for row in sorted(rows, key=lambda row: int(row["index"]))])
    assert np.allclose(written, by_hand, rtol=1e-5, atol=1e-8)
    whole = per_image_scores(Prefix(model, TOP, TOP), test, 100, seed=1)["mse"]
    assert np.array_equal(whole, per_image_scores(model, test, 100, seed=1)["mse"])  # the whole code: the model


@pytest.mark.slow  # the preview fixture: a real ordered study
def test_the_preview_says_what_it_is_and_its_page_carries_one_network_per_seed_model(preview):
    report = (preview / "report.md").read_text()
    assert f"A preview: every latent size below {TOP} is the first units of one ordered model per seed" in report
    data = page_data(preview)
    variant, = data["variants"]
    assert [size["latent_dim"] for size in variant["sizes"]] == list(range(1, TOP + 1))
    assert set(variant["networks"]) == {size["network"] for size in variant["sizes"]} == {f"conv_beta1_latent{TOP:03d}_seed0"}
    network = variant["networks"][f"conv_beta1_latent{TOP:03d}_seed0"]
    assert network["code_size"] == TOP and network["encoder"][-1]["out"] == 2 * TOP
    assert [len(size["kl_per_dimension"]) for size in variant["sizes"]] == list(range(1, TOP + 1))


@pytest.mark.slow  # the preview fixture: a real ordered study
def test_a_preview_killed_while_evaluating_a_prefix_finishes_it_byte_identically(preview, data, tmp_path):
    copy = tmp_path / "study"
    shutil.copytree(preview, copy)
    folder = copy / "models" / "conv_beta1_latent003_seed0"
    (folder / "DONE").unlink()
    (folder / "per_image.csv").write_text("index,label\n0,")  # a write cut short
    (copy / "results.json").unlink()
    assert main(preview_args(data, copy)) == 0
    for name in ("results.json", "results.csv"):
        assert (copy / name).read_bytes() == (preview / name).read_bytes(), name
    assert (folder / "per_image.csv").read_bytes() == \
        (preview / "models" / "conv_beta1_latent003_seed0" / "per_image.csv").read_bytes()


@pytest.mark.slow
def test_a_preview_killed_while_its_model_trains_resumes_to_the_same_results(data, tmp_path):
    """SIGKILL halfway through writing the first ordered model's epoch-1 checkpoint (tests/fault_injection.py), then
    the same command: every row as the uninterrupted preview's, to the byte."""
    from fault_injection import command as faulty_command

    def args(out: Path) -> list[str]:  # in this process (where the fault is), one thread as a worker has
        return [arg for arg in preview_args(data, out, "--workers", "1", "--threads", "1") if arg != "-q"]

    assert main(["-q", *args(tmp_path / "straight")]) == 0
    out = tmp_path / "killed"
    killed = subprocess.run(faulty_command(1, "latentsweep", *args(out)), capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL
    assert not (out / "results.json").exists()
    assert main(["-q", *args(out)]) == 0
    for name in ("results.json", "results.csv"):
        assert (out / name).read_bytes() == (tmp_path / "straight" / name).read_bytes(), name


@pytest.mark.slow
def test_with_preview_sets_the_preview_beside_the_independent_models(data, tmp_path):
    out = tmp_path / "study"
    args = ["-q", "run", "--data-dir", str(data), "--no-verify-data", "--out", str(out),
            *tiny_options(latent_dims="2,4", seeds="0"), "--with-preview"]
    assert main(args) == 0
    preview_rows = csv_rows(out / "preview" / "results.csv")
    assert {int(row["latent_dim"]) for row in preview_rows if row["latent_dim"]} == {1, 2, 3, 4}
    assert json.loads((out / "preview" / "config.json").read_text())["config"]["training"]["ordered"] is True
    report = (out / "report.md").read_text()
    section = report.split("## The preview beside the independent models")[1].split("\n## ")[0]
    psnr = {(where, int(row["latent_dim"])): float(row["mean"])
            for where, rows in (("preview", preview_rows), ("own", csv_rows(out / "results.csv")))
            for row in rows if row["metric"] == "psnr" and row["protocol"] == "test_set" and row["class"] == "all"
            and row["latent_dim"]}
    for size in (2, 4):
        assert f"{size}: {psnr[('preview', size)] - psnr[('own', size)]:+.2f} dB" in section
    assert (out / "figures" / "preview_beside.png").is_file()
    assert json.loads((out / "summary.json").read_text())["preview_seconds"] > 0
    # the independent models' folders hold no prefix: the preview lives in its own folder
    assert sorted(folder.name for folder in (out / "models").iterdir()) == ["conv_beta1_latent002_seed0",
                                                                           "conv_beta1_latent004_seed0"]


def test_an_ordered_study_measures_every_size_up_to_its_top_and_refuses_what_cannot_be_a_prefix():
    preview = build_config({"preset": "preview"})
    assert preview.training.ordered and preview.model.latent_dims == tuple(range(1, 21))
    assert preview.training.seeds == (0, 1, 2) and not preview.selection.extend
    assert build_config({"ordered": True, "latent_dims": "6,3"}).model.latent_dims == (1, 2, 3, 4, 5, 6)
    assert not build_config({"ordered": True}).selection.extend  # the full preset's --extend, dropped
    with pytest.raises(ConfigError, match="--extend: not with --ordered"):
        build_config({"ordered": True, "extend": True})
    with pytest.raises(ConfigError, match="--with-preview: not with --ordered"):
        build_config({"preset": "preview", "with_preview": True})
    with pytest.raises(ValueError, match="1 to 4"):
        Prefix(torch.nn.Identity(), 5, 4)


def test_the_dry_run_says_which_sizes_are_prefixes(data, tmp_path, capsys):
    assert main(preview_args(data, tmp_path / "study", "--dry-run")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sum("a prefix of the largest size's ordered model: evaluate" in line for line in lines) == (TOP - 1) * len(SEEDS)
    assert sum(" train 2 epochs" in line for line in lines) == len(SEEDS)


@pytest.mark.slow  # the preview fixture: a real ordered study
def test_the_checks_judge_the_trained_models_and_a_failed_one_takes_its_prefixes_with_it(preview, tmp_path):
    from latentsweep.config import from_dict
    from latentsweep.layout import plan_trials, read_excluded
    from latentsweep.study import check_models

    copy = tmp_path / "study"
    shutil.copytree(preview, copy)
    config = from_dict(json.loads((copy / "config.json").read_text())["config"]).replace(out=str(copy),
                                                                                          check_training=True)
    # The tiny models trained two epochs on 500 images, so the constant image is set below them: every model passes.
    info = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**info, "constant_image_psnr_db": 0.0}))
    assert check_models(config, plan_trials(config)) == {}
    top = copy / "models" / f"conv_beta1_latent{TOP:03d}_seed1" / "metrics.json"
    metrics = json.loads(top.read_text())
    for row in metrics["rows"]:  # seed 1's model now no better than the constant image
        if row["metric"] == "psnr" and row["protocol"] == "test_set" and row["class"] == "all":
            row["mean"] = 0.1
    top.write_text(json.dumps(metrics))
    excluded = read_excluded(copy) if check_models(config, plan_trials(config)) else {}
    assert sorted(excluded) == [f"conv_beta1_latent{size:03d}_seed1" for size in range(1, TOP + 1)]
    assert excluded["conv_beta1_latent002_seed1"] == [f"a prefix of conv_beta1_latent{TOP:03d}_seed1, which failed to train"]


def test_the_dry_run_of_a_study_with_its_preview_plans_the_preview_first(data, tmp_path, capsys):
    out = tmp_path / "study"
    args = ["-q", "run", "--data-dir", str(data), "--no-verify-data", "--out", str(out),
            *tiny_options(latent_dims="2,4", seeds="0"), "--with-preview", "--dry-run"]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    plans = [index for index, line in enumerate(lines) if line.startswith("Plan for ")]
    assert lines[0] == "--with-preview: the preview first, then the study"
    assert [lines[index].split(":")[0] for index in plans] == [f"Plan for {out / 'preview'}", f"Plan for {out}"]
    assert sum("a prefix of the largest size's ordered model" in line for line in lines) == 3
    assert not out.exists()


@pytest.mark.slow  # the preview fixture: a real ordered study
def test_exporting_a_prefix_of_a_preview_is_one_line_naming_the_model_to_export(preview, tmp_path, capsys):
    assert main(["-q", "export", str(preview), "--latent-dim", "2", "--out", str(tmp_path / "export")]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and f"ordered model conv_beta1_latent{TOP:03d}_seed0" in error[0]
    assert f"--latent-dim {TOP}" in error[0] and not (tmp_path / "export").exists()
