# Two commands matter on a fresh machine with only Python: `make run` and `make test`. `make help` lists the rest.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SOURCE ?=
ARGS ?=
CHECKED := xccel_cli tests $(wildcard bench)

.DEFAULT_GOAL := help
.PHONY: help install run run-example test test-fast lint format bench bench-pipeline bench-serve bench-spark bench-lines clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
SPARK_ARGS ?=

$(BIN)/xccel: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,bench]'
	@touch $@

install: $(BIN)/xccel ## create .venv and install xccel with its test tools

EXAMPLE := examples/events.ndjson.gz

# SOURCE=..., else XCCEL_SOURCE (environment or .env); with neither, the example dump shipped here, so the first
# command works anywhere, even without network (`xccel run-all` alone reads the public dump)
run: install ## the main job into XCCEL_DATABASE_URL (else the embedded server), from SOURCE, XCCEL_SOURCE or the example dump
ifneq ($(SOURCE),)
	$(BIN)/xccel run-all --source '$(SOURCE)' $(ARGS)
else
	@if [ -n "$${XCCEL_SOURCE+set}" ] || grep -qs '^[[:space:]]*\(export[[:space:]]\+\)\?XCCEL_SOURCE=' .env; then \
		$(BIN)/xccel run-all $(ARGS); \
	else \
		echo "make run: no source configured, so this runs on the example dump $(EXAMPLE)." >&2; \
		$(BIN)/xccel run-all --source $(EXAMPLE) $(ARGS) || exit $$?; \
		echo "make run: that was the example dump; for the real data: make run SOURCE=URL-or-PATH, or set XCCEL_SOURCE (environment or .env)." >&2; \
	fi
endif

run-example: install ## the same on the example dump shipped in the repository (no network needed)
	$(BIN)/xccel run-all --source $(EXAMPLE) $(ARGS)

# pytest-xdist worker processes, each with its own embedded PostgreSQL. The integration tests mostly wait (on a
# killed process, a server, a timeout), so the whole suite gains from more workers than cores; each file stays on
# one worker (its module fixtures, the Spark session, set up once). The in-process tier is CPU-bound and its
# fixtures cheap: its tests are spread one by one. TEST_WORKERS=0 runs in this process (for a debugger).
TEST_WORKERS ?= 4
FAST_WORKERS ?= 2
test: lint ## the gates (lint) and the whole test suite; ARGS go to pytest
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile $(ARGS)

test-fast: install ## the in-process tier only: no real xccel processes, serve, psql or browser
	$(BIN)/pytest -n $(FAST_WORKERS) --dist load -m "not integration" $(ARGS)

lint: install ## ruff check, ruff format --check and mypy
	$(BIN)/ruff check $(CHECKED)
	$(BIN)/ruff format --check $(CHECKED)
	$(BIN)/mypy xccel_cli

format: install ## rewrite the code in the project's format (ruff format)
	$(BIN)/ruff format $(CHECKED)

HEAVY_EVENTS ?= 2000000
bench: bench-pipeline bench-serve bench-spark ## speed and memory targets against the old design and DuckDB, with pass/fail; prepended, dated, to docs/performance.md

bench-pipeline: install ## the pipeline benchmark (1x, 10x, a heavy customer); ARGS go to bench/bench.py (e.g. ARGS="--repeat 3")
	$(BIN)/python bench/bench.py --x10 --heavy-events $(HEAVY_EVENTS) --record docs/performance.md $(ARGS)

bench-serve: install ## serve under load (needs wrk: apt-get install -y wrk)
	$(BIN)/python bench/serve_load.py --lines 667961

bench-spark: install ## --engine spark beside --engine postgres (needs Java; installs the spark extra); SPARK_ARGS="--x10 --cluster"
	$(BIN)/pip install --quiet -e '.[test,bench,spark]'
	$(BIN)/python bench/spark_bench.py $(SPARK_ARGS)

bench-lines: install ## instructions per line, extract's loop against the decode floor (needs valgrind); DUMP=events.ndjson
	$(BIN)/python bench/line_budget.py --path $(DUMP) $(ARGS)

clean: ## remove .venv and the tools' caches
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis
