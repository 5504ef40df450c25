# Two commands for a newcomer: `make run` and `make test`. Both install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
REVLOOP := $(BIN)/revloop

.PHONY: install run test pytest lint rules format up down status clean

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
	@echo
	@echo "Ops console: run '$(REVLOOP) console', then open http://127.0.0.1:8090/"
	@echo "(lag per group, throughput, open circuit breakers, dead letters, ingest outcomes;"
	@echo " 'revloop up' runs the whole pipeline under its supervisor; docs/ops.md)."

## Lint, then every test against a real Kafka broker and a real PostgreSQL.
test: lint pytest

# pytest exits 5 when it collects nothing; make treats that as the failure it is.
pytest: install
	$(BIN)/pytest

lint: install rules
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy schemas revloop platforms ingest streams sinks connectors emulators infra demo console bench examples
	$(REVLOOP) schemas check

## Prometheus's own checks of infra/monitoring: the config, the alert rules, and their unit tests.
PROMTOOL ?= promtool
MONITORING := infra/monitoring
rules:
	@command -v $(PROMTOOL) >/dev/null || { echo "promtool not found: apt-get install prometheus" >&2; exit 1; }
	$(PROMTOOL) check config $(MONITORING)/prometheus.yml
	$(PROMTOOL) check rules $(MONITORING)/rules/*.yml
	$(PROMTOOL) test rules $(MONITORING)/tests/*.yml

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
