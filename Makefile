# mlops-platform: `make demo` to see the whole loop, `make test` to check it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install chromium wrk demo test test-unit bench up down status lint lock clean

help: ## List the targets with what each does
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): requirements.lock pyproject.toml infra/templates.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@# Servers start ~2x faster from bytecode; PYTHONDONTWRITEBYTECODE may forbid caching it.
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib >/dev/null 2>&1 || true
	@# The platform's own packages too: each `mlops` command and service imports ~60 of their
	@# modules, 0.1 s to compile each time without bytecode (a stale file is simply recompiled).
	$(BIN)/python -m compileall -q -j 0 flows experiments registry monitoring infra serving >/dev/null 2>&1 || true
	@# Prefect's migrations of a new database, once here rather than at each new home's first start.
	$(BIN)/python -m infra.templates >/dev/null
	touch $(STAMP)

install: $(STAMP) ## Create .venv with the locked dependencies and the `mlops` command

demo: $(STAMP) ## Start the local platform and run the whole loop on the bundled example
	$(BIN)/mlops demo

chromium: ## Install Debian's headless Chromium for the browser tests (if missing)
	@command -v chromium >/dev/null || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

wrk: ## Install Debian's wrk HTTP load generator for the serving bench (if missing)
	@command -v wrk >/dev/null || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }

# Two workers: most integration tests wait on servers, so two halve the wall time on 2 cores
# (tests/conftest.py keeps each module, and the modules sharing a platform, on one worker).
test: $(STAMP) chromium ## Run every test (unit, integration and browser, against real servers)
	$(BIN)/python -m pytest -p no:cacheprovider -n 2 --no-loadscope-reorder

test-unit: $(STAMP) ## Run the unit tests only (no servers)
	$(BIN)/python -m pytest -p no:cacheprovider -m "not integration"

bench: $(STAMP) wrk ## Measure the speed figures; prints them, writes bench-*.json
	$(BIN)/python tests/bench/run.py --out bench-results.json
	$(BIN)/python tests/bench/drift_bench.py | tee bench-drift.json
	$(BIN)/python tests/bench/event_bench.py | tee bench-event.json
	$(BIN)/python tests/bench/loop_bench.py | tee bench-loop.json
	$(BIN)/python tests/bench/serve_bench.py | tee bench-serve.json
	$(BIN)/python tests/bench/full_bench.py | tee bench-full.json
	$(BIN)/python tests/bench/predict_bench.py | tee bench-predict.json
	$(BIN)/python tests/bench/window_bench.py | tee bench-window.json
	$(BIN)/python tests/bench/gate_bench.py | tee bench-gate.json

up: $(STAMP) ## Start the platform in the background (mlops up)
	$(BIN)/mlops up

down: $(STAMP) ## Stop the platform (mlops down); data stays in .mlops/
	$(BIN)/mlops down

status: $(STAMP) ## Show which services run and where (mlops status)
	$(BIN)/mlops status

lint: $(STAMP) ## Check the code with ruff
	$(BIN)/ruff check .

lock: $(STAMP) ## Re-resolve requirements.lock from pyproject.toml (plain name==version lines)
	$(BIN)/uv pip compile pyproject.toml --all-extras --no-emit-index-url --no-header \
		--no-annotate -o requirements.lock

clean: ## Remove the venv and caches (not the platform's data in .mlops/)
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
