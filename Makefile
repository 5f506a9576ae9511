# The README's two commands: `make repro` and `make test`. Everything they need is installed here.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
# Stage commands call `python` and `dvc`; this puts the project's environment first on PATH.
RUN := PATH="$(BIN):$$PATH"

.PHONY: env data repro test test-fast timings report best sweep clean-venv

env: $(STAMP)

# Annoy and hnswlib compile from source at install, by default with -march=native: their float
# arithmetic, and so the trees in models/ann.ann and the recalls in plots/, then depend on the CPU.
# Built for the x86-64 baseline (SSE2), with no fused multiply-add and no fast-math, they compute the
# same bytes on any x86-64 machine. --no-cache-dir: a wheel built natively earlier is not reused.
PORTABLE_CFLAGS := -O2 -ffp-contract=off -fno-fast-math
ANNOY_ARGS := -O2,-ffp-contract=off,-fno-fast-math,-std=c++14,-fpermissive,-DANNOYLIB_MULTITHREADED_BUILD
PORTABLE_BUILD := CFLAGS='$(PORTABLE_CFLAGS)' ANNOY_COMPILER_ARGS='$(ANNOY_ARGS)' HNSWLIB_NO_NATIVE=1
PIP := $(BIN)/python -m pip --disable-pip-version-check

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PORTABLE_BUILD) $(PIP) install --quiet --no-cache-dir --force-reinstall --no-deps \
		$$(sed -n 's/^ *"\(annoy==[^"]*\)",*$$/\1/p; s/^ *"\(hnswlib==[^"]*\)",*$$/\1/p' pyproject.toml)
	$(PIP) install --quiet -e '.[test,report,hnsw,cnn]'
	touch $(STAMP)

# The fetch stage alone: the real files, checked, into data/fashion-mnist (DVC's cache keeps them).
data: $(STAMP)
	$(RUN) dvc repro fetch

repro: $(STAMP)
	$(RUN) dvc repro

test: $(STAMP)
	$(RUN) python -m pytest -q

# The unit tests only: no `dvc repro`, no stage subprocesses, no real data (under a minute).
test-fast: $(STAMP)
	$(RUN) python -m pytest -q -m "not e2e and not slow"

# Seconds and queries per second of the last run of each stage (kept out of git: they vary run to run).
timings: $(STAMP)
	$(RUN) python -c "import json; from fmproto.pipeline.timings import read_all; print(json.dumps(read_all('timings'), indent=2))"

# Markdown for a pull request: metrics and params diff against BASE (default main), key plots.
BASE ?= main
REPORT_FLAGS ?=
report: $(STAMP)
	$(RUN) fmproto report --base $(BASE) --out report.md $(REPORT_FLAGS)

# The best configuration bench/sweep.py found on the validation split, run through the whole pipeline
# as a DVC experiment and applied to the workspace: metrics/test.json then holds its test accuracy.
# `git checkout params.yaml dvc.lock metrics plots && dvc checkout` returns to the raw-pixel default.
BEST := -S features.kind=cnn+hog -S features.hog_cell=3 -S features.pca_components=192 \
	-S features.augment_shifts=true -S evaluate.k=20 -S evaluate.weights=distance
best: $(STAMP)
	$(RUN) dvc exp run $(BEST)

# The sweep behind BEST: queued experiments scored on the validation split only (about 25 minutes).
sweep: repro
	$(RUN) python bench/sweep.py

clean-venv:
	rm -rf $(VENV)
