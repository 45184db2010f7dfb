"""The report, rendered from a study folder's files alone (`latentsweep report` redoes it).

The content is built once as a list of blocks (render.py) from what results.py reads of the folder and
what uncertainty.py makes of it, then written twice: report.md, whose figures are links into figures/,
and report.html, which embeds every figure so the one file can be mailed or archived.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from latentsweep import plots
from latentsweep.architectures import describe as describe_architecture
from latentsweep.classifier import TRUSTED_ACCURACY
from latentsweep.config import AXIS_BY_NAME, VARIANT_AXES, StudyConfig
from latentsweep.data import describe_shape
from latentsweep.dimension import HALVES, MLE_NEIGHBOURS, placement_sentence
from latentsweep.health import COLLAPSE_KL_NATS, CONSTANT_MARGIN_DB, REMEDY_KL_WARMUP, WORSE_MARGIN_DB
from latentsweep.layout import (EXCLUDED_KEY, EXPLORER_FILE, EXTENSION_KEY, FIGURES, GRID_KEY, PREVIEW_FOLDER, REPORT_HTML,
                                REPORT_MD, RESULTS_JSON, RETRAINED_KEY, plan_trials, read_timing, trial_dir, variant_name,
                                variant_slug)
from latentsweep.metrics import (COMPARISON_METRICS, GENERATION_PROTOCOLS, REGISTRY, SATURATION_METRICS, TIDY_FIELDS,
                                 by_class_metrics, data_metrics, generation_metrics, headline_metrics, lookup,
                                 variant_rows)
from latentsweep.model import MNIST_SHAPE
from latentsweep.plots import UNLABELLED_GROUP
from latentsweep.render import Block, Bullets, Figure, Heading, Link, Paragraph, Table, to_html, to_markdown
from latentsweep.results import (Results, StudyFiles, class_noun, for_variant, model_scores, plural, preview_sentences,
                                 read_labels, read_results, read_study)
from latentsweep.selection import (Answer, Saturation, fondue_choice, overall_active_units, overall_code_dimensions,
                                   overall_psnr, rule_text, saturation)
from latentsweep.storage import atomic_write_text
from latentsweep.uncertainty import Evidence, gather_evidence, p_text, selection_rule

# ----------------------------------------------------------------------------------------
# Figures and content


def _fmt(value: float | None, digits: int) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _with_ci(row: dict[str, Any], digits: int) -> str:
    if row["ci_low"] is None or (isinstance(row["ci_low"], float) and math.isnan(row["ci_low"])):
        return _fmt(row["mean"], digits)
    return f"{_fmt(row['mean'], digits)} [{_fmt(row['ci_low'], digits)}, {_fmt(row['ci_high'], digits)}]"


def _cell(row: dict[str, Any] | None, metric: str, interval: bool = True) -> str:
    """A table cell: the mean (with its interval) to the metric's digits (metrics.REGISTRY), or n/a."""
    if row is None:
        return "n/a"
    digits = REGISTRY[metric].digits
    return _with_ci(row, digits) if interval else _fmt(row["mean"], digits)


NO_LABELS = ("The images have no labels (the folder has no labels.csv), so there are no per-class results and no "
             "classifier to score generated images with: the Fréchet distance, KID and the Inception Score analogue "
             "are left out, and the reconstruction rule alone selects the latent size.")


def left_out_models(files: StudyFiles) -> list[tuple[int, int]]:
    """(latent size, seed) of the variant's models left out as failed training runs (config.json, health.py)."""
    return sorted((entry["latent_dim"], entry["seed"]) for entry in files.info.get(EXCLUDED_KEY, [])
                  if all(entry.get(name) == value for name, value in files.variant.items()))


def make_figures(files: StudyFiles, combined: list[dict[str, Any]], class_names: list[str], evidence: Evidence,
                 prefix: str = "") -> dict[str, Path]:
    """One variant's figures, named figures/PREFIX<name>.png."""
    figures_dir = files.study_dir / FIGURES
    figures_dir.mkdir(exist_ok=True)

    def figure(name: str) -> Path:
        return figures_dir / f"{prefix}{name}.png"

    first_seed = files.config.training.seeds[0]
    paths = {
        "loss": plots.loss_curves({dim: h for (dim, seed), h in files.histories.items() if seed == first_seed},
                                  figure("loss_curves")),
        "overall": plots.overall_vs_latent(combined, figure("overall_vs_latent")),
        "seeds": plots.psnr_by_seed(evidence.seed_means, combined, evidence.selected, figure("psnr_by_seed"),
                                    added=files.info.get(EXTENSION_KEY, []), left_out=left_out_models(files)),
    }
    selected = evidence.selected
    if files.labelled:  # unlabelled images have no classes to break down
        for metric in by_class_metrics():
            paths[metric] = plots.metric_by_class(combined, metric, class_names, figure(f"{metric}_by_class"))
    shown = {dim: arrays for (dim, seed), arrays in files.images.items() if seed == first_seed}
    if shown:
        any_arrays = next(iter(shown.values()))
        groups = class_names or [UNLABELLED_GROUP]  # one row of the first test images when unlabelled
        # Each class's representatives, in order: a class with fewer test images than --representatives-per-class
        # has fewer, so the grid is as wide as the scarcest class allows.
        labels = (np.array(read_labels(next(t["folder"] for t in files.trials if t.get("status") == "done"),
                                       any_arrays["representatives"])) if class_names
                  else np.zeros(len(any_arrays["representatives"]), int))
        rows = [np.flatnonzero(labels == group) for group in range(len(groups))]
        columns = min(3 if class_names else 8, *(len(row) for row in rows))

        def by_class(images: np.ndarray) -> np.ndarray:
            return np.stack([images[row[:columns]] for row in rows])

        paths["reconstructions"] = plots.reconstruction_grid(
            by_class(any_arrays["originals"]), {dim: by_class(a["reconstructions"]) for dim, a in shown.items()},
            groups, figure("reconstructions"))
        paths["samples"] = plots.sample_grid({dim: a["samples"] for dim, a in shown.items()}, figure("samples"))
    if lookup(combined, metric="fd"):
        paths["generation"] = plots.generation_vs_latent(combined, figure("generation_vs_latent"))
        paths["class_histogram"] = plots.class_histogram(combined, class_names, figure("class_histogram"))
        paths["rate_distortion"] = plots.rate_distortion(combined, figure("rate_distortion"))
    views = {dim: arrays for (dim, seed), arrays in files.analysis.items() if seed == first_seed}
    if views:
        paths["kl_per_dimension"] = plots.kl_per_dimension({d: a["kl_per_dimension"] for d, a in views.items()},
                                                           figure("kl_per_dimension"))
        paths["latent_2d"] = plots.latent_2d(views, class_names or [UNLABELLED_GROUP], figure("latent_2d"))
        if selected in views:
            chosen = views[selected]
            pair_names = ([f"{class_names[a]} -> {class_names[b]}" for a, b in chosen["interpolation_pairs"]] if class_names
                          else [f"pair {number + 1}" for number in range(len(chosen["interpolation_pairs"]))])
            steps = chosen["interpolations"].shape[1]
            paths["interpolations"] = plots.image_rows(
                chosen["interpolations"], pair_names, [f"{w:.2f}" for w in np.linspace(0, 1, steps)],
                f"Interpolations between posterior means, latent size {selected}", figure("interpolations"))
            paths["traversals"] = plots.image_rows(
                chosen["traversals"], [f"dim {d}" for d in chosen["traversal_dimensions"]],
                [f"{v:+.1f}" for v in chosen["traversal_values"]],
                f"Latent traversals around a test image, latent size {selected} (dimensions by KL, highest first)",
                figure("traversals"))
    return paths


