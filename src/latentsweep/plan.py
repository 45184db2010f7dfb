"""What `latentsweep run` would do, and about how long it would take (`run --dry-run`).

The estimate is measured, not guessed: a few training steps of the largest model (with
--stack-sizes, of the stack of all the study's sizes, as model-images per second), a few
evaluation forward passes and, when the feature classifier is not cached yet, a few of its
training steps, all on this machine's device with the study's settings. Those rates are scaled
to the work left: the remaining epochs of each trial, and per model the forward passes its
evaluation makes (test set twice, the IWAE bound's images x samples, the prior samples).
t-SNE, the linear probe and file writing are not timed, so evaluation takes somewhat longer.

With `--executor dask` on a local cluster, the trials' rates are timed with one worker's torch
threads, and the wall time is the trials dealt out in order to the workers as each falls free, as
Dask does with equal-priority tasks. On a remote cluster (`--scheduler`), whose workers this
machine cannot see, the estimate stays the work summed.
"""

from __future__ import annotations

import contextlib
import heapq
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from latentsweep.classifier import ClassifierConfig, cache_key, train_classifier
from latentsweep.config import StudyConfig
from latentsweep.data import Dataset, cache_root
from latentsweep.errors import LatentsweepError
from latentsweep.model import ConvVAE, StackedConvVAE, VAEConfig
from latentsweep.storage import read_json
from latentsweep.sweep import (DONE_MARKER, Trial, check_same_training_settings, evaluation_settings,
                               load_study_data, plan_trials, setup_device, trial_dir)
from latentsweep.train import (LAST_CHECKPOINT, epoch_permutation, evaluate_loss, load_checkpoint,
                               make_noise_generator, train_epoch, train_stacked_epoch)

TIMED_STEPS = 40


@dataclass(frozen=True)
class TrialPlan:
    trial: Trial
    action: str  # "train", "resume", "re-evaluate" or "skip"
    epochs_left: int

    @property
    def evaluates(self) -> bool:
        return self.action != "skip"


@dataclass(frozen=True)
class ClusterEstimate:
    """The local Dask cluster `run --executor dask` would start, and the study's wall time on it."""
    workers: int
    threads: int  # torch threads per worker
    wall_seconds: float


@dataclass(frozen=True)
class Rates:
    train_images_per_second: float
    eval_images_per_second: float
    classifier_images_per_second: float | None  # None: the classifier is cached


def plan_study(config: StudyConfig) -> list[TrialPlan]:
    """What each trial needs, read from the study folder (nothing is written)."""
    plans = []
    for trial in plan_trials(config):
        folder = trial_dir(Path(config.out), trial)
        if (folder / DONE_MARKER).exists():
            saved = read_json(folder / "metrics.json").get("evaluation")
            plans.append(TrialPlan(trial, "skip" if saved == evaluation_settings(config) else "re-evaluate", 0))
        elif (folder / LAST_CHECKPOINT).exists():
            done = load_checkpoint(folder / LAST_CHECKPOINT)["epoch"]
            plans.append(TrialPlan(trial, "resume", max(0, config.epochs - done)))
        else:
            plans.append(TrialPlan(trial, "train", config.epochs))
    return plans


def classifier_cached(config: StudyConfig, dataset: Dataset) -> bool:
    key = cache_key(dataset.name, dataset.full_train.images, dataset.full_train.labels,
                    ClassifierConfig(epochs=config.classifier_epochs))
    return (cache_root() / "classifiers" / f"{key}.pt").is_file()


def measure_rates(config: StudyConfig, dataset: Dataset, device: torch.device, time_classifier: bool,
                  trial_threads: int | None = None) -> Rates:
    """Images per second of training, evaluation and (optionally) classifier training, timed here;
    the trials' rates with `trial_threads` torch threads when given (a Dask worker's share)."""
    with torch_threads(trial_threads or torch.get_num_threads()):
        train_rate, eval_rate = trial_rates(config, dataset, device)
    classifier_rate = None
    if time_classifier:  # the classifier trains in the submitting process, with its own threads
        subset = dataset.full_train.images[:1280].to(device), dataset.full_train.labels[:1280].to(device)
        classifier_rate = timed_rate(lambda: train_classifier(*subset, ClassifierConfig(epochs=1)), 1280, device)
    return Rates(train_rate, eval_rate, classifier_rate)


