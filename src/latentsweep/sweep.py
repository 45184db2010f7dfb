"""The study: one model per (latent size, seed), each in its own folder, then the report.

Layout of a study folder:
  config.json              the study's settings and the environment it ran in
  study.log                the log of every run of the study in this folder
  models/latent005_seed0/  one folder per trial:
      config.json  history.csv  last.pt  best.pt  metrics.json  timing.json  per_image.csv  images.npz
      analysis.npz  DONE  (and trial.log when a Dask worker ran it)
  results.csv, results.json  the tidy table of every finished trial
  summary.json             wall time and status of each trial
  figures/, report.md, report.html   written by latentsweep.report from the files above only

A trial with a DONE marker is skipped when the study is run again; one without is resumed from
its last checkpoint. Settings that change what a model is cannot change within a folder.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentsweep import __version__
from latentsweep.config import StudyConfig
from latentsweep.data import (DATASETS, FOLDER_DATASET, LABELS_FILE, Dataset, cache_root, load_dataset,
                              load_image_folder, resolve_data_dir)
from latentsweep.errors import ConfigError, DataError, LatentsweepError, TrainingDiverged
from latentsweep.classifier import ClassifierConfig, load_or_train, predict
from latentsweep.evaluate import (PER_IMAGE_FIELDS, AnalysisSettings, Reference, binarize, evaluate_model,
                                  representative_indices)
from latentsweep.metrics import TIDY_FIELDS
from latentsweep.model import VAEConfig, count_parameters
from latentsweep.storage import atomic_savez, atomic_write_text, read_json, remove_temp_files, write_csv, write_json
from latentsweep.train import (BEST_CHECKPOINT, LAST_CHECKPOINT, TrainConfig, load_checkpoint, model_from_checkpoint,
                              resolve_device, train_model, train_stacked)

log = logging.getLogger(__name__)

DONE_MARKER = "DONE"
TIMING_FILE = "timing.json"  # wall-clock seconds, kept apart so metrics.json is reproducible to the byte
EVALUATION_VERSION = 3  # bump when evaluation changes, so finished models are re-evaluated
FAILED_MARKER = "FAILED"
TRIAL_LOG = "trial.log"  # written by a distributed executor's worker


@dataclass(frozen=True)
class Trial:
    latent_dim: int
    seed: int

    @property
    def name(self) -> str:
        return f"latent{self.latent_dim:03d}_seed{self.seed}"


def plan_trials(config: StudyConfig) -> list[Trial]:
    return [Trial(dim, seed) for dim in sorted(config.latent_dims) for seed in config.seeds]


def trial_dir(study_dir: Path, trial: Trial) -> Path:
    return study_dir / "models" / trial.name


def environment(device: torch.device) -> dict[str, Any]:
    return {
        "latentsweep": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine(),
    }


def prepare_study_dir(study_dir: Path, config: StudyConfig) -> None:
    """Create the folder, or check that an existing study there used the same training settings."""
    if study_dir.exists() and not study_dir.is_dir():
        raise ConfigError(f"{study_dir} (--out): exists and is not a folder")
    try:
        (study_dir / "models").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{study_dir} (--out): cannot create the folder ({exc.strerror or exc})") from None
    if not os.access(study_dir, os.W_OK):
        raise ConfigError(f"{study_dir} (--out): folder is not writable")
    check_same_training_settings(study_dir, config)


def check_same_training_settings(study_dir: Path, config: StudyConfig) -> None:
    """Refuse a folder whose study trained its models with other settings."""
    existing = study_dir / "config.json"
    if existing.exists():
        previous = read_json(existing).get("config", {})
        changed = [key for key in StudyConfig.TRAINING_KEYS if key in previous and previous[key] != getattr(config, key)]
        if changed:
            details = ", ".join(f"{key} {previous[key]!r} -> {getattr(config, key)!r}" for key in changed)
            raise ConfigError(f"{study_dir} (--out): holds a study made with other settings ({details}); "
                              "choose another --out folder")


def save_evaluation(folder: Path, evaluation, metrics: dict[str, Any]) -> None:
    columns = evaluation.per_image
    rows = ({field: columns[field][i].item() for field in PER_IMAGE_FIELDS} for i in range(len(columns["index"])))
    write_csv(folder / "per_image.csv", rows, PER_IMAGE_FIELDS)

    atomic_savez(folder / "images.npz", representatives=evaluation.representatives,
                 originals=evaluation.representative_originals,
                 reconstructions=evaluation.representative_reconstructions, samples=evaluation.samples)
    if evaluation.analysis is not None:
        atomic_savez(folder / "analysis.npz", **evaluation.analysis)
    write_json(folder / "metrics.json", metrics)


def evaluation_settings(config: StudyConfig) -> dict[str, Any]:
    return {"version": EVALUATION_VERSION, **{key: getattr(config, key) for key in StudyConfig.EVALUATION_KEYS}}


def build_reference(config: StudyConfig, dataset: Dataset, device: torch.device) -> Reference:
    """The feature classifier (cached or trained) and what it says of the test set, once per study."""
    classifier, record = load_or_train(
        cache_root() / "classifiers", dataset.name, dataset.full_train.images.to(device),
        dataset.full_train.labels.to(device), dataset.test.images.to(device), dataset.test.labels.to(device),
        ClassifierConfig(epochs=config.classifier_epochs))
    features, _ = predict(classifier, dataset.test.images.to(device))
    labels = dataset.test.labels.numpy()
    classes = len(dataset.class_names)
    return Reference(classifier=classifier, classifier_record=record, test_features=features.double().cpu().numpy(),
                     train_images=dataset.train.images, train_labels=dataset.train.labels.numpy(),
                     likelihood_indices=representative_indices(labels, max(1, config.iwae_images // classes), classes),
                     tsne_indices=representative_indices(labels, max(1, config.tsne_points // classes), classes))


def run_trial(trial: Trial, config: StudyConfig, dataset: Dataset, device: torch.device, folder: Path,
              reference: Reference | None, label: str = "") -> dict[str, Any]:
    """Train and evaluate one model in `folder`, or return the saved metrics of a finished one.

    An unfinished model in `folder` is resumed from its last checkpoint; a finished one whose
    evaluation settings differ from `config`'s is re-evaluated without retraining.
    """
    if (folder / DONE_MARKER).exists():
        saved = read_json(folder / "metrics.json")
        if saved.get("evaluation") == evaluation_settings(config):
            log.info("%s already done, skipping", trial.name)
            return {**saved, **read_timing(folder)}
        log.info("%s trained; re-evaluating with the current evaluation settings", trial.name)
        return evaluate_trial(folder, config, dataset, device, reference)
    model_config, train_config = prepare_trial_folder(trial, config, folder)
    tracker = tensorboard_log(trial, config, dataset)
    try:
        train_model(folder, model_config, train_config, dataset.train.images, dataset.val.images, device,
                    resume=True, extra_metadata={"dataset": dataset.name, "trial": trial.name},
                    progress_label=label or trial.name, on_epoch_end=tracker.epoch_end if tracker else None)
        metrics = evaluate_trial(folder, config, dataset, device, reference)
        if tracker is not None:
            tracker.finish({"latent_dim": trial.latent_dim, "seed": trial.seed, "epochs": config.epochs,
                            "batch_size": config.batch_size, "learning_rate": config.learning_rate,
                            "beta": config.beta, "binarize": config.binarize, "precision": config.precision},
                           metrics["rows"])
    finally:
        if tracker is not None:
            tracker.close()
    atomic_write_text(folder / DONE_MARKER, time.strftime("%Y-%m-%dT%H:%M:%S%z\n"))
    return metrics


def prepare_trial_folder(trial: Trial, config: StudyConfig, folder: Path) -> tuple[VAEConfig, TrainConfig]:
    """The trial's model and training configs, written to its folder's config.json before training."""
    folder.mkdir(parents=True, exist_ok=True)
    remove_temp_files(folder)
    (folder / FAILED_MARKER).unlink(missing_ok=True)
    model_config = VAEConfig(latent_dim=trial.latent_dim)
    train_config = TrainConfig(epochs=config.epochs, batch_size=config.batch_size, learning_rate=config.learning_rate,
                               beta=config.beta, seed=trial.seed, binarize=config.binarize,
                               precision=config.precision)
    write_json(folder / "config.json", {"latent_dim": trial.latent_dim, "seed": trial.seed,
                                        "model_config": dataclasses.asdict(model_config),
                                        "train_config": dataclasses.asdict(train_config), "study": config.to_dict()})
    return model_config, train_config


def tensorboard_log(trial: Trial, config: StudyConfig, dataset: Dataset):
    """The trial's TensorBoard log (tracking.TrialLog) with --tensorboard, else None."""
    if not config.tensorboard:
        return None
    from latentsweep.tracking import LOG_FOLDER, TrialLog

    return TrialLog(Path(config.out) / LOG_FOLDER / trial.name, dataset.val.images, trial.seed)


