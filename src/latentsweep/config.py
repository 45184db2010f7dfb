"""The study's settings: typed sections, presets, TOML loading and validation.

A study is a grid of trials over named axes (architecture, beta, latent size, seed); the other
settings are grouped by what they change:

  data        which images, and how they are split          (changes what a model is)
  model       the architectures and latent sizes tried       (axes)
  training    the recipe, with the betas and seeds tried     (changes what a model is, but for the axes)
  evaluation  how much is measured                           (a finished model is re-evaluated when it changes)
  selection   the rule that picks the latent size, and        (the report, and the probes of --refine)
              whether the answer is refined to one dimension
  execution   where and how the trials run                   (changes nothing but speed and the last bits)

Each field's annotation drives parsing: flags and TOML values are coerced to it, and errors name
the option. TOML keys are the option names, flat (`epochs = 20`) or inside a table named after the
section (`[training]`). Precedence, lowest first: the preset, the TOML file, command-line flags.
Everything is validated here, once, so the rest of the code can trust its inputs.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from latentsweep.data import DATASET_NAMES, FOLDER_DATASET, SOURCES  # the data sources' registry (data/__init__.py)
from latentsweep.data.folder import parse_image_size
from latentsweep.dimension import GRID_FORMULA
from latentsweep.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib

DEVICES = ("auto", "cpu", "cuda")
AUTO_GRID = "auto"  # --latent-dims auto: the grid placed from the data (study.place_grid)
PRECISIONS = ("fp32", "bf16")  # training's forward pass; see train.TrainConfig
SCHEDULES = ("constant", "cosine")  # the learning rate over a run; see train.learning_rate_at
EXECUTORS = ("local", "dask")
BUILTIN_ARCHITECTURES = ("conv", "mlp")  # model.py; anything else is a user's "package.module:function"

# What a new study uses. The full preset's recipe is the cheapest that benchmarks/bench_recipe.py found
# to reach, on average over three seeds, at least the whole-test-set PSNR of the earlier one-seed
# default (constant rate 1e-3, batch 128, 30 epochs: 17.68/20.18/21.25/21.46 dB at sizes 5/10/15/20)
# at every size: Adam at batch 64, a linear warm-up over 5% of the steps to 2e-3, then a half cosine
# to zero, 12 epochs (docs/performance.md, "Three seeds by default", has the table and the study
# that confirmed it). Three seeds, so the answer and its intervals cover training randomness. The
# quick preset trains one seed on a 10,000-image subset with the same schedule.
RECIPE = {"schedule": "cosine", "learning_rate": 2e-3, "warmup_fraction": 0.05, "batch_size": 64}
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {**RECIPE, "epochs": 10, "train_subset": 10_000, "seeds": (0,), "refine": False, "check_training": True,
              "extend": True},
    "full": {**RECIPE, "epochs": 12, "train_subset": None, "seeds": (0, 1, 2), "refine": True, "check_training": True,
             "extend": True},
}
# The preview (issue 32): the full preset's recipe and seeds, one ordered model per seed at the grid's top size T,
# whose prefixes are the sizes 1..T (TrainingConfig.ordered), so the whole curve costs about one model per seed.
PRESETS["preview"] = {**PRESETS["full"], "ordered": True, "refine": False, "extend": False}
DEFAULT_PRESET = "full"


@dataclass(frozen=True)
class Axis:
    """One axis of the trial grid: every trial takes one of its values. The grid is the product of the axes."""

    name: str  # a trial's coordinate and the results table's column, e.g. "beta"
    option: str  # the settings field (and --flag) that lists its values, e.g. "betas"
    default: tuple  # what a new study takes; its first value is what a file from before the axis existed means
    folder_format: str  # how a value prints in a trial folder's name, e.g. "beta{:g}" -> beta1
    text_format: str  # how a value prints in tables and sentences, e.g. "{:g}"
    per_variant: bool  # the answer is given for each value (every axis but latent size and seed)
    section: str  # the settings section whose field `option` lists the values (config.SECTIONS)
    value_type: type  # of one value: the field is tuple[value_type, ...]
    help: str  # what --option means

    def in_folder_name(self, value: Any) -> str:
        return self.folder_format.format(value).replace(":", "-")  # a builder's module:function

    def as_text(self, value: Any) -> str:
        return self.text_format.format(value)


ARCHITECTURE_HELP = (f"the network: {' or '.join(BUILTIN_ARCHITECTURES)} (built in: the conv VAE, or the 784-400-z MLP "
                     "of pytorch/examples), or your own as package.module:function, where function(latent_dim, "
                     "image_shape) returns an nn.Module with encode(x) -> (mean, log_var) and decode(z) -> logits "
                     "(see examples/my_vae.py; the module must be importable, e.g. via PYTHONPATH)")

# In folder-name order. A new axis is an entry here: its settings field (with_axes) and its layout.Trial field are
# made from it, and every layer iterates AXES; what the value changes in a model is the code that reads it.
AXES: tuple[Axis, ...] = (
    Axis("architecture", "architecture", ("conv",), "{}", "{}", per_variant=True, section="model", value_type=str,
         help=ARCHITECTURE_HELP + "; comma-separated to compare several"),
    Axis("beta", "betas", (1.0,), "beta{:g}", "{:g}", per_variant=True, section="training", value_type=float,
         help="comma-separated weights of the KL term in the training loss (1: the plain VAE); likelihoods are always "
              "reported for the plain VAE, so they compare across betas"),
    Axis("latent_dim", "latent_dims", (5, 10, 15, 20), "latent{:03d}", "{}", per_variant=False, section="model",
         value_type=int, help="comma-separated latent sizes, or auto: placed from the data's intrinsic dimension d (the "
         f"larger of TwoNN and MLE on the test split, rounded up) at {GRID_FORMULA} (dimension.py); auto is the "
         "default for --dataset " + " and ".join(name for name, source in SOURCES.items() if source.auto_grid)),
    Axis("seed", "seeds", (0,), "seed{}", "{}", per_variant=False, section="training", value_type=int,
         help="comma-separated training seeds; several make the intervals and the selection bootstrap cover training "
              "randomness"),
)
AXIS_BY_NAME = {axis.name: axis for axis in AXES}
VARIANT_AXES = tuple(axis.name for axis in AXES if axis.per_variant)  # what "a variant" is: (architecture, beta)
# What a row, checkpoint or config.json written before an axis existed means for it (its default's first value).
LEGACY_AXIS_VALUES = {axis.name: axis.default[0] for axis in AXES}


def setting(default: Any, help: str, none: str | None = None) -> Any:
    """A settings field with its meaning: `help` is what --help and the docs say of it, `none` what its None
    default means (e.g. "all"). Its default for a new study is the preset's where the preset sets it (option_help)."""
    return field(default=default, metadata={"help": help, "none": none})


