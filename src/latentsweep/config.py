"""The study's settings: one dataclass, presets, TOML loading and validation.

Precedence, lowest first: the preset's values, the TOML file (`--config`), command-line flags.
Everything is validated here, once, so the rest of the code can trust its inputs.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from latentsweep.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib

DATASET_NAMES = ("mnist", "fashion-mnist", "folder")  # folder: the user's PNGs listed in labels.csv (data.py)
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16")  # training's forward pass; see train.TrainConfig
EXECUTORS = ("local", "dask")

# What differs between a quick iteration and a real result. The full preset's 30 epochs come from a
# 40-epoch run at latent size 20 on all 55,000 training images: validation loss fell 1.4 nats from
# epoch 20 to 30 and 0.7 nats (0.7%) from 30 to 40, so 30 epochs is close to converged while the
# four-size study stays near 15 minutes on a 2-core CPU.
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"epochs": 10, "train_subset": 10_000},
    "full": {"epochs": 30, "train_subset": None},
}
DEFAULT_PRESET = "full"


@dataclass(frozen=True)
class StudyConfig:
    out: str = "runs/study"
    dataset: str = "mnist"
    data_dir: str | None = None
    verify_data: bool = True
    preset: str = DEFAULT_PRESET
    latent_dims: tuple[int, ...] = (5, 10, 15, 20)
    seeds: tuple[int, ...] = (0,)
    epochs: int = PRESETS[DEFAULT_PRESET]["epochs"]
    train_subset: int | None = PRESETS[DEFAULT_PRESET]["train_subset"]
    val_size: int = 5000
    split_seed: int = 0
    batch_size: int = 128
    learning_rate: float = 1e-3
    beta: float = 1.0
    binarize: bool = False
    precision: str = "fp32"
    device: str = "auto"
    threads: int | None = None
    tolerance_db: float = 0.5
    fd_tolerance: float = 0.10
    representatives_per_class: int = 10
    num_samples: int = 64
    eval_batch_size: int = 1000
    generation_samples: int = 10_000
    iwae_samples: int = 1000
    iwae_images: int = 500
    tsne_points: int = 2000
    classifier_epochs: int = 6
    # Where the trials run (see executor.py). They do not change what a model is, but a local Dask
    # cluster shares the cores out as torch threads, and other thread counts change the last bits.
    executor: str = "local"
    scheduler: str | None = None
    workers: int | None = None
    tensorboard: bool = False  # TensorBoard event files under OUT/tensorboard/ (tracking.py)
    # Train a seed's latent sizes together as one stacked network (train.train_stacked). The same
    # models up to float rounding, like another thread count, so a study folder may mix the two.
    stack_sizes: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["latent_dims"] = list(self.latent_dims)
        data["seeds"] = list(self.seeds)
        return data

    # Settings that change what a trained model is; a study folder refuses to mix them.
    TRAINING_KEYS = ("dataset", "epochs", "train_subset", "val_size", "split_seed", "batch_size",
                     "learning_rate", "beta", "binarize", "verify_data", "precision")
    # Settings that change what is measured; a finished model is re-evaluated (not retrained) when they change.
    EVALUATION_KEYS = ("representatives_per_class", "num_samples", "generation_samples", "iwae_samples",
                       "iwae_images", "tsne_points", "classifier_epochs")


FIELD_NAMES = tuple(f.name for f in dataclasses.fields(StudyConfig))


def parse_int_list(text: str | list | tuple, option: str) -> tuple[int, ...]:
    """'5,10,15' or [5, 10, 15] -> (5, 10, 15); errors name the option."""
    items = text.split(",") if isinstance(text, str) else list(text)
    values = []
    for item in items:
        if isinstance(item, str):
            item = item.strip()
            if not item:
                continue
        try:
            if isinstance(item, bool) or (isinstance(item, float) and not item.is_integer()):
                raise ValueError
            values.append(int(item))
        except (TypeError, ValueError):
            raise ConfigError(f"{option}: {item!r} is not an integer") from None
    if not values:
        raise ConfigError(f"{option}: needs at least one value")
    return tuple(values)


def load_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, expected a TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from None
    # Accept the flag spelling too (latent-dims) so users can copy names from --help.
    data = {key.replace("-", "_"): value for key, value in data.items()}
    unknown = sorted(set(data) - set(FIELD_NAMES))
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(FIELD_NAMES)}")
    return data


def build_config(overrides: Mapping[str, Any], source: str = "options") -> StudyConfig:
    """Preset values, then `overrides` (TOML merged with flags by the caller), validated."""
    preset = overrides.get("preset", DEFAULT_PRESET)
    if preset not in PRESETS:
        raise ConfigError(f"--preset: unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    values: dict[str, Any] = {**PRESETS[preset], **overrides, "preset": preset}
    values = {key: _coerce(key, value) for key, value in values.items()}
    config = StudyConfig(**values)
    validate(config)
    return config


_INT_FIELDS = {"epochs", "train_subset", "val_size", "split_seed", "batch_size", "threads",
               "representatives_per_class", "num_samples", "eval_batch_size", "generation_samples",
               "iwae_samples", "iwae_images", "tsne_points", "classifier_epochs", "workers"}
_FLOAT_FIELDS = {"learning_rate", "beta", "tolerance_db", "fd_tolerance"}
_BOOL_FIELDS = {"verify_data", "binarize", "tensorboard", "stack_sizes"}


def _option(key: str) -> str:
    return "--" + key.replace("_", "-")


def _coerce(key: str, value: Any) -> Any:
    """Turn TOML/flag values into the field's type, with an error naming the option."""
    if key in ("latent_dims", "seeds"):
        return parse_int_list(value, _option(key))
    if value is None:
        return None
    if key in _INT_FIELDS:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ConfigError(f"{_option(key)}: {value!r} is not an integer")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{_option(key)}: {value!r} is not an integer") from None
    if key in _FLOAT_FIELDS:
        try:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{_option(key)}: {value!r} is not a number") from None
    if key in _BOOL_FIELDS:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: {value!r} is not true or false")
        return value
    if key in ("out", "dataset", "data_dir", "device", "preset", "executor", "scheduler", "precision") and not isinstance(value, str):
        raise ConfigError(f"{_option(key)}: {value!r} is not a string")
    return value