def trial_rates(config: StudyConfig, dataset: Dataset, device: torch.device) -> tuple[float, float]:
    """Training images per second (per model) and evaluation images per second, timed here."""
    images = dataset.train.images[: config.batch_size * (TIMED_STEPS + 2)].to(device)
    order = epoch_permutation(len(images), 0, 1)
    warm_up = config.batch_size * 2
    train_pass, models_per_pass = training_pass(config, images, device)
    train_pass(order[:warm_up])
    train_rate = models_per_pass * timed_rate(lambda: train_pass(order[warm_up:]), len(order) - warm_up, device)
    torch.manual_seed(0)
    model = ConvVAE(VAEConfig(latent_dim=max(config.latent_dims))).to(device)
    test = dataset.test.images[: 2 * config.eval_batch_size].to(device)
    evaluate_loss(model, test[: config.eval_batch_size], config.eval_batch_size, config.beta, seed=0)
    eval_rate = timed_rate(lambda: evaluate_loss(model, test, config.eval_batch_size, config.beta, seed=0),
                           len(test), device)
    return train_rate, eval_rate


def training_pass(config: StudyConfig, images: torch.Tensor, device: torch.device
                  ) -> tuple[Callable[[torch.Tensor], None], int]:
    """A training pass over images[selection] as the study trains (the largest model, or with
    --stack-sizes the stack of all its sizes), and how many models one pass trains."""
    torch.manual_seed(0)
    if config.stack_sizes and len(config.latent_dims) > 1:
        stack = StackedConvVAE([VAEConfig(latent_dim=latent_dim) for latent_dim in config.latent_dims]).to(device)
        stack_optimizer = torch.optim.Adam(stack.parameters(), lr=config.learning_rate)
        generators = [make_noise_generator(0, device) for _ in config.latent_dims]
        return (lambda selection: train_stacked_epoch(stack, stack_optimizer, images, selection, config.batch_size,
                                                      config.beta, generators, precision=config.precision),
                len(config.latent_dims))
    model = ConvVAE(VAEConfig(latent_dim=max(config.latent_dims))).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    generator = make_noise_generator(0, device)
    return (lambda selection: train_epoch(model, optimizer, images, selection, config.batch_size, config.beta,
                                          generator, precision=config.precision), 1)


