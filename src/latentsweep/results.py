"""A study's results read back: the tidy rows and, per variant, the answer.

`read_results(study_dir)` reads the folder's config.json and results.json once and decides each
variant's answer with selection.decide. The report, the explorer, the command line (its summary and
`export`) and `load_study` take the answer from here; none of them decides it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from latentsweep.config import StudyConfig, from_dict
from latentsweep.errors import ConfigError, LatentsweepError
from latentsweep.layout import RESULTS_JSON, read_study_info
from latentsweep.metrics import combine_seeds, variant_rows, variants
from latentsweep.selection import Answer, decide
from latentsweep.storage import read_json

Variant = tuple  # a value of each per-variant axis, config.VARIANT_AXES (layout.Trial.variant)


def class_noun(dataset: str) -> str:
    """What the report calls a class: a digit on MNIST, else a class."""
    return "digit" if dataset == "mnist" else "class"


@dataclass(frozen=True)
class Results:
    study_dir: Path
    info: dict[str, Any]  # config.json: settings, class names, split sizes, environment
    config: StudyConfig
    rows: list[dict[str, Any]]  # results.json: every finished trial's tidy rows
    combined: list[dict[str, Any]]  # the same combined over seeds (metrics.combine_seeds)
    answers: dict[Variant, Answer]  # in variant order

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
    rows = read_json(study_dir / RESULTS_JSON)
    if not rows:
        raise LatentsweepError(f"{study_dir}: no finished model to report on")
    combined = combine_seeds(rows)
    selection = config.selection
    answers = {variant: decide(variant_rows(combined, variant), selection.tolerance_db, selection.fd_tolerance,
                               info["class_names"], class_noun(config.data.dataset))
               for variant in variants(combined)}
    return Results(study_dir, info, config, rows, combined, answers)
