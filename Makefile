# avkd - run `make help` for the list of targets.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
SWEEP ?= sweeps/demo.yaml
UI_HOST ?= 127.0.0.1
UI_PORT ?= 5000
# The stamp records a hash of the dependency files: a rerun with nothing changed skips installation.
DEPS_HASH := $(shell cat requirements.txt requirements.lock pyproject.toml 2>/dev/null | sha256sum | cut -c1-16)
STAMP := $(VENV)/.avkd-installed-$(DEPS_HASH)

.DEFAULT_GOAL := help
.PHONY: help setup sweep test test-all lint format data bench report ui clean clean-all

help: ## List the targets
	@echo "avkd - knowledge-distilled audio-visual captioning sweeps"
	@echo
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  make %-10s %s\n", $$1, $$2}'
	@echo
	@echo "Variables: SWEEP=$(SWEEP)  PYTHON=$(PYTHON)  UI_HOST=$(UI_HOST) UI_PORT=$(UI_PORT)"

setup: $(STAMP) ## Create .venv and install the pinned dependencies (once)

$(STAMP):
	@command -v java >/dev/null 2>&1 || echo "WARNING: 'java' not found: METEOR and the PTB tokenizer (pycocoevalcap) need Java 17. Install it (apt-get install openjdk-17-jre-headless)." >&2
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "ERROR: $(PYTHON) not found; avkd needs Python 3.11 (set PYTHON=...)." >&2; exit 1; }
	@echo ">> creating $(VENV) and installing pinned dependencies (first run only, ~2-5 min)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt -c requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.avkd-installed-*
	@touch $(STAMP)
	@echo ">> environment ready"

data: setup ## Generate the embedded synthetic corpus in data/synth (if missing)
	@test -f data/synth/test_videodatainfo.json || $(PY) -m avkd data synth --out data/synth

sweep: setup ## Run a sweep end to end (SWEEP=sweeps/demo.yaml by default)
	$(PY) -m avkd sweep $(SWEEP)

test: setup ## Run the fast test suite
	$(PY) -m pytest -q -m "not slow"

test-all: setup ## Run every test, slow end-to-end and reliability cases included
	$(PY) -m pytest -q

lint: setup ## ruff: lint rules and formatting check (configured in pyproject.toml), as CI runs them
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup ## ruff: sort imports and format the code in place
	$(VENV)/bin/ruff check --select I --fix .
	$(VENV)/bin/ruff format .

bench: setup ## Table II timing benchmark for SWEEP
	$(PY) -m avkd bench --sweep $(SWEEP)

report: setup ## Build the report of the latest sweep from MLflow (reports/out/)
	$(PY) reports/build.py

# Light: one worker and no job runner (~5 s to start, ~0.5 GB) instead of MLflow's defaults (~12 s, ~2.9 GB).
ui: setup ## MLflow UI on http://$(UI_HOST):$(UI_PORT) (sqlite:///mlflow.db; one worker, no job runner)
	MLFLOW_DISABLE_TELEMETRY=true MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db --host $(UI_HOST) --port $(UI_PORT) --workers 1

clean: ## Remove caches of Python and pytest (keeps data, features and runs)
	rm -rf .pytest_cache .hypothesis $$(find . -name __pycache__ -not -path './.venv/*')

clean-all: clean ## Also remove data/, cache/, runs/, mlflow.db, mlruns/, reports/out/ and .venv
	rm -rf data cache runs mlflow.db mlruns reports/out $(VENV)