def with_axes(section: str) -> Any:
    """Class decorator of a settings section: the dataclass with, first and in AXES order, a field listing the values
    of each axis of `section` (tuple[value_type, ...], the axis's default and help), so that an axis is declared in
    its AXES entry alone."""

    def build(cls: type) -> type:
        fields: list[tuple[str, Any, Any]] = [
            (spec.option, tuple[spec.value_type, ...],
             field(default=spec.default, metadata={"axis": spec.name, "help": spec.help, "none": None}))
            for spec in AXES if spec.section == section]
        fields += [(f.name, f.type, field(default=f.default, metadata=f.metadata)) for f in dataclasses.fields(cls)]
        return dataclasses.make_dataclass(cls.__name__, fields, frozen=True, namespace={
            "__doc__": cls.__doc__, "__module__": cls.__module__, "__qualname__": cls.__qualname__})

    return build


@with_axes("data")
@dataclass(frozen=True)
class DataConfig:
    dataset: str = setting("mnist", f"one of {', '.join(DATASET_NAMES)}; {FOLDER_DATASET}: your own PNG or JPEG images "
                           "of any size, grey or RGB, in --data-dir: listed in its labels.csv with columns file,label and "
                           "optionally split (train or test; without it a stratified seventh of the images is the test "
                           "set), or without labels.csv every PNG and JPEG under the folder, unlabelled (then no "
                           "per-class results and no classifier-based generation measures)")
    data_dir: str | None = setting(None, "folder with the data set: for mnist and fashion-mnist the four IDX files (.gz "
                                   "or not), for cifar10 cifar-10-binary.tar.gz or the extracted cifar-10-batches-bin/, "
                                   "either also in a sub-folder named after the data set; with --dataset folder, the "
                                   "folder of images",
                                   none="$LATENTSWEEP_DATA_DIR, else ~/.cache/latentsweep/datasets/NAME, where a missing "
                                        "data set is downloaded and verified")
    verify_data: bool = setting(True, "check data files against the published ones (MNIST's SHA-256, CIFAR-10's MD5 and "
                                "record counts); --no-verify-data accepts modified copies")
    val_size: int = setting(5000, "validation images taken from the training split, stratified")
    split_seed: int = setting(0, "seed of the validation split and the training subset")
    train_subset: int | None = setting(None, "train on a stratified subset of N images (all, with a warning, where "
                                       "fewer remain)", none="all")
    binarize: bool = setting(False, "dynamically binarised images: training batches re-drawn as Bernoulli(intensity), "
                             "validation and test binarised once; makes likelihoods comparable with the literature")
    image_size: str | None = setting(None, "with --dataset folder: resize every image to N x N or HxW pixels (Pillow's "
                                     "antialiased Lanczos filter)", none="every image must have the first's size")
    channels: int | None = setting(None, "with --dataset folder: 1 converts every image to grey (ITU-R 601-2 luma), 3 "
                                   "to RGB", none="every image must have the first's channels")


