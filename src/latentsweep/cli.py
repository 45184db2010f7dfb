"""The `latentsweep` command: parses options, builds one validated config, calls the library.

Options may come from a TOML file (`--config study.toml`, keys named like the flags); flags given
on the command line override it. Errors a user can fix are printed on one line, with exit code 2
for bad input and 1 for other failures.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

from latentsweep import __version__
from latentsweep.config import (ARCHITECTURE_HELP, AXES, AXIS_BY_NAME, DEFAULT_PRESET, DEVICES, FIELD_NAMES, PRESETS, SECTION_OF,
                                StudyConfig, build_config, coerce, from_dict, load_toml, option, option_help, setting_type)
from latentsweep.errors import ConfigError, LatentsweepError
from latentsweep.storage import FolderLock

log = logging.getLogger("latentsweep")


TRUST_HELP = ("a user's architecture (package.module:function) the checkpoint was made with: latentsweep imports a "
              "module named in a file only when you name it here")


def default_values(axis: str) -> str:
    """An axis's default values as --help shows them, from config.AXES."""
    spec = AXIS_BY_NAME[axis]
    return ",".join(spec.as_text(value) for value in spec.default)


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the problem, not a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# Which images, read how: the settings every command that loads data takes (run, train, reconstruct, dimension).
DATA_SOURCE_KEYS = ("data_dir", "dataset", "image_size", "channels", "verify_data")
# What 'train' takes beside the data and training settings (its axes are single values: --latent-dim, --seed, ...).
TRAIN_EXECUTION_KEYS = ("device", "threads", "tensorboard")


