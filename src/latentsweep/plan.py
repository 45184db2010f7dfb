"""What `latentsweep run` would do, and about how long it would take (`run --dry-run`).

The estimate is measured, not guessed: a few training steps of the largest model of each
architecture (on the one training loop, train.train_epoch), a few evaluation forward passes and, when the feature classifier is not cached yet, a few of its
training steps, all on this machine's device with the study's settings. Those rates are scaled
to the work left: the remaining epochs of each trial, and per model the forward passes its
evaluation makes (test set twice, the IWAE bound's images x samples, the prior samples).
t-SNE, the linear probe and file writing are not timed, so evaluation takes somewhat longer.
Training is timed on a model's first steps; later steps run slower (about 0.7 of that rate from the
second epoch on a 2-core CPU, benchmarks/bench_dry_run.py), so the estimate is a lower bound.

With several local workers (processes or a local Dask cluster, runner.choose_arrangement), the
trials' rates are timed with one worker's torch threads, and the wall time is the trials dealt out
in order to the workers as each falls free, as both executors do with equal-priority tasks. On a
remote cluster (`--scheduler`), whose workers this machine cannot see, the estimate stays the work
summed.
"""

from __future__ import annotations

import contextlib
import heapq
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from latentsweep.architectures import ModelSpec
from latentsweep.classifier import ClassifierConfig, cache_key, train_classifier
from latentsweep.config import StudyConfig
from latentsweep.data import Dataset, cache_root, describe_shape, load_data
from latentsweep.dimension import placement_sentence
from latentsweep.errors import LatentsweepError
from latentsweep.kernels import use_fast_cpu_kernels
from latentsweep.layout import Trial, check_same_training_settings, plan_trials, preview_config, trial_dir
from latentsweep.runner import Arrangement, choose_arrangement, probes_per_round
from latentsweep.selection import widest_gap, worst_case_probes
from latentsweep.train import (LAST_CHECKPOINT, epoch_permutation, evaluate_loss, load_checkpoint,
                               make_noise_generator, resolve_device, train_epoch)
from latentsweep.trial import set_threads, trial_action

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
    """The local workers `run` would start (processes or a local Dask cluster), and the study's wall time on them."""
    workers: int
    threads: int  # torch threads per worker
    wall_seconds: float


@dataclass(frozen=True)
class Rates:
    train_images_per_second: dict[str, float]  # per architecture
    eval_images_per_second: dict[str, float]
    classifier_images_per_second: float | None  # None: the classifier is cached


def plan_study(config: StudyConfig) -> list[TrialPlan]:
    """What each trial needs, read from the study folder (nothing is written)."""
    plans = []
    for trial in plan_trials(config):
        folder = trial_dir(config.out, trial)
        action = trial_action(folder, config, trial)
        epochs_left = {"skip": 0, "re-evaluate": 0, "prefix": 0, "train": config.training.epochs}.get(action)
        if action == "resume":
            epochs_left = max(0, config.training.epochs - load_checkpoint(folder / LAST_CHECKPOINT)["epoch"])
        plans.append(TrialPlan(trial, action, epochs_left))
    return plans


def classifier_cached(config: StudyConfig, dataset: Dataset) -> bool:
    key = cache_key(dataset.name, dataset.full_train.images, dataset.full_train.labels,
                    ClassifierConfig(epochs=config.evaluation.classifier_epochs))
    return (cache_root() / "classifiers" / f"{key}.pt").is_file()


def measure_rates(config: StudyConfig, dataset: Dataset, device: torch.device, time_classifier: bool,
                  trial_threads: int | None = None) -> Rates:
    """Images per second of training and evaluation for each architecture, and (optionally) of classifier
    training, timed here; the trials' rates with `trial_threads` torch threads when given (a worker's share)."""
    train_rates, eval_rates = {}, {}
    with torch_threads(trial_threads or torch.get_num_threads()):
        for architecture in config.model.architecture:
            train_rates[architecture], eval_rates[architecture] = trial_rates(config, architecture, dataset, device)
    classifier_rate = None
    if time_classifier:  # the classifier trains in the submitting process, with its own threads
        subset = dataset.full_train.images[:1280].to(device), dataset.full_train.labels[:1280].to(device)
        classifier_rate = timed_rate(lambda: train_classifier(*subset, ClassifierConfig(epochs=1),
                                                               max(len(dataset.class_names), 1)), 1280, device)
    return Rates(train_rates, eval_rates, classifier_rate)


