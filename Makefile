# certgate: two commands do all the set-up on a fresh Debian/Ubuntu machine.
#   make run   - create .venv, install, run the demo (generated PKI, embedded SQLite)
#   make test  - create .venv, install the test extra and (as root) the Debian peers, run pytest
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo

.PHONY: run test unit integration lint bench venv clean deps

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

deps:
	bash scripts/install-test-deps.sh

run: venv
	$(BIN)/certgate demo --dir $(DEMO_DIR)

test: venv deps
	$(BIN)/ruff check .
	$(BIN)/pytest -q

unit: venv
	$(BIN)/pytest -q tests/unit

integration: venv deps
	$(BIN)/pytest -q tests/integration

lint: venv
	$(BIN)/ruff check .

bench: venv deps
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
