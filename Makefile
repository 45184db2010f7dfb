# The three commands the README names: set-up, the default study, the tests.
PYTHON ?= python3
DATA_DIR ?= ../shared/datasets/mnist

.PHONY: setup study quick test test-fast bench docs

# torch==2.13.0 first: this machine carries that CPU build locally, and an unpinned torch
# would pull a multi-GB CUDA build from PyPI.
setup:
	$(PYTHON) -m pip install torch==2.13.0
	$(PYTHON) -m pip install -e ".[dev]"

study:
	latentsweep run --data-dir $(DATA_DIR) --out runs/study

quick:
	latentsweep run --data-dir $(DATA_DIR) --out runs/quick --preset quick

test:
	LATENTSWEEP_DATA_DIR=$${LATENTSWEEP_DATA_DIR:-$(abspath $(DATA_DIR))} $(PYTHON) -m pytest -q

# The tier to run while working: every module, no subprocess, browser, Dask or real-data end-to-end test.
test-fast:
	LATENTSWEEP_DATA_DIR=$${LATENTSWEEP_DATA_DIR:-$(abspath $(DATA_DIR))} $(PYTHON) -m pytest -q -m "not slow"

bench:
	$(PYTHON) benchmarks/bench_train.py --data-dir $(DATA_DIR) --quick-study

# Refresh the copy of the default study's report that the README links (docs/study/).
docs:
	latentsweep report runs/study
	rm -rf docs/study && mkdir -p docs/study
	cp -r runs/study/report.md runs/study/figures runs/study/results.csv docs/study/
	# explorer.html (several MB) stays out of git: point the copied report's link at the command that writes it
	sed -i 's|\[explorer.html\](explorer.html)|`explorer.html` in the study folder (`latentsweep explore runs/study` writes it; not copied here, it is several MB)|' docs/study/report.md
