"""The `latentsweep` command: parses options, builds one validated config, calls the library.

Options may come from a TOML file (`--config study.toml`, keys named like the flags); flags given
on the command line override it. Errors a user can fix are printed on one line, with exit code 2
for bad input and 1 for other failures.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Callable

from latentsweep import __version__
from latentsweep.config import (AXIS_BY_NAME, BUILTIN_ARCHITECTURES, DATASET_NAMES, DEVICES, FIELD_NAMES, PRESETS, SCHEDULES,
                                StudyConfig, build_config, from_dict, load_toml)
from latentsweep.errors import ConfigError, LatentsweepError
from latentsweep.storage import FolderLock

log = logging.getLogger("latentsweep")


ARCHITECTURE_HELP = (f"the network: {' or '.join(BUILTIN_ARCHITECTURES)} (built in: the conv VAE, or the 784-400-z MLP "
                     "of pytorch/examples), or your own as package.module:function, where function(latent_dim, "
                     "image_shape) returns an nn.Module with encode(x) -> (mean, log_var) and decode(z) -> logits "
                     "(see examples/my_vae.py; the module must be importable, e.g. via PYTHONPATH)")
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


# Which images, read how: the options every command that loads data takes (run, train, reconstruct, dimension).
DATA_SOURCE_KEYS = ("data_dir", "dataset", "image_size", "channels", "verify_data")


def add_data_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    add_data_source_options(group)
    group.add_argument("--val-size", help="validation images taken from the training split, stratified (default 5000)")
    group.add_argument("--train-subset", help="train on a stratified subset of N images (default: all; preset quick: "
                       "10000; all, with a warning, where fewer remain)")
    group.add_argument("--split-seed", help="seed of the validation split and subset (default 0)")


def add_data_source_options(group: argparse._ActionsContainer) -> None:
    """The options named in DATA_SOURCE_KEYS."""
    group.add_argument("--data-dir", help="folder with the data set: for mnist and fashion-mnist the four IDX files (.gz "
                       "or not), for cifar10 cifar-10-binary.tar.gz or the extracted cifar-10-batches-bin/, either also in a "
                       "sub-folder named after the data set; with --dataset folder, the folder of images; default: "
                       "$LATENTSWEEP_DATA_DIR, else ~/.cache/latentsweep/datasets/NAME, where a missing data set is "
                       "downloaded and verified")
    group.add_argument("--dataset", help=f"one of {', '.join(DATASET_NAMES)} (default mnist); folder: your own PNG or "
                       "JPEG images of any size, grey or RGB, in --data-dir: listed in its labels.csv with columns file,label "
                       "and optionally split (train or test; without it a stratified seventh of the images is the test "
                       "set), or without labels.csv every PNG and JPEG under the folder, unlabelled (then no per-class "
                       "results and no classifier-based generation measures)")
    group.add_argument("--image-size", help="with --dataset folder: resize every image to N x N or HxW pixels (Pillow's "
                       "antialiased Lanczos filter); default: every image must have the first's size")
    group.add_argument("--channels", help="with --dataset folder: 1 converts every image to grey (ITU-R 601-2 luma), 3 to "
                       "RGB; default: every image must have the first's channels")
    group.add_argument("--no-verify-data", dest="verify_data", action="store_false",
                       help="accept data files that differ from the published ones (MNIST's SHA-256, CIFAR-10's MD5 and "
                       "record counts)")


def add_training_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("training")
    group.add_argument("--preset", help=f"quick or full (default full): {'; '.join(f'{k}: ' + ', '.join(f'{a}={b}' for a, b in v.items()) for k, v in PRESETS.items())}")
    group.add_argument("--epochs", help="training epochs per model (default: from the preset)")
    group.add_argument("--batch-size", help="training batch size (default: from the preset)")
    group.add_argument("--learning-rate", help="Adam learning rate, the peak with a cosine schedule (default: from the preset)")
    group.add_argument("--schedule", help=f"learning rate over the run: {' or '.join(SCHEDULES)} (a linear warm-up over "
                       "--warmup-fraction of the steps, then a half cosine to zero); default: from the preset")
    group.add_argument("--warmup-fraction", help="with --schedule cosine: the share of the steps spent warming up "
                       "(default: from the preset)")
    group.add_argument("--binarize", action="store_true", help="dynamically binarised MNIST: training batches re-drawn as "
                       "Bernoulli(intensity), validation and test binarised once; makes likelihoods comparable with the literature")
    group.add_argument("--device", help=f"one of {', '.join(DEVICES)} (default auto: CUDA when available)")
    group.add_argument("--precision", help="fp32 (default) or bf16: training's forward pass under bfloat16 autocast, "
                       "whether it pays on a CPU depends on its bf16 instructions (benchmarks/bench_cpu_levers.py measures "
                       "it); weights, loss and evaluation stay float32")
    group.add_argument("--tensorboard", action="store_true", help="log losses, sample and reconstruction grids per epoch "
                       "and final metrics with hyperparameters to OUT/tensorboard/ (needs the tensorboard extra; "
                       "view with: tensorboard --logdir OUT/tensorboard)")
    group.add_argument("--threads", help="CPU threads for torch (default: torch's choice, the physical cores; on a local Dask cluster, the cores shared out among the workers)")


def add_evaluation_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("evaluation")
    group.add_argument("--representatives-per-class", help="representative test images per class (default 10: the first 10 of each class)")
    group.add_argument("--num-samples", help="images decoded from the prior per model for the figures (default 64)")
    group.add_argument("--eval-batch-size", help="evaluation batch size (default 1000)")
    group.add_argument("--generation-samples", help="prior samples per model for FD, KID and the classifier scores (default 10000)")
    group.add_argument("--iwae-samples", help="importance samples K per image for the IWAE likelihood bound (default 1000)")
    group.add_argument("--iwae-images", help="test images for the IWAE bound, the first of each class in equal numbers (default 500)")
    group.add_argument("--tsne-points", help="test images in the t-SNE view, the first of each class in equal numbers (default 2000)")
    group.add_argument("--classifier-epochs", help="training epochs of the feature classifier, cached per setting (default 6)")


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
    run.add_argument("--out", help="study folder (default runs/study)")
    run.add_argument("--latent-dims", help=f"comma-separated latent sizes (default {default_values('latent_dim')})")
    run.add_argument("--seeds", help="comma-separated training seeds (default: from the preset; full: 0,1,2, so the "
                     "intervals and the selection bootstrap cover training randomness; quick: 0)")
    run.add_argument("--betas", help=f"comma-separated weights of the KL term in the training loss (default {default_values('beta')}, the plain "
                     "VAE); likelihoods are always reported for the plain VAE, so they compare across betas")
    run.add_argument("--architecture", help=ARCHITECTURE_HELP + f"; comma-separated to compare several (default {default_values('architecture')})")
    run.add_argument("--tolerance-db", help="selection rule: the smallest latent size within this many dB of the best "
                     "mean test-set PSNR (default 0.5)")
    run.add_argument("--fd-tolerance", help="combined rule: prior samples' Fréchet distance within this fraction of the "
                     "best size's (default 0.10)")
    run.add_argument("--refine", action=argparse.BooleanOptionalAction, help="after the grid, train the sizes between "
                     "its answer and the largest smaller grid size that fails (bisection, every seed, ordinary trials), "
                     "until the smallest adequate size is known to one dimension; the grid's best PSNR and lowest "
                     "Fréchet distance stay the reference (default: on in the full preset, off in quick)")
    run.add_argument("--dry-run", action="store_true", help="print the plan (trials, data, what is already done) and "
                     "its estimated time, from a few timed training steps on this machine; train nothing")
    group = run.add_argument_group("execution")
    group.add_argument("--executor", help="local (default: worker processes on this machine, one per core, at most one "
                       "per trial, each with its share of the cores as torch threads) or dask (each trial a task on "
                       "Dask distributed; needs the dask extra)")
    group.add_argument("--scheduler", help="with --executor dask: address of a running scheduler, e.g. tcp://HOST:8786 "
                       "(default: start a local cluster on 127.0.0.1)")
    group.add_argument("--workers", help="worker processes on this machine, local or a local Dask cluster (default: "
                       "one per core, at most one per trial; 1 runs the trials one after another in this process)")
    add_data_options(run)
    add_training_options(run)
    add_evaluation_options(run)

    train = command("train", "Train and evaluate one model into a run folder.", cmd_train)
    train.add_argument("--config", help="TOML file of options; flags override it")
    train.add_argument("--out", required=True, help="run folder for this model")
    train.add_argument("--latent-dim", required=True, help="latent size")
    train.add_argument("--seed", help=f"training seed (default {default_values('seed')})")
    train.add_argument("--beta", help=f"weight of the KL term in the training loss (default {default_values('beta')})")
    train.add_argument("--architecture", help=ARCHITECTURE_HELP + f" (default {default_values('architecture')})")
    train.add_argument("--resume", action="store_true", help="continue from the folder's last checkpoint")
    add_data_options(train)
    add_training_options(train)
    add_evaluation_options(train)

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
    add_data_source_options(reconstruct.add_argument_group("data (as the model was trained on)"))
    reconstruct.add_argument("--architecture", help=TRUST_HELP)

    dimension = command("dimension", "Print the intrinsic dimension of a data set's test split, overall and per class, "
                        "by scikit-dimension's TwoNN and MLE (Levina-Bickel, K = 20), each with a 95% interval from 10 "
                        "random halves; trains nothing. Cached per data set, as 'run' uses it.", cmd_dimension)
    add_data_source_options(dimension.add_argument_group("data"))
    return parser


STUDY_KEYS = set(FIELD_NAMES)


def config_from_args(args: argparse.Namespace, **forced: Any) -> StudyConfig:
    values: dict[str, Any] = load_toml(args.config) if getattr(args, "config", None) else {}
    values.update({key: value for key, value in vars(args).items() if key in STUDY_KEYS})
    values.update(forced)
    return build_config(values)


def data_source(args: argparse.Namespace) -> dict[str, Any]:
    """The data-source options given on the command line (DATA_SOURCE_KEYS), as build_config takes them."""
    return {key: getattr(args, key) for key in DATA_SOURCE_KEYS if key in vars(args)}


def int_option(text: str, option: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{option}: {text!r} is not an integer") from None
    if value < minimum:
        raise ConfigError(f"{option}: must be at least {minimum}, got {value}")
    return value


def float_option(text: str, option: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{option}: {text!r} is not a number") from None
    if not 0 <= value < float("inf"):
        raise ConfigError(f"{option}: must be non-negative and finite, got {value}")
    return value


def add_log_file(path: Path) -> None:
    from latentsweep.trial import log_file_handler

    logging.getLogger().addHandler(log_file_handler(path))


def cmd_run(args: argparse.Namespace) -> int:
    from latentsweep.layout import STUDY_LOG, prepare_study_dir
    from latentsweep.study import execute
    from latentsweep.data import locate_data

    config = config_from_args(args)
    locate_data(config.data)  # fail on bad data before creating --out
    if getattr(args, "dry_run", False):
        from latentsweep.plan import dry_run

        print("\n".join(dry_run(config)))
        return 0
    prepare_study_dir(config.out, config)
    with FolderLock(config.out):
        add_log_file(config.out / STUDY_LOG)
        result = execute(config)
    print_summary(config.out)
    failed = [t for t in result["trials"] if t["status"] != "done"]
    return 1 if failed else 0


def print_summary(study_dir: Path) -> None:
    """A plain table of the headline numbers, readable in a terminal and in a log."""
    from latentsweep.layout import EXPLORER_FILE, REPORT_HTML, REPORT_MD, variant_name
    from latentsweep.metrics import REGISTRY, headline_metrics, lookup
    from latentsweep.results import read_results

    results = read_results(study_dir)
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
    print(f"Report: {study_dir / REPORT_HTML} and {study_dir / REPORT_MD}; every size live: {study_dir / EXPLORER_FILE}")


def cmd_train(args: argparse.Namespace) -> int:
    from latentsweep.layout import DONE_MARKER, plan_trials
    from latentsweep.study import check_architectures
    from latentsweep.train import LAST_CHECKPOINT
    from latentsweep.trial import run_trial, set_threads, study_data, study_inputs

    latent_dim = int_option(args.latent_dim, "--latent-dim", 1)
    seed = int_option(getattr(args, "seed", default_values("seed")), "--seed", 0)
    beta = float_option(getattr(args, "beta", default_values("beta")), "--beta")
    resume = getattr(args, "resume", False)
    config = config_from_args(args, latent_dims=(latent_dim,), seeds=(seed,), betas=(beta,))
    if len(config.model.architecture) != 1:
        raise ConfigError("--architecture: 'train' trains one model; name one architecture")
    trial, = plan_trials(config)  # one value of every axis: the one model
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
    samples = int_option(args.samples, "--samples", 1)
    run_config = read_json(folder / CONFIG_FILE)
    saved = from_dict(run_config["study"])
    config = saved.replace(**{key: getattr(args, key) for key in ("data_dir", "device") if key in vars(args)})
    set_threads(config.execution.threads)
    device = resolve_device(config.execution.device)
    dataset, _ = load_data(config.data)
    binarize_scored_images(dataset, config.data)
    count = len(dataset.test) if args.images == "all" else int_option(args.images, "--images", 1)
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
    from latentsweep.config import AXES, VARIANT_AXES, axis_value_type, coerce
    from latentsweep.export import export_model
    from latentsweep.layout import BEST_CHECKPOINT, Trial, axis_values, trial_dir, variant_name
    from latentsweep.metrics import lookup
    from latentsweep.results import read_results

    study = Path(args.study_dir)
    results = read_results(study)
    config = results.config
    # The model's value of every axis: the option named after the axis (--beta), else the study's first value;
    # the latent size defaults to the variant's answer.
    listed = axis_values(config)
    chosen = {axis.name: coerce(getattr(args, axis.name), axis_value_type(axis.name), axis.name)
              if axis.name in vars(args) else listed[axis.name][0] for axis in AXES}
    variant = tuple(chosen[name] for name in VARIANT_AXES)
    if variant not in results.answers:
        raise ConfigError(f"{study}: no finished model with {variant_name(variant)}")
    rows, selected = results.rows_of(variant), results.answers[variant].selected
    if "latent_dim" not in vars(args):
        chosen["latent_dim"] = selected
    trial = Trial(**chosen)
    checkpoint = trial_dir(study, trial) / BEST_CHECKPOINT
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

    count = int_option(args.num, "--num", 1)
    seed = int_option(args.seed, "--seed", 0)
    out = _output_png(args.out)
    model, spec = _load_model(args.checkpoint, trusted_architectures(args))
    images = to_pictures(sample_prior(model, spec.latent_dim, count, seed, torch.device("cpu")))
    sample_grid({spec.latent_dim: images}, out, columns=min(8, count))
    print(f"wrote {out}")
    return 0


def cmd_dimension(args: argparse.Namespace) -> int:
    from latentsweep.data import load_data
    from latentsweep.dimension import ESTIMATORS, MLE_NEIGHBOURS
    from latentsweep.study import data_dimension_rows

    config = build_config({**data_source(args), "val_size": 10})  # the test split alone matters
    dataset, data_dir = load_data(config.data)
    rows = data_dimension_rows(dataset)
    names = ["all", *map(str, range(len(dataset.class_names)))]
    print(f"Intrinsic dimension of the {dataset.name} test split ({len(dataset.test):,} images from {data_dir}, pixels "
          f"as vectors); 95% interval from 10 random halves")
    print(f"{'class':<12}{'n':>7}" + "".join(f"{'TwoNN' if e == 'twonn' else f'MLE (K={MLE_NEIGHBOURS})':>24}" for e in ESTIMATORS))
    for name in names:
        found = {row["metric"]: row for row in rows if row["class"] == name}
        if not found:
            continue
        label = "all" if name == "all" else dataset.class_names[int(name)]
        cells = "".join(f"{_interval(found.get('intrinsic_dimension_' + e)):>24}" for e in ESTIMATORS)
        print(f"{label:<12}{next(iter(found.values()))['n']:>7,}" + cells)
    return 0


def _interval(row: dict[str, Any] | None) -> str:
    return "n/a" if row is None else f"{row['mean']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"


def cmd_reconstruct(args: argparse.Namespace) -> int:
    import torch

    from latentsweep.evaluate import reconstruct, representative_indices
    from latentsweep.plots import UNLABELLED_GROUP, reconstruction_grid
    from latentsweep.data import load_data, to_pictures

    per_class = int_option(args.per_class, "--per-class", 1)
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
