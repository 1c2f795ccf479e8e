# skuflow — every set-up step lives here, so a fresh machine needs only Python, make, a JDK
# (for the embedded Apache Kafka broker) and the package registries.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help install tools run test lint unit integration bench chaos clean

help:
	@echo "make run    - install and start the embedded stack with sample traffic (skuflow dev)"
	@echo "make test   - install and run lint + the whole test suite (real Kafka + PostgreSQL)"
	@echo "make bench  - throughput / memory benchmarks (figures in README)"
	@echo "make lint   - ruff + mypy --strict"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

# kcat (librdkafka's CLI) is the independent client of the interoperability tests.
tools:
	@command -v kcat >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get install -y -q kcat >/dev/null 2>&1 || \
	     (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q kcat >/dev/null 2>&1)) \
	     && echo "installed kcat"; \
	  else echo "kcat missing: install it (Debian: apt-get install kcat)"; exit 1; fi; }

run: install
	$(VENV)/bin/skuflow dev

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

unit: install
	$(VENV)/bin/pytest tests/unit -q $(PYTEST_ARGS)

test: install tools lint
	$(VENV)/bin/pytest -q -m "not slow" $(PYTEST_ARGS)

bench: install
	$(PY) -m bench

chaos: install tools
	$(VENV)/bin/pytest -q -m slow $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache .hypothesis
