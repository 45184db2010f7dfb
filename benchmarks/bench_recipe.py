"""Time to quality: the whole-test-set PSNR (and negative ELBO) a recipe reaches against training time.

    python benchmarks/bench_recipe.py --data-dir ../shared/datasets/mnist                  # screen, sizes 5 and 15
    python benchmarks/bench_recipe.py --data-dir ../shared/datasets/mnist --confirm cosine-2e-3-b64:10,12 --sizes 5,10,15,20

Every run trains the default ConvVAE (seed 0) on all 55,000 training images with latentsweep's own
training loop (train.train_model, validation and checkpoints included, as in a study) and, after
each epoch (at its last for a decaying schedule), scores the current weights on the 10,000 test
images the way the study does (evaluate.per_image_scores: posterior-mean PSNR, negative ELBO). The
cost of a run is its history's seconds: training and validation, not this extra scoring.

A constant rate's curve over epochs is every budget at once; a schedule that decays over the run is
a different run for each budget, so those recipes are run once per budget. Runs go two at a time,
each in its own process with one torch thread, as the study's default arrangement runs trials on a
2-core machine (set --workers to the cores of another). Each finished run is kept in OUT/runs/ and
skipped when the script is run again, so an interrupted benchmark loses at most the runs under way.

It prints one table (per recipe and budget: seconds and PSNR and negative ELBO per size, and what
today's recipe reached in the same seconds) and writes OUT/recipes.csv and OUT/psnr_vs_seconds.png
(PSNR against training seconds, one line per recipe, one panel per size). Run on an idle machine.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import json
import multiprocessing
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Today's full preset (constant 1e-3, batch 128, 30 epochs) and candidates: warm-up plus cosine decay
# at higher peak rates, and a larger batch with a scaled rate. Budgets in epochs.
RECIPES = {
    "today": dict(schedule="constant", learning_rate=1e-3, batch_size=128, warmup_fraction=0.0, budgets=(30,)),
    "cosine-3e-3": dict(schedule="cosine", learning_rate=3e-3, batch_size=128, warmup_fraction=0.05, budgets=(8, 12, 16)),
    "cosine-5e-3": dict(schedule="cosine", learning_rate=5e-3, batch_size=128, warmup_fraction=0.05, budgets=(8, 12, 16)),
    "cosine-2e-3-b64": dict(schedule="cosine", learning_rate=2e-3, batch_size=64, warmup_fraction=0.05, budgets=(8, 12, 16)),
    "cosine-6e-3-b256": dict(schedule="cosine", learning_rate=6e-3, batch_size=256, warmup_fraction=0.05, budgets=(8, 12, 16)),
}
FIELDS = ["recipe", "latent_dim", "budget", "epoch", "seconds", "test_psnr", "test_neg_elbo", "val_loss"]


@dataclass(frozen=True)
class Job:
    recipe: str
    latent_dim: int
    budget: int  # epochs in the run (the schedule's length)
    schedule: str
    learning_rate: float
    batch_size: int
    warmup_fraction: float

    @property
    def name(self) -> str:
        return f"{self.recipe}_latent{self.latent_dim:03d}_epochs{self.budget:03d}"


def run_job(job: Job, data_dir: str, threads: int) -> list[dict]:
    """Train one recipe at one budget; the test PSNR and negative ELBO after every epoch."""
    import torch

    from latentsweep.architectures import ModelSpec
    from latentsweep.model import MNIST_SHAPE
    from latentsweep.config import DataConfig
    from latentsweep.evaluate import per_image_scores
    from latentsweep.train import TrainConfig, train_model
    from latentsweep.data import load_data
    from latentsweep.trial import set_threads

    set_threads(threads)
    dataset, _ = load_data(DataConfig(data_dir=data_dir))
    test_images = dataset.test.images
    scores: list[dict] = []

    def score(row: dict, model) -> None:
        if job.schedule != "constant" and row["epoch"] != job.budget:
            return  # a decaying schedule's run counts at its end; a constant rate's at every epoch
        values = per_image_scores(model, test_images, 1000, 0)
        scores.append({"epoch": int(row["epoch"]), "test_psnr": float(values["psnr"].mean()),
                       "test_neg_elbo": float(values["neg_elbo"].mean()), "val_loss": row["val_loss"]})

    config = TrainConfig(epochs=job.budget, batch_size=job.batch_size, learning_rate=job.learning_rate,
                         schedule=job.schedule, warmup_fraction=job.warmup_fraction)
    with tempfile.TemporaryDirectory() as folder:
        result = train_model(Path(folder), ModelSpec("conv", job.latent_dim, MNIST_SHAPE), config, dataset.train.images,
                             dataset.val.images, torch.device("cpu"), resume=False, on_epoch_end=score,
                             show_progress=False)
    seconds = np.cumsum([row["seconds"] for row in result.history])
    return [{"recipe": job.recipe, "latent_dim": job.latent_dim, "budget": job.budget,
             "seconds": float(seconds[row["epoch"] - 1]), **row} for row in scores]


def plan(recipes: dict[str, dict], sizes: list[int]) -> list[Job]:
    jobs = [Job(name, size, budget, r["schedule"], r["learning_rate"], r["batch_size"], r["warmup_fraction"])
            for name, r in recipes.items() for size in sizes for budget in r["budgets"]]
    return sorted(jobs, key=lambda job: -job.budget)  # longest first, so the two workers finish together


def run_all(jobs: list[Job], data_dir: str, out: Path, workers: int) -> list[dict]:
    """Every job's rows, from OUT/runs/NAME.json where an earlier invocation finished it."""
    runs = out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    todo = [job for job in jobs if not (runs / f"{job.name}.json").is_file()]
    print(f"{len(jobs)} runs, {len(jobs) - len(todo)} already done; {len(todo)} to go, {workers} at a time", flush=True)
    started = time.perf_counter()
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(run_job, job, data_dir, 1): job for job in todo}
        for future in concurrent.futures.as_completed(futures):
            job = futures[future]
            rows = future.result()
            temporary = runs / f".{job.name}.json"
            temporary.write_text(json.dumps(rows))
            temporary.replace(runs / f"{job.name}.json")
            print(f"  {job.name}: PSNR {rows[-1]['test_psnr']:.2f} dB after {rows[-1]['seconds']:.0f} s "
                  f"({time.perf_counter() - started:.0f} s since start)", flush=True)
    return [row for job in jobs for row in json.loads((runs / f"{job.name}.json").read_text())]


