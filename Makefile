# The two commands a new user needs: `make demo` and `make test`.
# Both create .venv in the repo root and install everything on a machine that has only Python.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-gpu lint install serve-env clean bench

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[train,timm,lite,runtime,openvino,dev]'
	touch $(STAMP)

install: $(STAMP)

# The serving environment (`edgetune serve`, its tests, tools/bench_serve.py) is a deployment
# host: edgetune[runtime,serve], no PyTorch. A venv of its own because PyTriton pins numpy<2
# while the training side runs numpy 2. Triton's Python backend embeds libpython, so the venv
# is made from a Python built with a shared one (edgetune/serve/libpython.py says why): $(PYTHON)
# when it is one, else the first candidate that is; `make SERVE_PYTHON=/path/to/python3.X`
# chooses. CI on a fresh clone gets it from `make test`.
SERVE_VENV := .venv-serve
SERVE_BIN := $(SERVE_VENV)/bin
SERVE_STAMP := $(SERVE_VENV)/.installed
SERVE_CANDIDATES := $(PYTHON) python3.11 python3.12 python3.13 python3.10 /usr/bin/python3
SERVE_PYTHON ?= $(firstword $(foreach p,$(SERVE_CANDIDATES),$(shell $(p) edgetune/serve/libpython.py 2>/dev/null)))

$(SERVE_STAMP): pyproject.toml constraints.txt edgetune/serve/libpython.py
	@test -n "$(SERVE_PYTHON)" || { $(PYTHON) edgetune/serve/libpython.py; \
		echo "make: no Python here can serve; pass SERVE_PYTHON=/path/to/python3.X" >&2; exit 1; }
	rm -rf $(SERVE_VENV)
	$(SERVE_PYTHON) -m venv $(SERVE_VENV)
	$(SERVE_BIN)/pip install --quiet --upgrade pip
	$(SERVE_BIN)/pip install --quiet -c constraints.txt -e '.[runtime,serve]'
	touch $@

serve-env: $(SERVE_STAMP)

# The demo fine-tunes EfficientNet-Lite0 from its ImageNet weights (the lite extra's packages,
# no download) on the photographs edgetune ships, written out once by `python -m edgetune.data.photos`.
# --unfreeze auto probes the features and trains the head from cached features where they fit;
# 160 px and 8 epochs keep it to a few minutes on 2 cores (BENCHMARKS.md, The demo).
demo: $(STAMP)
	$(BIN)/edgetune run --data "$$($(BIN)/python -m edgetune.data.photos)" --model efficientnet_lite0 \
		--image-size 160 --epochs 8 --unfreeze auto --out runs/demo --overwrite

# Lint first: a broken architecture rule fails in seconds, not after the suite.
# --durations: the slowest tests are named in every CI log, so the suite's budget stays visible.
# The serving tests start `edgetune serve` from the serving environment (EDGETUNE_SERVE_PYTHON).
# -n (pytest-xdist), a file per worker: run one after another the suite kept 1.1 of the 2
# cores busy (689 CPU-s in 626 s), waiting on subprocesses, servers and single-threaded steps.
# The heaviest folders are handed out first (torchrun, the searches, adaptation), so the last
# minutes are short files on every worker rather than one long file on one. Four workers on the
# 2 cores: with one PyTorch thread a process (tests/conftest.py) two workers kept the cores 87%
# busy (waiting on servers and subprocesses); a third took the same suite from 448 to 415 s, a
# fourth from 472 to 439 s (back to back in one hour, 2026-12-02).
# The two environments install side by side (-j2): one after another they took 2 min 37 s and
# 34 s of a fresh clone's make test, mostly waiting on unpacking and the package index.
test:
	$(MAKE) --no-print-directory -j2 lint serve-env
	EDGETUNE_SERVE_PYTHON=$(CURDIR)/$(SERVE_BIN)/python $(BIN)/python -m pytest -q -n 4 --dist loadfile \
		--durations=10 tests/train tests/tune tests/adapt tests

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
	rm -rf $(VENV) $(SERVE_VENV) runs build
