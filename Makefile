# The two commands a person needs: `make up` and `make test`. Both create the
# environment on first use (Python packages in .venv, the npm emulators under infra/local).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up test lint typecheck pytest bench clean

$(STAMP): pyproject.toml infra/local/package-lock.json infra/terraform/checkov-requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	cd infra/local && npm ci --no-audit --no-fund --loglevel=error
	# checkov pins an old boto3, so it gets a venv of its own (used by tests/infra).
	$(PYTHON) -m venv $(VENV)/checkov
	$(VENV)/checkov/bin/python -m pip install --quiet -r infra/terraform/checkov-requirements.txt
	touch $(STAMP)

up: $(STAMP)
	$(BIN)/fanline up

test: $(STAMP) lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/fanline bench log
	$(BIN)/fanline bench fanout
	$(BIN)/fanline bench read
	$(BIN)/fanline bench write

clean:
	rm -rf $(VENV) infra/local/node_modules .mypy_cache .ruff_cache .pytest_cache
