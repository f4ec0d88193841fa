# Two commands do all the set-up on a fresh machine:
#   make run    start the model server on ./model_store (trains and publishes a demo model first
#               when the store is empty)
#   make test   lint and run the whole test suite
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench lint browser

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

# Debian's chromium for the dashboard's browser test, installed when missing and apt-get can
# (as root); elsewhere the test skips with the reason.
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "chromium not installed: the dashboard's browser test will skip"

test: lint browser
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) benchmarks/train_throughput.py
