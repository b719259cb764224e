# Two entry points for a fresh clone: `make demo` and `make test`. Everything runs from .venv.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
export DBT_SEND_ANONYMOUS_USAGE_STATS := false
export DO_NOT_TRACK := 1

.PHONY: install install-dev install-bench demo test lint typecheck sqllint structure workflows browser pytest clean

# uv installs what pip would (the same pins from pyproject.toml) in seconds rather than a minute
# and more: the first `make demo` on a fresh clone is mostly installing.
UV_INSTALL = $(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip uv

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(UV_INSTALL) -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(UV_INSTALL) -e ".[dev]"
	touch $@

$(VENV)/.installed-bench: $(VENV)/.installed-dev
	$(UV_INSTALL) -e ".[dev,bench]"
	touch $@

$(VENV)/.installed-demo: $(VENV)/.installed
	$(UV_INSTALL) -e ".[demo]"
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev
# Peers measured by benchmarks/ (vectorbt); not needed by the suite.
install-bench: $(VENV)/.installed-bench

# The whole loop on simulated market hours (real EURUSD bars from backtesting.py's sample data).
demo: $(VENV)/.installed-demo
	$(BIN)/runner demo

lint: install-dev
	$(BIN)/ruff check runner tests benchmarks scripts
	$(BIN)/ruff format --check runner tests benchmarks scripts

typecheck: install-dev
	$(BIN)/mypy

# sqlfluff's dbt templater opens the DuckDB target: give it a scratch file, not the repo's.
sqllint: install-dev
	TRADEBASE_DUCKDB_PATH=$$(mktemp -d)/sqlfluff.duckdb DATABASE_URL= $(BIN)/sqlfluff lint models macros tests/dbt

# dbt-project-evaluator's rules, checked from the manifest (dbt-bouncer.yml).
structure: install-dev
	DATABASE_URL= $(BIN)/dbt parse --profiles-dir . --quiet
	$(BIN)/dbt-bouncer --config-file dbt-bouncer.yml

workflows: install-dev
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(BIN)/zizmor --offline .github/workflows

# The report's browser test opens the HTML in Debian's chromium (Playwright drives it; no browser
# download). Installed once (CI runs as root on Debian); a no-op when it is already there.
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium)

# One file per worker: a module's fixtures (built warehouses) are built once, not once per worker.
pytest: install-dev browser
	$(BIN)/pytest -n 2 --dist loadfile --durations=25

test: lint typecheck sqllint structure workflows pytest

clean:
	rm -rf $(VENV) target logs *.duckdb
