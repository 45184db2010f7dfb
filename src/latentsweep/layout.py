"""The study folder's layout: trial names and paths, markers, and reading results back.

  config.json              the study's settings, class names, split sizes, the environment, how the
                           trials were run (executor, workers, threads), the refinement's probes, the
                           constant image's PSNR and the models that failed to train (health.py)
  study.log                the log of every run of the study in this folder
  models/<trial>/          one folder per trial, named by its axis values, e.g. conv_beta1_latent005_seed0:
      config.json  history.csv  last.pt  best.pt  metrics.json  timing.json  per_image.csv  images.npz
      analysis.npz  DONE (or FAILED)  trial.log (when a worker process ran it)
      (in an ordered study, --ordered, a trial below the top size holds no model: its config.json names the
      top trial whose first units it is, "prefix_of", and its evaluation reads that trial's best.pt)
  failed_attempts/<trial>/ the first attempt of a model that failed to train and was retrained (health.py)
  results.csv, results.json  the tidy table of every finished trial that trained, one column per axis, and
                           the data's intrinsic dimension (rows without axis values)
  summary.json             wall time and status of each trial
  preview/                 with --with-preview: the preview (an ordered study, --ordered) as a study folder of its own
  figures/, report.md, report.html   written by latentsweep.report from the files above only

A trial with a DONE marker is skipped when the study is run again; one without is resumed from
its last checkpoint. A folder may gain trials (new axis values) later, but the settings that
define a trained model (StudyConfig.trained_model_settings) cannot change within it.
"""

from __future__ import annotations

import itertools
import os
import dataclasses
from pathlib import Path
from typing import Any, Iterable

from latentsweep.config import AXES, AXIS_BY_NAME, VARIANT_AXES, StudyConfig, flat_values, from_dict
from latentsweep.errors import ConfigError
from latentsweep.storage import read_json, write_json
from latentsweep.train import BEST_CHECKPOINT, HISTORY_FILE, LAST_CHECKPOINT  # noqa: F401 - a run folder's, train.py's

# Every file name of a study folder. A trial folder is also a run folder (train.py names its checkpoints
# and history); the names here are re-exported so that nothing else spells a file name.
MODELS = "models"
CONFIG_FILE = "config.json"  # the study's, and each trial's
METRICS_FILE = "metrics.json"
TIMING_FILE = "timing.json"  # wall-clock seconds, kept apart so metrics.json is reproducible to the byte
PER_IMAGE_FILE = "per_image.csv"
IMAGES_FILE = "images.npz"
ANALYSIS_FILE = "analysis.npz"
DONE_MARKER = "DONE"
FAILED_MARKER = "FAILED"
TRIAL_LOG = "trial.log"  # written when a worker process runs the trial
STUDY_LOG = "study.log"
RESULTS_CSV = "results.csv"
RESULTS_JSON = "results.json"
SUMMARY_FILE = "summary.json"
FIGURES = "figures"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
EXPLORER_FILE = "explorer.html"
PROBES_KEY = "probes"  # config.json's list of the refinement's probes: {architecture, beta, latent_dim}
EXCLUDED_KEY = "excluded"  # config.json's models that failed to train: {trial, the axes, signs} (health.py)
CONSTANT_PSNR_KEY = "constant_image_psnr_db"  # config.json: the training images' mean image's test-set PSNR
GRID_KEY = "grid_placement"  # config.json's record of --latent-dims auto: the estimates, d and the sizes placed
EXTENSION_KEY = "extension"  # config.json's sizes --extend added to the grid (they are in its latent_dims too)
RETRAINED_KEY = "retrained"  # config.json's models retrained once with the remedy: {trial, the axes, first signs}
PREVIEW_FOLDER = "preview"  # --with-preview: the study's preview, a study folder of its own inside this one
PREFIX_OF_KEY = "prefix_of"  # a prefix trial's config.json and metrics.json: the trial whose model it is the start of
FAILED_ATTEMPTS = "failed_attempts"  # the study folder's copies of retrained models' first attempts, by trial name


class TrialPoint:
    """What a trial is beside its fields (Trial below): its folder name, its variant, its values in words."""

    @property
    def name(self) -> str:
        """The trial's folder name, e.g. conv_beta1_latent005_seed0 (':' of a builder becomes '-')."""
        return "_".join(axis.in_folder_name(getattr(self, axis.name)) for axis in AXES)

    @property
    def variant(self) -> tuple:
        """What the selection rule is applied within: the trial's value of every per-variant axis."""
        return tuple(getattr(self, name) for name in VARIANT_AXES)

    def axes(self) -> dict[str, Any]:
        return {axis.name: getattr(self, axis.name) for axis in AXES}

    def label(self) -> str:
        """The trial in words, e.g. 'architecture conv, beta 1, latent dim 5, seed 0'."""
        return ", ".join(f"{axis.name.replace('_', ' ')} {axis.as_text(getattr(self, axis.name))}" for axis in AXES)


