"""The report says one answer: every mention of the selected size agrees, also where the two rules disagree."""

import json
import re
import shutil

from latentsweep.report import render_report
from latentsweep.results import read_results


def set_mean(rows, latent_dim, protocol, metric, value):
    """The overall row's mean set to `value`, its interval moved with it."""
    for row in rows:
        if (row["latent_dim"], row["protocol"], row["class"], row["metric"]) == (latent_dim, protocol, "all", metric):
            shift = value - row["mean"]
            row["mean"] = value
            for bound in ("ci_low", "ci_high"):
                if row[bound] is not None:  # NaN is written as null
                    row[bound] += shift


def test_every_mention_of_the_selected_size_agrees_where_the_reconstruction_and_combined_rules_disagree(study, tmp_path):
    """Sizes 2 and 4 both pass on PSNR (20.0 against 20.2 dB), so the reconstruction rule alone picks 2; size 2's
    prior samples have three times size 4's Fréchet distance, so the combined rule, the study's answer, picks 4.
    The report must say 4 everywhere it names the selected size (its results table once marked 2)."""
    source, _ = study
    folder = tmp_path / "study"
    shutil.copytree(source, folder)
    crafted = {2: (20.0, 30.0), 4: (20.2, 10.0)}  # latent size -> (test-set PSNR, FD of prior samples)

    def craft(rows):
        for size, (psnr, fd) in crafted.items():
            set_mean(rows, size, "test_set", "psnr", psnr)
            set_mean(rows, size, "prior_samples", "fd", fd)
        return rows

    (folder / "results.json").write_text(json.dumps(craft(json.loads((folder / "results.json").read_text()))))
    for metrics_file in folder.glob("models/*/metrics.json"):
        metrics = json.loads(metrics_file.read_text())
        metrics["rows"] = craft(metrics["rows"])
        metrics_file.write_text(json.dumps(metrics))
    (answer,) = read_results(folder).answers.values()
    assert (answer.selected, answer.rule, answer.reconstruction.selected) == (4, "combined", 2)

    render_report(folder)
    report = (folder / "report.md").read_text()
    marked = re.findall(r"\| (\d+) \(selected\) \|", report)
    assert marked and set(marked) == {"4"}, marked
    answer_paragraph = report.split("\n\n")[1]
    assert "Combined selection (reconstruction and generation): latent size 4." in answer_paragraph
    assert "latent size 4 reaches 20.20 dB" in answer_paragraph or "Latent size 4 is also the best" in answer_paragraph
    assert re.findall(r"At latent size (\d+) the easiest", report) == ["4"]
    assert "Reconstruction rule alone, latent size: 2." in report  # the other rule's pick, named as such
    assert "The next smaller size, 2, reaches 20.00 dB, within the tolerance, but the Fréchet distance" in report
