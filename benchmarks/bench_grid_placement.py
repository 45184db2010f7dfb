"""The fixed grid against --latent-dims auto on generated images of known dimension (issue 31).

    python benchmarks/bench_grid_placement.py run DATA_ROOT OUT_ROOT --dimensions 6,40 --presets quick,full
    python benchmarks/bench_grid_placement.py table STUDY_DIR...

run: writes DATA_ROOT/dimD (once) as 14,000 unlabelled 16x16 grey PNGs on a D-dimensional manifold
(tests/synthetic_images.py --dimension D), then for each preset runs, one after the other as fresh processes,
`latentsweep run --dataset folder --val-size 1000` with the fixed grid (--latent-dims 5,10,15,20) and with the
folder's default, auto, into OUT_ROOT/gD_{fixed,auto}_PRESET, timing each; then prints the table.
table: one row per finished study folder, from its files alone: how the grid was placed, every size trained
(grid, the sizes --extend added, the probes), the trials, retrained and left-out models, the answer, whether it
is a lower bound, FONDUE's choice and the study's wall time (summary.json). Name the CPU beside the figures.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from synthetic_images import manifold_images, write_image_folder  # noqa: E402

from latentsweep.layout import EXCLUDED_KEY, EXTENSION_KEY, GRID_KEY, PROBES_KEY, RETRAINED_KEY  # noqa: E402
from latentsweep.metrics import combine_seeds, variant_rows  # noqa: E402
from latentsweep.results import read_results  # noqa: E402
from latentsweep.selection import fondue_choice, overall_code_dimensions  # noqa: E402

IMAGES, SIDE = 14_000, 16


def study_row(folder: Path) -> str:
    results = read_results(folder)
    info = json.loads((folder / "config.json").read_text())
    summary = json.loads((folder / "summary.json").read_text())
    (variant, answer), = results.answers.items()
    combined = variant_rows(combine_seeds(results.rows), variant)
    fondue = fondue_choice(*overall_code_dimensions(combined))
    probes = sorted({probe["latent_dim"] for probe in info.get(PROBES_KEY, [])})
    grid = info["config"]["model"]["latent_dims"]
    extension = info.get(EXTENSION_KEY, [])
    placed = (f"auto (d = {info[GRID_KEY]['dimension']})" if GRID_KEY in info else "fixed")
    trials = len(list((folder / "models").iterdir()))
    lower = any(line.startswith("Lower bound") for line in answer.headline)
    return " | ".join([
        folder.name, placed, ", ".join(str(s) for s in grid if s not in extension),
        ", ".join(map(str, extension)) or "none", ", ".join(map(str, probes)) or "none", str(trials),
        str(len(info.get(RETRAINED_KEY, []))), str(len(info.get(EXCLUDED_KEY, []))),
        f"**{answer.selected}**" + (" (lower bound)" if lower else ""),
        "n/a" if fondue is None else str(fondue.size), f"{summary['wall_seconds'] / 60:.1f} min"])


def print_table(folders: list[Path]) -> None:
    models = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
              if line.startswith("model name")] if Path("/proc/cpuinfo").exists() else []
    print(f"CPU: {models[0] if models else platform.processor() or platform.machine()}")
    print("| study | grid | grid sizes | --extend added | probes | trials | retrained | left out | answer | FONDUE | wall |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for folder in folders:
        print("| " + study_row(folder) + " |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run")
    run.add_argument("data_root", type=Path)
    run.add_argument("out_root", type=Path)
    run.add_argument("--dimensions", default="6,40")
    run.add_argument("--presets", default="quick,full")
    table = commands.add_parser("table")
    table.add_argument("folders", type=Path, nargs="+")
    args = parser.parse_args()
    if args.command == "table":
        print_table(args.folders)
        return 0
    folders = []
    for dimension in map(int, args.dimensions.split(",")):
        data = args.data_root / f"dim{dimension}"
        if not data.exists():
            write_image_folder(data, manifold_images(IMAGES, SIDE, SIDE, 1, dimension), None)
        for preset in args.presets.split(","):
            for grid, extra in (("fixed", ["--latent-dims", "5,10,15,20"]), ("auto", [])):
                out = args.out_root / f"g{dimension}_{grid}_{preset}"
                started = time.perf_counter()
                subprocess.run(["latentsweep", "-q", "run", "--dataset", "folder", "--data-dir", str(data), "--out",
                                str(out), "--preset", preset, "--val-size", "1000", *extra], check=True)
                print(f"{out.name}: {time.perf_counter() - started:.0f} s", flush=True)
                folders.append(out)
    print_table(folders)
    return 0


if __name__ == "__main__":
    sys.exit(main())