def add_settings(parser: argparse.ArgumentParser, names: Iterable[str], title: str | None = None) -> None:
    """One option per setting in `names` (config's fields), under a group per section or all under `title`: a
    true-or-false setting as --name/--no-name, any other as --name VALUE; each one's help is the field's own
    (config.option_help), so an option, its meaning and its default are spelled in one place."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for name in names:
        group_name = title or SECTION_OF[name]
        if group_name not in groups:
            groups[group_name] = parser.add_argument_group(group_name)
        if setting_type(name) is bool:
            groups[group_name].add_argument(option(name), action=argparse.BooleanOptionalAction, help=option_help(name))
        else:
            groups[group_name].add_argument(option(name), help=option_help(name))


PRESET_HELP = (f"{' or '.join(PRESETS)} (default {DEFAULT_PRESET}): " + "; ".join(f"{name}: " + ", ".join(f"{key}={value}" for key, value in
                                                                                     values.items())
                                                          for name, values in PRESETS.items()))


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="latentsweep", description="How small can a VAE's latent space be? Train convolutional VAEs "
                    "on MNIST for several latent sizes and measure reconstructions and samples per digit.",
                    argument_default=argparse.SUPPRESS)
    parser.add_argument("--version", action="version", version=f"latentsweep {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands.required = True

    def command(name: str, help_text: str, handler: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text, argument_default=argparse.SUPPRESS)
        sub.set_defaults(handler=handler)
        return sub

    run = command("run", "Run the whole study: train and evaluate a model per latent size and seed, then write "
                  "results, figures and report.md/report.html into --out. Re-running on the same folder skips "
                  "finished models and resumes unfinished ones.", cmd_run)
    run.add_argument("--config", help="TOML file of options (keys as the flags, e.g. latent_dims = [5, 10]); flags override it")
    run.add_argument("--preset", help=PRESET_HELP)
    run.add_argument("--dry-run", action="store_true", help="print the plan (trials, data, what is already done) and "
                     "its estimated time, from a few timed training steps on this machine; train nothing")
    add_settings(run, SECTION_OF)

    train = command("train", "Train and evaluate one model into a run folder.", cmd_train)
    train.add_argument("--config", help="TOML file of options; flags override it")
    train.add_argument("--preset", help=PRESET_HELP)
    train.add_argument("--out", required=True, help="run folder for this model")
    train.add_argument("--latent-dim", required=True, help="latent size")
    train.add_argument("--seed", help=f"training seed (default {default_values('seed')})")
    train.add_argument("--beta", help=f"weight of the KL term in the training loss (default {default_values('beta')})")
    train.add_argument("--architecture", help=ARCHITECTURE_HELP + f" (default {default_values('architecture')})")
    train.add_argument("--resume", action="store_true", help="continue from the folder's last checkpoint")
    add_settings(train, [name for name, section in SECTION_OF.items() if section in ("data", "training", "evaluation")
                         and name not in AXIS_OPTIONS] + list(TRAIN_EXECUTION_KEYS))

    evaluate = command("evaluate", "Re-evaluate a run folder's best checkpoint on the test set (rewrites its metrics.json).", cmd_evaluate)
    evaluate.add_argument("run_dir", help="a run folder (models/conv_beta1_latent010_seed0 inside a study, or a 'train' --out)")
    evaluate.add_argument("--data-dir", help="data folder (default as for 'run')")
    evaluate.add_argument("--device", help=f"one of {', '.join(DEVICES)} (default auto)")
    evaluate.add_argument("--architecture", help=TRUST_HELP)

    report = command("report", "Re-render figures, report.md and report.html of a study folder from its saved files.", cmd_report)
    report.add_argument("study_dir", help="a study folder written by 'latentsweep run'")

    explore = command("explore", "Write STUDY_DIR/explorer.html: one offline page that runs the study's models in the "
                      "browser (draw a digit, see it at every latent size, move one slider per latent dimension, "
                      "interpolate, sample). 'run' writes it with every study.", cmd_explore)
    explore.add_argument("study_dir", help="a study folder written by 'latentsweep run'")

    sample = command("sample", "Decode images from the prior N(0, I) of a checkpoint into a PNG grid.", cmd_sample)
    sample.add_argument("checkpoint", help="best.pt or last.pt of a run folder")
    sample.add_argument("--out", required=True, help="PNG file to write")
    sample.add_argument("--num", default="64", help="number of images (default 64)")
    sample.add_argument("--seed", default="0", help="seed of the latent draws (default 0)")
    sample.add_argument("--architecture", help=TRUST_HELP)

    export = command("export", "Export a study's model (default: the selected latent size) as safetensors weights, "
                     "a JSON config and an ONNX decoder.", cmd_export)
    export.add_argument("study_dir", help="a study folder written by 'latentsweep run'")
    export.add_argument("--out", required=True, help="folder to write model.safetensors, config.json, decoder.onnx into")
    export.add_argument("--latent-dim", help="latent size to export (default: the one the study selected)")
    export.add_argument("--seed", help="seed of the model to export (default: the study's first seed)")
    export.add_argument("--beta", help="beta of the model to export (default: the study's first)")
    export.add_argument("--architecture", help="architecture of the model to export (default: the study's first); "
                        "a user's builder is imported only when named here")

    likelihood = command("likelihood", "Estimate -log p(x) of a run folder's best model with the IWAE bound (Burda et al. "
                         "2016) on the whole test set or a part of it, as papers report it; prints the mean with its 95% "
                         "CI beside the negative ELBO on the same images.", cmd_likelihood)
    likelihood.add_argument("run_dir", help="a run folder (models/conv_beta1_latent010_seed0 inside a study, or a 'train' --out)")
    likelihood.add_argument("--images", default="all", help="test images: all (default) or the first N of the test set")
    likelihood.add_argument("--samples", default="1000", help="importance samples K per image (default 1000)")
    likelihood.add_argument("--data-dir", help="data folder (default as for 'run')")
    likelihood.add_argument("--device", help=f"one of {', '.join(DEVICES)} (default auto)")
    likelihood.add_argument("--architecture", help=TRUST_HELP)

    reconstruct = command("reconstruct", "Write a PNG grid of test images beside their reconstructions by a checkpoint.", cmd_reconstruct)
    reconstruct.add_argument("checkpoint", help="best.pt or last.pt of a run folder")
    reconstruct.add_argument("--out", required=True, help="PNG file to write")
    reconstruct.add_argument("--per-class", default="8", help="test images per class, the first of each class (default 8)")
    add_settings(reconstruct, DATA_SOURCE_KEYS, "data (as the model was trained on)")
    reconstruct.add_argument("--architecture", help=TRUST_HELP)

    dimension = command("dimension", "Print the intrinsic dimension of a data set's test split, overall and per class, "
                        "by scikit-dimension's TwoNN and MLE (Levina-Bickel, K = 20), each with a 95% interval from 10 "
                        "random halves; trains nothing. Cached per data set, as 'run' uses it.", cmd_dimension)
    add_settings(dimension, DATA_SOURCE_KEYS)
    return parser


STUDY_KEYS = set(FIELD_NAMES)
AXIS_OPTIONS = {axis.option for axis in AXES}  # the settings that list an axis's values


def settings_from_args(args: argparse.Namespace, **forced: Any) -> dict[str, Any]:
    """The flat settings: the --config TOML file's, then the flags given, then `forced`."""
    values: dict[str, Any] = load_toml(args.config) if getattr(args, "config", None) else {}
    values.update({key: value for key, value in vars(args).items() if key in STUDY_KEYS})
    values.update(forced)
    return values


