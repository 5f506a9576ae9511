# The README's two commands: `make repro` and `make test`. Everything they need is installed here.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
# Stage commands call `python` and `dvc`; this puts the project's environment first on PATH.
RUN := PATH="$(BIN):$$PATH"
PIP := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: env env-cnn env-report env-cluster env-test lock data repro test test-fast lint timings report best sweep clean-venv

# Each target installs what it needs and no more, every distribution pinned with its hashes in a lock
# (requirements/*.txt, made by `make lock` from pyproject.toml; Linux x86-64, CPython 3.11):
#   core    env, data, repro, timings: the default pipeline (no PyTorch; about 0.5 GB)
#   cnn     best, sweep: + PyTorch's CPU build, for features.kind cnn
#   report  report: + vl-convert, the report's pictures offline
#   cluster env-cluster: + Dask, for the stages' exact search on a cluster (DASK_SCHEDULER_ADDRESS)
#   test    test, test-fast and the benches: everything (the tests cover every feature; the peers
#           bench/knn.py compares with: scikit-learn, faiss)
# The locks are made together (core, cnn and report constrained by test), so one venv can take several.
env: $(VENV)/.installed-core
env-cnn: $(VENV)/.installed-cnn
env-report: $(VENV)/.installed-report
env-cluster: $(VENV)/.installed-cluster
env-test: $(VENV)/.installed-test

# Annoy and hnswlib compile from source at install, by default with -march=native: their float
# arithmetic, and so the trees in models/ann.ann and the recalls in plots/, then depend on the CPU.
# Built for the x86-64 baseline (SSE2), with no fused multiply-add and no fast-math, they compute the
# same bytes on any x86-64 machine. --no-cache-dir: a wheel built natively earlier is not reused.
PORTABLE_CFLAGS := -O2 -ffp-contract=off -fno-fast-math
ANNOY_ARGS := -O2,-ffp-contract=off,-fno-fast-math,-std=c++14,-fpermissive,-DANNOYLIB_MULTITHREADED_BUILD
PORTABLE_BUILD := CFLAGS='$(PORTABLE_CFLAGS)' ANNOY_COMPILER_ARGS='$(ANNOY_ARGS)' HNSWLIB_NO_NATIVE=1

# PyTorch's CPU wheels: pip's default torch for Linux is the CUDA build (several GB). The index is asked
# only where it answers within 10 s; elsewhere (a machine whose configured pip sources carry the CPU
# wheel, or none) pip's own sources, so an unreachable index costs seconds, not a hang.
TORCH_INDEX := https://download.pytorch.org/whl/cpu
torch_index = $(shell $(PYTHON) -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=10)" \
	$(TORCH_INDEX)/torch/ >/dev/null 2>&1 && echo $(1) $(TORCH_INDEX))
# The lines of one package of a lock (its pin and its hashes), as a requirements file of its own.
lock_entry = awk '/^($(1))==/ {p = 1} p {print} p && !/\\$$/ {p = 0}' $(2) > $(3)

$(VENV)/.portable: requirements/core.txt Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(call lock_entry,annoy|hnswlib,requirements/core.txt,$(VENV)/portable.txt)
	$(PORTABLE_BUILD) $(PIP) install --quiet --no-cache-dir --force-reinstall --no-deps --require-hashes \
		-r $(VENV)/portable.txt
	touch $@

# PyTorch first and alone, from its CPU index: only for a lock that has it (the index is not asked otherwise).
$(VENV)/.installed-%: requirements/%.txt pyproject.toml $(VENV)/.portable
	$(if $(shell grep -s '^torch==' $<),$(call lock_entry,torch,$<,$(VENV)/torch.txt) && \
		$(PIP) install --quiet --no-deps --require-hashes --retries 1 --timeout 20 \
		$(call torch_index,--index-url) -r $(VENV)/torch.txt)
	$(PIP) install --quiet --require-hashes -r $<
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	touch $@

