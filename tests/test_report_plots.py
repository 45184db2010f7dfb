import numpy as np
import pytest

from latentsweep import plots
from latentsweep.render import Bullets, Figure, Heading, Paragraph, Table, to_html, to_markdown

PNG = b"\x89PNG\r\n\x1a\n"


def test_markdown_rendering():
    text = to_markdown([Heading("Title", 1), Paragraph("Some text."), Bullets(["a", "b"]),
                        Table(["x", "y"], [["1", "2"]], "cap"), Figure("figures/f.png", "alt text", "caption")])
    assert text.splitlines()[:2] == ["# Title", ""]
    assert "- a\n- b" in text
    assert "| x | y |\n|---|---|\n| 1 | 2 |" in text
    assert "![alt text](figures/f.png)" in text


def test_html_is_self_contained_and_escaped(tmp_path):
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "f.png").write_bytes(PNG + b"data")
    page = to_html([Heading("T", 1), Paragraph("answer <b>", highlight=True), Paragraph("plain"), Table(["a&b"], [["<1>"]]),
                    Figure("figures/f.png", 'alt "q"', "cap")], tmp_path, "title")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "answer &lt;b&gt;" in page and "<th>a&amp;b</th>" in page and "<td>&lt;1&gt;</td>" in page
    assert 'src="data:image/png;base64,' in page and 'alt="alt &quot;q&quot;"' in page
    assert '<p class="answer">answer' in page and "<p>plain</p>" in page
    assert "@media print" in page


def test_tile_places_images_with_gaps():
    images = np.zeros((3, 2, 2), dtype=np.float32)
    canvas = plots.tile(images, columns=2)
    assert canvas.shape == (5, 5)
    assert canvas[:2, :2].sum() == 0 and canvas[2, :].min() == 1.0 and canvas[3:, 3:].min() == 1.0


def _rows(metric="psnr"):
    rows = []
    for dim in (2, 4):
        for protocol in ("representative", "test_set"):
            for digit in [str(d) for d in range(10)] + ["all"]:
                rows.append({"latent_dim": dim, "protocol": protocol, "class": digit, "metric": metric,
                             "mean": 10.0 + dim, "ci_low": 9.5 + dim, "ci_high": 10.5 + dim})
    return rows


@pytest.mark.parametrize("draw", [
    lambda p: plots.metric_by_class(_rows(), "psnr", [str(d) for d in range(10)], p),
    lambda p: plots.overall_vs_latent(_rows() + _rows("mse"), p),
    lambda p: plots.loss_curves({2: [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.1 / e, "val_reconstruction": 1.0,
                                      "val_kl": 0.1} for e in (1, 2, 3)]}, p),
    lambda p: plots.reconstruction_grid(np.zeros((10, 2, 28, 28)), {2: np.ones((10, 2, 28, 28))}, [str(d) for d in range(10)], p),
    lambda p: plots.sample_grid({2: np.random.default_rng(0).random((16, 28, 28)), 4: np.zeros((16, 28, 28))}, p),
], ids=["by_class", "overall", "loss", "reconstructions", "samples"])
def test_each_figure_writes_a_png(tmp_path, draw):
    path = draw(tmp_path / "figure.png")
    assert path.read_bytes()[:8] == PNG and path.stat().st_size > 2000


def test_image_rows_places_row_and_column_labels_on_non_square_pictures(tmp_path, monkeypatch):
    """Pictures 4 high and 10 wide, one-pixel gaps: a row every 5 pixels, a column every 11 (the tick bug spaced
    the columns by the height)."""
    shown = {}
    monkeypatch.setattr(plots, "save", lambda figure, path, dpi=110: shown.setdefault("figure", figure) and path)
    plots.image_rows(np.zeros((2, 3, 4, 10), np.float32), ["a", "b"], ["x", "y", "z"], "title", tmp_path / "rows.png")
    axis = shown["figure"].axes[0]
    assert list(axis.get_yticks()) == [2.5, 7.5]
    assert list(axis.get_xticks()) == [5.5, 16.5, 27.5]
    assert [label.get_text() for label in axis.get_xticklabels()] == ["x", "y", "z"]
