"""Running one trial: train its model into its folder (or resume it), evaluate it, record the outcome.

`trial_task` is what every executor runs (runner.py): it needs only the trial and the study's
settings, loads what it needs itself (the data and the evaluation reference, once per process),
and returns the trial's status line. A diverged model becomes a recorded failure, so one bad
trial does not cost the others.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from latentsweep import __version__
from latentsweep.architectures import ModelSpec, model_from_checkpoint
from latentsweep.classifier import ClassifierConfig, load_or_train, predict
from latentsweep.config import AXES, LEGACY_AXIS_VALUES, DataConfig, EvaluationConfig, StudyConfig
from latentsweep.data import Dataset, binarize_scored_images, cache_root, load_data
from latentsweep.errors import PrefixUnavailable, TrainingDiverged
from latentsweep.evaluate import (AnalysisSettings, Reference, active_units_row, evaluate_model, per_image_fields,
                                  representative_indices)
from latentsweep.kernels import use_fast_cpu_kernels
from latentsweep.layout import (ANALYSIS_FILE, CONFIG_FILE, DONE_MARKER, FAILED_MARKER, IMAGES_FILE, METRICS_FILE,
                                PER_IMAGE_FILE, PREFIX_OF_KEY, TIMING_FILE, TRIAL_LOG, Trial, is_done, model_folder,
                                ordered_model_of, read_timing, trial_dir)
from latentsweep.model import Prefix, count_parameters
from latentsweep.storage import atomic_savez, atomic_write_text, read_json, remove_temp_files, write_csv, write_json
from latentsweep.train import BEST_CHECKPOINT, LAST_CHECKPOINT, TrainConfig, load_checkpoint, resolve_device, train_model

log = logging.getLogger(__name__)

EVALUATION_VERSION = 4  # bump when evaluation changes, so finished models are re-evaluated


@dataclass
class StudyInputs:
    """What every trial of a study reads: the images, the evaluation reference, the device."""

    dataset: Dataset
    data_dir: Path
    reference: Reference
    device: torch.device


# ----------------------------------------------------------------------------------------
# Inputs, loaded once per process


def build_reference(evaluation: EvaluationConfig, dataset: Dataset, device: torch.device) -> Reference:
    """The feature classifier (cached or trained) and what it says of the test set, once per study; without
    labels there is no classifier to train, and the reference holds the test subsets alone."""
    classifier, record, features = None, None, None
    if dataset.labelled:
        classifier, record = load_or_train(
            cache_root() / "classifiers", dataset.name, dataset.full_train.images.to(device),
            dataset.full_train.labels.to(device), dataset.test.images.to(device), dataset.test.labels.to(device),
            len(dataset.class_names), ClassifierConfig(epochs=evaluation.classifier_epochs))
        features = predict(classifier, dataset.test.images.to(device))[0].double().cpu().numpy()
    labels = dataset.test.labels.numpy()
    classes = max(1, len(dataset.class_names))  # an unlabelled set's subsets: its first test images
    return Reference(class_names=dataset.class_names, classifier=classifier, classifier_record=record,
                     test_features=features, train_images=dataset.train.images, train_labels=dataset.train.labels.numpy(),
                     likelihood_indices=representative_indices(labels, max(1, evaluation.iwae_images // classes), classes),
                     tsne_indices=representative_indices(labels, max(1, evaluation.tsne_points // classes), classes),
                     interpolation_pairs=dataset.interpolation_pairs, traversed_class=dataset.traversed_class)


@functools.lru_cache(maxsize=1)
def load_inputs(data: DataConfig, evaluation: EvaluationConfig, device_name: str) -> StudyInputs:
    """The study's inputs, loaded once per process (a worker running several trials reads them once).

    The reference is built from the grey images; then, in binarised mode, the validation and test
    images are binarised once with fixed seeds, so every model and epoch is scored on the same binary
    images (training batches are re-drawn every time, see train.py).
    """
    device = resolve_device(device_name)
    dataset, data_dir = study_data(data)
    reference = build_reference(evaluation, dataset, device)
    binarize_scored_images(dataset, data)
    return StudyInputs(dataset, data_dir, reference, device)


@functools.lru_cache(maxsize=1)
def study_data(data: DataConfig) -> tuple[Dataset, Path]:
    """The study's images and their folder, read once per process (before the reference, whose classifier
    may take a minute to train, so a model that does not fit the images is refused first). load_inputs
    binarises this very dataset's scored images in binarised mode; doing so twice changes nothing."""
    return load_data(data)


