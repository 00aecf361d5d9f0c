# Two commands set everything up on a fresh machine: `make serve` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 5006
PY312 := $(shell PYENV_VERSION=3.12.1 python3.12 -c 'import sys; print(sys.executable)' 2>/dev/null)

.PHONY: install system-deps serve test test-312 lint format check bench fuzz compat clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# Debian's packages the tests drive: chromium for the browser tests (never a downloaded browser
# build), nginx for the reverse-proxy tests (started by the tests on loopback, never as a
# service) and nodejs, with which Bokeh compiles custom models' TypeScript (tests/test_extensions.py).
# One apt-get update, and only when something is missing.
system-deps:
	@missing=""; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	[ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	[ -x /usr/bin/node ] || missing="$$missing nodejs"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" != 0 ]; then echo "install Debian's packages as root: apt-get install$$missing"; exit 1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

serve: install
	$(BIN)/app-server serve examples/demo.py --port $(PORT)

test: install system-deps
	$(BIN)/python -m pytest

# The bokeh 3.10 leg, on Python 3.12 when pyenv provides it.
test-312:
	@if [ -z "$(PY312)" ]; then echo "no python3.12 here: skipping the bokeh 3.10 leg"; \
	else $(MAKE) test PYTHON=$(PY312) VENV=.venv312; fi

lint: install
	$(BIN)/ruff check app_server tests examples
	$(BIN)/ruff format --check app_server tests examples

format: install
	$(BIN)/ruff check --fix app_server tests examples
	$(BIN)/ruff format app_server tests examples

check: lint
	$(BIN)/mypy --strict app_server

# The benchmark of issue 8 (see BENCHMARKS.md): app_server against `bokeh serve` under
# $(BIN)/python, then again under Python 3.12 (bokeh 3.10) with a BokehASGI column when
# .venv312 exists or pyenv provides python3.12 (PY312). BENCH_ARGS=--quick: a smoke run.
bench: install
	$(BIN)/python -m bench $(BENCH_ARGS)
	@if [ ! -x .venv312/bin/python ] && [ -z "$(PY312)" ]; then \
		echo "no .venv312 and no python3.12: skipping the BokehASGI leg (bokeh 3.10 needs 3.12)"; \
	else \
		if [ ! -x .venv312/bin/python ]; then $(MAKE) install PYTHON=$(PY312) VENV=.venv312 || exit 1; fi; \
		.venv312/bin/python -c 'import app_server' 2>/dev/null \
			|| .venv312/bin/pip install --quiet -e '.[test]' || exit 1; \
		echo; echo "== Python 3.12, bokeh 3.10: with BokehASGI =="; \
		.venv312/bin/python -m bench $(BENCH_ARGS); \
	fi

# The live-server fuzzer of issue 17 (python -m fuzz --help): about a minute against
# app-server serve examples/demo.py. FUZZ_SEED=<n> replays a run (every failure names its seed);
# FUZZ_CONNECTIONS (per worker), FUZZ_WORKERS and FUZZ_TIME_LIMIT (seconds) set its size.
fuzz: install
	$(BIN)/python -m fuzz

# COMPATIBILITY.md, the compatibility table (tests/compat.py): each browser-test app alone under bokeh
# serve, app_server and (Panel apps) panel serve, in Chromium behind a firewall, on this leg and
# then on .venv312 (bokeh 3.10) when it exists; about 2.5 minutes a leg. It records
# tests/compat_results.json and writes COMPATIBILITY.md from it; `make test` checks they agree.
compat: install system-deps
	$(BIN)/python -m pytest tests/compat_run.py
	@if [ -x .venv312/bin/python ]; then .venv312/bin/python -m pytest tests/compat_run.py; \
	else echo "no .venv312: the bokeh 3.10 leg's table is left as recorded"; fi

clean:
	rm -rf $(VENV) .venv312 .pytest_cache .ruff_cache .mypy_cache
