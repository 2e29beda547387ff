# Two commands on a fresh machine:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
NODE_DIR := tests/node
SOURCES  := $(wildcard daemon shim console tests bench)

.PHONY: demo test lint node clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

$(NODE_DIR)/.installed: $(NODE_DIR)/package.json
	cd $(NODE_DIR) && npm install --no-audit --no-fund --loglevel=error
	touch $@

node: $(NODE_DIR)/.installed

## demo: a self-contained walk through a safe call, a paused call, a confirm and a denial
demo: $(VENV)/.installed
	$(PY) -m console.demo

## test: lint, type-check and run the whole suite
test: $(VENV)/.installed node
	$(VENV)/bin/ruff check $(SOURCES)
	$(VENV)/bin/ruff format --check $(SOURCES)
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest

clean:
	rm -rf $(VENV) $(NODE_DIR)/node_modules $(NODE_DIR)/.installed
