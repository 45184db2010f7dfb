"""explorer.html in a real browser: the page's own JavaScript against PyTorch, real pointer and key events.

The end-to-end study (conftest.study, latent sizes 2 and 4) writes the page; Debian's chromium runs
it headless. Skipped with its reason where chromium or chromedriver are missing.
"""

from __future__ import annotations

import base64
import copy
import json
import math
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import SMALL_EVAL, cli
from latentsweep.architectures import model_from_checkpoint
from latentsweep.cli import main
from latentsweep.model import Prefix
from latentsweep.explorer import write_explorer
from latentsweep.train import load_checkpoint

pytest.importorskip("selenium.webdriver")
SCREENSHOT_DIR = os.environ.get("LATENTSWEEP_SCREENSHOT_DIR")


def page_data(path: Path) -> dict:
    """The JSON the page carries."""
    text = path.read_text()
    return json.loads(re.search(r'<script type="application/json" id="study-data">(.*?)</script>', text, re.S).group(1))


def torch_model(study: Path, size: dict):
    """The size's model as PyTorch runs it: its trial's own, or the first units of the ordered model it is a prefix of."""
    prefix_of = json.loads((study / "models" / size["trial"] / "config.json").read_text()).get("prefix_of")
    folder = study / "models" / (prefix_of or size["trial"])
    model, spec = model_from_checkpoint(load_checkpoint(folder / "best.pt"), "best.pt")
    return (Prefix(model, size["latent_dim"], spec.latent_dim) if prefix_of else model).eval()


def open_page(browser, study: Path) -> dict:
    browser.get((study / "explorer.html").resolve().as_uri())
    return browser.execute_script("return window.explorer.data")


def as_the_page_stores_it(model):
    """A copy of `model` with the page's weights: int8 with a scale per first-axis slice, biases float16."""
    stored = copy.deepcopy(model)
    with torch.no_grad():
        for parameter in stored.parameters():
            if parameter.dim() >= 2:
                flat = parameter.double().reshape(parameter.shape[0], -1)
                scale = (flat.abs().amax(1, keepdim=True) / 127).float().double()  # the page keeps float32 scales
                parameter.copy_((torch.round(flat / scale).clamp(-127, 127) * scale).reshape(parameter.shape))
            else:
                parameter.copy_(parameter.half().float())
    return stored


def assert_page_models_match_pytorch(browser, study: Path, data: dict, variant: int) -> None:
    """Every size of one (architecture, beta) variant: the page's decode of fixed codes and its encode of
    representative images against PyTorch's with the page's stored weights (int8, biases float16), within
    0.01 in every value and 1e-3 on average: the page computes as PyTorch does. Against the float32 model
    the stored weights cost at most 0.05 of intensity in any pixel and 2e-3 on average."""
    browser.execute_script("window.explorer.state.variant = arguments[0]", variant)
    images = np.frombuffer(base64.b64decode(data["images"]), np.uint8).reshape(-1, *data["image_shape"]) / 255.0
    for size in data["variants"][variant]["sizes"]:
        original, dim = torch_model(study, size), size["latent_dim"]
        model = as_the_page_stores_it(original)
        codes = np.random.default_rng(dim).normal(size=(4, dim))
        page = np.array([browser.execute_script("return window.explorer.decode(arguments[0], arguments[1])", dim,
                                                code.tolist()) for code in codes])
        with torch.no_grad():
            expected = torch.sigmoid(model.decode(torch.tensor(codes, dtype=torch.float32))).reshape(4, -1).numpy()
        assert np.abs(page - expected).max() < 0.01 and np.abs(page - expected).mean() < 1e-3, dim
        with torch.no_grad():
            full_precision = torch.sigmoid(original.decode(torch.tensor(codes, dtype=torch.float32))).reshape(4, -1).numpy()
        assert np.abs(page - full_precision).max() < 0.05 and np.abs(page - full_precision).mean() < 2e-3, dim
        chosen = images[::7]  # every 7th representative image: all classes, a few each
        page_means = np.array([browser.execute_script("return window.explorer.encode(arguments[0], arguments[1])", dim,
                                                      image.ravel().tolist()) for image in chosen])
        with torch.no_grad():
            expected_means = model.encode(torch.tensor(chosen, dtype=torch.float32))[0].numpy()
        assert np.abs(page_means - expected_means).max() < 0.01, dim
        assert np.abs(page_means - expected_means).mean() < 1e-3, dim


