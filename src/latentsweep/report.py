"""The report, rendered from a study folder's files alone (`latentsweep report` redoes it).

The content is built once as a list of blocks (heading, paragraph, list, table, figure) and
rendered twice: report.md, whose figures are links into figures/, and report.html, which embeds
every figure as base64 so the one file can be mailed or archived.
"""

from __future__ import annotations

import base64
import csv
import html
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from latentsweep import plots
from latentsweep.errors import ConfigError, LatentsweepError
from latentsweep.metrics import combine_seeds, lookup
from latentsweep.selection import conclusion, rule_text
from latentsweep.storage import atomic_write_text, read_json

# ----------------------------------------------------------------------------------------
# Blocks


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Paragraph:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Figure:
    path: str  # relative to the study folder
    alt: str
    caption: str


Block = Heading | Paragraph | Bullets | Table | Figure


def to_markdown(blocks: Sequence[Block]) -> str:
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            lines += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Paragraph):
            lines += [block.text, ""]
        elif isinstance(block, Bullets):
            lines += [f"- {item}" for item in block.items] + [""]
        elif isinstance(block, Table):
            if block.caption:
                lines += [f"*{block.caption}*", ""]
            lines.append("| " + " | ".join(block.header) + " |")
            lines.append("|" + "|".join("---" for _ in block.header) + "|")
            lines += ["| " + " | ".join(row) + " |" for row in block.rows]
            lines.append("")
        elif isinstance(block, Figure):
            lines += [f"![{block.alt}]({block.path})", "", f"*{block.caption}*", ""]
    return "\n".join(lines)


HTML_STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; max-width: 1100px; margin: 2rem auto;
       padding: 0 1rem; line-height: 1.5; color: #222; }
