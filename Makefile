# Beluga's commands. The two that matter: `make run` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Reinstalls only when a requirements file changed since the last install.
STAMP := $(VENV)/.requirements.stamp
BENCH_ARGS ?=

.PHONY: help venv run test lint fmt chromium bench clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-9s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	@touch $@

venv: $(STAMP) ## create .venv and install requirements-dev.txt (when they changed)

run: venv ## migrate, seed, print the demo key, serve web + Celery + simulator on http://127.0.0.1:8000
	bin/run

# Tests run with production-like settings (DEBUG off) and whatever DATABASE_URL /
# REDIS_URL the caller sets; unset, they use the embedded SQLite and database cache.
test: export SECRET_KEY ?= test-not-secret
test: export DEBUG :=
test: venv chromium ## lint, format check, then the whole suite (pytest)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python manage.py collectstatic --noinput -v 0
	$(BIN)/pytest $(PYTEST_ARGS)

lint: venv ## ruff check + format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: venv ## fix what ruff can, then format
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The browser tests drive Debian's chromium through Playwright (Playwright's own
# browser download cannot work here).
chromium: ## install Debian's chromium for the browser tests (apt, when root and missing)
	@if ! command -v chromium >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing chromium (apt)"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -qq chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }; \
	  else \
	    echo "chromium not found: install it (apt-get install chromium) for the browser tests" >&2; \
	  fi; \
	fi

bench: venv ## benchmark vs the fake upstream and LiteLLM on PostgreSQL + Redis (BENCH_ARGS="--only stream")
	bin/bench $(BENCH_ARGS)

# Keeps var/ (the SQLite database, secret key, Celery spool): `rm -rf var` starts afresh.
clean: ## remove the venv, caches and bench run files
	rm -rf $(VENV) bench/.run .ruff_cache .pytest_cache test-results
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
