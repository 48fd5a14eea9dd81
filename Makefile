# Two commands do all set-up: `make run` (the main job) and `make test` (the whole suite).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
FLOW   ?= examples/code_review.flow
CODE   ?= examples/samples/prints.py
HOST   ?= 127.0.0.1
PORT   ?= 8000
FUZZ_SECONDS ?= 600

.PHONY: setup run review check test lint typecheck layers unit fuzz wheel bench clean mutate

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

## The whole test suite: lint, format, types, layers, then every test (deterministic: property
## tests draw the same examples every time; `make fuzz` explores).
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

## Open-ended fuzzing: rounds of the `fuzz` property tests with random seeds for FUZZ_SECONDS
## (no new round starts after it); a failure is kept in .hypothesis/ and tried first next time.
fuzz: setup
	$(BIN)/python -m tests.fuzzing --seconds $(FUZZ_SECONDS)

## The wheel users install (and the Docker image installs), into dist/.
wheel: setup
	$(BIN)/python -m pip wheel --quiet --no-deps --wheel-dir dist .

bench: setup
	$(BIN)/python bench/compile.py
	$(BIN)/python bench/compiler_scaling.py
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/map.py
	$(BIN)/python bench/subflow.py
	$(BIN)/python bench/api.py
	$(BIN)/python bench/service.py
	$(BIN)/python bench/claims.py
	$(BIN)/python bench/loop_latency.py
	$(BIN)/python bench/loop_latency.py --pg

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis dist mutants

## Mutation testing of the safety core, from scratch (minutes): fails on a mutant that no test
## kills and tests/mutation/equivalent.txt does not list.
mutate: setup
	rm -rf mutants
	$(BIN)/mutmut run
	$(BIN)/python tests/mutation/survivors.py
