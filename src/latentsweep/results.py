"""A study's results read back: the tidy rows and, per variant, the answer; and the trials' own files.

`read_results(study_dir)` reads the folder's config.json and results.json once and decides each
variant's answer with selection.decide. The report, the explorer, the command line (its summary and
`export`) and `load_study` take the answer from here; none of them decides it again. `read_study`
reads what the report draws beyond the table: each trial's history, images and latent-space arrays.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from latentsweep.config import VARIANT_AXES, StudyConfig, from_dict
from latentsweep.errors import ConfigError, LatentsweepError
from latentsweep.layout import (ANALYSIS_FILE, EXCLUDED_KEY, HISTORY_FILE, IMAGES_FILE, METRICS_FILE, PER_IMAGE_FILE,
                                PROBES_KEY, RESULTS_JSON, SUMMARY_FILE, TIMING_FILE, Trial, read_study_info, signs_by_trial,
                                study_trials, trial_dir)
from latentsweep.metrics import combine_seeds, lookup, variant_of, variant_rows, variants
from latentsweep.selection import Answer, decide
from latentsweep.storage import read_json

Variant = tuple  # a value of each per-variant axis, config.VARIANT_AXES (layout.Trial.variant)


def class_noun(dataset: str) -> str:
    """What the report calls a class: a digit on MNIST, else a class."""
    return "digit" if dataset == "mnist" else "class"


def plural(noun: str) -> str:
    """digit -> digits, class -> classes."""
    return noun + ("es" if noun.endswith("s") else "s")


def preview_sentences(config: StudyConfig) -> list[str]:
    """What an ordered study's numbers are (--ordered, the preview preset), said wherever its answer is given (the
    report's headline, the command line's summary); none for a study of independent models."""
    if not config.training.ordered:
        return []
    top = max(config.model.latent_dims)
    return [f"A preview: every latent size below {top} is the first units of one ordered model per seed (size {top}, "
            "trained with nested dropout), not a model trained at that size; models trained at each size (a study "
            "without --ordered; --with-preview sets the two side by side) may reconstruct better."]


@dataclass(frozen=True)
class Results:
    study_dir: Path
    info: dict[str, Any]  # config.json: settings, class names, split sizes, environment
    config: StudyConfig
    rows: list[dict[str, Any]]  # results.json: every finished trial's tidy rows
    data_rows: list[dict[str, Any]]  # results.json's rows without a trial: the data's intrinsic dimension
    combined: list[dict[str, Any]]  # the same combined over seeds (metrics.combine_seeds)
    answers: dict[Variant, Answer]  # in variant order
    probes: list[dict[str, Any]]  # the refinement's probes (config.json), each a variant's axis values and a size
    trials: list[Trial]  # the grid's and the probes' (layout.study_trials)
    excluded: dict[str, list[str]]  # trial name -> the signs it failed to train by (health.py), left out of the rows

    def rows_of(self, variant: Variant) -> list[Mapping[str, Any]]:
        """One variant's seed-combined rows."""
        return variant_rows(self.combined, variant)


def read_results(study_dir: str | Path) -> Results:
    """The study folder's results and answers; a folder without results.json is a one-line error."""
    study_dir = Path(study_dir)
    info = read_study_info(study_dir)
    config = from_dict(info["config"])
    if not (study_dir / RESULTS_JSON).is_file():
        raise ConfigError(f"{study_dir}: no {RESULTS_JSON} yet; run the study to the end first")
    everything = named_classes(read_json(study_dir / RESULTS_JSON), info["class_names"])
    rows = [row for row in everything if row.get("latent_dim") is not None]
    data_rows = [row for row in everything if row.get("latent_dim") is None]
    if not rows:
        raise LatentsweepError(f"{study_dir}: no finished model to report on")
    combined = combine_seeds(rows)
    selection = config.selection
    probes = list(info.get(PROBES_KEY, []))
    answers = {}
    for variant in variants(combined):
        mine = variant_rows(combined, variant)
        tested = {row["latent_dim"] for row in mine}
        untestable = [probe["latent_dim"] for probe in probes if probe_variant(probe) == variant
                      and probe["latent_dim"] not in tested]
        answers[variant] = decide(mine, selection.tolerance_db, selection.fd_tolerance, info["class_names"],
                                  class_noun(config.data.dataset), grid_sizes=config.model.latent_dims,
                                  untestable=untestable)
    return Results(study_dir, info, config, rows, data_rows, combined, answers, probes, study_trials(config, probes),
                   signs_by_trial(info, EXCLUDED_KEY))


def named_classes(rows: list[dict[str, Any]], class_names: list[str]) -> list[dict[str, Any]]:
    """Rows whose class is the label text. A study written before rows named their classes holds each class's
    index ("0", "1", ...) instead: where some class is not a name, every index is read as the name it stands for."""
    known = {*class_names, "all"}
    if all(row["class"] in known for row in rows):
        return rows
    return [{**row, "class": row["class"] if row["class"] == "all" else class_names[int(row["class"])]} for row in rows]


def probe_variant(probe: Mapping[str, Any]) -> Variant:
    """The variant a probe of config.json refines."""
    return tuple(probe[name] for name in VARIANT_AXES)


