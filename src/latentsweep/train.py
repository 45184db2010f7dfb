"""Training one VAE: plain functions with explicit arguments.

Reproducibility: the batch order of an epoch is a pure function of (seed, epoch), each step's
learning rate a pure function of the step (learning_rate_at), and the reparameterisation noise
comes from one generator whose state is saved in every checkpoint, so a run resumed from a
checkpoint replays exactly what an uninterrupted run would have done.

One loop trains every model (the study's trials, `latentsweep train`, the dry run's timed steps):
`train_epoch` for the steps, `close_epoch` for validation, the NaN check and the checkpoints.
The network comes from a `ModelSpec` (architectures.py), so any architecture trains the same way;
the CPU kernel choices of kernels.py are applied to it here.

Files in a run folder:
  last.pt      checkpoint after the latest finished epoch (weights, optimizer, generator state,
               the schedule's steps, history, both configs); written atomically every epoch
  best.pt      the weights with the lowest validation loss so far, same self-describing format
  history.csv  per-epoch train/validation loss (total, reconstruction, KL) and seconds
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from latentsweep.architectures import ModelSpec, stored_model_config
from latentsweep.config import LEGACY_AXIS_VALUES
from latentsweep.data import intensities
from latentsweep.errors import CheckpointError, ConfigError, TrainingDiverged
from latentsweep.kernels import use_fast_cpu_kernels
from latentsweep.model import VAEOutput, nested_prefix_sizes, vae_forward, vae_loss_terms
from latentsweep.storage import atomic_torch_save, write_csv

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
HISTORY_FILE = "history.csv"
HISTORY_FIELDS = ["epoch", "train_loss", "train_reconstruction", "train_kl",
                  "val_loss", "val_reconstruction", "val_kl", "seconds"]

# Offsets that keep the seeds of independent random streams apart for the same user seed.
_BATCH_ORDER_STREAM = 1_000_003
_VALIDATION_NOISE_STREAM = 2_000_003


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    batch_size: int = 128
    learning_rate: float = 1e-3
    beta: float = 1.0
    seed: int = 0
    binarize: bool = False  # dynamic binarisation: each batch re-drawn as Bernoulli(pixel intensity)
    # "bf16": the forward pass under bfloat16 autocast (on a CPU it pays only with bf16 instructions:
    # x1.11 on this project's, see benchmarks/bench_cpu_levers.py); the weights, the optimizer, the
    # loss and all evaluation stay float32.
    precision: str = "fp32"
    # How the learning rate moves over the run (learning_rate_at): "constant", or "cosine", a linear
    # warm-up over the first `warmup_fraction` of the steps to `learning_rate`, then a half cosine to 0.
    schedule: str = "constant"
    warmup_fraction: float = 0.0
    # KL warm-up: the KL term's weight rises linearly from beta / W to beta over the first W = round(kl_warmup *
    # total steps) steps (Bowman et al. 2016), so the decoder learns to use the code before the KL term can shut
    # it (posterior collapse). 0: beta at every step. The study's remedy for a model that collapsed (health.py).
    kl_warmup: float = 0.0
    # An ordered code (model.nested_prefix_sizes: nested dropout): every step decodes each image from a prefix of its
    # code of uniform random size, so that every prefix of the trained code is a smaller model (issue 32).
    ordered: bool = False

    def kl_weights(self, steps_per_epoch: int, epoch: int) -> list[float] | None:
        """The KL weight of each training step of `epoch` (1-based) under the warm-up; None without one."""
        if not self.kl_warmup:
            return None
        warmup = max(1, round(self.kl_warmup * steps_per_epoch * self.epochs))
        first = (epoch - 1) * steps_per_epoch
        return [self.beta * min(1.0, (step + 1) / warmup) for step in range(first, first + steps_per_epoch)]

    def learning_rates(self, steps_per_epoch: int, epoch: int) -> list[float]:
        """The rate of each training step of `epoch` (1-based)."""
        total = steps_per_epoch * self.epochs
        first = (epoch - 1) * steps_per_epoch
        return [learning_rate_at(step, total, self.learning_rate, self.schedule, self.warmup_fraction)
                for step in range(first, first + steps_per_epoch)]


def learning_rate_at(step: int, total_steps: int, peak: float, schedule: str, warmup_fraction: float = 0.0) -> float:
    """The learning rate of training step `step` (0-based) of `total_steps`.

    A pure function of the step, so the schedule's whole state is the number of steps taken, and a
    resumed run sets the same rates as an uninterrupted one. "constant": `peak` at every step.
    "cosine": `peak` * (step + 1) / W for the first W = round(warmup_fraction * total_steps) steps,
    then `peak` * (1 + cos(pi * t)) / 2 with t going from 0 at step W to 1 just after the last step.
    """
    if schedule == "constant":
        return peak
    if schedule != "cosine":
        raise ValueError(f"unknown learning-rate schedule {schedule!r}")
    warmup = round(warmup_fraction * total_steps)
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / (total_steps - warmup)))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available (torch.cuda.is_available() is False)")
    return torch.device(name)


def epoch_permutation(num_items: int, seed: int, epoch: int) -> torch.Tensor:
    """The order in which an epoch visits the training images: a pure function of (seed, epoch)."""
    generator = torch.Generator().manual_seed(seed * _BATCH_ORDER_STREAM + epoch)
    return torch.randperm(num_items, generator=generator)


def make_noise_generator(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    order: torch.Tensor,
    batch_size: int,
    beta: float,
    generator: torch.Generator,
    progress: tqdm | None = None,
    binarize: bool = False,
    precision: str = "fp32",
    learning_rates: Sequence[float] | None = None,
    kl_weights: Sequence[float] | None = None,
    ordered_size: int | None = None,
) -> dict[str, float]:
    """One pass over `images` in `order`; returns mean loss (at `beta`), reconstruction and KL per image.

    With `binarize`, each batch is drawn afresh as Bernoulli(intensities) from `generator`.
    With precision "bf16", the model runs under bfloat16 autocast and the loss is taken in float32.
    With `learning_rates` (one per step), each step's rate is set before it; else the optimizer's stands.
    With `kl_weights` (one per step, TrainConfig.kl_weights), each step's loss weights the KL term by its own.
    With `ordered_size` (the code's size T of an ordered model), each image is decoded from a random prefix of its
    code (model.nested_prefix_sizes, drawn from `generator` before the noise) and its KL is that prefix's.
    """
    model.train()
    order = order.to(images.device)  # one copy per epoch, not one per batch
    totals = torch.zeros(2, dtype=torch.float64, device=images.device)
    # The first step whose loss is not finite, tracked on the device (-1: none), so the check costs
    # no host synchronisation per step; the caller reads it once per epoch. The step numbers live on
    # the device too: a tensor made from a Python int each step would be a blocking copy on a GPU.
    first_bad_step = torch.full((), -1, device=images.device)
    step_numbers = torch.arange(1, math.ceil(len(order) / batch_size) + 1, device=images.device)
    for step, start in enumerate(range(0, len(order), batch_size), start=1):
        batch = intensities(images[order[start:start + batch_size]])
        if binarize:
            batch = torch.bernoulli(batch, generator=generator)
        sizes = None if ordered_size is None else nested_prefix_sizes(len(batch), ordered_size, generator, batch.device)
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            output = vae_forward(model, batch, generator, sizes)
        terms = vae_loss_terms(VAEOutput(*(tensor.float() for tensor in output)), batch, sizes)
        loss = (terms.reconstruction + (beta if kl_weights is None else kl_weights[step - 1]) * terms.kl).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if learning_rates is not None:
            for group in optimizer.param_groups:
                group["lr"] = learning_rates[step - 1]
        optimizer.step()
        first_bad_step = torch.where((first_bad_step < 0) & ~torch.isfinite(loss.detach()),
                                     step_numbers[step - 1], first_bad_step)
        totals += torch.stack([terms.reconstruction.detach().sum(), terms.kl.detach().sum()]).double()
        if progress is not None:
            progress.update(len(batch))
    reconstruction, kl = (totals / len(order)).tolist()
    return {"loss": reconstruction + beta * kl, "reconstruction": reconstruction, "kl": kl,
            "first_bad_step": int(first_bad_step)}


@torch.no_grad()
def evaluate_loss(
    model: nn.Module, images: torch.Tensor, batch_size: int, beta: float, seed: int, ordered_size: int | None = None
) -> dict[str, float]:
    """Mean loss terms on `images` with fixed noise, so epochs compare like with like; an ordered model's (with
    `ordered_size`) under its training objective, the prefixes drawn from the same fixed generator.

    Does not change the model: no gradients, eval mode, its own generator.
    """
    model.eval()
    generator = make_noise_generator(seed + _VALIDATION_NOISE_STREAM, images.device)
    totals = torch.zeros(2, dtype=torch.float64, device=images.device)
    for start in range(0, len(images), batch_size):
        batch = intensities(images[start:start + batch_size])
        sizes = None if ordered_size is None else nested_prefix_sizes(len(batch), ordered_size, generator, batch.device)
        terms = vae_loss_terms(vae_forward(model, batch, generator, sizes), batch, sizes)
        totals += torch.stack([terms.reconstruction.sum(), terms.kl.sum()]).double()
    reconstruction, kl = (totals / len(images)).tolist()
    return {"loss": reconstruction + beta * kl, "reconstruction": reconstruction, "kl": kl}


def save_last_checkpoint(checkpoint: dict[str, Any], path: Path) -> None:
    """last.pt, atomically (the reliability tests wrap this to kill the process halfway through)."""
    atomic_torch_save(checkpoint, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and sanity-check a checkpoint; any damage becomes a one-line CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for damaged files; all mean the same here
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint ({reason[:200]})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a latentsweep checkpoint (format {CHECKPOINT_FORMAT})")
    for key in ("model_config", "model_state", "epoch"):
        if key not in checkpoint:
            raise CheckpointError(f"{path}: checkpoint lacks {key!r}")
    return checkpoint


def _check_same_experiment(checkpoint: dict[str, Any], spec: ModelSpec, train_config: TrainConfig,
                           path: Path) -> None:
    """Refuse to continue a checkpoint made with other settings; only more epochs are allowed."""
    architecture = checkpoint.get("architecture", LEGACY_AXIS_VALUES["architecture"])
    made_for = {"architecture": architecture,
                "model_config": stored_model_config(architecture, checkpoint.get("model_config"))}
    if made_for != spec.checkpoint_fields():
        raise CheckpointError(f"{path}: made for another model ({made_for}); use another output folder or delete it")
    # Fields added after a checkpoint was written take their defaults.
    saved = {**dataclasses.asdict(TrainConfig(epochs=0)), **checkpoint.get("train_config", {})}
    wanted = dataclasses.asdict(train_config)
    if (train_config.schedule != "constant" or train_config.kl_warmup) and saved["epochs"] != wanted["epochs"]:
        what = (f"the {train_config.schedule} schedule's rates depend" if train_config.schedule != "constant" else
                "the KL warm-up's weights depend")
        raise CheckpointError(f"{path}: made for {saved['epochs']} epochs; {what} on the run's length, so it cannot be "
                              "continued to another; use another output folder or delete it")
    saved.pop("epochs", None)
    wanted.pop("epochs")
    if saved != wanted:
        raise CheckpointError(f"{path}: made with other training settings ({saved}); "
                              "use another output folder or delete it")


def _write_history(run_dir: Path, history: list[dict[str, float]]) -> None:
    write_csv(run_dir / HISTORY_FILE, history, HISTORY_FIELDS)


@dataclass
class TrainResult:
    history: list[dict[str, float]]
    best_epoch: int
    train_seconds: float


@dataclass
class Run:
    """One run folder's training in progress: the model, its optimizer and noise generator, and
    what the finished epochs recorded (all that last.pt holds)."""
    run_dir: Path
    model: nn.Module
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    checkpoint_base: dict[str, Any]  # the part of every checkpoint that does not change
    history: list[dict[str, float]] = field(default_factory=list)
    epochs_done: int = 0
    best_loss: float = math.inf
    best_epoch: int = 0
    steps_per_epoch: int = 0  # of the training images at hand; with the epoch, the schedule's state
    resumed_schedule: dict[str, int] | None = None  # the schedule_state of the checkpoint resumed from
    ordered_size: int | None = None  # an ordered model's code size (TrainConfig.ordered), else None

    def result(self) -> TrainResult:
        return TrainResult(history=self.history, best_epoch=self.best_epoch,
                           train_seconds=sum(row["seconds"] for row in self.history))


def open_run(run_dir: Path, spec: ModelSpec, train_config: TrainConfig, device: torch.device,
             resume: bool = True, extra_metadata: dict[str, Any] | None = None, label: str = "") -> Run:
    """A freshly initialised model, or with `resume` the state of `run_dir`'s last.pt.

    A checkpoint made with other configs is an error rather than silently mixing two experiments.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    # Seeded weight initialisation that neither depends on nor disturbs the global RNG.
    model = use_fast_cpu_kernels(spec.build(train_config.seed)).to(device)
    base = {"format": CHECKPOINT_FORMAT, **spec.checkpoint_fields(),
            "train_config": dataclasses.asdict(train_config), "metadata": extra_metadata or {}}
    run = Run(run_dir, model, torch.optim.Adam(model.parameters(), lr=train_config.learning_rate),
              make_noise_generator(train_config.seed, device), base,
              ordered_size=spec.latent_dim if train_config.ordered else None)
    last_path = run_dir / LAST_CHECKPOINT
    if resume and last_path.exists():
        checkpoint = load_checkpoint(last_path, map_location=device)
        _check_same_experiment(checkpoint, spec, train_config, last_path)
        model.load_state_dict(checkpoint["model_state"])
        run.optimizer.load_state_dict(checkpoint["optimizer_state"])
        run.generator.set_state(checkpoint["generator_state"].cpu())  # generator states are CPU byte tensors
        run.history = list(checkpoint["history"])
        run.resumed_schedule = checkpoint.get("schedule_state")
        run.best_loss, run.best_epoch = checkpoint["best_val_loss"], checkpoint["best_epoch"]
        run.epochs_done = checkpoint["epoch"]
        if run.epochs_done < train_config.epochs:
            log.info("%s resuming after epoch %d of %d", label or run_dir.name, run.epochs_done, train_config.epochs)
    return run


