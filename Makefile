# The two commands a newcomer runs: `make demo` and `make test`.
# The first interpreter that actually runs and is 3.11+ (a pyenv shim may exist but fail).
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	if $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then command -v $$p; break; fi; done)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test serve lint bench-ingest clean

$(VENV)/.installed: pyproject.toml
	@test -n "$(PYTHON)" || { echo "Vigie needs Python 3.11 or newer: install it, or set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

## make demo: install, migrate var/vigie.db, load the example area with demo tickets, serve on :8000
demo: $(VENV)/.installed
	$(BIN)/vigie demo --host 127.0.0.1 --port 8000

## make serve: serve the configured area (VIGIE_DATABASE_URL, VIGIE_CONFIG_DIR...)
serve: $(VENV)/.installed
	$(BIN)/vigie serve

## make test: the whole suite (PostgreSQL too when VIGIE_TEST_DATABASE_URL is set)
# Tests run in parallel processes, one per core (at most 4); TEST_WORKERS=0: one process.
TEST_WORKERS ?= auto
test: $(VENV)/.installed
	$(BIN)/pytest -q -n $(TEST_WORKERS) --maxprocesses=4

lint: $(VENV)/.installed
	$(BIN)/ruff check core plugins connectors tests bench

clean:
	rm -rf $(VENV) var .pytest_cache