def train_stacked_trials(trials: list[Trial], config: StudyConfig, dataset: Dataset, device: torch.device,
                         label: str = "") -> dict[Trial, TrainingDiverged]:
    """Train the unfinished trials of one seed together (--stack-sizes); returns those that diverged.

    Each trial's folder ends as run_trial's training would leave it, so run_trial then only evaluates.
    """
    pending = [trial for trial in trials if not (trial_dir(Path(config.out), trial) / DONE_MARKER).exists()]
    if len(pending) < 2:
        return {}  # nothing to stack: run_trial trains a lone trial as usual
    folders = [trial_dir(Path(config.out), trial) for trial in pending]
    configs = [prepare_trial_folder(trial, config, folder) for trial, folder in zip(pending, folders)]
    trackers = [tensorboard_log(trial, config, dataset) for trial in pending] if config.tensorboard else []
    try:
        outcomes = train_stacked(folders, [model_config for model_config, _ in configs], configs[0][1],
                                 dataset.train.images, dataset.val.images, device,
                                 extra_metadata=[{"dataset": dataset.name, "trial": trial.name} for trial in pending],
                                 progress_label=label, on_epoch_end=[tracker.epoch_end for tracker in trackers] or None)
    finally:
        for tracker in trackers:
            tracker.close()
    return {trial: outcome for trial, outcome in zip(pending, outcomes) if isinstance(outcome, TrainingDiverged)}