def config_from_args(args: argparse.Namespace, **forced: Any) -> StudyConfig:
    return build_config(settings_from_args(args, **forced))


def data_source(args: argparse.Namespace) -> dict[str, Any]:
    """The data-source options given on the command line (DATA_SOURCE_KEYS), as build_config takes them."""
    return {key: getattr(args, key) for key in DATA_SOURCE_KEYS if key in vars(args)}


def number_option(text: Any, key: str, kind: type, minimum: float) -> Any:
    """A command's own number option (--num, --per-class, ...) as `kind` (config.coerce, so the errors read as every
    setting's), at least `minimum` and finite; a one-line error naming the option otherwise."""
    value = coerce(text, kind, key)
    if not math.isfinite(value):
        raise ConfigError(f"{option(key)}: must be a finite number, got {value}")
    if value < minimum:
        raise ConfigError(f"{option(key)}: must be at least {minimum:g}, got {value}")
    return value


def add_log_file(path: Path) -> None:
    from latentsweep.trial import log_file_handler

    logging.getLogger().addHandler(log_file_handler(path))


def cmd_run(args: argparse.Namespace) -> int:
    from latentsweep.layout import STUDY_LOG, prepare_study_dir
    from latentsweep.study import execute, place_grid
    from latentsweep.data import locate_data

    settings, placement = place_grid(settings_from_args(args))
    config = build_config(settings)
    locate_data(config.data)  # fail on bad data before creating --out
    if getattr(args, "dry_run", False):
        from latentsweep.plan import dry_run, placement_lines

        print("\n".join([*placement_lines(placement), *dry_run(config)]))
        return 0
    prepare_study_dir(config.out, config)
    with FolderLock(config.out):
        add_log_file(config.out / STUDY_LOG)
        result = execute(config, placement)
    print_summary(config.out)
    failed = [t for t in result["trials"] if t["status"] != "done"]
    return 1 if failed else 0


def print_summary(study_dir: Path) -> None:
    """A plain table of the headline numbers, readable in a terminal and in a log."""
    from latentsweep.layout import EXPLORER_FILE, REPORT_HTML, REPORT_MD, variant_name
    from latentsweep.metrics import REGISTRY, headline_metrics, lookup
    from latentsweep.results import preview_sentences, read_results

    results = read_results(study_dir)
    for sentence in preview_sentences(results.config):
        print(sentence)
    headline = headline_metrics()
    width = {name: max(len(REGISTRY[name].label), 6) for name in headline}
    for variant, answer in results.answers.items():
        rows = results.rows_of(variant)
        print(f"\n{variant_name(variant)}\n{'latent':>6}  " + "  ".join(f"{REGISTRY[m].label:>{width[m]}}" for m in headline))
        for dim in sorted({row["latent_dim"] for row in rows}):
            cells = []
            for name in headline:
                found = lookup(rows, latent_dim=dim, protocol="test_set", cls="all", metric=name)
                cells.append(f"{found[0]['mean']:>{width[name]}.{REGISTRY[name].digits}f}" if found else f"{'n/a':>{width[name]}}")
            print(f"{dim:>6}  " + "  ".join(cells) + ("  <- selected" if dim == answer.selected else ""))
        print("\n".join(answer.headline))
    for name, signs in results.excluded.items():
        print(f"left out, failed to train: {name} ({'; '.join(signs)})")
    print(f"Report: {study_dir / REPORT_HTML} and {study_dir / REPORT_MD}; every size live: {study_dir / EXPLORER_FILE}")


