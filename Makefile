# The two set-up commands the README names: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app app

.PHONY: run test lint migrate seed clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt requirements-dev.txt | $(BIN)/activate
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

## Serve on the embedded defaults: SQLite under instance/, in-process Redis stand-in.
run: $(VENV)/.installed
	$(FLASK) db upgrade
	$(FLASK) seed-demo
	$(BIN)/python run.py

## Every test: unit tests, and integration tests on the local PostgreSQL and Redis.
test: $(VENV)/.installed
	$(BIN)/pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) instance .pytest_cache
