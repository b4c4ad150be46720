# Two commands do all set-up on a fresh machine: `make train` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: train test test-slow bench lint clean venv

venv: $(STAMP)

# torch==2.13.0 first: on these machines it is a local CPU wheel; the package's range then installs nothing more.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

train: $(STAMP)
	$(BIN)/python -m bongrl train --env CartPole-v1

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/python scripts/bench_update.py

lint: $(STAMP)
	$(BIN)/ruff check bongrl tests scripts

clean:
	rm -rf $(VENV) build *.egg-info
