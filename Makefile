# Every install step lives here: a fresh machine needs only Python 3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
# pip's own progress (downloads, builds) shows: a first install takes a minute.
PIP := $(PY) -m pip install --disable-pip-version-check --progress-bar on
PORT ?= 8000

.PHONY: test demo lint typecheck pytest docs docs-serve bench bench-quick clean

# Checked when the Makefile is read, so that an old Python stops make with one
# line instead of pip backtracking for minutes through releases it cannot install.
ifneq ($(MAKECMDGOALS),clean)
PYTHON_VERSION := $(shell $(PYTHON) -c 'import sys; print("%d.%d %s" % (sys.version_info[0], sys.version_info[1], "ok" if sys.version_info >= (3, 10) else "old"))' 2>/dev/null)
ifneq ($(word 2,$(PYTHON_VERSION)),ok)
$(error bybit-async needs Python 3.10 or later; $(PYTHON) is $(or $(word 1,$(PYTHON_VERSION)),not found): run make PYTHON=python3.12 (or another 3.10+))
endif
endif

$(VENV)/.created:
	@echo "== creating $(VENV) with $$($(PYTHON) --version)"
	$(PYTHON) -m venv $(VENV)
	touch $@

$(VENV)/.dev: $(VENV)/.created pyproject.toml
	@echo "== installing bybit-async with the dev extra (tests, lint, docs) into $(VENV)"
	$(PIP) -e '.[dev]'
	touch $@

$(VENV)/.demo: $(VENV)/.created pyproject.toml
	@echo "== installing bybit-async with the cli extra into $(VENV)"
	$(PIP) -e '.[cli]'
	touch $@

$(VENV)/.bench: $(VENV)/.created pyproject.toml
	@echo "== installing bybit-async with the bench extra into $(VENV)"
	$(PIP) -e '.[bench]'
	touch $@

lint: $(VENV)/.dev
	$(BIN)/ruff check bybit_async tests benchmarks
	$(BIN)/ruff format --check bybit_async tests benchmarks

typecheck: $(VENV)/.dev
	$(BIN)/mypy --strict bybit_async

docs: $(VENV)/.dev
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site
	@echo "== built site/index.html: open it from disk (search works only when served: make docs-serve)"

# Not strict: a preview shows a page with a broken link rather than stopping; make docs checks.
docs-serve: $(VENV)/.dev
	@echo "== serving the docs at http://127.0.0.1:$(PORT)/ (Ctrl-C stops)"
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --no-strict --dev-addr 127.0.0.1:$(PORT)

pytest: $(VENV)/.dev
	PYTHONASYNCIODEBUG=1 $(PY) -X dev -m pytest -W error -n 2

test: lint typecheck docs pytest

demo: $(VENV)/.demo
	$(PY) -m bybit_async demo

bench: $(VENV)/.bench
	$(PY) -m benchmarks

bench-quick: $(VENV)/.bench
	$(PY) -m benchmarks --quick

clean:
	rm -rf $(VENV) site .mypy_cache .pytest_cache .ruff_cache
