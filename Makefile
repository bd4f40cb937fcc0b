# Two entry points, each doing all set-up in a fresh clone:
#   make demo   the quickstart sweep on the embedded digits data (CPU, no download)
#   make test   ruff + the test suite (what .ci/run calls)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench
demo: $(STAMP)
	$(PY) -m ast_tune.sweep search_spaces/quickstart.yaml

test: $(STAMP)
	$(PY) -m ruff check ast_tune tests benchmarks
	$(PY) -m pytest -q --durations=15

bench: $(STAMP)
	$(PY) -m ast_tune.bench

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)