def study_inputs(config: StudyConfig) -> StudyInputs:
    return load_inputs(config.data, config.evaluation, config.execution.device)


def set_threads(threads: int | None) -> None:
    """torch's threads, and numpy's BLAS and the OpenMP pools to the same count.

    Evaluation also computes with numpy and scikit-learn (KID's Gram matrices, the probe, t-SNE), whose
    last bits depend on their own thread counts. A Dask worker starts with those at 1 and this process
    at the core count, so without this a trial's metrics.json differed between executors in the 16th
    digit of KID's spread. With it, a trial's bytes depend on `threads` alone.
    """
    if threads:
        torch.set_num_threads(threads)
        threadpool_limits(threads)


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


# ----------------------------------------------------------------------------------------
# One trial


def trial_task(trial: Trial, config: StudyConfig, in_worker: bool = False) -> dict[str, Any]:
    """One trial from nothing but its settings: the unit every executor runs (runner.py).

    In a worker process (`in_worker`) the trial's log lines go to its folder's trial.log, since workers
    do not write the study's study.log, and the epoch progress bars stay off.
    """
    folder = trial_dir(config.out, trial)
    folder.mkdir(parents=True, exist_ok=True)
    with trial_log(folder / TRIAL_LOG) if in_worker else contextlib.nullcontext():
        set_threads(config.execution.threads)
        inputs = study_inputs(config)
        try:
            metrics = run_trial(trial, config, inputs, folder, trusted=config.model.architecture,
                                show_progress=not in_worker)
        except (TrainingDiverged, PrefixUnavailable) as exc:
            return record_failure(trial, folder, exc)
    return {"trial": trial.name, **trial.axes(), "status": "done", "train_seconds": metrics.get("train_seconds"),
            "eval_seconds": metrics.get("eval_seconds")}


def run_trial(trial: Trial, config: StudyConfig, inputs: StudyInputs, folder: Path, trusted: Iterable[str] = (),
              show_progress: bool = True) -> dict[str, Any]:
    """Train and evaluate one model in `folder`, or return the saved metrics of a finished one.

    An unfinished model in `folder` is resumed from its last checkpoint; a finished one whose
    evaluation settings differ from `config`'s is re-evaluated without retraining.
    """
    action = trial_action(folder, config, trial)
    if action == "skip":
        log.info("%s already done, skipping", trial.name)
        return {**read_json(folder / METRICS_FILE), **read_timing(folder)}
    if action == "re-evaluate":
        log.info("%s trained; re-evaluating with the current evaluation settings", trial.name)
        return evaluate_trial(folder, config, inputs, trusted)
    if action == "prefix":
        return evaluate_prefix_trial(trial, config, inputs, folder, trusted)
    dataset = inputs.dataset
    spec, train_config = prepare_trial_folder(trial, config, folder, dataset.image_shape)
    tracker = tensorboard_log(trial, config, dataset)
    try:
        train_model(folder, spec, train_config, dataset.train.images, dataset.val.images, inputs.device,
                    resume=True, extra_metadata={"dataset": dataset.name, "trial": trial.name},
                    progress_label=trial.label(), on_epoch_end=tracker.epoch_end if tracker else None,
                    show_progress=show_progress)
        metrics = evaluate_trial(folder, config, inputs, trusted)
        if tracker is not None:
            tracker.finish({**trial.axes(), **dataclasses.asdict(train_config)}, metrics["rows"])
    finally:
        if tracker is not None:
            tracker.close()
    atomic_write_text(folder / DONE_MARKER, time.strftime("%Y-%m-%dT%H:%M:%S%z\n"))
    return metrics


