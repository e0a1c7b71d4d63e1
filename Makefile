# Two commands matter on a fresh machine with only Python: `make run` and `make test`. `make help` lists the rest.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SOURCE ?=
ARGS ?=
CHECKED := xccel_cli tests $(wildcard bench)

.DEFAULT_GOAL := help
.PHONY: help install run run-example test test-fast lint format bench bench-pipeline bench-serve clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(BIN)/xccel: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,bench]'
	@touch $@

install: $(BIN)/xccel ## create .venv and install xccel with its test tools

run: install ## the main job: XCCEL_SOURCE (else the public dump) into XCCEL_DATABASE_URL (else the embedded server)
	$(BIN)/xccel run-all $(if $(SOURCE),--source $(SOURCE)) $(ARGS)

run-example: install ## the same on the example dump shipped in the repository (no network needed)
	$(BIN)/xccel run-all --source examples/events.ndjson.gz $(ARGS)

test: lint ## the gates (lint) and the whole test suite; ARGS go to pytest
	$(BIN)/pytest $(ARGS)

test-fast: install ## the in-process tier only: no real xccel processes, serve, psql or browser
	$(BIN)/pytest -m "not integration" $(ARGS)

lint: install ## ruff check, ruff format --check and mypy
	$(BIN)/ruff check $(CHECKED)
	$(BIN)/ruff format --check $(CHECKED)
	$(BIN)/mypy xccel_cli

format: install ## rewrite the code in the project's format (ruff format)
	$(BIN)/ruff format $(CHECKED)

HEAVY_EVENTS ?= 2000000
bench: bench-pipeline bench-serve ## speed and memory targets against the old design and DuckDB, with pass/fail; prepended, dated, to docs/performance.md

bench-pipeline: install ## the pipeline benchmark (1x, 10x, a heavy customer); ARGS go to bench/bench.py (e.g. ARGS="--repeat 3")
	$(BIN)/python bench/bench.py --x10 --heavy-events $(HEAVY_EVENTS) --record docs/performance.md $(ARGS)

bench-serve: install ## serve under load (needs wrk: apt-get install -y wrk)
	$(BIN)/python bench/serve_load.py --lines 667961

clean: ## remove .venv and the tools' caches
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis
