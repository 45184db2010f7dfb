"""End to end: the real command on small subsets of a generated IDX data set and of real MNIST, and the
bad-input battery."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import SMALL_EVAL, SMALL_RUN, cli, expected_answers, generated_only, write_fake_dataset
from latentsweep.cli import main

RECONSTRUCTION_METRICS = {"mse", "psnr", "ssim", "neg_elbo", "reconstruction", "kl"}

FIGURES = ["loss_curves.png", "overall_vs_latent.png", "psnr_by_seed.png", "mse_by_class.png", "psnr_by_class.png", "ssim_by_class.png",
           "reconstructions.png", "samples.png", "generation_vs_latent.png", "class_histogram.png", "rate_distortion.png",
           "kl_per_dimension.png", "latent_2d.png", "interpolations.png", "traversals.png", "psnr_refinement.png",
           "dimension_vs_psnr.png"]
MODEL_FILES = ["config.json", "history.csv", "metrics.json", "per_image.csv", "images.npz", "analysis.npz", "best.pt",
               "last.pt", "DONE"]
def test_run_writes_every_report_file(study):
    out, result = study
    for name in ["config.json", "results.csv", "results.json", "summary.json", "study.log", "report.md", "report.html"]:
        assert (out / name).is_file(), name
    for name in FIGURES:
        assert (out / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    for model in ("conv_beta1_latent002_seed0", "conv_beta1_latent004_seed0"):
        for name in MODEL_FILES:
            assert (out / "models" / model / name).is_file(), f"{model}/{name}"
    assert "Combined selection (reconstruction and generation): latent size" in result.stdout
    assert "Traceback" not in result.stderr


def test_results_table_is_tidy_and_complete(study, idx_data):
    out, _ = study
    with (out / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["architecture", "beta", "latent_dim", "seed", "protocol", "class", "n", "metric", "mean", "ci_low", "ci_high"]
    reconstruction = [r for r in rows if r["metric"] in RECONSTRUCTION_METRICS and r["protocol"] in ("representative", "test_set")]
    assert len(reconstruction) == 2 * 2 * 11 * 6  # latent sizes x protocols x (10 digits + all) x metrics
    test_all = [r for r in reconstruction if r["protocol"] == "test_set" and r["class"] == "all"]
    assert {r["n"] for r in test_all} == {str(idx_data.test_images)}
    assert {r["n"] for r in rows if r["protocol"] == "representative" and r["class"] == "3"} == {"10"}
    for row in rows:
        if row["ci_low"]:
            assert float(row["ci_low"]) <= float(row["mean"]) <= float(row["ci_high"])
    # The data's intrinsic dimension: rows without axis values, for all test images and for each class
    data = [row for row in rows if row["latent_dim"] == ""]
    assert {(row["class"], row["metric"]) for row in data} == {
        (name, metric) for name in ["all", *map(str, range(10))]
        for metric in ("intrinsic_dimension_twonn", "intrinsic_dimension_mle")}
    assert {row["architecture"] for row in data} == {""} and {r["n"] for r in data if r["class"] == "all"} == {str(idx_data.test_images)}
    per_model = {}
    for row in rows:
        if row["latent_dim"]:
            per_model.setdefault(row["latent_dim"], set()).add((row["protocol"], row["metric"]))
    for pairs in per_model.values():
        for needed in [("prior_samples", "fd"), ("prior_samples", "kid"), ("prior_samples", "inception_score"),
                       ("prior_samples", "class_share"), ("prior_samples", "class_entropy_bits"),
                       ("prior_samples", "confident_share"), ("reconstructions", "fd"), ("likelihood", "iwae_nll"),
                       ("likelihood", "neg_elbo"), ("test_set", "active_units"), ("test_set", "code_dimension"),
                       ("test_set", "probe_accuracy")]:
            assert needed in pairs, needed
    assert json.loads((out / "results.json").read_text())[0]["metric"] in {"mse", "psnr", "ssim", "neg_elbo"}


def test_per_image_metrics_aggregate_to_the_table(study, idx_data):
    out, _ = study
    with (out / "models" / "conv_beta1_latent004_seed0" / "per_image.csv").open() as handle:
        per_image = list(csv.DictReader(handle))
    assert len(per_image) == idx_data.test_images
    sevens = [float(r["psnr"]) for r in per_image if r["label"] == "7"]
    table = json.loads((out / "results.json").read_text())
    row = next(r for r in table if r["latent_dim"] == 4 and r["protocol"] == "test_set" and r["class"] == "7" and r["metric"] == "psnr")
    assert row["mean"] == pytest.approx(sum(sevens) / len(sevens), rel=1e-9)


def test_report_shows_the_measured_numbers_and_embeds_every_figure(study):
    out, _ = study
    table = json.loads((out / "results.json").read_text())
    psnr = next(r for r in table if r["latent_dim"] == 2 and r["protocol"] == "test_set" and r["class"] == "all" and r["metric"] == "psnr")
    markdown = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    assert f"{psnr['mean']:.2f} [{psnr['ci_low']:.2f}, {psnr['ci_high']:.2f}]" in markdown
    assert f"{psnr['mean']:.2f} [{psnr['ci_low']:.2f}, {psnr['ci_high']:.2f}]" in html
    assert html.count("data:image/png;base64,") == len(FIGURES)
    assert 'src="figures/' not in html and "<img" in html and 'alt="' in html
    for name in FIGURES:
        assert f"(figures/{name})" in markdown
    execution = json.loads((out / "config.json").read_text())["execution"]
    assert f"trials ran {execution['description']}" in markdown  # e.g. 2 at a time, local worker processes, ...
    for phrase in ("Selection rule", "posterior mean", "first 10 test images", "Per-digit results", "training s",
                   "Combined selection", "Generation quality", "Likelihood", "IWAE", "K = 20", "Why it saturates",
                   "active units", "Representation quality", "linear probe", "paired t-test", "Wilcoxon",
                   "How sure is the answer?", "2,000 bootstrap replicates over test images only"):
        assert phrase in markdown, phrase


def test_generation_and_likelihood_numbers_are_sane(study, idx_data):
    out, _ = study
    table = json.loads((out / "results.json").read_text())

    def value(dim, protocol, metric, cls="all"):
        return next(r["mean"] for r in table if r["latent_dim"] == dim and r["protocol"] == protocol
                    and r["metric"] == metric and r["class"] == cls)

    for dim in (2, 4):
        assert value(dim, "likelihood", "iwae_nll") <= value(dim, "likelihood", "neg_elbo") + 1.0
        assert 1.0 <= value(dim, "prior_samples", "inception_score") <= 10.0
        assert 0 <= value(dim, "test_set", "active_units") <= dim
        assert sum(value(dim, "prior_samples", "class_share", str(d)) for d in range(10)) == pytest.approx(1.0)
        assert 0.1 < value(dim, "test_set", "probe_accuracy") <= 1.0
    metrics = json.loads((out / "models" / "conv_beta1_latent004_seed0" / "metrics.json").read_text())
    assert len(metrics["analysis"]["kl_per_dimension"]) == 4 and metrics["classifier"]["train_images"] == idx_data.train_images


def test_latent_views_store_each_test_image_with_its_own_label(study):
    out, _ = study
    model_dir = out / "models" / "conv_beta1_latent004_seed0"
    with (model_dir / "per_image.csv").open() as handle:
        per_image_labels = [int(row["label"]) for row in csv.DictReader(handle)]
    with np.load(model_dir / "analysis.npz") as arrays:
        assert arrays["pca_labels"].tolist() == per_image_labels
        assert np.issubdtype(arrays["tsne_labels"].dtype, np.integer) and len(arrays["tsne_labels"]) == len(arrays["tsne"])
        assert set(arrays["tsne_labels"].tolist()) == set(range(10))


def test_rerun_skips_finished_models_and_report_rerenders_from_files(study, idx_data):
    out, _ = study
    before = (out / "results.json").read_text()
    result = cli("run", "--data-dir", str(idx_data.folder), *idx_data.options, "--out", str(out), *SMALL_RUN)
    assert result.returncode == 0, result.stderr
    # The trials ran in worker processes, whose log lines go to each trial's trial.log.
    assert sum((folder / "trial.log").read_text().count("already done, skipping")
               for folder in (out / "models").iterdir()) == 2
    assert (out / "results.json").read_text() == before
    (out / "report.md").unlink()
    assert main(["report", str(out)]) == 0
    assert (out / "report.md").is_file()


def test_evaluate_reproduces_the_saved_metrics(study, idx_data):
    out, _ = study
    folder = out / "models" / "conv_beta1_latent002_seed0"
    saved = json.loads((folder / "metrics.json").read_text())["rows"]
    assert main(["evaluate", str(folder), "--data-dir", str(idx_data.folder)]) == 0
    assert json.loads((folder / "metrics.json").read_text())["rows"] == saved


def test_sample_and_reconstruct_write_pngs(study, idx_data, tmp_path):
    out, _ = study
    checkpoint = str(out / "models" / "conv_beta1_latent004_seed0" / "best.pt")
    assert main(["sample", checkpoint, "--out", str(tmp_path / "s.png"), "--num", "16"]) == 0
    assert main(["reconstruct", checkpoint, "--out", str(tmp_path / "r.png"), "--per-class", "2", "--data-dir", str(idx_data.folder),
                 *idx_data.options]) == 0
    for name in ("s.png", "r.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_likelihood_on_the_test_set_bounds_the_negative_elbo(study, idx_data, capsys):
    out, _ = study
    folder = out / "models" / "conv_beta1_latent004_seed0"
    assert main(["likelihood", str(folder), "--images", "60", "--samples", "20", "--data-dir", str(idx_data.folder)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "on the first 60 grey-level test images (latent size 4)" in lines[0]
    iwae, elbo = (float(line.split(": ")[2].split(" nats")[0]) for line in lines)
    assert "IWAE bound, K=20" in lines[0] and "negative ELBO" in lines[1]
    assert iwae <= elbo + 1.0  # a tighter bound, up to the one-sample ELBO's own noise
    assert main(["likelihood", str(folder), "--images", str(idx_data.test_images + 1)]) == 2
    assert f"the test set has {idx_data.test_images} images" in capsys.readouterr().err


@generated_only
def test_train_one_model_and_refuse_to_overwrite_without_resume(idx_data, tmp_path, capsys):
    args = ["train", "--data-dir", str(idx_data.folder), *idx_data.options, "--out", str(tmp_path / "one"), "--latent-dim", "3",
            "--train-subset", "200", "--val-size", "100", "--epochs", "1", *SMALL_EVAL]
    assert main(args) == 0
    assert "test PSNR" in capsys.readouterr().out
    assert main(args) == 2
    assert "already holds a checkpoint; pass --resume" in capsys.readouterr().err
    # The default cosine schedule's rates depend on the run's length: no continuing to more epochs.
    assert main(args + ["--resume", "--epochs", "2"]) == 2
    assert "the cosine schedule's rates depend on the run's length" in capsys.readouterr().err
    # A constant rate can be continued.
    constant = [*args[:args.index("--out") + 1], str(tmp_path / "constant"), *args[args.index("--out") + 2:],
                "--schedule", "constant"]
    assert main(constant) == 0
    assert main(constant + ["--resume", "--epochs", "2"]) == 0
    with (tmp_path / "constant" / "history.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 2


def test_a_changed_setting_cannot_reuse_a_study_folder(study, idx_data, capsys):
    out, _ = study
    assert main(["run", "--data-dir", str(idx_data.folder), *idx_data.options, "--out", str(out), *SMALL_RUN, "--epochs", "3"]) == 2
    assert "other settings (epochs 2 -> 3)" in capsys.readouterr().err


# --- Bad input: one line, a non-zero exit, never a traceback ----------------------------------

@pytest.fixture
def bad_inputs(tmp_path):
    fake = write_fake_dataset(tmp_path / "fake")
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "unknown.toml").write_text("latent_dims = [5]\nwarp_speed = 9\n")
    (tmp_path / "corrupt.pt").write_bytes(b"\x00" * 100)
    return tmp_path, fake


BAD_CASES = [
    (["run", "--data-dir", "{tmp}/nowhere"], "folder does not exist"),
    (["run", "--data-dir", "{tmp}/a_file"], "not a folder"),
    (["run", "--data-dir", "{tmp}"], "no mnist data; missing"),
    (["run", "--data-dir", "{fake}", "--out", "{tmp}/o"], "SHA-256 mismatch"),
    (["run", "--latent-dims", "0,5"], "--latent-dims: every latent size must be at least 1"),
    (["run", "--latent-dims", ""], "--latent-dims: needs at least one value"),
    (["run", "--epochs", "many"], "--epochs: 'many' is not an integer"),
    (["run", "--config", "{tmp}/unknown.toml"], "unknown key(s) warp_speed"),
    (["run", "--config", "{tmp}/missing.toml"], "config file not found"),
    (["run", "--data-dir", "{fake}", "--no-verify-data", "--out", "{tmp}/a_file"], "exists and is not a folder"),
    (["run", "--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["sample", "{tmp}/corrupt.pt", "--out", "{tmp}/s.png"], "not a readable checkpoint"),
    (["sample", "{tmp}/none.pt", "--out", "{tmp}/s.png"], "checkpoint not found"),
    (["sample", "{tmp}/corrupt.pt", "--out", "{tmp}/s.jpg"], "should end in .png"),
    (["report", "{tmp}"], "not a study folder"),
    (["evaluate", "{tmp}"], "not a run folder"),
    (["train", "--out", "{tmp}/t", "--latent-dim", "-2"], "--latent-dim: must be at least 1"),
]


@pytest.mark.parametrize("args, message", BAD_CASES, ids=[" ".join(a[:2]) + f" #{i}" for i, (a, _) in enumerate(BAD_CASES)])
def test_bad_input_gives_one_line_and_exit_2(bad_inputs, args, message, capsys, monkeypatch):
    tmp, fake = bad_inputs
    monkeypatch.delenv("LATENTSWEEP_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp)
    argv = [a.format(tmp=tmp, fake=fake) for a in args]
    try:
        code = main(argv)
    except SystemExit as exited:  # argparse's own usage errors exit from inside parse_args
        code = exited.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.slow  # a subprocess or several trainings
def test_the_installed_command_prints_no_traceback_on_bad_data(tmp_path):
    result = subprocess.run([sys.executable, "-m", "latentsweep", "run", "--data-dir", str(tmp_path / "missing")],
                            capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("latentsweep: error:") and "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()  # nothing created for a run that could not start


@pytest.mark.slow  # a subprocess or several trainings
def test_version_and_help():
    result = cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("latentsweep ")
    for command in ("run", "train", "evaluate", "report", "sample", "reconstruct", "likelihood", "export"):
        helped = cli(command, "--help")
        assert helped.returncode == 0 and "usage: latentsweep " + command in helped.stdout


# --- Known answers for FD, binarised mode, several seeds ------------------------------------

def test_fd_known_answers_on_test_images(idx_data):
    """Through the trained feature classifier: the test set against itself gives FD 0, two halves of
    it a small FD, and noise images a far larger one."""
    import numpy as np
    import torch

    from latentsweep.classifier import ClassifierConfig, load_or_train, predict
    from latentsweep.data import DATASETS, cache_root, load_dataset
    from latentsweep.metrics import frechet_distance

    dataset = load_dataset(DATASETS["mnist"], idx_data.folder, val_size=200, verify=idx_data.canonical)
    classifier, record = load_or_train(cache_root() / "classifiers", "mnist", dataset.full_train.images,
                                       dataset.full_train.labels, dataset.test.images, dataset.test.labels, 10,
                                       ClassifierConfig(epochs=1))
    assert record["test_accuracy"] > 0.95
    test_features = predict(classifier, dataset.test.images)[0].double().numpy()
    noise = torch.rand(5000, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    noise_features = predict(classifier, noise)[0].double().numpy()
    halves = frechet_distance(test_features[::2], test_features[1::2])
    assert frechet_distance(test_features, test_features) == pytest.approx(0.0, abs=1e-6)
    assert halves < 5.0
    assert frechet_distance(noise_features, test_features) > 50 * max(halves, 0.1)
    assert np.isfinite(halves)


@generated_only
def test_binarized_mode_runs_end_to_end_and_says_so(idx_data, tmp_path):
    out = tmp_path / "binary"
    assert main(["run", "--data-dir", str(idx_data.folder), *idx_data.options, "--out", str(out), "--binarize", *SMALL_RUN]) == 0
    report = (out / "report.md").read_text()
    assert "dynamically binarised MNIST" in report and "binarised test images" in report
    assert "86.76 nats" in report  # the literature reference appears only in binarised mode
    metrics = json.loads((out / "models" / "conv_beta1_latent002_seed0" / "metrics.json").read_text())
    assert metrics["binarized"] is True


@generated_only
def test_several_seeds_give_intervals_across_seeds(idx_data, tmp_path):
    out = tmp_path / "seeds"
    assert main(["run", "--data-dir", str(idx_data.folder), *idx_data.options, "--out", str(out), *SMALL_RUN, "--seeds", "0,1"]) == 0
    assert len(list((out / "models").iterdir())) == 4
    report = (out / "report.md").read_text()
    assert "95% Student-t interval across seeds" in report and "each averaged over 2 seeds" in report
    assert "Applied to each seed's models alone, the rule chooses latent size" in report and "of 2 seeds" in report
    assert "bootstrap replicates over training seeds and test images" in report and "Welch's t-test" in report
    rows = json.loads((out / "results.json").read_text())
    assert {row["seed"] for row in rows if row["latent_dim"] is not None} == {0, 1}
    # The views of one model (PCA, t-SNE, interpolations, traversals) are drawn for the first seed only.
    with np.load(out / "models" / "conv_beta1_latent002_seed0" / "analysis.npz") as first:
        assert {"tsne", "pca", "interpolations", "traversals"} <= set(first.files)
    with np.load(out / "models" / "conv_beta1_latent002_seed1" / "analysis.npz") as second:
        assert set(second.files) == {"kl_per_dimension"}
    parts = json.loads((out / "models" / "conv_beta1_latent002_seed1" / "timing.json").read_text())["eval_parts"]
    assert set(parts) == {"reconstruction", "generation", "likelihood", "latent_space"}


def test_export_of_the_selected_model_from_a_study(study, tmp_path, capsys):
    out, _ = study
    assert main(["export", str(out), "--out", str(tmp_path / "exported")]) == 0
    config = json.loads((tmp_path / "exported" / "config.json").read_text())
    (answer,) = expected_answers(json.loads((out / "results.json").read_text())).values()
    assert config["selected_by_study"] is True and config["latent_dim"] == answer
    assert (tmp_path / "exported" / "decoder.onnx").is_file()
    assert main(["export", str(out), "--out", str(tmp_path / "e2"), "--latent-dim", "3"]) == 2
    assert "no trained model for architecture conv, beta 1, latent dim 3, seed 0" in capsys.readouterr().err


FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not (FASHION_DIR / "t10k-labels-idx1-ubyte.gz").is_file(),
                    reason="Fashion-MNIST not installed: apt-get install dataset-fashion-mnist (.ci/run does)")
@pytest.mark.slow  # real Fashion-MNIST end to end
def test_fashion_mnist_end_to_end_uses_class_names(tmp_path):
    out = tmp_path / "fashion"
    assert main(["run", "--dataset", "fashion-mnist", "--data-dir", str(FASHION_DIR), "--out", str(out), *SMALL_RUN]) == 0
    report = (out / "report.md").read_text()
    assert "## Per-class results" in report and "| Ankle boot |" in report and "| T-shirt/top |" in report
    assert "easiest class is" in report and "Latent-size study on fashion-mnist" in report
    metrics = json.loads((out / "models" / "conv_beta1_latent002_seed0" / "metrics.json").read_text())
    assert metrics["dataset"] == "fashion-mnist" and metrics["classifier"]["key"].startswith("fashion-mnist-")
