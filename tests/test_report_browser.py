"""report.html in a real browser: Debian's chromium, headless, driven by selenium through chromedriver.

.ci/run installs chromium and chromium-driver; elsewhere the test is skipped when they are missing
(the browser fixture is in conftest.py, shared with the explorer's tests).
"""

from __future__ import annotations

import base64
import csv
import os
from pathlib import Path

import pytest

pytest.importorskip("selenium.webdriver")

# Where the screenshots go: LATENTSWEEP_SCREENSHOT_DIR when set (to keep them), else the test's folder.
SCREENSHOT_DIR = os.environ.get("LATENTSWEEP_SCREENSHOT_DIR")


def test_report_renders_every_figure_and_the_measured_numbers(study, browser, tmp_path):
    out, _ = study
    browser.get((out / "report.html").resolve().as_uri())
    images = browser.execute_script(
        "return Array.from(document.images).map(i => ({w: i.naturalWidth, h: i.naturalHeight, done: i.complete, alt: i.alt}))")
    assert len(images) >= 14  # every figure of the e2e study (see FIGURES in test_cli.py)
    for image in images:
        assert image["done"] and image["w"] > 0 and image["h"] > 0, image
        assert len(image["alt"]) > 10, "figures need alt text"

    text = browser.execute_script("return document.body.innerText")
    with (out / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    overall_psnr = [row for row in rows if (row["protocol"], row["class"], row["metric"]) == ("test_set", "all", "psnr")]
    assert len(overall_psnr) == 2
    for row in overall_psnr:  # the report shows PSNR with 2 decimals
        assert f"{float(row['mean']):.2f}" in text, row
    per_digit_mse = [row for row in rows if (row["protocol"], row["metric"]) == ("test_set", "mse") and row["class"] != "all"]
    for row in per_digit_mse:
        assert f"{float(row['mean']):.4f}" in text, row
    cells = browser.execute_script("return document.querySelectorAll('table td').length")
    assert cells > 100

    # Reads on a laptop screen: nothing wider than the window (wide tables scroll inside their own box).
    page_width = browser.execute_script("return document.documentElement.scrollWidth")
    window_width = browser.execute_script("return window.innerWidth")
    assert page_width <= window_width, f"page is {page_width}px wide in a {window_width}px window"

    folder = Path(SCREENSHOT_DIR) if SCREENSHOT_DIR else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    screenshot = folder / "report_laptop.png"
    browser.save_screenshot(str(screenshot))
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 10_000

    # And in print: Chromium's own PDF of the page.
    pdf = base64.b64decode(browser.print_page())
    assert pdf[:5] == b"%PDF-" and pdf.count(b"/Type /Page") >= 2
    (folder / "report.pdf").write_bytes(pdf)
