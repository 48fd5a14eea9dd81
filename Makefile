# Two commands do all set-up: `make run` (the main job) and `make test` (the whole suite).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
FLOW   ?= examples/code_review.flow
CODE   ?= examples/samples/prints.py
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: setup run review check test lint typecheck layers unit bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## The main job: serve the API on the embedded SQLite database (DATABASE_URL picks another).
run: setup
	$(BIN)/flowc serve --host $(HOST) --port $(PORT)

## Run the code review on a sample, in-process (no database).
review: setup
	$(BIN)/flowc run $(FLOW) --code-file $(CODE)

## Check every example flow.
check: setup
	$(BIN)/flowc check examples/*.flow

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
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/api.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