@with_axes("model")
@dataclass(frozen=True)
class ModelConfig:
    """The networks and latent sizes tried: axes alone (architecture, latent_dims)."""


@with_axes("training")
@dataclass(frozen=True)
class TrainingConfig:
    """The recipe, after the axes betas and seeds. The defaults here are the recipe of studies made before the
    presets set it (one seed, constant rate 1e-3, batch 128, 30 epochs): from_dict fills a field an older
    config.json lacks with them. A new study takes its recipe from its preset (PRESETS)."""

    epochs: int = setting(30, "training epochs per model")
    batch_size: int = setting(128, "training batch size")
    learning_rate: float = setting(1e-3, "Adam learning rate, the peak with a cosine schedule")
    schedule: str = setting("constant", f"learning rate over the run: {' or '.join(SCHEDULES)} (a linear warm-up over "
                            "--warmup-fraction of the steps, then a half cosine to zero)")
    warmup_fraction: float = setting(0.0, "with --schedule cosine: the share of the steps spent warming up")
    kl_warmup: float = setting(0.0, "KL warm-up: the share of the steps over which the KL term's weight rises linearly "
                               "to beta, so the decoder learns to use the code before the KL term can shut it; a "
                               "model that failed to train is retrained once with 0.5 (--check-training)")
    ordered: bool = setting(False, "train one ordered model per seed at the grid's largest latent size T (nested "
                            "dropout: each image decoded from its code's first k units, k uniform on 1..T) and measure "
                            "its first k units as the size-k model for every k from 1 to T; the latent sizes become "
                            "1..T, every one but T a prefix, evaluated without training: a preview of the whole curve "
                            "in about the time of one model per seed, not independent models (docs/measures.md)")
    precision: str = setting("fp32", f"one of {', '.join(PRECISIONS)}: bf16 runs training's forward pass under bfloat16 "
                             "autocast, which pays on a CPU only with bf16 instructions (benchmarks/bench_cpu_levers.py "
                             "measures it); weights, loss and evaluation stay float32")


@with_axes("evaluation")
@dataclass(frozen=True)
class EvaluationConfig:
    representatives_per_class: int = setting(10, "representative test images per class: the first of each class")
    num_samples: int = setting(64, "images decoded from the prior per model for the figures")
    eval_batch_size: int = setting(1000, "evaluation batch size")
    generation_samples: int = setting(10_000, "prior samples per model for FD, KID and the classifier scores")
    iwae_samples: int = setting(1000, "importance samples K per image for the IWAE likelihood bound")
    iwae_images: int = setting(500, "test images for the IWAE bound, the first of each class in equal numbers")
    tsne_points: int = setting(2000, "test images in the t-SNE view, the first of each class in equal numbers")
    classifier_epochs: int = setting(6, "training epochs of the feature classifier, cached per setting")