def cmd_train(args: argparse.Namespace) -> int:
    from latentsweep.layout import DONE_MARKER, plan_trials
    from latentsweep.study import check_architectures
    from latentsweep.train import LAST_CHECKPOINT
    from latentsweep.trial import run_trial, set_threads, study_data, study_inputs

    latent_dim = number_option(args.latent_dim, "latent_dim", int, 1)
    seed = number_option(getattr(args, "seed", default_values("seed")), "seed", int, 0)
    beta = number_option(getattr(args, "beta", default_values("beta")), "beta", float, 0)
    resume = getattr(args, "resume", False)
    config = config_from_args(args, latent_dims=(latent_dim,), seeds=(seed,), betas=(beta,))
    if len(config.model.architecture) != 1:
        raise ConfigError("--architecture: 'train' trains one model; name one architecture")
    # One value of every axis: the one model (with --ordered, its sizes are the prefixes of --latent-dim: the top).
    trial, = (trial for trial in plan_trials(config) if trial.latent_dim == latent_dim)
    folder = config.out
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder} (--out): exists and is not a folder")
    if (folder / LAST_CHECKPOINT).exists() and not resume:
        raise ConfigError(f"{folder} (--out): already holds a checkpoint; pass --resume to continue it or choose another folder")
    if resume:  # continue even a finished model, e.g. with more --epochs
        (folder / DONE_MARKER).unlink(missing_ok=True)
    if config.execution.tensorboard:
        from latentsweep.tracking import require_tensorboard

        require_tensorboard()
    check_architectures(config, study_data(config.data)[0].image_shape)
    set_threads(config.execution.threads)
    inputs = study_inputs(config)
    folder.mkdir(parents=True, exist_ok=True)
    with FolderLock(folder):
        metrics = run_trial(trial, config, inputs, folder, trusted=config.model.architecture)
    print(f"latent {latent_dim}: test {headline_text(metrics['rows'])}; files in {folder}")
    return 0


def headline_text(rows: list[dict[str, Any]]) -> str:
    """One model's whole-test-set headline metrics (metrics.headline_metrics), e.g. 'PSNR dB 21.40, MSE 0.0089, ...'."""
    from latentsweep.metrics import REGISTRY, headline_metrics, lookup

    return ", ".join(f"{REGISTRY[name].label} {found[0]['mean']:.{REGISTRY[name].digits}f}" for name in headline_metrics()
                     if (found := lookup(rows, protocol="test_set", cls="all", metric=name)))


def trusted_architectures(args: argparse.Namespace) -> tuple[str, ...]:
    return (args.architecture,) if "architecture" in vars(args) else ()


def cmd_evaluate(args: argparse.Namespace) -> int:
    from latentsweep.layout import CONFIG_FILE
    from latentsweep.storage import read_json
    from latentsweep.trial import evaluate_trial, set_threads, study_inputs

    folder = Path(args.run_dir)
    if not (folder / CONFIG_FILE).is_file():
        raise ConfigError(f"{folder}: not a run folder (no config.json)")
    run_config = read_json(folder / CONFIG_FILE)
    saved = from_dict(run_config["study"])
    overrides = {key: getattr(args, key) for key in ("data_dir", "device") if key in vars(args)}
    config = saved.replace(**overrides) if overrides else saved
    set_threads(config.execution.threads)
    inputs = study_inputs(config)
    with FolderLock(folder):
        metrics = evaluate_trial(folder, config, inputs, trusted_architectures(args))
    print(f"{folder}: test {headline_text(metrics['rows'])}; wrote metrics.json, per_image.csv, images.npz")
    return 0


