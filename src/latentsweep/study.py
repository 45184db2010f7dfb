"""The study: every trial of the grid run on the chosen executor, then the results table and the report.

Also the Python entry points for notebooks and scripts:

    import latentsweep
    latentsweep.run_study(out="runs/mine", latent_dims=(4, 8), betas=(1, 4), architecture=my_build)
    results = latentsweep.load_study("runs/mine")   # results.table, results.selection, results.trials
"""

from __future__ import annotations

import logging
import math
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from latentsweep.architectures import ModelSpec, register_builder
from latentsweep.config import AUTO_GRID, AXIS_BY_NAME, VARIANT_AXES, DataConfig, StudyConfig, build_config, option
from latentsweep.data import SOURCES, Dataset, cache_root, load_data
from latentsweep.dimension import (ESTIMATE_METRICS, ESTIMATOR_LABELS, MIN_POINTS, cached_dimension_rows, grid_from_dimension,
                                   placed_dimension)
from latentsweep.errors import ConfigError, LatentsweepError
from latentsweep.health import REMEDY_KL_WARMUP, ModelHealth, failures
from latentsweep.layout import (CONFIG_FILE, CONSTANT_PSNR_KEY, EXTENSION_KEY, FAILED_ATTEMPTS, FAILED_MARKER, GRID_KEY,
                                METRICS_FILE, PROBES_KEY, RESULTS_CSV, RESULTS_JSON, RETRAINED_KEY, STUDY_LOG,
                                SUMMARY_FILE, Trial, collect_results, is_done, merged_axes, ordered_model_of, plan_trials,
                                prepare_study_dir, preview_config, probe_trials, read_excluded, read_probes,
                                read_retrained, read_study_info, record_excluded, record_probes, record_retrained,
                                study_trials, trial_dir, variant_name)
from latentsweep.metrics import AXIS_FIELDS, TIDY_FIELDS, combine_seeds, constant_image_psnr, variant_rows
from latentsweep.results import read_results
from latentsweep.runner import Arrangement, choose_arrangement, probes_per_round, run_trials
from latentsweep.selection import (apply_rule, overall_active_units, overall_fd, overall_psnr, predicted_answer,
                                   probe_sizes, saturation)
from latentsweep.storage import read_json, remove_temp_files, write_csv, write_json
from latentsweep.trial import environment, set_threads, study_data, study_inputs

log = logging.getLogger(__name__)


def check_architectures(config: StudyConfig, image_shape: tuple[int, int, int]) -> None:
    """Build each architecture once at each latent size for images of `image_shape`, so a model that breaks
    the protocol (or a module that will not import) is one clear error before anything trains."""
    for architecture in config.model.architecture:
        for latent_dim in config.model.latent_dims:
            ModelSpec(architecture, latent_dim, image_shape).build(seed=0)


def wants_auto_grid(settings: dict[str, Any]) -> bool:
    """Whether flat `settings` (TOML and flags, before build_config) ask for the grid placed from the data: --latent-dims
    auto, or no --latent-dims on a data set whose source places its grid (data.DataSource.auto_grid)."""
    given = settings.get("latent_dims")
    if given is None:
        source = SOURCES.get(settings.get("dataset", DataConfig().dataset))
        return bool(source and source.auto_grid)
    items = [given] if isinstance(given, str) else list(given) if isinstance(given, (list, tuple)) else []
    return [str(item).strip().lower() for item in items] == [AUTO_GRID]


