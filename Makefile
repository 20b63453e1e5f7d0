# Aqta: `make run` serves the gateway locally, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run test lint format ci clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Aqta needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/python manage.py migrate --noinput -v0
	$(BIN)/python manage.py collectstatic --noinput -v0
	@$(BIN)/python manage.py demo_setup
	@echo "Serving Aqta on http://$(HOST):$(PORT)"
	$(BIN)/python manage.py serve --host $(HOST) --port $(PORT)

# Secrets the suite needs when DATABASE_URL/REDIS_URL switch settings out of embedded mode.
test: install
	SECRET_KEY=$${SECRET_KEY:-test-secret-key-not-for-production} \
	AQTA_API_KEY_PEPPER=$${AQTA_API_KEY_PEPPER:-test-pepper-not-for-production} \
	AQTA_ENCRYPTION_KEYS=$${AQTA_ENCRYPTION_KEYS:-dHR0dHR0dHR0dHR0dHR0dHR0dHR0dHR0dHR0dHR0dHQ=} \
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

ci:
	bash .ci/run

clean:
	rm -rf $(VENV) staticfiles .pytest_cache .ruff_cache
