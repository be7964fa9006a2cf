# Two commands do all set-up on a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
# The test suite runs on PostgreSQL and a real Redis broker (both local on these machines).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/scit2i
TEST_BROKER_URL ?= redis://127.0.0.1:6379/0
DEMO_ENV := DJANGO_DEBUG=true

.PHONY: setup demo test test-fast migrate lint
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

migrate: setup
	$(DEMO_ENV) $(BIN)/python manage.py migrate --noinput

demo: migrate
	$(DEMO_ENV) $(BIN)/python manage.py seed_demo
	$(DEMO_ENV) $(BIN)/python manage.py seed_ml_demo
	@mkdir -p var
	@$(DEMO_ENV) $(BIN)/celery -A config worker -B -Q default,gpu --pool solo -l info \
		> var/worker.log 2>&1 & echo $$! > var/worker.pid; \
	trap 'kill $$(cat var/worker.pid) 2>/dev/null' EXIT INT TERM; \
	echo; echo "Web app: http://$(HOST):$(PORT)/  (API docs: http://$(HOST):$(PORT)/api/docs/)"; \
	echo "Worker log: var/worker.log. Logins are printed above. Ctrl-C stops both."; echo; \
	$(DEMO_ENV) $(BIN)/python manage.py runserver $(HOST):$(PORT)

# Style gates: ruff (lint, import order, format) and mypy with django-stubs (configured in pyproject.toml).
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(DEMO_ENV) $(BIN)/mypy

test: setup
	$(DEMO_ENV) DATABASE_URL=$(TEST_DATABASE_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) $(BIN)/pytest

# The edit loop: everything but the slow, browser and fuzz tests (the table in tests/support/markers.py).
test-fast: setup
	$(DEMO_ENV) DATABASE_URL=$(TEST_DATABASE_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) \
		$(BIN)/pytest -m "not slow and not browser and not fuzz"