def trial_rates(config: StudyConfig, architecture: str, dataset: Dataset, device: torch.device) -> tuple[float, float]:
    """Training and evaluation images per second of the largest model of `architecture`, timed here."""
    batch_size, eval_batch_size = config.training.batch_size, config.evaluation.eval_batch_size
    images = dataset.train.images[: batch_size * (TIMED_STEPS + 2)].to(device)
    order = epoch_permutation(len(images), 0, 1)
    warm_up = batch_size * 2
    model = use_fast_cpu_kernels(ModelSpec(architecture, max(config.model.latent_dims), dataset.image_shape).build(seed=0)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.training.learning_rate)
    generator = make_noise_generator(0, device)
    beta = max(config.training.betas)

    def train_pass(selection: torch.Tensor) -> None:
        train_epoch(model, optimizer, images, selection, batch_size, beta, generator, precision=config.training.precision)

    train_pass(order[:warm_up])
    train_rate = timed_rate(lambda: train_pass(order[warm_up:]), len(order) - warm_up, device)
    test = dataset.test.images[: 2 * eval_batch_size].to(device)
    evaluate_loss(model, test[:eval_batch_size], eval_batch_size, beta, seed=0)
    eval_rate = timed_rate(lambda: evaluate_loss(model, test, eval_batch_size, beta, seed=0), len(test), device)
    return train_rate, eval_rate


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
    train_rate = rates.train_images_per_second[plan.trial.architecture]
    eval_rate = rates.eval_images_per_second[plan.trial.architecture]
    per_epoch = len(dataset.train) / train_rate + len(dataset.val) / eval_rate  # training pass + validation loss
    evaluation = config.evaluation
    forward_passes = 2 * len(dataset.test)  # a prefix's evaluation: its reconstructions alone (trial.evaluate_trial)
    if plan.action != "prefix":
        forward_passes += evaluation.iwae_images * evaluation.iwae_samples + evaluation.generation_samples
    return {"training": plan.epochs_left * per_epoch,
            "evaluation": forward_passes / eval_rate if plan.evaluates else 0.0}


def estimate_seconds(config: StudyConfig, dataset: Dataset, plans: list[TrialPlan], rates: Rates) -> dict[str, float]:
    """Seconds of training, evaluation and classifier training for the planned work, from `rates`."""
    per_trial = [trial_seconds(config, dataset, plan, rates) for plan in plans]
    evaluated = sum(plan.evaluates for plan in plans)
    classifier = 0.0
    if rates.classifier_images_per_second is not None and evaluated:
        classifier = config.evaluation.classifier_epochs * len(dataset.full_train) / rates.classifier_images_per_second
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
             rates: Rates, seconds: dict[str, float], arrangement: Arrangement,
             cluster: ClusterEstimate | None = None) -> list[str]:
    """The plan as lines of text for the terminal."""
    actions = {"train": "train {n} epochs", "resume": "resume: {n} epochs left", "re-evaluate": "re-evaluate (trained)",
               "skip": "done, skipped", "prefix": "a prefix of the largest size's ordered model: evaluate"}
    lines = [f"Plan for {config.out}: {dataset.name} from {data_dir}",
             f"  {len(dataset.train):,} training, {len(dataset.val):,} validation, {len(dataset.test):,} test images "
             f"of {describe_shape(dataset.image_shape)}; "
             f"preset {config.preset}: {config.training.epochs} epochs, batch {config.training.batch_size}",
             f"  device {device}; trials {arrangement.describe()}"]
    width = max(len(plan.trial.name) for plan in plans) + 1
    for plan in plans:
        lines.append(f"  {plan.trial.name:<{width}} {actions[plan.action].format(n=plan.epochs_left)}")
    lines.append(f"  feature classifier: {'cached' if rates.classifier_images_per_second is None else 'to train'}")
    parts = (f"training {format_seconds(seconds['training'])}, evaluation {format_seconds(seconds['evaluation'])}"
             + (f", classifier {format_seconds(seconds['classifier'])}" if seconds["classifier"] else ""))
    if cluster is None:
        lines.append(f"Estimated time: {format_seconds(sum(seconds.values()))} ({parts})")
    else:
        lines.append(f"Estimated time: {format_seconds(cluster.wall_seconds)} on {cluster.workers} local worker(s) "
                     f"with {cluster.threads} torch thread(s) each, trials in parallel (work summed: {parts})")
    timed = ", ".join(f"{name} training {rates.train_images_per_second[name]:,.0f} images/s, evaluation "
                      f"{rates.eval_images_per_second[name]:,.0f} images/s" for name in rates.train_images_per_second)
    lines.append(f"  from rates timed just now: {timed}; t-SNE and the probe are not included")
    lines.append("  a lower bound: the rates come from a model's first steps, and whole epochs run slower (the default "
                 "study took about 1.4 times its estimate on a 2-core CPU; docs/performance.md)")
    if cluster is not None:
        lines.append("  rates timed with one worker's threads, alone; workers running at once may share memory "
                     "bandwidth and run somewhat slower")
    elif arrangement.executor == "dask":
        lines.append("  with --executor dask on a remote cluster, trials run in parallel: wall time is about this "
                     "divided by the workers busy at once, at those workers' own speed")
    return lines


