# One command per task; README, CI and contributors all use these targets.
# Every target first runs the bootstrap, which installs only what is missing.

VENV := .venv/bin
# The dev stack's ports: `make dev DB_PORT=54330 APP_PORT=8010` when another stack (a
# `supabase start`, another checkout) holds the defaults.
DB_PORT ?= 54322
APP_PORT ?= 8000
STACK := --db-port $(DB_PORT) --app-port $(APP_PORT)

.PHONY: bootstrap demo dev reset test test-db lint format bench

bootstrap:
	@./scripts/bootstrap

demo: bootstrap  ## start the dev stack, run sample jobs end to end, stop
	@$(VENV)/jobhook demo $(STACK)

dev: bootstrap  ## run the dev stack until Ctrl-C
	@$(VENV)/jobhook dev $(STACK)

reset: bootstrap  ## drop the dev stack's data (asks first)
	@$(VENV)/jobhook reset

test: bootstrap  ## the whole suite, with coverage
	@$(VENV)/pytest --cov=jobhook --cov=functions --cov=handlers --cov-report=term-missing:skip-covered

lint: bootstrap
	@$(VENV)/ruff check .
	@$(VENV)/ruff format --check .
	@$(VENV)/mypy
	@$(VENV)/pytest -q -p no:cacheprovider tests/test_layout.py  # the import rules

format: bootstrap
	@$(VENV)/ruff check --fix .
	@$(VENV)/ruff format .

bench: bootstrap  ## jobhook against pgqueuer on the dev stack
	@$(VENV)/jobhook bench