def place_grid(settings: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """`settings` with --latent-dims auto (wants_auto_grid) replaced by the sizes dimension.grid_from_dimension places
    from the test split's intrinsic dimension, and the placement as config.json records it (GRID_KEY); unchanged
    settings and None where the grid is given. A study folder that exists keeps the grid it recorded unless
    --latent-dims says otherwise, so a study run again is the same study. The estimates are cached, so the study's own
    rows reuse them."""
    if not wants_auto_grid(settings):
        return settings, None
    config = build_config({**settings, "latent_dims": (1,)})  # the data and cap settings, validated
    recorded = config.out / CONFIG_FILE
    if "latent_dims" not in settings and recorded.is_file():
        return {**settings, "latent_dims": tuple(read_json(recorded)["config"]["model"]["latent_dims"])}, None
    dataset, _ = load_data(config.data)
    estimates: dict[str, float] = {}
    if len(dataset.test) < MIN_POINTS:
        problem = (f"the test split has {len(dataset.test)} images; estimating the data's intrinsic dimension needs at "
                   f"least {MIN_POINTS}")
    else:
        estimates = {name: row["mean"] for row in data_dimension_rows(dataset) if row["class"] == "all"
                     for name, metric in ESTIMATE_METRICS.items() if row["metric"] == metric}
        problem = (None if len(estimates) == len(ESTIMATE_METRICS) and all(map(math.isfinite, estimates.values())) else
                   "the intrinsic dimension of the test split could not be estimated ("
                   + (", ".join(f"{ESTIMATOR_LABELS[k]} {v:.3g}" for k, v in estimates.items()) or "no estimate") + "; duplicate images?)")
    if problem and "latent_dims" in settings:  # asked for: one line
        raise ConfigError(f"{option('latent_dims')} {AUTO_GRID}: {problem}: give the sizes instead")
    if problem:  # the data set's default: the fixed grid, said so
        log.warning("the grid is not placed from the data, %s: the fixed grid %s instead (set --latent-dims)", problem,
                    ",".join(map(str, AXIS_BY_NAME["latent_dim"].default)))
        return settings, None
    dimension = placed_dimension(list(estimates.values()))
    sizes = grid_from_dimension(dimension, config.selection.max_latent_dim)
    log.info("grid placed from the data's intrinsic dimension (%s): latent sizes %s",
             ", ".join(f"{ESTIMATOR_LABELS[k]} {v:.2f}" for k, v in estimates.items()), ", ".join(map(str, sizes)))
    return {**settings, "latent_dims": sizes}, {"estimates": estimates, "dimension": dimension, "latent_dims": list(sizes)}


def execute(config: StudyConfig, placement: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train and evaluate every trial, write the results table, render the report, in a study folder that
    layout.prepare_study_dir has checked and whose lock the caller holds (cli.cmd_run, run_study). `placement`:
    how place_grid placed the grid (an earlier run's record is kept where None)."""
    from latentsweep.explorer import write_explorer
    from latentsweep.report import render_report  # report imports plotting; keep this module light to import

    started = time.perf_counter()
    if config.execution.tensorboard:
        from latentsweep.tracking import require_tensorboard

        require_tensorboard()
    study_dir = config.out
    remove_temp_files(study_dir)
    check_architectures(config, study_data(config.data)[0].image_shape)
    trials = plan_trials(config)
    arrangement = choose_arrangement(config, len(trials))
    if arrangement.executor == "in-process":
        set_threads(arrangement.threads)
    inputs = study_inputs(config)  # trains and caches the classifier once, before any worker needs it
    recorded = merged_axes(config, study_dir)  # earlier trials of this folder stay in its results
    probes = read_probes(study_dir)  # an earlier run's probes stay part of the study
    earlier = read_json(study_dir / CONFIG_FILE) if (study_dir / CONFIG_FILE).is_file() else {}
    write_json(study_dir / CONFIG_FILE, {
        "config": recorded.to_dict(), "data_source": str(inputs.data_dir),
        "class_names": list(inputs.dataset.class_names), "image_shape": list(inputs.dataset.image_shape),
        "split_sizes": {"train": len(inputs.dataset.train), "val": len(inputs.dataset.val), "test": len(inputs.dataset.test)},
        "environment": environment(inputs.device), "execution": arrangement.to_dict(), PROBES_KEY: probes,
        CONSTANT_PSNR_KEY: constant_image_psnr(inputs.dataset.train.images, inputs.dataset.test.images),
        RETRAINED_KEY: earlier.get(RETRAINED_KEY, []), EXTENSION_KEY: earlier.get(EXTENSION_KEY, []),
        **({GRID_KEY: placement or earlier[GRID_KEY]} if placement or GRID_KEY in earlier else {})})
    setup_seconds = time.perf_counter() - started  # data, and the classifier when it was not cached
    preview_seconds = run_preview(recorded) if config.selection.with_preview else 0.0
    # The recorded grid: the sizes an earlier run's --extend added too, so that one killed while training is finished.
    statuses = train_and_check(recorded, arrangement, plan_trials(recorded), study_trials(recorded, probes))
    if config.selection.extend:
        recorded, extension_statuses = extend(recorded, arrangement, probes)
        statuses += extension_statuses
    grid_seconds = time.perf_counter() - started - setup_seconds - preview_seconds  # with the sizes --extend added
    if config.selection.refine:
        probes, probe_statuses = refine(recorded, arrangement, probes)
        statuses += probe_statuses
    refine_seconds = time.perf_counter() - started - setup_seconds - preview_seconds - grid_seconds
    all_trials = study_trials(recorded, probes)
    rows = collect_results(study_dir, all_trials)
    if not rows:
        raise LatentsweepError(f"{study_dir}: no model finished training; see {study_dir / STUDY_LOG}")
    rows += data_dimension_rows(inputs.dataset)
    write_csv(study_dir / RESULTS_CSV, rows, TIDY_FIELDS)
    write_json(study_dir / RESULTS_JSON, rows)
    write_json(study_dir / SUMMARY_FILE, {"wall_seconds": time.perf_counter() - started,
                                            "setup_seconds": setup_seconds,
                                            "preview_seconds": preview_seconds, "grid_seconds": grid_seconds,
                                            "refine_seconds": refine_seconds,  # the probe rounds
                                            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "trials": statuses,
                                            "execution": arrangement.to_dict(), "command": " ".join(sys.argv)})
    try:
        write_explorer(study_dir)  # before the report, which links it
    except LatentsweepError as exc:  # the page is a view: its failure must not cost the report
        log.warning("explorer.html not written: %s", exc)
    report_paths = render_report(study_dir)
    return {"study_dir": str(study_dir), "trials": statuses, "report": [str(p) for p in report_paths]}


def run_preview(config: StudyConfig) -> float:
    """Run the study's preview (preview_config) to its own report before the grid, so its answer comes first; returns
    its wall seconds."""
    started = time.perf_counter()
    preview = preview_config(config)
    log.info("the preview first: one ordered model per seed at latent size %d, in %s", max(config.model.latent_dims),
             preview.out)
    prepare_study_dir(preview.out, preview)
    execute(preview)
    for variant, answer in read_results(preview.out).answers.items():
        log.info("the preview's answer for %s: %d (prefixes of one ordered model per seed); the independent models "
                 "follow", variant_name(variant), answer.selected)
    return time.perf_counter() - started


def extend(config: StudyConfig, arrangement: Arrangement,
           probes: list[dict[str, Any]]) -> tuple[StudyConfig, list[dict[str, Any]]]:
    """While some variant's grid top is not saturated (selection.saturation) and the top is below --max-latent-dim,
    add twice the largest size to the grid (every variant, every seed) and train it. Each added size is written into
    config.json's settings and "extension" before it trains, so a killed study finds it again. Returns the config
    with the grid extended, and the status lines of the added trials."""
    statuses: list[dict[str, Any]] = []
    selection = config.selection
    while True:
        combined = combine_seeds(collect_results(config.out, plan_trials(config)))
        grid = max(config.model.latent_dims)
        open_top = []  # the variants whose top is not saturated; one with a single size left says nothing
        for variant in dict.fromkeys(trial.variant for trial in plan_trials(config)):
            rows = variant_rows(combined, variant)
            if psnr := overall_psnr(rows):
                found = saturation(psnr, overall_active_units(rows), selection.tolerance_db)
                if found.below is not None and not found.saturated:
                    open_top.append(variant)
        if not open_top or grid >= selection.max_latent_dim:
            return config, statuses
        size = min(2 * grid, selection.max_latent_dim)
        log.info("extending the grid with latent size %d: the top, %d, is not saturated for %s", size, grid,
                 "; ".join(variant_name(variant) for variant in open_top))
        before = set(plan_trials(config))
        config = config.replace(latent_dims=(*config.model.latent_dims, size))
        info = read_json(config.out / CONFIG_FILE)
        write_json(config.out / CONFIG_FILE, {**info, "config": config.to_dict(),
                                              EXTENSION_KEY: [*info.get(EXTENSION_KEY, []), size]})
        added = [trial for trial in plan_trials(config) if trial not in before]
        statuses += train_and_check(config, arrangement, added, study_trials(config, probes))


def train_and_check(config: StudyConfig, arrangement: Arrangement, trials: list[Trial],
                    study: Sequence[Trial]) -> list[dict[str, Any]]:
    """Run `trials`, check every finished model of the `study` (check_models), retrain once each that failed with the
    remedy (health.REMEDY_KL_WARMUP), check again. A retrained model's first attempt is kept under failed_attempts/
    and named in config.json ("retrained") before it is retrained, so a killed retraining resumes as one.

    In an ordered study the prefixes (layout.ordered_model_of) run after the models they read; a prefix that failed is
    left out, not retrained, and a retrained model's prefixes are evaluated again."""
    remedy = config.replace(kl_warmup=max(config.training.kl_warmup, REMEDY_KL_WARMUP))
    retrained = read_retrained(config.out)
    own = [trial for trial in trials if ordered_model_of(config, trial) is None]
    statuses = [*run_some([t for t in own if t.name not in retrained], config, arrangement),
                *run_some([t for t in own if t.name in retrained], remedy, arrangement),
                *run_some([t for t in trials if t not in own], config, arrangement)]
    again = [trial for trial in check_models(config, study)
             if trial.name not in retrained and ordered_model_of(config, trial) is None]
    if not again or config.training.kl_warmup >= REMEDY_KL_WARMUP:  # nothing to retrain, or the remedy was the recipe
        return statuses
    excluded = read_excluded(config.out)
    record_retrained(config.out, [*read_json(config.out / CONFIG_FILE)[RETRAINED_KEY],
                                  *({"trial": trial.name, **trial.axes(), "signs": excluded[trial.name]} for trial in again)])
    for trial in again:
        log.info("%s: retraining once with a KL warm-up over %.0f%% of its steps", trial.name, 100 * REMEDY_KL_WARMUP)
        kept = config.out / FAILED_ATTEMPTS / trial.name
        shutil.rmtree(kept, ignore_errors=True)
        kept.parent.mkdir(exist_ok=True)
        trial_dir(config.out, trial).rename(kept)
    prefixes = [trial for trial in study if ordered_model_of(config, trial) in again]
    for trial in prefixes:  # measured on the first attempt's model
        shutil.rmtree(trial_dir(config.out, trial), ignore_errors=True)
    statuses += [*run_some(again, remedy, arrangement), *run_some(prefixes, config, arrangement)]
    check_models(config, study)
    return statuses


def run_some(trials: list[Trial], config: StudyConfig, arrangement: Arrangement) -> list[dict[str, Any]]:
    return run_trials(trials, config, arrangement) if trials else []


def check_models(config: StudyConfig, trials: Sequence[Trial]) -> dict[Trial, list[str]]:
    """The health checks (health.py) on every finished trial of the study folder, unless --no-check-training: the
    models that failed to train, recorded in config.json with their signs, so that collecting the results leaves
    them out. Returns them."""
    study_dir = config.out
    if not config.selection.check_training:
        record_excluded(study_dir, [])
        return {}
    constant_psnr = read_study_info(study_dir)[CONSTANT_PSNR_KEY]
    # The models that trained: in an ordered study its tops, whose prefixes are measurements of them, each left out
    # with its model (a weak small prefix is the curve's start, not a failed training run).
    models = [ModelHealth.from_rows(trial, read_json(trial_dir(study_dir, trial) / METRICS_FILE)["rows"])
              for trial in trials if is_done(trial_dir(study_dir, trial)) and ordered_model_of(config, trial) is None]
    failed = failures(models, constant_psnr)
    failed.update({trial: [f"a prefix of {source.name}, which failed to train"] for trial in trials
                   if (source := ordered_model_of(config, trial)) in failed})
    for trial, signs in failed.items():
        log.warning("%s failed to train and is left out of the answer: %s", trial.name, "; ".join(signs))
    record_excluded(study_dir, [{"trial": trial.name, **trial.axes(), "signs": signs} for trial, signs in failed.items()])
    return failed


def data_dimension_rows(dataset: Dataset) -> list[dict[str, Any]]:
    """The test split's intrinsic dimension (dimension.py) as results rows without axis values; cached."""
    test = dataset.test
    rows = cached_dimension_rows(cache_root() / "dimension", dataset.name, test.images.numpy(), test.labels.numpy(),
                                 dataset.class_names)
    return [{**dict.fromkeys(AXIS_FIELDS), **row} for row in rows]


# ----------------------------------------------------------------------------------------
# Refinement: probes between the grid's answer and the failing size below it, round after round


def refine(config: StudyConfig, arrangement: Arrangement,
           probes: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Train probe sizes, every variant's in one round, until each variant's answer is known to one
    dimension (selection.apply_rule, selection.probe_sizes). Each round is recorded in config.json
    before it runs, and is the same round again after a kill: it follows from the finished trials alone.
    Returns the probes and the status lines of their trials."""
    statuses: list[dict[str, Any]] = []
    tried: set[tuple] = set()  # (variant, size) probed by this call: never again, whatever became of its trials
    while True:
        wanted = next_probes(config, probes, arrangement, tried)
        if not wanted:
            return probes, statuses
        tried |= {(variant, size) for variant, sizes in wanted.items() for size in sizes}
        new = [{**dict(zip(VARIANT_AXES, variant)), "latent_dim": size}
               for variant, sizes in wanted.items() for size in sizes]
        probes = [*probes, *(probe for probe in new if probe not in probes)]
        record_probes(config.out, probes)
        log.info("refining: probe sizes %s", "; ".join(f"{variant_name(v)}: {', '.join(map(str, sizes))}"
                                                      for v, sizes in wanted.items()))
        statuses += train_and_check(config, arrangement, probe_trials(config, new), study_trials(config, probes))


def next_probes(config: StudyConfig, probes: list[dict[str, Any]], arrangement: Arrangement,
                tried: set[tuple] = frozenset()) -> dict[tuple, list[int]]:
    """{variant: the sizes its next round probes}, from the trials finished so far; empty when done. A size
    whose every trial failed (FAILED), or that `tried` names, is not probed again."""
    trials = study_trials(config, probes)
    combined = combine_seeds(collect_results(config.out, trials))
    grid = config.model.latent_dims
    refined, attempted, predicted = {}, {}, {}
    for variant in dict.fromkeys(trial.variant for trial in plan_trials(config)):
        rows = variant_rows(combined, variant)
        psnr, fd = overall_psnr(rows), overall_fd(rows)
        if not psnr:  # every grid trial of the variant failed: nothing to refine
            continue
        selection = config.selection
        decision = apply_rule(psnr, fd, selection.tolerance_db, selection.fd_tolerance, grid)
        refined[variant], predicted[variant] = decision.refined, predicted_answer(psnr, fd, decision)
        mine = [trial for trial in trials if trial.variant == variant]
        failed = {trial.latent_dim for trial in mine if (trial_dir(config.out, trial) / FAILED_MARKER).exists()}
        unfinished = {trial.latent_dim for trial in mine if not is_done(trial_dir(config.out, trial))
                      and not (trial_dir(config.out, trial) / FAILED_MARKER).exists()}
        attempted[variant] = set(psnr) | (failed - unfinished) | {size for v, size in tried if v == variant}
    needing = [v for v in refined if probe_sizes(refined[v], attempted[v], 1)]
    count = probes_per_round(len(needing), len(config.training.seeds), arrangement.workers)
    return {v: probe_sizes(refined[v], attempted[v], count, predicted[v]) for v in needing}


# ----------------------------------------------------------------------------------------
# Python entry points


def run_study(architecture: str | Callable | Sequence[str | Callable] = "conv", **settings: Any) -> StudyResults:
    """Run a study from Python with the CLI's settings (flat names, e.g. out=, latent_dims=, betas=,
    epochs=, data_dir=) and return `load_study` of its folder.

    `architecture` takes the CLI's names ("conv", "mlp", "package.module:build") and builder
    callables `build(latent_dim, image_shape) -> nn.Module`. A callable defined in a notebook or
    script cannot be imported by worker processes, so such a study runs in this process.
    """
    names, local_only = [], False
    for item in architecture if isinstance(architecture, (list, tuple)) else [architecture]:
        if callable(item):
            names.append(register_builder(item))
            local_only = local_only or item.__module__ == "__main__"
        else:
            names.append(item)
    if local_only:
        settings = {**settings, "workers": 1, "executor": "local"}
    settings, placement = place_grid({**settings, "architecture": tuple(names)})
    config = build_config(settings)
    from latentsweep.storage import FolderLock

    prepare_study_dir(config.out, config)
    with FolderLock(config.out):
        execute(config, placement)
    return load_study(config.out)


@dataclass
class TrialRecord:
    trial: Trial
    folder: Path
    status: str  # "done", "failed" or "missing"


@dataclass
class StudyResults:
    """A finished study folder read back: its config, the tidy table, the selection per variant, the trials."""

    folder: Path
    config: StudyConfig
    table: Any  # a pandas DataFrame when pandas is installed, else the list of tidy rows
    selection: dict[tuple, int]  # variant (a value of each per-variant axis, config.VARIANT_AXES) -> selected latent size
    trials: list[TrialRecord] = field(default_factory=list)


def load_study(folder: str | Path) -> StudyResults:
    """The results of a study folder, from its files alone."""
    results = read_results(folder)
    folder = results.study_dir
    records = []
    for trial in results.trials:
        path = trial_dir(folder, trial)
        status = "done" if is_done(path) else "failed" if (path / FAILED_MARKER).exists() else "missing"
        records.append(TrialRecord(trial, path, status))
    try:
        import pandas
    except ImportError:
        table: Any = results.rows
    else:
        table = pandas.DataFrame(results.rows, columns=TIDY_FIELDS)
    selection = {variant: answer.selected for variant, answer in results.answers.items()}
    return StudyResults(folder, results.config, table, selection, records)


__all__ = ["StudyResults", "TrialRecord", "execute", "load_study", "run_study"]