def format_seconds(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{rest} s"


def dry_run(config: StudyConfig) -> list[str]:
    """Plan and estimate without writing anything into the study folder."""
    out = config.out
    if out.exists() and not out.is_dir():
        raise LatentsweepError(f"{out} (--out): exists and is not a folder")
    check_same_training_settings(out, config)
    device = resolve_device(config.execution.device)
    plans = plan_study(config)
    arrangement = choose_arrangement(config, len(plans))
    if arrangement.executor == "in-process":
        set_threads(arrangement.threads)
    dataset, data_dir = load_data(config.data)
    parallel = arrangement.executor != "dask" and (arrangement.workers or 1) > 1
    rates = measure_rates(config, dataset, device, not classifier_cached(config, dataset),
                          trial_threads=arrangement.threads if parallel else None)
    seconds = estimate_seconds(config, dataset, plans, rates)
    estimate = None
    if parallel:
        per_trial = [sum(trial_seconds(config, dataset, plan, rates).values()) for plan in plans]
        estimate = ClusterEstimate(arrangement.workers, arrangement.threads,
                                   seconds["classifier"] + parallel_seconds(per_trial, arrangement.workers))
    lines = describe(config, dataset, data_dir, device, plans, rates, seconds, arrangement, estimate)
    if config.selection.with_preview:  # run first (study.run_preview), so planned first
        lines = ["--with-preview: the preview first, then the study", *dry_run(preview_config(config)), *lines]
    if config.selection.extend:
        lines += extension_lines(config, dataset, plans, rates, arrangement)
    if config.selection.refine:
        lines += refinement_lines(config, dataset, plans, rates, arrangement)
    return lines


def placement_lines(placement: dict[str, Any] | None) -> list[str]:
    """The grid --latent-dims auto placed (study.place_grid), in words; none where the grid was given."""
    return [] if placement is None else [placement_sentence(placement)]


def extension_sizes(grid: Sequence[int], cap: int) -> list[int]:
    """The sizes --extend would add if the top were never saturated: twice the top, again and again, up to `cap`."""
    sizes, top = [], max(grid)
    while top < cap:
        top = min(2 * top, cap)
        sizes.append(top)
    return sizes


def extension_lines(config: StudyConfig, dataset: Dataset, plans: list[TrialPlan], rates: Rates,
                    arrangement: Arrangement) -> list[str]:
    """The worst case of --extend: the grid's top never saturated, every doubling up to --max-latent-dim trained at
    every seed for every variant, each timed as the grid's largest model (a lower bound: larger codes cost more)."""
    sizes = extension_sizes(config.model.latent_dims, config.selection.max_latent_dim)
    if not sizes:
        return ["Extension (--extend): none possible, the grid's top is --max-latent-dim"]
    variants = len({plan.trial.variant for plan in plans})
    seeds = len(config.training.seeds)
    largest = max(plans, key=lambda plan: plan.trial.latent_dim).trial
    per_trial = sum(trial_seconds(config, dataset, TrialPlan(largest, "train", config.training.epochs), rates).values())
    workers = arrangement.workers or 1
    wall = sum(parallel_seconds([per_trial] * (variants * seeds), workers) for _ in sizes)
    return [f"Extension (--extend), worst case: the top never saturated, sizes {', '.join(map(str, sizes))} added one "
            f"after another (up to --max-latent-dim {config.selection.max_latent_dim}), {len(sizes) * variants * seeds} "
            f"trial(s), at least {format_seconds(wall)} more on {workers} worker(s); none where the top is saturated"]


def refinement_lines(config: StudyConfig, dataset: Dataset, plans: list[TrialPlan], rates: Rates,
                     arrangement: Arrangement) -> list[str]:
    """The worst case of --refine's probe rounds: every variant's answer in the grid's widest gap, and every
    round's outcome leaving the longest run of sizes (selection.worst_case_probes), each probe trained afresh."""
    variants = len({plan.trial.variant for plan in plans})
    seeds = len(config.training.seeds)
    gap = widest_gap(config.model.latent_dims)
    count = probes_per_round(variants, seeds, arrangement.workers)
    rounds = worst_case_probes(gap, count)
    if not rounds:
        return ["Refinement (--refine): none needed, the grid's sizes leave no size untried between them"]
    workers = arrangement.workers or 1
    wall = 0.0
    largest = max(plans, key=lambda plan: plan.trial.latent_dim).trial
    per_trial = sum(trial_seconds(config, dataset, TrialPlan(largest, "train", config.training.epochs), rates).values())
    for probed in rounds:
        wall += parallel_seconds([per_trial] * (variants * probed * seeds), workers)
    trials = variants * sum(rounds) * seeds
    return [f"Refinement (--refine), worst case: {len(rounds)} round(s) of probes after the grid, {sum(rounds)} probe "
            f"size(s) per variant ({', '.join(map(str, rounds))} per round), {trials} trial(s) at every seed, about "
            f"{format_seconds(wall)} more on {workers} worker(s); the grid's widest gap leaves {gap} size(s) untried "
            "(the actual rounds depend on where the answer falls)"]
