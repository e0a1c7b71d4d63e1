# Two commands matter on a fresh machine with only Python: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SOURCE ?=
ARGS ?=
SPARK_ARGS ?=

.PHONY: install run run-example test lint bench bench-pipeline bench-serve bench-spark clean

$(BIN)/xccel: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
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

## speed and memory targets (issues 5 and 3); ARGS go to the pipeline benchmark (e.g. ARGS="--x10")
bench: bench-pipeline bench-serve bench-spark

bench-pipeline: install
	$(BIN)/python bench/bench.py $(ARGS)

## needs wrk (apt-get install -y wrk); loads a real-size dump, then measures serve and the dashboard page
bench-serve: install
	$(BIN)/python bench/serve_load.py --lines 667961

## --engine spark beside --engine postgres (needs Java; installs the spark extra); SPARK_ARGS="--x10 --cluster"
bench-spark: install
	$(BIN)/pip install --quiet -e '.[test,spark]'
	$(BIN)/python bench/spark_bench.py $(SPARK_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
