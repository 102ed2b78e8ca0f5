# Two commands matter: `make demo` and `make test`. Both work from a fresh clone.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# The suite always runs on the real services (scripts/services.sh starts them when they are down).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/iri_platform
TEST_BROKER_URL ?= redis://127.0.0.1:6379/15

.PHONY: install demo test test-quick test-python test-frontend services frontend clean env docs

$(VENV)/.installed: requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --disable-pip-version-check -r requirements.txt
	touch $@

frontend/node_modules/.installed: frontend/package.json frontend/package-lock.json
	cd frontend && npm ci --no-audit --no-fund --loglevel=error
	touch $@

frontend/dist/participant.js: frontend/node_modules/.installed $(wildcard frontend/src/*) frontend/build.mjs
	cd frontend && npm run --silent build

frontend: frontend/dist/participant.js

install: $(VENV)/.installed frontend

# The demo and the suite run with DEBUG on even where .env (written for the compose stack) turns it off.
demo: install
	DJANGO_DEBUG=true $(PY) manage.py demo

# .env for the compose stack: .env.example with a new secret key and database password; never overwrites one.
env:
	./scripts/make_env.sh

services:
	./scripts/services.sh

test: install docs services test-frontend test-python

# The documentation site (mkdocs.yml, MkDocs with the Material theme) into var/site; --strict fails on a broken link.
docs: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

test-frontend: frontend/node_modules/.installed
	cd frontend && npm test --silent

# xdist: one test process per core (at most four); each has a database and broker keys of its own (tests/conftest.py).
PYTEST := DJANGO_DEBUG=true DATABASE_URL=$(TEST_DATABASE_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) DJANGO_CONN_MAX_AGE=0 RATE_LIMIT_ENROLL=1000000/min RATE_LIMIT_SESSION=1000000/min $(PY) -m pytest -n auto --maxprocesses 4 --dist loadgroup --durations=20

test-python: install
	$(PYTEST)

# The suite without the tests that start processes (workers, servers, browsers, commands): a few minutes' feedback.
test-quick: install services
	$(PYTEST) -m "not slow"

clean:
	rm -rf $(VENV) frontend/node_modules frontend/dist var