h1 { font-size: 1.7rem; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: .5rem 0 1.2rem; font-size: .88rem; }
th, td { border: 1px solid #ccc; padding: .25rem .55rem; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
caption { caption-side: top; text-align: left; font-style: italic; padding-bottom: .3rem; }
figure { margin: 1rem 0 1.5rem; } figure img { max-width: 100%; height: auto; }
figcaption { font-size: .9rem; color: #555; }
.answer { background: #eef6ee; border-left: 4px solid #4a4; padding: .6rem 1rem; }
@media print { body { max-width: none; margin: 0; } figure, table { page-break-inside: avoid; } }
"""


def to_html(blocks: Sequence[Block], study_dir: Path, title: str) -> str:
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
             f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
             f"<title>{html.escape(title)}</title>\n<style>{HTML_STYLE}</style>\n</head>\n<body>"]
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            parts.append(f"<p>{html.escape(block.text)}</p>")
        elif isinstance(block, Bullets):
            parts.append("<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in block.items) + "</ul>")
        elif isinstance(block, Table):
            caption = f"<caption>{html.escape(block.caption)}</caption>" if block.caption else ""
            head = "".join(f"<th>{html.escape(cell)}</th>" for cell in block.header)
            body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in block.rows)
            parts.append(f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif isinstance(block, Figure):
            data = base64.b64encode((study_dir / block.path).read_bytes()).decode("ascii")
            parts.append(f"<figure><img src=\"data:image/png;base64,{data}\" alt=\"{html.escape(block.alt, quote=True)}\">"
                         f"<figcaption>{html.escape(block.caption)}</figcaption></figure>")
    # The first paragraph after the title is the answer: make it stand out.
    parts = [p.replace("<p>", "<p class=\"answer\">", 1) if i == 2 and p.startswith("<p>") else p for i, p in enumerate(parts)]
    parts.append("</body>\n</html>\n")
    return "\n".join(parts)


# ----------------------------------------------------------------------------------------
# Reading a study folder


@dataclass
class StudyFiles:
    study_dir: Path
    info: dict[str, Any]  # config.json
    summary: dict[str, Any] | None
    trials: list[dict[str, Any]]  # each trial's metrics.json, with "folder"
    histories: dict[tuple[int, int], list[dict[str, float]]]
    images: dict[tuple[int, int], dict[str, np.ndarray]]


def read_history(path: Path) -> list[dict[str, float]]:
    with path.open(newline="") as handle:
        return [{key: float(value) for key, value in row.items()} for row in csv.DictReader(handle)]


def read_study(study_dir: Path) -> StudyFiles:
    if not (study_dir / "config.json").is_file():
        raise ConfigError(f"{study_dir}: not a study folder (no config.json); run 'latentsweep run' first")
    info = read_json(study_dir / "config.json")
    summary = read_json(study_dir / "summary.json") if (study_dir / "summary.json").is_file() else None
    trials, histories, images = [], {}, {}
    config = info["config"]
    for latent_dim in sorted(config["latent_dims"]):
        for seed in config["seeds"]:
            folder = study_dir / "models" / f"latent{latent_dim:03d}_seed{seed}"
            if not (folder / "metrics.json").is_file():
                trials.append({"status": "missing", "latent_dim": latent_dim, "seed": seed, "folder": folder})
                continue
            metrics = read_json(folder / "metrics.json")
            trials.append({**metrics, "folder": folder})
            if metrics.get("status") == "done":
                histories[(latent_dim, seed)] = read_history(folder / "history.csv")
                with np.load(folder / "images.npz") as npz:
                    images[(latent_dim, seed)] = {key: npz[key] for key in npz.files}
    return StudyFiles(study_dir, info, summary, trials, histories, images)


# ----------------------------------------------------------------------------------------
# Figures and content


def _fmt(value: float | None, digits: int) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _with_ci(row: dict[str, Any], digits: int) -> str:
    if row["ci_low"] is None or (isinstance(row["ci_low"], float) and math.isnan(row["ci_low"])):
        return _fmt(row["mean"], digits)
    return f"{_fmt(row['mean'], digits)} [{_fmt(row['ci_low'], digits)}, {_fmt(row['ci_high'], digits)}]"


DIGITS = {"mse": 4, "psnr": 2, "ssim": 3, "neg_elbo": 1}


def make_figures(files: StudyFiles, combined: list[dict[str, Any]], class_names: list[str]) -> dict[str, Path]:
    figures_dir = files.study_dir / "figures"
    figures_dir.mkdir(exist_ok=True)
    first_seed = files.info["config"]["seeds"][0]
    paths = {
        "loss": plots.loss_curves({dim: h for (dim, seed), h in files.histories.items() if seed == first_seed},
                                  figures_dir / "loss_curves.png"),
        "overall": plots.overall_vs_latent(combined, figures_dir / "overall_vs_latent.png"),
    }
    for metric in ("mse", "psnr", "ssim"):
        paths[metric] = plots.metric_by_class(combined, metric, class_names, figures_dir / f"{metric}_by_digit.png")
    shown = {dim: arrays for (dim, seed), arrays in files.images.items() if seed == first_seed}
    if shown:
        any_arrays = next(iter(shown.values()))
        per_class = len(any_arrays["representatives"]) // len(class_names)
        columns = min(3, per_class)

        def by_class(images: np.ndarray) -> np.ndarray:
            return images.reshape(len(class_names), per_class, *images.shape[1:])[:, :columns]

        paths["reconstructions"] = plots.reconstruction_grid(
            by_class(any_arrays["originals"]), {dim: by_class(a["reconstructions"]) for dim, a in shown.items()},
            class_names, figures_dir / "reconstructions.png")
        paths["samples"] = plots.sample_grid({dim: a["samples"] for dim, a in shown.items()}, figures_dir / "samples.png")
    return paths


def build_blocks(files: StudyFiles, combined: list[dict[str, Any]], figure_paths: dict[str, Path]) -> list[Block]:
    info, config = files.info, files.info["config"]
    class_names = info["class_names"]
    noun = "digit" if config["dataset"] == "mnist" else "class"
    done = [t for t in files.trials if t.get("status") == "done"]
    failed = [t for t in files.trials if t.get("status") != "done"]
    selection, sentences = conclusion(combined, config["tolerance_db"], class_names, noun)
    env = info["environment"]
    rel = {key: str(path.relative_to(files.study_dir)) for key, path in figure_paths.items()}
    multi_seed = len(config["seeds"]) > 1
    ci_note = ("95% Student-t confidence intervals across seeds (n = number of seeds)" if multi_seed
               else "95% Student-t confidence intervals across test images")

    blocks: list[Block] = [
        Heading(f"How small can a VAE's latent space be? Latent-size study on {config['dataset']}", 1),
        Paragraph(" ".join(sentences[:2])),
        Heading("Conclusion"),
        Bullets(sentences),
        Heading("Setup"),
        Bullets([
            f"Data: {config['dataset']} from {info['data_source']}; {info['split_sizes']['train']} training images"
            f" ({'stratified subset of ' + str(config['train_subset']) if config['train_subset'] else 'all remaining after validation'}),"
            f" {info['split_sizes']['val']} validation images taken from the training split (stratified, split seed {config['split_seed']}),"
            f" the official {info['split_sizes']['test']}-image test split.",
            f"Preset: {config['preset']}; {config['epochs']} epochs, batch size {config['batch_size']}, Adam with learning rate "
            f"{config['learning_rate']:g}, beta {config['beta']:g} (loss = reconstruction + beta * KL); the weights with the lowest "
            "validation loss are evaluated.",
            f"Latent sizes {', '.join(map(str, sorted(config['latent_dims'])))}; seeds {', '.join(map(str, config['seeds']))}.",
            "Model: convolutional VAE; encoder conv 4x4/2 (1->16) -> conv 4x4/2 (16->32) -> linear 1568->256 -> linear to "
            "mean and log-variance; decoder mirrors it with transposed convolutions to Bernoulli logits. Parameters: "
            + ", ".join(f"{t['parameters']:,} at z={t['latent_dim']}" for t in done if t["seed"] == config["seeds"][0]) + ".",
            f"Device: {env['device']} ({env['device_name']}), {env['torch_threads']} threads; Python {env['python']}, "
            f"torch {env['torch']}, numpy {env['numpy']}, latentsweep {env['latentsweep']}; {env['platform']}.",
        ]),
        Heading("How the numbers are measured"),
        Bullets([
            "Reconstructions are decoded from the posterior mean, z = mu(x), and read as Bernoulli means (sigmoid of the logits).",
            "MSE: mean over pixels of the squared difference, intensities in [0, 1]. PSNR = 10 log10(1 / MSE) per image "
            "(MSE floored at 1e-10, capping PSNR at 100 dB), averaged over images. SSIM: 11x11 Gaussian window, sigma 1.5 "
            "(torchmetrics). Negative ELBO: reconstruction + KL in nats per image with one sampled z per image.",
            f"Representative images: the first {config['representatives_per_class']} test images of each {noun} in the official test order.",
            f"Whole test set: all {info['split_sizes']['test']} test images; {ci_note}.",
            f"Selection rule: {rule_text(config['tolerance_db'])}.",
            f"Samples: {config['num_samples']} images decoded from z ~ N(0, I) per latent size (generator seeded with the model's seed).",
        ]),
        Heading("Results by latent size (whole test set)"),
    ]
    seconds = {t["latent_dim"]: [] for t in done}
    for t in done:
        seconds[t["latent_dim"]].append(t["train_seconds"])
    overall_rows = []
    for latent_dim in sorted(seconds):
        cells = [str(latent_dim) + (" (selected)" if latent_dim == selection.selected else "")]
        for metric in ("psnr", "mse", "ssim", "neg_elbo"):
            row = lookup(combined, latent_dim=latent_dim, protocol="test_set", digit="all", metric=metric)[0]
            cells.append(_with_ci(row, DIGITS[metric]))
        cells.append(f"{np.mean(seconds[latent_dim]):.0f}")
        overall_rows.append(cells)
    blocks.append(Table(["latent size", "PSNR dB", "MSE", "SSIM", "neg. ELBO nats", "training s"], overall_rows,
                        f"Mean [{ci_note}]"))
    total_train = sum(t["train_seconds"] for t in done)
    total_eval = sum(t["eval_seconds"] for t in done)
    timing = f"Training took {total_train:.0f} s and evaluation {total_eval:.0f} s in total over {len(done)} model(s)"
    if files.summary:
        timing += f"; the last invocation of the study ran {files.summary['wall_seconds']:.0f} s wall time"
    blocks.append(Paragraph(timing + "."))
    if failed:
        blocks.append(Heading("Failed or missing models"))
        blocks.append(Bullets([f"latent size {t['latent_dim']}, seed {t['seed']}: {t.get('status')}"
                               + (f" ({t['error']})" if t.get("error") else "") for t in failed]))

    blocks.append(Heading("Figures"))
    captions = [
        ("overall", "Whole-test-set mean PSNR, MSE, SSIM and negative ELBO against latent size (error bars: 95% CI), "
                    "with the representative-image means dotted."),
        ("psnr", f"PSNR per {noun} and latent size: left, the representative images; right, the whole test set with 95% CI."),
        ("mse", f"MSE per {noun} and latent size: left, the representative images; right, the whole test set with 95% CI."),
        ("ssim", f"SSIM per {noun} and latent size: left, the representative images; right, the whole test set with 95% CI."),
        ("reconstructions", f"Test images (left) and their posterior-mean reconstructions at each latent size, one row per {noun}."),
        ("samples", "Images decoded from z ~ N(0, I) at each latent size."),
        ("loss", "Training (solid) and validation (dashed) loss per epoch, and the validation loss's reconstruction and KL terms."),
    ]
    for key, caption in captions:
        if key in rel:
            blocks.append(Figure(rel[key], caption, caption))

    blocks.append(Heading(f"Per-{noun} results"))
    for latent_dim in sorted(seconds):
        rows = []
        for index, name in enumerate(class_names):
            cells = [name]
            for protocol in ("test_set", "representative"):
                for metric in ("mse", "psnr", "ssim"):
                    row = lookup(combined, latent_dim=latent_dim, protocol=protocol, digit=str(index), metric=metric)[0]
                    cells.append(_with_ci(row, DIGITS[metric]) if protocol == "test_set" else _fmt(row["mean"], DIGITS[metric]))
            rows.append(cells)
        n_test = lookup(combined, latent_dim=latent_dim, protocol="test_set", digit="all", metric="psnr")[0]["n"]
        blocks.append(Table([noun, "MSE (test)", "PSNR dB (test)", "SSIM (test)", "MSE (repr.)", "PSNR dB (repr.)", "SSIM (repr.)"],
                            rows, f"Latent size {latent_dim}: whole test set (mean [95% CI], n = {n_test}) and representative images"))
    blocks.append(Heading("Files"))
    blocks.append(Paragraph("results.csv and results.json hold every number above as a tidy table (latent_dim, seed, protocol, "
                            "digit, n, metric, mean, ci_low, ci_high); models/*/ hold each model's config.json, history.csv, "
                            "metrics.json, per_image.csv and checkpoints (best.pt, last.pt)."))
    return blocks


def render_report(study_dir: str | Path) -> list[Path]:
    """Write figures/, report.md and report.html from the study folder's files; returns the two reports."""
    study_dir = Path(study_dir)
    files = read_study(study_dir)
    rows = [row for t in files.trials if t.get("status") == "done" for row in t["rows"]]
    if not rows:
        raise LatentsweepError(f"{study_dir}: no finished model to report on")
    combined = combine_seeds(rows)
    figure_paths = make_figures(files, combined, files.info["class_names"])
    blocks = build_blocks(files, combined, figure_paths)
    title = f"latentsweep report: {files.info['config']['dataset']}"
    atomic_write_text(study_dir / "report.md", to_markdown(blocks))
    atomic_write_text(study_dir / "report.html", to_html(blocks, study_dir, title))
    return [study_dir / "report.md", study_dir / "report.html"]
