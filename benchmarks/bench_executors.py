"""Wall time of a whole study run one trial after another (local) or as parallel Dask tasks.

    python benchmarks/bench_executors.py --data-dir ../shared/datasets/mnist              # quick preset
    python benchmarks/bench_executors.py --data-dir ../shared/datasets/mnist --preset full

Each configuration is a fresh `latentsweep run` process writing to an empty folder (the feature
classifier is trained once beforehand, so neither pays for it). local: the default executor with
torch's default threads (one per core). dask: `--executor dask`, a local cluster of one worker per
core, each with one torch thread. Both runs train the same four models; the printed figures are
wall times measured here and their ratio. Run on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from latentsweep.data import DATASETS, resolve_data_dir

CONFIGS = {"one-at-a-time": ["--workers", "1"], "local": [], "dask": ["--executor", "dask"]}


def timed_run(options: list[str], folder: Path, data_dir: Path, preset: str) -> float:
    command = [sys.executable, "-m", "latentsweep", "-q", "run", "--preset", preset, "--out", str(folder),
               "--data-dir", str(data_dir), *options]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="MNIST folder (default: as for latentsweep)")
    parser.add_argument("--preset", default="quick", choices=("quick", "full"))
    args = parser.parse_args()
    data_dir = resolve_data_dir(DATASETS["mnist"], args.data_dir)
    with tempfile.TemporaryDirectory() as scratch:
        # Warm the classifier cache with a one-epoch, one-size run, so neither timed run trains it.
        timed_run(["--latent-dims", "2", "--epochs", "1", "--train-subset", "1000"], Path(scratch) / "warm", data_dir,
                  args.preset)
        seconds = {name: timed_run(options, Path(scratch) / name, data_dir, args.preset)
                   for name, options in CONFIGS.items()}
    print(f"latentsweep run --preset {args.preset} (latent sizes 5,10,15,20), wall time:")
    for name, value in seconds.items():
        print(f"  {name:<6} {value:7.1f} s")
    print(f"  dask / local: x{seconds['dask'] / seconds['local']:.2f}")


if __name__ == "__main__":
    main()