def test_the_page_decodes_and_encodes_as_pytorch_does(study, browser):
    out, _ = study
    assert_page_models_match_pytorch(browser, out, open_page(browser, out), variant=0)


def test_the_page_runs_the_mlp_at_two_betas_as_pytorch_does(fake_data, browser, tmp_path):
    out = tmp_path / "study"
    result = cli("run", "--data-dir", str(fake_data), "--no-verify-data", "--out", str(out), "--architecture", "mlp",
                 "--betas", "1,4", "--latent-dims", "2,3", "--seeds", "0", "--train-subset", "100", "--val-size", "50",
                 "--epochs", "1", "--no-check-training", "--no-extend", *SMALL_EVAL)
    assert result.returncode == 0, result.stderr
    data = open_page(browser, out)
    assert [(v["axes"]["architecture"], v["axes"]["beta"]) for v in data["variants"]] == [("mlp", 1.0), ("mlp", 4.0)]
    assert [v["name"] for v in data["variants"]] == ["architecture mlp, beta 1", "architecture mlp, beta 4"]
    for variant in (0, 1):
        assert_page_models_match_pytorch(browser, out, data, variant)


def test_a_previews_page_runs_every_prefix_of_its_one_model_as_pytorch_does(fake_data, browser, tmp_path):
    out = tmp_path / "study"
    result = cli("run", "--data-dir", str(fake_data), "--no-verify-data", "--out", str(out), "--ordered",
                 "--latent-dims", "3", "--seeds", "0", "--train-subset", "100", "--val-size", "50", "--epochs", "1",
                 "--no-check-training", *SMALL_EVAL)
    assert result.returncode == 0, result.stderr
    data = open_page(browser, out)
    variant, = data["variants"]
    assert [size["latent_dim"] for size in variant["sizes"]] == [1, 2, 3] and len(variant["networks"]) == 1
    assert_page_models_match_pytorch(browser, out, data, variant=0)


def test_a_drawn_stroke_is_preprocessed_like_mnist_and_its_psnr_is_pythons(study, browser):
    from selenium.webdriver.common.action_chains import ActionChains

    out, _ = study
    data = open_page(browser, out)
    before = browser.execute_script("return Object.fromEntries(Object.entries(window.explorer.state.reconstructions)"
                                    ".map(([k, v]) => [k, Array.from(v)]))")
    canvas = browser.find_element("css selector", "canvas.draw")
    chain = ActionChains(browser).move_to_element_with_offset(canvas, -40, -80).click_and_hold()
    for dx, dy in ((15, 10), (20, 25), (10, 40), (-5, 45), (-20, 20)):  # a loose, tall stroke
        chain = chain.move_by_offset(dx, dy)
    chain.release().perform()
    browser.execute_script("return new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")
    state = browser.execute_script("return {input: Array.from(window.explorer.state.input), name: window.explorer.state.inputName,"
                                   " reconstructions: Object.fromEntries(Object.entries(window.explorer.state.reconstructions)"
                                   ".map(([k, v]) => [k, Array.from(v)]))}")
    assert state["name"] == "your drawing"
    image = np.array(state["input"]).reshape(28, 28)
    rows, columns = np.nonzero(image > 0)
    assert max(rows.max() - rows.min() + 1, columns.max() - columns.min() + 1) == 20  # scaled into a 20-pixel box
    mass = image.sum()
    centre = ((image.sum(1) * np.arange(28)).sum() / mass, (image.sum(0) * np.arange(28)).sum() / mass)
    assert abs(centre[0] - 13.5) <= 0.5 + 1e-9 and abs(centre[1] - 13.5) <= 0.5 + 1e-9  # centred by its mass
    assert 0 < image.max() <= 1 and len(np.unique(image)) > 5  # grey, anti-aliased edges
    cards = browser.find_elements("css selector", ".card .score")
    for size, card in zip(data["variants"][0]["sizes"], cards):
        dim = str(size["latent_dim"])
        assert state["reconstructions"][dim] != before[dim], "the reconstruction did not follow the drawing"
        with torch.no_grad():
            model = torch_model(out, size)
            picture = torch.tensor(image, dtype=torch.float32)[None, None]
            reconstruction = torch.sigmoid(model.decode(model.encode(picture)[0]))
        mse = float(((reconstruction - picture) ** 2).mean())
        shown = float(re.search(r"PSNR dB (-?[\d.]+)", card.text).group(1))
        assert shown == pytest.approx(10 * math.log10(1 / mse), abs=0.05)