def evaluate_trial(folder: Path, config: StudyConfig, dataset: Dataset, device: torch.device,
                   reference: Reference | None) -> dict[str, Any]:
    """Evaluate a run folder's best.pt on the test set and write metrics.json, per_image.csv, images.npz
    and, with a reference, analysis.npz."""
    best = load_checkpoint(folder / BEST_CHECKPOINT, map_location=device)
    last = load_checkpoint(folder / LAST_CHECKPOINT, map_location="cpu")
    model = model_from_checkpoint(best, folder / BEST_CHECKPOINT).to(device)
    latent_dim, seed = model.config.latent_dim, last["train_config"]["seed"]
    started = time.perf_counter()
    evaluation = evaluate_model(model, dataset.test.images, dataset.test.labels, latent_dim, seed,
                                per_class=config.representatives_per_class, num_samples=config.num_samples,
                                batch_size=config.eval_batch_size, reference=reference,
                                settings=AnalysisSettings(generation_samples=config.generation_samples,
                                                          iwae_samples=config.iwae_samples))
    metrics = {
        "status": "done",
        "latent_dim": latent_dim,
        "seed": seed,
        "dataset": dataset.name,
        "parameters": count_parameters(model),
        "epochs": last["epoch"],
        "best_epoch": best["epoch"],
        "train_images": len(dataset.train),
        "device": str(device),
        "binarized": config.binarize,
        "evaluation": evaluation_settings(config) if reference is not None else None,
        "analysis": evaluation.summary,
        # Only what the same command reproduces exactly: no wall-clock times, no cache state.
        "classifier": ({key: value for key, value in reference.classifier_record.items()
                        if key not in ("train_seconds", "cached")} if reference is not None else None),
        "rows": evaluation.rows,
    }
    save_evaluation(folder, evaluation, metrics)
    timing = {"train_seconds": sum(row["seconds"] for row in last["history"]),
              "eval_seconds": time.perf_counter() - started}
    write_json(folder / TIMING_FILE, timing)
    return {**metrics, **timing}


