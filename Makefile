# `make` alone lists the targets. On a fresh clone each target sets up .venv itself.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help install demo test bench
help: ## list the targets (what plain `make` does)
	@awk 'BEGIN {FS = ":.*## "} /^[a-z]+:.*## / {printf "  make %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: $(STAMP) ## create .venv and install ast_tune with its test tools (the other targets do it too)

demo: $(STAMP) ## the quickstart sweep on the embedded digits data (CPU, no download): prints the front, writes results/quickstart/
	$(PY) -m ast_tune.sweep search_spaces/quickstart.yaml

test: $(STAMP) ## ruff + the test suite (what .ci/run calls)
	$(PY) -m ruff check ast_tune tests benchmarks
	$(PY) -m pytest -q --durations=15

bench: $(STAMP) ## measured speedup of each selection mode over dense, side by side (python -m ast_tune.bench)
	$(PY) -m ast_tune.bench

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)
