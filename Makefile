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
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

install: $(BIN)/xccel

EXAMPLE := examples/events.ndjson.gz

## run the main job into the configured database (XCCEL_DATABASE_URL, else the embedded one), from
## SOURCE=..., else XCCEL_SOURCE (environment or .env); with neither, from the example dump shipped here,
## so the first command works anywhere, even without network (`xccel run-all` alone reads the public dump)
run: install
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

## the same on the example dump shipped in the repository (no network needed)
run-example: install
	$(BIN)/xccel run-all --source $(EXAMPLE) $(ARGS)

test: install
	$(BIN)/ruff check xccel_cli tests $(wildcard bench)
	$(BIN)/pytest $(ARGS)

lint: install
	$(BIN)/ruff check xccel_cli tests $(wildcard bench)

## speed and memory targets (issues 5 and 3); ARGS go to the pipeline benchmark (e.g. ARGS="--x10")
bench: bench-pipeline bench-serve

bench-pipeline: install
	$(BIN)/python bench/bench.py $(ARGS)

## needs wrk (apt-get install -y wrk); loads a real-size dump, then measures serve and the dashboard page
bench-serve: install
	$(BIN)/python bench/serve_load.py --lines 667961

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
