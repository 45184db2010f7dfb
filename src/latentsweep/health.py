"""Did a model train? The signs of a failed training run, checked once a study's trials have finished, so that
a model that failed is never counted as evidence for a latent size.

A model failed to train when it shows one of these signs (each a documented threshold):

  collapse   its codes carry (almost) nothing: a mean KL below COLLAPSE_KL_NATS nats per test image, no active
             unit, or fewer than half the active units of a smaller size's model of the same variant and seed
             (a VAE leaves the dimensions it does not need inactive, Dai and Wipf 2019, but a larger code that
             trained does not use fewer)
  constant   its reconstructions are no better than one constant image: whole-test-set PSNR less than
             CONSTANT_MARGIN_DB above that of the training split's mean image (metrics.constant_image_psnr)
  worse      its whole-test-set PSNR is more than WORSE_MARGIN_DB below a smaller size's model of the same variant
             and seed (extra latent dimensions cannot cost that much in a model that trained)

A non-finite loss stops training at once and is recorded as a failed trial already (train.TrainingDiverged).
Models are compared with the smaller sizes' models of their line (variant and seed) that passed. A model that
failed is retrained once with a KL warm-up (REMEDY_KL_WARMUP; study.train_and_check); one that fails again is
left out. Pure functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from latentsweep.metrics import lookup

COLLAPSE_KL_NATS = 0.1
CONSTANT_MARGIN_DB = 0.5
WORSE_MARGIN_DB = 1.0
# The remedy: a model that failed is retrained once, its KL weight rising from 0 to beta over the first half of
# its steps (train.TrainConfig.kl_warmup), so its decoder learns to use the code before the KL term can shut it.
REMEDY_KL_WARMUP = 0.5


@dataclass(frozen=True)
class ModelHealth:
    """What the checks read of one finished model: its whole-test-set PSNR, mean KL and active units."""

    trial: Any  # layout.Trial
    psnr: float
    kl: float
    active_units: float

    @classmethod
    def from_rows(cls, trial: Any, rows: Iterable[Mapping[str, Any]]) -> ModelHealth:
        """From the model's tidy rows (metrics.json)."""
        overall = {row["metric"]: row["mean"] for row in lookup(rows, protocol="test_set", cls="all")}
        return cls(trial, overall["psnr"], overall["kl"], overall.get("active_units", float("nan")))


def failures(models: Sequence[ModelHealth], constant_psnr: float) -> dict[Any, list[str]]:
    """{trial: the signs it failed by, in words with the numbers} for every model that failed to train; each is
    compared with the smaller sizes' models of its variant and seed that passed."""
    lines: dict[tuple, list[ModelHealth]] = {}
    for model in models:
        lines.setdefault((model.trial.variant, model.trial.seed), []).append(model)
    failed: dict[Any, list[str]] = {}
    for line in lines.values():
        passed: list[ModelHealth] = []
        for model in sorted(line, key=lambda m: m.trial.latent_dim):
            signs = failure_signs(model, passed, constant_psnr)
            if signs:
                failed[model.trial] = signs
            else:
                passed.append(model)
    return failed


def failure_signs(model: ModelHealth, smaller: Sequence[ModelHealth], constant_psnr: float) -> list[str]:
    """The signs of failure `model` shows, given the smaller sizes' models of its line that passed."""
    signs = []
    if model.kl < COLLAPSE_KL_NATS:
        signs.append(f"posterior collapse: mean KL {model.kl:.3f} nats per image, below {COLLAPSE_KL_NATS:g}")
    elif model.active_units == 0:
        signs.append("posterior collapse: no active unit")
    elif smaller and model.active_units < smaller[-1].active_units / 2:
        signs.append(f"posterior collapse: {model.active_units:g} active units, fewer than half of size "
                     f"{smaller[-1].trial.latent_dim}'s {smaller[-1].active_units:g}")
    if model.psnr < constant_psnr + CONSTANT_MARGIN_DB:
        signs.append(f"no better than a constant image: PSNR {model.psnr:.2f} dB against {constant_psnr:.2f} dB for "
                     f"the training images' mean image (less than {CONSTANT_MARGIN_DB:g} dB above it)")
    if smaller:
        best = max(smaller, key=lambda m: m.psnr)
        if model.psnr < best.psnr - WORSE_MARGIN_DB:
            signs.append(f"worse than a smaller size: PSNR {model.psnr:.2f} dB, {best.psnr - model.psnr:.2f} dB below "
                         f"size {best.trial.latent_dim}'s {best.psnr:.2f} dB (more than {WORSE_MARGIN_DB:g} dB)")
    return signs
