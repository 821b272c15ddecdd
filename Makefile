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
# Penn Treebank: the project's machines keep the real valid/test files (no train file) in a shared folder beside
# the checkout (or at the development machines' fixed location, as tests/shared_data.py looks); the PTB notebook
# reads them in place through QNNLIB_PTB (a user's own setting wins).
PTB_TEST := $(firstword $(wildcard $(abspath ../shared/data/ptb)/ptb.test.txt /work/shared/data/ptb/ptb.test.txt))
ifeq ($(origin QNNLIB_PTB),undefined)
ifneq ($(PTB_TEST),)
export QNNLIB_PTB := $(patsubst %/,%,$(dir $(PTB_TEST)))
endif
endif

.PHONY: venv reproduce test test-lib test-notebooks kernels-check bench lab kernel data-fashion-mnist clean-smoke

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
test: venv kernel data-fashion-mnist
	QNNLIB_PROFILE=smoke QNNLIB_HEADLESS=1 $(PY) -m pytest -q -p no:cacheprovider tests notebooks --nbval

test-lib: venv
	$(PY) -m pytest -q tests

test-notebooks: venv kernel data-fashion-mnist
	QNNLIB_PROFILE=smoke QNNLIB_HEADLESS=1 $(PY) -m pytest -q --nbval notebooks

bench: venv
	$(PY) -m qnnlib bench qat
	$(PY) -m qnnlib bench cpu

# JupyterLab on the repository root (notebooks/, results/, docs/ side by side), in the project's venv, with the
# project's kernel "Python 3 (qnnlib)" and the save hook that stores notebooks in their canonical form
# (qnnlib/experiments/notebook_format.py), so opening and saving an unchanged notebook leaves it unchanged.
# Binds to 127.0.0.1 (make lab LAB_IP=0.0.0.0 LAB_PORT=8899 to change); prints the URL with its token.
LAB_IP   ?= 127.0.0.1
LAB_PORT ?= 8888
LAB_STAMP := $(VENV)/.qnnlib-lab-installed
KERNEL_STAMP := $(VENV)/.qnnlib-kernel-installed

# The project's kernelspec in the venv (argv: the venv's python); nbval runs the notebooks with it.
kernel: $(KERNEL_STAMP)

$(KERNEL_STAMP): $(STAMP)
	$(PY) -m ipykernel install --sys-prefix --name qnnlib --display-name "Python 3 (qnnlib)" >/dev/null
	@touch $@

$(LAB_STAMP): $(STAMP) $(KERNEL_STAMP) pyproject.toml
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[lab]"
	@touch $@

lab: $(LAB_STAMP) data-fashion-mnist
	@echo "JupyterLab: the URL to open (with its token) is printed below; Ctrl-C stops the server."
	$(VENV)/bin/jupyter lab --no-browser --ip=$(LAB_IP) --port=$(LAB_PORT) \
	  --ServerApp.root_dir="$(CURDIR)" \
	  --ContentsManager.pre_save_hook=qnnlib.experiments.notebook_format.pre_save_hook \
	  --MappingKernelManager.default_kernel_name=qnnlib \
	  $$(if [ "$$(id -u)" = 0 ]; then echo --allow-root; fi)

clean-smoke:
	rm -rf results/smoke