# After changing a pin in pyproject.toml or requirements/build.in, or to take newer releases of what they
# leave free (LOCK_FLAGS=--upgrade; without it the pins already in the locks are kept): regenerate the
# locks, commit them, and every target installs the new set.
LOCK_TOOLS := .venv-lock
COMPILE = $(LOCK_TOOLS)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
	--no-emit-index-url --no-emit-find-links $(LOCK_FLAGS) $(call torch_index,--extra-index-url)
lock:
	test -x $(LOCK_TOOLS)/bin/python || $(PYTHON) -m venv $(LOCK_TOOLS)
	$(LOCK_TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check pip-tools==7.7.0
	$(COMPILE) --extra test --extra report --extra cnn --extra cluster -o requirements/test.txt pyproject.toml requirements/build.in
	$(COMPILE) -c requirements/test.txt -o requirements/core.txt pyproject.toml requirements/build.in
	$(COMPILE) -c requirements/test.txt --extra cnn -o requirements/cnn.txt pyproject.toml requirements/build.in
	$(COMPILE) -c requirements/test.txt --extra report -o requirements/report.txt pyproject.toml requirements/build.in
	$(COMPILE) -c requirements/test.txt --extra cluster -o requirements/cluster.txt pyproject.toml requirements/build.in

# The fetch stage alone: the real files, checked, into data/fashion-mnist (DVC's cache keeps them).
data: env
	$(RUN) dvc repro fetch

repro: env
	$(RUN) dvc repro

test: env-test
	$(RUN) python -m pytest -q

# The unit tests only: no `dvc repro`, no stage subprocesses, no real data (under a minute).
test-fast: env-test
	$(RUN) python -m pytest -q -m "not e2e and not slow"

# The workflows in .github/workflows/ through zizmor, offline: no finding at medium or above (`make test` runs
# the same check, and the shape of the two workflows, in tests/ci/).
lint: env-test
	$(RUN) zizmor --offline --min-severity medium .github/workflows/

# Seconds and queries per second of the last run of each stage (kept out of git: they vary run to run).
timings: env
	$(RUN) python -c "import json; from fmproto.pipeline.timings import read_all; print(json.dumps(read_all('timings'), indent=2))"

# Markdown for a pull request: metrics and params diff against BASE (default main), key plots.
BASE ?= main
REPORT_FLAGS ?=
report: env-report
	$(RUN) fmproto report --base $(BASE) --out report.md $(REPORT_FLAGS)

# The best configuration bench/sweep.py found on the validation split, run as a DVC experiment through the
# stages it changes (features, evaluate-valid, evaluate-test, explain-test, and fetch, ingest, dedup-check and
# split, which they read) and applied to the workspace: metrics/test.json then holds its test accuracy. The
# analysis stages (centroids, kmeans, knn-scaling, ann-index, ann-frontier) read pixels only: `make repro` runs them.
# `git checkout params.yaml dvc.lock metrics plots && dvc checkout` returns to the raw-pixel default.
# GMLVQ (in evaluate-test's summary) classifies each image with its four one-pixel shifts: 0.9339 on validation
# against 0.9301 without; 10 epochs, as good there as 15, 20 or 30 (0.9334, 0.9340, 0.9329) in a third of
# the 30 epochs' time: about 50 s of make best's 15 minutes from a fresh clone on 2 cores.
BEST := -S features.kind=cnn+hog -S features.hog_cell=3 -S features.pca_components=192 \
	-S features.augment_shifts=true -S evaluate.k=20 -S evaluate.weights=distance \
	-S gmlvq.query_shifts=true -S gmlvq.epochs=10
best: env-cnn
	$(RUN) dvc exp run $(BEST) evaluate-valid explain-test

# The sweep behind BEST: queued experiments scored on the validation split only (about 25 minutes).
sweep: env-cnn repro
	$(RUN) python bench/sweep.py

clean-venv:
	rm -rf $(VENV) $(LOCK_TOOLS)