def test_a_colour_page_of_an_odd_size_runs_as_pytorch_paints_in_colour_and_offers_no_drawing(colour_study, browser):
    data = open_page(browser, colour_study)
    assert data["image_shape"] == [3, 26, 30] and len(data["class_names"]) == 10
    assert_page_models_match_pytorch(browser, colour_study, data, variant=0)  # odd sides: the decoder's output padding
    assert not browser.find_elements("css selector", "canvas.draw") and "Pick a test image" in browser.page_source
    painted = browser.execute_script(
        "const c = document.querySelector('.card canvas'); "
        "return [c.width, c.height, Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)];")
    width, height, pixels = painted[0], painted[1], np.array(painted[2]).reshape(26, 30, 4)
    shown = np.array(browser.execute_script(
        "return Array.from(window.explorer.state.reconstructions[Object.keys(window.explorer.state.reconstructions)[0]])"))
    expected = np.rint(255 * shown.reshape(3, 26, 30).transpose(1, 2, 0))
    assert (width, height) == (30, 26) and np.abs(pixels[..., :3] - expected).max() <= 1  # channel planes to RGB


def test_an_unlabelled_grey_page_takes_a_drawing_at_its_own_size(unlabelled_study, browser):
    from selenium.webdriver.common.action_chains import ActionChains

    data = open_page(browser, unlabelled_study)
    assert data["image_shape"] == [1, 40, 40] and data["class_names"] == []
    assert_page_models_match_pytorch(browser, unlabelled_study, data, variant=0)
    thumbs = browser.find_elements("css selector", ".gallery canvas")
    assert thumbs and re.fullmatch(r"test image \d+", thumbs[0].get_attribute("aria-label"))  # no class to name
    canvas = browser.find_element("css selector", "canvas.draw")
    chain = ActionChains(browser).move_to_element_with_offset(canvas, -60, -60).click_and_hold()
    for _ in range(6):
        chain = chain.move_by_offset(20, 15)
    chain.release().perform()
    browser.execute_script("return new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")
    state = browser.execute_script("return {input: Array.from(window.explorer.state.input), name: window.explorer.state.inputName}")
    image = np.array(state["input"]).reshape(40, 40)
    rows, columns = np.nonzero(image > 0.5)
    assert state["name"] == "your drawing" and 0 < image.max() <= 1
    # The whole field averaged onto 40x40: a stroke from (-60, -60) to (+60, +30) around the centre of a 276-pixel
    # field covers about 120 / 276 of its width, and the stroke is 1/14 of the field wide (about 3 pixels of 40).
    assert 12 <= columns.max() - columns.min() <= 22 and 2 <= np.bincount(columns).max() <= 8


def slider_change(browser, dimension_rank: int) -> float:
    """Reset the sliders to the image's code, move one (ranked by KL, 0 = most) right by 20 key presses,
    and return how much the decoded image changed (sum of absolute pixel changes)."""
    from selenium.webdriver.common.keys import Keys

    browser.find_element("xpath", "//button[starts-with(normalize-space(), 'Reset')]").click()
    before = np.array(browser.execute_script("return Array.from(window.explorer.state.sliderImage)"))
    slider = browser.find_elements("css selector", ".sliders input[type=range]")[dimension_rank]
    slider.send_keys(*[Keys.ARROW_RIGHT] * 20)
    after = np.array(browser.execute_script("return Array.from(window.explorer.state.sliderImage)"))
    return float(np.abs(after - before).sum())


