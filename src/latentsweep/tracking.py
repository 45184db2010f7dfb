"""TensorBoard logs of a trial (`latentsweep run --tensorboard`), for watching a sweep as it trains.

Per epoch: the training and validation loss terms as scalars, a grid of prior samples and a grid
of validation images above their reconstructions. At the end: the trial's hyperparameters with
its final test metrics, for TensorBoard's HParams view. One folder per trial under
`STUDY/tensorboard/`, so `tensorboard --logdir STUDY/tensorboard` compares the latent sizes.

Logging never touches the training's random number generators or the global one, so a run with
--tensorboard trains bit-identical weights to one without. A resumed trial purges the steps it
is about to repeat. TensorBoard is an optional extra: `pip install "latentsweep[tensorboard]"`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from latentsweep.errors import ConfigError
from latentsweep.metrics import REGISTRY

LOG_FOLDER = "tensorboard"
GRID_SIDE = 4  # 16 prior samples per epoch
RECONSTRUCTED = 8  # validation images shown with their reconstructions
# (protocol, metric) -> the TensorBoard tag of its final value, from the metric registry
FINAL_METRICS = {(protocol, name): tag for name, metric in REGISTRY.items() for protocol, tag in metric.tensorboard.items()}


def require_tensorboard() -> None:
    """Fail before any training when --tensorboard cannot work."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise ConfigError('--tensorboard: TensorBoard is not installed; pip install "latentsweep[tensorboard]"') from None


def image_grid(images: torch.Tensor, columns: int) -> torch.Tensor:
    """(N, C, H, W) in [0, 1] -> one (C, rows*H, columns*W) image, row by row; N must fill the rows."""
    count, channels, height, width = images.shape
    rows = count // columns
    return (images[: rows * columns].reshape(rows, columns, channels, height, width)
            .permute(2, 0, 3, 1, 4).reshape(channels, rows * height, columns * width))


class TrialLog:
    """The TensorBoard event files of one trial; call `epoch_end` after each epoch, then `finish`."""

    def __init__(self, folder: Path, val_images: torch.Tensor, seed: int, latent_dim: int) -> None:
        self.folder = folder
        self.val_images = val_images[:RECONSTRUCTED]
        self.seed = seed
        self.latent_dim = latent_dim
        self.writer = None

    def epoch_end(self, row: dict[str, float], model: nn.Module) -> None:
        epoch = int(row["epoch"])
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step hides what an interrupted earlier run logged from this epoch on.
            self.writer = SummaryWriter(str(self.folder), purge_step=epoch)
        for key, value in row.items():
            if key != "epoch":
                split, _, name = key.partition("_")
                self.writer.add_scalar(f"{split}/{name}" if name else key, value, epoch)
        samples, reconstructions = self._pictures(model)
        self.writer.add_image("samples/prior", image_grid(samples, GRID_SIDE), epoch)
        self.writer.add_image("reconstructions/validation_above_reconstruction",
                              image_grid(torch.cat([self.val_images.cpu(), reconstructions]), RECONSTRUCTED), epoch)
        self.writer.flush()

    @torch.no_grad()
    def _pictures(self, model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        # A private generator with the same seed each epoch: the grid shows the same latents evolve.
        generator = torch.Generator(device=device).manual_seed(self.seed)
        latents = torch.randn(GRID_SIDE * GRID_SIDE, self.latent_dim, generator=generator, device=device)
        samples = torch.sigmoid(model.decode(latents))
        mean, _ = model.encode(self.val_images.to(device))
        reconstructions = torch.sigmoid(model.decode(mean))
        model.train(was_training)
        return samples.cpu(), reconstructions.cpu()

    def finish(self, hyperparameters: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        """The hyperparameters beside the final metrics (overall rows of the tidy table)."""
        if self.writer is None:  # nothing trained in this process (finished earlier): open to add hparams
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.folder))
        metrics = {FINAL_METRICS[(row["protocol"], row["metric"])]: row["mean"] for row in rows
                   if row["class"] == "all" and (row["protocol"], row["metric"]) in FINAL_METRICS}
        self.writer.add_hparams(hyperparameters, metrics, run_name="hparams")
        self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