def close_epoch(run: Run, epoch: int, train_terms: dict[str, float], train_seconds: float, val_images: torch.Tensor,
                train_config: TrainConfig, on_epoch_end: Callable[[dict[str, float], nn.Module], None] | None = None,
                label: str = "") -> None:
    """Validate, then record the epoch: history.csv, best.pt when validation improved, last.pt.

    Raises TrainingDiverged, before writing anything, when a loss is not finite.
    """
    started = time.perf_counter()
    val_terms = evaluate_loss(run.model, val_images, 1000, train_config.beta, train_config.seed, run.ordered_size)
    seconds = train_seconds + time.perf_counter() - started
    train_terms = dict(train_terms)
    bad_step = train_terms.pop("first_bad_step")
    if bad_step > 0 or not all(math.isfinite(v) for v in (*train_terms.values(), *val_terms.values())):
        where = f"epoch {epoch}, step {bad_step}" if bad_step > 0 else f"epoch {epoch} (validation)"
        raise TrainingDiverged(f"{run.run_dir}: loss became NaN or infinite in {where}; "
                               f"the last good checkpoint (epoch {epoch - 1}) is kept")
    run.history.append({"epoch": epoch, **{f"train_{k}": v for k, v in train_terms.items()},
                        **{f"val_{k}": v for k, v in val_terms.items()}, "seconds": seconds})
    run.epochs_done = epoch
    if val_terms["loss"] < run.best_loss:
        run.best_loss, run.best_epoch = val_terms["loss"], epoch
        atomic_torch_save({**run.checkpoint_base, "epoch": epoch, "model_state": run.model.state_dict(),
                           "val_loss": run.best_loss}, run.run_dir / BEST_CHECKPOINT)
    save_last_checkpoint({**run.checkpoint_base, "epoch": epoch, "model_state": run.model.state_dict(),
                          "optimizer_state": run.optimizer.state_dict(), "generator_state": run.generator.get_state(),
                          "history": run.history, "best_val_loss": run.best_loss, "best_epoch": run.best_epoch,
                          "schedule_state": {"steps_done": epoch * run.steps_per_epoch,
                                             "total_steps": train_config.epochs * run.steps_per_epoch}},
                         run.run_dir / LAST_CHECKPOINT)
    _write_history(run.run_dir, run.history)
    if on_epoch_end is not None:
        on_epoch_end(run.history[-1], run.model)
    log.info("%s epoch %d/%d  train %.2f (rec %.2f, KL %.2f)  val %.2f  %.1fs",
             label or run.run_dir.name, epoch, train_config.epochs, train_terms["loss"],
             train_terms["reconstruction"], train_terms["kl"], val_terms["loss"], seconds)


