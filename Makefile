# The two commands of the README:  make reproduce   and   make test
# Both create/refresh one virtualenv (.venv) from pyproject.toml.  torch==2.13.0 is installed first:
# on the project's machines it is the CPU wheel on local disk; an unpinned torch would pull a
# multi-GB CUDA build.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.qnnlib-installed
PROFILE ?= quick
FASHION_MNIST := /usr/share/datasets/fashion-mnist

.PHONY: venv reproduce test test-lib test-notebooks kernels-check bench lab data-fashion-mnist clean-smoke

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	@touch $@

# Fashion-MNIST (Debian package dataset-fashion-mnist) is the full-size MNIST-format data that offline
# machines and CI have; the smoke profile trains on a subset of it.
data-fashion-mnist:
	@if [ -d $(FASHION_MNIST) ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "installing dataset-fashion-mnist (Debian package) ..."; \
	  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null || \
	  { echo "could not apt-get install dataset-fashion-mnist"; exit 1; }; \
	else \
	  echo "Fashion-MNIST not found in $(FASHION_MNIST): install the Debian package dataset-fashion-mnist,"; \
	  echo "or put its four IDX .gz files into \$$QNNLIB_DATA/fashion-mnist (default ~/.cache/qnnlib)."; \
	fi

# Reproduce the collection at a CPU-friendly profile: every notebook, Papermill, into results/$(PROFILE)/.
reproduce: venv data-fashion-mnist
	$(PY) -m qnnlib reproduce --profile $(PROFILE)

# Library tests and every notebook under nbval at the smoke profile, in one pytest run.
test: venv data-fashion-mnist
	QNNLIB_PROFILE=smoke $(PY) -m pytest -q -p no:cacheprovider tests notebooks --nbval

test-lib: venv
	$(PY) -m pytest -q tests

test-notebooks: venv data-fashion-mnist
	QNNLIB_PROFILE=smoke $(PY) -m pytest -q --nbval notebooks

bench: venv
	$(PY) -m qnnlib bench qat
	$(PY) -m qnnlib bench cpu

lab: venv
	$(PY) -m pip install --quiet -e ".[lab]"
	$(VENV)/bin/jupyter lab notebooks

clean-smoke:
	rm -rf results/smoke
