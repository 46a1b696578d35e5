# The README's commands. `run` and `test` build .venv on first use and again
# whenever pyproject.toml changes; nothing is ever installed by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.rivulet-installed
DATA ?= ./data
PORT ?= 2181
BROKER_PORT ?= 9092

.PHONY: run test lint bench docs clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Rivulet needs Python >= 3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# A single-node cluster: a broker with its coordinator embedded (on $(PORT)).
run: $(STAMP)
	$(BIN)/broker serve --port $(BROKER_PORT) --embedded-coordinator-port $(PORT) --data-dir $(DATA)/broker

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench all --quick

# Regenerate docs/configuration.md and docs/api.md from the code.
docs: $(STAMP)
	$(BIN)/python scripts/gen_docs.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