def timed_rate(work, images: int, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    work()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return images / max(time.perf_counter() - started, 1e-9)


def trial_seconds(config: StudyConfig, dataset: Dataset, plan: TrialPlan, rates: Rates) -> dict[str, float]:
    """Seconds of training and evaluation one trial's planned work takes at `rates`."""
    per_epoch = (len(dataset.train) / rates.train_images_per_second
                 + len(dataset.val) / rates.eval_images_per_second)  # training pass + validation loss
    forward_passes = 2 * len(dataset.test) + config.iwae_images * config.iwae_samples + config.generation_samples
    return {"training": plan.epochs_left * per_epoch,
            "evaluation": forward_passes / rates.eval_images_per_second if plan.evaluates else 0.0}


def estimate_seconds(config: StudyConfig, dataset: Dataset, plans: list[TrialPlan], rates: Rates) -> dict[str, float]:
    """Seconds of training, evaluation and classifier training for the planned work, from `rates`."""
    per_trial = [trial_seconds(config, dataset, plan, rates) for plan in plans]
    evaluated = sum(plan.evaluates for plan in plans)
    classifier = 0.0
    if rates.classifier_images_per_second is not None and evaluated:
        classifier = config.classifier_epochs * len(dataset.full_train) / rates.classifier_images_per_second
    return {"training": sum(seconds["training"] for seconds in per_trial),
            "evaluation": sum(seconds["evaluation"] for seconds in per_trial),
            "classifier": classifier}


def parallel_seconds(task_seconds: list[float], workers: int) -> float:
    """When the last of the tasks ends if each, in order, goes to the first worker to fall free."""
    free_at = [0.0] * max(1, workers)
    for seconds in task_seconds:
        heapq.heappush(free_at, heapq.heappop(free_at) + seconds)
    return max(free_at)


@contextlib.contextmanager
def torch_threads(threads: int):
    """torch's intra-op thread count set to `threads` inside the block, restored after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def describe(config: StudyConfig, dataset: Dataset, data_dir: Path, device: torch.device, plans: list[TrialPlan],
             rates: Rates, seconds: dict[str, float], cluster: ClusterEstimate | None = None) -> list[str]:
    """The plan as lines of text for the terminal."""
    actions = {"train": "train {n} epochs", "resume": "resume: {n} epochs left", "re-evaluate": "re-evaluate (trained)",
               "skip": "done, skipped"}
    lines = [f"Plan for {config.out}: {dataset.name} from {data_dir}",
             f"  {len(dataset.train):,} training, {len(dataset.val):,} validation, {len(dataset.test):,} test images; "
             f"preset {config.preset}: {config.epochs} epochs, batch {config.batch_size}",
             f"  device {device}, {torch.get_num_threads()} torch threads, executor {config.executor}"]
    for plan in plans:
        lines.append(f"  {plan.trial.name:<18} {actions[plan.action].format(n=plan.epochs_left)}")
    lines.append(f"  feature classifier: {'cached' if rates.classifier_images_per_second is None else 'to train'}")
    parts = (f"training {format_seconds(seconds['training'])}, evaluation {format_seconds(seconds['evaluation'])}"
             + (f", classifier {format_seconds(seconds['classifier'])}" if seconds["classifier"] else ""))
    if cluster is None:
        lines.append(f"Estimated time: {format_seconds(sum(seconds.values()))} ({parts})")
    else:
        lines.append(f"Estimated time: {format_seconds(cluster.wall_seconds)} on a local Dask cluster of "
                     f"{cluster.workers} worker(s) with {cluster.threads} torch thread(s) each, trials in parallel "
                     f"(work summed: {parts})")
    lines.append(f"  from rates timed just now: training {rates.train_images_per_second:,.0f} images/s, "
                 f"evaluation {rates.eval_images_per_second:,.0f} images/s; t-SNE and the probe are not included")
    if config.stack_sizes:
        lines.append("  with --stack-sizes: each seed's sizes train together; the training rate is the stack's, "
                     "per model")
    if cluster is not None:
        lines.append("  rates timed with one worker's threads, alone; workers running at once may share memory "
                     "bandwidth and run somewhat slower")
    elif config.executor == "dask":
        lines.append("  with --executor dask on a remote cluster, trials run in parallel: wall time is about this "
                     "divided by the workers busy at once, at those workers' own speed")
    return lines


def format_seconds(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{rest} s"


def dry_run(config: StudyConfig) -> list[str]:
    """Plan and estimate without writing anything into the study folder."""
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise LatentsweepError(f"{out} (--out): exists and is not a folder")
    check_same_training_settings(out, config)
    device = setup_device(config)
    dataset, data_dir = load_study_data(config)
    plans = plan_study(config)
    local_cluster = config.executor == "dask" and config.scheduler is None
    workers = threads = None
    if local_cluster:
        from latentsweep.executor import local_workers, worker_config  # imports no Dask

        workers, threads = local_workers(config, len(plans)), worker_config(config, len(plans)).threads
    rates = measure_rates(config, dataset, device, not classifier_cached(config, dataset), trial_threads=threads)
    seconds = estimate_seconds(config, dataset, plans, rates)
    estimate = None
    if local_cluster:
        per_trial = [sum(trial_seconds(config, dataset, plan, rates).values()) for plan in plans]
        estimate = ClusterEstimate(workers, threads, seconds["classifier"] + parallel_seconds(per_trial, workers))
    return describe(config, dataset, data_dir, device, plans, rates, seconds, estimate)
