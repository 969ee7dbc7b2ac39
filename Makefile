# gapstream: `make demo` runs the pipeline on the bundled clip; `make test` installs and runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SAMPLE ?= samples/people.mp4

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.runtime: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[runtime]'
	touch $@

$(VENV)/.dev: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[runtime,train,dev,ray]'  # ray: the batch tests run a local Ray
	touch $@ $(VENV)/.runtime

demo: $(VENV)/.runtime
	mkdir -p out
	$(BIN)/gapstream run $(SAMPLE) --out out/demo.mp4 --json out/demo.jsonl

test: $(VENV)/.dev
	.ci/install-test-deps.sh
	$(BIN)/ruff check gapstream tests benchmarks
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: $(VENV)/.dev
	$(BIN)/ruff check gapstream tests benchmarks

bench: $(VENV)/.dev
	$(BIN)/gapstream bench

clean:
	rm -rf $(VENV) out build *.egg-info
