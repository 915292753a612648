# hashdb: two commands for a newcomer, `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint install clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	@echo "compiling the index kernels once (numba caches them on disk)"
	$(BIN)/python -c 'from api.loader import warm_kernels; warm_kernels()'
	touch $(STAMP)

install: $(STAMP)

## Initialise the embedded SQLite database (printing a first admin key) and serve.
run: $(STAMP)
	$(BIN)/hashdb init
	$(BIN)/hashdb serve

## Lint, type-check and run the whole test suite (TEST_WORKERS processes in parallel).
TEST_WORKERS ?= 2
test: $(STAMP) lint
	scripts/ensure-chromium
	$(BIN)/python -m pytest -p no:cacheprovider -n $(TEST_WORKERS)

lint: $(STAMP)
	$(BIN)/ruff check hashdb ingest api tests benchmarks
	$(BIN)/ruff format --check hashdb ingest api tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python -m benchmarks.hashing

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
