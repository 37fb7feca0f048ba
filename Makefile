# Every routine task. `make run` and `make test` set up their own virtual environment: `make run` installs
# only what serving needs, `make test` (and every development target) the toolchain too. Each install has
# its stamp, so either order installs each set once and again only when pyproject.toml changes.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check
RUNTIME_STAMP := $(VENV)/.runtime-stamp
DEV_STAMP     := $(VENV)/.dev-stamp
PORT   ?= 8000
HOST   ?= 127.0.0.1
PYTEST_ARGS ?= -n 2

.PHONY: venv runtime run test lint typecheck pytest bench bench-pipeline bench-workspace bench-metrics fuzz fmt migrate clean cluster-smoke

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

## What `leadflow serve` needs (the project's dependencies), no development tools.
$(RUNTIME_STAMP): pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e .
	touch $@

## Everything: the project and its `dev` extra (pytest, ruff, mypy, schemathesis, playwright ...).
## It includes the runtime set, so its stamp counts for that one too.
$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e '.[dev]'
	touch $(RUNTIME_STAMP) $@

runtime: $(RUNTIME_STAMP)
venv: $(DEV_STAMP)

## Migrate the SQLite database under ./var, seed the demo campaign, print an admin token, serve on $(PORT).
run: runtime
	$(BIN)/leadflow quickstart
	$(BIN)/leadflow serve --host $(HOST) --port $(PORT)

## The whole suite: lint, format check, types, tests.
test: venv lint typecheck pytest

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: venv
	$(BIN)/mypy

pytest: venv
	$(BIN)/pytest $(PYTEST_ARGS)

fmt: venv
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

migrate: runtime
	$(BIN)/leadflow migrate

## Load benchmark against a local server on SQLite (127.0.0.1 only, bounded in time).
## `make bench BENCH_DB=postgres`: PostgreSQL, 2 API + 2 worker processes (bench/cluster.py;
## LEADFLOW_TEST_POSTGRES_URL names the server, default postgresql://postgres@127.0.0.1:5432/test).
BENCH_DB ?= sqlite
bench: venv
ifeq ($(BENCH_DB),postgres)
	$(BIN)/python bench/cluster.py
else
	$(BIN)/python bench/run.py
endif

## Pipeline benchmark: capture-to-deliveries latency and worker throughput against local fakes.
bench-pipeline: venv
	$(BIN)/python bench/pipeline.py

## Workspace pages (inbox, lead list, lead page, analytics) signed in, 100k leads (bench/workspace.py;
## `BENCH_ARGS="--analytics-leads 1000000"` seeds a million for the analytics target: slow).
bench-workspace: venv
	$(BIN)/python bench/workspace.py $(BENCH_ARGS)

## CPU that metrics add to one capture request (micro-benchmark, a few seconds).
bench-metrics: venv
	$(BIN)/python bench/metrics_overhead.py

## Schemathesis with many examples per operation against a live local server (FUZZ_EXAMPLES).
fuzz: venv
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-300} FUZZ_RANDOM=1 $(BIN)/pytest tests/fuzz -p no:cacheprovider -q

## The compose topology as real processes: API x2 + workers x2 on PostgreSQL (+ Redis), local fakes.
cluster-smoke: venv
	LEADFLOW_TEST_POSTGRES_URL=$${LEADFLOW_TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/test} \
	$(BIN)/pytest tests/deploy/test_cluster_smoke.py -p no:cacheprovider -n 0 -q -s

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