# ----------------------------------------------------------------------------------------
# The trials' own files: histories, images, latent-space arrays, per-image scores


@dataclass
class StudyFiles:
    """A study folder's files, or one variant's share of them (`for_variant`): within a variant, a trial
    is keyed by (latent size, seed)."""
    study_dir: Path
    info: dict[str, Any]  # config.json
    config: StudyConfig  # the study's settings
    variant: dict[str, Any]  # for one variant's share: its value of each per-variant axis (axis name -> value)
    summary: dict[str, Any] | None
    trials: list[dict[str, Any]]  # each trial's metrics.json, with "folder"
    histories: dict[tuple[int, int], list[dict[str, float]]]
    images: dict[tuple[int, int], dict[str, np.ndarray]]
    analysis: dict[tuple[int, int], dict[str, np.ndarray]]  # analysis.npz, where the evaluation made one

    @property
    def class_names(self) -> list[str]:
        """Label i's text; empty for unlabelled images (results.csv's class column holds these names)."""
        return self.info["class_names"]

    @property
    def labelled(self) -> bool:
        """Whether the images have classes: the one test for per-class tables, the classifier's measures, the probe."""
        return bool(self.class_names)


def read_history(path: Path) -> list[dict[str, float]]:
    with path.open(newline="") as handle:
        return [{key: float(value) for key, value in row.items()} for row in csv.DictReader(handle)]


def read_study(results: Results) -> StudyFiles:
    """The trial files of a study whose results were read (results.read_results)."""
    study_dir, info = results.study_dir, results.info
    summary = read_json(study_dir / SUMMARY_FILE) if (study_dir / SUMMARY_FILE).is_file() else None
    trials, histories, images, analysis = [], {}, {}, {}
    for trial in results.trials:  # the grid's and the refinement's probes
        folder = trial_dir(study_dir, trial)
        if not (folder / METRICS_FILE).is_file():
            trials.append({"status": "missing", **trial.axes(), "folder": folder})
            continue
        if trial.name in results.excluded:  # trained, but failed to (health.py): no evidence, no figure
            trials.append({"status": "excluded", **trial.axes(), "folder": folder,
                           "error": "; ".join(results.excluded[trial.name])})
            continue
        metrics = read_json(folder / METRICS_FILE)
        timing = read_json(folder / TIMING_FILE) if (folder / TIMING_FILE).is_file() else {}
        trials.append({"train_seconds": float("nan"), "eval_seconds": float("nan"), **metrics, **timing,
                       "folder": folder})
        if metrics.get("status") == "done":
            if (folder / HISTORY_FILE).is_file():  # a prefix of an ordered model trained nothing of its own
                histories[trial] = read_history(folder / HISTORY_FILE)
            with np.load(folder / IMAGES_FILE) as npz:
                images[trial] = {name: npz[name] for name in npz.files}
            if (folder / ANALYSIS_FILE).is_file():
                with np.load(folder / ANALYSIS_FILE) as npz:
                    analysis[trial] = {name: npz[name] for name in npz.files}
    return StudyFiles(study_dir, info, results.config, {}, summary, trials, histories, images, analysis)


def for_variant(files: StudyFiles, variant: tuple) -> StudyFiles:
    """The files of one variant (layout.Trial.variant), trials keyed by (latent size, seed)."""

    def mine(entries: dict) -> dict:
        return {(trial.latent_dim, trial.seed): value for trial, value in entries.items() if trial.variant == variant}

    trials = [t for t in files.trials if variant_of(t) == variant]
    return StudyFiles(files.study_dir, files.info, files.config, dict(zip(VARIANT_AXES, variant)), files.summary, trials,
                      mine(files.histories), mine(files.images), mine(files.analysis))


def read_labels(folder: Path, indices: np.ndarray) -> list[int]:
    """The class indices of test images `indices`, from a model's per_image.csv (index -> label)."""
    labels = {}
    with (folder / PER_IMAGE_FILE).open() as handle:
        next(handle)
        for line in handle:
            index, label = line.split(",", 2)[:2]
            labels[int(index)] = int(label)
    return [labels[int(i)] for i in indices]


def per_image_psnr(folder: Path) -> np.ndarray:
    """PSNR of every test image, in test order, from a run folder's per_image.csv."""
    with (folder / PER_IMAGE_FILE).open(newline="") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda row: int(row["index"]))
    return np.array([float(row["psnr"]) for row in rows])


def model_scores(files: StudyFiles) -> tuple[dict[tuple[int, int], np.ndarray], dict[tuple[int, int], float]]:
    """Of every finished model of `files` (one variant's, `for_variant`), keyed by (latent size, seed): the PSNR of
    each test image (per_image.csv) and the Fréchet distance of its prior samples, where it was measured."""
    done = [t for t in files.trials if t.get("status") == "done"]
    psnr = {(t["latent_dim"], t["seed"]): per_image_psnr(t["folder"]) for t in done}
    fd = {(t["latent_dim"], t["seed"]): row["mean"] for t in done
          for row in lookup(t["rows"], protocol="prior_samples", metric="fd", cls="all")}
    return psnr, fd
