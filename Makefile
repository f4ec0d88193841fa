# Two commands do all the set-up on a fresh machine:
#   make run    start the model server on ./model_store (trains and publishes a demo model first
#               when the store is empty)
#   make test   lint and run the whole test suite
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench lint

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[train,dev]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m service

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports
	$(PY) -m mypy

test: lint
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) benchmarks/train_throughput.py
