# Quick start: `make run` trains the default swarm, `make test` runs the whole suite; `make docs`
# builds the docs site strictly into build/site (`make docs-cli` regenerates docs/cli.md).
# torch==2.13.0 (a CPU wheel on this machine) is installed before the project so that the
# project's torch range is already satisfied and no CUDA build is pulled.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_PIN ?= torch==2.13.0

.PHONY: run test test-unit lint bench docs docs-cli clean

$(VENV)/.base: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.dev: $(VENV)/.base
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

$(VENV)/.docs: $(VENV)/.base
	$(PY) -m pip install -q -e '.[docs]'
	touch $@

run: $(VENV)/.base
	$(VENV)/bin/nosync train

test: $(VENV)/.dev
	$(PY) -m ruff check src tests benchmarks examples
	$(PY) -m pytest -n 3 --durations=10

# the in-process tests alone (tests/unit, about a minute): for quick iteration
test-unit: $(VENV)/.dev
	$(PY) -m pytest -n 2 tests/unit

# the command-line page, written from nosync's own parser (run it after changing a flag)
docs-cli: $(VENV)/.base
	$(PY) docs/gen_cli.py

# the docs site, built strictly (a broken link or reference is an error) into build/site
docs: $(VENV)/.docs docs-cli
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

lint: $(VENV)/.dev
	$(PY) -m ruff check src tests benchmarks examples
	$(PY) -m ruff format --check src tests benchmarks examples
	$(PY) -m mypy

clean:
	rm -rf $(VENV) runs .pytest_cache build/site
