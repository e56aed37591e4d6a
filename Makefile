# One set of commands locally and in CI.
#
# PYTHON: the interpreter the venv is made with. By default the first of python3.11,
# python3.12, python3.13, python3 that really runs and is one kaq supports (3.11 to 3.13);
# `make setup PYTHON=python3.13` asks for one. Each name is tried as a command, then as
# pyenv's install of that version: pyenv puts a shim on the PATH for every installed version,
# but a shim runs only the versions selected (`pyenv global`/`local`), so the install is
# tried by its path. Resolved to the interpreter's real path.
# VENV: where it goes, so that two can coexist: `make test PYTHON=python3.13 VENV=.venv313`
# (or `make test-py313`).
SUPPORTED := (3, 11) <= sys.version_info[:2] < (3, 14)
PYENV_VERSIONS := $(shell echo "$$(pyenv root 2>/dev/null || echo "$${PYENV_ROOT:-$$HOME/.pyenv}")/versions")
py_candidates = $(1) $(wildcard $(PYENV_VERSIONS)/$(patsubst python%,%,$(notdir $(1))).*/bin/$(notdir $(1)))
PYTHON_GIVEN := $(filter command line environment,$(origin PYTHON))
PYTHON ?= python3.11 python3.12 python3.13 python3
# "real-path X.Y" of the first candidate that runs and is supported
PY_FOUND := $(shell for p in $(foreach c,$(PYTHON),$(call py_candidates,$(c))); do \
	found=$$($$p -c 'import sys; assert $(SUPPORTED); print(sys.executable, "%d.%d" % sys.version_info[:2])' 2>/dev/null) \
	&& { echo "$$found"; break; }; done)
PY_EXE := $(word 1,$(PY_FOUND))
PY_VERSION := $(word 2,$(PY_FOUND))
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# durable_rules 2.0.28 calls PyEval_CallObject, which Python 3.13 removed; PyObject_CallObject
# is the same call. Its setup.py overwrites CFLAGS, but the compile line still takes CPPFLAGS.
# Given on 3.13 only: on 3.11 and 3.12 the headers define PyEval_CallObject themselves, and
# redefining it there would only add a warning.
DURABLE_CPPFLAGS := -DPyEval_CallObject=PyObject_CallObject
durable_cppflags = $$($(BIN)/python -c 'import sys; print("$(DURABLE_CPPFLAGS)" if sys.version_info >= (3, 13) else "")')
# Without the flag, a compiler that lets an implicit declaration pass (GCC 12 here) still
# builds a wheel, and pip caches it; it fails only at import (undefined symbol). The install
# is checked by importing the seam, and such a wheel is replaced by one built afresh.
DURABLE_VERSION := from importlib.metadata import version; print(version("durable-rules"))

NO_PYTHON := echo "kaq needs Python 3.11, 3.12 or 3.13; none of [$(PYTHON)] runs one \
(pyenv installs included)"; exit 1
# With PYTHON given, a venv made by another version is refused, never silently used.
VENV_IS_PY_VERSION := import sys; v = "%d.%d" % sys.version_info[:2]; sys.exit(v != "$(PY_VERSION)" \
and f"$(VENV) holds Python {v}, not $(PY_VERSION): give another VENV=, or make clean VENV=$(VENV)")
check_venv = $(if $(PYTHON_GIVEN),@$(if $(PY_EXE),$(BIN)/python -c '$(VENV_IS_PY_VERSION)',$(NO_PYTHON)))

.PHONY: setup run serve test test-py313 lint fmt bench bench-quick bench-engine clean studio

# The studio page (GET /studio): CodeMirror 6 from the npm registry (studio/package-lock.json),
# bundled by esbuild into studio/dist (git-ignored). Needs node and npm; nothing else does.
STUDIO_DIST := studio/dist/index.html
STUDIO_MODULES := studio/node_modules/.package-lock.json
NO_NODE := echo "the studio page (GET /studio) is built with node and npm, which are not \
installed: install Node.js 18 or newer (e.g. apt-get install nodejs npm), then run make again"; exit 1

$(STUDIO_MODULES): studio/package.json studio/package-lock.json
	@command -v node >/dev/null && command -v npm >/dev/null || { $(NO_NODE); }
	cd studio && npm ci --no-audit --no-fund
	@touch $(STUDIO_MODULES)