def trial_action(folder: Path, config: StudyConfig, trial: Trial) -> str:
    """What running `trial` in `folder` does: "skip" (finished and evaluated with `config`'s settings),
    "re-evaluate" (finished, other evaluation settings), "resume" (from its last checkpoint), "train", or for a
    prefix of an ordered model (layout.ordered_model_of) "prefix": evaluate it, training nothing.
    The runner (run_trial) and the dry run (plan.plan_study) both decide by this."""
    if is_done(folder):
        saved = read_json(folder / METRICS_FILE).get("evaluation")
        return "skip" if saved == evaluation_settings(config) else "re-evaluate"
    if ordered_model_of(config, trial) is not None:
        return "prefix"
    return "resume" if (folder / LAST_CHECKPOINT).exists() else "train"


def evaluate_prefix_trial(trial: Trial, config: StudyConfig, inputs: StudyInputs, folder: Path,
                          trusted: Iterable[str] = ()) -> dict[str, Any]:
    """Evaluate the first trial.latent_dim units of the ordered model it is a prefix of (layout.ordered_model_of),
    which must have finished training (study.py runs the tops first), as a size-k model, into `folder`."""
    source = ordered_model_of(config, trial)
    source_folder = trial_dir(config.out, source)
    if not is_done(source_folder):
        raise PrefixUnavailable(f"{trial.name} is a prefix of {source.name}, which did not finish training")
    folder.mkdir(parents=True, exist_ok=True)
    remove_temp_files(folder)
    (folder / FAILED_MARKER).unlink(missing_ok=True)
    write_json(folder / CONFIG_FILE, {**trial.axes(), PREFIX_OF_KEY: source.name, "study": config.to_dict()})
    metrics = evaluate_trial(folder, config, inputs, trusted)
    atomic_write_text(folder / DONE_MARKER, time.strftime("%Y-%m-%dT%H:%M:%S%z\n"))
    return metrics


def train_config_for(trial: Trial, config: StudyConfig) -> TrainConfig:
    """The trainer's settings: the training section's recipe (every TrainConfig field it has), the trial's beta
    and seed, and the data's binarisation."""
    recipe = {f.name: getattr(config.training, f.name) for f in dataclasses.fields(TrainConfig)
              if hasattr(config.training, f.name)}
    return TrainConfig(**recipe, beta=trial.beta, seed=trial.seed, binarize=config.data.binarize)


def prepare_trial_folder(trial: Trial, config: StudyConfig, folder: Path,
                         image_shape: tuple[int, int, int]) -> tuple[ModelSpec, TrainConfig]:
    """The trial's model spec and training config, written to its folder's config.json before training."""
    folder.mkdir(parents=True, exist_ok=True)
    remove_temp_files(folder)
    (folder / FAILED_MARKER).unlink(missing_ok=True)
    spec = ModelSpec(trial.architecture, trial.latent_dim, image_shape)
    train_config = train_config_for(trial, config)
    write_json(folder / CONFIG_FILE, {**trial.axes(), **spec.checkpoint_fields(),
                                        "train_config": dataclasses.asdict(train_config), "study": config.to_dict()})
    return spec, train_config


def tensorboard_log(trial: Trial, config: StudyConfig, dataset: Dataset):
    """The trial's TensorBoard log (tracking.TrialLog) with --tensorboard, else None."""
    if not config.execution.tensorboard:
        return None
    from latentsweep.tracking import LOG_FOLDER, TrialLog

    return TrialLog(config.out / LOG_FOLDER / trial.name, dataset.val.images, trial.seed, trial.latent_dim)


def evaluation_settings(config: StudyConfig) -> dict[str, Any]:
    return {"version": EVALUATION_VERSION, **config.measurement_settings()}


