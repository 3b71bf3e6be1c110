# The two commands a new user needs: `make demo` and `make test`.
# Both create .venv in the repo root and install everything on a machine that has only Python.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-gpu lint install clean bench

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[train,timm,lite,runtime,openvino,dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/edgetune run --out runs/demo --overwrite

# Lint first: a broken architecture rule fails in seconds, not after the suite.
# --durations: the slowest tests are named in every CI log, so the suite's budget stays visible.
test: lint
	$(BIN)/python -m pytest -q --durations=10

# ruff: lint and import order. lint-imports: the contracts in pyproject.toml, read from a
# regular build of the package (the editable install maps export/ and calib/ into
# edgetune.export and edgetune.calib at import time, which import-linter cannot see).
LINT_TREE := build/lint
lint: $(STAMP)
	$(BIN)/ruff check --quiet .
	rm -rf $(LINT_TREE)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation --target $(LINT_TREE) .
	cd $(LINT_TREE) && PYTHONPATH=. $(CURDIR)/$(BIN)/lint-imports --no-cache $(CURDIR)/pyproject.toml

test-gpu: $(STAMP)
	$(BIN)/python -m pytest -q -m "gpu or tensorrt"

clean:
	rm -rf $(VENV) runs build
