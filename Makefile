# Two commands for a newcomer: `make demo` and `make test` (see README.md).
# The venv sees the system's site-packages so that on an Ascend host the CANN image's
# TensorFlow 1.15 and npu_bridge stay importable.
PYTHON ?= python3
VENV   ?= .venv
VPY    := $(VENV)/bin/python
RUN_STAMP := $(VENV)/.requirements-installed
DEV_STAMP := $(VENV)/.dev-requirements-installed
DEMO_ARGS ?=
# pytest-xdist spreads the test files over 3 workers (each file runs whole on one worker, so a module
# fixture -- an expensive scenario shared by a file's tests -- still runs once). 3, not one per core: on the
# 2-core machine a worker is often waiting on a timeout or a peer while the others compute (README: 300 s
# with 3 workers, 322 s with 2, 318 s with 4). --no-loadscope-reorder keeps tests/conftest.py's
# longest-first order of files (xdist would order them by their number of tests). `make test
# PYTEST_ARGS=` runs everything in one process.
PYTEST_ARGS ?= -n 3 --dist loadfile --no-loadscope-reorder

.PHONY: test check lint gates pytest demo venv clean

test: check pytest

check: lint gates

lint: $(DEV_STAMP)
	$(VPY) -m ruff check .

gates: $(DEV_STAMP)
	$(VPY) -m tools.check_py37 .
	$(VPY) -m tools.check_tf_api .
	$(VPY) -m tools.check_imports .

# The suite starts ~270 Python processes. Where PYTHONDONTWRITEBYTECODE is set (it is on this project's
# machines) none of them caches the project's bytecode, so each would compile what it imports again:
# compile it once first, as pip does for installed packages (stale .pyc files are ignored by Python);
# -x skips hidden directories (.venv, .git).
# Two passes (tests/conftest.py): every test on TensorFlow's reference CPU kernels (oneDNN off, the same on
# every host, a sixth less CPU where oneDNN is on), then the few about the host's own kernels (marked
# host_kernels: oneDNN's grouped convolutions, its ReLU turning NaN into 0) with the host's defaults.
pytest: $(DEV_STAMP)
	$(VPY) -m compileall -q -x '/\.' . >/dev/null
	$(VPY) -m pytest $(PYTEST_ARGS)
	$(VPY) -m pytest -q --cpu-kernels=host -m host_kernels

demo: $(RUN_STAMP)
	$(VPY) -m launcher.demo $(DEMO_ARGS)

venv: $(DEV_STAMP)

$(VPY):
	$(PYTHON) -m venv --system-site-packages $(VENV)

$(RUN_STAMP): requirements.txt | $(VPY)
	$(VPY) -m pip install -q -r requirements.txt
	$(VPY) -m tools.check_tf_install
	touch $@

$(DEV_STAMP): $(RUN_STAMP) requirements-dev.txt
	$(VPY) -m pip install -q -r requirements-dev.txt
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