# One point of the grid: a model trained with these axis values, one field per config.AXES entry in its order
# (architecture: str, beta: float, latent_dim: int, seed: int), made from the entries so that an axis is declared once.
Trial = dataclasses.make_dataclass(
    "Trial", [(axis.name, axis.value_type) for axis in AXES], bases=(TrialPoint,), frozen=True, order=True,
    namespace={"__module__": __name__, "__doc__": "One point of the grid: a model trained with these axis values."})


def variant_name(variant: tuple) -> str:
    """How the report and the command line name a variant (Trial.variant), e.g. 'architecture conv, beta 1'."""
    return ", ".join(f"{name} {AXIS_BY_NAME[name].as_text(value)}" for name, value in zip(VARIANT_AXES, variant))


def variant_slug(variant: tuple) -> str:
    """A variant in file names: the trial folder name without latent size and seed, e.g. conv_beta1."""
    return "_".join(AXIS_BY_NAME[name].in_folder_name(value) for name, value in zip(VARIANT_AXES, variant))


def axis_values(config: StudyConfig) -> dict[str, tuple]:
    """{axis name: the values the study's settings list for it}."""
    flat = flat_values(config)
    return {axis.name: flat[axis.option] for axis in AXES}


def plan_trials(config: StudyConfig) -> list[Trial]:
    """The grid: the product of the axes in their order (AXES), latent sizes ascending."""
    values = axis_values(config)
    values["latent_dim"] = tuple(sorted(values["latent_dim"]))
    return [Trial(**dict(zip(values, point))) for point in itertools.product(*values.values())]


def probe_trials(config: StudyConfig, probes: Iterable[dict[str, Any]]) -> list[Trial]:
    """The trials of the refinement's probes: each probe (a variant's axis values and a latent size, as
    config.json's "probes" lists them) at every seed of the study."""
    return [Trial(**{**probe, "seed": seed}) for probe in probes for seed in config.training.seeds]


def study_trials(config: StudyConfig, probes: Iterable[dict[str, Any]] = ()) -> list[Trial]:
    """Every trial of the study: the grid, then the probes that refined its answer (none without --refine)."""
    grid = plan_trials(config)
    return grid + [trial for trial in probe_trials(config, probes) if trial not in set(grid)]


def ordered_model_of(config: StudyConfig, trial: Trial) -> Trial | None:
    """In an ordered study (--ordered), the trial whose model `trial` is a prefix of: its axis values at the grid's
    largest size; None where the trial trains a model of its own (every trial of a plain study, an ordered one's top)."""
    top = max(config.model.latent_dims)
    if not config.training.ordered or trial.latent_dim == top:
        return None
    return dataclasses.replace(trial, latent_dim=top)


def model_folder(folder: Path) -> Path:
    """The folder whose best.pt a trial folder's model is: its own, or for a prefix of an ordered model (its
    config.json names the trial, PREFIX_OF_KEY) that model's folder beside it."""
    prefix_of = read_json(folder / CONFIG_FILE).get(PREFIX_OF_KEY)
    return folder.parent / prefix_of if prefix_of else folder


def preview_config(config: StudyConfig) -> StudyConfig:
    """The preview of a study (--with-preview): its data, recipe, seeds and variants, ordered (--ordered) at its grid's
    largest size, in PREVIEW_FOLDER inside its folder."""
    return config.replace(ordered=True, with_preview=False, refine=False, extend=False,
                          latent_dims=(max(config.model.latent_dims),), out=str(config.out / PREVIEW_FOLDER))


def read_probes(study_dir: Path) -> list[dict[str, Any]]:
    """The probes recorded in a study folder's config.json ("probes"; none before the folder was refined)."""
    path = Path(study_dir) / CONFIG_FILE
    return list(read_json(path).get(PROBES_KEY, [])) if path.is_file() else []


def record_probes(study_dir: Path, probes: list[dict[str, Any]]) -> None:
    """Write the probes into the study folder's config.json (before they run, so a killed round is found again)."""
    record_in_study_info(study_dir, PROBES_KEY, probes)


