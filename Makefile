# famlib: the two commands are `make paper` and `make test`; both set up .venv on first use.
SCALE  ?= tiny
PYTHON ?= python3
VENV   ?= .venv
# The CPU machines here take torch 2.13.0 from local disk; on a GPU box the same pin pulls PyPI's CUDA build.
TORCH  ?= torch==2.13.0
JOBS   ?= 2
PYTEST_ARGS ?=
# Test processes (pytest-xdist): both cores of the project's machines; each gets cores/workers torch threads.
TEST_WORKERS ?= 2

export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

STAMP := $(VENV)/.famlib-installed
# Every package `make install` puts in .venv but torch, at exact versions with their sha256 hashes (README "The lock").
LOCK  := requirements/cpu.lock
# `make lock` only: uv (`pip install uv`), and the folder holding the CPU build of torch on the project's machines.
UV    ?= uv
TORCH_WHEELS ?= /opt/wheels

.PHONY: paper test test-fast install check-lock lock data lab lesson lesson-prepare lesson-run clean-runs help

help:
	@echo "make paper [SCALE=smoke|tiny|small|paper] [JOBS=N]   regenerate the paper at a scale (default tiny)"
	@echo "make test                                             run the whole test suite"
	@echo "make test-fast                                        the tests not marked slow (no notebook, no pipeline run)"
	@echo "make check-lock                                       .venv and environment.yml against requirements/cpu.lock"
	@echo "make lock                                             regenerate requirements/cpu.lock (needs uv) and environment.yml"
	@echo "make lab                                              open the notebooks in JupyterLab"
	@echo "make lesson-prepare                                   the day before a class: model, data, the exercises' runs"
	@echo "make lesson                                           open the lesson (student version) in JupyterLab"
	@echo "make lesson-run [LESSON=student|instructor] [PRESET=class|preview]   run the lesson headless"

# Re-install only when the project's dependency list or its lock changes: a second `make` costs nothing.
# The lock first, every file checked against its hash (no resolver: --no-deps), pip and setuptools included;
# then torch, whose dependencies the lock has already put there (a GPU box adds the nvidia-* ones); then famlib
# itself, built by the locked setuptools; then pip's and the lock's own checks.
$(STAMP): pyproject.toml $(LOCK)
	@test -x $(VENV)/bin/python || { \
	  $(PYTHON) -c 'import sys; sys.exit(not (3, 11, 5) <= sys.version_info[:3] < (3, 12))' 2>/dev/null || { \
	    echo "famlib: $(LOCK) is for Python 3.11.5 or a later 3.11 (the CPU torch wheel is cp311, soupsieve needs 3.11.5);" \
	         "$(PYTHON) is $$($(PYTHON) -V 2>&1 || echo missing). Set PYTHON=/path/to/python3.11"; exit 1; }; \
	  $(PYTHON) -m venv $(VENV); }
	$(VENV)/bin/python -m pip install --quiet --no-deps --require-hashes -r $(LOCK)
	$(VENV)/bin/python -m pip install --quiet "$(TORCH)"
	$(VENV)/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(VENV)/bin/python -m pip check
	$(VENV)/bin/python -m famlib.lockfile
	@touch $@

install: $(STAMP)

paper: $(STAMP)
	$(VENV)/bin/famlib paper --scale $(SCALE) --jobs $(JOBS)

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# The fast lane while changing code: every test not marked slow (notebooks, the pipeline, minute-scale tests).
test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup -m "not slow" $(PYTEST_ARGS)

# .venv (as it is: nothing is installed first) and environment.yml against the lock.
check-lock:
	@test -x $(VENV)/bin/python || { echo "famlib: no $(VENV) here yet; \`make install\` makes it from $(LOCK)"; exit 1; }
	$(VENV)/bin/python -m famlib.lockfile

# Regenerate the lock from pyproject.toml and requirements/cpu.in. uv keeps the versions already in $(LOCK)
# unless told otherwise (UV_ARGS=--upgrade-package=NAME, or --upgrade for all); then environment.yml follows it.
lock:
	$(UV) pip compile pyproject.toml --extra dev requirements/cpu.in --find-links $(TORCH_WHEELS) \
	  --python-version 3.11.5 --generate-hashes --no-emit-package torch --custom-compile-command "make lock" \
	  $(UV_ARGS) -o $(LOCK)
	$(PYTHON) -m famlib.lockfile --write-environment

data: $(STAMP)
	$(VENV)/bin/famlib data --scale $(SCALE)

# No network from the browser either: JupyterLab's news prompt off, no update check.
LAB_OFFLINE = --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate
lab: $(STAMP)
	@$(VENV)/bin/jupyter labextension disable "@jupyterlab/apputils-extension:announcements" >/dev/null 2>&1 || true
	$(VENV)/bin/jupyter lab $(LAB_OFFLINE) notebooks/

# The lesson on forgetting (notebooks/lesson/, README there): prepare once with network, then teach offline.
LESSON ?= student
PRESET ?= class
lesson-prepare: $(STAMP)
	$(VENV)/bin/famlib lesson prepare --preset $(PRESET)

lesson: $(STAMP)
	@$(VENV)/bin/jupyter labextension disable "@jupyterlab/apputils-extension:announcements" >/dev/null 2>&1 || true
	$(VENV)/bin/jupyter lab $(LAB_OFFLINE) notebooks/lesson/forgetting_$(LESSON).ipynb

lesson-run: $(STAMP)
	$(VENV)/bin/famlib lesson run --version $(LESSON) --preset $(PRESET)

clean-runs:
	rm -rf runs/$(SCALE)
