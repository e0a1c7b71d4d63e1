# Two commands matter on a fresh machine with only Python: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SOURCE ?=
ARGS ?=

.PHONY: install run run-example test lint bench bench-pipeline bench-serve clean

$(BIN)/xccel: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,bench]'
	@touch $@

install: $(BIN)/xccel

## run the main job: the configured source (XCCEL_SOURCE, else the public dump) into the configured
## database (XCCEL_DATABASE_URL, else the embedded one)
run: install
	$(BIN)/xccel run-all $(if $(SOURCE),--source $(SOURCE)) $(ARGS)

## the same on the example dump shipped in the repository (no network needed)
run-example: install
	$(BIN)/xccel run-all --source examples/events.ndjson.gz $(ARGS)

test: install
	$(BIN)/ruff check xccel_cli tests $(wildcard bench)
	$(BIN)/pytest $(ARGS)

lint: install
	$(BIN)/ruff check xccel_cli tests $(wildcard bench)

## speed and memory targets (issues 5, 3 and 13) against the old design and DuckDB, with pass/fail; the output is
## prepended, dated, to docs/performance.md. ARGS go to the pipeline benchmark (e.g. ARGS="--repeat 3")
HEAVY_EVENTS ?= 2000000
bench: bench-pipeline bench-serve

bench-pipeline: install
	$(BIN)/python bench/bench.py --x10 --heavy-events $(HEAVY_EVENTS) --record docs/performance.md $(ARGS)

## needs wrk (apt-get install -y wrk); loads a real-size dump, then measures serve and the dashboard page
bench-serve: install
	$(BIN)/python bench/serve_load.py --lines 667961

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