def build_blocks(files: StudyFiles, combined: list[dict[str, Any]], figure_paths: dict[str, Path],
                 evidence: Evidence, answer: Answer, data_rows: list[dict[str, Any]] = (),
                 preview: list[Block] = ()) -> list[Block]:
    """One variant's report; `preview`: the blocks setting the study's preview beside it (preview_blocks)."""
    info, config = files.info, files.config
    class_names = files.class_names
    shape = image_shape(info)
    noun = class_noun(config.data.dataset)
    done = [t for t in files.trials if t.get("status") == "done"]
    failed = [t for t in files.trials if t.get("status") != "done"]
    env = info["environment"]
    rel = {key: str(path.relative_to(files.study_dir)) for key, path in figure_paths.items()}
    multi_seed = len(config.training.seeds) > 1
    ci_note = ("95% Student-t confidence intervals across seeds (n = number of seeds)" if multi_seed
               else "95% Student-t confidence intervals across test images")
    # The network described: the smallest trained, or an ordered study's one model per seed (its prefixes' too).
    model_size = (max if config.training.ordered else min)(config.model.latent_dims)

    blocks: list[Block] = [
        Heading(f"How small can a VAE's latent space be? Latent-size study on {data_name(files.info, config)}", 1),
        Paragraph(" ".join([*preview_sentences(config), *lower_bound_sentences(files, combined, answer), *answer.headline,
                            *excluded_sentences(files),
                            *evidence.sentences()]), highlight=True),
        Heading("Conclusion"),
        Bullets([*answer.sentences, *evidence.sentences()]),
        *preview,
        *bracket_blocks(files, combined, answer, list(data_rows)),
        *dimension_blocks(list(data_rows), combined, answer, class_names, noun, rel),
        Heading("Setup"),
        Bullets([
            f"Data: {config.data.dataset} ({describe_shape(shape)} images) from {info['data_source']}; "
            f"{info['split_sizes']['train']} training images"
            f" ({training_subset_text(config.data.train_subset, info['split_sizes']['train'])}),"
            f" {info['split_sizes']['val']} validation images taken from the training split (stratified, split seed {config.data.split_seed}),"
            f" the {official(config)}{info['split_sizes']['test']}-image test split.",
            f"Preset: {config.preset}; {config.training.epochs} epochs, batch size {config.training.batch_size}, Adam with "
            f"{learning_rate_text(config)}, beta {files.variant['beta']:g} (training loss = reconstruction + beta * KL); the weights "
            "with the lowest validation loss are evaluated. Negative ELBO and IWAE figures are those of the plain VAE "
            "(beta 1) whatever beta trained the model, so they compare across betas.",
            f"Latent sizes {', '.join(map(str, sorted(config.model.latent_dims)))}; seeds {', '.join(map(str, config.training.seeds))}.",
            "Data mode: " + intensity_mode(config, shape),
            f"Model: {describe_architecture(files.variant['architecture'], model_size, shape)} "
            f"(at latent size {model_size}). Parameters: "
            + ", ".join(f"{t['parameters']:,} at z={t['latent_dim']}" for t in done if t["seed"] == config.training.seeds[0]) + ".",
            f"Device: {env['device']} ({env['device_name']}), {trials_ran(info)}; Python {env['python']}, "
            f"torch {env['torch']}, numpy {env['numpy']}, latentsweep {env['latentsweep']}; {env['platform']}.",
        ]),
        Heading("How the numbers are measured"),
        Bullets([
            "Reconstructions are decoded from the posterior mean, z = mu(x), and read as Bernoulli means (sigmoid of the logits).",
            "MSE: mean over pixels (and colour channels) of the squared difference, intensities in [0, 1]. PSNR = 10 log10(1 / MSE) per image "
            "(MSE floored at 1e-10, capping PSNR at 100 dB), averaged over images. SSIM: 11x11 Gaussian window, sigma 1.5 "
            "(torchmetrics; on colour images per channel, averaged). Negative ELBO: reconstruction + KL in nats per image with one sampled z per image.",
            (f"Representative images: the first {config.evaluation.representatives_per_class} test images of each {noun} in the "
             f"{official(config)}test order." if class_names else
             f"Representative images: the first {config.evaluation.representatives_per_class} test images (unlabelled)."),
            f"Whole test set: all {info['split_sizes']['test']} test images; {ci_note}.",
            f"Selection rule: {rule_text(config.selection.tolerance_db)}.",
            f"Samples: {config.evaluation.num_samples} images decoded from z ~ N(0, I) per latent size (generator seeded with the model's seed).",
        ]),
        Heading("Results by latent size (whole test set)"),
    ]
    seconds = {t["latent_dim"]: [] for t in done}
    for t in done:
        seconds[t["latent_dim"]].append(t["train_seconds"])
    overall_rows = []
    for latent_dim in sorted(seconds):
        cells = [str(latent_dim) + (" (selected)" if latent_dim == answer.selected else "")]
        cells += [_cell(_value(combined, latent_dim, "test_set", metric), metric) for metric in headline_metrics()]
        cells.append(f"{np.mean(seconds[latent_dim]):.0f}")
        overall_rows.append(cells)
    blocks.append(Table(["latent size", *(REGISTRY[m].label for m in headline_metrics()), "training s"], overall_rows,
                        f"Mean [{ci_note}]"))
    total_train = sum(t["train_seconds"] for t in done)
    total_eval = sum(t["eval_seconds"] for t in done)
    timing = f"Training took {total_train:.0f} s and evaluation {total_eval:.0f} s in total over {len(done)} model(s)"
    if files.summary:
        timing += f"; the last invocation of the study ran {files.summary['wall_seconds']:.0f} s wall time"
    blocks.append(Paragraph(timing + "."))
    blocks += evidence_blocks(evidence, config.training.seeds, rel)
    if failed:
        blocks.append(Heading("Failed, excluded or missing models"))
        blocks.append(Paragraph(HEALTH_TEXT))
        blocks.append(Bullets([f"latent size {t['latent_dim']}, seed {t['seed']}: {t.get('status')}"
                               + (f" ({t['error']})" if t.get("error") else "") for t in failed]))

    blocks.append(Heading("Figures"))
    captions = [
        ("overall", f"Whole-test-set mean {', '.join(REGISTRY[m].label for m in headline_metrics())} against latent size "
                    "(error bars: 95% CI), with the representative-image means dotted."),
        *((metric, f"{REGISTRY[metric].label} per {noun} and latent size: left, the representative images; right, the "
                   "whole test set with 95% CI.") for metric in by_class_metrics()),
        ("reconstructions", "Test images (left) and their posterior-mean reconstructions at each latent size"
                            + (f", one row per {noun}." if files.labelled else ".")),
        ("samples", "Images decoded from z ~ N(0, I) at each latent size."),
        ("loss", "Training (solid) and validation (dashed) loss per epoch, and the validation loss's reconstruction and KL terms."),
    ]
    for key, caption in captions:
        if key in rel:
            blocks.append(Figure(rel[key], caption, caption))

    blocks += analysis_blocks(files, combined, rel, answer.selected, noun)
    blocks.append(Heading(f"Per-{noun} results"))
    if not files.labelled:
        blocks.append(Paragraph(NO_LABELS))
    else:
        protocols = {"test_set": "test", "representative": "repr."}
        for latent_dim in sorted(seconds):
            rows = []
            for name in class_names:
                cells = [name]
                for protocol in protocols:
                    for metric in by_class_metrics():
                        row = _value(combined, latent_dim, protocol, metric, name)
                        cells.append(_cell(row, metric, interval=protocol == "test_set"))
                rows.append(cells)
            n_test = lookup(combined, latent_dim=latent_dim, protocol="test_set", cls="all", metric="psnr")[0]["n"]
            n_text = f"n = {n_test} seeds, each over the whole test set" if multi_seed else f"n = {n_test}"
            blocks.append(Table([noun, *(f"{REGISTRY[metric].label} ({shown})" for shown in protocols.values()
                                         for metric in by_class_metrics())],
                                rows, f"Latent size {latent_dim}: whole test set (mean [95% CI], {n_text}) and representative images"))
    blocks.append(Heading("Files"))
    blocks.append(Paragraph(f"results.csv and results.json hold every number above as a tidy table ({', '.join(TIDY_FIELDS)}); "
                            "models/*/ hold each model's config.json, history.csv, "
                            "metrics.json, per_image.csv and checkpoints (best.pt, last.pt)."))
    return blocks


HEALTH_TEXT = (f"A model is excluded from the answer when it failed to train (health.py): posterior collapse (mean KL below "
               f"{COLLAPSE_KL_NATS:g} nats, no active unit, or fewer than half a smaller size's active units at the same "
               f"seed), reconstructions no better than the training images' mean image (less than {CONSTANT_MARGIN_DB:g} "
               f"dB above its PSNR), or a PSNR more than {WORSE_MARGIN_DB:g} dB below a smaller size's at the same seed; "
               f"it is first retrained once with its KL weight rising to beta over the first {REMEDY_KL_WARMUP:.0%} of "
               "its steps. A model whose loss stopped being finite failed outright.")


def excluded_sentences(files: StudyFiles) -> list[str]:
    """The headline's word on the models retrained once with the remedy, and those left out because they failed to
    train (again), if any."""
    names = {t["folder"].name: t for t in files.trials}
    retrained = [(names[entry["trial"]], entry["signs"]) for entry in files.info.get(RETRAINED_KEY, [])
                 if entry["trial"] in names]
    excluded = [t for t in files.trials if t.get("status") == "excluded"]
    sentences = []
    if retrained:
        sentences.append(f"{len(retrained)} model(s) failed to train at first and were retrained once with the KL weight "
                         f"rising to beta over the first {REMEDY_KL_WARMUP:.0%} of the steps: "
                         + "; ".join(f"latent size {t['latent_dim']}, seed {t['seed']} (first attempt: {'; '.join(signs)}; "
                                     + ("failed again" if t.get("status") == "excluded" else "then trained") + ")"
                                     for t, signs in retrained) + ".")
    if excluded:
        sentences.append(f"{len(excluded)} model(s) failed to train and are left out of the answer: "
                         + "; ".join(f"latent size {t['latent_dim']}, seed {t['seed']} ({t['error']})" for t in excluded) + ".")
    return sentences


def images_measured(trial: dict[str, Any], protocol: str, metric: str) -> int:
    """How many images one model's `metric` was measured on; a seed-combined row's n counts seeds instead."""
    return lookup(trial["rows"], protocol=protocol, metric=metric, cls="all")[0]["n"]


def _value(combined: list[dict[str, Any]], latent_dim: int, protocol: str, metric: str, name: str = "all") -> dict[str, Any] | None:
    found = lookup(combined, latent_dim=latent_dim, protocol=protocol, metric=metric, cls=name)
    return found[0] if found else None


def analysis_blocks(files: StudyFiles, combined: list[dict[str, Any]], rel: dict[str, str], selected: int,
                    noun: str) -> list[Block]:
    """The sections on generation, likelihood, the latent space and seeds; empty for older evaluations."""
    if not lookup(combined, metric="iwae_nll"):
        return []
    config = files.config
    sizes = sorted({row["latent_dim"] for row in lookup(combined, metric="iwae_nll")})
    # The models measured beyond reconstruction (an ordered study's prefixes are not: trial.evaluate_trial).
    done = [t for t in files.trials if t.get("status") == "done" and lookup(t.get("rows") or [], metric="iwae_nll")]
    classes = max(1, len(files.class_names))
    blocks = (generation_blocks(files, combined, rel, selected, noun, sizes) if lookup(combined, metric="fd") else
              [Heading("Generation quality"), Paragraph(NO_LABELS)])
    labelled = files.labelled
    mode = ("binarised test images" if config.data.binarize else
            f"{'grey-level' if image_shape(files.info)[0] == 1 else 'colour'} test images under the Bernoulli decoder")
    k = done[0].get("analysis", {}).get("iwae_samples", config.evaluation.iwae_samples)
    blocks.append(Heading("Likelihood"))
    likelihood_n = images_measured(done[0], "likelihood", "iwae_nll")
    seeds_n = len(config.training.seeds)
    blocks.append(Paragraph(
        f"Importance-weighted estimate of -log p(x) (IWAE bound, K = {k} samples per image) and the negative ELBO on the "
        f"same {likelihood_n} test images ("
        + (f"the first {likelihood_n // classes} of each {noun}" if labelled else "the first of the test split")
        + f"), on {mode}. The IWAE figure is "
        "a tighter upper bound on the negative log-likelihood than the negative ELBO."
        + (" For reference, Burda et al. (2016, Table 1) report 86.76 nats for a VAE and 84.78 nats for an IWAE "
           "(k = 50) on dynamically binarised MNIST: an MLP with one stochastic layer of 50 units trained for 3,280 "
           "epochs, -log p(x) estimated with K = 5,000 on all 10,000 test images. 'latentsweep likelihood' computes this "
           "study's bound on the whole test set." if config.data.binarize else "")))
    rows = []
    for size in sizes:
        iwae = _value(combined, size, "likelihood", "iwae_nll")
        elbo = _value(combined, size, "likelihood", "neg_elbo")
        digits = REGISTRY["iwae_nll"].digits  # the ELBO to the bound's digits, so the two and their gap compare
        rows.append([str(size), _with_ci(elbo, digits), _with_ci(iwae, digits), _fmt(elbo["mean"] - iwae["mean"], digits)])
    blocks.append(Table(["latent size", "negative ELBO, nats", f"IWAE -log p(x), K={k}, nats", "gap, nats"], rows,
                        (f"Mean [95% CI across {seeds_n} seeds], each seed's figure the mean over the {likelihood_n} images"
                         if seeds_n > 1 else f"Mean [95% CI] over the {likelihood_n} images") + f"; {mode}"))

    blocks.append(Heading("Why it saturates"))
    # Per-image metrics (rate, distortion) with their intervals; the counts of a model's code without.
    rows = [[str(size), *(_cell(_value(combined, size, "test_set", metric), metric, interval=REGISTRY[metric].per_image)
                          for metric in SATURATION_METRICS)] for size in sizes]
    blocks.append(Paragraph("A latent dimension is active when its posterior mean varies across test images "
                            "(variance above 0.01, after Burda et al. 2016). Once extra dimensions stay inactive, their "
                            "KL is near zero and a larger latent size buys nothing: the rate (KL) and the distortion "
                            "(reconstruction term) stop moving. The code dimension is TwoNN's intrinsic dimension "
                            "(scikit-dimension) of the test set's posterior means: how many dimensions the codes "
                            "really span, whatever their count."))
    blocks.append(Table(["latent size", *(REGISTRY[m].label for m in SATURATION_METRICS)], rows,
                        f"Whole test set, mean [95% CI across {seeds_n} seeds]" if seeds_n > 1 else "Whole test set, mean [95% CI]"))
    for key, caption in (("kl_per_dimension", "Mean KL of each latent dimension, sorted, per latent size."),
                         ("rate_distortion", "Rate (KL) against distortion (reconstruction term) across latent sizes.")):
        if key in rel:
            blocks.append(Figure(rel[key], caption, caption))

    blocks.append(Heading("Representation quality"))
    if labelled:
        rows = [[str(size), _cell(_value(combined, size, "test_set", "probe_accuracy"), "probe_accuracy")] for size in sizes]
        blocks.append(Paragraph("A linear probe: multinomial logistic regression (scikit-learn) on standardised posterior "
                                "means, fitted on the training split and scored on the test set."))
        blocks.append(Table(["latent size", REGISTRY["probe_accuracy"].label], rows,
                            f"Mean [95% CI across {seeds_n} seeds]" if seeds_n > 1 else "Mean [95% CI] over test images"))
    else:
        blocks.append(Paragraph("Without labels there is no linear probe of the codes (it predicts the class)."))
    for key, caption in (("latent_2d", f"Posterior means of test images in 2-D, coloured by {noun}: PCA of all test images "
                                       f"and t-SNE of {config.evaluation.tsne_points} (the first of each {noun})." if labelled
                          else f"Posterior means of test images in 2-D: PCA of all test images and t-SNE of the first "
                               f"{config.evaluation.tsne_points}."),
                         ("interpolations", f"Decoded points on the line between two test images' posterior means, latent size {selected}."),
                         ("traversals", f"One latent dimension varied from -3 to +3 around a test image's posterior mean, latent size {selected}.")):
        if key in rel:
            blocks.append(Figure(rel[key], caption, caption))

    return blocks


