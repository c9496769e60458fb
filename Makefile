# `make demo` and `make test` each build .venv themselves on a fresh machine (Python 3.11 + make).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test docs fuzz reliability bench bench-system learn lab clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# One stamp per extra, so each target installs only what it needs, once per pyproject change.
$(VENV)/.installed-%: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[$*]'
	touch $@

# The main job: the homework's two recurrences learn the moderate temporal-order task side by
# side (each its own run folder), then one plot of both; each demo gets a new folder.
DEMO_FLAGS := --task temporal-order --level moderate --hidden 32 --steps 600 --batch 32 \
	--optimizer adam --clip 1.0 --seed 0 --no-progress
demo: $(VENV)/.installed-train
	@out=runs/demo-$$(date +%Y%m%d-%H%M%S); \
	$(BIN)/attnrnn train --model gated $(DEMO_FLAGS) --out $$out/gated && \
	$(BIN)/attnrnn train --model attention:inf $(DEMO_FLAGS) --out $$out/attention-inf && \
	$(BIN)/attnrnn compare $$out/gated $$out/attention-inf --out $$out/curves.png

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -n 2 --dist worksteal -q

# The site (README as home, theory/results/performance/reliability pages, one API page per public
# name, the notebooks with their outputs) in site/; strict, so a broken reference fails it.
# Then every page is opened in headless Chromium (docs/check_browser.py): math typeset, tables
# within the column. Chromium comes from Debian's packages, installed here the first time.
CHROMIUM := /usr/bin/chromium
docs: $(VENV)/.installed-docs | $(CHROMIUM)
	NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(BIN)/mkdocs build --strict
	$(BIN)/python docs/check_site.py site
	$(BIN)/python docs/check_browser.py site
	@echo "open site/index.html"

$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi; \
	DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q chromium \
	|| { $$sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q chromium; }

# The figures of docs/reliability.md: >= 5,000 generated bad calls, kill -9 and Ctrl-C at 20
# moments each of a run (each resumed run bitwise equal to the uninterrupted one), counts printed.
fuzz: $(VENV)/.installed-test
	ATTNRNN_FUZZ_CASES=5000 $(BIN)/python -m pytest -q -s tests/test_fuzz.py

reliability: $(VENV)/.installed-test
	ATTNRNN_KILL_POINTS=20 ATTNRNN_INTERRUPT_POINTS=20 $(BIN)/python -m pytest -q -s tests/test_reliability.py

bench: $(VENV)/.installed-bench
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

# The same benchmark with a Python that already has jax, optax, orbax-checkpoint, tqdm and
# matplotlib (a GPU image with no package index), e.g.
#   make bench-system BENCH_ARGS="--out docs/benchmarks-gpu.md"
bench-system:
	PYTHONPATH=src $(PYTHON) benchmarks/run.py $(BENCH_ARGS)

# What the models learn (docs/results.md), one experiment each (experiments/*/README.md): the
# 1997 paper's tables under its protocol (6a and the adding problem at T = 100 here, with Flax's
# LSTM cell as a peer row; the longer adding rows, experiments/paper1997/results-long.jsonl,
# come from experiments/paper1997/adding_long.sh on a bigger machine), the AttentionRNN runs
# under the held-out protocol, and MNIST-1D against its published table; each writes its raw
# rows beside itself and its table into docs/.
learn: $(VENV)/.installed-bench
	$(BIN)/python experiments/mnist1d/run.py
	rm -f experiments/paper1997/results.jsonl
	$(BIN)/python experiments/paper1997/run.py --rows 6a adding100 \
		--jsonl experiments/paper1997/results.jsonl
	$(BIN)/python experiments/paper1997/run.py --merge experiments/paper1997/results.jsonl \
		experiments/paper1997/results-long.jsonl --out docs/results-1997.md
	$(BIN)/python experiments/attention/heldout.py --preset results \
		--jsonl experiments/attention/heldout.jsonl --out docs/results-heldout.md

# Jupyter refuses root unless told; a container user is often root.
lab: $(VENV)/.installed-notebooks
	$(BIN)/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .cache site