def cmd_likelihood(args: argparse.Namespace) -> int:
    from latentsweep.data import binarize_scored_images, load_data
    from latentsweep.evaluate import likelihood_scores
    from latentsweep.kernels import use_fast_cpu_kernels
    from latentsweep.layout import BEST_CHECKPOINT, CONFIG_FILE
    from latentsweep.metrics import mean_confidence_interval
    from latentsweep.storage import read_json
    from latentsweep.train import resolve_device
    from latentsweep.trial import set_threads

    folder = Path(args.run_dir)
    if not (folder / CONFIG_FILE).is_file():
        raise ConfigError(f"{folder}: not a run folder (no config.json)")
    samples = number_option(args.samples, "samples", int, 1)
    run_config = read_json(folder / CONFIG_FILE)
    saved = from_dict(run_config["study"])
    config = saved.replace(**{key: getattr(args, key) for key in ("data_dir", "device") if key in vars(args)})
    set_threads(config.execution.threads)
    device = resolve_device(config.execution.device)
    dataset, _ = load_data(config.data)
    binarize_scored_images(dataset, config.data)
    count = len(dataset.test) if args.images == "all" else number_option(args.images, "images", int, 1)
    if count > len(dataset.test):
        raise ConfigError(f"--images: the test set has {len(dataset.test)} images, not {count}")
    model, spec = _load_model(str(folder / BEST_CHECKPOINT), trusted_architectures(args))
    model = use_fast_cpu_kernels(model).to(device)
    images = dataset.test.images[:count].to(device)
    nll, neg_elbo = likelihood_scores(model, images, samples, run_config.get("seed", 0))
    mode = "binarised" if config.data.binarize else "grey-level"
    for name, values in ((f"IWAE bound, K={samples}", nll), ("negative ELBO, one sample", neg_elbo)):
        mean, low, high = mean_confidence_interval(values)
        print(f"{folder}: {name}: {mean:.2f} nats [95% CI {low:.2f}, {high:.2f}] on the first {count} {mode} test images "
              f"(latent size {spec.latent_dim})")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from latentsweep.report import render_report

    paths = render_report(Path(args.study_dir))
    print("wrote " + " and ".join(str(p) for p in paths))
    return 0


def cmd_explore(args: argparse.Namespace) -> int:
    from latentsweep.explorer import write_explorer

    path = write_explorer(Path(args.study_dir))
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB); open it in a browser, no server needed")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from latentsweep.config import VARIANT_AXES
    from latentsweep.export import export_model
    from latentsweep.layout import BEST_CHECKPOINT, Trial, axis_values, ordered_model_of, trial_dir, variant_name
    from latentsweep.metrics import lookup
    from latentsweep.results import read_results

    study = Path(args.study_dir)
    results = read_results(study)
    config = results.config
    # The model's value of every axis: the option named after the axis (--beta), else the study's first value;
    # the latent size defaults to the variant's answer.
    listed = axis_values(config)
    chosen = {axis.name: coerce(getattr(args, axis.name), axis.value_type, axis.name)
              if axis.name in vars(args) else listed[axis.name][0] for axis in AXES}
    variant = tuple(chosen[name] for name in VARIANT_AXES)
    if variant not in results.answers:
        raise ConfigError(f"{study}: no finished model with {variant_name(variant)}")
    rows, selected = results.rows_of(variant), results.answers[variant].selected
    if "latent_dim" not in vars(args):
        chosen["latent_dim"] = selected
    trial = Trial(**chosen)
    checkpoint = trial_dir(study, trial) / BEST_CHECKPOINT
    if (source := ordered_model_of(config, trial)) is not None:
        raise ConfigError(f"{trial_dir(study, trial)}: latent size {trial.latent_dim} of this preview is the first units "
                          f"of the ordered model {source.name}, not a model of its own: export that one with "
                          f"--latent-dim {source.latent_dim}, or train size {trial.latent_dim} in a study without --ordered")
    if not checkpoint.is_file():
        raise ConfigError(f"{checkpoint}: no trained model for {trial.label()} in this study")
    psnr = lookup(rows, latent_dim=trial.latent_dim, protocol="test_set", cls="all", metric="psnr")
    provenance = {"study": str(study.resolve()), "dataset": config.data.dataset, **trial.axes(),
                  "selected_by_study": trial.latent_dim == selected,
                  "test_psnr_db": psnr[0]["mean"] if psnr else None, "latentsweep": __version__}
    model, spec = _load_model(str(checkpoint), trusted_architectures(args))
    paths = export_model(model, spec, Path(args.out), provenance)
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def _load_model(path: str, trusted: tuple[str, ...] = ()):
    from latentsweep.architectures import model_from_checkpoint
    from latentsweep.train import load_checkpoint

    return model_from_checkpoint(load_checkpoint(path), path, trusted)