def read_timing(folder: Path) -> dict[str, float]:
    """timing.json's seconds; empty for folders from before it existed (their metrics.json holds them)."""
    path = folder / TIMING_FILE
    return read_json(path) if path.is_file() else {}


def collect_results(study_dir: Path, trials: list[Trial]) -> list[dict[str, Any]]:
    """The tidy rows of every finished trial, read back from their metrics.json files."""
    rows = []
    for trial in trials:
        path = trial_dir(study_dir, trial) / "metrics.json"
        if (trial_dir(study_dir, trial) / DONE_MARKER).exists():
            rows.extend(read_json(path)["rows"])
    return rows


def load_study_data(config: StudyConfig) -> tuple[Dataset, Path]:
    data_dir = locate_data(config)
    log.info("loading %s from %s", config.dataset, data_dir)
    if config.dataset == FOLDER_DATASET:
        dataset = load_image_folder(data_dir, val_size=config.val_size, train_subset=config.train_subset,
                                    split_seed=config.split_seed)
    else:
        dataset = load_dataset(DATASETS[config.dataset], data_dir, val_size=config.val_size,
                               train_subset=config.train_subset, split_seed=config.split_seed, verify=config.verify_data)
    log.info("%d training, %d validation, %d test images", len(dataset.train), len(dataset.val), len(dataset.test))
    return dataset, data_dir


def locate_data(config: StudyConfig) -> Path:
    """The data folder: --data-dir for a folder of images; for MNIST-style sets also the environment
    variable or the download cache (see data.resolve_data_dir)."""
    if config.dataset != FOLDER_DATASET:
        return resolve_data_dir(DATASETS[config.dataset], config.data_dir)
    if not config.data_dir:
        raise ConfigError(f"--dataset {FOLDER_DATASET}: needs --data-dir, the folder with {LABELS_FILE} and the PNGs")
    folder = Path(config.data_dir).expanduser()
    if not folder.is_dir():
        raise DataError(f"{folder} (--data-dir): folder does not exist")
    return folder


def prepare_evaluation(config: StudyConfig, dataset: Dataset, device: torch.device) -> Reference:
    """Build the study's reference from the grey images, then, in binarised mode, binarise the
    validation and test images once with fixed seeds, so every model and epoch is scored on the
    same binary images (training batches are re-drawn every time, see train.py)."""
    reference = build_reference(config, dataset, device)
    if config.binarize:
        dataset.val.images = binarize(dataset.val.images, config.split_seed + 1)
        dataset.test.images = binarize(dataset.test.images, config.split_seed + 2)
    return reference


