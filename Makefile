# PyTake — everything a newcomer needs is `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV_VERSION := 0.13.8
TOOLS := .pytake/tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
MYPY_PACKAGES := $(foreach p,$(notdir $(wildcard libs/common/src/pytake_* services/*/src/pytake_* tools/*/src/pytake_*)),-p $(p))
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(UV):
	@mkdir -p .pytake
	python3 -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) uv.lock pyproject.toml $(wildcard */*/pyproject.toml)
	$(UV) sync --frozen --all-packages
	@touch $@

install: $(VENV)/.synced ## create the virtual environment from uv.lock

run: install ## start the whole platform (embedded PostgreSQL + Tansu unless configured)
	$(PY) -m pytake_devstack run

demo: install ## the main loop, a campaign and a chatbot flow against a running `make run`
	$(PY) -m pytake_devstack demo

lint: install ## ruff format check + ruff + mypy
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy $(MYPY_PACKAGES)

format: install ## apply ruff formatting and fixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

schemas: install ## regenerate event and webhook JSON Schemas and docs/events.md from the models
	$(PY) -m pytake_devstack schemas
	$(PY) -m pytake_integrations.contract schemas/webhooks

test: lint ## lint, then unit, integration, end-to-end and deploy checks
	$(VENV)/bin/pytest -q -p no:cacheprovider

test-unit: install ## the unit tests alone (tests/unit folders: pure rules, no PostgreSQL or Kafka), in seconds
	$(VENV)/bin/pytest -q -p no:cacheprovider -m unit

bench: install ## run every benchmark in bench/ (loopback only; files starting with _ are helpers)
	@command -v wrk >/dev/null || echo "note: no wrk (apt-get install -y wrk): bench/gateway_proxy.py falls back to aiohttp, which shares the cores it measures"
	@for b in bench/[!_]*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

faults: install ## the fault suite: the platform under load while its parts fail (~10 min, loopback)
	$(PY) tests/faults/suite.py

clean: ## remove local state (databases, keys) and the virtual environment
	rm -rf .pytake $(VENV)

.PHONY: help install run demo lint format schemas test test-unit bench faults clean