def generation_blocks(files: StudyFiles, combined: list[dict[str, Any]], rel: dict[str, str], selected: int,
                      noun: str, sizes: list[int]) -> list[Block]:
    """The generation section: the feature classifier, its warning when weak, the metrics' table and figures."""
    done = [t for t in files.trials if t.get("status") == "done" and t.get("classifier")]
    classifier = done[0]["classifier"]
    samples_n = images_measured(done[0], "prior_samples", "fd")
    classes = len(files.info["class_names"])
    blocks: list[Block] = [
        Heading("Generation quality"),
        Paragraph(f"Images decoded from z ~ N(0, I) ({samples_n:,} per latent size) and the posterior-mean reconstructions "
                  f"of the test set, scored by a CNN classifier that latentsweep trained on the {classifier['train_images']:,} "
                  f"{official(files.config)}training images (test accuracy {100 * classifier['test_accuracy']:.2f}%, weights SHA-256 "
                  f"{str(classifier.get('sha256', 'n/a'))[:12]}...). Fréchet distance (FD) and KID compare the classifier's "
                  "128-d penultimate features with those of the test set; the Inception Score analogue is "
                  f"exp(E KL(p(y|x) || p(y))) with this classifier (at most {classes}); 'confident' is the share of images "
                  "whose top class has p > 0.9; class entropy is that of the histogram of predicted classes "
                  f"({math.log2(classes):.2f} bits when uniform)."),
    ]
    if classifier["test_accuracy"] < TRUSTED_ACCURACY:
        blocks.append(Paragraph(
            f"Warning: the classifier recognises only {100 * classifier['test_accuracy']:.1f}% of the test images (below "
            f"{100 * TRUSTED_ACCURACY:.0f}%), so its features describe these images poorly: FD, KID and the Inception Score "
            "analogue below rank the latent sizes less reliably than PSNR and SSIM do, and they are not comparable with "
            "figures from other feature networks (an Inception network's FID, for example)."))
    rows = []
    for size in sizes:
        cells = [str(size) + (" (selected)" if size == selected else "")]
        cells += [_cell(_value(combined, size, protocol, metric), metric)
                  for protocol in GENERATION_PROTOCOLS for metric in generation_metrics()]
        rows.append(cells)
    shown_on = {"prior_samples": "samples", "reconstructions": "recon."}
    blocks.append(Table(["latent size", *(f"{REGISTRY[metric].label} ({shown_on[protocol]})" for protocol in GENERATION_PROTOCOLS
                                          for metric in generation_metrics())],
                        rows, "Generation metrics; " + better_text(generation_metrics())))
    for key, caption in (("generation", "Generation metrics against latent size: prior samples and test reconstructions."),
                         ("class_histogram", f"Share of prior samples the classifier assigns to each {noun}.")):
        if key in rel:
            blocks.append(Figure(rel[key], caption, caption))
    return blocks


def better_text(metrics: Sequence[str]) -> str:
    """Which way is better for each of `metrics`, from the registry: 'lower is better: FD, KID; higher is better: IS'."""
    return "; ".join(f"{way} is better: {', '.join(REGISTRY[m].label for m in metrics if REGISTRY[m].better == way)}"
                     for way in ("lower", "higher") if any(REGISTRY[m].better == way for m in metrics))


def evidence_blocks(evidence: Evidence, seeds: Sequence[int], rel: dict[str, str]) -> list[Block]:
    """How sure the answer is: which randomness each statement covers, the sentences, the tests, the figure."""
    multi_seed = len(seeds) > 1
    blocks: list[Block] = [
        Heading("How sure is the answer?"),
        Paragraph(f"{len(seeds)} seed(s): {', '.join(map(str, seeds))}. Two kinds of randomness stand behind each mean: "
                  "the training run (its seed) and the test images it is scored on. "
                  + ("Every mean in the tables is the mean over seeds and its interval is the 95% Student-t interval "
                     "across seeds, so it covers training randomness with the test set fixed. " if multi_seed else
                     "With one seed, intervals are across test images and say nothing about training randomness; "
                     "use --seeds 0,1,2 for intervals across seeds. ")
                  + "The bootstrap resamples seeds (separately for each size, since each size's models are separate "
                  "training runs) and test images (the same draw for every size, since all sizes are scored on the same "
                  "images); the Fréchet distance of the prior samples, one number per model, is resampled over seeds "
                  "only."),
        Bullets(evidence.sentences()
                + [comparison.sentence() for comparison in (evidence.paired, evidence.across_seeds) if comparison]
                + ([] if evidence.paired else [f"{evidence.selected} is the largest size tried, so there is no larger "
                                               "size to compare it with."])),
    ]
    if "seeds" in rel:
        caption = ("Whole-test-set mean PSNR of every trained model (one marker per seed), the mean over seeds with its "
                   "95% interval, and the selected size circled; sizes --extend added shaded, models left out as failed "
                   "training runs as red crosses.")
        blocks.append(Figure(rel["seeds"], caption, caption))
    return blocks


def answer_figures(files: StudyFiles, combined: list[dict[str, Any]], answer: Answer, data_rows: list[dict[str, Any]],
                   prefix: str = "") -> dict[str, Path]:
    """The answer's figures: PSNR against latent size with the probes and the threshold, and per class the data's
    intrinsic dimension against PSNR at the answer (where the study measured the data's dimension)."""
    figures_dir = files.study_dir / FIGURES
    figures_dir.mkdir(exist_ok=True)
    paths = {"refinement": plots.psnr_refinement(lookup(combined, protocol="test_set", cls="all", metric="psnr"),
                                                 answer.grid, answer.reconstruction.threshold_db, answer.selected,
                                                 figures_dir / f"{prefix}psnr_refinement.png")}
    dimension = {row["class"]: row for row in lookup(data_rows, metric="intrinsic_dimension_twonn") if row["class"] != "all"}
    psnr = {row["class"]: row for row in lookup(combined, protocol="test_set", metric="psnr", latent_dim=answer.selected)}
    if dimension:
        paths["dimension"] = plots.dimension_vs_psnr(dimension, psnr, "TwoNN", answer.selected,
                                                     figures_dir / f"{prefix}dimension_vs_psnr.png")
    return paths