def validate(config: StudyConfig) -> None:
    def need(condition: bool, message: str) -> None:
        if not condition:
            raise ConfigError(message)

    need(config.dataset in DATASET_NAMES, f"--dataset: unknown data set {config.dataset!r}; choose from {', '.join(DATASET_NAMES)}")
    need(config.precision in PRECISIONS, f"--precision: {config.precision!r} is not one of {', '.join(PRECISIONS)}")
    need(config.device in DEVICES, f"--device: {config.device!r} is not one of {', '.join(DEVICES)}")
    need(all(d >= 1 for d in config.latent_dims), f"--latent-dims: every latent size must be at least 1, got {list(config.latent_dims)}")
    need(all(d <= 4096 for d in config.latent_dims), f"--latent-dims: latent sizes above 4096 make no sense for 784-pixel images, got {list(config.latent_dims)}")
    need(len(set(config.latent_dims)) == len(config.latent_dims), f"--latent-dims: repeated value in {list(config.latent_dims)}")
    need(all(s >= 0 for s in config.seeds), f"--seeds: seeds must be non-negative, got {list(config.seeds)}")
    need(len(set(config.seeds)) == len(config.seeds), f"--seeds: repeated value in {list(config.seeds)}")
    need(config.epochs >= 1, f"--epochs: must be at least 1, got {config.epochs}")
    need(config.train_subset is None or config.train_subset >= 10, f"--train-subset: must be at least 10 (one image per class), got {config.train_subset}")
    need(config.val_size >= 10, f"--val-size: must be at least 10 (one image per class), got {config.val_size}")
    need(config.split_seed >= 0, f"--split-seed: must be non-negative, got {config.split_seed}")
    need(config.batch_size >= 1, f"--batch-size: must be at least 1, got {config.batch_size}")
    need(config.eval_batch_size >= 1, f"--eval-batch-size: must be at least 1, got {config.eval_batch_size}")
    need(config.learning_rate > 0 and config.learning_rate < float("inf"), f"--learning-rate: must be positive, got {config.learning_rate}")
    need(0 <= config.beta < float("inf"), f"--beta: must be non-negative, got {config.beta}")
    need(config.threads is None or config.threads >= 1, f"--threads: must be at least 1, got {config.threads}")
    need(0 <= config.tolerance_db < float("inf"), f"--tolerance-db: must be non-negative, got {config.tolerance_db}")
    need(config.representatives_per_class >= 1, f"--representatives-per-class: must be at least 1, got {config.representatives_per_class}")
    need(1 <= config.num_samples <= 10_000, f"--num-samples: must be between 1 and 10000, got {config.num_samples}")
    need(0 <= config.fd_tolerance < float("inf"), f"--fd-tolerance: must be non-negative, got {config.fd_tolerance}")
    need(config.generation_samples >= 100, f"--generation-samples: must be at least 100, got {config.generation_samples}")
    need(config.iwae_samples >= 1, f"--iwae-samples: must be at least 1, got {config.iwae_samples}")
    need(config.iwae_images >= 10, f"--iwae-images: must be at least 10 (one per class), got {config.iwae_images}")
    need(config.tsne_points >= 50, f"--tsne-points: must be at least 50, got {config.tsne_points}")
    need(config.classifier_epochs >= 1, f"--classifier-epochs: must be at least 1, got {config.classifier_epochs}")
    need(bool(config.out), "--out: must not be empty")
    need(config.executor in EXECUTORS, f"--executor: {config.executor!r} is not one of {', '.join(EXECUTORS)}")
    need(config.scheduler is None or config.executor == "dask", "--scheduler: only used with --executor dask")
    need(config.scheduler is None or "://" in config.scheduler,
         f"--scheduler: {config.scheduler!r} is not a scheduler address like tcp://HOST:8786")
    need(config.workers is None or config.executor == "dask", "--workers: only used with --executor dask")
    need(config.workers is None or config.scheduler is None,
         "--workers: sets the size of the local Dask cluster; with --scheduler the cluster decides")
    need(config.workers is None or config.workers >= 1, f"--workers: must be at least 1, got {config.workers}")
    need(not (config.stack_sizes and config.executor == "dask"),
         "--stack-sizes: trains a seed's latent sizes together in this process; not available with --executor dask")
