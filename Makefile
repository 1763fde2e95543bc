# The README's two commands are `make serve` and `make test`; both install what they need.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.8
UV := $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.tools/bin/uv)
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
export UV_PYTHON_DOWNLOADS := never
# uvx (next to uv) runs PyPI-packaged MCP servers; the gateway finds it on PATH.
export PATH := $(dir $(UV)):$(PATH)

.PHONY: help install serve test test-fast lint format bench clean interop

help:  ## List targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(CURDIR)/.tools/bin/uv:
	$(PYTHON) -m venv $(CURDIR)/.tools
	$(CURDIR)/.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

# Bytecode is compiled at install time: where PYTHONDONTWRITEBYTECODE is set, every
# start would otherwise compile every module again (1 s more to ready).
$(VENV)/.installed: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --compile-bytecode
	@touch $@

install: $(VENV)/.installed  ## Create .venv from uv.lock
	@$(BIN)/python -m compileall -q gateway skills sandboxes

serve: install  ## Run the gateway on 127.0.0.1:8000 (SQLite under ./.mcpgw)
	$(BIN)/mcpgw serve

test: install  ## Run the whole test suite (SQLite and PostgreSQL, the interop matrix included)
	$(BIN)/pytest $(PYTEST_ARGS)

test-fast: install  ## Unit and in-process tests only: no processes, Docker or registries (~1 min)
	$(BIN)/pytest tests/unit tests/integration -m "not subprocess and not docker and not kube and not network" $(PYTEST_ARGS)

interop: install  ## The interop matrix: every SDK x era x path x client (prints the table)
	$(BIN)/pytest tests/interop $(PYTEST_ARGS)

lint: install  ## ruff (lint + format check), mypy and the import contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install  ## Apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install  ## Run the benchmarks and print their figures
	$(BIN)/python -m bench

clean:  ## Remove the virtualenv, caches and local data
	rm -rf $(VENV) .tools .mypy_cache .ruff_cache .pytest_cache .mcpgw
