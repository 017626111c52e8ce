# The developer's entry points. Everything runs from the project's .venv.
# `make demo` and `make test` set up a fresh machine first (bootstrap): Debian packages
# (tests/testbed/bootstrap.sh), the venv, the Go-built binaries, the base image and our
# images; each step does nothing when its result is already there.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TESTBED := PYTHONPATH=tests $(PY) -m testbed

.PHONY: system system-ready venv binaries images bootstrap testbed-up testbed-down test unit lint crds demo bench bench-chaos bench-node bench-procs bench-keda bench-scale

# Debian packages: what the venv needs at once, the rest installed in the background while
# pip and the Go build run (none needs them); system-ready waits for them.
system:
	tests/testbed/bootstrap.sh start

system-ready: system
	tests/testbed/bootstrap.sh wait

$(VENV)/.installed: pyproject.toml contract/pyproject.toml operator/pyproject.toml worker-image/pyproject.toml plugin/pyproject.toml | system
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# Every target that runs something waits for the system packages; only the Go build
# (binaries) starts before them.
venv: system-ready $(VENV)/.installed

# KEDA (operator + metrics adapter, pinned in tests/testbed/keda/go.mod) for its smoke test
# and `make bench-keda`: a large build (every scaler KEDA ships), once, then cached.
binaries: system $(VENV)/.installed
	PYTHONPATH=tests $(PY) -m testbed.build
	PYTHONPATH=tests $(PY) -m testbed.keda_build

# The test bed's images; with KUBECONFIG (kind...) you build and load them yourself (README).
images: venv
	$(if $(KUBECONFIG),@echo "KUBECONFIG is set: not building the test bed's images",PYTHONPATH=tests $(PY) -m testbed.images)

bootstrap: system binaries venv images

testbed-up: bootstrap
	$(TESTBED) up

testbed-down: venv
	$(TESTBED) down

test: lint bootstrap
	$(VENV)/bin/pytest

unit: venv
	$(VENV)/bin/pytest tests/unit

# Style, types and layering (pyproject.toml: [tool.ruff], [tool.mypy], [tool.importlinter]).
LINTED := contract operator worker-image plugin tests bench examples
lint: venv
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

crds: venv
	$(VENV)/bin/taskqueue-crd

demo: bootstrap
	$(PY) examples/demo.py $(if $(KEEP),--keep,)

bench: venv
	PYTHONPATH=tests $(PY) bench/policy_sim.py

# Issue 8's long chaos run (10,000 jobs + a 10,000-job baseline: ~10 min on 2 cores), not in `bench`.
JOBS ?= 10000
bench-chaos: bootstrap
	$(PY) bench/chaos.py --jobs $(JOBS)

# spec.worker.processes: memory per slot and jobs/s per pod, N = 1, 4, 8 loops in one pod
# against N one-loop pods, as host processes (~4 min on 2 cores).
bench-procs: venv
	$(PY) bench/processes_per_pod.py

# Real-node figures: pod start, cold start from zero replicas, scale-down, image builds.
bench-node: bootstrap
	PYTHONPATH=tests $(PY) bench/real_node.py

# Issue 16: the real KEDA (built from the Go module proxy) and our operator on the same
# trace windows, side by side on the test bed (~60 min); bench/out/keda_side_by_side.{json,png}.
bench-keda: bootstrap
	PYTHONPATH=tests $(PY) bench/keda_side_by_side.py

# Issue 15: one operator, N TaskQueues on a real API server (etcd + kube-apiserver only),
# figures against 0 TaskQueues in the same run; ~3 minutes per count on 2 cores.
COUNTS ?= 100,300,1000
bench-scale: venv binaries
	PYTHONPATH=tests $(PY) bench/many_taskqueues.py --counts $(COUNTS) --settle 60 --window 60
