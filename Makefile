# Two commands matter: `make run` and `make test`. Everything else supports them.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-fast install lint migrate clean demo bench cluster faults soak docs

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

migrate: install
	$(PY) manage.py migrate --noinput

## Serve on http://127.0.0.1:8000 with granian (embedded SQLite unless DATABASE_URL is set).
run: install
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) manage.py migrate --noinput
	$(PY) manage.py bootstrap
	$(PY) -m authservice.serve

## Lint (ruff, import-linter), build the docs (--strict), then the whole suite on SQLite and on PostgreSQL (TEST_DATABASE_URL, TEST_REDIS_URL),
## each run in its own test database and cache key prefix; the last line says what ran.
test: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir $(CURDIR)/site
	scripts/run-tests

## Lint, then the unit and integration tests on SQLite: no browser, no ops (a few minutes).
test-fast: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache
	scripts/run-tests --fast

## The OCEN sample flow end to end, from an empty database.
demo: install
	$(PY) -W ignore -m examples.sample_flow

## Benchmarks side by side with node-oidc-provider (needs PostgreSQL, wrk, node/npm).
bench: install
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	cd bench && npm install --no-audit --no-fund --silent
	$(PY) bench/run.py $(BENCH_ARGS)

## Operations checks (docs: measurements/operations.md): three instances behind HAProxy; PostgreSQL,
## Redis and worker faults on a private PostgreSQL cluster and Redis, then SIGTERM and a
## rolling restart through deploy/haproxy.cfg as shipped; a bounded soak.
cluster: install
	@command -v haproxy >/dev/null || (apt-get update -qq && apt-get install -y -qq haproxy)
	$(PY) scripts/cluster.py $(CLUSTER_ARGS)

faults: install
	@command -v haproxy >/dev/null || (apt-get update -qq && apt-get install -y -qq haproxy)
	$(PY) scripts/faults.py $(FAULTS_ARGS)

## SOAK_SECONDS (default 600) bounds it.
soak: install
	$(PY) scripts/soak.py $(SOAK_ARGS)

## The documentation site (docs/, mkdocs.yml) into site/; --strict: a broken link or nav entry fails.
docs: install
	$(VENV)/bin/mkdocs build --strict

## ruff, and the direction of imports between the apps and the SDK (import-linter, pyproject.toml).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache

clean:
	rm -rf $(VENV) staticfiles .pytest_cache .ruff_cache site
