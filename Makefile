# Two commands do all the set-up on a fresh machine: `make demo` and `make test`. Both are repeatable and fast the
# second time: each step below runs again only when what it depends on changed.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
ENV := source scripts/env.sh &&
AIRFLOW_HOME_DIR := .airflow
# make airflow EXECUTOR=celery: the CeleryExecutor with two workers, Redis and PostgreSQL (see dev/local_stack).
EXECUTOR ?= local

.PHONY: help setup demo test e2e bench lint emulator airflow airflow-stop lock clean

help:
	@echo "make demo      set up, start the emulator and run the main job on the embedded defaults"
	@echo "make test      set up, then run the whole test suite"
	@echo "make e2e       only the end-to-end tests, on a running local Airflow (tests/e2e)"
	@echo "make bench     the benchmark (about 20 minutes): prints its table and writes BENCHMARKS.md"
	@echo "make airflow   start a local Airflow (UI on http://127.0.0.1:8080, LocalExecutor, emulator) in the background;"
	@echo "               EXECUTOR=celery: on the CeleryExecutor, two workers, Redis and PostgreSQL"
	@echo "make airflow-stop  stop it"
	@echo "make emulator  run the Partner Central emulator in the foreground on 127.0.0.1:4566"
	@echo "make lint      ruff"
	@echo "make lock      re-resolve constraints.txt from requirements*.txt"
	@echo "make clean     remove .venv and the local Airflow home"

$(VENV)/.installed: requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	scripts/system_packages.sh
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check uv==0.13.8
	# Bytecode compiled at install: with PYTHONDONTWRITEBYTECODE set (as on these machines) every process would
	# otherwise compile Airflow from source, which triples task start-up and DAG parse times.
	$(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(VENV)/bin/python -r requirements.txt -r requirements-dev.txt -c constraints.txt
	# This project, editable (the checkout stays live): include/, dev/ and bench/ import in every process of the venv.
	$(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(VENV)/bin/python --no-deps -e .
	# Earlier versions of this Makefile put the checkout on sys.path with a .pth file instead.
	rm -f $(VENV)/lib/python3*/site-packages/partner_relationship_sync.pth
	touch $@

$(AIRFLOW_HOME_DIR)/.migrated: $(VENV)/.installed
	mkdir -p $(AIRFLOW_HOME_DIR)
	$(ENV) airflow db migrate > $(AIRFLOW_HOME_DIR)/db-migrate.log 2>&1 || { cat $(AIRFLOW_HOME_DIR)/db-migrate.log; exit 1; }
	$(ENV) airflow pools set "$${PARTNER_SYNC_POOL:-partner_central_api}" 4 "Partner Central API: every batch task of the sync" > /dev/null
	touch $@

setup: $(AIRFLOW_HOME_DIR)/.migrated

demo: setup
	@scripts/demo.sh

test: setup
	@scripts/services.sh
	@scripts/install_chromium.sh || echo "Chromium could not be installed: the UI test will fail, the others run." >&2
	$(ENV) python -m pytest

e2e: setup
	@scripts/install_chromium.sh || echo "Chromium could not be installed: the UI test will fail, the others run." >&2
	$(ENV) python -m pytest tests/e2e

bench: setup
	$(ENV) python -m bench.run

airflow: setup
	@if [ "$(EXECUTOR)" = celery ]; then scripts/services.sh; fi
	@$(ENV) EXECUTOR=$(EXECUTOR) python -m dev.local_stack start

airflow-stop: $(VENV)/.installed
	@$(ENV) python -m dev.local_stack stop

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

emulator: $(VENV)/.installed
	$(ENV) python -m dev.emulator --port $${EMULATOR_PORT}

lock:
	$(VENV)/bin/uv pip compile --quiet --python $(VENV)/bin/python requirements.txt requirements-dev.txt -o constraints.txt

clean:
	-scripts/emulator.sh stop
	-test ! -x $(VENV)/bin/python || $(ENV) python -m dev.local_stack stop
	rm -rf $(VENV) $(AIRFLOW_HOME_DIR) .airflow-celery
