# Two commands do all the set-up on a fresh machine:
#   make run    generate the Pendulum dataset, train BEAR, evaluate it, print the returns
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
	$(PY) -m bear_core demo

lint: $(STAMP)
	$(PY) -m ruff check .

test: lint
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) benchmarks/train_throughput.py