@with_axes("selection")
@dataclass(frozen=True)
class SelectionConfig:
    tolerance_db: float = setting(0.5, "selection rule: the smallest latent size within this many dB of the best mean "
                                  "test-set PSNR")
    fd_tolerance: float = setting(0.10, "combined rule: prior samples' Fréchet distance within this fraction of the "
                                  "best size's")
    # Adds trials, so it is more than the report's business; off for studies whose config.json predates it.
    refine: bool = setting(False, "after the grid, train the sizes between its answer and the largest smaller grid size "
                           "that fails (bisection, every seed, ordinary trials), until the smallest adequate size is known "
                           "to one dimension; the grid's best PSNR and lowest Fréchet distance stay the reference")
    # Off for studies whose config.json predates the checks, which counted every finished model.
    check_training: bool = setting(False, "check every finished model for the signs of a failed training run (posterior "
                                   "collapse, reconstructions no better than a constant image, a PSNR well below a "
                                   "smaller size's at the same seed: health.py) and leave those that failed out of the "
                                   "answer, naming them in the report; --no-check-training counts every model")
    # Off for studies whose config.json predates it: their grid was what they tested.
    extend: bool = setting(False, "after the grid, while its top is not saturated (the PSNR gained from the next "
                           "smaller size to it more than --tolerance-db), add twice the largest size to the grid at "
                           "every seed, up to --max-latent-dim; there, an unsaturated top makes the answer a lower bound")
    max_latent_dim: int = setting(256, "the largest latent size --extend adds")
    with_preview: bool = setting(False, "before the grid, train the study's preview too (one ordered model per seed at "
                                 "the grid's largest size, --ordered, in OUT/preview/, with its own report) and draw its "
                                 "curve beside the independent models' in the report; a fifth more time for the full "
                                 "preset on Fashion-MNIST (docs/performance.md)")


@with_axes("execution")
@dataclass(frozen=True)
class ExecutionConfig:
    out: str = setting("runs/study", "study folder")
    device: str = setting("auto", f"one of {', '.join(DEVICES)}; auto: CUDA when available")
    # Where the trials run (runner.py). They do not change what a model is, but other torch thread
    # counts change the last bits of the arithmetic, so the counts used are recorded in config.json.
    executor: str = setting("local", "local (worker processes on this machine, one per core, at most one per trial, "
                            "each with its share of the cores as torch threads) or dask (each trial a task on Dask "
                            "distributed; needs the dask extra)")
    scheduler: str | None = setting(None, "with --executor dask: address of a running scheduler, e.g. tcp://HOST:8786",
                                    none="start a local cluster on 127.0.0.1")
    workers: int | None = setting(None, "worker processes on this machine, local or a local Dask cluster; 1 runs the "
                                  "trials one after another in this process", none="one per core, at most one per trial")
    threads: int | None = setting(None, "CPU threads for torch", none="torch's choice, the physical cores; on a local "
                                  "Dask cluster, the cores shared out among the workers")
    tensorboard: bool = setting(False, "log losses, sample and reconstruction grids per epoch and final metrics with "
                                "hyperparameters to OUT/tensorboard/ (needs the tensorboard extra; view with: "
                                "tensorboard --logdir OUT/tensorboard)")


SECTIONS: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "training": TrainingConfig,
                             "evaluation": EvaluationConfig, "selection": SelectionConfig,
                             "execution": ExecutionConfig}


@dataclass(frozen=True)
class StudyConfig:
    preset: str = DEFAULT_PRESET
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    selection: SelectionConfig = SelectionConfig()
    execution: ExecutionConfig = ExecutionConfig()

    @property
    def out(self) -> Path:
        return Path(self.execution.out)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data: {"preset": ..., "data": {...}, ...}, tuples as lists."""
        return _plain(dataclasses.asdict(self))

    def trained_model_settings(self) -> dict[str, Any]:
        """What, beside a trial's axis values, defines a trained model: data and training settings."""
        return {name: value for section in (self.data, self.training) for name, value in _fields(section).items()
                if not _is_axis(section, name)}

    def measurement_settings(self) -> dict[str, Any]:
        """What defines a finished model's evaluation."""
        return _fields(self.evaluation)

    def replace(self, **changes: Any) -> StudyConfig:
        """A copy with flat field names changed (e.g. epochs=2, out="x"), validated again."""
        return build_config({**flat_values(self), **changes})


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _fields(section: Any) -> dict[str, Any]:
    return {f.name: _plain(getattr(section, f.name)) for f in dataclasses.fields(section)}


