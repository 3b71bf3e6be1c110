# The two commands a new user needs: `make demo` and `make test`.
# Both create .venv in the repo root and install everything on a machine that has only Python.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-gpu install clean bench

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[train,runtime,openvino,dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/edgetune run --out runs/demo --overwrite

# --durations: the slowest tests are named in every CI log, so the suite's budget stays visible.
test: $(STAMP)
	$(BIN)/python -m pytest -q --durations=10

test-gpu: $(STAMP)
	$(BIN)/python -m pytest -q -m "gpu or tensorrt"

clean:
	rm -rf $(VENV) runs