@pytest.fixture
def study_with_an_unused_dimension(study, tmp_path):
    """A copy of the study in which each shown model's least-KL dimension is unused by construction: the
    decoder's first layer has no weights from it and the study records it as inactive. A briefly trained
    model need not have a truly inactive unit yet; this one does, so the page's marking and its slider
    can be checked against a known answer."""
    out, _ = study
    copy = tmp_path / "study"
    shutil.copytree(out, copy)
    for size in page_data(copy / "explorer.html")["variants"][0]["sizes"]:
        folder = copy / "models" / size["trial"]
        metrics = json.loads((folder / "metrics.json").read_text())
        unused = int(np.argmin(metrics["analysis"]["kl_per_dimension"]))
        metrics["analysis"]["kl_per_dimension"][unused] = 0.0
        metrics["analysis"]["posterior_mean_variance"][unused] = 0.0
        (folder / "metrics.json").write_text(json.dumps(metrics))
        checkpoint = torch.load(folder / "best.pt", weights_only=True)
        checkpoint["model_state"]["decoder.0.weight"][:, unused] = 0.0
        torch.save(checkpoint, folder / "best.pt")
    write_explorer(copy)
    return copy


def test_keyboard_on_a_slider_moves_the_image_and_an_unused_dimension_does_not(study_with_an_unused_dimension, browser):
    open_page(browser, study_with_an_unused_dimension)
    sliders = browser.find_elements("css selector", ".sliders input[type=range]")
    kl = [float(re.search(r"KL (-?[\d.]+)", label.text).group(1))
          for label in browser.find_elements("css selector", ".sliders .slider")]
    assert len(sliders) >= 2 and kl == sorted(kl, reverse=True)  # ordered by mean KL
    assert sliders[-1].get_attribute("class") == "inactive" and "inactive" in browser.find_elements(
        "css selector", ".sliders .slider")[-1].text
    most, unused = slider_change(browser, 0), slider_change(browser, len(sliders) - 1)
    assert most > 0  # the image follows the most-used dimension's slider
    assert unused < most and unused == pytest.approx(0.0, abs=1e-6)


def test_nothing_is_fetched_and_the_page_fits_a_laptop(study, browser, tmp_path):
    out, _ = study
    browser.get_log("performance")  # drop what earlier pages logged
    open_page(browser, out)
    browser.find_element("xpath", "//button[normalize-space()='Sample']").click()
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0
    requests = [json.loads(entry["message"])["message"] for entry in browser.get_log("performance")]
    urls = {event["params"]["request"]["url"] for event in requests if event["method"] == "Network.requestWillBeSent"}
    assert urls <= {(out / "explorer.html").resolve().as_uri()}, urls
    assert not [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    width = browser.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1] <= 1366, width
    folder = Path(SCREENSHOT_DIR) if SCREENSHOT_DIR else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(folder / "explorer_laptop.png"))
    screenshot = (folder / "explorer_laptop.png").read_bytes()
    assert screenshot[:8] == b"\x89PNG\r\n\x1a\n" and len(screenshot) > 10_000


def test_the_page_carries_every_size_with_its_headline_numbers(study):
    out, _ = study
    data = page_data(out / "explorer.html")
    rows = json.loads((out / "results.json").read_text())
    [variant] = data["variants"]
    assert [size["latent_dim"] for size in variant["sizes"]] == [2, 4] and variant["runnable"]
    for size in variant["sizes"]:
        psnr = next(r for r in rows if r["latent_dim"] == size["latent_dim"] and r["protocol"] == "test_set"
                    and r["class"] == "all" and r["metric"] == "psnr")
        assert size["psnr"] == psnr["mean"] and size["psnr_ci"] == [psnr["ci_low"], psnr["ci_high"]]
        assert size["seed"] == 0 and len(size["kl_per_dimension"]) == size["latent_dim"]
    assert sum(size["selected"] for size in variant["sizes"]) == 1
    assert len(data["image_labels"]) == 100 and sorted(set(data["image_labels"])) == list(range(10))
    assert "explorer.html" in (out / "report.md").read_text()  # the report links the page
    megabytes = (out / "explorer.html").stat().st_size / 1e6
    assert megabytes < 12


def test_explore_command_writes_the_page_and_refuses_a_non_study(study, tmp_path, capsys):
    out, _ = study
    (out / "explorer.html").unlink()
    assert main(["explore", str(out)]) == 0
    assert "explorer.html" in capsys.readouterr().out and (out / "explorer.html").is_file()
    assert main(["explore", str(tmp_path)]) == 2
    assert "not a study folder" in capsys.readouterr().err
