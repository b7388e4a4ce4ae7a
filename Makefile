# netopt — every package the project needs is installed by these targets, nothing by hand.
# `make demo` and `make test` are the two commands a newcomer runs (as root on Debian 12).

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

# Debian programs the tests and the demo run for real (iproute2 is on every Debian machine).
DEBIAN_RUNTIME = iproute2 iputils-ping fping nftables
DEBIAN_TEST    = $(DEBIAN_RUNTIME) kamailio kamailio-extra-modules kamailio-utils-modules \
                 sip-tester prometheus prometheus-alertmanager \
                 nginx-light wrk chromium postgresql-15

.PHONY: help demo test lint typecheck pytest venv deps-runtime deps-test clean

help:
	@echo "make demo   - install what it needs, bring up the lab world, run netopt on it"
	@echo "make test   - install what the tests need, run ruff, mypy and pytest"

# --- installation -----------------------------------------------------------------------

$(BIN)/python:
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || scripts/apt-install python3-venv
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

# schemathesis (tests/integration/test_schemathesis.py) gets a venv of its own: grafana-client
# brings urllib3-future, which replaces urllib3 in its venv and breaks schemathesis' transport.
SCHEMATHESIS = schemathesis==4.32.5
ST_VENV      = $(VENV)/schemathesis

$(ST_VENV)/.$(SCHEMATHESIS): | $(BIN)/python
	$(PYTHON) -m venv $(ST_VENV)
	$(ST_VENV)/bin/python -m pip install --quiet '$(SCHEMATHESIS)'
	@touch $@

venv: $(VENV)/.installed $(ST_VENV)/.$(SCHEMATHESIS)

deps-runtime:
	@scripts/apt-install $(DEBIAN_RUNTIME)

deps-test:
	@scripts/apt-install $(DEBIAN_TEST)

# --- the two commands -------------------------------------------------------------------

demo: deps-runtime venv
	$(BIN)/netopt demo $(DEMO_ARGS)

test: deps-test venv lint typecheck pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

pytest: venv
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
