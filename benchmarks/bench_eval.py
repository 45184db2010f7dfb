"""Time the whole evaluation (reconstruction, generation, likelihood, latent space) of a study's models.

    python benchmarks/bench_eval.py runs/study --data-dir ../shared/datasets/mnist

Uses the trained models of an existing study folder and the study's own settings (the defaults
unless it was run with others). Times the feature classifier's training in a fresh cache and its
cached load, then each model's evaluation, and prints the parts and the total. Writes into a
copy of each run folder, so the study itself is left as it is.

Then two parts of the evaluation against the way they were computed before, in the same run:
the IWAE bound of the largest model decoding 256 latent codes per call (the default on a CPU)
against each chunk's codes in one call, and KID with its kernel cubed by multiplication against
numpy's `** 3`; each pair must give the same values.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from latentsweep.architectures import model_from_checkpoint
from latentsweep.config import from_dict
from latentsweep.evaluate import iwae_nll
from latentsweep.kernels import use_fast_cpu_kernels
from latentsweep.layout import plan_trials, trial_dir
from latentsweep.metrics import kernel_distance
from latentsweep.storage import read_json
from latentsweep.train import BEST_CHECKPOINT, load_checkpoint
from latentsweep.trial import evaluate_trial, load_inputs, set_threads

IWAE_CHUNK_IMAGES = 8  # evaluate_model leaves iwae_nll's images_per_chunk at this default


def timed(work):
    started = time.perf_counter()
    result = work()
    return result, time.perf_counter() - started


def kernel_distance_with_power(a: np.ndarray, b: np.ndarray, subsets: int = 100, subset_size: int = 1000,
                               seed: int = 0) -> tuple[float, float]:
    """metrics.kernel_distance as it was written before: the kernel cubed with numpy's ** 3."""
    size, dim, rng = min(subset_size, len(a), len(b)), a.shape[1], np.random.default_rng(seed)
    values = []
    for _ in range(subsets):
        x, y = a[rng.choice(len(a), size, replace=False)], b[rng.choice(len(b), size, replace=False)]
        k_xx, k_yy, k_xy = ((x @ x.T) / dim + 1) ** 3, ((y @ y.T) / dim + 1) ** 3, ((x @ y.T) / dim + 1) ** 3
        off_diagonal = size * (size - 1)
        values.append((k_xx.sum() - np.trace(k_xx)) / off_diagonal + (k_yy.sum() - np.trace(k_yy)) / off_diagonal
                      - 2 * k_xy.mean())
    return float(np.mean(values)), float(np.std(values))


def compare_parts(study_dir: Path, trial, config, dataset, reference) -> None:
    """The IWAE bound's decoding in slices and KID's cube, each against its former computation."""
    folder = trial_dir(study_dir, trial)
    model, _ = model_from_checkpoint(load_checkpoint(folder / BEST_CHECKPOINT), folder / BEST_CHECKPOINT,
                                     config.model.architecture)
    model = use_fast_cpu_kernels(model)
    images = dataset.test.images[torch.as_tensor(reference.likelihood_indices)]
    codes, chunk_codes = len(images) * config.evaluation.iwae_samples, IWAE_CHUNK_IMAGES * config.evaluation.iwae_samples
    sliced, sliced_seconds = timed(lambda: iwae_nll(model, images, config.evaluation.iwae_samples, seed=0,
                                                    images_per_chunk=IWAE_CHUNK_IMAGES))
    whole, whole_seconds = timed(lambda: iwae_nll(model, images, config.evaluation.iwae_samples, seed=0,
                                                  images_per_chunk=IWAE_CHUNK_IMAGES, decode_rows=chunk_codes))
    assert np.allclose(sliced, whole, rtol=1e-5), "decoding in slices changed the IWAE bound"
    print(f"IWAE bound, latent {trial.latent_dim}, {len(images)} images x K={config.evaluation.iwae_samples}: "
          f"256 codes per call {sliced_seconds:.1f} s ({codes / sliced_seconds:,.0f} codes/s), "
          f"a chunk's {chunk_codes:,} codes per call {whole_seconds:.1f} s "
          f"({codes / whole_seconds:,.0f} codes/s), x{sliced_seconds / whole_seconds:.2f}; "
          f"mean {sliced.mean():.4f} and {whole.mean():.4f} nats")
    features = np.random.default_rng(0).normal(size=(2, len(dataset.test), reference.test_features.shape[1]))
    ours, ours_seconds = timed(lambda: kernel_distance(features[0], features[1]))
    power, power_seconds = timed(lambda: kernel_distance_with_power(features[0], features[1]))
    assert np.allclose(ours, power, rtol=1e-9, atol=1e-12), "the cube by multiplication changed KID"
    print(f"KID on {len(dataset.test):,} x {features.shape[2]} features, 100 subsets of 1,000: cube by multiplication "
          f"{ours_seconds:.2f} s, ** 3 {power_seconds:.2f} s, x{ours_seconds / power_seconds:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study_dir", type=Path)
    parser.add_argument("--data-dir")
    args = parser.parse_args()

    config = from_dict(read_json(args.study_dir / "config.json")["config"])
    if args.data_dir:
        config = config.replace(data_dir=args.data_dir)
    set_threads(config.execution.threads)
    evaluation = config.evaluation
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; generation samples {evaluation.generation_samples}, "
          f"IWAE K={evaluation.iwae_samples} on {evaluation.iwae_images} images, t-SNE {evaluation.tsne_points} points")
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["XDG_CACHE_HOME"] = str(Path(scratch) / "cache")
        started = time.perf_counter()
        load_inputs(config.data, evaluation, config.execution.device)
        print(f"data and feature classifier trained (fresh cache): {time.perf_counter() - started:.1f} s")
        load_inputs.cache_clear()
        started = time.perf_counter()
        inputs = load_inputs(config.data, evaluation, config.execution.device)
        reference_seconds = time.perf_counter() - started
        print(f"data and reference from the cached classifier: {reference_seconds:.1f} s "
              f"(test accuracy {100 * inputs.reference.classifier_record['test_accuracy']:.2f}%)")
        total = reference_seconds
        for trial in plan_trials(config):
            copy = Path(scratch) / trial.name
            shutil.copytree(trial_dir(args.study_dir, trial), copy)
            started = time.perf_counter()
            evaluate_trial(copy, config, inputs, config.model.architecture)
            seconds = time.perf_counter() - started
            total += seconds
            print(f"{trial.label()}: evaluation {seconds:.1f} s")
        print(f"total evaluation of {len(plan_trials(config))} models with a cached classifier: {total:.1f} s")
        largest = max(plan_trials(config), key=lambda trial: trial.latent_dim)
        compare_parts(args.study_dir, largest, config, inputs.dataset, inputs.reference)


if __name__ == "__main__":
    main()
