"""A study's results read back: the tidy rows and, per variant, the answer.

`read_results(study_dir)` reads the folder's config.json and results.json once and decides each
variant's answer with selection.decide. The report, the explorer, the command line (its summary and
`export`) and `load_study` take the answer from here; none of them decides it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from latentsweep.config import VARIANT_AXES, StudyConfig, from_dict
from latentsweep.errors import ConfigError, LatentsweepError
from latentsweep.layout import PROBES_KEY, RESULTS_JSON, Trial, read_study_info, study_trials
from latentsweep.metrics import combine_seeds, variant_rows, variants
from latentsweep.selection import Answer, decide
from latentsweep.storage import read_json

Variant = tuple  # a value of each per-variant axis, config.VARIANT_AXES (layout.Trial.variant)


def class_noun(dataset: str) -> str:
    """What the report calls a class: a digit on MNIST, else a class."""
    return "digit" if dataset == "mnist" else "class"


def plural(noun: str) -> str:
    """digit -> digits, class -> classes."""
    return noun + ("es" if noun.endswith("s") else "s")


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
    return Results(study_dir, info, config, rows, data_rows, combined, answers, probes, study_trials(config, probes))


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