def top_saturation(files: StudyFiles, combined: list[dict[str, Any]], answer: Answer) -> Saturation:
    """Whether the top of the variant's grid (the sizes --extend added included) is saturated (selection.saturation)."""
    grid_rows = [row for row in combined if row["latent_dim"] in answer.grid]
    return saturation(overall_psnr(grid_rows), overall_active_units(grid_rows), files.config.selection.tolerance_db)


def lower_bound_sentences(files: StudyFiles, combined: list[dict[str, Any]], answer: Answer) -> list[str]:
    """The headline's warning where the grid's top is not saturated: the answer is then a lower bound."""
    found = top_saturation(files, combined, answer)
    if found.saturated or found.below is None:
        return []
    selection = files.config.selection
    why = (f"it reached --max-latent-dim ({selection.max_latent_dim})" if selection.extend else
           "the study ran without --extend")
    return [f"Lower bound: the top of the grid, {found.top}, is not saturated (the PSNR rose {found.gain_db:+.2f} dB from "
            f"{found.below}, more than the {selection.tolerance_db:g} dB tolerance) and {why}, so a larger size could "
            "still raise the rule's threshold and the answer with it."]


def bracket_blocks(files: StudyFiles, combined: list[dict[str, Any]], answer: Answer,
                   data_rows: list[dict[str, Any]]) -> list[Block]:
    """Does the grid bracket the answer? Below: a tested size under it fails (or it is 1); above: the top is
    saturated; the sizes --extend added; the data's intrinsic dimension against the tested range."""
    found = top_saturation(files, combined, answer)
    extension = [size for size in files.info.get(EXTENSION_KEY, []) if size in answer.grid]
    sentences = [
        (f"Below: {answer.below}, a tested size under the answer, fails the rule." if answer.below else
         "Below: the answer is 1, the smallest size there is." if answer.selected == 1 else
         f"Below: no tested size under the answer fails (it is the smallest tested, {answer.selected}); the answer may "
         "be smaller: add smaller sizes with --latent-dims."),
        "Above: " + found.sentence(files.config.selection.tolerance_db),
        (f"--extend added {', '.join(map(str, extension))} to the grid, each twice the top before it." if extension else
         "--extend added no size." if files.config.selection.extend else "The study ran without --extend."),
    ]
    if GRID_KEY in files.info:
        sentences.append(placement_sentence(files.info[GRID_KEY]))
    twonn = lookup(data_rows, metric="intrinsic_dimension_twonn", cls="all")
    if twonn:
        value, low, high = twonn[0]["mean"], min(answer.grid), max(answer.grid)
        where = "inside" if low <= value <= high else "above" if value > high else "below"
        sentences.append(f"The data's own intrinsic dimension (TwoNN {value:.1f}) lies {where} the tested range "
                         f"{low}..{high}.")
    if fondue := fondue_choice(*overall_code_dimensions(combined)):
        sentences.append(fondue.sentence(answer.selected))
    return [Heading("Does the grid bracket the answer?"), Bullets(sentences)]


def preview_blocks(results: Results, own: list[dict[str, Any]], answer: Answer, variant: tuple, prefix: str) -> list[Block]:
    """--with-preview: the preview's curve (PREVIEW_FOLDER, prefixes of one ordered model per seed) beside this
    study's independent models, the PSNR difference at every tested size, each one's answer and each one's time."""
    study_dir = results.study_dir
    folder = study_dir / PREVIEW_FOLDER
    if not (folder / RESULTS_JSON).is_file():
        return []
    preview = read_results(folder)
    if variant not in preview.answers:
        return []
    theirs = lookup(preview.rows_of(variant), protocol="test_set", cls="all", metric="psnr")
    mine = lookup(own, protocol="test_set", cls="all", metric="psnr")
    by_size = {row["latent_dim"]: row["mean"] for row in theirs}
    guess, top = preview.answers[variant].selected, max(by_size)
    apart = abs(guess - answer.selected)
    gaps = {row["latent_dim"]: by_size[row["latent_dim"]] - row["mean"] for row in mine if row["latent_dim"] in by_size}
    # Model time, the seconds each model trained and was evaluated (timing.json) summed: the same however often either
    # study was interrupted and run again, which a wall time is not.
    preview_seconds, grid_seconds = (sum(sum(read_timing(trial_dir(where.study_dir, trial)).get(part, 0.0)
                                             for part in ("train_seconds", "eval_seconds")) for trial in trials)
                                     for where, trials in ((preview, preview.trials), (results, plan_trials(results.config))))
    sentences = [
        f"The preview (one ordered model per seed at size {top}, every smaller size its first units; its own report: "
        f"{PREVIEW_FOLDER}/{REPORT_HTML}) answers {guess}; the models trained at each size answer {answer.selected}: "
        + ("the same size." if not apart else f"{apart} dimension{'s' if apart > 1 else ''} "
           f"{'above' if guess > answer.selected else 'below'}."),
        "Its PSNR minus the independent models' at every tested size up to its top: "
        + ", ".join(f"{size}: {gap:+.2f} dB" for size, gap in sorted(gaps.items())) + "."]
    if preview_seconds and grid_seconds:
        sentences.append(f"Model time (training and evaluation, summed over the models): the preview {preview_seconds:.0f} s, "
                         f"the grid's independent models {grid_seconds:.0f} s (x{preview_seconds / grid_seconds:.2f}).")
    path = plots.preview_beside(mine, theirs, (answer.selected, guess), study_dir / FIGURES / f"{prefix}preview_beside.png")
    caption = ("Whole-test-set PSNR (95% CI) against latent size: models trained at each size (circles) and the "
               "preview's prefixes of one ordered model per seed (line and band), each answer circled.")
    return [Heading("The preview beside the independent models"), Bullets(sentences),
            Figure(str(path.relative_to(study_dir)), caption, caption)]


