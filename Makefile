# Aqta: `make run` serves the gateway locally, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8000
# The documentation's client examples run against a live gateway in the suite, with the
# clients they were written for: the legacy openai==0.28 SDK (a virtualenv of its own) and
# the OpenAI JS SDK (npm, pinned by the committed lock file).
DOC_EXAMPLES := gateway/tests/doc_examples
LEGACY_VENV := $(VENV)/legacy-openai
LEGACY_STAMP := $(LEGACY_VENV)/.installed-stamp
NODE_STAMP := $(DOC_EXAMPLES)/node_modules/.installed-stamp

.PHONY: install clients run test lint typecheck format ci clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Aqta needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

$(LEGACY_STAMP): $(DOC_EXAMPLES)/legacy-openai-requirements.txt
	$(PYTHON) -m venv $(LEGACY_VENV)
	$(LEGACY_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r $<
	@touch $@

$(NODE_STAMP): $(DOC_EXAMPLES)/package.json $(DOC_EXAMPLES)/package-lock.json
	@command -v npm >/dev/null || { echo "Node.js 20+ and npm are needed by the client tests" >&2; exit 1; }
	cd $(DOC_EXAMPLES) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# Not part of `install`: `make run` needs only Python; the suite needs these too.
clients: $(LEGACY_STAMP) $(NODE_STAMP)

run: install
	$(BIN)/python manage.py migrate --noinput -v0
	$(BIN)/python manage.py collectstatic --noinput -v0
	@$(BIN)/python manage.py demo_setup
	@echo "Serving Aqta on http://$(HOST):$(PORT)"
	$(BIN)/python manage.py serve --host $(HOST) --port $(PORT)

# Secrets the suite needs when DATABASE_URL/REDIS_URL switch settings out of embedded mode.
test: install clients
	SECRET_KEY=$${SECRET_KEY:-test-secret-key-not-for-production} \
	AQTA_API_KEY_PEPPER=$${AQTA_API_KEY_PEPPER:-test-pepper-not-for-production} \
	AQTA_ENCRYPTION_KEYS=$${AQTA_ENCRYPTION_KEYS:-dHR0dHR0dHR0dHR0dHR0dHR0dHR0dHR0dHR0dHR0dHQ=} \
	AQTA_RECEIPT_SIGNING_KEY=$${AQTA_RECEIPT_SIGNING_KEY:-dGVzdC1yZWNlaXB0LWtleS1ub3QtZm9yLXByb2R1Y3Q} \
	$(BIN)/pytest

lint: install typecheck
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy with the Django plugin, which loads the embedded settings (never a real database).
typecheck: install
	env -u DATABASE_URL -u REDIS_URL $(BIN)/mypy

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

ci:
	bash .ci/run

clean:
	rm -rf $(VENV) $(DOC_EXAMPLES)/node_modules staticfiles .pytest_cache .ruff_cache .mypy_cache
