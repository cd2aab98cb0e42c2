# intent-mlops: `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
export DVC_SITE_CACHE_DIR := $(CURDIR)/.dvc/tmp/site-cache
export DVC_GLOBAL_CONFIG_DIR := $(CURDIR)/.dvc/tmp/global-config
export HF_HUB_OFFLINE := 1
export HF_HOME := $(CURDIR)/.cache/huggingface
export MPLCONFIGDIR := $(CURDIR)/.cache/matplotlib
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help run setup data train retrain demo-retrain demo-monitor serve stop test lint format typecheck unit browser test-browser mlflow-ui prefect-ui bench-throughput bench-accuracy bench-inference clean

help:  ## list targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)  ## create .venv and install the project (torch pinned by constraints.txt)

data: $(STAMP)  ## make data/ match data.dvc (pull, or generate the default set)
	$(BIN)/intent-mlops data ensure

train: $(STAMP)  ## run the training flow on the workspace data
	$(BIN)/intent-mlops train $(ARGS)

run: data train  ## set up, prepare the default data, train, register: the whole job

retrain: $(STAMP)  ## champion/challenger retraining on the workspace data (skips when unchanged)
	$(BIN)/intent-mlops retrain $(ARGS)

demo-retrain: data  ## a whole cycle: champion, next data batch added, retrain, decision, history
	$(BIN)/intent-mlops retrain
	$(BIN)/intent-mlops data generate --batch 1
	$(BIN)/intent-mlops data add .intent-mlops/batches/batch-1.csv
	$(BIN)/intent-mlops retrain
	$(BIN)/intent-mlops history
	@echo "The data version changed (data.dvc and dvc.lock, staged); undo with:"
	@echo "  git checkout HEAD -- data.dvc dvc.lock && .venv/bin/dvc checkout   (champion stays; see intent-mlops rollback)"

DEMO_RATE ?= 5
DEMO_MINUTES ?= 1
demo-monitor: data  ## serve the champion, normal then drifted traffic, a monitor run after each (uses/starts make serve)
	$(BIN)/python -m flows.demo_monitor --rate $(DEMO_RATE) --minutes $(DEMO_MINUTES) \
		--prefect-port $(PREFECT_PORT) --mlflow-port $(MLFLOW_PORT)

PREFECT_PORT ?= 4200
MLFLOW_PORT ?= 5000
serve: $(STAMP)  ## Prefect UI + MLflow UI + served deployments, on loopback ports 4200 / 5000 (make stop ends them)
	$(BIN)/python -m flows.stack start --prefect-port $(PREFECT_PORT) --mlflow-port $(MLFLOW_PORT)

stop:  ## stop exactly what make serve started
	$(BIN)/python -m flows.stack stop

lint: $(STAMP)  ## ruff lint + format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)  ## apply ruff formatting and safe fixes
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: $(STAMP)  ## mypy on the core package
	$(BIN)/mypy

test: lint typecheck browser  ## everything CI runs: lint, types, unit + flow + e2e + browser tests
	$(BIN)/pytest -q $(PYTEST_ARGS)

test-browser: browser  ## the UIs in a real browser (starts make serve's stack on a test project)
	$(BIN)/pytest -q -m browser $(PYTEST_ARGS)

BROWSER_STAMP := $(VENV)/.browser
$(BROWSER_STAMP): $(STAMP)
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)
	$(BIN)/pip install -q "playwright>=1.50"
	touch $(BROWSER_STAMP)

browser: $(BROWSER_STAMP)  ## the browser tests' tools: Debian's chromium (driven by playwright, no browser download)

unit: $(STAMP)  ## fast unit tests only
	$(BIN)/pytest -q -m "not slow and not e2e" $(PYTEST_ARGS)

mlflow-ui: $(STAMP)  ## MLflow UI on http://127.0.0.1:5000 over the embedded store
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/python -m flows.mlflow_ui ui --backend-store-uri sqlite:///$(CURDIR)/mlruns/mlflow.db \
		--default-artifact-root $(CURDIR)/mlruns/artifacts --host 127.0.0.1 --port 5000 --workers 1

prefect-ui: $(STAMP)  ## Prefect UI on http://127.0.0.1:4200 (shows ephemeral runs of this PREFECT_HOME)
	$(BIN)/prefect server start --host 127.0.0.1 --port 4200

bench-throughput: $(STAMP)  ## training throughput: seed recipe vs HF Trainer vs this trainer (2 interleaved rounds)
	$(BIN)/python bench/train_throughput.py --repeat 2

bench-inference: $(STAMP)  ## inference speed (a)-(d) side by side: make bench-inference MODEL_DIR=<bench/inference.py train --out>
	@test -n "$(MODEL_DIR)" || { echo "MODEL_DIR= is required: a model from python bench/inference.py train --out DIR"; exit 2; }
	$(BIN)/python bench/inference.py speed --model-dir $(MODEL_DIR) --repeat 2

bench-accuracy: $(STAMP)  ## default params on BANKING77 and HWU64 (long)
	$(BIN)/python bench/accuracy.py

clean:  ## remove local state (runs, caches); keeps .venv, data/ and the DVC remote
	rm -rf .prefect .intent-mlops .cache mlruns/mlflow.db mlruns/artifacts splits
