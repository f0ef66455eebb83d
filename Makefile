# rollbackbot — every target does its own set-up on a fresh machine.
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-stamp

.PHONY: install demo demo-live test lint unit bench docs mutation clean

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
	bash scripts/ensure-alertmanager.sh
	$(PY) -m bench
	$(PY) -m bench.observer
	$(PY) -m bench.ha
	$(PY) -m bench.canary
	$(PY) -m bench.live

# Mutation testing of rollbackbot/core (docs/development.md); not part of `make test`.
# make mutation MUTATION_ARGS="--module releases" runs one module.
mutation: $(STAMP)
	$(PY) scripts/mutation.py $(MUTATION_ARGS)

# Regenerate the reference parts of docs/ from the code (tests/docs fails while they differ).
docs: $(STAMP)
	$(PY) scripts/gen_docs.py

clean:
	rm -rf $(VENV) .rollbackbot .pytest_cache .mypy_cache .ruff_cache

# The whole loop live: model stand-in, observer, real Prometheus and Alertmanager, rollbackbot, Argo CD stand-in.
# Installs Debian's prometheus and prometheus-alertmanager first when run as root (else says what to install).
demo-live: $(STAMP)
	bash scripts/ensure-alertmanager.sh
	$(VENV)/bin/python -m rollbackbot.demo.live $(DEMO_ARGS)
