# Two commands for a newcomer: `make run` and `make test`. Both install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
REVLOOP := $(BIN)/revloop

.PHONY: install run test pytest lint format up down status clean

$(VENV)/.installed: pyproject.toml bench/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]' -e ./bench
	touch $@

install: $(VENV)/.installed

## Start the local stack (Kafka + Postgres), create the topics, run the demo (docs/demo.md),
## show where everything is.
run: install
	$(REVLOOP) infra up
	$(REVLOOP) topics ensure
	$(REVLOOP) demo
	$(REVLOOP) infra status

## Lint, then every test against a real Kafka broker and a real PostgreSQL.
test: lint pytest

# pytest exits 5 when it collects nothing; make treats that as the failure it is.
pytest: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy schemas revloop platforms ingest streams sinks connectors emulators infra demo bench
	$(REVLOOP) schemas check

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

up: install
	$(REVLOOP) infra up

down: install
	$(REVLOOP) infra down

status: install
	$(REVLOOP) infra status

clean: down
	rm -rf .revloop $(VENV)
