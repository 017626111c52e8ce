# The developer's entry points. Everything runs from the project's .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TESTBED := PYTHONPATH=tests $(PY) -m testbed

.PHONY: venv binaries testbed-up testbed-down test unit lint crds demo bench

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
