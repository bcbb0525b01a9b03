# Two commands do all the set-up: `make demo` (the main job) and `make test` (the suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.snnctl-installed
RUNS ?= runs

.PHONY: setup demo test test-fast lint bench-layer clean

setup: $(STAMP)

# torch first, pinned to the CPU wheel on disk; a looser pin would pull a multi-GB CUDA build.
# lava-nc declares Python<3.11 and numpy<2 but runs here (see README, "Lava on Python 3.11").
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps --ignore-requires-python lava-nc==0.10.0
	$(BIN)/pip install -q 'asteval<0.10' networkx
	touch $(STAMP)

demo: setup
	$(BIN)/snnctl train --recipe digits-ann --out $(RUNS)/digits-ann
	$(BIN)/snnctl train --recipe digits-snn --out $(RUNS)/digits-snn
	$(BIN)/snnctl bench $(RUNS)/digits-snn --dataset digits --baseline $(RUNS)/digits-ann

test: setup
	$(BIN)/ruff check .
	$(BIN)/pytest -q

test-fast: setup
	$(BIN)/pytest -q -m "not slow"

lint: setup
	$(BIN)/ruff check .

bench-layer: setup
	$(BIN)/python benchmarks/layer_speed.py

clean:
	rm -rf $(VENV) $(RUNS) build *.egg-info
