# sdrbot: `make demo` runs the product on real data; `make test` runs the whole suite. Both work on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA ?= ../shared/data
PORT ?= 8000
export PORT
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)

.PHONY: help install services stop status migrate demo-data demo mypy test bench clean-data chromium

help:
	@echo "make demo     set up everything and run web + worker + beat on http://127.0.0.1:$(PORT)/"
	@echo "make test     install what tests need, type-check (make mypy) and run the whole suite against the real services"
	@echo "make services / make stop / make status   the embedded PostgreSQL+pgvector and Redis"
	@echo "make bench    run the benchmarks in bench/ (figures go to docs/benchmarks.md)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

services: install
	$(BIN)/python -m sdrbot.devservices start

stop:
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m sdrbot.devservices stop; fi

status: install
	$(BIN)/python -m sdrbot.devservices status

migrate: services
	$(BIN)/python manage.py migrate --noinput

demo-data: migrate
	$(BIN)/python manage.py demo_setup --data $(DATA)

demo: demo-data
	@echo
	@echo "  sdrbot is starting on http://127.0.0.1:$(PORT)/   (health: http://127.0.0.1:$(PORT)/healthz)"
	@echo "  log in as the user and password printed above by demo_setup; Ctrl-C stops everything"
	@echo "  the customer's side (chat widget on a made-up company's page): http://127.0.0.1:$(PORT)/demo/"
	@echo "  public API docs: http://127.0.0.1:$(PORT)/api/widget/v1/docs/"
	@echo
	$(BIN)/honcho start -f Procfile

chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; fi; }

# the django-stubs plugin imports sdrbot.settings_test (mypy.ini): installed packages are all it needs; with
# DATABASE_URL/REDIS_URL unset the settings only compute the embedded servers' URLs, which need no running server
mypy: install
	$(BIN)/mypy

# mypy first: a type error fails in seconds, before the services start
test: mypy services chromium
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: migrate
	$(BIN)/python bench/run_all.py
	$(BIN)/python bench/pipeline_overhead.py
	$(BIN)/python bench/draft_backlog.py
	$(BIN)/python bench/console_pages.py
	$(BIN)/python bench/rollout_gates.py
	$(BIN)/python bench/sdr_intent.py
	$(BIN)/python bench/sdr_overhead.py
	$(BIN)/python bench/sdr_chaos.py
	$(BIN)/python bench/widget_api.py

clean-data: stop
	rm -rf .data
