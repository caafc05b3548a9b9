# Every install step lives here: a fresh machine needs only Python 3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: test demo lint typecheck pytest docs bench bench-quick clean

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	touch $@

$(VENV)/.dev: $(VENV)/.created pyproject.toml
	$(PIP) -e '.[dev]'
	touch $@

$(VENV)/.demo: $(VENV)/.created pyproject.toml
	$(PIP) -e '.[cli]'
	touch $@

$(VENV)/.bench: $(VENV)/.created pyproject.toml
	$(PIP) -e '.[bench]'
	touch $@

lint: $(VENV)/.dev
	$(BIN)/ruff check bybit_async tests benchmarks
	$(BIN)/ruff format --check bybit_async tests benchmarks

typecheck: $(VENV)/.dev
	$(BIN)/mypy --strict bybit_async

docs: $(VENV)/.dev
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir site

pytest: $(VENV)/.dev
	PYTHONASYNCIODEBUG=1 $(PY) -X dev -m pytest -W error

test: lint typecheck docs pytest

demo: $(VENV)/.demo
	$(PY) -m bybit_async demo

bench: $(VENV)/.bench
	$(PY) -m benchmarks

bench-quick: $(VENV)/.bench
	$(PY) -m benchmarks --quick

clean:
	rm -rf $(VENV) site .mypy_cache .pytest_cache .ruff_cache