def today_at(rows: list[dict], latent_dim: int, seconds: float) -> float | None:
    """Today's recipe's test PSNR after `seconds` of training, interpolated along its curve."""
    curve = sorted((r["seconds"], r["test_psnr"]) for r in rows if r["recipe"] == "today" and r["latent_dim"] == latent_dim)
    if not curve or seconds > curve[-1][0]:
        return None
    return float(np.interp(seconds, *zip(*curve)))


def summary_rows(rows: list[dict], sizes: list[int]) -> list[list[str]]:
    """Per recipe and budget: the final epoch's seconds, PSNR and negative ELBO per size, and today's PSNR at those seconds."""
    table = []
    for name in RECIPES:
        budgets = sorted({r["budget"] for r in rows if r["recipe"] == name})
        if name == "today":  # its curve: every fifth epoch stands for a budget of that many epochs
            budgets = sorted({r["epoch"] for r in rows if r["recipe"] == name and r["epoch"] % 5 == 0})
        for budget in budgets:
            cells = [name, str(budget)]
            for size in sizes:
                row = next((r for r in rows if r["recipe"] == name and r["latent_dim"] == size and r["epoch"] == budget
                            and (name == "today" or r["budget"] == budget)), None)
                if row is None:
                    cells += ["", "", "", ""]
                    continue
                reference = today_at(rows, size, row["seconds"])
                cells += [f"{row['seconds']:.0f}", f"{row['test_psnr']:.2f}", f"{row['test_neg_elbo']:.1f}",
                          "" if reference is None else f"{reference:.2f}"]
            table.append(cells)
    return table


def figure(rows: list[dict], sizes: list[int], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6 * len(sizes), 4.2))
    axes = np.atleast_1d(fig.subplots(1, len(sizes)))
    for axis, size in zip(axes, sizes):
        for name in RECIPES:
            mine = [r for r in rows if r["recipe"] == name and r["latent_dim"] == size]
            if not mine:
                continue
            if name == "today":
                points = sorted((r["seconds"], r["test_psnr"]) for r in mine)
                axis.plot(*zip(*points), color="black", label="today: constant 1e-3, batch 128 (curve over epochs)")
            else:
                points = sorted((r["seconds"], r["test_psnr"]) for r in mine if r["epoch"] == r["budget"])
                axis.plot(*zip(*points), marker="o", label=f"{name} at {', '.join(str(r['budget']) for r in sorted(mine, key=lambda r: r['seconds']) if r['epoch'] == r['budget'])} epochs")
        axis.set_title(f"latent size {size}")
        axis.set_xlabel("training seconds (one thread, validation included)")
        axis.set_ylabel("whole-test-set PSNR, dB")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="the MNIST folder")
    parser.add_argument("--out", default="runs/bench_recipe", help="where runs, the table and the figure go")
    parser.add_argument("--sizes", default="5,15", help="latent sizes (default 5,15: the screen)")
    parser.add_argument("--recipes", default=",".join(RECIPES), help="recipes to run (default: all)")
    parser.add_argument("--confirm", help="RECIPE:EPOCHS[,EPOCHS...]: that recipe at those budgets and today's recipe, "
                        "no other (with --sizes 5,10,15,20 to confirm a screen's winner at every size)")
    parser.add_argument("--workers", type=int, default=2, help="runs at a time, one thread each (default 2)")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    recipes = {name: RECIPES[name] for name in args.recipes.split(",")}
    if args.confirm:
        name, budgets = args.confirm.split(":")
        recipes = {"today": RECIPES["today"], name: {**RECIPES[name], "budgets": tuple(int(b) for b in budgets.split(","))}}
    out = Path(args.out)
    rows = run_all(plan(recipes, sizes), str(Path(args.data_dir).resolve()), out, args.workers)
    with (out / "recipes.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, FIELDS)
        writer.writeheader()
        writer.writerows({key: row[key] for key in FIELDS} for row in rows)
    figure(rows, sizes, out / "psnr_vs_seconds.png")
    header = ["recipe", "epochs"] + [f"{label} z={size}" for size in sizes
                                     for label in ("s", "PSNR", "neg.ELBO", "today's PSNR at those s")]
    print("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for cells in summary_rows(rows, sizes):
        print("| " + " | ".join(cells) + " |")
    print(f"\nrecipes: {json.dumps({name: {k: v for k, v in r.items() if k != 'budgets'} for name, r in recipes.items()})}")
    print(f"wrote {out / 'recipes.csv'} and {out / 'psnr_vs_seconds.png'}")


if __name__ == "__main__":
    main()
