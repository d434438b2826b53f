# florc — developer entry points. `make help` lists them; `make demo` and the test, lint and
# typecheck targets set everything up on a fresh machine (they depend on `install`).

.DEFAULT_GOAL := help
SHELL := /bin/bash

VENV   := .venv
PYTHON := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed
PRIMER_STAMP := $(VENV)/.primer-installed

# torch is always pinned. Extra pip arguments for the torch install only, e.g. a CPU-only
# wheel index: make install TORCH_PIP_ARGS='--index-url https://download.pytorch.org/whl/cpu'
TORCH_VERSION  := 2.13.0
TORCH_PIP_ARGS ?=

.PHONY: help install demo test test-rest test-all lint typecheck clean bench bench-full primer

help: ## List the targets
	@echo "florc make targets:"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(STAMP) ## Create .venv; install pinned torch, florc (editable, dev and ray extras), scikit-learn

# Re-runs only when the packaging metadata changes (or after `make clean`).
$(STAMP): setup.cfg pyproject.toml
	@test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PIP) install $(TORCH_PIP_ARGS) torch==$(TORCH_VERSION)
	$(PIP) install -e '.[dev,ray]' scikit-learn
	@touch $@

demo: install ## Run the demo: record, add a print, replay epochs 5-8, list runs and logs
	demo/run_demo.sh

# The unit tier (tests/unit/, in process) and the end-to-end cases marked `smoke`, one per
# feature (tests/e2e/ holds them all, marked `e2e`). HYPOTHESIS=1 runs the full fuzz test.
test: install ## Unit tests and one end-to-end case per feature (a few minutes)
	$(PYTHON) -m pytest -q -m "not e2e or smoke" -n $(TEST_JOBS) --dist load

# The tests are independent (temporary folders, subprocess runs): spread over TEST_JOBS
# processes (pytest-xdist; default 2, the cores CI has).
TEST_JOBS ?= 2

test-rest: install ## What `make test` leaves out: the other end-to-end cases, the full fuzz test
	$(PYTHON) -m pytest -q -m "e2e and not smoke" -n $(TEST_JOBS) --dist load
	HYPOTHESIS=1 $(PYTHON) -m pytest -q tests/unit/test_fuzz.py

test-all: test test-rest ## Every test: `make test`, then the rest (what CI runs)

lint: install ## Run ruff on florc, tests, benchmarks and primer
	$(VENV)/bin/ruff check florc tests benchmarks primer

typecheck: install ## Run mypy on florc (configured in pyproject.toml)
	$(VENV)/bin/mypy

clean: ## Remove caches, build outputs and the install stamps (.venv itself stays)
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist *.egg-info benchmarks/scratch
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
	rm -f $(STAMP) $(BENCH_STAMP) $(PRIMER_STAMP)

# The benchmarks also need FlorDB (the peer they compare with) and matplotlib (plots).
$(BENCH_STAMP): $(STAMP)
	$(PIP) install -e '.[bench]'
	@touch $@

bench: $(BENCH_STAMP) ## Quick benchmark suite (about 10 min on 2 cores) into benchmarks/RESULTS.md
	$(PYTHON) benchmarks/bench_suite.py
	$(PYTHON) benchmarks/bench_compile.py
	$(PYTHON) benchmarks/bench_startup.py
	OMP_NUM_THREADS=1 $(PYTHON) benchmarks/bench_capture.py
	$(PYTHON) benchmarks/bench_multiversion.py
	OMP_NUM_THREADS=1 $(PYTHON) benchmarks/bench_frameworks.py
	$(PYTHON) benchmarks/bench_ddp.py
	$(PYTHON) benchmarks/bench_export.py

bench-full: $(BENCH_STAMP) ## Full suite, checkpoint overhead vs budget, and plots (over an hour)
	$(PYTHON) benchmarks/bench_suite.py --full
	$(PYTHON) benchmarks/bench_checkpoint.py
	$(PYTHON) benchmarks/plots.py

# The primer runs florc over public training scripts (primer/manifest.toml) and writes
# docs/PRIMER.md. It needs the repositories: from FLORC_PRIMER_MIRROR (a folder of mirrors,
# <owner>+<name>/repo or <owner>/<name>) or else a network to clone them. Not part of `make test`.
$(PRIMER_STAMP): $(STAMP)
	$(PIP) install -e '.[primer]'
	@touch $@

primer: $(PRIMER_STAMP) ## florc on public training scripts into docs/PRIMER.md (needs the repositories)
	$(PYTHON) primer/run.py $(PRIMER_ARGS)