$(STUDIO_DIST): $(STUDIO_MODULES) studio/build.mjs $(wildcard studio/src/*)
	cd studio && npm run --silent build

studio: $(STUDIO_DIST)

$(STAMP): pyproject.toml
	@test -n "$(PY_EXE)" || test -x $(BIN)/python || { $(NO_PYTHON); }
	@test -x $(BIN)/python || $(PY_EXE) -m venv $(VENV)
	$(check_venv)
	$(BIN)/python -m pip install --quiet --upgrade pip
	CPPFLAGS="$(durable_cppflags) $$CPPFLAGS" $(BIN)/python -m pip install --quiet -e '.[dev]'
	@$(BIN)/python -c 'import engine.runtime._durable' 2>/dev/null || { \
	  echo "durable_rules does not import (a wheel built without the 3.13 flag, from pip's cache?):"; \
	  echo "rebuilding it without the cache"; set -x; \
	  CPPFLAGS="$(durable_cppflags) $$CPPFLAGS" $(BIN)/python -m pip install --quiet --no-cache-dir \
	    --force-reinstall --no-deps "durable-rules==$$($(BIN)/python -c '$(DURABLE_VERSION)')"; \
	  $(BIN)/python -c 'import engine.runtime._durable'; }
	@touch $(STAMP)

setup: $(STAMP) $(STUDIO_DIST)
	$(check_venv)

# The studio's editing needs a token: make run uses KAQ_EDITOR_TOKEN when set, else makes one
# for this run (the service listens on 127.0.0.1 only) and prints it beside the address.
run: $(STAMP) $(STUDIO_DIST)
	$(check_venv)
	@token="$${KAQ_EDITOR_TOKEN:-$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(12))')}"; \
	echo "kaq: API on http://127.0.0.1:8000 (docs at /docs); studio at http://127.0.0.1:8000/studio, editor token: $$token"; \
	KAQ_EDITOR_TOKEN="$$token" exec $(BIN)/kaq serve --host 127.0.0.1 --port 8000 --rulesets rulesets

# make test: pytest in two passes. The in-process tests run on every core (pytest-xdist,
# TEST_JOBS workers); then the tests marked serial (servers, worker processes, Spark, the
# browser, time bounds) run one at a time with the machine to themselves. SECOND_PYTHON=1
# (CI's 3.13 half) leaves out the tests marked once and bench-quick, which the first half ran.
TEST_JOBS ?= auto
ONCE_FILTER := $(if $(SECOND_PYTHON), and not once)

test: $(STAMP) $(STUDIO_DIST)
	$(check_venv)
	@$(BIN)/python -c 'import sys; print("kaq tests on Python", sys.version.split()[0], "in $(VENV)")'
	$(BIN)/ruff check engine api cli tests benchmarks
	$(BIN)/ruff format --check engine api cli tests benchmarks
	$(BIN)/mypy engine api cli
	$(BIN)/kaq check rulesets
	$(BIN)/kaq fmt --check rulesets
	$(BIN)/kaq test rulesets --coverage-min 100
	$(BIN)/python -m pytest -q -n $(TEST_JOBS) --dist loadscope -m "not serial$(ONCE_FILTER)"
	$(BIN)/python -m pytest -q -m "serial$(ONCE_FILTER)"
	$(if $(SECOND_PYTHON),@echo "bench-quick: run on the first Python only",$(MAKE) bench-quick VENV=$(VENV))

test-py313:
	$(MAKE) test PYTHON=python3.13 VENV=.venv313

lint: $(STAMP)
	$(BIN)/ruff check engine api cli tests benchmarks
	$(BIN)/ruff format --check engine api cli tests benchmarks
	$(BIN)/mypy engine api cli

fmt: $(STAMP)
	$(BIN)/ruff format engine api cli tests benchmarks
	$(BIN)/kaq fmt rulesets

# The benchmark harness of issue #12 (benchmarks/bench.py): engine, HTTP, batch and soak, each
# figure beside the in-process engine rate of the same run; writes benchmarks/results.json.
# 22 to 42 minutes on 2 quiet cores (22 and 42 on 1 December 2026 on two machines; 58 at load 4-9);
# not in CI. bench-quick is the same harness at tiny sizes (under
# a minute) with its output checked, and runs in `make test` so that the harness cannot rot.
bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py

bench-quick: $(STAMP)
	$(BIN)/python benchmarks/bench.py --quick

bench-engine: $(STAMP)
	$(BIN)/python benchmarks/engine.py --split --repeat 7

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis studio/dist
