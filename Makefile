# Quick start: `make run` trains the default swarm, `make test` runs the whole suite.
# torch==2.13.0 (a CPU wheel on this machine) is installed before the project so that the
# project's torch range is already satisfied and no CUDA build is pulled.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_PIN ?= torch==2.13.0

.PHONY: run test test-unit lint bench clean

$(VENV)/.base: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.dev: $(VENV)/.base
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

run: $(VENV)/.base
	$(VENV)/bin/nosync train

test: $(VENV)/.dev
	$(PY) -m ruff check src tests benchmarks examples
	$(PY) -m pytest -n 3 --durations=10

# the in-process tests alone (tests/unit, about a minute): for quick iteration
test-unit: $(VENV)/.dev
	$(PY) -m pytest -n 2 tests/unit

lint: $(VENV)/.dev
	$(PY) -m ruff check src tests benchmarks examples
	$(PY) -m ruff format --check src tests benchmarks examples
	$(PY) -m mypy

clean:
	rm -rf $(VENV) runs .pytest_cache
