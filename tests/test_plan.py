"""`run --dry-run`: the plan read from the study folder, and the time estimate's arithmetic."""

from __future__ import annotations

import re

import pytest

from conftest import TINIEST, tiny_options
from latentsweep.cli import main
from latentsweep.config import build_config
from latentsweep.data import DATASETS, load_dataset
from latentsweep.plan import (Rates, TrialPlan, estimate_seconds, format_seconds, parallel_seconds, plan_study,
                             torch_threads)
from latentsweep.layout import Trial

TINY = tiny_options(**TINIEST, epochs=3, threads=1)


def test_estimate_scales_measured_rates_by_the_work_left(fake_data):
    config = build_config({"data_dir": str(fake_data), "verify_data": False, "val_size": 50, "epochs": 4,
                           "iwae_images": 20, "iwae_samples": 10, "generation_samples": 100, "classifier_epochs": 2})
    dataset = load_dataset(DATASETS["mnist"], fake_data, val_size=50, verify=False)  # 250 train, 120 test, 300 full
    plans = [TrialPlan(Trial("conv", 1.0, 2, 0), "train", 4), TrialPlan(Trial("conv", 1.0, 3, 0), "resume", 1),
             TrialPlan(Trial("conv", 1.0, 4, 0), "re-evaluate", 0), TrialPlan(Trial("conv", 1.0, 5, 0), "skip", 0)]
    seconds = estimate_seconds(config, dataset, plans, Rates(train_images_per_second={"conv": 50.0},
                                                             eval_images_per_second={"conv": 10.0},
                                                             classifier_images_per_second=100.0))
    per_epoch = 250 / 50 + 50 / 10  # a training pass and the validation loss
    assert seconds["training"] == pytest.approx(5 * per_epoch)
    assert seconds["evaluation"] == pytest.approx(3 * (2 * 120 + 20 * 10 + 100) / 10)  # skip is not evaluated
    assert seconds["classifier"] == pytest.approx(2 * 300 / 100)
    cached = estimate_seconds(config, dataset, plans, Rates({"conv": 50.0}, {"conv": 10.0}, None))
    assert cached["classifier"] == 0


def test_format_seconds():
    assert format_seconds(42.4) == "42 s"
    assert format_seconds(1269) == "21 min 09 s"


def test_dry_run_plans_without_writing_and_then_sees_what_is_done(fake_data, tmp_path, capsys):
    out = tmp_path / "study"
    assert main(["run", "--data-dir", str(fake_data), "--out", str(out), *TINY, "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert not out.exists(), "a dry run must not write anything"
    assert "conv_beta1_latent002_seed0  train 3 epochs" in printed and "conv_beta1_latent003_seed0  train 3 epochs" in printed
    assert "Estimated time:" in printed and "images/s" in printed

    # After a real run with one more epoch wanted, both trials resume; a finished study is all skipped.
    assert main(["run", "--data-dir", str(fake_data), "--out", str(out), *TINY]) == 0
    capsys.readouterr()
    config = build_config({"out": str(out), "latent_dims": (2, 3), "seeds": (0,), "epochs": 3, "train_subset": 100, "val_size": 50,
                           "verify_data": False, "generation_samples": 100, "iwae_samples": 5, "iwae_images": 20,
                           "tsne_points": 50, "classifier_epochs": 1, "num_samples": 4})
    assert [plan.action for plan in plan_study(config)] == ["skip", "skip"]
    changed_evaluation = config.replace(iwae_samples=6)
    assert [plan.action for plan in plan_study(changed_evaluation)] == ["re-evaluate", "re-evaluate"]
    for trial in ("conv_beta1_latent002_seed0", "conv_beta1_latent003_seed0"):
        (out / "models" / trial / "DONE").unlink()
    more_epochs = config.replace(epochs=5)
    assert [(plan.action, plan.epochs_left) for plan in plan_study(more_epochs)] == [("resume", 2), ("resume", 2)]
    assert main(["run", "--data-dir", str(fake_data), "--out", str(out), *TINY, "--dry-run"]) == 0
    assert "conv_beta1_latent002_seed0  resume: 0 epochs left" in capsys.readouterr().out


@pytest.mark.slow  # a subprocess or several trainings
def test_dry_run_refuses_a_folder_trained_with_other_settings(fake_data, tmp_path, capsys):
    out = tmp_path / "study"
    assert main(["run", "--data-dir", str(fake_data), "--out", str(out), *TINY]) == 0
    capsys.readouterr()
    assert main(["run", "--data-dir", str(fake_data), "--out", str(out), *TINY, "--batch-size", "32", "--dry-run"]) == 2
    assert "holds a study made with other settings (batch_size 64 -> 32)" in capsys.readouterr().err


def test_dry_run_times_each_architecture_and_lists_every_trial(fake_data, tmp_path, capsys):
    out = tmp_path / "study"
    assert main(["run", "--data-dir", str(fake_data), "--out", str(out), *TINY, "--architecture", "conv,mlp",
                 "--betas", "1,4", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    for name in ("conv_beta1_latent002_seed0", "conv_beta4_latent003_seed0", "mlp_beta1_latent002_seed0",
                 "mlp_beta4_latent003_seed0"):
        assert re.search(rf"{name} +train 3 epochs", printed), name
    assert "conv training" in printed and "mlp training" in printed and "Estimated time:" in printed
    assert not out.exists()


def test_parallel_seconds_deals_tasks_to_the_first_free_worker():
    assert parallel_seconds([4, 4, 4, 4], workers=2) == 8
    assert parallel_seconds([5, 1, 1, 1], workers=2) == 5  # the short tasks all go to the other worker
    assert parallel_seconds([1, 1, 1, 5], workers=2) == 6  # a long task dealt last ends last
    assert parallel_seconds([3, 2, 1], workers=1) == 6
    assert parallel_seconds([3, 2], workers=8) == 3
    assert parallel_seconds([], workers=2) == 0


def test_torch_threads_restores_the_thread_count():
    import torch

    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_dry_run_with_a_local_dask_cluster_estimates_wall_time_at_a_workers_threads(fake_data, tmp_path, capsys,
                                                                                   monkeypatch):
    import os

    import torch

    import latentsweep.plan as plan

    timed_with_threads = []

    def fixed_rates(config, architecture, dataset, device):
        timed_with_threads.append(torch.get_num_threads())
        return 25.0, 10.0

    monkeypatch.setattr(plan, "trial_rates", fixed_rates)
    out = tmp_path / "study"
    assert TINY[-2:] == ["--threads", "1"]
    args = TINY[:-2]  # a worker's threads come from the machine's cores
    assert main(["run", "--data-dir", str(fake_data), "--out", str(out), *args, "--latent-dims", "2,3,4",
                 "--executor", "dask", "--workers", "2", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    threads = max(1, (os.cpu_count() or 1) // 2)
    assert timed_with_threads == [threads]
    # Each trial: 3 epochs of (100 / 25 + 50 / 10) s, then (2 * 120 + 20 * 5 + 100) / 10 s of evaluation;
    # three equal trials on two workers end after two of them.
    trial = 3 * (100 / 25 + 50 / 10) + (2 * 120 + 20 * 5 + 100) / 10
    assert f"Estimated time: {format_seconds(2 * trial)} on 2 local worker(s) with {threads} " \
           f"torch thread(s) each" in printed
    assert f"work summed: training {format_seconds(3 * 3 * 9)}" in printed
    assert not out.exists()
