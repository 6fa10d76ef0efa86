# The two set-up commands the README names: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app app

.PHONY: run test test-deps lint clean scale-demo

# System tools some tests drive, from Debian's packages: Chromium renders /docs offline, wrk runs
# the benchmark smoke, HAProxy and PgBouncer stand in front of the instances the scaling tests
# start, Prometheus scrapes /metrics.
APT_GET := $(shell [ "$$(id -u)" = 0 ] || echo sudo) apt-get
SYSTEM_TOOLS := chromium wrk haproxy pgbouncer prometheus

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt requirements-dev.txt | $(BIN)/activate
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

## Serve on the embedded defaults: SQLite under instance/, in-process Redis stand-in.
run: export APP_ENV := $(or $(APP_ENV),development)
run: $(VENV)/.installed
	$(FLASK) db upgrade
	$(FLASK) seed-demo
	$(BIN)/python run.py

## Every test: unit tests, and integration tests on the local PostgreSQL and Redis.
test: $(VENV)/.installed test-deps
	$(BIN)/pytest

test-deps:
	@missing=; for tool in $(SYSTEM_TOOLS); do \
	  command -v $$tool >/dev/null || [ -x /usr/sbin/$$tool ] || missing="$$missing $$tool"; done; \
	  [ -z "$$missing" ] || { $(APT_GET) update -qq && $(APT_GET) install -y -qq $$missing; }

## The store scaled out on this machine: HAProxy, 2 instances, PgBouncer, Redis with Sentinel.
scale-demo: $(VENV)/.installed test-deps
	$(BIN)/python deploy/topology.py

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) instance .pytest_cache

# The benchmark (bench/README.md): the store under gunicorn on PostgreSQL and Redis, against a
# plain Flask JSON route and a default Flask-Session read.
.PHONY: bench bench-smoke

## Full run: N = 1,000 and 1,000,000; writes bench/results/{results.md,results.json,chart.png}.
bench: $(VENV)/.installed test-deps
	$(BIN)/python bench/run.py

## Quick check that the harness works (N = 1,000, 2 s runs); writes bench/results/smoke/.
bench-smoke: $(VENV)/.installed test-deps
	$(BIN)/python bench/run.py --smoke
