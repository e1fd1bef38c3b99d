# Two commands set everything up on a fresh machine with Python 3.11+:
#   make serve   install, migrate, load fixtures/ into an empty SQLite database, serve on :8000
#   make test    install, then lint, type-check and run every test on SQLite and PostgreSQL
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
PIP := $(BIN)/python -m pip --disable-pip-version-check --quiet

.PHONY: help install serve test lint pytest browser bench openapi schema lock clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

# The exact versions CI tested (requirements.lock), then the project itself, editable.
$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -r requirements.lock
	$(PIP) install --no-deps --no-build-isolation -e .
	touch $@

install: $(VENV)/.installed  ## create .venv with the locked dependencies

serve: install  ## run the server on SQLite (var/timeline.db) with the fixtures loaded
	$(BIN)/timeline serve --host $(HOST) --port $(PORT)

lint: install  ## ruff and mypy --strict
	$(BIN)/ruff check src tests migrations
	$(BIN)/ruff format --check src tests migrations
	$(BIN)/mypy src

pytest: install browser  ## every test, on SQLite and PostgreSQL (127.0.0.1:5432, database test)
	$(BIN)/pytest

# Browser tests drive Debian's chromium (installed as root from Debian when missing) and load TimelineJS3
# (from npm, into .cache/) to check that it reads our export.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  (DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null 2>&1)) || \
	  echo "note: could not install chromium; browser tests will be skipped unless required"
	@test -f .cache/timelinejs/node_modules/@knight-lab/timelinejs/dist/js/timeline.js || \
	  npm install --no-save --no-audit --no-fund --prefix .cache/timelinejs @knight-lab/timelinejs@3.9.11 >/dev/null 2>&1 || \
	  echo "note: could not fetch TimelineJS from npm; its browser test will be skipped unless required"

test: lint pytest  ## everything CI runs

# The HTTP benchmarks load the server with wrk (Debian's package, installed as root when missing): a Python
# load generator on the same cores would measure itself.
bench: install  ## the benchmark suite on SQLite and PostgreSQL (quick; ARGS=--full for 1,000,000 events)
	@command -v wrk >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null 2>&1 || \
	  (apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null 2>&1)
	$(BIN)/python -m timeline.bench $(ARGS)

openapi: install  ## regenerate openapi/openapi.json from the app
	$(BIN)/timeline openapi --output openapi/openapi.json

schema: install  ## regenerate fixtures/schema.json from the fixture types
	$(BIN)/python -c 'import json; from timeline.fixtures import json_schema; print(json.dumps(json_schema(), indent=2, sort_keys=True))' > fixtures/schema.json

lock: install  ## re-pin requirements.lock to what is installed in .venv
	$(BIN)/python -m pip freeze --exclude-editable --disable-pip-version-check > requirements.lock

clean:  ## remove the virtualenv and the local database
	rm -rf $(VENV) var