def cmd_sample(args: argparse.Namespace) -> int:
    import torch

    from latentsweep.data import to_pictures
    from latentsweep.evaluate import sample_prior
    from latentsweep.plots import sample_grid

    count = number_option(args.num, "num", int, 1)
    seed = number_option(args.seed, "seed", int, 0)
    out = _output_png(args.out)
    model, spec = _load_model(args.checkpoint, trusted_architectures(args))
    images = to_pictures(sample_prior(model, spec.latent_dim, count, seed, torch.device("cpu")))
    sample_grid({spec.latent_dim: images}, out, columns=min(8, count))
    print(f"wrote {out}")
    return 0


def cmd_dimension(args: argparse.Namespace) -> int:
    from latentsweep.data import load_data
    from latentsweep.dimension import ESTIMATOR_LABELS, ESTIMATORS
    from latentsweep.study import data_dimension_rows

    config = build_config({**data_source(args), "val_size": 10})  # the test split alone matters
    dataset, data_dir = load_data(config.data)
    rows = data_dimension_rows(dataset)
    names = ["all", *dataset.class_names]  # rows name classes by their label text
    print(f"Intrinsic dimension of the {dataset.name} test split ({len(dataset.test):,} images from {data_dir}, pixels "
          f"as vectors); 95% interval from 10 random halves")
    print(f"{'class':<12}{'n':>7}" + "".join(f"{ESTIMATOR_LABELS[e]:>24}" for e in ESTIMATORS))
    for name in names:
        found = {row["metric"]: row for row in rows if row["class"] == name}
        if not found:
            continue
        cells = "".join(f"{_interval(found.get('intrinsic_dimension_' + e)):>24}" for e in ESTIMATORS)
        print(f"{name:<12}{next(iter(found.values()))['n']:>7,}" + cells)
    return 0


def _interval(row: dict[str, Any] | None) -> str:
    return "n/a" if row is None else f"{row['mean']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"


def cmd_reconstruct(args: argparse.Namespace) -> int:
    import torch

    from latentsweep.evaluate import reconstruct, representative_indices
    from latentsweep.plots import UNLABELLED_GROUP, reconstruction_grid
    from latentsweep.data import load_data, to_pictures

    per_class = number_option(args.per_class, "per_class", int, 1)
    out = _output_png(args.out)
    # The test split does not depend on the validation size; the smallest one loads the fewest images twice.
    config = build_config({**data_source(args), "val_size": 10})
    model, spec = _load_model(args.checkpoint, trusted_architectures(args))
    dataset, _ = load_data(config.data)
    test = dataset.test
    groups = dataset.class_names or (UNLABELLED_GROUP,)  # unlabelled: one row of the first test images
    classes = len(groups)
    indices = representative_indices(test.labels.numpy(), per_class, classes)
    if len(indices) != classes * per_class:
        raise ConfigError(f"--per-class: some class has fewer than {per_class} test images")
    originals = test.images[torch.as_tensor(indices)]
    recon = reconstruct(model, originals)
    originals, recon = to_pictures(originals), to_pictures(recon)
    reconstruction_grid(originals.reshape(classes, per_class, *originals.shape[1:]),
                        {spec.latent_dim: recon.reshape(classes, per_class, *recon.shape[1:])}, groups, out)
    print(f"wrote {out}")
    return 0


def _output_png(text: str) -> Path:
    path = Path(text)
    if path.suffix.lower() != ".png":
        raise ConfigError(f"--out: {path} should end in .png")
    if not path.parent.is_dir():
        raise ConfigError(f"--out: folder {path.parent} does not exist")
    return path


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if getattr(args, "quiet", False) else logging.INFO,
                        format="%(message)s", stream=sys.stderr)
    try:
        return args.handler(args)
    except LatentsweepError as exc:
        print(f"latentsweep: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("latentsweep: interrupted; run the same command again to resume from the last checkpoint", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