def evaluate_trial(folder: Path, config: StudyConfig, inputs: StudyInputs, trusted: Iterable[str] = ()) -> dict[str, Any]:
    """Evaluate a run folder's best.pt on the test set and write metrics.json, per_image.csv, images.npz
    and analysis.npz. Likelihoods are the plain VAE's (beta 1) whatever beta trained the model.

    A prefix of an ordered model (its config.json names the trial, PREFIX_OF_KEY) is that model's best.pt read as a
    size-k model (model.Prefix): its reconstructions (MSE, PSNR, SSIM, negative ELBO, on both protocols), images and
    active units; the generation, likelihood and latent-space analyses are its top's alone, so that a prefix's
    evaluation takes seconds (4.4 s for MNIST's 10,000 test images on one core: docs/performance.md)."""
    device, dataset, reference, evaluation = inputs.device, inputs.dataset, inputs.reference, config.evaluation
    source = model_folder(folder)
    prefix_of = source.name if source != folder else None
    best = load_checkpoint(source / BEST_CHECKPOINT, map_location=device)
    last = load_checkpoint(source / LAST_CHECKPOINT, map_location="cpu")
    model, spec = model_from_checkpoint(best, source / BEST_CHECKPOINT, trusted)
    model = use_fast_cpu_kernels(model).to(device)
    axes = trial_axes(folder)
    seed = axes["seed"]
    if prefix_of:
        model = Prefix(model, axes["latent_dim"], spec.latent_dim)
    started = time.perf_counter()
    result = evaluate_model(model, dataset.test.images, dataset.test.labels, axes["latent_dim"], seed, axes,
                            class_names=dataset.class_names,
                            per_class=evaluation.representatives_per_class, num_samples=evaluation.num_samples,
                            batch_size=evaluation.eval_batch_size, reference=None if prefix_of else reference,
                            settings=AnalysisSettings(generation_samples=evaluation.generation_samples,
                                                      iwae_samples=evaluation.iwae_samples,
                                                      describe=seed == config.training.seeds[0]))
    if prefix_of:
        result.rows.append({**axes, **active_units_row(model, dataset.test.images.to(device))})
    metrics = {
        "status": "done",
        **axes,
        **({PREFIX_OF_KEY: prefix_of} if prefix_of else {}),
        "dataset": dataset.name,
        "parameters": count_parameters(model),
        "epochs": last["epoch"],
        "best_epoch": best["epoch"],
        "train_images": len(dataset.train),
        "device": str(device),
        "binarized": config.data.binarize,
        "evaluation": evaluation_settings(config),
        "analysis": result.summary,
        # Only what the same command reproduces exactly: no wall-clock times, no cache state.
        "classifier": None if reference.classifier_record is None or prefix_of else
                      {key: value for key, value in reference.classifier_record.items() if key not in ("train_seconds", "cached")},
        "rows": result.rows,
    }
    save_evaluation(folder, result, metrics)
    timing = {"train_seconds": 0.0 if prefix_of else sum(row["seconds"] for row in last["history"]),
              "eval_seconds": time.perf_counter() - started, "eval_parts": result.seconds}
    write_json(folder / TIMING_FILE, timing)
    return {**metrics, **timing}


def trial_axes(folder: Path) -> dict[str, Any]:
    """The trial's value of every axis (config.AXES, in order), as prepare_trial_folder recorded them in the run
    folder's config.json; an axis the file predates takes its legacy value."""
    recorded = read_json(folder / CONFIG_FILE)
    return {axis.name: recorded.get(axis.name, LEGACY_AXIS_VALUES[axis.name]) for axis in AXES}


def save_evaluation(folder: Path, evaluation, metrics: dict[str, Any]) -> None:
    columns = evaluation.per_image
    fields = per_image_fields()
    rows = ({field: columns[field][i].item() for field in fields} for i in range(len(columns["index"])))
    write_csv(folder / PER_IMAGE_FILE, rows, fields)
    atomic_savez(folder / IMAGES_FILE, representatives=evaluation.representatives,
                 originals=evaluation.representative_originals,
                 reconstructions=evaluation.representative_reconstructions, samples=evaluation.samples)
    if evaluation.analysis is not None:
        atomic_savez(folder / ANALYSIS_FILE, **evaluation.analysis)
    write_json(folder / METRICS_FILE, metrics)


def record_failure(trial: Trial, folder: Path, exc: Exception) -> dict[str, Any]:
    """A failed trial as a record (metrics.json, FAILED marker; the report shows it). Returns its status line."""
    log.error("%s failed: %s", trial.name, exc)
    write_json(folder / METRICS_FILE, {"status": "failed", **trial.axes(), "error": str(exc)})
    atomic_write_text(folder / FAILED_MARKER, str(exc) + "\n")
    return {"trial": trial.name, **trial.axes(), "status": "failed", "error": str(exc)}


def log_file_handler(path: Path) -> logging.FileHandler:
    """The format of study.log and trial.log: time, level, message."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    return handler


@contextlib.contextmanager
def trial_log(path: Path):
    """latentsweep's log lines (epochs, evaluation) into `path` while a worker runs a trial."""
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
