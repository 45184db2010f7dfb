"""How fast the explorer page decodes, in a real browser, and how big the page is.

    python benchmarks/bench_explorer.py runs/study        # needs chromium and chromedriver

Opens STUDY_DIR/explorer.html (written by `latentsweep run`, or `latentsweep explore STUDY_DIR`) in
headless Chromium and times, with the page's own performance.now, 500 decodes of random latent
codes at each latent size (window.explorer.timeDecode), three times; prints the median
milliseconds per decode per size, the page's size and the browser's version. Run on an idle machine.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study_dir", help="a study folder with explorer.html")
    parser.add_argument("--repeats", type=int, default=500, help="decodes per size and pass (default 500)")
    args = parser.parse_args()
    from selenium import webdriver

    page = Path(args.study_dir) / "explorer.html"
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1366,768"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=shutil.which("chromedriver")))
    try:
        driver.get(page.resolve().as_uri())
        passes = [driver.execute_script("return window.explorer.timeDecode(arguments[0])", args.repeats) for _ in range(3)]
        version = driver.capabilities.get("browserVersion")
    finally:
        driver.quit()
    print(f"{page}: {page.stat().st_size / 1e6:.1f} MB; headless Chromium {version} on {platform.processor() or platform.machine()}")
    for size in sorted(passes[0], key=int):
        values = [p[size] for p in passes]
        print(f"  latent size {size:>3}: {statistics.median(values):.2f} ms per decode (passes: "
              + ", ".join(f"{v:.2f}" for v in values) + ")")


if __name__ == "__main__":
    main()
