"""Wall time, peak memory and the answer of a study on your own kind of images (issue 24).

    python benchmarks/bench_image_folder.py quick DATA OUT    # a quick study on a generated 10,000-image 32x32 RGB folder
    python benchmarks/bench_image_folder.py cifar DATA OUT    # --dry-run of a full study on CIFAR-10-sized data

quick: writes DATA (once) as 10,000 generated 3x32x32 PNGs with labels.csv (tests/synthetic_images.py:
ten classes, a coloured block each) and runs `latentsweep run --dataset folder --preset quick --out OUT`.
cifar: writes DATA (once) as the six files of CIFAR-10's binary version at their official size, 50,000
training and 10,000 test records of generated images (the real archive cannot be downloaded here; the
tool reads and checks them as it would the real ones), and runs the default (full) study's `--dry-run`.

Either way the command is a fresh process; its whole process tree's resident memory is sampled every
0.2 s (psutil), and the peak of the tree's total is printed with the wall time and, for a study, the
selected size from results.csv. Name the CPU beside the figures when quoting them.
"""

from __future__ import annotations

import argparse
import csv
import platform
import subprocess
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from synthetic_images import synthetic_images, write_cifar_folder, write_image_folder  # noqa: E402


def tree_rss(process: psutil.Process) -> int:
    """Resident bytes of a process and all its descendants (0 for any that ended meanwhile)."""
    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            pass
    return total


def measured(command: list[str]) -> tuple[float, int, int]:
    """(wall seconds, peak total resident bytes of the process tree, exit status) of `command`."""
    started = time.perf_counter()
    child = subprocess.Popen(command)
    watched, peak = psutil.Process(child.pid), 0
    while child.poll() is None:
        try:
            peak = max(peak, tree_rss(watched))
        except psutil.Error:
            pass
        time.sleep(0.2)
    return time.perf_counter() - started, peak, child.returncode


def selected_sizes(study: Path) -> str:
    """The summary's answer line from results.csv: PSNR per size, whole test set."""
    with (study / "results.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if (r["protocol"], r["class"], r["metric"]) == ("test_set", "all", "psnr")]
    return ", ".join(f"{r['latent_dim']}: {float(r['mean']):.2f} dB" for r in sorted(rows, key=lambda r: int(r["latent_dim"])))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=("quick", "cifar"))
    parser.add_argument("data", type=Path, help="where the generated data set is (written when missing)")
    parser.add_argument("out", type=Path, help="the study folder")
    parser.add_argument("extra", nargs="*", help="further options for latentsweep run (after --)")
    args = parser.parse_args()
    if args.kind == "quick":
        if not (args.data / "labels.csv").is_file():
            images, labels = synthetic_images(10_000, 32, 32, 3, seed=0)
            write_image_folder(args.data, images, labels)
        options = ["--dataset", "folder", "--preset", "quick"]
    else:
        if not (args.data / "cifar-10-batches-bin" / "test_batch.bin").is_file():
            write_cifar_folder(args.data, 10_000)
        options = ["--dataset", "cifar10", "--dry-run"]
    command = [sys.executable, "-m", "latentsweep", "run", "--data-dir", str(args.data), "--out", str(args.out),
               *options, *args.extra]
    print("$ " + " ".join(command), flush=True)
    seconds, peak, status = measured(command)
    print(f"{args.kind}: exit {status}, wall {seconds:.0f} s, peak resident memory of the process tree "
          f"{peak / 2**30:.2f} GiB; CPU {cpu_model()}, {psutil.cpu_count()} cores")
    if args.kind == "quick" and status == 0:
        print(f"whole-test-set PSNR: {selected_sizes(args.out)}")
    return status


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    sys.exit(main())
