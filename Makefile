# One set of commands locally and in CI.
PYTHON ?= $(shell command -v python3.12 || command -v python3.11)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run serve test lint check-rulesets bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/kaq serve --host 127.0.0.1 --port 8000 --rulesets rulesets

test: $(STAMP)
	$(BIN)/ruff check engine api tests benchmarks
	$(BIN)/kaq check rulesets
	$(BIN)/kaq test rulesets --coverage-min 100
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check engine api tests benchmarks
	$(BIN)/ruff format --check engine api tests benchmarks
	$(BIN)/mypy engine api

bench: $(STAMP)
	$(BIN)/python benchmarks/engine.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
