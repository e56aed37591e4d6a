# One set of commands locally and in CI.
# the first interpreter that really runs and is one durable_rules supports (3.11 or 3.12);
# a pyenv shim can exist without its version being installed
PYTHON ?= $(shell for p in python3.11 python3.12 python3; do \
	$$p -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] < (3, 13))' >/dev/null 2>&1 \
	&& { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run serve test lint fmt bench clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "kaq needs Python 3.11 or 3.12 (durable_rules does not import on 3.13)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/kaq serve --host 127.0.0.1 --port 8000 --rulesets rulesets

test: $(STAMP)
	$(BIN)/ruff check engine api cli tests benchmarks
	$(BIN)/ruff format --check engine api cli tests benchmarks
	$(BIN)/mypy engine api cli
	$(BIN)/kaq check rulesets
	$(BIN)/kaq fmt --check rulesets
	$(BIN)/kaq test rulesets --coverage-min 100
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check engine api cli tests benchmarks
	$(BIN)/ruff format --check engine api cli tests benchmarks
	$(BIN)/mypy engine api cli

fmt: $(STAMP)
	$(BIN)/ruff format engine api cli tests benchmarks
	$(BIN)/kaq fmt rulesets

bench: $(STAMP)
	$(BIN)/python benchmarks/engine.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