def setup_device(config: StudyConfig) -> torch.device:
    device = resolve_device(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    log.info("device %s, %d CPU threads", device, torch.get_num_threads())
    return device


def attempt_trial(trial: Trial, config: StudyConfig, dataset: Dataset, device: torch.device,
                  reference: Reference, label: str = "") -> dict[str, Any]:
    """run_trial in the study's folder, turning a diverged model into a recorded failure.

    Returns the trial's status line for summary.json.
    """
    folder = trial_dir(Path(config.out), trial)
    try:
        metrics = run_trial(trial, config, dataset, device, folder, reference, label)
    except TrainingDiverged as exc:
        return record_failure(trial, folder, exc)
    return {"trial": trial.name, "status": "done", "train_seconds": metrics.get("train_seconds"),
            "eval_seconds": metrics.get("eval_seconds")}


def record_failure(trial: Trial, folder: Path, exc: TrainingDiverged) -> dict[str, Any]:
    """A diverged model as a recorded failure (metrics.json, FAILED marker, the report shows it): one
    diverged model must not cost the others. Returns the trial's status line."""
    log.error("%s failed: %s", trial.name, exc)
    write_json(folder / "metrics.json", {"status": "failed", "latent_dim": trial.latent_dim, "seed": trial.seed,
                                         "error": str(exc)})
    atomic_write_text(folder / FAILED_MARKER, str(exc) + "\n")
    return {"trial": trial.name, "status": "failed", "error": str(exc)}


def trial_task(trial: Trial, config: StudyConfig) -> dict[str, Any]:
    """One trial from nothing but its settings, for a worker process of a distributed executor.

    It loads the data and the evaluation reference itself (the feature classifier from the cache the
    study filled, or trained afresh, deterministically, where the worker cannot see that cache),
    because shipping 200 MB of images with every task would cost more than reading them.
    """
    folder = trial_dir(Path(config.out), trial)
    folder.mkdir(parents=True, exist_ok=True)
    with trial_log(folder / TRIAL_LOG):
        device = setup_device(config)
        dataset, _ = load_study_data(config)
        reference = prepare_evaluation(config, dataset, device)
        return attempt_trial(trial, config, dataset, device, reference)


def log_file_handler(path: Path) -> logging.FileHandler:
    """The format of study.log and trial.log: time, level, message."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    return handler


@contextmanager
def trial_log(path: Path):
    """latentsweep's log lines (epochs, evaluation) into `path` while a worker runs a trial: worker
    processes do not write the study's study.log, and their own logs only keep warnings."""
    handler = log_file_handler(path)
    package_log = logging.getLogger("latentsweep")
    level = package_log.level
    package_log.addHandler(handler)
    package_log.setLevel(logging.INFO)
    try:
        yield
    finally:
        package_log.removeHandler(handler)
        package_log.setLevel(level)
        handler.close()


def run_locally(trials: list[Trial], config: StudyConfig, dataset: Dataset, device: torch.device,
                reference: Reference) -> list[dict[str, Any]]:
    """The trials one after another in this process; with --stack-sizes, each seed's sizes are first
    trained together, then evaluated one by one. Returns their status lines in the order of `trials`."""
    statuses: dict[Trial, dict[str, Any]] = {}
    groups = [[trial for trial in trials if trial.seed == seed] for seed in config.seeds] if config.stack_sizes \
        else [[trial] for trial in trials]
    for group in groups:
        diverged = train_stacked_trials(group, config, dataset, device, f"seed {group[0].seed}") \
            if config.stack_sizes else {}
        for trial in group:
            number = trials.index(trial) + 1
            if trial in diverged:
                statuses[trial] = record_failure(trial, trial_dir(Path(config.out), trial), diverged[trial])
            else:
                statuses[trial] = attempt_trial(trial, config, dataset, device, reference,
                                                f"[{number}/{len(trials)}] latent {trial.latent_dim} seed {trial.seed}")
    return [statuses[trial] for trial in trials]


def run_study(config: StudyConfig) -> dict[str, Any]:
    """Train and evaluate every trial, write the results table, render the report."""
    from latentsweep.report import render_report  # report imports plotting; keep `sweep` light to import

    study_started = time.perf_counter()
    if config.tensorboard:
        from latentsweep.tracking import require_tensorboard

        require_tensorboard()
    study_dir = Path(config.out)
    prepare_study_dir(study_dir, config)
    remove_temp_files(study_dir)
    device = setup_device(config)
    dataset, data_dir = load_study_data(config)
    write_json(study_dir / "config.json", {"config": config.to_dict(), "data_source": str(data_dir),
                                           "class_names": list(dataset.class_names),
                                           "split_sizes": {"train": len(dataset.train), "val": len(dataset.val), "test": len(dataset.test)},
                                           "environment": environment(device)})
    reference = prepare_evaluation(config, dataset, device)  # trains and caches the classifier once
    trials = plan_trials(config)
    if config.executor == "dask":
        from latentsweep.executor import run_on_dask  # dask is an optional extra

        statuses = run_on_dask(trials, config)
    else:
        statuses = run_locally(trials, config, dataset, device, reference)
    rows = collect_results(study_dir, trials)
    if not rows:
        raise LatentsweepError(f"{study_dir}: no model finished training; see {study_dir / 'study.log'}")
    write_csv(study_dir / "results.csv", rows, TIDY_FIELDS)
    write_json(study_dir / "results.json", rows)
    write_json(study_dir / "summary.json", {"wall_seconds": time.perf_counter() - study_started,
                                            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "trials": statuses,
                                            "command": " ".join(sys.argv)})
    report_paths = render_report(study_dir)
    return {"study_dir": str(study_dir), "trials": statuses, "report": [str(p) for p in report_paths]}