def _is_axis(section: Any, name: str) -> bool:
    return bool(next(f for f in dataclasses.fields(section) if f.name == name).metadata.get("axis"))


# Every flat option name -> its section. Names are unique across sections, so flags and TOML stay flat.
SECTION_OF: dict[str, str] = {f.name: section for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)}
FIELD_NAMES = ("preset", *SECTION_OF)


def flat_values(config: StudyConfig) -> dict[str, Any]:
    """{option name: value} over every section, plus the preset."""
    values: dict[str, Any] = {"preset": config.preset}
    for section in SECTIONS:
        values.update({f.name: getattr(getattr(config, section), f.name)
                       for f in dataclasses.fields(getattr(config, section))})
    return values


def setting_type(name: str) -> Any:
    """The annotated type of setting `name` (e.g. int | None, tuple[float, ...]): what its values are coerced to."""
    return typing.get_type_hints(SECTIONS[SECTION_OF[name]])[name]


def option_help(name: str) -> str:
    """--help's text for setting `name`: its meaning (the field's metadata) and what a new study takes, the full
    preset's value and the quick preset's where it differs."""
    meta = next(f.metadata for f in dataclasses.fields(SECTIONS[SECTION_OF[name]]) if f.name == name)

    def shown(value: Any) -> str:
        if value is None:
            return meta["none"] or "none"
        if isinstance(value, bool):
            return "on" if value else "off"
        if meta.get("axis"):
            return ",".join(AXIS_BY_NAME[meta["axis"]].as_text(item) for item in value)
        return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)

    full, quick = (flat_values(build_config({"preset": preset}))[name] for preset in (DEFAULT_PRESET, "quick"))
    default = shown(full) + (f"; preset quick: {shown(quick)}" if quick != full else "")
    return f"{meta['help']} (default: {default})"


def from_dict(data: Mapping[str, Any]) -> StudyConfig:
    """StudyConfig from `to_dict`'s output (config.json), validated; unknown keys are ignored.

    A field the file lacks (one added to latentsweep after the file was written) takes its dataclass
    default, which is what the code did before the field existed, never the preset's current value:
    a study trained at a constant rate must not be read back as one trained with a later preset's schedule.
    """
    flat = {**flat_values(StudyConfig()), "preset": data.get("preset", DEFAULT_PRESET)}
    for section in SECTIONS:
        flat.update({key: value for key, value in data.get(section, {}).items() if key in SECTION_OF})
    return build_config(flat)


def option(key: str) -> str:
    return "--" + key.replace("_", "-")


def load_toml(path: str | Path) -> dict[str, Any]:
    """Flat {option name: value} from a TOML file; keys flat or in tables named after the sections."""
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
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key in SECTIONS and isinstance(value, dict):
            for inner, inner_value in value.items():
                inner = inner.replace("-", "_")
                if SECTION_OF.get(inner) != key:
                    raise ConfigError(f"{path}: [{key}] has no key {inner!r}; its keys: "
                                      f"{', '.join(f.name for f in dataclasses.fields(SECTIONS[key]))}")
                flat[inner] = inner_value
        else:
            flat[key.replace("-", "_")] = value  # the flag spelling too (latent-dims), as copied from --help
    unknown = sorted(set(flat) - set(FIELD_NAMES))
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(FIELD_NAMES)}")
    return flat


