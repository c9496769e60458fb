# `make demo` and `make test` each build .venv themselves on a fresh machine (Python 3.11 + make).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test bench bench-system learn lab clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# One stamp per extra, so each target installs only what it needs, once per pyproject change.
$(VENV)/.installed-%: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[$*]'
	touch $@

$(VENV)/.installed-base: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# The main job: a gated RNN learns the moderate temporal-order task; each run gets a new folder.
demo: $(VENV)/.installed-base
	$(BIN)/attnrnn train --task temporal-order --level moderate --model gated --hidden 32 \
		--steps 600 --batch 32 --optimizer adam --lr 1e-2 --clip 1.0 --seed 0 \
		--out runs/demo-$$(date +%Y%m%d-%H%M%S)

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -n 2 -q

bench: $(VENV)/.installed-base
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

# The same benchmark with a Python that already has jax, optax, orbax-checkpoint, tqdm and
# matplotlib (a GPU image with no package index), e.g.
#   make bench-system BENCH_ARGS="--out docs/benchmarks-gpu.md"
bench-system:
	PYTHONPATH=src $(PYTHON) benchmarks/run.py $(BENCH_ARGS)

# What the models learn: the grid of docs/results.md (about 25 minutes on 2 cores).
learn: $(VENV)/.installed-base
	cd benchmarks && ../$(BIN)/python learning.py --preset results --jsonl runs.jsonl \
		--out results-table.md

# Jupyter refuses root unless told; a container user is often root.
lab: $(VENV)/.installed-notebooks
	$(BIN)/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
