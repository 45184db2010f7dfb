"""Time the whole evaluation (reconstruction, generation, likelihood, latent space) of a study's models.

    python benchmarks/bench_eval.py runs/study --data-dir ../shared/datasets/mnist

Uses the trained models of an existing study folder and the study's own settings (the defaults
unless it was run with others). Times the feature classifier's training in a fresh cache and its
cached load, then each model's evaluation, and prints the parts and the total. Writes into a
copy of each run folder, so the study itself is left as it is.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from latentsweep.config import build_config
from latentsweep.storage import read_json
from latentsweep.sweep import evaluate_trial, load_study_data, plan_trials, prepare_evaluation, setup_device, trial_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study_dir", type=Path)
    parser.add_argument("--data-dir")
    args = parser.parse_args()

    saved = read_json(args.study_dir / "config.json")["config"]
    config = build_config({**saved, **({"data_dir": args.data_dir} if args.data_dir else {})})
    device = setup_device(config)
    dataset, _ = load_study_data(config)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; generation samples {config.generation_samples}, "
          f"IWAE K={config.iwae_samples} on {config.iwae_images} images, t-SNE {config.tsne_points} points")
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["XDG_CACHE_HOME"] = str(Path(scratch) / "cache")
        started = time.perf_counter()
        prepare_evaluation(config, dataset, device)
        print(f"feature classifier trained (fresh cache): {time.perf_counter() - started:.1f} s")
        dataset, _ = load_study_data(config)
        started = time.perf_counter()
        reference = prepare_evaluation(config, dataset, device)
        reference_seconds = time.perf_counter() - started
        print(f"reference from the cached classifier: {reference_seconds:.1f} s "
              f"(test accuracy {100 * reference.classifier_record['test_accuracy']:.2f}%)")
        total = reference_seconds
        for trial in plan_trials(config):
            copy = Path(scratch) / trial.name
            shutil.copytree(trial_dir(args.study_dir, trial), copy)
            started = time.perf_counter()
            evaluate_trial(copy, config, dataset, device, reference)
            seconds = time.perf_counter() - started
            total += seconds
            print(f"latent {trial.latent_dim:>3} seed {trial.seed}: evaluation {seconds:.1f} s")
        print(f"total evaluation of {len(plan_trials(config))} models with a cached classifier: {total:.1f} s")


if __name__ == "__main__":
    main()
