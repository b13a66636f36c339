# Shortcuts for the usual loops. Every target runs in the active Python environment
# (`python3 -m venv .venv && source .venv/bin/activate && pip install -r requirements-dev.txt`).
PY ?= python

.PHONY: help lint format test-fast test bench-quick app

help:
	@echo "make lint         ruff check (the project's configuration in pyproject.toml)"
	@echo "make test-fast    the unit tests without the slow and browser ones (< 2 min)"
	@echo "make test         the whole suite, browser test included (what CI runs, after lint)"
	@echo "make bench-quick  xtask bench --quick (ratios against plain eager, same run)"
	@echo "make app          streamlit run app.py"

lint:
	$(PY) -m ruff check .

test-fast:
	$(PY) -m pytest -q -m "not slow and not browser"

test: lint
	$(PY) -m pytest -q

bench-quick:
	$(PY) -m xtask_core bench --quick

app:
	$(PY) -m streamlit run app.py