def build_config(overrides: Mapping[str, Any]) -> StudyConfig:
    """Preset values, then `overrides` (flat option names: TOML merged with flags by the caller), validated."""
    preset = overrides.get("preset", DEFAULT_PRESET)
    if preset not in PRESETS:
        raise ConfigError(f"--preset: unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    values: dict[str, Any] = {**PRESETS[preset], **overrides}
    if values.get("schedule") == "constant" and "warmup_fraction" not in overrides:
        values["warmup_fraction"] = 0.0  # the preset's warm-up belongs to its schedule, not to a constant rate
    if values.get("ordered") is True:
        if "extend" not in overrides:
            values["extend"] = False  # a larger top would be another ordered model, not a prefix of this one
        top = max(coerce(values.get("latent_dims", AXIS_BY_NAME["latent_dim"].default), tuple[int, ...], "latent_dims"))
        if top >= 1:  # every prefix size of the top: what an ordered study measures (else validate's error)
            values["latent_dims"] = tuple(range(1, top + 1))
    unknown = sorted(set(values) - set(SECTION_OF) - {"preset"})
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}")
    sections = {}
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        sections[section] = cls(**{f.name: coerce(values[f.name], hints[f.name], f.name)
                                   for f in dataclasses.fields(cls) if f.name in values})
    config = StudyConfig(preset=preset, **sections)
    validate(config)
    return config


def coerce(value: Any, kind: Any, key: str) -> Any:
    """`value` (from a flag's text or a TOML value) as the annotated type `kind`; errors name the option."""
    name = option(key)
    origin, arguments = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):  # X | None
        if value is None:
            return None
        kind = next(argument for argument in arguments if argument is not type(None))
        return coerce(value, kind, key)
    if origin is tuple:  # tuple[X, ...]: "a,b,c" or a TOML list
        items = value.split(",") if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else [value]
        items = [item.strip() if isinstance(item, str) else item for item in items]
        values = tuple(coerce(item, arguments[0], key) for item in items if item != "")
        if not values:
            raise ConfigError(f"{name}: needs at least one value")
        return values
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: {value!r} is not true or false")
        return value
    if kind is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ConfigError(f"{name}: {value!r} is not an integer")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: {value!r} is not an integer") from None
    if kind is float:
        try:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: {value!r} is not a number") from None
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name}: {value!r} is not a string")
        return value
    raise TypeError(f"no parser for {key}: {kind}")  # a new annotation type needs a branch above


