# Every install step lives here: a fresh machine needs only Python 3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python

.PHONY: test demo lint typecheck clean

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	touch $@

$(VENV)/.dev: $(VENV)/.created pyproject.toml
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

$(VENV)/.demo: $(VENV)/.created pyproject.toml
	$(PY) -m pip install --quiet -e .
	touch $@

lint: $(VENV)/.dev
	$(BIN)/ruff check bybit_async tests benchmarks

typecheck: $(VENV)/.dev
	$(BIN)/mypy --strict bybit_async

test: lint typecheck
	PYTHONASYNCIODEBUG=1 $(PY) -X dev -m pytest -W error

demo: $(VENV)/.demo
	$(PY) -m bybit_async demo

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
