# Two commands do everything on a fresh machine: `make demo` and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint unit bench system-deps clean

$(PY):
	python3 -m venv $(VENV)

# The editable install also builds the JupyterLab extension (hatch-jupyter-builder runs jlpm);
# it rebuilds when the TypeScript, styles, schema or lock file change.
EXTENSION := package.json yarn.lock tsconfig.json schema/plugin.json $(shell find extension -type f)
# jlpm with the venv first on PATH: package.json scripts call jlpm (and python3) themselves
JLPM      := PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/jlpm
JSDEPS    := node_modules/.yarn-state.yml

$(STAMP): pyproject.toml $(EXTENSION) | $(PY)
	$(PIP) install -q -U pip editables
	$(PIP) install -q -e '.[test,dask]'
	touch $@

install: $(STAMP)

# The front end's tools (ESLint, Prettier, vitest) from the lock file; the editable install's
# build installs them too, this only makes sure.
$(JSDEPS): package.json yarn.lock | $(STAMP)
	$(JLPM) install
	touch $@

# Debian packages the browser tests, the cluster test (HAProxy) and the benchmark use (the
# machine runs as root).
system-deps:
	@command -v chromium >/dev/null && command -v wrk >/dev/null && command -v haproxy >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium wrk haproxy >/dev/null; }

demo: install
	PYTHON=$(PY) bash examples/demo.sh

lint: install $(JSDEPS)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(JLPM) lint:check

unit: install system-deps $(JSDEPS)
	$(JLPM) test
	$(VENV)/bin/pytest

test: lint unit

bench: install system-deps
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) build dist lib node_modules crowdsource/labextension
