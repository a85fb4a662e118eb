# Two commands for a newcomer (see README):
#   make run    set everything up, then run the whole pipeline at the scale in params.yaml
#   make test   set everything up, then run the test suite
#   make lint   ruff (lint + format check) and mypy, as CI runs them before the tests
#   make test-unit  the tests that need neither the dataset mirror nor training (< 2 minutes)
# Everything installs from requirements.lock (runtime) + requirements-dev.lock (tests, linters),
# exact versions, into .venv.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-$(shell cat requirements.lock requirements-dev.lock pyproject.toml | cksum | cut -d' ' -f1)

# Data: an air-gapped mirror when one sits beside the checkout (../shared/data), or beside the
# repository it was cloned from (a clean CI clone in a temporary directory); else the hub.
ORIGIN := $(shell git config --get remote.origin.url 2>/dev/null)
MIRROR_FOUND := $(firstword $(patsubst %/MANIFEST.md,%,$(wildcard $(abspath ../shared/data)/MANIFEST.md \
                  $(if $(ORIGIN),$(abspath $(ORIGIN)/../shared/data)/MANIFEST.md))))
ifneq ($(MIRROR_FOUND),)
export BERTPIPE_DATA_MIRROR ?= $(MIRROR_FOUND)
endif
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export HF_HOME ?= $(CURDIR)/.cache/hf
export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120

.PHONY: setup run test test-unit lint print-mirror prefect-local deploy bench-data clean-venv

setup: $(STAMP)

$(STAMP): requirements.lock requirements-dev.lock pyproject.toml
	rm -f $(VENV)/.installed-*
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	# (grep drops pip's "Location ... is ignored" noise from this machine's index settings)
	set -o pipefail; $(VENV)/bin/pip install --quiet --requirement requirements.lock \
	  --requirement requirements-dev.lock 2>&1 | { grep -v 'is neither a file nor a directory' || true; }
	$(VENV)/bin/pip install --quiet --no-deps --editable .
	touch $@

run: setup
	$(VENV)/bin/bertpipe run

# Tests never touch the network: hub access is off, the mirror is ../shared/data.
TEST_ENV := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# Two workers (pytest-xdist), a test file each at a time: the suite is mostly processes that
# start, import and wait, so two share the two cores well. WORKERS=0 runs it in one process.
WORKERS ?= 2
test: setup
	$(TEST_ENV) $(VENV)/bin/python -m pytest -n $(WORKERS) --dist loadfile $(PYTEST_ARGS)

test-unit: setup
	$(TEST_ENV) $(VENV)/bin/python -m pytest -m "not mirror and not slow and not minutes" $(PYTEST_ARGS)

# The rule set is in pyproject.toml ([tool.ruff], [tool.mypy]); pre-commit runs the same.
LINTED := src flows tests bench infra
lint: setup
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(VENV)/bin/mypy

# A local Prefect server (background, http://127.0.0.1:4200) and a process worker (foreground).
prefect-local: setup
	$(VENV)/bin/prefect server start --background
	$(VENV)/bin/prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api
	$(VENV)/bin/prefect work-pool create local-process --type process --overwrite
	BERTPIPE_WORKDIR=$(CURDIR) $(VENV)/bin/prefect worker start --pool local-process

# The deployments of flows/prefect.yaml (weekly schedule, tiny-smoke, gpu) on that server.
deploy: setup
	BERTPIPE_WORKDIR=$(CURDIR) $(VENV)/bin/python -m flows.deploy

bench-data: setup
	$(VENV)/bin/python bench/data_stages.py

clean-venv:
	rm -rf $(VENV)

# The dataset mirror the targets above use (empty when there is none).
print-mirror:
	@echo "$(BERTPIPE_DATA_MIRROR)"