def validate(config: StudyConfig) -> None:
    def need(condition: bool, message: str) -> None:
        if not condition:
            raise ConfigError(message)

    def distinct(values: tuple, key: str) -> None:
        need(len(set(values)) == len(values), f"{option(key)}: repeated value in {list(values)}")

    data, model, training = config.data, config.model, config.training
    evaluation, selection, execution = config.evaluation, config.selection, config.execution
    need(data.dataset in DATASET_NAMES, f"--dataset: unknown data set {data.dataset!r}; choose from {', '.join(DATASET_NAMES)}")
    # At least one image of each class, too, which the data set's loader checks (data.make_splits): only it knows the classes.
    need(data.train_subset is None or data.train_subset >= 1, f"--train-subset: must be at least 1, got {data.train_subset}")
    need(data.val_size >= 1, f"--val-size: must be at least 1, got {data.val_size}")
    need(data.split_seed >= 0, f"--split-seed: must be non-negative, got {data.split_seed}")
    parse_image_size(data.image_size)
    need(data.channels in (None, 1, 3), f"--channels: must be 1 (grey) or 3 (RGB), got {data.channels}")
    need((data.image_size is None and data.channels is None) or data.dataset == FOLDER_DATASET,
         f"--image-size and --channels: only used with --dataset {FOLDER_DATASET}")

    for name in model.architecture:
        need(name in BUILTIN_ARCHITECTURES or _looks_like_builder(name),
             f"--architecture: {name!r} is neither {' nor '.join(BUILTIN_ARCHITECTURES)} nor a builder "
             "'package.module:function'")
    distinct(model.architecture, "architecture")
    need(all(d >= 1 for d in model.latent_dims), f"--latent-dims: every latent size must be at least 1, got {list(model.latent_dims)}")
    need(all(d <= 4096 for d in model.latent_dims), f"--latent-dims: latent sizes above 4096 make no sense for 784-pixel images, got {list(model.latent_dims)}")
    distinct(model.latent_dims, "latent_dims")

    need(all(0 <= b < float("inf") for b in training.betas), f"--betas: every beta must be non-negative and finite, got {list(training.betas)}")
    distinct(training.betas, "betas")
    need(all(s >= 0 for s in training.seeds), f"--seeds: seeds must be non-negative, got {list(training.seeds)}")
    distinct(training.seeds, "seeds")
    need(training.epochs >= 1, f"--epochs: must be at least 1, got {training.epochs}")
    need(training.batch_size >= 1, f"--batch-size: must be at least 1, got {training.batch_size}")
    need(0 < training.learning_rate < float("inf"), f"--learning-rate: must be positive, got {training.learning_rate}")
    need(training.precision in PRECISIONS, f"--precision: {training.precision!r} is not one of {', '.join(PRECISIONS)}")
    need(training.schedule in SCHEDULES, f"--schedule: {training.schedule!r} is not one of {', '.join(SCHEDULES)}")
    need(0 <= training.warmup_fraction < 1, f"--warmup-fraction: must be at least 0 and below 1, got {training.warmup_fraction}")
    need(training.warmup_fraction == 0 or training.schedule != "constant",
         "--warmup-fraction: only used with --schedule cosine")
    need(not (training.ordered and selection.extend), "--extend: not with --ordered, whose sizes are the prefixes of "
         "its largest; set the top with --latent-dims instead")
    need(not (training.ordered and selection.with_preview), "--with-preview: not with --ordered, which is a preview "
         "already")
    need(0 <= training.kl_warmup <= 1, f"--kl-warmup: must be between 0 and 1, got {training.kl_warmup}")

    need(evaluation.eval_batch_size >= 1, f"--eval-batch-size: must be at least 1, got {evaluation.eval_batch_size}")
    need(evaluation.representatives_per_class >= 1, f"--representatives-per-class: must be at least 1, got {evaluation.representatives_per_class}")
    need(1 <= evaluation.num_samples <= 10_000, f"--num-samples: must be between 1 and 10000, got {evaluation.num_samples}")
    need(evaluation.generation_samples >= 100, f"--generation-samples: must be at least 100, got {evaluation.generation_samples}")
    need(evaluation.iwae_samples >= 1, f"--iwae-samples: must be at least 1, got {evaluation.iwae_samples}")
    need(evaluation.iwae_images >= 1, f"--iwae-images: must be at least 1 (at least one per class is taken), got {evaluation.iwae_images}")
    need(evaluation.tsne_points >= 50, f"--tsne-points: must be at least 50, got {evaluation.tsne_points}")
    need(evaluation.classifier_epochs >= 1, f"--classifier-epochs: must be at least 1, got {evaluation.classifier_epochs}")

    need(0 <= selection.tolerance_db < float("inf"), f"--tolerance-db: must be non-negative, got {selection.tolerance_db}")
    need(0 <= selection.fd_tolerance < float("inf"), f"--fd-tolerance: must be non-negative, got {selection.fd_tolerance}")
    need(selection.max_latent_dim >= max(model.latent_dims),
         f"--max-latent-dim: {selection.max_latent_dim} is below the grid's largest size, {max(model.latent_dims)}")

    need(bool(execution.out), "--out: must not be empty")
    need(execution.device in DEVICES, f"--device: {execution.device!r} is not one of {', '.join(DEVICES)}")
    need(execution.threads is None or execution.threads >= 1, f"--threads: must be at least 1, got {execution.threads}")
    need(execution.executor in EXECUTORS, f"--executor: {execution.executor!r} is not one of {', '.join(EXECUTORS)}")
    need(execution.scheduler is None or execution.executor == "dask", "--scheduler: only used with --executor dask")
    need(execution.scheduler is None or "://" in execution.scheduler,
         f"--scheduler: {execution.scheduler!r} is not a scheduler address like tcp://HOST:8786")
    need(execution.workers is None or execution.scheduler is None,
         "--workers: sets the number of local worker processes; with --scheduler the cluster decides")
    need(execution.workers is None or execution.workers >= 1, f"--workers: must be at least 1, got {execution.workers}")


def _looks_like_builder(name: str) -> bool:
    module, _, function = name.partition(":")
    return bool(module) and function.isidentifier() and all(part.isidentifier() for part in module.split("."))