def dimension_blocks(data_rows: list[dict[str, Any]], combined: list[dict[str, Any]], answer: Answer,
                     class_names: list[str], noun: str, rel: dict[str, str]) -> list[Block]:
    """The answer to one dimension beside the data's own intrinsic dimension and the codes', in sentences from the numbers."""
    from scipy import stats

    selected = answer.selected
    blocks: list[Block] = [Heading("The answer to one dimension, beside the data's own dimension")]
    tested = (f"Tested sizes: the grid's {', '.join(map(str, answer.grid))}"
              + (f", and the refinement's probes {', '.join(map(str, answer.probes))}; the answer, {selected}, is "
                 + ("exact to one dimension." if answer.exact else f"known to lie in {answer.below + 1}..{selected}.")
                 if answer.probes else "; no probes (the study ran without --refine)."))
    sentences = [tested]
    units, codes = (_value(combined, selected, "test_set", metric) for metric in ("active_units", "code_dimension"))
    overall = {row["metric"]: row for row in lookup(data_rows, cls="all")}
    if overall:
        twonn, mle = overall["intrinsic_dimension_twonn"], overall["intrinsic_dimension_mle"]
        sentences.append(
            f"The data's own intrinsic dimension (the test split's {twonn['n']:,} images, pixels as vectors; "
            f"scikit-dimension): TwoNN {_with_ci(twonn, 2)}, MLE (Levina-Bickel, K = {MLE_NEIGHBOURS}) {_with_ci(mle, 2)} "
            f"(95% intervals from {HALVES} random halves).")
    if units and codes:
        against = f", against the data's {overall['intrinsic_dimension_twonn']['mean']:.1f} by the same estimator" if overall else ""
        sentences.append(f"At the answer, {selected}, the models use {units['mean']:.1f} active units and their codes span "
                         f"{codes['mean']:.1f} dimensions (TwoNN of the test set's posterior means){against}.")
    per_class = {row["class"]: row for row in lookup(data_rows, metric="intrinsic_dimension_twonn") if row["class"] != "all"}
    psnr = {row["class"]: row for row in lookup(combined, protocol="test_set", metric="psnr", latent_dim=selected)}
    shared = [name for name in per_class if name in psnr]
    if len(shared) >= 3:
        ranked = sorted(shared, key=lambda name: per_class[name]["mean"])
        low, high = ranked[0], ranked[-1]
        rho, p_value = stats.spearmanr([per_class[n]["mean"] for n in shared], [psnr[n]["mean"] for n in shared])
        direction = ("reconstructed worse" if rho < 0 else "reconstructed better")
        nouns = plural(noun)
        verdict = (f"{nouns} of higher dimension are {direction}" if p_value < 0.05 else
                   f"no clear relation at the 5% level across so few {nouns}")
        sentences.append(
            f"By {noun}, the lowest intrinsic dimension (TwoNN) is {low}'s, {per_class[low]['mean']:.1f}, "
            f"and the highest {high}'s, {per_class[high]['mean']:.1f}. Across the {len(shared)} {nouns}, "
            f"Spearman's rank correlation between a {noun}'s intrinsic dimension and its PSNR at latent size {selected} "
            f"is {rho:+.2f} ({p_text(p_value)}): {verdict}.")
    blocks.append(Bullets(sentences))
    if "refinement" in rel:
        caption = ("Whole-test-set PSNR (95% CI) against latent size: grid sizes and the refinement's probes, the rule's "
                   "threshold dashed, the answer circled.")
        blocks.append(Figure(rel["refinement"], caption, caption))
    if per_class:
        rows = [[name, f"{per_class[name]['n']:,}",
                 *(_with_ci(found[0], REGISTRY[metric].digits) if (found := lookup(data_rows, metric=metric, cls=name))
                   else "n/a" for metric in data_metrics()),
                 _cell(psnr.get(name), "psnr")] for name in per_class]
        blocks.append(Table([noun, "test images", *(REGISTRY[metric].label for metric in data_metrics()),
                             f"{REGISTRY['psnr'].label} at {selected}"], rows,
                            f"Intrinsic dimension of each {noun}'s test images [95% interval from {HALVES} random halves] "
                            f"beside its PSNR at the answer"))
    if "dimension" in rel:
        caption = f"Per {noun}: intrinsic dimension (TwoNN, 95% interval) against PSNR at latent size {selected}."
        blocks.append(Figure(rel["dimension"], caption, caption))
    return blocks


def learning_rate_text(config: StudyConfig) -> str:
    """'learning rate 0.001', or the cosine schedule's peak and warm-up."""
    if config.training.schedule == "constant":
        return f"learning rate {config.training.learning_rate:g}"
    return (f"a cosine learning-rate schedule peaking at {config.training.learning_rate:g} after a linear warm-up over "
            f"{config.training.warmup_fraction:.0%} of the steps, then falling to zero at the last step")


def trials_ran(info: dict[str, Any]) -> str:
    """How the trials ran, from config.json (folders made before it recorded that give the threads alone)."""
    description = info.get("execution", {}).get("description")
    return f"trials ran {description}" if description else f"{info['environment']['torch_threads']} threads"


def training_subset_text(asked: int | None, trained: int) -> str:
    """How the training images were chosen: a stratified subset, or all (also when the subset asked for is larger)."""
    if asked and asked <= trained:
        return f"stratified subset of {asked}"
    return "all remaining after validation" + (f"; the subset of {asked} asked for is larger" if asked else "")


def official(config: StudyConfig) -> str:
    """'official ' for a published data set's own splits; a folder of one's own images has none."""
    return "" if config.data.dataset == "folder" else "official "


def image_shape(info: dict[str, Any]) -> tuple[int, int, int]:
    """The study's (channels, height, width); a study written before shapes were recorded read MNIST."""
    return tuple(info.get("image_shape", MNIST_SHAPE))


