# Two commands do all the set-up: `make run` and `make test` each create the
# virtual environment and install medflow into it first, when that is needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
CORES ?= all
# `make run CONFIG=my.yaml` runs the studies of my.yaml instead of the demo's.
CONFIG ?=
# Test processes: most tests wait on subprocesses, so 2 on 2 cores cut the suite by 28%.
# worksteal: the end-to-end tests (collected first, see tests/conftest.py) are shared out
# by an idle worker taking half of the other's queue, not left in one worker's chunk.
TEST_WORKERS ?= 2

.PHONY: run test lint dag bench ui system-packages

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

run: $(INSTALLED)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --profile workflow/profiles/default --cores $(CORES) \
		$(if $(CONFIG),--configfile $(CONFIG))

# Debian packages for the browser, SLURM and PostgreSQL tests (root + apt-get only;
# elsewhere those tests skip and say why).
system-packages:
	bash tests/system/install-packages.sh

test: $(INSTALLED) system-packages
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check src tests bench
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/snakemake --lint

dag: $(INSTALLED)
	$(BIN)/snakemake -n --profile workflow/profiles/default

bench: $(INSTALLED)
	$(BIN)/python -m bench

# The MLflow UI for this project's store, on this machine only.
ui: $(INSTALLED)
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow ui --backend-store-uri sqlite:///$(abspath results/mlflow.db) --host 127.0.0.1 --port $(or $(PORT),5000) --workers 1
