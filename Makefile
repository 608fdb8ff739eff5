# The two commands a newcomer needs: `make run` and `make test`. Everything else is a helper of theirs.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: help install run test lint format typecheck contracts bench bench-outbox bench-import bench-oauth bench-gateway bench-placement bench-roster bench-catalog bench-launch bench-metering-ingest bench-metering-statements bench-metering-chaos clean

help:
	@echo "make run        start the whole platform with demo data"
	@echo "make test       install what is needed, lint, and run every test"
	@echo "make contracts  regenerate the JSON Schemas and AsyncAPI document in contracts/generated"
	@echo "make bench      run the benchmarks in bench/ (figures go to bench/RESULTS.md by hand)"

$(UV):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' || \
	  { echo "Python 3.11 is required (found: $$($(PYTHON) --version 2>&1)). Install python3.11 and retry, or run 'make PYTHON=/path/to/python3.11 ...'."; exit 1; }
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

$(VENV)/.installed: $(UV) uv.lock pyproject.toml contracts/pyproject.toml kit/pyproject.toml gateway/pyproject.toml $(wildcard services/*/pyproject.toml)
	$(UV) sync --frozen --compile-bytecode --python $(PYTHON)
	@touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/python scripts/run.py

test: install
	@bash scripts/ensure-chromium.sh
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy contracts/contracts kit/kit services/*/*/ gateway/gateway examples/vendor-app/vendor_app
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: install
	$(BIN)/mypy contracts/contracts kit/kit services/*/*/ gateway/gateway examples/vendor-app/vendor_app

contracts: install
	$(BIN)/python -m contracts.generate

bench: bench-outbox bench-import bench-oauth bench-gateway bench-placement bench-roster bench-catalog bench-launch \
       bench-metering-ingest bench-metering-statements bench-metering-chaos

bench-outbox: install
	$(BIN)/python bench/outbox_throughput.py

bench-import: install
	$(BIN)/python bench/import_students.py

bench-oauth: install
	$(BIN)/python bench/oauth_throughput.py

bench-gateway: install
	$(BIN)/python bench/gateway_latency.py

bench-placement: install
	$(BIN)/python bench/placement.py

bench-roster: install
	$(BIN)/python bench/roster_listing.py

bench-catalog: install
	$(BIN)/python bench/catalog_search.py

bench-launch: install
	$(BIN)/python bench/launch_latency.py

clean:
	rm -rf $(VENV) $(TOOLS) var .pytest_cache .mypy_cache .ruff_cache

bench-metering-ingest: install
	$(BIN)/python bench/metering_ingest.py --api-share 0.9

bench-metering-statements: install
	$(BIN)/python bench/metering_statements.py

bench-metering-chaos: install
	$(BIN)/python bench/metering_chaos.py