def check_schedule_state(run: Run, train_config: TrainConfig) -> None:
    """A resumed run continues its schedule where it stopped: the steps it took must be those its
    epochs took on these training images, and the run's length must be the one its rates were set for."""
    state = run.resumed_schedule
    if state is None or (train_config.schedule == "constant" and not train_config.kl_warmup):
        return
    total = train_config.epochs * run.steps_per_epoch
    if state["steps_done"] != run.epochs_done * run.steps_per_epoch or state["total_steps"] != total:
        raise CheckpointError(f"{run.run_dir / LAST_CHECKPOINT}: its {train_config.schedule} schedule took "
                              f"{state['steps_done']} of {state['total_steps']} steps, but {run.epochs_done} epochs "
                              f"of these training images make {run.epochs_done * run.steps_per_epoch} of {total}; "
                              "were the training images changed? Use another output folder or delete it")


def train_model(
    run_dir: Path,
    spec: ModelSpec,
    train_config: TrainConfig,
    train_images: torch.Tensor,
    val_images: torch.Tensor,
    device: torch.device,
    resume: bool = True,
    extra_metadata: dict[str, Any] | None = None,
    progress_label: str = "",
    on_epoch_end: Callable[[dict[str, float], nn.Module], None] | None = None,
    show_progress: bool = True,
) -> TrainResult:
    """Train (or continue training) one model into `run_dir`; its best weights are in best.pt.

    With `resume`, a `last.pt` in `run_dir` from the same configs is continued. `on_epoch_end(row,
    model)` is called after each epoch's checkpoint with its history row (e.g. to log to TensorBoard);
    it must leave the model's weights and the random number generators alone.
    """
    train_images = train_images.to(device)
    val_images = val_images.to(device)
    run = open_run(run_dir, spec, train_config, device, resume, extra_metadata, progress_label)
    run.steps_per_epoch = math.ceil(len(train_images) / train_config.batch_size)
    check_schedule_state(run, train_config)
    for epoch in range(run.epochs_done + 1, train_config.epochs + 1):
        started = time.perf_counter()
        order = epoch_permutation(len(train_images), train_config.seed, epoch)
        with tqdm(total=len(order), desc=f"{progress_label} epoch {epoch}/{train_config.epochs}".strip(),
                  unit="img", leave=False, disable=None if show_progress else True, dynamic_ncols=True) as progress:
            train_terms = train_epoch(run.model, run.optimizer, train_images, order, train_config.batch_size,
                                      train_config.beta, run.generator, progress, train_config.binarize,
                                      train_config.precision, train_config.learning_rates(run.steps_per_epoch, epoch),
                                      train_config.kl_weights(run.steps_per_epoch, epoch), run.ordered_size)
        close_epoch(run, epoch, train_terms, time.perf_counter() - started, val_images, train_config, on_epoch_end,
                    progress_label)
    return run.result()