def intensity_mode(config: StudyConfig, shape: tuple[int, int, int]) -> str:
    """What the pixels are and what the Bernoulli decoder's likelihood then means, in a sentence."""
    if config.data.binarize:
        return ("binarised images (training batches re-drawn as Bernoulli(intensity) every time; validation and test "
                "images binarised once with fixed seeds; every test metric on those); the Bernoulli decoder's likelihood "
                "is then a proper likelihood.")
    if shape[0] == 1:
        return ("grey-level intensities in [0, 1] with a Bernoulli decoder (likelihoods are then not comparable with "
                "binarised-MNIST figures in the literature).")
    pixels = shape[0] * shape[1] * shape[2]
    return (f"colour intensities in [0, 1] with a Bernoulli decoder: each of the {pixels:,} channel values of an image "
            "is read as the mean of its own Bernoulli variable. For colour images that is not a likelihood of the "
            "data (it is one for binary images only), so the negative ELBO and IWAE figures compare the latent sizes "
            "of this study; they are not the bits per dimension of the colour-image literature.")


def data_name(info: dict[str, Any], config: StudyConfig) -> str:
    """'mnist', or for a folder of the user's images, the folder's name."""
    if config.data.dataset == "folder":
        return f"the images in {Path(info['data_source']).name}/"
    return config.data.dataset


def comparison_blocks(files: StudyFiles, combined: list[dict[str, Any]], answers: dict[tuple, Answer],
                      figure: Path) -> list[Block]:
    """The answer per variant (a value of each per-variant axis, config.VARIANT_AXES) side by side, for a study over
    several of them. The best size is the rule's reference: the grid's best, whatever the probes reached."""
    axes = " and ".join(f"{name}s" for name in VARIANT_AXES)
    rows = []
    for variant, answer in answers.items():
        own = variant_rows(combined, variant)
        rows.append([*(AXIS_BY_NAME[name].as_text(value) for name, value in zip(VARIANT_AXES, variant)),
                     str(answer.selected), str(answer.reconstruction.best),
                     *(_cell(_value(own, answer.selected, "test_set", metric), metric, interval=False)
                       for metric in COMPARISON_METRICS)])
    sentences = [f"{variant_name(variant)}: smallest latent size {answer.selected}." for variant, answer in answers.items()]
    return [
        Paragraph(" ".join(sentences), highlight=True),
        Heading(f"Comparison across {axes}"),
        Paragraph(f"The selection rule is applied within each ({', '.join(VARIANT_AXES)}); the sections below give each "
                  "one's full results. Negative ELBO is the plain VAE's (beta 1) for every model, so it compares "
                  "across betas. Beta weights the KL term of the training loss only: a larger beta asks for a lower rate "
                  "(KL) at some cost in reconstruction; the table shows what it bought."),
        Table([*VARIANT_AXES, "selected latent size", "best latent size",
               *(f"{REGISTRY[metric].label} at it (test set)" for metric in COMPARISON_METRICS)], rows,
              f"Per ({', '.join(VARIANT_AXES)}): the rule's answer"),
        Figure(str(figure.relative_to(files.study_dir)), f"PSNR and active units against latent size per {axes}",
               f"Whole-test-set PSNR (95% CI) and active units against latent size, one line per ({', '.join(VARIANT_AXES)})."),
    ]


def demote(blocks: list[Block]) -> list[Block]:
    """One variant's blocks under its own level-2 heading: its headings one level down, its title dropped."""
    result: list[Block] = []
    for block in blocks:
        if isinstance(block, Heading):
            if block.level == 1:
                continue
            result.append(Heading(block.text, min(block.level + 1, 6)))
        else:
            result.append(block)
    return result


def render_report(study_dir: str | Path) -> list[Path]:
    """Write figures/, report.md and report.html from the study folder's files; returns the two reports."""
    study_dir = Path(study_dir)
    results = read_results(study_dir)
    files = read_study(results)
    several = len(results.answers) > 1
    blocks: list[Block] = []
    for variant, answer in results.answers.items():
        view, own = for_variant(files, variant), results.rows_of(variant)
        prefix = f"{variant_slug(variant)}_" if several else ""
        selection = results.config.selection
        evidence = gather_evidence(*model_scores(view), answer.selected,
                                   selection_rule(selection.tolerance_db, selection.fd_tolerance,
                                                  results.config.model.latent_dims))
        figures = {**make_figures(view, own, files.class_names, evidence, prefix),
                   **answer_figures(view, own, answer, results.data_rows, prefix)}
        variant_blocks = build_blocks(view, own, figures, evidence, answer, results.data_rows,
                                      preview_blocks(results, own, answer, variant, prefix))
        blocks += [Heading(variant_name(variant).capitalize()), *demote(variant_blocks)] if several else variant_blocks
    if several:
        (study_dir / FIGURES).mkdir(exist_ok=True)
        figure = plots.variants_vs_latent(results.combined, {v: variant_name(v) for v in results.answers},
                                          study_dir / FIGURES / "variants_vs_latent.png")
        axes = " and ".join(f"{name}s" for name in VARIANT_AXES)
        title = f"How small can a VAE's latent space be? Study over {axes} on {data_name(files.info, files.config)}"
        blocks = [Heading(title, 1), *comparison_blocks(files, results.combined, results.answers, figure), *blocks]
    if (study_dir / EXPLORER_FILE).is_file():  # after the answer: the models themselves, live (explorer.py)
        grey = image_shape(files.info)[0] == 1  # the page offers drawing for grey images only
        blocks.insert(2, Link(f"Every latent size, live in the browser: {'draw or pick' if grey else 'pick'} an image, move "
                              "each latent dimension, interpolate, sample (one offline page, no server needed):",
                              EXPLORER_FILE, EXPLORER_FILE))
    title = f"latentsweep report: {data_name(files.info, files.config)}"
    atomic_write_text(study_dir / REPORT_MD, to_markdown(blocks))
    atomic_write_text(study_dir / REPORT_HTML, to_html(blocks, study_dir, title))
    return [study_dir / REPORT_MD, study_dir / REPORT_HTML]
