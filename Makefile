# Everything newsrec needs installs from here into .venv; Postgres and Redis are started under var/
# when they are installed but not running (see scripts/services.sh).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install browser bytecode services stop-services run test test-fast lint bench bench-quick chaos cluster clean

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

install: $(VENV)/.installed browser

# Debian's chromium for the browser tests (apt-get as root; they are skipped without it).
browser:
	scripts/install_chromium.sh

services: install
	scripts/services.sh start

# The project's modules compiled ahead: where PYTHONDONTWRITEBYTECODE is set (as on these machines) every
# process would compile them again as it starts, ~0.3 s each, and the tests and benches start hundreds.
# A source edited since is compiled in memory as usual (Python checks the source's mtime), never stale.
bytecode: install
	$(PY) -m compileall -q -j 0 articles newsrec pipeline benchmarks tests scripts manage.py

stop-services:
	scripts/services.sh stop

run: services bytecode
	scripts/run.sh

test: services bytecode
	$(PY) -m pytest

test-fast: services bytecode
	$(PY) -m pytest -m "not e2e"

bench: services bytecode
	$(PY) -m benchmarks $(BENCH)

# `make bench --quick` of the issue: smaller sizes, figures to benchmarks/results-quick.json (benchmarks/scale.py).
bench-quick: services bytecode
	BENCH_QUICK=1 $(PY) -m benchmarks $(BENCH)

# Faults injected into a private stack of its own (Postgres, Redis, supervisord); see scripts/chaos.py.
chaos: install
	$(PY) scripts/chaos.py $(CHAOS)

# Web, two worker hosts, scheduler, feeds and db as network namespaces (root); see scripts/cluster.py.
cluster: install
	$(PY) scripts/cluster.py $(CLUSTER)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) var
