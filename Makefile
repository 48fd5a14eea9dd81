# Two commands do all set-up: `make run` (the main job) and `make test` (the whole suite).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
FLOW   ?= examples/code_review.flow

.PHONY: setup run check test lint typecheck layers unit bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## The main job: check every example, then print the compiled IR of $(FLOW).
run: setup
	$(BIN)/flowc check examples/*.flow
	$(BIN)/flowc compile $(FLOW)

## The whole test suite: lint, format, types, layers, then every test (slow ones too).
test: setup lint typecheck layers unit

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck:
	$(BIN)/mypy

layers:
	$(BIN)/lint-imports

unit:
	$(BIN)/pytest

bench: setup
	$(BIN)/python bench/compile.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
