# Fresh machine: `make demo` runs the whole job end to end, `make test` runs lint and the tests.
# Both bootstrap .venv from requirements.lock first; everything they write stays in this folder.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

export SCOREPIPE_HOME ?= $(CURDIR)/.scorepipe
export PREFECT_HOME ?= $(CURDIR)/.scorepipe/prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: venv tools lint docs test test-unit demo bench clean

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

# Real Prometheus (with promtool), Pushgateway and Alertmanager servers for the monitoring and alerting
# tests, headless Chromium for the dashboard screenshot, and docker-compose to validate
# docker-compose.yml (no Docker engine is needed for `docker-compose config`). Debian packages.
tools:
	@command -v prometheus >/dev/null 2>&1 && command -v prometheus-pushgateway >/dev/null 2>&1 && \
	  command -v prometheus-alertmanager >/dev/null 2>&1 && command -v chromium >/dev/null 2>&1 && \
	  command -v docker-compose >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q \
	    --no-install-recommends prometheus prometheus-pushgateway prometheus-alertmanager chromium docker-compose; }

# The MkDocs site (mkdocs.yml, docs/) into .cache/site; --strict: a broken link or a warning fails.
# Not --quiet: it hides warnings from the count --strict fails on.
docs: venv
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# Two workers (pytest-xdist), each with its own servers, whole modules per worker: the suite waits on
# brokers, servers and child processes as much as it computes (20 min on one worker, 13 on two).
test: lint tools docs
	$(BIN)/python -m pytest -n 2 --dist loadscope

test-unit: venv
	$(BIN)/python -m pytest -m "not integration"

demo: venv
	$(BIN)/scorepipe demo

bench: venv
	@command -v wrk >/dev/null 2>&1 && command -v hey >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q wrk hey; }
	$(BIN)/python bench/batch.py
	$(BIN)/python bench/stream.py
	$(BIN)/python bench/drift.py
	$(BIN)/python bench/online.py
	$(BIN)/python bench/performance.py

clean:
	rm -rf .scorepipe bench/out
