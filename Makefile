# rollbackbot — every target does its own set-up on a fresh machine.
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-stamp

.PHONY: install demo test lint unit bench docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# make demo DEMO_ARGS=--serve keeps the incident pages up until Ctrl-C.
demo: $(STAMP)
	$(VENV)/bin/rollbackbot demo $(DEMO_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check rollbackbot tests
	$(VENV)/bin/ruff format --check rollbackbot tests
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

unit: $(STAMP)
	$(VENV)/bin/pytest -q

test: $(STAMP)
	bash scripts/ensure-alertmanager.sh
	$(MAKE) --no-print-directory lint
	$(VENV)/bin/pytest -q

bench: $(STAMP)
	$(PY) -m bench
	$(PY) -m bench.observer
	$(PY) -m bench.ha

# Regenerate the reference parts of docs/ from the code (tests/docs fails while they differ).
docs: $(STAMP)
	$(PY) scripts/gen_docs.py

clean:
	rm -rf $(VENV) .rollbackbot .pytest_cache .mypy_cache .ruff_cache
