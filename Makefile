# The developer's entry points. Everything runs from the project's .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TESTBED := PYTHONPATH=tests $(PY) -m testbed

.PHONY: venv binaries testbed-up testbed-down test unit lint crds demo bench bench-chaos

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

binaries: venv
	PYTHONPATH=tests $(PY) -m testbed.build

testbed-up: binaries
	$(TESTBED) up

testbed-down: venv
	$(TESTBED) down

test: binaries
	$(VENV)/bin/pytest

unit: venv
	$(VENV)/bin/pytest tests/unit

lint: venv
	$(VENV)/bin/ruff check operator worker-image tests bench examples

crds: venv
	$(VENV)/bin/taskqueue-crd

demo: binaries
	$(PY) examples/demo.py $(if $(KEEP),--keep,)

bench: venv
	PYTHONPATH=tests $(PY) bench/policy_sim.py

# Issue 8's long chaos run (10,000 jobs + a 10,000-job baseline: ~10 min on 2 cores), not in `bench`.
JOBS ?= 10000
bench-chaos: binaries
	$(PY) bench/chaos.py --jobs $(JOBS)
