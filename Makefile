# Balkan Alert Bus — the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-chaos lint typecheck schemas-check unit integration bench bench-lookup kafka-start kafka-stop clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed (found " + sys.version.split()[0] + "); set PYTHON=python3.11"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# `make demo SECURE=1`: the same loop on a secure broker, every component under its own login.
demo: install
	$(BIN)/python -m examples.demo $(if $(SECURE),--secure)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

schemas-check: install
	$(BIN)/bus schemas check

# The suite starts its own broker (a pytest session fixture) on free ports and stops it after.
test: lint typecheck schemas-check
	$(BIN)/python -m pytest

# Broker faults under load (a node of three killed, the single broker frozen for two minutes),
# each on brokers of its own: minutes, not seconds, so apart from `make test`. CI runs both.
test-chaos: install
	$(BIN)/python -m pytest -m chaos

unit: install
	$(BIN)/python -m pytest tests/unit

integration: install
	$(BIN)/python -m pytest tests/integration

bench: install
	$(BIN)/python bench/publish.py

bench-lookup: install
	$(BIN)/python bench/lookup.py

kafka-start: install
	$(BIN)/bus kafka start

kafka-stop: install
	$(BIN)/bus kafka stop

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