def trial_dir(study_dir: Path, trial: Trial) -> Path:
    return Path(study_dir) / MODELS / trial.name


def is_done(folder: Path) -> bool:
    return (folder / DONE_MARKER).exists()


def read_timing(folder: Path) -> dict[str, float]:
    """timing.json's seconds; empty where the trial never finished an evaluation."""
    path = folder / TIMING_FILE
    return read_json(path) if path.is_file() else {}


def signs_by_trial(info: dict[str, Any], key: str) -> dict[str, list[str]]:
    """{trial name: its signs} from a config.json's list under `key` (EXCLUDED_KEY, RETRAINED_KEY); none before the
    health checks existed."""
    return {entry["trial"]: entry["signs"] for entry in info.get(key, [])}


def read_excluded(study_dir: Path) -> dict[str, list[str]]:
    """{trial name: the signs it failed to train by} from config.json (health.py)."""
    path = Path(study_dir) / CONFIG_FILE
    return signs_by_trial(read_json(path), EXCLUDED_KEY) if path.is_file() else {}


def read_retrained(study_dir: Path) -> dict[str, list[str]]:
    """{trial name: the signs its first attempt failed by} of the models retrained with the remedy (config.json)."""
    path = Path(study_dir) / CONFIG_FILE
    return signs_by_trial(read_json(path), RETRAINED_KEY) if path.is_file() else {}


def record_in_study_info(study_dir: Path, key: str, value: Any) -> None:
    """Set `key` of the study folder's config.json, keeping the rest."""
    path = Path(study_dir) / CONFIG_FILE
    write_json(path, {**read_json(path), key: value})


def record_excluded(study_dir: Path, excluded: list[dict[str, Any]]) -> None:
    record_in_study_info(study_dir, EXCLUDED_KEY, excluded)


def record_retrained(study_dir: Path, retrained: list[dict[str, Any]]) -> None:
    record_in_study_info(study_dir, RETRAINED_KEY, retrained)


def collect_results(study_dir: Path, trials: Iterable[Trial]) -> list[dict[str, Any]]:
    """The tidy rows of every finished trial that trained (not excluded by the health checks), from metrics.json."""
    rows = []
    excluded = read_excluded(study_dir)
    for trial in trials:
        folder = trial_dir(study_dir, trial)
        if is_done(folder) and trial.name not in excluded:
            rows.extend(read_json(folder / METRICS_FILE)["rows"])
    return rows


def read_study_info(study_dir: Path) -> dict[str, Any]:
    path = Path(study_dir) / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"{study_dir}: not a study folder (no {CONFIG_FILE}); run 'latentsweep run' first")
    return read_json(path)


def prepare_study_dir(study_dir: Path, config: StudyConfig) -> None:
    """Create the folder, or check that an existing study there trained with the same settings."""
    if study_dir.exists() and not study_dir.is_dir():
        raise ConfigError(f"{study_dir} (--out): exists and is not a folder")
    try:
        (study_dir / MODELS).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{study_dir} (--out): cannot create the folder ({exc.strerror or exc})") from None
    if not os.access(study_dir, os.W_OK):
        raise ConfigError(f"{study_dir} (--out): folder is not writable")
    check_same_training_settings(study_dir, config)


def check_same_training_settings(study_dir: Path, config: StudyConfig) -> None:
    """Refuse a folder whose models were trained with other settings; other axis values are welcome."""
    existing = study_dir / CONFIG_FILE
    if not existing.exists():
        return
    try:
        previous = from_dict(read_json(existing).get("config", {})).trained_model_settings()
    except ConfigError as exc:
        raise ConfigError(f"{existing}: unreadable study settings ({exc}); choose another --out folder") from None
    wanted = config.trained_model_settings()
    changed = [key for key in wanted if previous.get(key) != wanted[key]]
    if changed:
        details = ", ".join(f"{key} {previous.get(key)!r} -> {wanted[key]!r}" for key in changed)
        raise ConfigError(f"{study_dir} (--out): holds a study made with other settings ({details}); "
                          "choose another --out folder")


def merged_axes(config: StudyConfig, study_dir: Path) -> StudyConfig:
    """`config` with the axis values of the study already in `study_dir` added, so that extending a
    folder with a new beta keeps its earlier trials in the results and the report."""
    existing = study_dir / CONFIG_FILE
    if not existing.exists():
        return config
    previous = from_dict(read_json(existing)["config"])

    before, now = axis_values(previous), axis_values(config)
    return config.replace(**{axis.option: tuple(dict.fromkeys((*before[axis.name], *now[axis.name]))) for axis in AXES})
