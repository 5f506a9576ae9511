# The README's two commands: `make repro` and `make test`. Everything they need is installed here.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
# Stage commands call `python` and `dvc`; this puts the project's environment first on PATH.
RUN := PATH="$(BIN):$$PATH"

.PHONY: env data repro test report clean-venv

env: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

data: $(STAMP)
	$(RUN) python -m fmproto.fetch

repro: data
	$(RUN) dvc repro

test: $(STAMP)
	$(RUN) python -m pytest -q

# Markdown for a pull request: metrics and params diff against BASE (default main), key plots.
BASE ?= main
REPORT_FLAGS ?=
report: $(STAMP)
	$(RUN) fmproto report --base $(BASE) --out report.md $(REPORT_FLAGS)

clean-venv:
	rm -rf $(VENV)
