# convdb chores. Every target creates and uses a local virtualenv (.venv), so
# a machine with nothing but Python 3.11+ is enough.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
PEERS_ARGS ?=

.DEFAULT_GOAL := help

# the operator console's browser tests
.PHONY: browser
.PHONY: help install demo test bench bench-smoke bench-peers lint format migrate-apply migrate-new migrate-status schema embedded-stop clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "convdb needs Python 3.11 or newer (set PYTHON=...)")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install convdb with its development tools

demo: $(STAMP) ## Migrate (embedded DB unless DATABASE_URL), enqueue sample webhooks, drain them, print the overview
	$(BIN)/convdb demo

test: $(STAMP) browser ## Run the test suite (TEST_DATABASE_URL, else an embedded PostgreSQL)
	$(BIN)/pytest $(PYTEST_ARGS)

browser: ## Install headless Chromium and chromedriver (Debian packages) for the browser tests, when root
	@bash scripts/install-browser.sh

bench: $(STAMP) ## Benchmarks at scale (embedded unless DATABASE_URL); table into docs/benchmarks.md (raw runs in docs/benchmarks.json)
	@command -v wrk >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] \
		&& apt-get install -y -q wrk >/dev/null; } \
		|| echo "make bench: wrk not found; install it (apt-get install wrk, brew install wrk) for the receiver's 64-connection figures; using the Python load generator"
	$(BIN)/python -m bench --output docs/benchmarks.md

bench-smoke: $(STAMP) ## Every benchmark on tiny sizes (under a minute), so the scripts never rot
	$(BIN)/python -m bench --smoke

bench-peers: $(STAMP) ## convdb's queue against pgqueuer, a plain psycopg2 loop and pgbench on one backlog (installs pgqueuer into .venv)
	$(BIN)/python -m pip install -q pgqueuer asyncpg
	$(BIN)/python -m bench.peers $(PEERS_ARGS)

lint: $(STAMP) ## ruff lint and format check
	$(BIN)/ruff check convdb migrations tests bench plugins
	$(BIN)/ruff format --check convdb migrations tests bench plugins

format: $(STAMP) ## Apply ruff's formatting and safe fixes
	$(BIN)/ruff check --fix convdb migrations tests bench plugins
	$(BIN)/ruff format convdb migrations tests bench plugins

migrate-apply: $(STAMP) ## Apply every pending migration (convdb migrate)
	$(BIN)/convdb migrate

migrate-status: $(STAMP) ## Show applied and pending migrations (convdb status)
	$(BIN)/convdb status

migrate-new: $(STAMP) ## Scaffold a migration: make migrate-new name=add_something [plugin=tags]
	@test -n "$(name)" || (echo "usage: make migrate-new name=NAME [plugin=PLUGIN]" >&2; exit 2)
	$(BIN)/convdb create $(name) $(if $(plugin),--plugin $(plugin))

schema: $(STAMP) ## Regenerate schema.sql: the core's migrations on a scratch database, dumped
	$(BIN)/python -m convdb.migrate.schema --output schema.sql

embedded-stop: $(STAMP) ## Stop the embedded PostgreSQL started in .convdb/
	$(BIN)/convdb embedded-stop

clean: ## Remove the virtualenv, caches and build output (keeps .convdb data)
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
